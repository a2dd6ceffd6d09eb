"""The explained graph as one interactive, self-contained HTML page (`Explanation.to_html`).

The page steps through the forward pass node by node (each node's value appears) and then the
backward pass (at the node being processed: its upstream gradient, its local derivatives and
the downstream gradients, `downstream = local x upstream` with the numbers filled in), with
buttons, a slider and the arrow keys; a click on a node shows its operation, its gate's rules
and one-line math, and its values and gradients (a table, or a heat map for a bigger tensor,
with shape, min, max and L2 norm); it switches between one node per gate and one per layer,
and shows the flat code with the lines of the current step highlighted.

Everything is inline: the data as JSON (every '<', '>' and '&' escaped, so no name can close
the script), the styles, the script and the drawing (SVG built by the script). A
Content-Security-Policy forbids the page any network access. The layout is the static
picture's (`_render._layout`: columns by longest path, rows by the nodes read).

Every number on the page is written by one rule, `number` here and `fmt` in the page's script:
4 significant digits, rounded half away from zero, NaN and inf by name.
"""

from __future__ import annotations

import decimal
import math
import os
import pathlib
from typing import Any

import numpy as np

from difprog.errors import ArgumentError, DifprogError
from difprog.graph import _flat_code, _render
from difprog.graph._html_page import TEMPLATE
from difprog.graph._table import is_key, summary
from difprog.pages import fill, write_page

MAX_SIDE = 32  # a tensor shows at most MAX_SIDE x MAX_SIDE of its entries
MAX_NODES = 400  # the other grouping is included up to this many nodes


def number(x: float) -> str:
    """A number as the page writes it: 4 significant digits, half away from zero, trailing
    zeros dropped, plain from 1e-5 to below 1e4 and as `1.5e-7` beyond; `NaN`, `inf`, `-inf`.

    Example:
        >>> [number(v) for v in (0.7310585786, -12.0, 1.0625, 1234567.0, float("nan"))]
        ['0.7311', '-12', '1.063', '1.235e6', 'NaN']
    """
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    with decimal.localcontext() as context:
        context.rounding = decimal.ROUND_HALF_UP
        mantissa, exponent = format(decimal.Decimal(abs(x)), ".3e").split("e")
    digits, e, sign = mantissa.replace(".", ""), int(exponent), "-" if x < 0 else ""
    if -5 <= e < 4:
        whole = digits[:e + 1].ljust(e + 1, "0") if e >= 0 else "0"
        fraction = (digits[e + 1:] if e >= 0 else "0" * (-e - 1) + digits).rstrip("0")
        return sign + whole + ("." + fraction if fraction else "")
    return f"{sign}{(digits[0] + '.' + digits[1:]).rstrip('0').rstrip('.')}e{e}"


def write(explanation: Any, path: str | os.PathLike, title: str | None = None) -> pathlib.Path:
    """Writes the explanation's interactive page to `path` (an .html file), atomically."""
    path = pathlib.Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ArgumentError(f"to_html writes an .html file, got {str(path)!r}")
    return write_page(path, page(explanation, title))


def page(explanation: Any, title: str | None = None) -> str:
    """The page's HTML: the template with the payload and the title filled in."""
    data = payload(explanation, title)
    return fill(TEMPLATE, data["title"], data)


def payload(explanation: Any, title: str | None = None) -> dict:
    """The page's data: both groupings (where there are layers), the tensors, the flat code."""
    e = explanation
    groupings = {e.group: e}
    if any(step.scope for step in e.program.steps):
        other = "gate" if e.group == "layer" else "layer"
        candidate = e.grouped(other)
        if len(candidate.nodes) <= MAX_NODES:
            groupings[other] = candidate
    code, forward, backward, code_error = _code(e)
    tensors = _Tensors()
    output = e.program.output
    data = {
        "title": title or f"difprog.explain: {output} = f({', '.join(e.program.arg_names)})",
        "output": output if isinstance(output, str) else None,
        "value": tensors.inline(e.value),
        "agrees": bool(e.agrees),
        "reference_error": number(e.reference_error),
        "initial": e.group,
        "groupings": {},
        "code": code.splitlines() if code else [],
        "code_error": code_error,
        "code_steps": _code_steps(code.splitlines() if code else []),
        "max_side": MAX_SIDE,
    }
    for name in ("gate", "layer"):
        if name in groupings:
            data["groupings"][name] = _grouping(groupings[name], tensors, forward, backward)
    data["tensors"] = tensors.table
    return data


def _code(e: Any) -> tuple[str, dict, dict, str | None]:
    try:
        source, forward, backward = _flat_code.flat_code_lines(e.program, e.values)
    except DifprogError as error:
        return "", {}, {}, str(error)
    return source, forward, backward, None


def _code_steps(lines: list[str]) -> dict:
    """The flat code's lines of the first and the last step: f_and_grad's header (the inputs)
    and its return statement (f and the gradients), each as (first, last), counted from 1."""
    steps = {}
    start = next((i for i, line in enumerate(lines) if line.startswith("def f_and_grad(")), None)
    if start is not None:
        steps["start"] = [start + 1, min(start + 2, len(lines))]
        end = max((i for i, line in enumerate(lines) if line.startswith("    return ")),
                  default=None)
        if end is not None and end > start:
            steps["done"] = [end + 1, len(lines)]
    return steps


