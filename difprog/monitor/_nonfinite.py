"""Where a NaN or an infinity first appears: the gate and layer, forward or backward, found by
`difprog.explain`'s passes over the failing batch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np


class Origin(NamedTuple):
    """The first non-finite value: in which pass, at which node (its gate or primitive `op`),
    in which layer (the path; '' outside any layer)."""

    direction: str
    op: str
    layer: str
    node: str

    def __str__(self) -> str:
        where = f"in layer {self.layer}" if self.layer else "outside any layer"
        what = "value" if self.direction == "forward" else "gradient (cotangent)"
        return (f"the {self.direction} pass first gives a non-finite {what} at gate {self.op} "
                f"{where} (node {self.node})")


def _bad(value: Any) -> bool:
    if isinstance(value, tuple):
        return any(map(_bad, value))
    dtype = getattr(value, "dtype", None)
    if value is None or dtype is None or not jnp.issubdtype(dtype, jnp.inexact):
        return False  # PRNG keys and integers included
    return not np.all(np.isfinite(np.asarray(value)))


def first_nonfinite(f: Callable, *args: Any, model: Any = None) -> Origin | None:
    """The first gate whose forward value, or else whose backward cotangent, is non-finite when
    differentiating the scalar f at args (None when everything is finite).

    With the `model` whose forward f runs, the layer is named by its path in the model
    ('block_0/mlp/dense_0'); otherwise by the whole jax.named_scope.

    Example:
        >>> first_nonfinite(lambda p: model.apply(p, x).sum(), params)
        Origin(direction='forward', op='log', layer='log_0', node='s12')
    """
    from difprog.graph import explain

    root = "" if model is None else (model.name or model.kind) + "/"
    layer = lambda node: node.scope[len(root):] if root and node.scope.startswith(root) else (
        "" if root and node.scope == root[:-1] else node.scope)
    nodes = explain(f, *args).nodes
    for node in nodes:
        if (node.steps or node.kind in ("input", "constant")) and _bad(node.value):
            return Origin("forward", node.op, layer(node), node.name)
    for node in reversed(nodes):
        if node.steps and any(_bad(g) for g in node.downstream):
            return Origin("backward", node.op, layer(node), node.name)
    return None
