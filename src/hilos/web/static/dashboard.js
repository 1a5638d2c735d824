/*
 * The dashboard's live figures and the report's print button (server side:
 * hilos/web/dashboard.py).
 *
 * On the dashboard, body[data-dashboard-live] holds how often (seconds) to refresh and
 * body[data-live-url] where from: today's figures alone, under the page's filters. This script
 * fetches that address and swaps in each [data-live-region] whose content changed. It pauses
 * while the tab is hidden and refreshes when it shows again. On the report, [data-print]
 * prints the page.
 *
 * Without JavaScript the page is the same, only not live: reloading it refreshes the figures.
 */
(function () {
  "use strict";

  document.querySelectorAll("[data-print]").forEach(function (button) {
    button.addEventListener("click", function () {
      window.print();
    });
  });

  var body = document.body;
  var every = parseInt(body.getAttribute("data-dashboard-live") || "", 10);
  var source = body.getAttribute("data-live-url") || window.location.href;
  if (!every || !window.fetch || !window.DOMParser) {
    return;
  }
  var loading = false;
  var stopped = false;

  function update(fresh) {
    document.querySelectorAll("[data-live-region]").forEach(function (old) {
      var next = fresh.getElementById(old.id);
      if (next && old.innerHTML !== next.innerHTML) {
        old.replaceWith(document.adoptNode(next));
      }
    });
  }

  function refresh() {
    if (loading || stopped || document.hidden) {
      return;
    }
    loading = true;
    fetch(source, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        // Signed out, or no longer allowed: stop rather than guess.
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
        // The network failed: the next round tries again.
      })
      .then(function () {
        loading = false;
      });
  }

  window.setInterval(refresh, every * 1000);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      refresh();
    }
  });
})();
