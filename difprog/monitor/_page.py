"""health.html: the training-health dashboard, one self-contained page (`difprog.pages`): the
diagnoses, the gradient-flow heat map (a click or hover on a cell shows that weight's numbers at
that step), the update ratios with the 1e-3 guide, the dead and saturated fractions and the
loss, drawn as SVG by its script. Every text from the data goes in through `textContent`."""

from __future__ import annotations

from difprog.pages import fill

TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{TITLE}}</title>
<style>
body { font: 14px/1.4 system-ui, "DejaVu Sans", Helvetica, Arial, sans-serif; color: #1f2328;
       margin: 0; background: #fff; }
header { padding: 10px 16px; border-bottom: 1px solid #d0d7de; background: #f6f8fa; }
header h1 { font-size: 18px; margin: 0 0 2px 0; }
#summary { color: #57606a; }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 12px;
       padding: 12px 16px; }
section { border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 12px; min-width: 0; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 15px; margin: 0 0 6px 0; }
p.note { color: #57606a; margin: 2px 0 6px 0; font-size: 13px; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border-bottom: 1px solid #eaeef2; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
svg { display: block; width: 100%; height: auto; font-size: 11px; }
svg text { fill: #57606a; }
.cell { stroke: #fff; stroke-width: 0.5; cursor: pointer; }
.cell.chosen { stroke: #0969da; stroke-width: 2; }
.curve { fill: none; stroke-width: 1.5; }
.curve:hover { stroke-width: 3.5; }
#detail { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; font-size: 12px;
          min-height: 3.2em; white-space: pre-wrap; background: #f6f8fa; padding: 4px 8px; }
.kind { font-weight: 600; }
</style>
</head>
<body>
<header><h1 id="title"></h1><div id="summary"></div></header>
<main>
<section class="wide"><h2>Diagnoses</h2>
<p class="note" id="nodiagnosis" hidden>No diagnosis: every recorded number stayed within the thresholds below.</p>
<table id="diagnoses"><thead><tr><th>kind</th><th>layer</th><th>from step</th><th>until step</th><th>what</th></tr></thead><tbody></tbody></table>
</section>
<section><h2>Gradient flow</h2>
<p class="note">log10 of each weight's gradient norm (rows: weights, first layer at the top; columns: recorded steps, at most 600 evenly spaced). Hover or click a cell.</p>
<svg id="flow"></svg><div id="detail"></div></section>
<section><h2>Update / weight ratio</h2>
<p class="note">||update|| / ||weight|| per step, log scale; green: 1e-3 (CS231n's rule of thumb), red: the "too large" threshold.</p>
<svg id="ratio"></svg></section>
<section><h2>Dead and saturated units</h2>
<p class="note" id="unitsnote">Fraction of ReLU units dead for the whole batch, and of sigmoid/tanh outputs saturated; red: the thresholds.</p>
<svg id="units"></svg></section>
<section><h2>Loss</h2><p class="note">The training loss at each recorded step; red lines: where diagnoses start.</p>
<svg id="loss"></svg></section>
<section class="wide"><h2>Thresholds</h2><table id="thresholds"><tbody></tbody></table></section>
</main>
<script>
"use strict";
const H = {{PAYLOAD}};
const NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#0969da", "#cf222e", "#1a7f37", "#bf8700", "#8250df", "#1b7c83", "#bc4c00",
                 "#57606a", "#d1242f", "#116329"];
function fmt(v) {
  if (v === null || v === undefined) return "-";
  if (!Number.isFinite(v)) return Number.isNaN(v) ? "NaN" : (v > 0 ? "inf" : "-inf");
  const a = Math.abs(v);
  return (a !== 0 && (a < 1e-3 || a >= 1e4)) ? v.toExponential(2) : String(Number(v.toPrecision(4)));
}
window.difprogFormat = fmt;
function el(tag, attrs, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}
function row(table, cells) {
  const tr = document.createElement("tr");
  for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); }
  table.appendChild(tr);
  return tr;
}
function layer(path) { return H.labels[path] || path; }
const ACTIVATIONS = H.activations.map(a => a.path);  // forward order (the objects' keys are sorted)

function header() {
  const n = H.diagnoses.length;
  document.getElementById("title").textContent = document.title;
  document.getElementById("summary").textContent =
    H.steps.length + " records (every " + H.every + " steps, steps " +
    (H.steps.length ? H.steps[0] + " to " + H.steps[H.steps.length - 1] : "none") + "), " +
    H.weights.length + " weights, " + H.activations.length + " activation layers, " +
    n + (n === 1 ? " diagnosis" : " diagnoses");
}

function diagnoses() {
  const body = document.querySelector("#diagnoses tbody");
  document.getElementById("nodiagnosis").hidden = H.diagnoses.length > 0;
  for (const d of H.diagnoses) {
    const tr = row(body, [d.kind, d.layer, String(d.step), d.until === null ? "the end" : String(d.until), d.message]);
    tr.className = "diagnosis";
    tr.firstChild.className = "kind";
  }
  const t = document.querySelector("#thresholds tbody");
  for (const [k, v] of Object.entries(H.thresholds)) row(t, [k, fmt(v)]);
}

function colour(t) {  // 0..1 to a dark-to-light ramp (magma-like)
  const stops = [[0, 0, 4], [81, 18, 124], [183, 55, 121], [252, 137, 97], [252, 253, 191]];
  const x = Math.min(Math.max(t, 0), 1) * (stops.length - 1), i = Math.min(Math.floor(x), stops.length - 2), f = x - i;
  const c = stops[i].map((a, j) => Math.round(a + f * (stops[i + 1][j] - a)));
  return "rgb(" + c.join(",") + ")";
}

function range(values) {  // [min, max] of the finite values (a loop: no argument-count limit)
  let lo = Infinity, hi = -Infinity;
  for (const v of values) if (Number.isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; }
  return [lo, hi];
}

function flow() {  // at most MAX_COLUMNS columns: evenly spaced records of a long run
  const MAX_COLUMNS = 600, stride = Math.ceil(H.steps.length / MAX_COLUMNS);
  const picked = H.steps.map((s, i) => i).filter(i => i % stride === 0);
  const svg = document.getElementById("flow"), rows = H.weights, cols = picked.map(i => H.steps[i]);
  const width = 560, left = 180, top = 8, cw = (width - left - 10) / Math.max(cols.length, 1), ch = 18;
  const height = top + ch * rows.length + 36;
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  const logs = [];
  for (const p of rows) for (const v of H.grad_norm[p]) if (v !== null && v > 0) logs.push(Math.log10(v));
  const [lo, hi] = range(logs), span = hi > lo ? hi - lo : 1;
  rows.forEach((p, r) => {
    const name = layer(p), shown = name.length > 28 ? "\u2026" + name.slice(-27) : name;
    const label = el("text", {x: left - 6, y: top + ch * r + ch * 0.7, "text-anchor": "end"}, shown);
    label.appendChild(el("title", {}, name));
    svg.appendChild(label);
    picked.forEach((c, k) => {
      const v = H.grad_norm[p][c], s = H.steps[c];
      const fill = v === null ? "#d0d7de" : (v > 0 ? colour((Math.log10(v) - lo) / span) : "#000");
      const cell = el("rect", {x: left + cw * k, y: top + ch * r, width: cw, height: ch, fill: fill,
                               class: "cell", "data-weight": p, "data-step": String(s)});
      cell.appendChild(el("title", {}, layer(p) + ", step " + s + ": |grad| " + fmt(v)));
      const show = () => detail(p, c, cell);
      cell.addEventListener("mouseenter", show);
      cell.addEventListener("click", show);
      svg.appendChild(cell);
    });
  });
  const last = cols.length - 1;
  const below = top + ch * rows.length + 14;
  if (cols.length) {
    svg.appendChild(el("text", {x: left, y: below}, "step " + cols[0]));
    svg.appendChild(el("text", {x: left + cw * cols.length, y: below, "text-anchor": "end"}, "step " + cols[last]));
  }
  if (logs.length) svg.appendChild(el("text", {x: left, y: below + 16},
                                      "colour: dark |grad| = 1e" + lo.toFixed(1) + " ... light 1e" + hi.toFixed(1)));
}

function detail(path, c, cell) {
  for (const other of document.querySelectorAll(".cell.chosen")) other.classList.remove("chosen");
  cell.classList.add("chosen");
  document.getElementById("detail").textContent =
    layer(path) + " (" + path + ") at step " + H.steps[c] + "\n" +
    "gradient norm " + fmt(H.grad_norm[path][c]) + "   weight norm " + fmt(H.weight_norm[path][c]) +
    "   update norm " + fmt(H.update_norm[path][c]) + "   update/weight " + fmt(H.update_ratio[path][c]);
}

function chart(id, series, opts) {
  const svg = document.getElementById(id), W = 560, Hh = 260, l = 56, r = 12, t = 10, b = 30;
  svg.setAttribute("viewBox", "0 0 " + W + " " + Hh);
  const xs = H.steps, log = !!opts.log;
  const f = v => (v === null || !Number.isFinite(v) || (log && v <= 0)) ? null : (log ? Math.log10(v) : v);
  let ys = [];
  for (const s of series) for (const v of s.values) { const y = f(v); if (y !== null) ys.push(y); }
  for (const g of opts.guides || []) ys.push(f(g.y));
  const found = range(ys);
  let lo = opts.min !== undefined ? opts.min : found[0], hi = opts.max !== undefined ? opts.max : found[1];
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) { lo = 0; hi = 1; }
  if (hi === lo) { hi = lo + 1; }
  const x0 = xs.length ? xs[0] : 0, x1 = xs.length > 1 ? xs[xs.length - 1] : x0 + 1;
  const X = x => l + (W - l - r) * (x - x0) / (x1 - x0), Y = y => t + (Hh - t - b) * (1 - (y - lo) / (hi - lo));
  svg.appendChild(el("line", {x1: l, y1: Hh - b, x2: W - r, y2: Hh - b, stroke: "#8c959f"}));
  svg.appendChild(el("line", {x1: l, y1: t, x2: l, y2: Hh - b, stroke: "#8c959f"}));
  for (let k = 0; k <= 4; k++) {
    const y = lo + (hi - lo) * k / 4;
    svg.appendChild(el("text", {x: l - 4, y: Y(y) + 4, "text-anchor": "end"}, log ? "1e" + y.toFixed(1) : fmt(y)));
  }
  svg.appendChild(el("text", {x: l, y: Hh - 8}, "step " + x0));
  svg.appendChild(el("text", {x: W - r, y: Hh - 8, "text-anchor": "end"}, "step " + x1));
  for (const g of opts.guides || []) {
    svg.appendChild(el("line", {x1: l, x2: W - r, y1: Y(f(g.y)), y2: Y(f(g.y)), stroke: g.colour,
                                "stroke-dasharray": "5 4", class: "guide"}));
  }
  for (const s of opts.marks || []) {
    svg.appendChild(el("line", {x1: X(s), x2: X(s), y1: t, y2: Hh - b, stroke: "#cf222e", "stroke-opacity": 0.4, class: "mark"}));
  }
  series.forEach((s, i) => {
    let d = "", pen = false;
    s.values.forEach((v, j) => {
      const y = f(v);
      if (y === null) { pen = false; return; }
      d += (pen ? "L" : "M") + X(xs[j]).toFixed(1) + " " + Y(Math.min(Math.max(y, lo), hi)).toFixed(1);
      pen = true;
    });
    const path = el("path", {d: d, class: "curve", stroke: s.colour || PALETTE[i % PALETTE.length], "data-name": s.name});
    path.appendChild(el("title", {}, s.name));
    svg.appendChild(path);
  });
  if (series.length <= 10) series.forEach((s, i) => {
    svg.appendChild(el("text", {x: W - r - 4, y: t + 12 + 12 * i, "text-anchor": "end",
                                fill: s.colour || PALETTE[i % PALETTE.length]}, s.name));
  });
}

function charts() {
  chart("ratio", H.weights.map(p => ({name: layer(p), values: H.update_ratio[p]})),
        {log: true, guides: [{y: 1e-3, colour: "#1a7f37"}, {y: H.thresholds.update_ratio, colour: "#cf222e"}]});
  const units = [...ACTIVATIONS.filter(p => p in H.dead).map(p => ({name: layer(p) + " dead", values: H.dead[p]})),
                 ...ACTIVATIONS.filter(p => p in H.saturated).map(p => ({name: layer(p) + " saturated", values: H.saturated[p]}))];
  if (units.length) {
    const guides = [];
    if (Object.keys(H.dead).length) guides.push({y: H.thresholds.dead, colour: "#cf222e"});
    if (Object.keys(H.saturated).length) guides.push({y: H.thresholds.saturated, colour: "#cf222e"});
    chart("units", units, {min: 0, max: 1, guides: guides});
  } else {  // no ReLU, sigmoid or tanh layer (gelu, say): the outputs' standard deviations
    document.getElementById("unitsnote").textContent = "No ReLU, sigmoid or tanh layer: the standard deviation of each activation layer's outputs.";
    chart("units", ACTIVATIONS.map(p => ({name: layer(p), values: H.std[p]})), {});
  }
  chart("loss", [{name: "loss", values: H.loss, colour: "#1f2328"}], {marks: H.diagnoses.map(d => d.step)});
}

header();
diagnoses();
flow();
charts();
</script>
</body>
</html>
"""


def page(health: dict, title: str = "Training health") -> str:
    """The dashboard's HTML for health.json's contents."""
    return fill(TEMPLATE, title, health)
