// Live sample-size planner: asks /experiments/plan while the inputs change and shows the answer.
// The page works without this file (the "Recalculate" button posts the form).
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  var box = document.getElementById("planner");
  var out = document.getElementById("plan-output");
  if (!box || !out) { return; }
  var form = box.closest("form");
  var timer = null;
  var seq = 0;

  function val(id) { var el = document.getElementById(id); return el ? el.value.trim() : ""; }
  function frac(id) { var v = val(id).replace(/[,%]/g, ""); return v === "" ? "" : String(Number(v) / 100); }

  function params() {
    var rows = form.querySelectorAll(".variant-row");
    var segs = {};
    form.querySelectorAll("input[name$='.segment']").forEach(function (el) {
      if (el.value.trim()) { segs[el.value.trim()] = true; }
    });
    var keys = Object.keys(segs);
    var q = new URLSearchParams({
      baseline: frac("baseline_rate"), mde: frac("mde_relative"), alpha: frac("alpha"), power: frac("power"),
      variants: String(Math.max(2, rows.length)), segment: keys.length === 1 ? keys[0] : ""
    });
    return q.toString();
  }

  function line(text, cls) {
    var p = document.createElement("p");
    if (cls) { p.className = cls; }
    p.textContent = text;
    return p;
  }

  function render(data) {
    out.replaceChildren();
    if (data.error) { out.appendChild(line(data.message, "muted")); return; }
    var main = line("", "plan-main");
    var strong = document.createElement("strong");
    strong.id = "plan-per-variant";
    strong.textContent = data.text.sends_per_variant;
    main.appendChild(strong);
    main.appendChild(document.createTextNode(" (" + data.text.total + ")"));
    out.appendChild(main);
    out.appendChild(line(data.text.duration));
  }

  function update() {
    var mine = ++seq;
    fetch(box.dataset.planUrl + "?" + params(), {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json(); })
      .then(function (data) { if (mine === seq) { render(data); } })
      .catch(function () { /* keep the last answer; the Recalculate button still works */ });
  }

  form.addEventListener("input", function (ev) {
    var name = ev.target.name || "";
    if (["baseline_rate", "mde_relative", "alpha", "power"].indexOf(name) >= 0 || /\.segment$/.test(name)) {
      clearTimeout(timer);
      timer = setTimeout(update, 250);
    }
  });
})();
