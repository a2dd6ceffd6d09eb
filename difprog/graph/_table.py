"""The explained graph as a text table: scalars in full, tensors summarised."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from difprog.errors import ArgumentError

_COLUMNS = ("node", "op", "inputs", "value", "upstream", "local", "downstream")
_NORM = " |"  # opens a tensor's L2 norm, as in f32[4,8] |5.2|


def summary(x: Any, digits: int = 4) -> str:
    """A short text for a value: the number itself for a scalar, else dtype, shape and norm."""
    if x is None:
        return "-"
    if isinstance(x, tuple):
        return "(" + ", ".join(summary(v, digits) for v in x) + ")"
    if is_key(x):
        return f"key[{','.join(map(str, np.shape(x)))}]"
    a = np.asarray(x)
    shape = f"{_short_dtype(a.dtype)}[{','.join(map(str, a.shape))}]"
    if a.dtype == bool or not np.issubdtype(a.dtype, np.number):
        return str(a.tolist()) if a.size <= 4 else shape
    if a.ndim == 0:
        return _number(a.item(), digits)
    if a.size <= 4:
        return _nested(a, digits)
    norm = float(np.linalg.norm(a.astype(np.float64).ravel()))
    return f"{shape}{_NORM}{_number(norm, 3)}|"


def _short_dtype(dtype: np.dtype) -> str:
    """float32 as f32, int32 as i32, bool as bool: the names jaxprs print."""
    if dtype == np.bool_:
        return "bool"
    return {"f": "f", "i": "i", "u": "u", "c": "c"}.get(dtype.kind, "") + str(dtype.itemsize * 8)


def is_key(x: Any) -> bool:
    """Whether x is an array of PRNG keys (which have no numbers to print)."""
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def table(nodes: Sequence, width: int = 26) -> str:
    """One row per node; a node's downstream gradients are listed per input, `name: gradient`.

    A tensor is summarised as dtype[shape] |L2 norm|; a line under the table says so.
    """
    if width < 8:
        raise ArgumentError(f"table: width must be at least 8 characters, got {width}")
    rows = [_COLUMNS]
    for node in nodes:
        local = "-" if node.local is None else ", ".join(summary(v) for v in node.local)
        downstream = ", ".join(f"{i}: {summary(g)}" for i, g in zip(node.inputs, node.downstream)
                               if g is not None)
        rows.append((node.name, node.op, ", ".join(node.inputs), summary(node.value),
                     summary(node.upstream), local, downstream or "-"))
    rows = [tuple(_clip(cell, width) for cell in row) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if any(_NORM in cell for row in rows[1:] for cell in row):
        lines += ["", "dtype[shape] |n|: a tensor and its L2 norm n, the square root of its sum "
                      "of squares"]
    return "\n".join(lines)


def _nested(a: np.ndarray, digits: int) -> str:
    if a.ndim == 0:
        return _number(a.item(), digits)
    return "[" + " ".join(_nested(row, digits) for row in a) + "]"


def _number(v: float, digits: int) -> str:
    if isinstance(v, (int, np.integer)):
        return str(v)
    text = f"{v:.{digits}g}"
    return "0" if text == "-0" else text


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
