"""`walk`: every layer a forward pass goes through, with its path, input and output."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from difprog.layers._context import visits
from difprog.layers._layer import Layer, as_input


@dataclasses.dataclass(frozen=True)
class Visit:
    """One layer met by a forward pass: its path ('' for the model itself), the layer, and its
    input and output (arrays, tracers, or ShapeDtypeStructs when walked from shapes)."""

    path: str
    layer: Layer
    input: Any
    output: Any


def walk(model: Layer, params: Any, x: Any) -> list[Visit]:
    """The layers a forward pass of `model` (evaluation mode) goes through, in the order they
    start (a container before its children), each with its path, input and output.

    Given shapes (params from `jax.eval_shape(model.init, ...)` or an x that is a
    jax.ShapeDtypeStruct) nothing is computed and the inputs and outputs are ShapeDtypeStructs.
    Called inside a traced function (`jax.eval_shape`, `jax.jit`), they are that trace's values,
    so `visit.input is other.output` says that one layer takes another's output. Layers inside
    `remat` and `repeat` run under a checkpoint or a scan and are not visited.

    Example:
        >>> [v.path for v in layers.walk(model, params, x)]
        ['', 'dense_0', 'relu_0', 'dense_1']
    """
    if not any(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in jax.tree.leaves((params, x))):
        return [Visit(*row) for row in visits(model, params, as_input(x, model))]
    found: list = []

    def run(p, x):
        rows = visits(model, p, x)
        found.extend((path, layer) for path, layer, _, _ in rows)
        return [(row[2], row[3]) for row in rows]

    shapes = jax.eval_shape(run, params, x)
    return [Visit(path, layer, i, o) for (path, layer), (i, o) in zip(found, shapes)]
