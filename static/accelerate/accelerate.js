// The Accelerate page: shows the chosen experiment's parameters, and draws experiment results as SVG line
// or point charts from the JSON the page embeds (json_script), with the helpers static/jobs/jobs.js draws a
// job's curves with (static/js/svgchart.js). Redrawn after every htmx swap (the live block of a running
// experiment). Text goes in with textContent only; colours and dashes are SVG presentation attributes (no
// inline styles: see the CSP).
(function () {
  "use strict";
  const { COLORS, el, linePath } = window.SvgChart;
  const DASHES = ["", "6 4", "2 3"];

  function fmt(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 10000) return v.toExponential(1);
    if (a >= 100) return String(Math.round(v));
    return a < 0.01 ? v.toExponential(1) : String(Number(v.toPrecision(3)));
  }

  // Ticks: the data's own x values when they are few (batch sizes, turns, k), else five even steps.
  function ticks(values, discrete) {
    const unique = [...new Set(values)].sort((a, b) => a - b);
    if (discrete && unique.length <= 12) return unique;
    const lo = unique[0], hi = unique[unique.length - 1];
    return [0, 1, 2, 3, 4].map((i) => lo + ((hi - lo) * i) / 4);
  }

  // 1, 2 or 5 times a power of ten: round numbers on the y axis.
  function niceStep(rough) {
    const power = 10 ** Math.floor(Math.log10(rough));
    return [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough) || rough;
  }

  function lineChart(svg, chart) {
    svg.replaceChildren();
    const series = chart.series.filter((s) => s.points.length);
    const w = svg.clientWidth || 520;
    const legendRows = [];
    let row = [], used = 0;
    series.forEach((s, i) => {
      const width = 30 + 7 * s.name.length;
      if (used + width > w - 60 && row.length) { legendRows.push(row); row = []; used = 0; }
      row.push({ s, i, x: 56 + used }); used += width;
    });
    if (row.length) legendRows.push(row);
    const plotH = 210, h = plotH + 44 + 18 * legendRows.length;
    const pad = { l: 56, r: 14, t: 10, b: h - plotH };
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("height", h);
    const pts = series.flatMap((s) => s.points);
    if (!pts.length) { svg.append(el("text", { x: 10, y: 20, fill: "#6b6b70" }, "no points")); return; }
    const log = chart.x.scale === "log2";
    const tx = (x) => (log ? Math.log2(Math.max(x, 1e-9)) : x);
    const xs = pts.map((p) => tx(p[0])), ys = pts.map((p) => p[1]);
    let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
    let y0 = Math.min(0, ...ys), y1 = Math.max(...ys);
    if (chart.mode === "points") { const span = (x1 - x0) || Math.abs(x1) || 1; x0 -= span * 0.1; x1 += span * 0.1; }
    if (x0 === x1) { x0 -= 1; x1 += 1; }
    if (y0 === y1) y1 = y0 + 1;
    const step = niceStep((y1 - y0) / 4);
    y0 = Math.floor(y0 / step) * step;
    y1 = Math.ceil(y1 / step) * step;
    const X = (x) => pad.l + ((tx(x) - x0) / (x1 - x0)) * (w - pad.l - pad.r);
    const Y = (y) => pad.t + (1 - (y - y0) / (y1 - y0)) * (plotH - pad.t);
    for (let v = y0; v <= y1 + step / 2; v += step) {
      svg.append(el("line", { x1: pad.l, x2: w - pad.r, y1: Y(v), y2: Y(v), stroke: "#e2e2de" }));
      svg.append(el("text", { x: pad.l - 6, y: Y(v) + 4, "font-size": 11, fill: "#6b6b70", "text-anchor": "end" }, fmt(v)));
    }
    const xticks = ticks(pts.map((p) => p[0]), chart.mode !== "points");
    for (const v of xticks) {
      svg.append(el("line", { x1: X(v), x2: X(v), y1: plotH, y2: plotH + 4, stroke: "#999" }));
      svg.append(el("text", { x: X(v), y: plotH + 16, "font-size": 11, fill: "#6b6b70", "text-anchor": "middle" }, fmt(v)));
    }
    svg.append(el("line", { x1: pad.l, x2: w - pad.r, y1: plotH, y2: plotH, stroke: "#999" }));
    svg.append(el("text", { x: (pad.l + w - pad.r) / 2, y: plotH + 32, "font-size": 12, "text-anchor": "middle" }, chart.x.label));
    svg.append(el("text", { x: 12, y: plotH / 2, "font-size": 12, "text-anchor": "middle", transform: `rotate(-90 12 ${plotH / 2})` }, chart.y.label));
    // Colour by a series' place within its experiment, dash by experiment (the overlay's groups).
    const place = {};
    const style = series.map((s) => {
      const g = s.group || 0;
      place[g] = (place[g] || 0) + 1;
      return { color: COLORS[(place[g] - 1) % COLORS.length], dash: DASHES[g % DASHES.length] };
    });
    series.forEach((s, i) => {
      const { color, dash } = style[i];
      const group = el("g", { class: "series", "data-series": s.name });
      if (chart.mode !== "points" && s.points.length > 1) {
        const attrs = { d: linePath(s.points, X, Y), fill: "none", stroke: color, "stroke-width": 2 };
        if (dash) attrs["stroke-dasharray"] = dash;
        group.append(el("path", attrs));
      }
      for (const p of s.points) {
        const dot = el("circle", { cx: X(p[0]), cy: Y(p[1]), r: chart.mode === "points" ? 5 : 3, fill: color, class: "point", "data-x": p[0], "data-y": p[1] });
        dot.append(el("title", {}, `${s.name}: ${fmt(p[0])}, ${fmt(p[1])}`));
        group.append(dot);
      }
      svg.append(group);
    });
    legendRows.forEach((entries, r) => {
      const y = plotH + 50 + r * 18;
      for (const { s, i, x } of entries) {
        const attrs = { x1: x, x2: x + 20, y1: y - 4, y2: y - 4, stroke: style[i].color, "stroke-width": 3 };
        if (style[i].dash) attrs["stroke-dasharray"] = style[i].dash;
        svg.append(el("line", attrs));
        svg.append(el("text", { x: x + 25, y, "font-size": 12 }, s.name));
      }
    });
  }

  function drawAll(root) {
    root.querySelectorAll("[data-charts]").forEach((box) => {
      const data = document.getElementById(box.dataset.charts);
      if (!data) return;
      box.replaceChildren();
      const drawn = JSON.parse(data.textContent).map((chart) => {
        const figure = document.createElement("figure");
        const caption = document.createElement("figcaption");
        caption.textContent = chart.title;
        const svg = el("svg", { class: "chart experiment-chart", "data-chart-id": chart.id, role: "img", "aria-label": chart.title });
        figure.append(caption, svg);
        box.append(figure);
        return [svg, chart];
      });
      // Drawn once every figure is in the grid, so each measures the width it will keep.
      for (const [svg, chart] of drawn) lineChart(svg, chart);
    });
  }

  // The form: only the chosen experiment's parameters are shown (all of them without JavaScript).
  function showParameters() {
    const chosen = document.querySelector('input[name="experiment"]:checked');
    document.querySelectorAll("fieldset[data-experiment]").forEach((set) => {
      set.hidden = chosen !== null && set.dataset.experiment !== chosen.value;
    });
  }

  document.addEventListener("DOMContentLoaded", () => { showParameters(); drawAll(document); });
  document.addEventListener("change", (event) => {
    if (event.target instanceof HTMLInputElement && event.target.name === "experiment") showParameters();
  });
  document.addEventListener("htmx:afterSwap", () => drawAll(document));
})();
