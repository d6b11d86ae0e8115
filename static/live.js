// Live admin pages: every two seconds, fetch /admin/live and copy its
// numbers into the elements marked data-live="key". Plain script, no
// build step; without it the pages are the same, only frozen at load.
(function () {
  "use strict";
  var me = document.currentScript;
  if (!me || !window.fetch || !document.querySelectorAll) return;
  var query = "?range=" + encodeURIComponent(me.getAttribute("data-range") || "24h");
  if (me.getAttribute("data-charts") === "1") query += "&charts=1";
  var status = document.getElementById("live-status");
  var EVERY = 2000, MAX_WAIT = 30000;
  var failures = 0;

  function say(text) {
    if (status) status.textContent = text;
  }

  function setClass(el, cls) {
    var keep = (el.getAttribute("class") || "").split(/\s+/).filter(function (c) {
      return c && c.indexOf("state-") !== 0;
    });
    keep.push(cls);
    el.setAttribute("class", keep.join(" "));
  }

  function apply(d) {
    var els = document.querySelectorAll("[data-live]");
    for (var i = 0; i < els.length; i++) {
      var el = els[i], k = el.getAttribute("data-live");
      if (Object.prototype.hasOwnProperty.call(d.html, k)) {
        // Our own markup (numbers-only SVG, escaped names): replace only
        // when it changed, so a chart does not flicker.
        if (el.liveHtml !== d.html[k]) {
          el.innerHTML = d.html[k];
          el.liveHtml = d.html[k];
        }
      } else if (Object.prototype.hasOwnProperty.call(d.text, k) && el.textContent !== d.text[k]) {
        el.textContent = d.text[k];
      }
      if (Object.prototype.hasOwnProperty.call(d["class"], k)) setClass(el, d["class"][k]);
    }
    say("Live: updated " + d.updated);
  }

  function schedule() {
    var wait = Math.min(EVERY * Math.pow(2, failures), MAX_WAIT);
    setTimeout(tick, wait);
  }

  function tick() {
    // A background tab asks for nothing until it is looked at again.
    if (document.hidden) return schedule();
    fetch("/admin/live" + query, {
      credentials: "same-origin",
      headers: { Accept: "application/json" }
    })
      .then(function (r) {
        var type = r.headers.get("content-type") || "";
        // An ended session answers with the login page, not JSON.
        if (r.status !== 200 || type.indexOf("application/json") !== 0) {
          throw new Error(r.status === 200 ? "logged out?" : "HTTP " + r.status);
        }
        return r.json();
      })
      .then(function (d) {
        failures = 0;
        apply(d);
      })
      .catch(function (e) {
        failures += 1;
        say("Live updates paused (" + e.message + "); reload the page to retry now.");
      })
      .then(schedule);
  }

  say("Live: updating every " + EVERY / 1000 + " s");
  schedule();
})();
