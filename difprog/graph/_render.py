"""The explained graph drawn as the lecture slides draw it: inputs on the left, the output on
the right, each edge's forward value above it (green) and its gradient below it (red), with a
legend saying so (and what `[4,8,8] ‖·‖=5.2`, a tensor's shape and L2 norm, means).

Nodes go in columns by their longest path from an input, each input just before the node that
reads it; a computed node sits at the mean row of the computed nodes it reads, so a chain of
layers runs straight, its weights above and below it. Every text is measured with matplotlib's
renderer before anything is placed, so the picture is sized to its content at 100 dpi: columns
as wide as their widest box, the gap before a column as wide as the widest label of the edges
entering it, rows spread until no label touches another label or a box. An edge that would cross
a node (a skip connection) detours above the nodes it skips. A graph wider than `MAX_WIDTH`
pixels wraps into rows of columns, like a line of text, cut where the fewest edges cross: such
an edge leaves its node towards the right margin ("to row 2") and enters the later row from a
grey copy of its source's name, where its labels are drawn.
Matplotlib writes SVG (text kept as text) or PNG by the path's suffix, atomically.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

import numpy as np

from difprog.errors import ArgumentError
from difprog.files import atomic
from difprog.graph._layout import layout as _layout
from difprog.graph._table import is_key, summary

MAX_WIDTH = 1600  # pixels: a laptop screen at 100% zoom
DPI = 100
MAX_DRAWN = 400  # nodes: render refuses more, which no picture shows legibly
_VALUE, _GRADIENT, _GREY = "#1a7f37", "#cf222e", "#57606a"
_NODE_SIZE, _EDGE_SIZE, _CAPTION_SIZE, _LEGEND_SIZE = 11, 10, 9, 10
_PAD, _LABEL_PAD = 0.4, 0.15  # box padding, in units of the font size
_MARGIN, _MIN_GAP, _LABEL_MARGIN, _BAND_GAP = 16, 84, 10, 28  # pixels
_OFFSET = 2  # pixels between an edge and its labels


@dataclasses.dataclass
class Drawing:
    """A laid-out picture: the figure and every text drawn on it.

    `labels` holds every text (node names, whose padded boxes are the nodes' boxes, captions,
    edge labels, row stubs, the legend); `boxes()` gives the extent of each on the canvas.
    """

    figure: Any
    labels: list

    def boxes(self, renderer: Any = None) -> list:
        """Each label's extent in pixels (its bbox patch when it has one), after a draw."""
        if renderer is None:
            from matplotlib.backends.backend_agg import FigureCanvasAgg

            renderer = FigureCanvasAgg(self.figure).get_renderer()
            self.figure.draw(renderer)
        return [_extent(t, renderer) for t in self.labels]


def render(explanation: Any, path: str | os.PathLike) -> pathlib.Path:
    """Draws the explanation's nodes and edges to `path` (.svg or .png)."""
    import matplotlib

    path = pathlib.Path(path)
    if path.suffix.lower() not in (".svg", ".png"):
        raise ArgumentError(f"render writes .svg or .png files, got {str(path)!r}")
    drawing = draw(explanation)
    with atomic(path) as temporary, matplotlib.rc_context({"svg.fonttype": "none"}):
        kind = path.suffix[1:].lower()
        drawing.figure.savefig(temporary, format=kind, dpi=DPI,  # no date: reproducible files
                               metadata={"Date": None} if kind == "svg" else None)
    return path


