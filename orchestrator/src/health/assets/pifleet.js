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
    if (el && typeof html === "string") el.innerHTML = html;
  }

  // An update carries every node id in order, and the cards that changed since the
  // previous update on this connection (all of them on the first).
  function apply(u) {
    skew = u.at - Date.now() / 1000;
    setHtml("summary", u.summary);
    setHtml("queue", u.queue);
    setHtml("failures", u.failures);
    setHtml("work", u.work);
    var grid = document.getElementById("nodes");
    var old = {};
    var cards = grid.querySelectorAll("article.node");
    for (var i = 0; i < cards.length; i++) old[cards[i].getAttribute("data-id")] = cards[i];
    var fresh = {};
    for (var j = 0; j < u.nodes.length; j++) fresh[u.nodes[j].id] = u.nodes[j].html;
    if (u.order.length === 0) {
      grid.innerHTML = u.empty;
    } else {
      var empty = grid.querySelector(".empty");
      if (empty) empty.remove();
      var keep = {};
      for (var k = 0; k < u.order.length; k++) {
        var id = u.order[k];
        keep[id] = true;
        var el = old[id];
        if (Object.prototype.hasOwnProperty.call(fresh, id)) {
          var card = fromHtml(fresh[id]);
          if (el) el.replaceWith(card);
          el = card;
        }
        if (!el) continue;
        if (grid.children[k] !== el) grid.insertBefore(el, grid.children[k] || null);
      }
      for (var gone in old) if (!keep[gone]) old[gone].remove();
    }
    var asof = document.getElementById("asof");
    if (asof) asof.setAttribute("data-ts", u.at);
    tick();
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
