/*
 * The agent console's behaviour in the browser: live updates, the screen pop of ringing calls,
 * canned responses in the composer and keyboard shortcuts. Every page works without it.
 *
 * Live updates (server side: hilos/web/live.py). A page that updates live says so on its body:
 * data-live="inbox" or data-live="conversation" (with data-conversation-id). This script
 * listens to /console/events, which says only what changed (a topic and ids); when a change
 * concerns the page, it fetches the same page again with the agent's cookie and puts the
 * fresh parts in place:
 *   - [data-live-region]: replaced whole when it changed (inbox rows, status, customer sidebar);
 *   - [data-live-list]: merged item by item by id, so a thread gains its new messages at the
 *     end and a message whose delivery state moved is redrawn alone;
 *   - [data-live-field]: a form field that follows the page until the agent changes it (the
 *     reply channel, which defaults to the channel the customer last wrote on).
 * Nothing else is touched: a reply being typed stays as it is. The words it shows come from
 * the page (data-* of #live-status), which the server wrote in the agent's language.
 *
 * Screen pop. On every console page, a call.ringing event fetches /console/calls/<id>, which
 * answers with the pop-up (who calls, links to the conversation and the customer 360) only if
 * this agent may take the call; it goes into #screen-pops and leaves when dismissed (its
 * button or Esc) or when the call ends unanswered.
 *
 * Canned responses. The composer's picker (#canned-select) inserts the chosen response, already
 * rendered for this conversation by the server, where the cursor is; typing /shortcut in the
 * reply lists the matching responses, and Tab inserts the one that matches.
 *
 * Keyboard: g i (inbox), g c (customers), / (search customers), r (reply), ? (the list of
 * shortcuts at the foot of every page), Esc (close the newest call pop-up).
 *
 * Without JavaScript, or without EventSource, the console works the same, only not live.
 */