def _grouping(e: Any, tensors: _Tensors, forward: dict, backward: dict) -> dict:
    """One grouping's nodes (with layout and lines of flat code), edges and steps."""
    nodes = e.nodes
    producer = {o: i for i, n in enumerate(nodes) for o in n.outputs}
    links = [(producer[name], j, k) for j, n in enumerate(nodes)
             for k, name in enumerate(n.inputs) if name in producer]
    column, row = _render._layout(len(nodes), links) if nodes else ([], [])
    out = []
    for i, node in enumerate(nodes):
        out.append({
            "name": node.name, "op": node.op, "kind": node.kind, "scope": node.scope,
            "label": _render._label(node), "inputs": list(node.inputs),
            "outputs": list(node.outputs), "column": int(column[i]), "row": float(row[i]),
            "value": [tensors.named("v", o, e.values.get(o)) for o in node.outputs],
            "upstream": [tensors.named("g", o, e.grads.get(o)) for o in node.outputs],
            "local": None if node.local is None else [tensors.inline(v) for v in node.local],
            "downstream": [tensors.inline(v) for v in node.downstream],
            "rule": node.rule, **_rules(e, node),
            "lines": {"forward": _span(forward, node.steps),
                      "backward": _span(backward, node.steps)},
        })
    steps = [{"phase": "start"}]
    steps += [{"phase": "forward", "node": i} for i, n in enumerate(nodes) if n.steps]
    steps += [{"phase": "backward", "node": i} for i, n in reversed(list(enumerate(nodes)))
              if n.steps and any(g is not None for g in n.downstream)]
    steps.append({"phase": "done"})
    return {"nodes": out, "edges": [[i, j, k] for i, j, k in links], "steps": steps,
            "group": e.group}


def _rules(e: Any, node: Any) -> dict:
    """The gate's name, its rules' names and its one-line math, for a node of one step."""
    if len(node.steps) != 1:
        return {"gate": None, "rules": [], "math": ""}
    step = e.program.steps[node.steps[0]]
    if step.call is None:
        name = getattr(step.primitive, "name", step.op)
        return {"gate": None, "rules": [f"JAX's rule for primitive {name}"], "math": ""}
    gate = step.call.gate
    return {"gate": gate.name, "rules": [f"{gate.name}.backward", f"{gate.name}.tangent"],
            "math": _first_paragraph(gate.forward.__doc__)}


def _first_paragraph(doc: str | None) -> str:
    """A docstring's first paragraph on one line (a gate's: its math and derivative)."""
    lines = []
    for line in (doc or "").strip().splitlines():
        if not line.strip():
            break
        lines.append(line.strip())
    return " ".join(lines)


def _span(spans: dict, steps: tuple[int, ...]) -> list[int] | None:
    """The (first, last) flat-code lines of these steps' statements, or None."""
    found = [spans[s] for s in steps if s in spans]
    return [min(a for a, _ in found), max(b for _, b in found)] if found else None


class _Tensors:
    """Tensors stored once by key (a value or gradient of a name), or inline."""

    def __init__(self):
        self.table: dict[str, Any] = {}

    def named(self, kind: str, name: str, value: Any) -> str | None:
        if value is None:
            return None
        key = f"{kind}:{name}"
        if key not in self.table:
            self.table[key] = tensor(value)
        return key

    def inline(self, value: Any) -> Any:
        return None if value is None else tensor(value)


def tensor(value: Any) -> dict:
    """A value for the page: shape, dtype, min, max, L2 norm and at most MAX_SIDE x MAX_SIDE
    entries (the squeezed array's leading axes merged into rows), non-finite ones as text."""
    if isinstance(value, tuple):
        return {"kind": "tuple", "items": [tensor(v) for v in value]}
    if is_key(value):
        return {"kind": "text", "text": summary(value), "shape": list(np.shape(value))}
    a = np.asarray(value)
    if a.dtype == bool:
        a = a.astype(np.int8)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        return {"kind": "text", "text": summary(a), "shape": list(a.shape)}
    wide = a.astype(np.float64)
    finite = wide[np.isfinite(wide)]
    squeezed = np.squeeze(wide)
    view = squeezed.reshape(1, -1) if squeezed.ndim == 1 else (
        squeezed.reshape(-1, squeezed.shape[-1]) if squeezed.ndim else squeezed.reshape(1, 1))
    shown = view[:MAX_SIDE, :MAX_SIDE]
    return {
        "kind": "array", "shape": list(a.shape), "dtype": str(np.asarray(value).dtype),
        "size": int(a.size), "rows": int(view.shape[0]), "cols": int(view.shape[1]),
        "scalar": a.ndim == 0,
        "min": _json_number(finite.min()) if finite.size else None,
        "max": _json_number(finite.max()) if finite.size else None,
        "norm": _json_number(np.linalg.norm(wide.ravel())),
        "nan": int(np.isnan(wide).sum()), "inf": int(np.isinf(wide).sum()),
        "data": [[_json_number(v) for v in r] for r in shown],
        "integer": bool(np.issubdtype(a.dtype, np.integer)),
    }


def _json_number(v: Any) -> float | str:
    """A float for JSON, or 'NaN' / 'inf' / '-inf', which JSON cannot hold."""
    v = float(v)
    return v if math.isfinite(v) else number(v)