@dataclasses.dataclass
class _Item:
    """A node of the picture: a graph node, the output's name, or a grey copy of a source."""

    label: Any
    caption: Any
    column: int
    row: float
    name: str
    width: float = 0.0  # of the box or its caption, whichever is wider
    box_width: float = 0.0
    height: float = 0.0
    below: float = 0.0  # the caption's height under the box
    x: float = 0.0
    y: float = 0.0

    def box(self) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) in pixels, the caption included."""
        return (self.x - self.width / 2, self.y - self.height / 2, self.x + self.width / 2,
                self.y + self.height / 2 + self.below)

    def ends(self) -> tuple[float, float]:
        """Where edges leave (right) and arrive (left): the box, or 4 pixels off a name."""
        half = self.box_width / 2 + (4 if self.caption is None else 0)
        return self.x - half, self.x + half


@dataclasses.dataclass
class _Edge:
    source: int
    target: int
    value: Any  # Text or None
    gradient: Any
    width: float = 0.0  # of the wider label
    heights: tuple[float, float] = (0.0, 0.0)
    at: tuple[float, float] | None = None  # where the labels sit on the edge
    lane: float | None = None  # the height of its detour over the nodes it would cross


def draw(explanation: Any) -> Drawing:
    """Lays the explanation out on a matplotlib Figure sized to its content (see the module)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    nodes = explanation.nodes
    if len(nodes) > MAX_DRAWN:
        raise ArgumentError(
            f"render: {len(nodes)} nodes are too many to draw legibly (at most {MAX_DRAWN}); "
            f"draw explanation.grouped('layer') instead, one node per layer")
    figure = Figure(dpi=DPI)
    renderer = FigureCanvasAgg(figure).get_renderer()
    ax = figure.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    producer = {o: i for i, n in enumerate(nodes) for o in n.outputs}
    links = [(producer[name], j, k) for j, n in enumerate(nodes)
             for k, name in enumerate(n.inputs) if name in producer]
    column, row = _layout(len(nodes), links)
    items = [_node(ax, node, column[i], row[i]) for i, node in enumerate(nodes)]
    edges = _edges(ax, explanation, links)
    output = explanation.program.output
    last = next((i for i, n in enumerate(nodes) if output in n.outputs), None)
    if last is not None:
        name = ax.text(0, 0, output, ha="center", va="center", fontsize=_NODE_SIZE,
                       fontweight="bold", zorder=3)
        items.append(_Item(name, None, max(column) + 1, row[last], output))
        edges.append(_edge_labels(ax, last, len(items) - 1, _short(explanation.value), "1"))
    columns, width, gap = _measure(items, edges, renderer)
    bands = _bands(ax, columns, width, gap, items, edges, renderer)
    top, right, stubs, labels = float(_MARGIN), 0.0, [], []
    for band in bands:
        bottom, band_right, band_stubs, texts = _place_band(ax, items, edges, band, bands, width,
                                                            gap, renderer, top)
        top, right = bottom + _BAND_GAP, max(right, band_right)
        stubs += band_stubs
        labels += texts
    legend = _legend(ax, output, explanation.group, _has_tensors(edges), len(bands) > 1)
    widest = max(sum(_size(t, renderer)[0] + 5 for t in entry) for entry in legend)
    full = min(max(right, widest + _MARGIN) + _MARGIN, max(MAX_WIDTH, right + _MARGIN))
    bottom = _place_legend(legend, top - _BAND_GAP + 12, full, renderer)
    figure.set_size_inches(full / DPI, (bottom + _MARGIN) / DPI)
    ax.set_xlim(0, full)
    ax.set_ylim(bottom + _MARGIN, 0)
    _draw_placed(ax, items, edges, stubs)
    return Drawing(figure, [t for entry in legend for t in entry] + labels)


def _measure(items: list[_Item], edges: list[_Edge], renderer: Any
             ) -> tuple[list[int], dict, dict]:
    """Measures every text; returns the columns, each column's width and the gap before it
    (wide enough for the widest label of the edges entering it)."""
    for item in items:
        _measure_item(item, renderer)
    for edge in edges:
        _measure_edge(edge, renderer)
    columns = sorted({item.column for item in items})
    width = {c: max(i.width for i in items if i.column == c) for c in columns}
    gap = {c: _MIN_GAP for c in columns}
    for edge in edges:
        target = items[edge.target].column
        gap[target] = max(gap[target], edge.width + 2 * _LABEL_MARGIN)
    return columns, width, gap