(function () {
  "use strict";

  var body = document.body;
  var page = body.getAttribute("data-live");

  // --- canned responses in the composer ------------------------------------------------------

  var replyText = document.getElementById("reply-text");
  var cannedSelect = document.getElementById("canned-select");
  var suggestions = document.getElementById("canned-suggestions");
  var canned = [];
  if (cannedSelect) {
    Array.prototype.forEach.call(cannedSelect.options, function (option) {
      if (option.value) {
        canned.push({
          shortcut: option.getAttribute("data-shortcut"),
          text: option.getAttribute("data-text"),
          label: option.textContent
        });
      }
    });
  }

  function insertText(text, start, end) {
    replyText.focus();
    if (start === undefined) {
      start = replyText.selectionStart;
      end = replyText.selectionEnd;
    }
    replyText.setRangeText(text, start, end, "end");
    hideSuggestions();
  }

  // The "/shortcut" being typed just before the cursor, if any.
  function typedShortcut() {
    var before = replyText.value.slice(0, replyText.selectionStart);
    var match = /(^|\s)\/([a-z0-9_-]*)$/.exec(before);
    if (!match) {
      return null;
    }
    return { prefix: match[2], start: before.length - match[2].length - 1 };
  }

  function matching(typed) {
    return canned.filter(function (item) {
      return item.shortcut.indexOf(typed.prefix) === 0;
    });
  }

  function hideSuggestions() {
    if (suggestions) {
      suggestions.hidden = true;
      suggestions.textContent = "";
    }
  }

  function showSuggestions() {
    var typed = typedShortcut();
    var found = typed ? matching(typed).slice(0, 6) : [];
    if (!found.length) {
      hideSuggestions();
      return;
    }
    suggestions.textContent = "";
    found.forEach(function (item) {
      var entry = document.createElement("li");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "quiet";
      button.textContent = item.label;
      button.addEventListener("click", function () {
        var now = typedShortcut();
        if (now) {
          insertText(item.text, now.start, replyText.selectionStart);
        } else {
          insertText(item.text);
        }
      });
      entry.appendChild(button);
      suggestions.appendChild(entry);
    });
    suggestions.hidden = false;
  }

  if (replyText && canned.length) {
    replyText.addEventListener("input", showSuggestions);
    replyText.addEventListener("keydown", function (event) {
      if (event.key !== "Tab" || event.shiftKey) {
        return;
      }
      var typed = typedShortcut();
      if (!typed) {
        return;
      }
      var found = matching(typed);
      var exact = found.filter(function (item) {
        return item.shortcut === typed.prefix;
      });
      var chosen = exact.length ? exact[0] : found.length === 1 ? found[0] : null;
      if (chosen) {
        event.preventDefault();
        insertText(chosen.text, typed.start, replyText.selectionStart);
      }
    });
    cannedSelect.addEventListener("change", function () {
      var option = cannedSelect.options[cannedSelect.selectedIndex];
      if (option && option.value) {
        insertText(option.getAttribute("data-text"));
        cannedSelect.value = "";
      }
    });
    document.getElementById("canned-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var option = cannedSelect.options[cannedSelect.selectedIndex];
      if (option && option.value) {
        insertText(option.getAttribute("data-text"));
        cannedSelect.value = "";
      }
    });
  }

  // --- screen pops ---------------------------------------------------------------------------

  var pops = document.getElementById("screen-pops");

  function dismissPop(pop) {
    if (pop && pop.parentNode) {
      pop.remove();
    }
  }

  if (pops) {
    pops.addEventListener("click", function (event) {
      var button = event.target.closest ? event.target.closest("[data-dismiss-pop]") : null;
      if (button) {
        dismissPop(button.closest(".screen-pop"));
      }
    });
  }

  function popCall(messageId) {
    if (!pops || !messageId || document.getElementById("call-" + messageId)) {
      return;
    }
    fetch("/console/calls/" + encodeURIComponent(messageId), {
      credentials: "same-origin",
      headers: { Accept: "text/html" }
    })
      .then(function (response) {
        // 404: not a call this agent takes, or it stopped ringing.
        return response.ok && !response.redirected ? response.text() : null;
      })
      .then(function (html) {
        if (html === null || document.getElementById("call-" + messageId)) {
          return;
        }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var pop = fresh.querySelector(".screen-pop");
        if (pop) {
          pops.appendChild(document.adoptNode(pop));
        }
      })
      .catch(function () {
        // A pop-up missed is not worth more than the call itself: nothing to retry.
      });
  }

  // --- keyboard shortcuts --------------------------------------------------------------------

  var pendingG = 0;

  function typing(target) {
    if (!target || !target.tagName) {
      return false;
    }
    var tag = target.tagName.toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable;
  }

  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && pops && pops.lastElementChild) {
      dismissPop(pops.lastElementChild);
      return;
    }
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) {
      return;
    }
    if (typing(event.target)) {
      return;
    }
    var key = event.key;
    if (pendingG && Date.now() - pendingG < 1500) {
      pendingG = 0;
      if (key === "i") {
        event.preventDefault();
        window.location.href = "/console";
        return;
      }
      if (key === "c") {
        event.preventDefault();
        window.location.href = "/console/customers";
        return;
      }
    }
    pendingG = 0;
    if (key === "g") {
      pendingG = Date.now();
    } else if (key === "/") {
      event.preventDefault();
      var search = document.getElementById("q");
      if (search) {
        search.focus();
        search.select();
      } else {
        window.location.href = "/console/customers";
      }
    } else if (key === "r" && replyText) {
      event.preventDefault();
      replyText.focus();
    } else if (key === "?") {
      var help = document.getElementById("shortcuts");
      if (help) {
        event.preventDefault();
        help.open = !help.open;
        if (help.open) {
          help.querySelector("summary").focus();
        }
      }
    }
  });

  // --- live updates --------------------------------------------------------------------------

  if (!window.EventSource || !window.fetch || !window.DOMParser) {
    return;
  }
  var conversationId = body.getAttribute("data-conversation-id");
  // Pages that do not update live still hear calls; the indicator is a live page's alone.
  var indicator =
    page || body.hasAttribute("data-supervisor-live")
      ? document.getElementById("live-status")
      : null;
  // The inbox lists conversations by their last activity, status, assignee and SLA.
  var INBOX_TOPICS = /^(message\.(received|queued)|conversation\.|sla\.)/;
  var CALL_OVER = /^call\.(ended|missed|voicemail)$/;
  var source = null;
  var loading = false;
  var again = false;
  var touched = {};

  document.addEventListener("change", function (event) {
    if (event.target && event.target.id) {
      touched[event.target.id] = true;
    }
  });

  function show(state) {
    if (!indicator) {
      return;
    }
    indicator.hidden = false;
    indicator.textContent = indicator.getAttribute("data-" + state) || "";
    indicator.setAttribute("data-state", state);
    body.setAttribute("data-live-state", state);
  }

  function stop() {
    if (source) {
      source.close();
      source = null;
    }
    show("stopped");
  }

  function concerns(change) {
    if (!page) {
      return false;
    }
    if (change.topic === "ready" || change.topic === "refresh") {
      return true;
    }
    if (page === "inbox") {
      return INBOX_TOPICS.test(change.topic);
    }
    return change.conversation_id === conversationId;
  }

  // Where the keyboard was, so that redrawing a part does not lose it.
  function focusKey(element) {
    if (!element || element === body) {
      return null;
    }
    if (element.id) {
      return "#" + CSS.escape(element.id);
    }
    var href = element.getAttribute("href");
    return href ? 'a[href="' + CSS.escape(href) + '"]' : null;
  }

  function idsWithin(element) {
    var ids = {};
    element.querySelectorAll("[data-live-item][id]").forEach(function (item) {
      ids[item.id] = true;
    });
    return ids;
  }

  function replaceRegion(old, fresh) {
    if (old.innerHTML === fresh.innerHTML) {
      return;
    }
    var focused = old.contains(document.activeElement) ? focusKey(document.activeElement) : null;
    var known = idsWithin(old);
    var adopted = document.adoptNode(fresh);
    old.replaceWith(adopted);
    adopted.querySelectorAll("[data-live-item][id]").forEach(function (item) {
      if (!known[item.id]) {
        item.classList.add("arrived");
      }
    });
    var target = focused && adopted.querySelector(focused);
    if (target) {
      target.focus();
    }
  }

  function mergeList(list, fresh) {
    var wanted = {};
    var previous = null;
    Array.prototype.slice.call(fresh.children).forEach(function (item) {
      wanted[item.id] = true;
      var current = item.id ? document.getElementById(item.id) : null;
      if (current && current.parentNode === list) {
        if (current.innerHTML !== item.innerHTML || current.className !== item.className) {
          var redrawn = document.adoptNode(item);
          current.replaceWith(redrawn);
          current = redrawn;
        }
      } else {
        current = document.adoptNode(item);
        current.classList.add("arrived");
        list.insertBefore(current, previous ? previous.nextSibling : list.firstChild);
      }
      previous = current;
    });
    Array.prototype.slice.call(list.children).forEach(function (child) {
      if (!wanted[child.id]) {
        child.remove();
      }
    });
  }

  function update(fresh) {
    document.querySelectorAll("[data-live-region]").forEach(function (old) {
      var next = fresh.getElementById(old.id);
      if (next) {
        replaceRegion(old, next);
      }
    });
    document.querySelectorAll("[data-live-list]").forEach(function (old) {
      var next = fresh.getElementById(old.id);
      if (next) {
        mergeList(old, next);
      }
    });
    document.querySelectorAll("[data-live-field]").forEach(function (old) {
      var next = fresh.getElementById(old.id);
      if (next && !touched[old.id] && old.outerHTML !== next.outerHTML) {
        var focused = document.activeElement === old;
        var adopted = document.adoptNode(next);
        old.replaceWith(adopted);
        if (focused) {
          adopted.focus();
        }
      }
    });
  }

  // One fetch at a time: changes that arrive meanwhile make one more, not one each.
  function refresh() {
    if (loading) {
      again = true;
      return;
    }
    loading = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        // Sent to the sign-in page, or the conversation is gone: stop rather than guess.
        if (!response.ok || response.redirected) {
          stop();
          return null;
        }
        return response.text();
      })
      .then(function (html) {
        if (html !== null) {
          update(new DOMParser().parseFromString(html, "text/html"));
        }
      })
      .catch(function () {
        // The network failed: the stream reconnects by itself and refreshes when it does.
      })
      .then(function () {
        loading = false;
        if (again && source) {
          again = false;
          refresh();
        }
      });
  }

  function connect() {
    source = new EventSource("/console/events");
    source.onmessage = function (event) {
      var change;
      try {
        change = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      if (change.topic === "ready") {
        show("connected");
      }
      // Other scripts of the page (the supervisor view) follow the same stream.
      document.dispatchEvent(new CustomEvent("hilos:change", { detail: change }));
      if (change.topic === "call.ringing") {
        popCall(change.message_id);
      } else if (CALL_OVER.test(change.topic) && change.message_id) {
        dismissPop(document.getElementById("call-" + change.message_id));
      }
      if (concerns(change)) {
        refresh();
      }
    };
    source.onerror = function () {
      // CLOSED: the server refused the stream (signed out); otherwise the browser retries.
      if (source && source.readyState === EventSource.CLOSED) {
        stop();
      } else {
        show("reconnecting");
      }
    };
  }

  connect();
})();
