// A small SVG line chart (no library, so the dashboard works offline): score series over time.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svg(name, attributes, text) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function timeLabel(epochSeconds) {
  const d = new Date(epochSeconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
}

// series: [{name, className, points: [{x: epoch s, y: number|null}]}]; y is a 0..100 score.
function lineChart(container, series, options) {
  const width = (options && options.width) || 560, height = (options && options.height) || 220;
  const margin = {top: 14, right: 16, bottom: 28, left: 34};
  const xs = series.flatMap((s) => s.points.map((p) => p.x));
  container.replaceChildren();
  if (!xs.length) return;
  const xMin = Math.min(...xs), xMax = Math.max(...xs);
  const x = (v) => margin.left + (xMax === xMin ? 0.5 : (v - xMin) / (xMax - xMin)) * (width - margin.left - margin.right);
  const y = (v) => height - margin.bottom - (v / 100) * (height - margin.top - margin.bottom);
  const root = svg("svg", {viewBox: `0 0 ${width} ${height}`, role: "img", class: "line-chart",
                           "aria-label": (options && options.label) || "chart"});
  for (const tick of [0, 25, 50, 75, 100]) {
    root.append(svg("line", {x1: margin.left, x2: width - margin.right, y1: y(tick), y2: y(tick), class: "grid"}));
    root.append(svg("text", {x: margin.left - 6, y: y(tick) + 4, class: "tick", "text-anchor": "end"}, tick));
  }
  root.append(svg("text", {x: margin.left, y: height - 8, class: "tick"}, timeLabel(xMin)));
  if (xMax !== xMin) {
    root.append(svg("text", {x: width - margin.right, y: height - 8, class: "tick", "text-anchor": "end"}, timeLabel(xMax)));
  }
  for (const s of series) drawSeries(root, s, x, y);
  container.append(root, legend(series));
}

function drawSeries(root, s, x, y) {
  const points = s.points.filter((p) => p.y !== null && p.y !== undefined);
  if (!points.length) return;
  root.append(svg("polyline", {points: points.map((p) => `${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`).join(" "),
                               class: `series ${s.className}`}));
  for (const p of points) {
    const dot = svg("circle", {cx: x(p.x).toFixed(1), cy: y(p.y).toFixed(1), r: 3, class: `dot ${s.className}`});
    dot.append(svg("title", {}, `${s.name} ${p.y.toFixed(1)} · window ending ${timeLabel(p.x)} UTC`));
    root.append(dot);
  }
}

function legend(series) {
  const box = document.createElement("div");
  box.className = "legend";
  for (const s of series) {
    const item = document.createElement("span");
    item.className = `key ${s.className}`;
    item.textContent = s.name;
    box.append(item);
  }
  return box;
}

window.lineChart = lineChart;
window.timeLabel = timeLabel;
