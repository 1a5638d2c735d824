/*
 * Live updates of the agent console (server side: hilos/web/live.py).
 *
 * A page that updates live says so on its body: data-live="inbox" or data-live="conversation"
 * (with data-conversation-id). This script listens to /console/events, which says only what
 * changed (a topic and ids); when a change concerns the page, it fetches the same page again
 * with the agent's cookie and puts the fresh parts in place:
 *   - [data-live-region]: replaced whole when it changed (inbox rows, status, customer sidebar);
 *   - [data-live-list]: merged item by item by id, so a thread gains its new messages at the
 *     end and a message whose delivery state moved is redrawn alone;
 *   - [data-live-field]: a form field that follows the page until the agent changes it (the
 *     reply channel, which defaults to the channel the customer last wrote on).
 * Nothing else is touched: a reply being typed stays as it is. The words it shows come from
 * the page (data-* of #live-status), which the server wrote in the agent's language.
 *
 * Without JavaScript, or without EventSource, the console works the same, only not live.
 */
(function () {
  "use strict";

  var body = document.body;
  var page = body.getAttribute("data-live");
  if (!page || !window.EventSource || !window.fetch || !window.DOMParser) {
    return;
  }
  var conversationId = body.getAttribute("data-conversation-id");
  var indicator = document.getElementById("live-status");
  // The inbox lists conversations by their last activity and status.
  var INBOX_TOPICS = /^(message\.(received|queued)|conversation\.)/;
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
