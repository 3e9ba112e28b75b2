// Overview: fetch each experiment's verdict after the page has rendered (a report per experiment
// is too slow to compute for all of them before the first byte). Without this file the row links
// to the report. Text only (textContent), never HTML.
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  var cells = document.querySelectorAll("td[data-verdict-url]");
  cells.forEach(function (cell) {
    if (cell.querySelector(".muted")) { return; }  // drafts have no report yet
    var link = cell.querySelector("a");
    fetch(cell.dataset.verdictUrl, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.json(); })
      .then(function (data) {
        var badge = document.createElement("span");
        badge.className = "verdict-badge verdict-" + String(data.kind).replace(/[^a-z_]/g, "");
        badge.textContent = data.label;
        var text = document.createElement("span");
        text.className = "verdict-text";
        text.textContent = " " + data.text + " ";
        cell.replaceChildren(badge, text);
        if (link) { cell.appendChild(link); }
      })
      .catch(function () { /* keep the link to the report */ });
  });
})();
