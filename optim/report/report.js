/* DETR optimization report: sortable summary table and the accuracy-vs-latency scatter chart.
   Hand-written, no dependencies, so the page works offline. Text from the results is only ever
   inserted with textContent, never as HTML. */
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function fmt(value, digits) {
    return value === null || value === undefined ? "—" : Number(value).toFixed(digits);
  }

  function signed(value) {
    if (value === null || value === undefined) return "—";
    var text = Math.abs(value).toFixed(1);
    if (text === "0.0") return "±0.0";
    return (value > 0 ? "+" : "−") + text;
  }

  /* " [lo, hi]" for a 95 % interval, or nothing. */
  function range(pair, digits) {
    return pair ? " [" + fmt(pair[0], digits) + ", " + fmt(pair[1], digits) + "]" : "";
  }

  function signedRange(pair) {
    return pair ? " [" + signed(pair[0]) + ", " + signed(pair[1]) + "]" : "";
  }

  /* Round tick values covering [lo, hi] in 1-2-2.5-5 steps. */
  function niceTicks(lo, hi, count) {
    if (hi <= lo) hi = lo + 1;
    var raw = (hi - lo) / (count - 1);
    var mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 2.5, 5, 10].map(function (m) { return m * mag; }).filter(function (s) { return s >= raw; })[0];
    var ticks = [];
    for (var v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(+v.toFixed(10));
    if (ticks[ticks.length - 1] < hi) ticks.push(+(ticks[ticks.length - 1] + step).toFixed(10));
    return ticks;
  }

  /* ---------- sortable table ---------- */
  function initSorting(table) {
    var headers = table.querySelectorAll("th[data-sort]");
    headers.forEach(function (th, col) {
      function sort() {
        var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var ok = rows.filter(function (r) { return !r.dataset.failed; });
        var failed = rows.filter(function (r) { return r.dataset.failed; });
        var numeric = th.dataset.sort === "num";
        ok.sort(function (a, b) {
          var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
          if (x === "" || x === undefined) return 1;   /* not measured: always last */
          if (y === "" || y === undefined) return -1;
          if (numeric) return (parseFloat(x) - parseFloat(y)) * dir;
          return x.localeCompare(y) * dir;
        });
        ok.concat(failed).forEach(function (r) { body.appendChild(r); });
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (ev) { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); sort(); } });
    });
  }

  /* ---------- scatter chart ---------- */
  function overlaps(a, b) {
    return a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
  }

  function placeLabels(labels, obstacles, bounds) {
    var placed = obstacles.slice();
    labels.forEach(function (item) {
      var t = item.text, px = item.x, py = item.y;
      var options = [[10, 4, "start"], [-10, 4, "end"], [0, -12, "middle"], [0, 20, "middle"],
                     [10, -10, "start"], [10, 16, "start"], [-10, -10, "end"], [-10, 16, "end"]];
      var chosen = null, box = null;
      for (var i = 0; i < options.length; i++) {
        t.setAttribute("x", px + options[i][0]);
        t.setAttribute("y", py + options[i][1]);
        t.setAttribute("text-anchor", options[i][2]);
        box = t.getBBox();
        var inside = box.x >= bounds.x && box.x + box.width <= bounds.x + bounds.width &&
                     box.y >= bounds.y && box.y + box.height <= bounds.y + bounds.height;
        if (inside && !placed.some(function (p) { return overlaps(box, p); })) { chosen = options[i]; break; }
      }
      if (!chosen) {   /* crowded: keep the first position that stays inside the plot */
        t.setAttribute("x", px + (px > bounds.x + bounds.width * 0.7 ? -10 : 10));
        t.setAttribute("y", py + 4);
        t.setAttribute("text-anchor", px > bounds.x + bounds.width * 0.7 ? "end" : "start");
        box = t.getBBox();
      }
      placed.push({ x: box.x - 2, y: box.y - 1, width: box.width + 4, height: box.height + 2 });
    });
  }

  /* Axis ticks around the values, padded, never below 0 (latency and mAP are not negative);
     snapToZero starts the axis at 0 when the values are not far from it anyway. */
  function domain(values, padFraction, minPad, snapToZero, max) {
    var lo = Math.min.apply(null, values), hi = Math.max.apply(null, values);
    var pad = Math.max((hi - lo) * padFraction, minPad);
    lo = Math.max(lo - pad, 0); hi = Math.min(hi + pad, max);
    if (snapToZero && lo < hi * 0.45) lo = 0;
    return niceTicks(lo, hi, 6);
  }

  function drawScatter(svg, data, tooltip) {
    var points = data.points;
    var W = 960, H = 460, m = { l: 66, r: 28, t: 18, b: 56 };
    if (!points.length) {
      var msg = el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", "class": "empty" }, svg);
      msg.textContent = "No successful variant has both accuracy and latency.";
      return;
    }
    /* Axes cover the 95 % intervals too, so every error bar is drawn whole. */
    var latencies = [], maps = [];
    points.forEach(function (p) {
      latencies.push(p.p50); maps.push(p.map);
      if (p.p50_ci) latencies.push(p.p50_ci[0], p.p50_ci[1]);
      if (p.map_ci) maps.push(p.map_ci[0], p.map_ci[1]);
    });
    var xt = domain(latencies, 0.12, 0.05 * Math.max.apply(null, latencies), true, Infinity);
    var yt = domain(maps, 0.15, 0.5, false, 100);
    var x0 = xt[0], x1 = xt[xt.length - 1], y0 = yt[0], y1 = yt[yt.length - 1];
    var X = function (v) { return m.l + (v - x0) / (x1 - x0) * (W - m.l - m.r); };
    var Y = function (v) { return H - m.b - (v - y0) / (y1 - y0) * (H - m.t - m.b); };

    var axes = el("g", { "class": "axes" }, svg);
    xt.forEach(function (v) {
      el("line", { "class": "grid", x1: X(v), x2: X(v), y1: m.t, y2: H - m.b }, axes);
      el("text", { "class": "tick", x: X(v), y: H - m.b + 18, "text-anchor": "middle" }, axes).textContent = +v.toFixed(3);
    });
    yt.forEach(function (v) {
      el("line", { "class": "grid", x1: m.l, x2: W - m.r, y1: Y(v), y2: Y(v) }, axes);
      el("text", { "class": "tick", x: m.l - 8, y: Y(v) + 4, "text-anchor": "end" }, axes).textContent = +v.toFixed(2);
    });
    el("rect", { "class": "frame", x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b }, axes);
    el("text", { "class": "axis-title", x: (m.l + W - m.r) / 2, y: H - 12, "text-anchor": "middle" }, axes)
      .textContent = "p50 latency at batch " + data.batch + " (ms)  ← faster";
    el("text", { "class": "axis-title", transform: "translate(18," + (m.t + H - m.b) / 2 + ") rotate(-90)", "text-anchor": "middle" }, axes)
      .textContent = "mAP@[.5:.95]  more accurate →";

    /* Pareto frontier as a step line: with a latency budget x, the best reachable mAP is flat until the
       next frontier point, then jumps up; beyond the slowest frontier point it stays flat. */
    var byName = {};
    points.forEach(function (p) { byName[p.name] = p; });
    var front = data.frontier.map(function (n) { return byName[n]; }).filter(Boolean);
    if (front.length) {
      var d = "M" + X(front[0].p50) + "," + Y(front[0].map);
      for (var i = 1; i < front.length; i++) d += " H" + X(front[i].p50) + " V" + Y(front[i].map);
      d += " H" + (W - m.r);
      var area = d + " V" + (H - m.b) + " H" + X(front[0].p50) + " Z";
      el("path", { "class": "pareto-area", d: area }, svg);
      el("path", { "class": "pareto-line", d: d }, svg);
    }

    var layer = el("g", { "class": "points" }, svg);
    var labels = [], obstacles = [];
    /* Keep labels off the frontier's segments as well as off the points. */
    front.forEach(function (p, i) {
      var next = front[i + 1], xa = X(p.p50), ya = Y(p.map);
      var xb = next ? X(next.p50) : W - m.r;
      obstacles.push({ x: xa, y: ya - 2, width: xb - xa, height: 4 });
      if (next) obstacles.push({ x: xb - 2, y: Y(next.map), width: 4, height: ya - Y(next.map) });
    });
    /* Draw frontier points last so they sit on top. */
    points.slice().sort(function (a, b) { return a.pareto - b.pareto; }).forEach(function (p) {
      var cx = X(p.p50), cy = Y(p.map);
      var g = el("g", { "class": "point-group", tabindex: "0" }, layer);
      /* Error bars: the 95 % interval of p50 (horizontal) and of mAP (vertical), with end caps. */
      if (p.p50_ci) {
        var xa = X(p.p50_ci[0]), xb = X(p.p50_ci[1]);
        el("path", { "class": "errbar", d: "M" + xa + "," + cy + " H" + xb + " M" + xa + "," + (cy - 4) + " V" + (cy + 4) +
                     " M" + xb + "," + (cy - 4) + " V" + (cy + 4), stroke: p.color }, g);
      }
      if (p.map_ci) {
        var ya = Y(p.map_ci[0]), yb = Y(p.map_ci[1]);
        el("path", { "class": "errbar", d: "M" + cx + "," + ya + " V" + yb + " M" + (cx - 4) + "," + ya + " H" + (cx + 4) +
                     " M" + (cx - 4) + "," + yb + " H" + (cx + 4), stroke: p.color }, g);
      }
      if (p.baseline) el("circle", { "class": "baseline-ring", cx: cx, cy: cy, r: 12 }, g);
      var c = el("circle", { "class": "point" + (p.pareto ? " pareto" : "") + (p.baseline ? " baseline" : ""),
                             cx: cx, cy: cy, r: p.pareto ? 7 : 6, fill: p.color }, g);
      c.dataset.name = p.name;
      var t = el("text", { "class": "point-label" + (p.pareto ? " pareto" : "") }, layer);
      t.textContent = p.name + (p.baseline ? " (baseline)" : "");
      labels.push({ text: t, x: cx, y: cy });
      obstacles.push({ x: cx - 8, y: cy - 8, width: 16, height: 16 });
      g.addEventListener("mouseenter", function () { showTip(p, cx, cy); c.classList.add("hl"); });
      g.addEventListener("mouseleave", function () { tooltip.hidden = true; c.classList.remove("hl"); });
      g.addEventListener("focus", function () { showTip(p, cx, cy); });
      g.addEventListener("blur", function () { tooltip.hidden = true; });
      g.addEventListener("click", function () { location.hash = "#" + p.anchor; });
    });
    placeLabels(labels, obstacles, { x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b });

    function showTip(p, cx, cy) {
      tooltip.textContent = "";
      var title = document.createElement("b");
      title.textContent = p.name;
      tooltip.appendChild(title);
      var sub = document.createElement("div");
      sub.className = "tip-sub";
      sub.textContent = p.engine + " · " + p.precision + (p.baseline ? " · baseline" : "") + (p.pareto ? " · Pareto" : "");
      tooltip.appendChild(sub);
      [["mAP", fmt(p.map, 1) + range(p.map_ci, 1)], ["Δ vs baseline", signed(p.delta) + " pts" + signedRange(p.delta_ci)],
       ["mAP@.5", fmt(p.map50, 1)], ["p50", fmt(p.p50, 2) + " ms" + range(p.p50_ci, 2)], ["p99", fmt(p.p99, 2) + " ms"],
       ["speedup", p.speedup === null ? "—" : fmt(p.speedup, 2) + "×" + range(p.speedup_ci, 2)],
       ["size", fmt(p.size_mb, 1) + " MB"]
      ].forEach(function (row) {
        var line = document.createElement("div");
        var k = document.createElement("span"), v = document.createElement("span");
        k.textContent = row[0]; v.textContent = row[1];
        line.appendChild(k); line.appendChild(v);
        tooltip.appendChild(line);
      });
      var rect = svg.getBoundingClientRect(), scale = rect.width / W;
      tooltip.hidden = false;
      var left = cx * scale + 14, top = cy * scale - 10;
      if (left + tooltip.offsetWidth > rect.width) left = cx * scale - tooltip.offsetWidth - 14;
      tooltip.style.left = left + "px";
      tooltip.style.top = Math.max(0, top) + "px";
    }
  }

  /* Hovering a summary row highlights its point in the chart. */
  function linkRows(table, svg) {
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      var name = row.dataset.point;
      if (!name) return;
      var circle = Array.prototype.filter.call(svg.querySelectorAll("circle.point"),
        function (c) { return c.dataset.name === name; })[0];
      if (!circle) return;
      row.addEventListener("mouseenter", function () { circle.classList.add("hl"); });
      row.addEventListener("mouseleave", function () { circle.classList.remove("hl"); });
    });
  }

  var table = document.getElementById("summary-table");
  if (table) initSorting(table);
  var dataNode = document.getElementById("report-data");
  var svg = document.getElementById("scatter");
  if (dataNode && svg) {
    drawScatter(svg, JSON.parse(dataNode.textContent), document.getElementById("tooltip"));
    if (table) linkRows(table, svg);
  }
})();
