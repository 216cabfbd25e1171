// Draws the job page's curves and the quantize report chart as inline SVG from the JSON the page embeds
// (json_script), with the helpers of static/js/svgchart.js. Redrawn after every htmx swap of the live block.
// Text goes in with textContent only.
(function () {
  "use strict";
  const { COLORS, el, linePath } = window.SvgChart;

  function fmt(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    return a >= 1000 || a < 0.01 ? v.toExponential(1) : v.toPrecision(3);
  }

  function lineChart(svg, series) {
    svg.replaceChildren();
    const w = svg.clientWidth || 400, h = svg.clientHeight || 200, pad = { l: 52, r: 10, t: 10, b: 24 };
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    const pts = series.flatMap((s) => s.points);
    if (!pts.length) { svg.append(el("text", { x: 10, y: 20, class: "hint" }, "no points yet")); return; }
    const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
    let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    if (x0 === x1) x1 = x0 + 1;
    if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
    const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * (w - pad.l - pad.r);
    const Y = (y) => h - pad.b - ((y - y0) / (y1 - y0)) * (h - pad.t - pad.b);
    for (const v of [y0, (y0 + y1) / 2, y1]) {
      svg.append(el("line", { x1: pad.l, x2: w - pad.r, y1: Y(v), y2: Y(v), stroke: "#e2e2de" }));
      svg.append(el("text", { x: 4, y: Y(v) + 4, "font-size": 11, fill: "#6b6b70" }, fmt(v)));
    }
    svg.append(el("text", { x: pad.l, y: h - 6, "font-size": 11, fill: "#6b6b70" }, `step ${x0}`));
    svg.append(el("text", { x: w - pad.r, y: h - 6, "font-size": 11, fill: "#6b6b70", "text-anchor": "end" }, `step ${x1}`));
    series.forEach((s, i) => {
      if (!s.points.length) return;
      svg.append(el("path", { d: linePath(s.points, X, Y), fill: "none", stroke: COLORS[i], "stroke-width": 2, "data-series": s.name }));
      if (s.points.length < 40) s.points.forEach((p) => svg.append(el("circle", { cx: X(p[0]), cy: Y(p[1]), r: 2.5, fill: COLORS[i] })));
    });
  }

  function barChart(svg, bars) {
    svg.replaceChildren();
    const w = svg.clientWidth || 400, h = svg.clientHeight || 220, pad = 150;
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    if (!bars.length) { svg.remove(); return; }
    const rowH = Math.min(28, (h - 10) / bars.length);
    const max = Math.max(...bars.map((b) => b.value), 1);
    bars.forEach((b, i) => {
      const y = 5 + i * rowH, bw = ((w - pad - 60) * b.value) / max;
      svg.append(el("text", { x: 4, y: y + rowH * 0.65, "font-size": 12 }, b.label));
      svg.append(el("rect", { x: pad, y: y + 3, width: Math.max(bw, 1), height: rowH - 6, fill: b.value > 1 ? COLORS[1] : COLORS[0] }));
      svg.append(el("text", { x: pad + bw + 4, y: y + rowH * 0.65, "font-size": 12 }, `${(b.value * 100).toFixed(1)}%`));
    });
  }

  function points(metrics, key) {
    return metrics.filter((m) => typeof m[key] === "number").map((m) => [m.step, m[key]]);
  }

  // Bars: each "quantized" figure as a share of the parent's, for the pairs the report holds.
  function reportBars(report) {
    const parent = report.parent || {}, child = report.quantized || report.child || {};
    const bars = [];
    for (const [k, v] of Object.entries(child)) {
      if (typeof v === "number" && typeof parent[k] === "number" && parent[k] > 0) bars.push({ label: k, value: v / parent[k] });
    }
    return bars.slice(0, 8);
  }

  function draw(root) {
    const data = root.querySelector("#job-metrics");
    if (data) {
      const metrics = JSON.parse(data.textContent);
      const loss = root.querySelector('svg[data-chart="loss"]');
      if (loss) lineChart(loss, [{ name: "loss", points: points(metrics, "loss") }, { name: "eval_loss", points: points(metrics, "eval_loss") }]);
      const lr = root.querySelector('svg[data-chart="lr"]');
      if (lr) lineChart(lr, [{ name: "lr", points: points(metrics, "lr") }]);
    }
    const report = root.querySelector("#job-report-data"), bars = root.querySelector('svg[data-chart="report"]');
    if (report && bars) barChart(bars, reportBars(JSON.parse(report.textContent)));
  }

  document.addEventListener("DOMContentLoaded", () => draw(document));
  document.addEventListener("htmx:afterSwap", () => draw(document));
})();