def _draw_placed(ax: Any, items: list[_Item], edges: list[_Edge], stubs: list) -> None:
    """Moves every text to its place and draws the arrows, stubs to later rows dashed."""
    for item in items:
        item.label.set_position((item.x, item.y))
        if item.caption is not None:
            item.caption.set_position((item.x, item.y + item.height / 2 + 3))
    for edge in edges:
        _set_edge_labels(edge)
        _arrow(ax, (items[edge.source].ends()[1], items[edge.source].y),
               (items[edge.target].ends()[0], items[edge.target].y), lane=edge.lane)
    for source, text, end, lane in stubs:
        item = items[source]
        text.set_position((end + 4, lane))
        _arrow(ax, (item.ends()[1], item.y), (end, lane), dashed=True, lane=lane, to_lane=True)


def _node(ax: Any, node: Any, column: int, row: float) -> _Item:
    """Inputs as bold names; operations as boxes named by their op, captioned by their value."""
    label = _label(node)
    if node.kind in ("input", "constant"):
        text = ax.text(0, 0, label, ha="center", va="center", fontsize=_NODE_SIZE,
                       fontweight="bold", zorder=3)
        return _Item(text, None, column, row, node.name)
    colour = "#ddf4ff" if node.kind in ("gate", "group") else "#f6f8fa"
    text = ax.text(0, 0, label, ha="center", va="center", fontsize=_NODE_SIZE, zorder=3,
                   bbox={"boxstyle": f"round,pad={_PAD}", "fc": colour, "ec": _GREY, "lw": 1.0})
    caption = ax.text(0, 0, node.op if node.kind == "group" else node.name, ha="center",
                      va="top", fontsize=_CAPTION_SIZE, color=_GREY, zorder=3)
    return _Item(text, caption, column, row, node.name)


def _edges(ax: Any, explanation: Any, links: list[tuple[int, int, int]]) -> list[_Edge]:
    """One edge per (source, target): a value read twice (x * x) is one arrow, both gradients."""
    merged: dict[tuple[int, int], list[int]] = {}
    for i, j, k in links:
        merged.setdefault((i, j), []).append(k)
    edges = []
    for (i, j), slots in merged.items():
        node = explanation.nodes[j]
        value = _short(explanation.values[node.inputs[slots[0]]])
        gradients = [_short(node.downstream[k]) for k in slots]
        edges.append(_edge_labels(ax, i, j, value, " + ".join(g for g in gradients if g)))
    return edges


def _edge_labels(ax: Any, source: int, target: int, value: str, gradient: str) -> _Edge:
    style = {"boxstyle": f"square,pad={_LABEL_PAD}", "fc": "white", "ec": "none", "alpha": 0.9}
    texts = [ax.text(0, 0, text, ha="center", va=va, fontsize=_EDGE_SIZE, color=colour,
                     zorder=2, bbox=style) if text else None
             for text, va, colour in ((value, "bottom", _VALUE), (gradient, "top", _GRADIENT))]
    return _Edge(source, target, *texts)


def _measure_item(item: _Item, renderer: Any) -> None:
    item.box_width, item.height = _size(item.label, renderer)
    item.width = item.box_width
    if item.caption is not None:
        width, height = _size(item.caption, renderer)
        item.below, item.width = 3 + height, max(item.width, width)


def _measure_edge(edge: _Edge, renderer: Any) -> None:
    sizes = [_size(t, renderer) if t is not None else (0.0, 0.0)
             for t in (edge.value, edge.gradient)]
    edge.width = max(w for w, _ in sizes)
    edge.heights = (sizes[0][1], sizes[1][1])


def _size(text: Any, renderer: Any) -> tuple[float, float]:
    """A text's width and height in pixels, its box's padding included."""
    extent = text.get_window_extent(renderer)
    patch = text.get_bbox_patch()
    pad = 0.0
    if patch is not None:
        pad = 2 * patch.get_boxstyle().pad * text.get_fontsize() * DPI / 72
    return extent.width + pad, extent.height + pad


