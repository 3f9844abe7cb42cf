// pifleet status page: keeps the server-rendered page live over server-sent events.
// The server sends the same HTML fragments it renders the page from; this script only
// swaps them in (a card is replaced only when it changed) and ticks the "ago" times.
"use strict";
(function () {
  var live = document.getElementById("live");
  var skew = 0; // server clock minus ours, from the last event

  function ago(ts) {
    var s = Math.max(0, Math.floor(Date.now() / 1000 + skew - ts));
    if (s < 60) return s + "s ago";
    if (s < 3600) return Math.floor(s / 60) + "m ago";
    if (s < 86400) return Math.floor(s / 3600) + "h ago";
    return Math.floor(s / 86400) + "d ago";
  }

  function tick() {
    var times = document.querySelectorAll("time[data-ts]");
    for (var i = 0; i < times.length; i++) {
      times[i].textContent = ago(parseFloat(times[i].getAttribute("data-ts")));
    }
  }

  function fromHtml(html) {
    var t = document.createElement("template");
    t.innerHTML = html;
    return t.content.firstElementChild;
  }

  function setHtml(id, html) {
    var el = document.getElementById(id);
    if (el && el.innerHTML !== html) el.innerHTML = html;
  }

  function apply(f) {
    skew = f.at - Date.now() / 1000;
    setHtml("summary", f.summary);
    setHtml("queue", f.queue);
    setHtml("failures", f.failures);
    var grid = document.getElementById("nodes");
    var old = {};
    var cards = grid.querySelectorAll("article.node");
    for (var i = 0; i < cards.length; i++) old[cards[i].getAttribute("data-id")] = cards[i];
    if (f.nodes.length === 0) {
      grid.innerHTML = f.empty;
    } else {
      var empty = grid.querySelector(".empty");
      if (empty) empty.remove();
      var seen = {};
      for (var j = 0; j < f.nodes.length; j++) {
        var n = f.nodes[j];
        seen[n.id] = true;
        var el = old[n.id];
        if (!el || el.__html !== n.html) {
          var fresh = fromHtml(n.html);
          fresh.__html = n.html;
          if (el) el.replaceWith(fresh);
          el = fresh;
        }
        grid.appendChild(el); // keeps the server's order
      }
      for (var id in old) if (!seen[id]) old[id].remove();
    }
    var asof = document.getElementById("asof");
    if (asof) asof.setAttribute("data-ts", f.at);
    tick();
    if (asof) asof.textContent = ago(f.at);
  }

  function connect() {
    if (!window.EventSource) return;
    var token = new URLSearchParams(location.search).get("token");
    var url = "/api/events" + (token ? "?token=" + encodeURIComponent(token) : "");
    var es = new EventSource(url);
    es.addEventListener("fleet", function (e) {
      apply(JSON.parse(e.data));
    });
    es.onopen = function () {
      live.textContent = "live";
      live.className = "live on";
    };
    es.onerror = function () {
      live.textContent = "reconnecting";
      live.className = "live off";
    };
  }

  setInterval(tick, 1000);
  connect();
})();
