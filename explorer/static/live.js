// Live updates without reloading: /events says when the mirror's cursor moves; the page's own
// URL is fetched again and <main>'s content swapped in. Without JavaScript the pages still work.
(function () {
  "use strict";
  if (!window.EventSource || !window.fetch || !window.DOMParser) return;
  var shown = document.body.getAttribute("data-cursor");
  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(window.location.href, { headers: { "X-Explorer-Live": "1" }, cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("main"), main = document.getElementById("main");
        if (!fresh || !main) return;
        var open = Array.prototype.map.call(main.querySelectorAll("details[open]"), function (d) { return d.id; });
        main.innerHTML = fresh.innerHTML;
        open.forEach(function (id) { var d = id && document.getElementById(id); if (d) d.open = true; });
        document.body.setAttribute("data-cursor", doc.body.getAttribute("data-cursor") || "");
      })
      .catch(function () {})
      .then(function () { busy = false; if (again) { again = false; refresh(); } });
  }
  var events = null;
  function listen() {
    events = new EventSource("/events");
    events.addEventListener("cursor", function (e) {
      var cursor;
      try { cursor = String(JSON.parse(e.data).cursor); } catch (err) { return; }
      if (cursor !== shown) { shown = cursor; refresh(); }
    });
  }
  // A page left for another stays in the back/forward cache with its stream open: close it,
  // or six such pages hold every connection the browser allows this server and the next
  // page waits. Coming back, listen again (the cursor catches up at once).
  window.addEventListener("pagehide", function () { if (events) { events.close(); events = null; } });
  window.addEventListener("pageshow", function () { if (!events) listen(); });
  listen();
})();
