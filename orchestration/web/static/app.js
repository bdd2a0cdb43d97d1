// The dashboard's only script: live updates of the run page, attempts' output as it comes, and a
// confirmation before rejecting.
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
        .then(function (html) {
          if (html !== null) { live.innerHTML = html; syncRunningOutput(); }
        })
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

  var MAX_LOG_CHARS = 200000; // a page keeps this much of an attempt's output; older text goes
  var followed = {}; // stream URL -> EventSource, so a re-rendered run page opens none twice

  // Follow one attempt's output: append each streamed piece; stop when the attempt is over.
  function followLog(pre) {
    var url = pre.getAttribute("data-stream");
    if (!url || followed[url] || !window.EventSource) return;
    var box = pre.closest(".attempt-output, section");
    var state = box ? box.querySelector(".log-state") : null;
    function say(text) { if (state) state.textContent = text; }
    var sep = url.indexOf("?") < 0 ? "?" : "&";
    var source = new EventSource(url + sep + "offset=" + (pre.getAttribute("data-offset") || "0"));
    followed[url] = source;
    source.addEventListener("open", function () { say("live"); });
    source.addEventListener("output", function (event) {
      var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.appendChild(document.createTextNode(JSON.parse(event.data).text));
      if (pre.textContent.length > MAX_LOG_CHARS) {
        pre.textContent = pre.textContent.slice(-MAX_LOG_CHARS);
      }
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    });
    source.addEventListener("end", function () {
      source.close();
      pre.setAttribute("data-ended", "1");
      say("attempt over");
    });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) say("the output stream closed: reload the page");
    });
  }

  // After the run page's live part is re-rendered: follow attempts that started meanwhile.
  function syncRunningOutput() {
    var list = document.getElementById("running-list");
    var section = document.getElementById("running-output");
    if (!list || !section) return;
    var items = list.querySelectorAll("li[data-key]");
    var empty = document.getElementById("running-output-empty");
    if (empty) empty.hidden = items.length > 0 || section.querySelector(".attempt-output") !== null;
    items.forEach(function (item) {
      var key = item.getAttribute("data-key");
      if (section.querySelector('.attempt-output[data-key="' + CSS.escape(key) + '"]')) return;
      var box = document.createElement("div");
      box.className = "attempt-output";
      box.setAttribute("data-key", key);
      var title = document.createElement("h3");
      title.textContent = item.getAttribute("data-task") + ", attempt " + item.getAttribute("data-attempt") + " ";
      var state = document.createElement("small");
      state.className = "log-state";
      title.appendChild(state);
      var pre = document.createElement("pre");
      pre.className = "attempt-log";
      pre.setAttribute("data-stream", item.getAttribute("data-stream"));
      pre.setAttribute("data-offset", "0");
      box.appendChild(title);
      box.appendChild(pre);
      section.appendChild(box);
      followLog(pre);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var live = document.getElementById("live");
    if (live && window.EventSource) followRun(live);
    document.querySelectorAll("pre.attempt-log[data-stream]").forEach(followLog);
    document.querySelectorAll("button[data-confirm]").forEach(function (button) {
      button.addEventListener("click", function (event) {
        if (!window.confirm(button.getAttribute("data-confirm"))) event.preventDefault();
      });
    });
  });
})();