def _extent(text: Any, renderer: Any) -> Any:
    patch = text.get_bbox_patch()
    return patch.get_window_extent(renderer) if patch is not None else \
        text.get_window_extent(renderer)


def _bands(ax: Any, columns: list[int], width: dict, gap: dict, items: list[_Item],
           edges: list[_Edge], renderer: Any) -> list[list[int]]:
    """The columns cut into as few rows no wider than MAX_WIDTH as will do, where the fewest
    edges cross from one row to the next (an input rarely leaves the operation reading it),
    then where the widest row is narrowest."""
    probe = ax.text(0, 0, "to row 10", fontsize=_CAPTION_SIZE)
    stub = 44 + _size(probe, renderer)[0]
    probe.remove()
    column_of = [item.column for item in items]

    def band_width(band: list[int]) -> float:
        inside = set(band)
        sources = {e.source for e in edges if column_of[e.target] in inside
                    and column_of[e.source] not in inside}
        leaves = any(column_of[e.source] in inside and column_of[e.target] not in inside
                     for e in edges)
        copies = max((items[s].width + 8 for s in sources), default=0.0)
        return (2 * _MARGIN + copies + sum(width[c] for c in band)
                + sum(gap[c] for k, c in enumerate(band) if k or sources) + stub * leaves)

    crossing = {}  # edges that a cut before each column cuts; a cut off an input costs more
    for k, c in enumerate(columns[1:], 1):
        cut_edges = [e for e in edges if column_of[e.source] < c <= column_of[e.target]]
        crossing[k] = len(cut_edges) + 2 * sum(items[e.source].caption is None
                                               for e in cut_edges)
    n = len(columns)
    best: list[tuple] = [()] * n + [(0, 0, 0.0, n)]  # (rows, cost, widest, next cut) from k
    for k in range(n - 1, -1, -1):
        options = []
        for stop in range(k + 1, n + 1):
            band_px = band_width(columns[k:stop])
            if band_px > MAX_WIDTH and stop > k + 1:
                break
            rows, cost, widest, _ = best[stop]
            options.append((rows + 1, cost + crossing.get(stop, 0), max(widest, band_px), stop))
        best[k] = min(options)
    bands, k = [], 0
    while k < n:
        bands.append(columns[k:best[k][3]])
        k = best[k][3]
    return bands


