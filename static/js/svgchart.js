// What the pages that draw SVG charts share (static/jobs/jobs.js, static/accelerate/accelerate.js): the
// palette, a maker of SVG elements whose text goes in with textContent only, and the path data of a
// polyline through a series' points. Loaded before those scripts (deferred scripts run in order); no
// inline scripts or styles, see the Content-Security-Policy.
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // "M x,y L x,y …" through points [[x, y], …], placed by the chart's X and Y scales.
  function linePath(points, X, Y) {
    return points.map((p, j) => `${j ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(" ");
  }

  window.SvgChart = Object.freeze({
    COLORS: Object.freeze(["#3a5bd9", "#d9763a", "#1e7b34", "#8a3ad9", "#c22f6b", "#2a8f9e", "#7a6a1e", "#555"]),
    el,
    linePath,
  });
})();
