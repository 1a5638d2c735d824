/*
 * Live updates of the supervisor view (server side: hilos/web/supervisor.py and live.py).
 *
 * The page's body carries data-supervisor-live. console.js holds the page's one connection to
 * /console/events (which says only what changed: a topic and ids) and passes each change on as
 * a "hilos:change" event; when conversations, agents' presence or SLAs change this script
 * fetches the page again with the supervisor's cookie and replaces each [data-live-region]
 * whose content changed. Between two refreshes it counts every [data-seconds] duration (waits,
 * idle times) up by itself, once a second.
 *
 * Without JavaScript, or without EventSource, the page works the same, only not live.
 */
(function () {
  "use strict";

  var body = document.body;
  if (!body.hasAttribute("data-supervisor-live") || !window.fetch || !window.DOMParser) {
    return;
  }
  var TOPICS = /^(conversation\.|message\.(received|queued|noted)|agent\.|sla\.)/;
  var loading = false;
  var again = false;
  var stopped = false;

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
        // Signed out, or no longer a supervisor: stop rather than guess.
        if (!response.ok || response.redirected) {
          stopped = true;
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
        if (again && !stopped) {
          again = false;
          refresh();
        }
      });
  }

  document.addEventListener("hilos:change", function (event) {
    var topic = event.detail && event.detail.topic;
    if (!stopped && (topic === "ready" || topic === "refresh" || TOPICS.test(topic || ""))) {
      refresh();
    }
  });

  tick();
  window.setInterval(tick, 1000);
})();
