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

  // Bars: each measure of the quantized model as a share of the parent's (the server labels them and
  // says which way is better); the dashed line is the parent, 100 %.
  function barChart(svg, bars) {
    svg.replaceChildren();
    const w = svg.clientWidth || 400, pad = 170, right = 150, rowH = 26;
    const h = 10 + bars.length * rowH;
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("height", h);
    const max = Math.max(...bars.map((b) => b.share), 1);
    const X = (share) => pad + ((w - pad - right) * share) / max;
    bars.forEach((b, i) => {
      const y = 5 + i * rowH;
      const colour = b.direction > 0 ? COLORS[2] : b.direction < 0 ? COLORS[1] : COLORS[7];
      svg.append(el("text", { x: 4, y: y + rowH * 0.65, "font-size": 12 }, b.label));
      svg.append(el("rect", { x: pad, y: y + 4, width: Math.max(X(b.share) - pad, 1), height: rowH - 8, fill: colour }));
      svg.append(el("text", { x: X(b.share) + 4, y: y + rowH * 0.65, "font-size": 12 }, `${(b.share * 100).toFixed(1)} % of the parent`));
    });
    svg.append(el("line", { x1: X(1), x2: X(1), y1: 2, y2: h - 2, stroke: "#6b6b70", "stroke-dasharray": "3 3" }));
  }

  function points(metrics, key) {
    return metrics.filter((m) => typeof m[key] === "number").map((m) => [m.step, m[key]]);
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
    const report = root.querySelector("#job-report-bars"), bars = root.querySelector('svg[data-chart="report"]');
    if (report && bars) barChart(bars, JSON.parse(report.textContent));
  }

  document.addEventListener("DOMContentLoaded", () => draw(document));
  document.addEventListener("htmx:afterSwap", () => draw(document));
})();
