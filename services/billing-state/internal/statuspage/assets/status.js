// Live updates of the status page: server-sent events carry the display
// model whenever the customer's status changes. No framework, no build.
(function () {
  "use strict";
  var card = document.querySelector("main.card");
  var url = card && card.getAttribute("data-events");
  if (!url || !window.EventSource) { return; }
  var offline = document.getElementById("offline");
  function setText(id, text) {
    var el = document.getElementById(id);
    if (el) { el.textContent = text; }
  }
  function show(d) {
    card.setAttribute("data-tone", d.tone);
    card.setAttribute("data-kind", d.kind);
    setText("headline", d.headline);
    setText("detail", d.detail);
    var action = document.getElementById("action");
    if (d.href) {
      if (!action) {
        var p = document.createElement("p");
        p.className = "actions";
        action = document.createElement("a");
        action.id = "action";
        action.className = "action";
        p.appendChild(action);
        card.insertBefore(p, offline);
      }
      action.textContent = d.action_label;
      action.setAttribute("data-action", d.action);
      action.setAttribute("href", d.href);
      action.parentNode.hidden = false;
    } else if (action) {
      action.parentNode.hidden = true;
    }
  }
  var es = new EventSource(url);
  es.addEventListener("status", function (e) {
    offline.hidden = true;
    show(JSON.parse(e.data));
    // The page follows the status from here on.
    card.setAttribute("data-live", "true");
  });
  es.addEventListener("error", function () {
    if (es.readyState === EventSource.CLOSED) {
      offline.hidden = false;
      card.removeAttribute("data-live");
    }
  });
})();
