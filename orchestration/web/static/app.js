// The dashboard's only script: live updates of the run page, and a confirmation before rejecting.
(function () {
  "use strict";

  function followRun(live) {
    var indicator = document.getElementById("live-indicator");
    var timer = null;
    var last = 0;
    var MIN_INTERVAL_MS = 1000; // a busy run redraws at most once a second
    function say(text, connected) {
      if (!indicator) return;
      indicator.textContent = text;
      indicator.setAttribute("data-connected", connected ? "1" : "0");
    }
    function refresh() {
      timer = null;
      last = Date.now();
      fetch(live.getAttribute("data-refresh"), { credentials: "same-origin" })
        .then(function (response) {
          if (response.redirected) { window.location.href = response.url; return null; }
          return response.ok ? response.text() : null;
        })
        .then(function (html) { if (html !== null) live.innerHTML = html; })
        .catch(function () { /* the next event tries again */ });
    }
    function schedule() {
      if (timer === null) timer = setTimeout(refresh, Math.max(250, last + MIN_INTERVAL_MS - Date.now()));
    }
    var source = new EventSource(live.getAttribute("data-stream"));
    source.addEventListener("open", function () { say("live: following the run's events", true); });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        say("the event stream closed (has the session expired?): reload the page", false);
      } else {
        say("reconnecting to the event stream…", false);
      }
    });
    source.addEventListener("event", schedule);
    source.addEventListener("transition", schedule);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var live = document.getElementById("live");
    if (live && window.EventSource) followRun(live);
    document.querySelectorAll("button[data-confirm]").forEach(function (button) {
      button.addEventListener("click", function (event) {
        if (!window.confirm(button.getAttribute("data-confirm"))) event.preventDefault();
      });
    });
  });
})();
