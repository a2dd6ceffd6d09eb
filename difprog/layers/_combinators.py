"""Combinators: layers in sequence (serial), side by side (parallel), and with a skip (residual).

A container keys each child's params by its name, numbered per kind (`conv2d_0`, `conv2d_1`,
`dense_0`) unless the child was given a name; children without params get no entry.
"""

from __future__ import annotations

import dataclasses
import functools

from difprog import arguments, gates
from difprog.errors import ArgumentError, ShapeError
from difprog.layers._layer import Layer, keyed
from difprog.layers._memory import run_children, segment_length


class Serial(Layer):
    """Layers applied one after another: `serial(f, g, h)(x) = h(g(f(x)))`.

    With `remat` set, consecutive layers are grouped into segments (`remat` layers each, or
    about sqrt(len(layers)) for 'sqrt') that each run under one jax.checkpoint.
    """

    layers: tuple[Layer, ...] = dataclasses.field(metadata={"star": True})
    remat: int | str | None = None
    kind = "serial"

    def __init__(self, *layers: Layer, remat: int | str | None = None, name: str | None = None):
        _set(self, layers=tuple(layers), remat=remat, name=name)
        _set(self, _children=_children(self), segment=segment_length(len(layers), remat))

    def children(self):
        return self._children

    def forward(self, params, x, ctx):
        keys = list(self._children)
        for start in range(0, len(keys), self.segment):
            x = run_children(ctx, keys[start:start + self.segment], x,
                             checkpoint=self.remat is not None)
        return x


class Parallel(Layer):
    """Every branch applied to the same input, the outputs merged by sum or by concatenation."""

    layers: tuple[Layer, ...] = dataclasses.field(metadata={"star": True})
    merge: str = "sum"
    kind = "parallel"

    def __init__(self, *layers: Layer, merge: str = "sum", name: str | None = None):
        _set(self, layers=tuple(layers), merge=merge, name=name)
        _set(self, _children=_children(self))
        arguments.one_of("Parallel", "merge", merge, ("sum", "concat"))

    def children(self):
        return self._children

    def forward(self, params, x, ctx):
        outs = {key: ctx(key, x) for key in self._children}
        shapes = {key: tuple(out.shape) for key, out in outs.items()}
        if self.merge == "sum":
            if len(set(shapes.values())) > 1:
                raise ShapeError(f"sums its branches, so their outputs must have one shape, got "
                                 f"{shapes}; change the branches, or use merge='concat'")
            return functools.reduce(gates.add, outs.values())
        if len({(len(s), s[:-1]) for s in shapes.values()}) > 1:
            raise ShapeError(f"concatenates its branches on the last axis, so their outputs "
                             f"must agree on every other axis, got {shapes}")
        return gates.concatenate(list(outs.values()), axis=-1)


class Residual(Serial):
    """A skip connection around layers in sequence: `residual(f, g)(x) = x + g(f(x))`."""

    kind = "residual"

    def forward(self, params, x, ctx):
        y = super().forward(params, x, ctx)
        if tuple(x.shape) != tuple(y.shape):
            raise ShapeError(f"adds its input to its layers' output, so they must have one "
                             f"shape, but its layers map {tuple(x.shape)} to {tuple(y.shape)}; "
                             f"make the last layer output {x.shape[-1]} features")
        return gates.add(x, y)


def _set(layer: Layer, **values) -> None:
    for name, value in values.items():
        object.__setattr__(layer, name, value)


def _children(layer: Layer) -> dict[str, Layer]:
    if not layer.layers:
        raise ArgumentError(f"{type(layer).__name__} needs at least one layer")
    return keyed(*layer.layers, owner=type(layer).__name__)


def serial(*layers: Layer, remat: int | str | None = None, name: str | None = None) -> Serial:
    """Layers in sequence, each applied to the previous one's output.

    Args:
        *layers: the layers, first to last.
        remat: None (keep every activation for the backward pass), k (recompute the
            activations of every segment of k consecutive layers, keeping only its input), or
            'sqrt' (segments of about sqrt(len(layers)) layers).
        name: the key of its params inside a container (default `serial_<i>`).

    Example:
        >>> model = layers.serial(layers.Dense(64), layers.Relu(), layers.Dense(10))
        >>> params = model.init(jax.random.key(0), jnp.zeros((1, 784)))
        >>> sorted(params)
        ['dense_0', 'dense_1']
    """
    return Serial(*layers, remat=remat, name=name)


def parallel(*layers: Layer, merge: str = "sum", name: str | None = None) -> Parallel:
    """Branches that all take the same input; their outputs are summed or concatenated.

    Args:
        *layers: the branches (use `serial` for a branch of several layers).
        merge: 'sum' (outputs of one shape) or 'concat' (joined on the last axis).

    Example:
        >>> block = layers.parallel(layers.Conv2D(8, 1), layers.Conv2D(8, 3), merge="concat")
        >>> params = block.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
        >>> block.apply(params, jnp.zeros((1, 8, 8, 3))).shape
        (1, 8, 8, 16)
    """
    return Parallel(*layers, merge=merge, name=name)


def residual(*layers: Layer, name: str | None = None) -> Residual:
    """A skip connection: the input plus the output of `layers` applied in sequence.

    Example:
        >>> block = layers.residual(layers.Dense(32), layers.Relu(), layers.Dense(32))
        >>> params = block.init(jax.random.key(0), jnp.zeros((4, 32)))
    """
    return Residual(*layers, name=name)