def _place_band(ax: Any, items: list[_Item], edges: list[_Edge], band: list[int],
                bands: list[list[int]], width: dict, gap: dict, renderer: Any,
                top: float) -> tuple[float, float, list, list]:
    """Lays out one row of columns from `top` down: returns its bottom and right end, its
    stubs (source, text, where the arrow ends) and its texts."""
    inside = set(band)
    row_of = {c: b + 1 for b, cs in enumerate(bands) for c in cs}
    local = [k for k, item in enumerate(items) if item.column in inside]
    incoming = [e for e in edges if items[e.target].column in inside
                and items[e.source].column not in inside]
    outgoing = [e for e in edges if items[e.source].column in inside
                and items[e.target].column not in inside]
    texts = [items[k].label for k in local] + [items[k].caption for k in local
                                                if items[k].caption is not None]
    copies = _copy_sources(ax, items, incoming, band, row_of, renderer, texts)
    local += list(copies.values())
    x, spans = _place_columns(items, local, band, width, gap, copies)
    stubs = {}
    for edge in outgoing:
        stubs.setdefault(edge.source, set()).add(row_of[items[edge.target].column])
    stub_texts = {s: ax.text(0, 0, "to row " + ", ".join(map(str, sorted(rows))), ha="left",
                             va="center", fontsize=_CAPTION_SIZE, color=_GREY, zorder=3)
                  for s, rows in stubs.items()}
    end = x + 40
    right = end + 4 + max((_size(t, renderer)[0] for t in stub_texts.values()), default=-44)
    texts += list(stub_texts.values())
    band_edges = [e for e in edges if e.source in local and e.target in local]
    spacing = max(items[k].height + items[k].below for k in local) + 24
    # rows spread until every label finds a free place: in the middle of the gap before its
    # target while the rows stay within 1.6 times their closest, then anywhere along its edge
    for attempt in range(26):
        factor = 1.1 ** (attempt if attempt < 6 else attempt - 6)
        for k in local:
            items[k].y = items[k].row * spacing * factor
        placed, boxes = _place_labels(items, band_edges, local, spans, anywhere=attempt >= 6)
        if placed:
            break
    lanes = {}  # a stub that would cross a node detours above everything on its way
    for source, text in sorted(stub_texts.items(), key=lambda st: -items[st[0]].x):
        item = items[source]
        w, h = _size(text, renderer)
        lanes[source] = item.y
        if _crosses(boxes, (item.ends()[1], item.y), (end + 4 + w, item.y), item.box()):
            over = [b for b in boxes if b[2] > item.ends()[1] and b[0] < end + 4 + w]
            lanes[source] = min(b[1] for b in over) - h / 2 - 6
        boxes.append((end + 4, lanes[source] - h / 2 - 2, end + 4 + w, lanes[source] + h / 2 + 2))
    shift = top - min(b[1] for b in boxes)
    for k in local:
        items[k].y += shift
    for e in band_edges:
        e.at = (e.at[0], e.at[1] + shift)
        e.lane = None if e.lane is None else e.lane + shift
    texts += [t for e in band_edges for t in (e.value, e.gradient) if t is not None]
    return (max(b[3] for b in boxes) + shift, right,
            [(s, t, end, lanes[s] + shift) for s, t in stub_texts.items()], texts)


def _copy_sources(ax: Any, items: list[_Item], incoming: list[_Edge], band: list[int],
                  row_of: dict, renderer: Any, texts: list) -> dict[int, int]:
    """Grey copies of the sources in earlier rows, in a column of their own before the band;
    the incoming edges start from them. Returns {source item: its copy}."""
    copies: dict[int, int] = {}
    for edge in sorted(incoming, key=lambda e: items[e.target].row):
        if edge.source not in copies:
            source = items[edge.source]
            label = ax.text(0, 0, source.name, ha="center", va="center", fontsize=_NODE_SIZE,
                            color=_GREY, style="italic", zorder=3)
            caption = ax.text(0, 0, f"from row {row_of[source.column]}", ha="center",
                              va="top", fontsize=_CAPTION_SIZE, color=_GREY, zorder=3)
            copy = _Item(label, caption, band[0] - 1, items[edge.target].row, source.name)
            _measure_item(copy, renderer)
            copy.box_width += 8
            items.append(copy)
            copies[edge.source] = len(items) - 1
            texts += [label, caption]
        edge.source = copies[edge.source]
    _spread_rows([items[k] for k in copies.values()])
    return copies


def _place_columns(items: list[_Item], local: list[int], band: list[int], width: dict,
                   gap: dict, copies: dict[int, int]) -> tuple[float, dict]:
    """Sets the x of the band's items, column by column from the left margin; returns the
    band's right end and each column's span."""
    x, centre, spans = float(_MARGIN), {}, {}
    if copies:
        copy_width = max(items[k].width + 8 for k in copies.values())
        centre[band[0] - 1], spans[band[0] - 1] = x + copy_width / 2, (x, x + copy_width)
        x += copy_width
    for k, c in enumerate(band):
        if k or copies:
            x += gap[c]
        centre[c], spans[c] = x + width[c] / 2, (x, x + width[c])
        x += width[c]
    for k in local:
        items[k].x = centre[items[k].column]
    return x, spans


