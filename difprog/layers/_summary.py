"""`summary`: each layer's path, kind, output shape and parameter count, as a table."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax

from difprog.layers._combinators import Parallel
from difprog.layers._layer import Layer, as_struct
from difprog.layers._memory import Remat, Repeat
from difprog.layers._walk import walk


def summary(model: Layer, example_input: Any, *, print_fn: Callable[[str], Any] = print) -> None:
    """Prints a table of the model's layers: path, layer, output shape and number of params.

    Nothing is computed: shapes come from `jax.eval_shape`, so large models cost no memory.

    Args:
        model: any layer.
        example_input: an array or jax.ShapeDtypeStruct shaped like the model's inputs.
        print_fn: what prints each line (default print).

    Example:
        >>> layers.summary(layers.serial(layers.Dense(32), layers.Relu()), jnp.zeros((8, 64)))
        layer     kind         output    params
        --------  -----------  -------  -------
        dense_0   Dense(32)    (8, 32)    2,080
        relu_0    Relu()       (8, 32)        0
        total                             2,080 (8.1 KiB)
    """
    x = as_struct(example_input, model)
    params = jax.eval_shape(model.init, jax.random.key(0), x)
    visits = walk(model, params, x)
    rows = [_row(v.path, v.layer, v.output, params) for v in visits
            if v.path or len(visits) == 1]
    total = _count(params)
    size = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(params))
    header = ("layer", "kind", "output", "params")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    widths[3] = max(widths[3], len(f"{total:,}"))
    line = lambda cells: "  ".join(c.rjust(w) if i >= 2 else c.ljust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    print_fn(line(header))
    print_fn(line(["-" * w for w in widths]))
    for row in rows:
        print_fn(line(row))
    print_fn(line(["total", "", "", f"{total:,}"]) + f" ({_bytes(size)})")


def _row(path: str, layer: Layer, out: Any, params: Any) -> tuple[str, str, str, str]:
    depth = path.count("/")
    owned = params
    for key in path.split("/") if path else []:
        owned = owned.get(key, {}) if isinstance(owned, dict) else {}
    name = "  " * depth + (path.rsplit("/", 1)[-1] or layer.name or layer.kind)
    return name, _kind(layer), str(tuple(out.shape)), f"{_count(owned):,}"


def _kind(layer: Layer) -> str:
    """A leaf's repr; a container's class and merge, since its children have rows of their own."""
    if not layer.children() or isinstance(layer, (Remat, Repeat)):
        return repr(layer)
    merge = f"merge={layer.merge!r}" if isinstance(layer, Parallel) else ""
    return f"{type(layer).__name__}({merge})"


def _count(params: Any) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))


def _bytes(n: float) -> str:
    if n < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"
