/*
 * Live updates of the supervisor view (server side: hilos/web/supervisor.py and live.py).
 *
 * The page's body carries data-supervisor-live. This script listens to /console/events,
 * which says only what changed (a topic and ids); when conversations, agents' presence or
 * SLAs change it fetches the page again with the supervisor's cookie and replaces each
 * [data-live-region] whose content changed. Between two refreshes it counts every
 * [data-seconds] duration (waits, idle times) up by itself, once a second. The words it shows
 * come from the page (data-* of #live-status), which the server wrote in the reader's language.
 *
 * Without JavaScript, or without EventSource, the page works the same, only not live.
 */
(function () {
  "use strict";

  var body = document.body;
  if (!body.hasAttribute("data-supervisor-live") || !window.EventSource || !window.fetch ||
      !window.DOMParser) {
    return;
  }
  var indicator = document.getElementById("live-status");
  var TOPICS = /^(conversation\.|message\.(received|queued|noted)|agent\.|sla\.)/;
  var source = null;
  var loading = false;
  var again = false;

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

  function two(n) {
    return (n < 10 ? "0" : "") + n;
  }

  // The same format as the template's duration macro: m:ss, or h:mm:ss from an hour on.
  function duration(seconds) {
    var hours = Math.floor(seconds / 3600);
    var minutes = Math.floor((seconds % 3600) / 60);
    var rest = seconds % 60;
    if (hours > 0) {
      return hours + ":" + two(minutes) + ":" + two(rest);
    }
    return minutes + ":" + two(rest);
  }

  function tick() {
    var moment = Date.now();
    document.querySelectorAll("[data-seconds]").forEach(function (element) {
      if (element.hilosSince === undefined) {
        element.hilosSince = moment;
      }
      var base = parseInt(element.getAttribute("data-seconds"), 10) || 0;
      element.textContent = duration(base + Math.floor((moment - element.hilosSince) / 1000));
    });
  }

  function update(fresh) {
    document.querySelectorAll("[data-live-region]").forEach(function (old) {
      var next = fresh.getElementById(old.id);
      if (!next || old.innerHTML === next.innerHTML) {
        return;
      }
      var focused = old.contains(document.activeElement) && document.activeElement.getAttribute
        ? document.activeElement.getAttribute("href")
        : null;
      var adopted = document.adoptNode(next);
      old.replaceWith(adopted);
      if (focused) {
        var target = adopted.querySelector('a[href="' + CSS.escape(focused) + '"]');
        if (target) {
          target.focus();
        }
      }
    });
    tick();
  }

  // One fetch at a time: changes that arrive meanwhile make one more, not one each.
  function refresh() {
    if (loading) {
      again = true;
      return;
    }
    loading = true;
    fetch(window.location.pathname, {
      credentials: "same-origin",
      headers: { Accept: "text/html" }
    })
      .then(function (response) {
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
      if (change.topic === "ready" || change.topic === "refresh" || TOPICS.test(change.topic)) {
        refresh();
      }
    };
    source.onerror = function () {
      if (source && source.readyState === EventSource.CLOSED) {
        stop();
      } else {
        show("reconnecting");
      }
    };
  }

  tick();
  window.setInterval(tick, 1000);
  connect();
})();