def _spread_rows(copies: list[_Item]) -> None:
    """Copies whose targets share a row move apart, keeping their order."""
    copies.sort(key=lambda item: item.row)
    for before, item in zip(copies, copies[1:]):
        item.row = max(item.row, before.row + 1)


def _place_labels(items: list[_Item], edges: list[_Edge], local: list[int],
                  spans: dict[int, tuple[float, float]], anywhere: bool) -> tuple[bool, list]:
    """Puts each edge's labels in the gap before its target, else after its source, else
    elsewhere along it, where they touch no box and no other label. An edge that would cross a
    node (a skip connection) detours above everything between its ends, labels on its top.
    Returns whether every label found a place, and the boxes of the nodes and labels."""
    obstacles = [items[k].box() for k in local]
    order = sorted(spans)
    placed = True
    detours = []
    for edge in sorted(edges, key=lambda e: (items[e.target].column, items[e.target].y)):
        source, target = items[edge.source], items[edge.target]
        start, end = (source.ends()[1], source.y), (target.ends()[0], target.y)
        edge.lane = None
        if _crosses(obstacles[:len(local)], start, end, source.box(), target.box()):
            detours.append(edge)
            continue
        before = order[order.index(target.column) - 1]
        after = order[order.index(source.column) + 1]
        candidates = [(spans[before][1] + spans[target.column][0]) / 2,
                      (spans[source.column][1] + spans[after][0]) / 2]
        half = edge.width / 2 + 4  # just after the source, just before the arrow's head
        candidates += [start[0] + half, end[0] - half - 10]
        candidates += [start[0] + f * (end[0] - start[0]) for f in (0.5, 0.3, 0.7, 0.2, 0.8)]
        candidates = candidates if anywhere else candidates[:1]
        for x in candidates:
            t = (x - start[0]) / (end[0] - start[0]) if end[0] > start[0] else 0.5
            edge.at = (x, start[1] + t * (end[1] - start[1]))
            if not any(_overlap(b, o) for b in _label_boxes(edge) for o in obstacles):
                break
        else:
            edge.at = (candidates[0], edge.at[1])
            placed = False
        obstacles += _label_boxes(edge)
    for edge in sorted(detours, key=lambda e: items[e.target].x - items[e.source].x):
        left, right = items[edge.source].ends()[1], items[edge.target].ends()[0]
        over = [b for b in obstacles if b[2] > left and b[0] < right]
        edge.lane = min(b[1] for b in over) - _OFFSET - edge.heights[1] - 6
        edge.at = ((left + right) / 2, edge.lane)
        obstacles += _label_boxes(edge)
    return placed, obstacles


def _crosses(boxes: list, start: tuple, end: tuple, *ends: tuple) -> bool:
    """Whether the segment start-end passes through a box other than its ends' (sampled every
    4 pixels, 2 pixels inside each box)."""
    others = [b for b in boxes if b not in ends]
    steps = max(2, int(abs(end[0] - start[0]) / 4))
    for k in range(1, steps):
        x = start[0] + (end[0] - start[0]) * k / steps
        y = start[1] + (end[1] - start[1]) * k / steps
        if any(b[0] + 2 < x < b[2] - 2 and b[1] + 2 < y < b[3] - 2 for b in others):
            return True
    return False


def _label_boxes(edge: _Edge) -> list[tuple[float, float, float, float]]:
    """The (left, top, right, bottom) of the edge's labels, with 3 pixels to spare."""
    x, y = edge.at
    half = edge.width / 2 + 3
    boxes = []
    if edge.value is not None:
        boxes.append((x - half, y - _OFFSET - edge.heights[0] - 3, x + half, y - _OFFSET))
    if edge.gradient is not None:
        boxes.append((x - half, y + _OFFSET, x + half, y + _OFFSET + edge.heights[1] + 3))
    return boxes


def _overlap(a: tuple, b: tuple) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _set_edge_labels(edge: _Edge) -> None:
    x, y = edge.at
    if edge.value is not None:
        edge.value.set_position((x, y - _OFFSET - _pad(edge.value)))
    if edge.gradient is not None:
        edge.gradient.set_position((x, y + _OFFSET + _pad(edge.gradient)))


