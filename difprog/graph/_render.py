"""The explained graph drawn as the lecture slides draw it: inputs on the left, the output on
the right, each edge's forward value above it (green) and its gradient below it (red).

Nodes are placed in columns by their longest path from an input and ordered within a column by
the mean height of the nodes they read (a few barycentre sweeps keep crossings down).
Matplotlib writes SVG (text kept as text) or PNG by the path's suffix, atomically.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np

from difprog._files import atomic
from difprog.errors import ArgumentError
from difprog.graph._table import is_key, summary

_VALUE, _GRADIENT, _MAX_NODES = "#1a7f37", "#cf222e", 400
_COLUMN, _ROW, _PAD = 3.2, 1.5, 0.45


def render(explanation: Any, path: str | os.PathLike) -> pathlib.Path:
    """Draws the explanation's nodes and edges to `path` (.svg or .png)."""
    import matplotlib
    from matplotlib.figure import Figure

    path = pathlib.Path(path)
    if path.suffix.lower() not in (".svg", ".png"):
        raise ArgumentError(f"render writes .svg or .png files, got {str(path)!r}")
    nodes = explanation.nodes
    if len(nodes) > _MAX_NODES:
        raise ArgumentError(
            f"render: {len(nodes)} nodes are too many to draw legibly (at most {_MAX_NODES}); "
            f"draw explanation.grouped('layer') instead, one node per layer")
    producer = {o: i for i, n in enumerate(nodes) for o in n.outputs}
    edges = [(producer[name], j, k) for j, n in enumerate(nodes)
             for k, name in enumerate(n.inputs) if name in producer]
    x, y = _layout(len(nodes), edges)
    columns, rows = max(x) + 2, max(np.ptp(y) if len(y) else 0, 1) + 1
    figure = Figure(figsize=(min(2.6 * columns + 1, 80), min(1.25 * rows + 1, 80)))
    ax = figure.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_xlim(-_COLUMN * 0.6, _COLUMN * (max(x) + 1.1))
    ax.set_ylim(min(y) * _ROW - _ROW * 0.8, max(y) * _ROW + _ROW * 0.8)
    labels = [_node(ax, x[i] * _COLUMN, y[i] * _ROW, node) for i, node in enumerate(nodes)]
    half = _half_widths(figure, ax, labels)
    for i, j, k in edges:
        start = (x[i] * _COLUMN + half[i], y[i] * _ROW)
        end = (x[j] * _COLUMN - half[j], y[j] * _ROW)
        name = nodes[j].inputs[k]
        _edge(ax, start, end, _short(explanation.values[name]), _short(nodes[j].downstream[k]))
    last = next((i for i, n in enumerate(nodes) if explanation.program.output in n.outputs), None)
    if last is not None:
        start = (x[last] * _COLUMN + half[last], y[last] * _ROW)
        end = (start[0] + _COLUMN * 0.7, start[1])
        _edge(ax, start, end, _short(explanation.value), "1")
        ax.text(end[0] + 0.1, end[1], explanation.program.output, ha="left", va="center",
                fontsize=10, fontweight="bold")
    with atomic(path) as temporary, matplotlib.rc_context({"svg.fonttype": "none"}):
        figure.savefig(temporary, format=path.suffix[1:].lower(), dpi=110)
    return path


def _layout(n: int, edges: list[tuple[int, int, int]]) -> tuple[list[int], list[float]]:
    """Columns by longest path from a source; rows by barycentre of the nodes each one reads."""
    column = [0] * n
    readers: list[list[int]] = [[] for _ in range(n)]
    for i, j, _ in sorted(edges, key=lambda e: e[1]):
        if i < j:
            column[j] = max(column[j], column[i] + 1)
            readers[j].append(i)
    for i in range(n):
        consumers = [column[j] for s, j, _ in edges if s == i and j > i]
        if not readers[i] and consumers:
            column[i] = min(consumers) - 1
    by_column: dict[int, list[int]] = {}
    for i in range(n):
        by_column.setdefault(column[i], []).append(i)
    row = [0.0] * n
    for _ in range(4):
        for members in by_column.values():
            for i in members:
                if readers[i]:
                    row[i] = float(np.mean([row[r] for r in readers[i]]))
            members.sort(key=lambda i: row[i])
            for position, i in enumerate(members):
                row[i] = position - (len(members) - 1) / 2
    return column, [-r for r in row]


def _node(ax: Any, x: float, y: float, node: Any) -> Any:
    """Draws a node: inputs as bold names, operations as boxes named by the value they compute."""
    label = _label(node)
    if node.kind in ("input", "constant"):
        return ax.text(x, y, label, ha="center", va="center", fontsize=10, fontweight="bold")
    colour = "#ddf4ff" if node.kind in ("gate", "group") else "#f6f8fa"
    caption = node.op if node.kind == "group" else node.name
    ax.text(x, y - 0.42, caption, ha="center", va="top", fontsize=7, color="#57606a", zorder=3)
    return ax.text(x, y, label, ha="center", va="center", fontsize=9, zorder=3,
                   bbox={"boxstyle": f"round,pad={_PAD}", "fc": colour, "ec": "#57606a", "lw": 1.0})


def _half_widths(figure: Any, ax: Any, labels: list) -> list[float]:
    """Each label's half width in data units, measured by the renderer, box padding included."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(figure).get_renderer()
    (left, _), (right, _) = ax.transData.transform([(0, 0), (1, 0)])
    pixels_per_unit = right - left
    widths = []
    for text in labels:
        pad = _PAD * text.get_fontsize() * figure.dpi / 72 if text.get_bbox_patch() else 4
        widths.append((text.get_window_extent(renderer).width / 2 + pad) / pixels_per_unit)
    return widths


def _edge(ax: Any, start: tuple, end: tuple, value: str, gradient: str) -> None:
    ax.annotate("", xy=end, xytext=start, zorder=1,
                arrowprops={"arrowstyle": "-|>", "color": "#8c959f", "lw": 1.0,
                                "shrinkA": 0, "shrinkB": 2})
    middle = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
    ax.text(*middle, value, ha="center", va="bottom", fontsize=8, color=_VALUE, zorder=2)
    ax.text(*middle, gradient, ha="center", va="top", fontsize=8, color=_GRADIENT, zorder=2)


def _label(node: Any) -> str:
    if node.kind in ("input", "constant", "group"):
        return node.name
    constants = [i for i in node.inputs if not i.isidentifier()]
    return node.op + (" " + ", ".join(constants) if constants else "")


def _short(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        return ", ".join(_short(v) for v in value)
    if is_key(value):
        return summary(value)
    a = np.asarray(value)
    if a.size <= 4 or not np.issubdtype(a.dtype, np.number):
        return summary(a, digits=3)
    return f"{list(a.shape)} |{np.linalg.norm(a.astype(np.float64).ravel()):.3g}|"
