/*
 * Hilos web chat widget: a launcher button and a chat panel on the business's own site.
 *
 * Embedded with one tag: <script src="{hilos}/webchat/{channel_id}/widget.js" async></script>
 * (optional data-lang="es|en", data-position="left"). Plain JavaScript written for Hilos: no
 * framework, no third-party code, nothing loaded from anywhere but the Hilos server that served
 * this file. Its words come from that server (GET config), in the visitor's language.
 *
 * The visitor's secret token is kept in localStorage (in memory where storage is refused), so a
 * returning visitor gets its conversation back. Messages go over a WebSocket, or by POST while
 * the socket is down; each carries a client_id, so sending it twice stores it once.
 */
(function () {
  "use strict";

  var CSS = /*HILOS_WIDGET_CSS*/ "";
  var PING_MS = 25000;
  var ACK_WAIT_MS = 8000;
  var MAX_RETRY_MS = 30000;

  var script = document.currentScript;
  if (!script) {
    var tags = document.querySelectorAll('script[src*="/webchat/"]');
    script = tags[tags.length - 1];
  }
  if (!script || !script.src) return;
  var found = /^(.*)\/webchat\/([^\/?#]+)\/widget\.js(?:[?#].*)?$/.exec(script.src);
  if (!found) return;
  var channelId = decodeURIComponent(found[2]);
  var api = found[1] + "/webchat/" + encodeURIComponent(channelId);
  var registry = (window.HilosWebchat = window.HilosWebchat || {});
  if (registry[channelId]) return;
  registry[channelId] = true;

  var storageKey = "hilos-webchat:" + channelId;
  var lang = script.getAttribute("data-lang") || navigator.language || "";
  var side = script.getAttribute("data-position") === "left" ? "left" : "right";

  var state = {
    config: null,
    token: readToken(),
    messages: [],
    socket: null,
    socketOpen: false,
    retryDelay: 1000,
    retryTimer: null,
    pingTimer: null,
    open: false,
    unread: 0
  };
  var ui = {};

  // --- storage and HTTP ----------------------------------------------------------------------

  function readToken() {
    try {
      return window.localStorage.getItem(storageKey);
    } catch (error) {
      return null;
    }
  }

  function saveToken(token) {
    state.token = token;
    try {
      if (token) window.localStorage.setItem(storageKey, token);
      else window.localStorage.removeItem(storageKey);
    } catch (error) {
      /* storage refused (private mode, blocked third-party storage): keep it in memory */
    }
  }

  function request(method, path, body) {
    var headers = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (state.token) headers.Authorization = "Bearer " + state.token;
    return fetch(api + path, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      mode: "cors",
      credentials: "omit"
    }).then(function (response) {
      return response
        .json()
        .catch(function () {
          return {};
        })
        .then(function (data) {
          if (!response.ok) {
            var failure = new Error((data.error && data.error.message) || "HTTP " + response.status);
            failure.status = response.status;
            failure.field = data.error ? data.error.field : null;
            throw failure;
          }
          return data;
        });
    });
  }

  function newClientId() {
    var cryptoApi = window.crypto;
    if (cryptoApi && cryptoApi.randomUUID) return cryptoApi.randomUUID();
    var bytes = new Uint8Array(16);
    if (cryptoApi && cryptoApi.getRandomValues) cryptoApi.getRandomValues(bytes);
    else for (var i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
    return Array.prototype.map
      .call(bytes, function (b) {
        return ("0" + b.toString(16)).slice(-2);
      })
      .join("");
  }

  // --- building the panel --------------------------------------------------------------------

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text) node.textContent = text;
    return node;
  }

  var BUBBLE_ICON =
    '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false">' +
    '<path d="M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z"/>' +
    "</svg>";
  var SEND_ICON =
    '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false">' +
    '<path d="M3 20.5 21 12 3 3.5V10l12 2-12 2z"/></svg>';

  function build() {
    var strings = state.config.strings;
    var host = el("div");
    host.setAttribute("data-hilos-webchat", channelId);
    var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
    var style = el("style");
    style.textContent = CSS;
    root.appendChild(style);

    var frame = el("div", "hw hw-" + side);
    if (state.config.color) frame.style.setProperty("--hw-accent", state.config.color);
    ui.frame = frame;

    var launcher = el("button", "hw-launcher");
    launcher.type = "button";
    launcher.innerHTML = BUBBLE_ICON;
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-label", strings.launcher);
    launcher.title = strings.launcher;
    ui.badge = el("span", "hw-badge");
    ui.badge.hidden = true;
    launcher.appendChild(ui.badge);
    launcher.addEventListener("click", function () {
      setOpen(!state.open);
    });
    ui.launcher = launcher;

    var panel = el("section", "hw-panel");
    panel.hidden = true;
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-label", state.config.title);
    panel.addEventListener("keydown", function (event) {
      if (event.key === "Escape") setOpen(false);
    });
    ui.panel = panel;

    var header = el("header", "hw-header");
    header.appendChild(el("h2", "hw-title", state.config.title));
    var close = el("button", "hw-close", "\u00d7");
    close.type = "button";
    close.setAttribute("aria-label", strings.close);
    close.title = strings.close;
    close.addEventListener("click", function () {
      setOpen(false);
    });
    header.appendChild(close);
    panel.appendChild(header);

    ui.status = el("div", "hw-status");
    ui.status.setAttribute("role", "status");
    ui.status.hidden = true;
    panel.appendChild(ui.status);

    ui.log = el("ol", "hw-log");
    ui.log.setAttribute("role", "log");
    ui.log.setAttribute("aria-live", "polite");
    panel.appendChild(ui.log);

    panel.appendChild(buildPrechat(strings));
    panel.appendChild(buildComposer(strings));

    frame.appendChild(launcher);
    frame.appendChild(panel);
    root.appendChild(frame);
    document.body.appendChild(host);
    document.addEventListener("visibilitychange", markRead);
  }

  function buildPrechat(strings) {
    var form = el("form", "hw-prechat");
    form.noValidate = true;
    form.hidden = true;
    form.appendChild(el("p", "", strings.prechat));
    var kinds = {
      name: ["text", "name"],
      email: ["email", "email"],
      phone: ["tel", "tel"]
    };
    ui.inputs = {};
    state.config.prechat_fields.forEach(function (field) {
      var label = el("label", "", strings[field]);
      var input = el("input");
      input.name = field;
      input.type = kinds[field][0];
      input.autocomplete = kinds[field][1];
      input.maxLength = field === "email" ? 320 : field === "phone" ? 40 : 200;
      label.appendChild(input);
      form.appendChild(label);
      ui.inputs[field] = input;
    });
    ui.formError = el("p", "hw-form-error");
    ui.formError.setAttribute("role", "alert");
    ui.formError.hidden = true;
    form.appendChild(ui.formError);
    var start = el("button", "hw-start", strings.start);
    start.type = "submit";
    form.appendChild(start);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var fields = {};
      Object.keys(ui.inputs).forEach(function (field) {
        var input = ui.inputs[field];
        input.removeAttribute("aria-invalid");
        if (input.value.trim()) fields[field] = input.value.trim();
      });
      ui.formError.hidden = true;
      start.disabled = true;
      startSession(fields)
        .then(function () {
          showView();
          ui.textarea.focus();
        })
        .catch(function (error) {
          var input = error.status === 422 && error.field ? ui.inputs[error.field] : null;
          ui.formError.textContent = input ? strings.invalid : strings.error;
          ui.formError.hidden = false;
          if (input) {
            input.setAttribute("aria-invalid", "true");
            input.focus();
          }
        })
        .then(function () {
          start.disabled = false;
        });
    });
    ui.prechat = form;
    return form;
  }

  function buildComposer(strings) {
    var form = el("form", "hw-composer");
    form.hidden = true;
    var textarea = el("textarea");
    textarea.rows = 1;
    textarea.maxLength = 4000;
    textarea.placeholder = strings.placeholder;
    textarea.setAttribute("aria-label", strings.placeholder);
    textarea.addEventListener("input", grow);
    textarea.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        submitText();
      }
    });
    var send = el("button", "hw-send");
    send.type = "submit";
    send.innerHTML = SEND_ICON;
    send.setAttribute("aria-label", strings.send);
    send.title = strings.send;
    form.appendChild(textarea);
    form.appendChild(send);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      submitText();
    });
    ui.textarea = textarea;
    ui.composer = form;
    return form;
  }

  function grow() {
    ui.textarea.style.height = "auto";
    ui.textarea.style.height = ui.textarea.scrollHeight + "px";
  }

  // --- what the panel shows ------------------------------------------------------------------

  function showView() {
    var form = !state.token && state.config.prechat_fields.length > 0;
    ui.prechat.hidden = !form;
    ui.composer.hidden = form;
  }

  function setOpen(open) {
    state.open = open;
    ui.panel.hidden = !open;
    ui.launcher.setAttribute("aria-expanded", String(open));
    if (!open) {
      ui.launcher.focus();
      return;
    }
    state.unread = 0;
    updateBadge();
    showView();
    render();
    markRead();
    var first = !ui.prechat.hidden ? ui.prechat.querySelector("input") : ui.textarea;
    if (first) first.focus();
  }

  function updateBadge() {
    var strings = state.config.strings;
    ui.badge.hidden = state.unread === 0;
    ui.badge.textContent = state.unread > 9 ? "9+" : String(state.unread);
    ui.launcher.setAttribute(
      "aria-label",
      state.unread ? strings.launcher + " (" + strings.unread + ")" : strings.launcher
    );
  }

  function setStatus(text) {
    ui.status.textContent = text || "";
    ui.status.hidden = !text;
  }

  function clock(iso) {
    var when = new Date(iso);
    try {
      return when.toLocaleTimeString(lang || undefined, { hour: "2-digit", minute: "2-digit" });
    } catch (error) {
      return when.toLocaleTimeString();
    }
  }

  function bubble(message) {
    var strings = state.config.strings;
    var mine = message.direction === "inbound";
    var item = el("li", "hw-msg " + (mine ? "hw-mine" : "hw-theirs"));
    if (message.text) item.appendChild(el("p", "hw-text", message.text));
    (message.attachments || []).forEach(function (attachment) {
      var name = attachment.name || attachment.type || "";
      if (attachment.url && /^https?:/i.test(attachment.url)) {
        var link = el("a", "hw-file", name || attachment.url);
        link.href = attachment.url;
        link.target = "_blank";
        link.rel = "noopener noreferrer";
        item.appendChild(link);
      } else if (name) {
        item.appendChild(el("span", "hw-file", name));
      }
    });
    var meta = (mine ? strings.you : state.config.title) + " \u00b7 " + clock(message.sent_at);
    if (message.failed) {
      item.className += " hw-failed";
      var retry = el("button", "hw-retry", strings.failed);
      retry.type = "button";
      retry.addEventListener("click", function () {
        message.rejected = false;
        deliver(message);
      });
      item.appendChild(retry);
    } else if (message.pending) {
      meta += " \u00b7 " + strings.sending;
    }
    item.appendChild(el("span", "hw-meta", meta));
    return item;
  }

  function render() {
    if (!ui.log) return;
    var log = ui.log;
    var atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    while (log.firstChild) log.removeChild(log.firstChild);
    log.appendChild(
      bubble({
        direction: "outbound",
        text: state.config.greeting,
        attachments: [],
        sent_at: state.messages.length ? state.messages[0].sent_at : new Date().toISOString()
      })
    );
    state.messages.forEach(function (message) {
      log.appendChild(bubble(message));
    });
    if (atBottom || state.open) log.scrollTop = log.scrollHeight;
  }

  // --- the conversation ----------------------------------------------------------------------

  function byClientId(clientId) {
    for (var i = 0; i < state.messages.length; i++) {
      var message = state.messages[i];
      if (message.direction === "inbound" && message.client_id === clientId) return message;
    }
    return null;
  }

  function upsert(incoming) {
    for (var i = 0; i < state.messages.length; i++) {
      var known = state.messages[i];
      var same =
        (incoming.id && known.id === incoming.id) ||
        (incoming.client_id && known.client_id === incoming.client_id);
      if (same) {
        known.id = incoming.id;
        known.text = incoming.text;
        known.attachments = incoming.attachments;
        known.sent_at = incoming.sent_at;
        if (!(known.status === "read" && incoming.status !== "read")) known.status = incoming.status;
        known.pending = false;
        known.failed = false;
        clearTimeout(known.timer);
        return false;
      }
    }
    state.messages.push(incoming);
    state.messages.sort(function (a, b) {
      return a.sent_at < b.sent_at ? -1 : a.sent_at > b.sent_at ? 1 : 0;
    });
    return true;
  }

  function forget() {
    saveToken(null);
    if (state.socket) state.socket.close();
    state.messages = [];
    render();
    if (state.open) showView();
  }

  function startSession(fields) {
    if (state.token) return Promise.resolve();
    var body = { lang: lang.slice(0, 35) };
    Object.keys(fields || {}).forEach(function (field) {
      body[field] = fields[field];
    });
    return request("POST", "/sessions", body).then(function (session) {
      saveToken(session.token);
      connect();
    });
  }

  function loadHistory() {
    return request("GET", "/messages")
      .then(function (page) {
        page.items.forEach(function (message) {
          var unread = message.direction === "outbound" && message.status !== "read";
          if (upsert(message) && unread && !state.open) state.unread += 1;
        });
        updateBadge();
        render();
        markRead();
      })
      .catch(function (error) {
        if (error.status === 401) forget();
      });
  }

  function submitText() {
    var text = ui.textarea.value;
    if (!text.trim()) return;
    ui.textarea.value = "";
    grow();
    var message = {
      id: null,
      client_id: newClientId(),
      direction: "inbound",
      text: text,
      attachments: [],
      sent_at: new Date().toISOString(),
      status: null,
      pending: true,
      failed: false
    };
    state.messages.push(message);
    render();
    startSession()
      .then(function () {
        deliver(message);
      })
      .catch(function () {
        fail(message);
      });
  }

  function deliver(message) {
    message.pending = true;
    message.failed = false;
    render();
    clearTimeout(message.timer);
    if (sendFrame({ type: "message", text: message.text, client_id: message.client_id })) {
      // No answer on the socket in time: the same client_id by POST cannot store it twice.
      message.timer = setTimeout(function () {
        if (message.pending) post(message);
      }, ACK_WAIT_MS);
      return;
    }
    post(message);
  }

  function post(message) {
    request("POST", "/messages", { text: message.text, client_id: message.client_id })
      .then(function (stored) {
        acknowledge(message.client_id, stored.message_id);
      })
      .catch(function (error) {
        if (error.status === 401) forget();
        message.rejected = error.status === 422;
        fail(message);
      });
  }

  function acknowledge(clientId, messageId) {
    var message = byClientId(clientId);
    if (!message) return;
    clearTimeout(message.timer);
    message.id = messageId;
    message.pending = false;
    message.failed = false;
    render();
  }

  function fail(message) {
    clearTimeout(message.timer);
    message.pending = false;
    message.failed = true;
    render();
  }

  function resendWaiting() {
    state.messages.forEach(function (message) {
      if (message.direction === "inbound" && !message.id && !message.rejected) deliver(message);
    });
  }

  function markRead() {
    if (!state.open || document.visibilityState === "hidden" || !state.socketOpen) return;
    state.messages.forEach(function (message) {
      if (message.direction !== "outbound" || !message.id || message.status === "read") return;
      if (message.readSent) return;
      if (sendFrame({ type: "read", message_id: message.id })) message.readSent = true;
    });
  }

  // --- the live socket -----------------------------------------------------------------------

  function sendFrame(frame) {
    if (!state.socketOpen) return false;
    try {
      state.socket.send(JSON.stringify(frame));
      return true;
    } catch (error) {
      return false;
    }
  }

  function connect() {
    if (!state.token || state.socket) return;
    clearTimeout(state.retryTimer);
    var url = api.replace(/^http/, "ws") + "/ws?token=" + encodeURIComponent(state.token);
    var socket;
    try {
      socket = new WebSocket(url);
    } catch (error) {
      reconnectLater();
      return;
    }
    var opened = false;
    state.socket = socket;
    socket.onopen = function () {
      opened = true;
      state.socketOpen = true;
      state.retryDelay = 1000;
      setStatus("");
      state.pingTimer = setInterval(function () {
        sendFrame({ type: "ping" });
      }, PING_MS);
      loadHistory().then(resendWaiting);
    };
    socket.onmessage = function (event) {
      var frame;
      try {
        frame = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      onFrame(frame);
    };
    socket.onclose = function () {
      clearInterval(state.pingTimer);
      state.socket = null;
      state.socketOpen = false;
      if (!state.token) return;
      setStatus(state.config.strings.offline);
      // A refused socket says nothing about why; the history answers 401 for a stale token.
      if (!opened) loadHistory();
      reconnectLater();
    };
  }

  function reconnectLater() {
    if (!state.token) return;
    clearTimeout(state.retryTimer);
    state.retryTimer = setTimeout(connect, state.retryDelay);
    state.retryDelay = Math.min(state.retryDelay * 2, MAX_RETRY_MS);
  }

  function onFrame(frame) {
    if (frame.type === "message" && frame.message) {
      var added = upsert(frame.message);
      if (added && frame.message.direction === "outbound" && !state.open) {
        state.unread += 1;
        updateBadge();
      }
      render();
      markRead();
    } else if (frame.type === "ack") {
      acknowledge(frame.client_id, frame.message_id);
    } else if (frame.type === "receipt") {
      state.messages.forEach(function (message) {
        if (message.id === frame.message_id) message.status = frame.status;
      });
    } else if (frame.type === "error" && frame.client_id) {
      var message = byClientId(frame.client_id);
      if (message) {
        message.rejected = true;
        fail(message);
      }
    }
  }

  // --- start ---------------------------------------------------------------------------------

  function start() {
    request("GET", "/config?lang=" + encodeURIComponent(lang))
      .then(function (config) {
        state.config = config;
        build();
        render();
        if (state.token) connect();
      })
      .catch(function () {
        /* Hilos cannot be reached or this site is not allowed: show nothing */
      });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