def _pad(text: Any) -> float:
    return _LABEL_PAD * text.get_fontsize() * DPI / 72


def _arrow(ax: Any, start: tuple, end: tuple, dashed: bool = False, lane: float | None = None,
           to_lane: bool = False) -> None:
    """A straight arrow; or, with a lane, up to it, along it and (unless `to_lane`) down."""
    style = "--" if dashed else "-"
    if lane is not None and lane != start[1]:
        rise = min(24.0, abs(end[0] - start[0]) / 4)
        path = [start, (start[0] + rise, lane)] + ([] if to_lane else [(end[0] - rise, lane)])
        ax.plot([p[0] for p in path], [p[1] for p in path], color="#8c959f", lw=1.0,
                linestyle=style, zorder=1, solid_capstyle="butt")
        start = path[-1]
    ax.annotate("", xy=end, xytext=start, zorder=1,
                arrowprops={"arrowstyle": "-|>", "color": "#8c959f", "lw": 1.0, "shrinkA": 0,
                            "shrinkB": 1, "linestyle": style})


def _has_tensors(edges: list[_Edge]) -> bool:
    return any(t is not None and "‖·‖" in t.get_text() for e in edges
               for t in (e.value, e.gradient))


def _legend(ax: Any, output: str, group: str, tensors: bool, wrapped: bool) -> list[list]:
    """The legend's entries, each a coloured key and its explanation."""
    entries = [("green", _VALUE, "above an edge: the value it carries (forward pass)"),
               ("red", _GRADIENT, f"below an edge: the gradient d{output}/d(that value) "
                                  "(backward pass)")]
    if tensors:
        entries.append(("[4,8,8] ‖·‖=5.2", "black", "means a tensor of shape [4,8,8] whose L2 "
                                                     "norm, √(sum of squares), is 5.2"))
    entries.append(("grey", _GREY, "under a box: the operations of the layer" if group ==
                    "layer" else "under a box: the name of the value it computes"))
    if wrapped:
        entries.append(("grey italics", _GREY, "mark a value computed in an earlier row"))
    return [[ax.text(0, 0, key, ha="left", va="top", fontsize=_LEGEND_SIZE, color=colour,
                     fontweight="bold"),
             ax.text(0, 0, text, ha="left", va="top", fontsize=_LEGEND_SIZE)]
            for key, colour, text in entries]


def _place_legend(entries: list[list], top: float, width: float, renderer: Any) -> float:
    """Entries flow left to right, wrapping at the figure's width; returns the bottom."""
    x, y, line = float(_MARGIN), top, 0.0
    for entry in entries:
        sizes = [_size(t, renderer) for t in entry]
        if x > _MARGIN and x + sum(w + 5 for w, _ in sizes) > width - _MARGIN:
            x, y, line = float(_MARGIN), y + line + 4, 0.0
        for text, (w, h) in zip(entry, sizes):
            text.set_position((x, y))
            x, line = x + w + 5, max(line, h)
        x += 24
    return y + line


def _label(node: Any) -> str:
    if node.kind in ("input", "constant", "group"):
        return node.name
    constants = [i for i in node.inputs if not i.isidentifier()]
    return node.op + (" " + ", ".join(constants) if constants else "")


def _short(value: Any) -> str:
    """An edge label: the number for a scalar or a small array, else shape and L2 norm."""
    if value is None:
        return ""
    if isinstance(value, tuple):
        return ", ".join(_short(v) for v in value)
    if is_key(value):
        return summary(value)
    a = np.asarray(value)
    if a.size <= 4 or not np.issubdtype(a.dtype, np.number):
        return summary(a, digits=3)
    norm = np.linalg.norm(a.astype(np.float64).ravel())
    return f"[{','.join(map(str, a.shape))}] ‖·‖={norm:.3g}"
