"""The page `Explanation.to_html` writes: HTML, CSS and a script, all inline (see `_html`).

The script builds the graph as SVG from the payload's layout, and every text it writes from the
payload goes in through `textContent`, never as markup.
"""

TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{TITLE}}</title>
<style>
:root { --value: #1a7f37; --grad: #cf222e; --grey: #57606a; --line: #d0d7de;
        --now: #bf8700; --box: #ddf4ff; --prim: #f6f8fa; --mono: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
* { box-sizing: border-box; }
html, body { margin: 0; height: 100%; overflow: hidden; }
body { font: 14px/1.4 system-ui, "DejaVu Sans", "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2328;
       display: grid; grid-template-rows: auto 1fr; background: #fff; }
header { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 16px; padding: 8px 14px;
         border-bottom: 1px solid var(--line); background: #f6f8fa; }
header h1 { font-size: 16px; margin: 0; font-weight: 600; }
#summary { color: var(--grey); }
#summary b { color: #1f2328; }
.controls { display: flex; align-items: center; gap: 6px; margin-left: auto; }
button { font: inherit; padding: 3px 10px; border: 1px solid var(--line); border-radius: 6px;
         background: #fff; cursor: pointer; }
button:hover { background: #eef1f4; }
button[aria-pressed="true"] { background: #0969da; color: #fff; border-color: #0969da; }
button:disabled { opacity: .45; cursor: default; }
#slider { width: 220px; }
#stepno { font-variant-numeric: tabular-nums; color: var(--grey); min-width: 92px; text-align: right; }
/* every size below is the page's own (its window or its iframe), none fixed to a screen */
main { display: grid; grid-template-columns: minmax(0, 1fr) clamp(320px, 34%, 480px); min-height: 0; }
/* the card's height is fixed, so the graph's pane keeps its size from step to step */
#left { display: grid; grid-template-rows: minmax(0, 1fr) max(150px, 30%); min-height: 0; border-right: 1px solid var(--line); }
#graph { overflow: auto; min-height: 0; }
#graph svg { display: block; }
#card { border-top: 1px solid var(--line); padding: 10px 14px; overflow: auto; background: #fffdf5; }
#card h2, #detail h2 { font-size: 14px; margin: 0 0 6px; }
/* the inspector takes what it needs, up to 72%; the code has the rest */
#right { display: grid; grid-template-rows: fit-content(72%) minmax(0, 1fr); min-height: 0; }
#detail { overflow: auto; padding: 8px 12px; border-bottom: 1px solid var(--line); }
#detail .sec { display: flex; flex-wrap: wrap; align-items: baseline; column-gap: 8px; margin-top: 5px; }
#detail .sec h2 { margin: 0; font-size: 13px; color: #424a53; }
#detail .sec > .tv, #detail .sec > .tuple { flex-basis: 100%; }
.tv { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 2px 12px; margin-top: 2px; }
.tv > .txt { flex: 1 1 130px; min-width: 0; }
#code { position: relative; overflow: auto; margin: 0; font: 12px/1.45 var(--mono); background: #f6f8fa; padding: 6px 0; }
/* a long line wraps, its continuation indented 4 past the line's own indentation (--n spaces);
   an indentation takes at most half the pane */
#code { container-type: inline-size; }
#code div { display: flex; padding: 0 10px 0 0; }
#code div span.no { flex: none; width: 3.2em; text-align: right; color: #8c959f; margin-right: 10px; user-select: none; }
#code div span.src { flex: 1; min-width: 0; white-space: pre-wrap; overflow-wrap: anywhere;
                     --hang: min(calc((var(--n) + 4) * 1ch), 50cqw); padding-left: var(--hang); text-indent: calc(-1 * var(--hang)); }
#code div span.ind { display: inline-block; vertical-align: top; white-space: pre; overflow: hidden; text-indent: 0;
                     width: min(calc(var(--n) * 1ch), 50cqw - 4ch); }
#code div.comment { color: #6e7781; }
#code div.now { background: #fff1c2; }
#code div.now span.no { color: var(--now); font-weight: 700; }
.muted { color: var(--grey); }
.v { color: var(--value); font-family: var(--mono); }
.g { color: var(--grad); font-family: var(--mono); }
.num { font-family: var(--mono); }
.formula { font-family: var(--mono); margin: 4px 0; }
.formula .op { color: var(--grey); padding: 0 4px; }
table.t { border-collapse: collapse; font: 11px/1.25 var(--mono); }
table.t td { border: 1px solid var(--line); padding: 0 4px; text-align: right; }
.heat { display: grid; column-gap: 1px; flex: 0 1 auto; min-width: 0; }
.heat span { display: block; }
.stats { font: 12px var(--mono); color: var(--grey); }
#detail .head { display: flex; flex-wrap: wrap; align-items: baseline; gap: 1px 14px; margin-bottom: 4px; }
#detail .head h2 { margin: 0; }
dl.kv { display: contents; }
dl.kv > div { display: flex; gap: 5px; min-width: 0; }
dl.kv dt { color: var(--grey); }
dl.kv dd { margin: 0; min-width: 0; }
.math { font-family: var(--mono); background: #f6f8fa; padding: 3px 6px; border-radius: 4px; }
svg text { font-family: var(--mono); font-size: 12px; }
svg .node { cursor: pointer; }
svg .node rect { fill: var(--box); stroke: var(--grey); stroke-width: 1; }
svg .node.primitive rect { fill: var(--prim); }
svg .node.leaf rect { fill: #fff; stroke: none; }
svg .node.now rect { stroke: var(--now); stroke-width: 3; }
svg .node.picked rect { stroke: #0969da; stroke-width: 2; stroke-dasharray: 4 2; }
svg .node .caption { fill: var(--grey); font-size: 11px; }
svg .node .label { font-weight: 600; }
svg .node .value { fill: var(--value); }
svg .node .grad { fill: var(--grad); }
svg .edge { fill: none; stroke: #8c959f; stroke-width: 1.2; }
svg .edge.live { stroke: var(--grad); stroke-width: 2.4; }
svg .edge.feed { stroke: var(--value); stroke-width: 2.4; }
svg .elabel { font-size: 11px; paint-order: stroke; stroke: #fff; stroke-width: 4px; }
svg .elabel.g { fill: var(--grad); }
svg .elabel.v { fill: var(--value); }
#legend { font-size: 12px; color: var(--grey); padding: 4px 14px; }
</style>
</head>
<body>
<header>
  <h1 id="title"></h1>
  <span id="summary"></span>
  <span class="controls">
    <span id="grouping"><button id="group-gate" type="button">gates</button><button id="group-layer" type="button">layers</button></span>
    <button id="prev" type="button" title="previous step (left arrow)">&#9664; previous</button>
    <input id="slider" type="range" min="0" max="0" value="0" aria-label="step">
    <button id="next" type="button" title="next step (right arrow)">next &#9654;</button>
    <span id="stepno"></span>
  </span>
</header>
<main>
  <section id="left">
    <div id="graph"></div>
    <div id="card"></div>
  </section>
  <section id="right">
    <div id="detail"></div>
    <pre id="code"></pre>
  </section>
</main>
<script type="application/json" id="payload">{{PAYLOAD}}</script>
<script>
"use strict";
(function () {
const DATA = JSON.parse(document.getElementById("payload").textContent);
const SVG = "http://www.w3.org/2000/svg";
const T = DATA.tensors;
let group = DATA.initial, G = DATA.groupings[group], step = 0, picked = null;

// ---- numbers: the rule of difprog.graph._html.number ------------------------------------
function num(v) {
  if (typeof v === "string") return v === "NaN" ? NaN : (v === "inf" ? Infinity : -Infinity);
  return v;
}
function fmt(v) {
  const x = num(v);
  if (Number.isNaN(x)) return "NaN";
  if (x === Infinity) return "inf";
  if (x === -Infinity) return "-inf";
  if (x === 0) return "0";
  const parts = Math.abs(x).toExponential(3).split("e");
  const digits = parts[0].replace(".", ""), e = parseInt(parts[1], 10), sign = x < 0 ? "-" : "";
  if (e >= -5 && e < 4) {
    const whole = e >= 0 ? digits.slice(0, e + 1).padEnd(e + 1, "0") : "0";
    const fraction = (e >= 0 ? digits.slice(e + 1) : "0".repeat(-e - 1) + digits).replace(/0+$/, "");
    return sign + whole + (fraction ? "." + fraction : "");
  }
  return sign + (digits[0] + "." + digits.slice(1)).replace(/0+$/, "").replace(/\.$/, "") + "e" + e;
}
window.difprogFormat = fmt;

// ---- tensors ----------------------------------------------------------------------------
function tensorOf(ref) { return ref === null || ref === undefined ? null : (typeof ref === "string" ? T[ref] : ref); }
function shapeText(t) { return "[" + t.shape.join(",") + "]"; }
function short(t) {  // the one-line text of a value on the graph and in formulas
  if (!t) return "";
  if (t.kind === "tuple") return "(" + t.items.map(short).join(", ") + ")";
  if (t.kind === "text") return t.text;
  if (t.scalar) return fmt(t.data[0][0]);
  if (t.size <= 4) return "[" + t.data.flat().map(fmt).join(", ") + "]";
  return shapeText(t) + " \u2016\u00b7\u2016=" + fmt(t.norm);
}
function shortOf(refs) {
  const ts = refs.map(tensorOf).filter(t => t);
  return ts.map(short).join(", ");
}
function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function heatColour(v, lo, hi) {  // blue below 0, red above, white at 0
  const x = num(v);
  if (!Number.isFinite(x)) return "#000";
  const m = Math.max(Math.abs(lo), Math.abs(hi)) || 1, a = Math.min(1, Math.abs(x) / m);
  const c = Math.round(255 * (1 - a));
  return x >= 0 ? `rgb(255,${c},${c})` : `rgb(${c},${c},255)`;
}
function tensorView(t, role) {  // a table (small) or a heat map, beside its shape and statistics
  const box = el("div", {"data-role": role});
  if (!t) { box.append(el("span", {class: "muted"}, "none")); return box; }
  if (t.kind === "tuple") { box.className = "tuple"; t.items.forEach((u, i) => box.append(tensorView(u, role + "-" + i))); return box; }
  if (t.kind === "text") { box.append(el("span", {class: "num"}, t.text)); return box; }
  if (t.scalar) { box.append(el("span", {class: "num", "data-number": ""}, fmt(t.data[0][0]))); return box; }
  box.className = "tv";
  const txt = el("div", {class: "txt"}), note = shownText(t);
  txt.append(el("div", {class: "stats"}, statsText(t)));
  if (note) txt.append(el("div", {class: "stats"}, note));
  const cols = t.data.length ? t.data[0].length : 0;
  box.append(txt, t.size <= 64 && cols <= 8 ? tableView(t) : heatMap(t));
  return box;
}
function statsText(t) {
  let stats = `${t.dtype}${shapeText(t)}  min ${t.min === null ? "-" : fmt(t.min)}  max ${t.max === null ? "-" : fmt(t.max)}  \u2016\u00b7\u2016 ${fmt(t.norm)}`;
  if (t.nan || t.inf) stats += `  (${t.nan} NaN, ${t.inf} inf)`;
  return stats;
}
function shownText(t) {  // which entries a tensor too big to show whole shows
  const rows = t.data.length, cols = rows ? t.data[0].length : 0;
  if (t.rows * t.cols <= rows * cols) return "";
  const merged = t.shape.filter(s => s !== 1).length > 2 ? " (leading axes merged into rows)" : "";
  const part = (n, of, name) => n < of ? `${name} 1-${n} of ${of}` : `all ${of} ${name}`;
  return `showing ${rows * cols} of ${t.size} entries: ${part(rows, t.rows, "rows")}, ${part(cols, t.cols, "columns")}${merged}`;
}
function tableView(t) {
  const table = el("table", {class: "t"});
  t.data.forEach(r => { const tr = el("tr"); r.forEach(v => tr.append(el("td", {}, fmt(v)))); table.append(tr); });
  return table;
}
const HEAT_H = 64;  // a heat map's rows share at most this height: a tall one has thin rows
function heatMap(t) {  // columns up to 10 px wide, narrower where the pane is
  const heat = el("div", {class: "heat"}), cols = t.data[0].length;
  const pitch = Math.max(2, Math.min(10, Math.floor(HEAT_H / t.data.length))), gap = pitch >= 6 ? 1 : 0;
  heat.style.gridTemplateColumns = `repeat(${cols}, minmax(1px, 10px))`;
  heat.style.gridAutoRows = `${pitch - gap}px`;
  heat.style.rowGap = `${gap}px`;
  const lo = t.min === null ? 0 : t.min, hi = t.max === null ? 0 : t.max;
  t.data.forEach((r, i) => r.forEach((v, j) => {
    const c = el("span", {title: `[${i},${j}] = ${fmt(v)}`});
    c.style.background = heatColour(v, lo, hi);
    heat.append(c);
  }));
  return heat;
}

// ---- the graph --------------------------------------------------------------------------
const ROW = 96, GAP = 48, MARGIN = 16, BOXH = 26, MAX_SCALE = 1.5, MIN_SCALE = 0.55, SCROLL_SCALE = 0.85;
let nodeEls = [], edgeEls = [], textOf = [], position = [], boxWidth = [], view = {x: 0, y: 0, scale: 1};
function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function drawGraph() {
  const pane = document.getElementById("graph");
  pane.textContent = "";
  const room = inner(pane), svg = svgEl("svg", {id: "svg", width: room.w, height: room.h});
  pane.append(svg);
  const measure = svgEl("text", {}, "");
  svg.append(measure);
  const width = s => { measure.textContent = s; return measure.getComputedTextLength(); };
  const nodes = G.nodes;
  textOf = nodes.map(n => { const g = shortOf(n.upstream); return {value: "= " + shortOf(n.value), grad: g ? "\u2207 " + g : ""}; });
  const wide = split => nodes.map((n, i) => Math.max(width(n.label) + 16, width(n.kind === "group" ? n.op : n.name) * 11 / 12,
                                                     ...[textOf[i].value, textOf[i].grad].flatMap(s => lines(s, split).map(width))));
  let size = layout(wide(false), room, false);
  const tight = size.fit < 0.9 && layout(wide(true), room, true);  // a tensor's shape and norm on two lines
  twoLines = Boolean(tight) && tight.fit > size.fit;
  if (twoLines) size = tight;
  position = size.position;
  boxWidth = nodes.map(n => width(n.label) + (n.kind === "input" || n.kind === "constant" ? 8 : 16));
  measure.remove();
  svg.append(arrows());
  const edgeLayer = svgEl("g"), labelLayer = svgEl("g"), nodeLayer = svgEl("g");
  svg.append(edgeLayer, nodeLayer, labelLayer);
  edgeEls = G.edges.map(edge => drawEdge(edge, edgeLayer, labelLayer));
  nodeEls = nodes.map((n, i) => drawNode(n, i, nodeLayer));
  place(svg, inner(pane), size);
  place(svg, inner(pane), size);  // again, where scroll bars took some room
  drawnAt = pane.offsetWidth + "x" + pane.offsetHeight;
}
let twoLines = false;  // whether a node's value and gradient are drawn on two lines each
function lines(s, split) {  // "= [2,8,8,4] ‖·‖=19.71" on one line, or on two: shape, then norm
  const cut = split ? s.indexOf(" \u2016") : -1;
  return cut < 0 ? [s] : [s.slice(0, cut + 1), s.slice(cut + 1)];
}
function setLines(text, s) {  // the same textContent either way
  text.textContent = "";
  lines(s, twoLines).forEach((part, k) => text.append(svgEl("tspan", k ? {x: 0, dy: 13} : {}, part)));
}
function arrows() {
  const defs = svgEl("defs");
  [["arrow", "#8c959f"], ["arrow-g", "#cf222e"], ["arrow-v", "#1a7f37"]].forEach(([id, colour]) => {
    const m = svgEl("marker", {id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse"});
    m.append(svgEl("path", {d: "M0,0 L10,5 L0,10 z", fill: colour}));
    defs.append(m);
  });
  return defs;
}
function drawEdge([i, j, k], edgeLayer, labelLayer) {
  const a = position[i], b = position[j];
  const x1 = a.x + boxWidth[i] / 2, x2 = b.x - boxWidth[j] / 2 - 2, dx = Math.max(30, (x2 - x1) / 2);
  const path = svgEl("path", {class: "edge", d: `M${x1},${a.y} C${x1 + dx},${a.y} ${x2 - dx},${b.y} ${x2},${b.y}`, "marker-end": "url(#arrow)"});
  edgeLayer.append(path);
  const label = svgEl("text", {class: "elabel", x: (x1 + x2) / 2, y: (a.y + b.y) / 2 - 6, "text-anchor": "middle"}, "");
  labelLayer.append(label);
  return {path, label, i, j, k, room: x2 - x1 - 10};
}
function drawNode(n, i, nodeLayer) {
  const leaf = n.kind === "input" || n.kind === "constant", w = boxWidth[i];
  const g = svgEl("g", {class: "node " + (leaf ? "leaf" : n.kind), "data-index": i, "data-name": n.name,
                        transform: `translate(${position[i].x},${position[i].y})`});
  g.append(svgEl("rect", {x: -w / 2, y: -BOXH / 2, width: w, height: BOXH, rx: 6}));
  g.append(svgEl("text", {class: "label", "text-anchor": "middle", y: 4}, n.label));
  let y = BOXH / 2 + 13;
  if (!leaf) { g.append(svgEl("text", {class: "caption", "text-anchor": "middle", y}, n.kind === "group" ? n.op : n.name)); y += 15; }
  const value = svgEl("text", {class: "value", "text-anchor": "middle", y}, "");
  const grad = svgEl("text", {class: "grad", "text-anchor": "middle", y: y + (twoLines ? 28 : 15)}, "");
  g.append(value, grad);
  g.addEventListener("click", () => { picked = i; render(); });
  nodeLayer.append(g);
  return {g, value, grad};
}
function layout(wide, room, tall) {  // the nodes' positions, the drawing's natural size and its scale
  const nodes = G.nodes, columns = [...new Set(nodes.map(n => n.column))].sort((a, b) => a - b);
  const gap = tall ? 28 : GAP, colWidth = {}, colX = {};
  columns.forEach(c => { colWidth[c] = Math.max(40, ...nodes.map((n, i) => n.column === c ? wide[i] : 0)); });
  let x = MARGIN;
  columns.forEach(c => { colX[c] = x + colWidth[c] / 2; x += colWidth[c] + gap; });
  const minRow = Math.min(...nodes.map(n => n.row)), rows = Math.max(...nodes.map(n => n.row)) - minRow;
  const pitch = tall ? ROW + 26 : ROW, w = x - gap + MARGIN, h = MARGIN * 2 + BOXH + rows * pitch + (tall ? 74 : 48);
  // scaled to fit the pane (a small graph up to MAX_SCALE); one that needs less than MIN_SCALE scrolls
  const fit = Math.min(MAX_SCALE, room.w / w, room.h / h), scale = fit >= MIN_SCALE ? fit : SCROLL_SCALE;
  // rows further apart (up to 1.8 times) where the pane has height to spare
  const row = rows ? Math.min(1.8 * pitch, pitch + Math.max(0, room.h / scale - h) / rows) : pitch;
  const position = nodes.map(n => ({x: colX[n.column], y: MARGIN + BOXH / 2 + (n.row - minRow) * row}));
  return {w, h: h + rows * (row - pitch), fit, scale, position};
}
function inner(pane) {  // the pane's room less any scroll bar, in whole pixels
  const r = pane.getBoundingClientRect();
  return {w: Math.floor(Math.min(r.width, pane.clientWidth)), h: Math.floor(Math.min(r.height, pane.clientHeight))};
}
function place(svg, room, size) {  // the drawing at its scale: centred in the pane, or scrolling in it
  const s = size.scale, w = Math.max(room.w, size.w * s), h = Math.max(room.h, size.h * s);
  view = {scale: s, x: (size.w - w / s) / 2, y: (size.h - h / s) / 2};
  svg.setAttribute("viewBox", `${view.x} ${view.y} ${w / s} ${h / s}`);
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
}
let drawnAt = "";  // the pane's size the graph was drawn for: a new size draws it again
let redraw = 0;  // one redraw a frame, however many sizes a drag of the window goes through
new ResizeObserver(([entry]) => {
  const pane = entry.target;
  cancelAnimationFrame(redraw);
  redraw = requestAnimationFrame(() => {
    if (pane.isConnected && pane.offsetWidth + "x" + pane.offsetHeight !== drawnAt) { drawGraph(); render(); }
  });
}).observe(document.getElementById("graph"));

// ---- steps ------------------------------------------------------------------------------
function when(phase) {  // node -> the step at which its value (forward) or gradient appears
  const at = G.nodes.map(() => (phase === "forward" ? 0 : Infinity));
  G.steps.forEach((s, k) => { if (s.phase === phase) at[s.node] = k; });
  if (phase === "backward") {  // a leaf's total gradient: once every reader is done
    const done = G.steps.length - 1;
    G.nodes.forEach((n, i) => {
      if (n.kind !== "input" && n.kind !== "constant") return;
      let last = -1;
      G.edges.forEach(([a, b]) => { if (a === i) last = Math.max(last, at[b] === Infinity ? done : at[b]); });
      at[i] = n.upstream[0] === null ? Infinity : (last < 0 ? done : last);
    });
  }
  return at;
}
let valueAt = [], gradAt = [];
function setGrouping(name) {
  group = name; G = DATA.groupings[name]; step = 0; picked = null;
  valueAt = when("forward"); gradAt = when("backward");
  const slider = document.getElementById("slider");
  slider.max = G.steps.length - 1;
  ["gate", "layer"].forEach(g => {
    const b = document.getElementById("group-" + g);
    b.setAttribute("aria-pressed", String(g === name));
    b.disabled = !DATA.groupings[g];
    b.title = DATA.groupings[g] ? (g === "gate" ? "one node per gate or primitive" : "one node per layer") : "not available for this function";
  });
  drawGraph();
  render();
}
function stepNode() { const s = G.steps[step]; return s.node === undefined ? null : s.node; }
function render() {
  const s = G.steps[step], current = stepNode();
  document.getElementById("slider").value = step;
  document.getElementById("stepno").textContent = `step ${step + 1} of ${G.steps.length}`;
  document.getElementById("prev").disabled = step === 0;
  document.getElementById("next").disabled = step === G.steps.length - 1;
  G.nodes.forEach((n, i) => {
    const e = nodeEls[i];
    setLines(e.value, valueAt[i] <= step ? textOf[i].value : "");
    setLines(e.grad, gradAt[i] <= step ? textOf[i].grad : "");
    e.g.classList.toggle("now", i === current);
    e.g.classList.toggle("picked", i === picked && i !== current);
  });
  edgeEls.forEach(e => {
    const live = s.phase === "backward" && e.j === current, feed = s.phase === "forward" && e.j === current;
    e.path.setAttribute("class", "edge" + (live ? " live" : feed ? " feed" : ""));
    e.path.setAttribute("marker-end", live ? "url(#arrow-g)" : feed ? "url(#arrow-v)" : "url(#arrow)");
    const d = G.nodes[e.j].downstream[e.k];
    e.label.textContent = live && d ? short(d) : "";
    e.label.setAttribute("class", "elabel g");
    if (e.label.textContent && (e.label.getComputedTextLength() > e.room || covers(e.label))) e.label.textContent = "";  // the card has it
  });
  renderCard(s, current);
  renderDetail(picked !== null ? picked : current);
  renderCode(s, current);
  if (current !== null) reveal(current);
}
function covers(label) {  // whether a label would hide part of a node's texts
  const a = label.getBoundingClientRect();
  return nodeEls.some(e => [...e.g.children].some(c => {
    if (!c.textContent) return false;
    const b = c.getBoundingClientRect();
    return a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  }));
}
function reveal(i) {  // scroll the graph so the node being processed is in view
  const pane = document.getElementById("graph"), s = view.scale;
  const p = {x: (position[i].x - view.x) * s, y: (position[i].y - view.y) * s}, half = boxWidth[i] * s / 2 + 8;
  if (p.x - half < pane.scrollLeft || p.x + half > pane.scrollLeft + pane.clientWidth) pane.scrollLeft = p.x - pane.clientWidth / 2;
  if (p.y < pane.scrollTop + 30 || p.y > pane.scrollTop + pane.clientHeight - 60) pane.scrollTop = p.y - pane.clientHeight / 2;
}
function call(n) { return `${n.op}(${n.inputs.join(", ")})`; }
function renderCard(s, i) {
  const card = document.getElementById("card");
  card.textContent = "";
  card.dataset.phase = s.phase;
  if (s.phase === "start") {
    card.append(el("h2", {}, "Forward pass: the inputs"));
    G.nodes.forEach(n => {
      if (n.kind !== "input" && n.kind !== "constant") return;
      const p = el("div", {class: "formula", "data-role": "leaf", "data-name": n.name});
      p.append(el("span", {}, n.name + " = "), el("span", {class: "v", "data-role": "value"}, shortOf(n.value)));
      card.append(p);
    });
    card.append(el("p", {class: "muted"}, "Press \u2192 (or next) to compute one node at a time, inputs first; then the backward pass runs from the output back to the inputs."));
    return;
  }
  if (s.phase === "done") {
    card.append(el("h2", {}, "Done: the gradient of " + (DATA.output || "f") + " with respect to each input"));
    G.nodes.forEach(n => {
      if (n.kind !== "input" || n.upstream[0] === null) return;
      const p = el("div", {class: "formula", "data-role": "input-grad", "data-name": n.name});
      p.append(el("span", {}, `d${DATA.output || "f"}/d${n.name} = `), el("span", {class: "g", "data-role": "grad"}, shortOf(n.upstream)));
      card.append(p);
    });
    card.append(el("p", {class: DATA.agrees ? "muted" : "g"}, (DATA.agrees ? "These equal" : "These DIFFER FROM") + ` jax.grad(f) (largest difference ${DATA.reference_error}).`));
    return;
  }
  const n = G.nodes[i];
  if (s.phase === "forward") {
    card.append(el("h2", {}, `Forward, node ${n.name}: ${n.kind === "group" ? "the layer " + n.name : call(n)}`));
    const p = el("div", {class: "formula"});
    p.append(el("span", {}, `${n.outputs.join(", ")} = ${n.kind === "group" ? n.name : n.op}(`));
    n.inputs.forEach((name, k) => {
      const source = G.nodes.find(m => m.outputs.includes(name));
      if (k) p.append(el("span", {}, ", "));
      p.append(el("span", {}, name + (source ? " = " : "")));
      if (source) p.append(el("span", {class: "v", "data-role": "input-value", "data-name": name}, short(tensorOf(source.value[source.outputs.indexOf(name)]))));
    });
    p.append(el("span", {}, ") = "), el("span", {class: "v", "data-role": "value"}, shortOf(n.value)));
    card.append(p);
    if (n.math) card.append(el("div", {class: "math"}, n.math));
    return;
  }
  card.append(el("h2", {}, `Backward, node ${n.name} = ${n.kind === "group" ? "the layer " + n.name : call(n)}`));
  const up = el("div", {class: "formula"});
  up.append(el("span", {}, `upstream d${DATA.output || "f"}/d${n.outputs.join(", ")} = `), el("span", {class: "g", "data-role": "upstream"}, shortOf(n.upstream)));
  card.append(up);
  n.inputs.forEach((name, k) => {
    const d = n.downstream[k];
    if (!d) return;
    const local = n.local ? n.local[k] : null;
    const p = el("div", {class: "formula", "data-role": "product", "data-input": name});
    p.append(el("span", {}, `downstream to ${name}: `), el("span", {class: "g", "data-role": "downstream"}, short(d)),
             el("span", {class: "op"}, "="));
    if (local) {
      p.append(el("span", {"data-role": "local"}, short(local)), el("span", {class: "op"}, "\u00d7"),
               el("span", {class: "g"}, shortOf(n.upstream)));
      p.append(el("span", {class: "muted"}, `   local d${n.outputs[0]}/d${name} \u00d7 upstream` + (local.scalar ? "" : " (summed over the output's entries)")));
    } else if (n.kind === "group") {
      p.append(el("span", {class: "muted"}, `the layer's backward pass: ${n.rules.length ? n.rules[0] : "the backward rules of " + n.op + ", last step first"}`));
    } else {
      p.append(el("span", {class: "muted"}, `local \u00d7 upstream, by ${n.rules[0] || n.rule} (the local Jacobian is too big to show)`));
    }
    card.append(p);
  });
  card.append(el("div", {class: "muted"}, "rule: " + (n.rules.length ? n.rules[0] : n.rule)));
}
function section(parent, heading, content) {  // a tensor's heading tops its statistics, a number's is beside it
  const sec = el("div", {class: "sec"}), txt = content.querySelector(":scope > .txt");
  if (txt) txt.prepend(el("h2", {}, heading)); else sec.append(el("h2", {}, heading));
  sec.append(content);
  parent.append(sec);
}
function renderDetail(i) {
  const box = document.getElementById("detail");
  box.textContent = "";
  if (i === null) {
    box.append(el("h2", {}, "Click a node to see its values and gradients"));
    box.append(el("p", {class: "muted"}, "Green: the value a node computes (forward pass). Red \u2207: the gradient of " + (DATA.output || "f") + " with respect to it (backward pass). Keys: \u2190 \u2192 step, Home / End."));
    return;
  }
  const n = G.nodes[i];
  box.dataset.node = n.name;
  const head = el("div", {class: "head"}), kv = el("dl", {class: "kv"});
  head.append(el("h2", {}, `Node ${n.name}`), kv);
  const add = (k, v, role) => {
    const pair = el("div");
    pair.append(el("dt", {}, k), el("dd", role ? {"data-role": role} : {}, v));
    kv.append(pair);
  };
  add("op", n.op, "op");
  add("kind", n.kind);
  if (n.inputs.length) add("inputs", n.inputs.join(", "));
  if (n.scope) add("layer", n.scope, "scope");
  if (n.gate) add("gate", n.gate, "gate");
  add("rules", n.rules.length ? n.rules.join(", ") : n.rule || "-", "rules");
  box.append(head);
  if (n.math) box.append(el("div", {class: "math", "data-role": "math"}, n.math));
  n.value.forEach((ref, k) => section(box, `value ${n.outputs[k]}`, tensorView(tensorOf(ref), "detail-value")));
  n.upstream.forEach((ref, k) => { if (ref) section(box, `gradient d${DATA.output || "f"}/d${n.outputs[k]}`, tensorView(tensorOf(ref), "detail-grad")); });
  n.inputs.forEach((name, k) => {
    if (n.local && n.local[k]) section(box, `local d${n.outputs[0]}/d${name}`, tensorView(n.local[k], "detail-local"));
    if (n.downstream[k]) section(box, `downstream to ${name}`, tensorView(n.downstream[k], "detail-downstream"));
  });
}
let codeLines = [];
function buildCode() {
  const pre = document.getElementById("code");
  if (DATA.code_error) { pre.append(el("div", {}, "flat code unavailable: " + DATA.code_error)); return; }
  codeLines = DATA.code.map((line, k) => {
    const d = el("div", {"data-line": k + 1, class: line.trim().startsWith("#") ? "comment" : ""});
    const n = line.length - line.trimStart().length, src = el("span", {class: "src"});
    src.style.setProperty("--n", n);
    if (n) src.append(el("span", {class: "ind"}, line.slice(0, n)));
    src.append(document.createTextNode(line.slice(n)));
    d.append(el("span", {class: "no"}, String(k + 1)), src);
    pre.append(d);
    return d;
  });
}
function renderCode(s, i) {  // the step's lines (the first and last steps': f_and_grad's header, its return)
  codeLines.forEach(d => d.classList.remove("now"));
  const span = i === null ? (DATA.code_steps || {})[s.phase] : G.nodes[i].lines[s.phase];
  if (!span || !codeLines.length) return;
  for (let k = span[0]; k <= span[1]; k++) codeLines[k - 1].classList.add("now");
  const pre = document.getElementById("code"), first = codeLines[span[0] - 1];
  pre.scrollTop = Math.max(0, first.offsetTop - pre.clientHeight / 3);
}
function go(k) { step = Math.max(0, Math.min(G.steps.length - 1, k)); render(); }
document.getElementById("title").textContent = DATA.title;
document.title = DATA.title;
const v = el("span", {}, "f = ");
v.append(el("b", {id: "fvalue"}, short(DATA.value)));
document.getElementById("summary").append(v, el("span", {}, DATA.agrees ? "  \u00b7  gradients equal jax.grad(f)" : "  \u00b7  gradients DIFFER FROM jax.grad(f)"));
document.getElementById("prev").addEventListener("click", () => go(step - 1));
document.getElementById("next").addEventListener("click", () => go(step + 1));
document.getElementById("slider").addEventListener("input", e => go(parseInt(e.target.value, 10)));
document.getElementById("group-gate").addEventListener("click", () => DATA.groupings.gate && setGrouping("gate"));
document.getElementById("group-layer").addEventListener("click", () => DATA.groupings.layer && setGrouping("layer"));
document.addEventListener("keydown", e => {
  if (e.target && e.target.id === "slider") return;  // the slider steps by itself
  if (e.key === "ArrowRight") { go(step + 1); e.preventDefault(); }
  else if (e.key === "ArrowLeft") { go(step - 1); e.preventDefault(); }
  else if (e.key === "Home") go(0);
  else if (e.key === "End") go(G.steps.length - 1);
});
buildCode();
setGrouping(group);
window.difprogPage = {go, setGrouping, get step() { return step; }, get group() { return group; }, steps: () => G.steps.length};
})();
</script>
</body>
</html>
"""
