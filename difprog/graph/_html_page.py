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
main { display: grid; grid-template-columns: minmax(0, 1fr) 400px; min-height: 0; }
#left { display: grid; grid-template-rows: minmax(0, 1fr) auto; min-height: 0; border-right: 1px solid var(--line); }
#graph { overflow: auto; min-height: 0; }
#graph svg { display: block; }
#card { border-top: 1px solid var(--line); padding: 10px 14px; min-height: 150px; max-height: 46vh; overflow: auto; background: #fffdf5; }
#card h2, #detail h2 { font-size: 14px; margin: 0 0 6px; }
#detail h2 + div, #detail h2 + dl { margin-bottom: 10px; }
#detail h2:not(:first-child) { margin-top: 10px; font-size: 13px; color: #424a53; }
#right { display: grid; grid-template-rows: minmax(0, 1fr) minmax(0, 1fr); min-height: 0; }
#detail { overflow: auto; padding: 10px 14px; border-bottom: 1px solid var(--line); }
#code { position: relative; overflow: auto; margin: 0; font: 12px/1.45 var(--mono); background: #f6f8fa; padding: 6px 0; }
#code div { white-space: pre; padding: 0 10px 0 0; }
#code div span.no { display: inline-block; width: 3.2em; text-align: right; color: #8c959f; margin-right: 10px; user-select: none; }
#code div.comment { color: #6e7781; }
#code div.now { background: #fff1c2; }
#code div.now span.no { color: var(--now); font-weight: 700; }
.muted { color: var(--grey); }
.v { color: var(--value); font-family: var(--mono); }
.g { color: var(--grad); font-family: var(--mono); }
.num { font-family: var(--mono); }
.formula { font-family: var(--mono); margin: 4px 0; }
.formula .op { color: var(--grey); padding: 0 4px; }
table.t { border-collapse: collapse; font: 12px var(--mono); margin: 4px 0 8px; }
table.t td { border: 1px solid var(--line); padding: 1px 5px; text-align: right; }
.heat { display: grid; gap: 1px; margin: 4px 0 8px; width: max-content; }
.heat span { width: 10px; height: 10px; display: block; }
.stats { font: 12px var(--mono); color: var(--grey); }
dl.kv { display: grid; grid-template-columns: auto 1fr; gap: 2px 10px; margin: 0 0 8px; }
dl.kv dt { color: var(--grey); }
dl.kv dd { margin: 0; }
.math { font-family: var(--mono); background: #f6f8fa; padding: 4px 6px; border-radius: 4px; }
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
function tensorView(t, role) {  // a table (small) or a heat map, with shape and statistics
  const box = el("div", {"data-role": role});
  if (!t) { box.append(el("span", {class: "muted"}, "none")); return box; }
  if (t.kind === "tuple") { t.items.forEach((u, i) => box.append(tensorView(u, role + "-" + i))); return box; }
  if (t.kind === "text") { box.append(el("span", {class: "num"}, t.text)); return box; }
  if (t.scalar) { box.append(el("span", {class: "num", "data-number": ""}, fmt(t.data[0][0]))); return box; }
  let stats = `${t.dtype}${shapeText(t)}  min ${t.min === null ? "-" : fmt(t.min)}  max ${t.max === null ? "-" : fmt(t.max)}  \u2016\u00b7\u2016 ${fmt(t.norm)}`;
  if (t.nan || t.inf) stats += `  (${t.nan} NaN, ${t.inf} inf)`;
  box.append(el("div", {class: "stats"}, stats));
  const rows = t.data.length, cols = rows ? t.data[0].length : 0;
  if (t.size <= 64 && cols <= 8) {
    const table = el("table", {class: "t"});
    t.data.forEach(r => { const tr = el("tr"); r.forEach(v => tr.append(el("td", {}, fmt(v)))); table.append(tr); });
    box.append(table);
  } else {
    const heat = el("div", {class: "heat"});
    heat.style.gridTemplateColumns = `repeat(${cols}, 10px)`;
    const lo = t.min === null ? 0 : t.min, hi = t.max === null ? 0 : t.max;
    t.data.forEach((r, i) => r.forEach((v, j) => {
      const c = el("span", {title: `[${i},${j}] = ${fmt(v)}`});
      c.style.background = heatColour(v, lo, hi);
      heat.append(c);
    }));
    box.append(heat);
  }
  if (t.rows * t.cols > rows * cols) {
    const merged = t.shape.filter(s => s !== 1).length > 2 ? " (leading axes merged into rows)" : "";
    box.append(el("div", {class: "stats"}, `showing ${rows * cols} of ${t.size} entries: rows 1-${rows} of ${t.rows}, columns 1-${cols} of ${t.cols}${merged}`));
  }
  return box;
}

// ---- the graph --------------------------------------------------------------------------
const ROW = 96, GAP = 48, MARGIN = 16, BOXH = 26;
let nodeEls = [], edgeEls = [], textOf = [], position = [], boxWidth = [], scale = 1;
function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function drawGraph() {
  const pane = document.getElementById("graph");
  pane.textContent = "";
  const svg = svgEl("svg", {id: "svg"});
  pane.append(svg);
  const measure = svgEl("text", {}, "");
  svg.append(measure);
  const width = s => { measure.textContent = s; return measure.getComputedTextLength(); };
  const nodes = G.nodes;
  textOf = nodes.map(n => ({value: shortOf(n.value), grad: shortOf(n.upstream)}));
  const wide = nodes.map((n, i) => Math.max(width(n.label) + 16, width(n.kind === "group" ? n.op : n.name) * 11 / 12,
                                            width("= " + textOf[i].value), width("\u2207 " + textOf[i].grad)));
  const columns = [...new Set(nodes.map(n => n.column))].sort((a, b) => a - b);
  const colWidth = {}, colX = {};
  columns.forEach(c => { colWidth[c] = Math.max(40, ...nodes.map((n, i) => n.column === c ? wide[i] : 0)); });
  let x = MARGIN;
  columns.forEach(c => { colX[c] = x + colWidth[c] / 2; x += colWidth[c] + GAP; });
  const minRow = Math.min(...nodes.map(n => n.row)), maxRow = Math.max(...nodes.map(n => n.row));
  position = nodes.map(n => ({x: colX[n.column], y: MARGIN + BOXH / 2 + (n.row - minRow) * ROW}));
  const naturalW = x - GAP + MARGIN, naturalH = MARGIN * 2 + BOXH + (maxRow - minRow) * ROW + 48;
  // drawn to fill its pane: a small graph up to 1.5 times larger, a big one down to 0.85
  scale = Math.max(0.85, Math.min(1.5, (pane.clientWidth - 4) / naturalW, (pane.clientHeight - 4) / naturalH));
  svg.setAttribute("viewBox", `0 0 ${naturalW} ${naturalH}`);
  svg.setAttribute("width", naturalW * scale);
  svg.setAttribute("height", naturalH * scale);
  const boxW = nodes.map((n, i) => width(n.label) + (n.kind === "input" || n.kind === "constant" ? 8 : 16));
  boxWidth = boxW;
  measure.remove();
  const defs = svgEl("defs");
  [["arrow", "#8c959f"], ["arrow-g", "#cf222e"], ["arrow-v", "#1a7f37"]].forEach(([id, colour]) => {
    const m = svgEl("marker", {id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse"});
    m.append(svgEl("path", {d: "M0,0 L10,5 L0,10 z", fill: colour}));
    defs.append(m);
  });
  svg.append(defs);
  const edgeLayer = svgEl("g"), labelLayer = svgEl("g"), nodeLayer = svgEl("g");
  svg.append(edgeLayer, nodeLayer, labelLayer);
  edgeEls = G.edges.map(([i, j, k]) => {
    const a = position[i], b = position[j];
    const x1 = a.x + boxW[i] / 2, x2 = b.x - boxW[j] / 2 - 2, dx = Math.max(30, (x2 - x1) / 2);
    const path = svgEl("path", {class: "edge", d: `M${x1},${a.y} C${x1 + dx},${a.y} ${x2 - dx},${b.y} ${x2},${b.y}`, "marker-end": "url(#arrow)"});
    edgeLayer.append(path);
    const label = svgEl("text", {class: "elabel", x: (x1 + x2) / 2, y: (a.y + b.y) / 2 - 6, "text-anchor": "middle"}, "");
    labelLayer.append(label);
    return {path, label, i, j, k, room: x2 - x1 - 10};
  });
  nodeEls = nodes.map((n, i) => {
    const leaf = n.kind === "input" || n.kind === "constant";
    const g = svgEl("g", {class: "node " + (leaf ? "leaf" : n.kind), "data-index": i, "data-name": n.name,
                          transform: `translate(${position[i].x},${position[i].y})`});
    g.append(svgEl("rect", {x: -boxW[i] / 2, y: -BOXH / 2, width: boxW[i], height: BOXH, rx: 6}));
    g.append(svgEl("text", {class: "label", "text-anchor": "middle", y: 4}, n.label));
    let y = BOXH / 2 + 13;
    if (!leaf) { g.append(svgEl("text", {class: "caption", "text-anchor": "middle", y}, n.kind === "group" ? n.op : n.name)); y += 15; }
    const value = svgEl("text", {class: "value", "text-anchor": "middle", y}, "");
    const grad = svgEl("text", {class: "grad", "text-anchor": "middle", y: y + 15}, "");
    g.append(value, grad);
    g.addEventListener("click", () => { picked = i; render(); });
    nodeLayer.append(g);
    return {g, value, grad};
  });
}

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
    e.value.textContent = valueAt[i] <= step ? "= " + textOf[i].value : "";
    e.grad.textContent = gradAt[i] <= step && textOf[i].grad ? "\u2207 " + textOf[i].grad : "";
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
  const pane = document.getElementById("graph"), p = {x: position[i].x * scale, y: position[i].y * scale};
  const half = boxWidth[i] * scale / 2 + 8;
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
function section(parent, heading, content) { parent.append(el("h2", {}, heading)); parent.append(content); }
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
  box.append(el("h2", {}, `Node ${n.name}`));
  const kv = el("dl", {class: "kv"});
  const add = (k, v, role) => { kv.append(el("dt", {}, k)); kv.append(el("dd", role ? {"data-role": role} : {}, v)); };
  add("op", n.op, "op");
  add("kind", n.kind);
  if (n.inputs.length) add("inputs", n.inputs.join(", "));
  if (n.scope) add("layer", n.scope, "scope");
  if (n.gate) add("gate", n.gate, "gate");
  add("rules", n.rules.length ? n.rules.join(", ") : n.rule || "-", "rules");
  box.append(kv);
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
    d.append(el("span", {class: "no"}, String(k + 1)), document.createTextNode(line));
    pre.append(d);
    return d;
  });
}
function renderCode(s, i) {
  codeLines.forEach(d => d.classList.remove("now"));
  if (i === null) return;
  const span = G.nodes[i].lines[s.phase];
  if (!span) return;
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
