"""Trading compute for memory: rematerialisation (`remat`) and repeated blocks (`repeat`).

Backprop keeps every intermediate for the backward pass. Under `jax.checkpoint` a block keeps
only its input and recomputes its activations when the backward pass reaches it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
from jax import lax

from difprog import arguments
from difprog.errors import ArgumentError, ShapeError
from difprog.layers._context import Context, call
from difprog.layers._layer import Layer, join

REMAT_POLICIES = (None, "each", "sqrt")


def run_children(ctx: Context, keys: Sequence[str], x: Any, *, checkpoint: bool = False) -> Any:
    """The children `keys` of ctx's layer applied in order, all under one jax.checkpoint if asked.

    Inside a checkpoint nothing is recorded (recorded values would be the checkpoint's inner
    tracers); PRNG keys go in as arguments so the recomputation draws the same masks, and
    BatchNorm's updated statistics come out as outputs of the checkpoint.
    """
    if not checkpoint or ctx._run.declaring:
        for key in keys:
            x = ctx(key, x)
        return x
    kids = ctx.layer.children()
    outer = ctx._run
    params = [ctx._params if k == "" else ctx._params.get(k, {}) for k in keys]
    prng = [ctx._child_key(k, kids) for k in keys]

    def segment(params, prng, x):
        inner = dataclasses.replace(outer, visits=None, stats=None if outer.stats is None else {})
        for k, p, key in zip(keys, params, prng):
            x = call(kids[k], p, x, join(ctx.path, k), key, inner)
        return x, inner.stats

    x, stats = jax.checkpoint(segment)(params, prng, x)
    if outer.stats is not None:
        outer.stats.update(stats)
    return x


def segment_length(count: int, remat: int | str | None) -> int:
    """How many consecutive layers share one checkpoint: all of them (no remat), k, or ~sqrt."""
    if remat is None:
        return count
    if remat == "sqrt":
        return max(1, math.ceil(math.sqrt(count)))
    if not arguments.is_int(remat) or remat < 1:
        raise ArgumentError(f"remat must be None, 'sqrt' or a positive number of layers per "
                            f"checkpointed segment, got {remat!r}")
    return remat


class Remat(Layer):
    """A layer whose activations are recomputed in the backward pass instead of kept.

    Transparent: it has the wrapped layer's name, params and path, so wrapping a layer of a
    trained model changes no checkpoint.
    """

    layer: Layer

    def __post_init__(self):
        if not isinstance(self.layer, Layer):
            raise ArgumentError(f"remat takes a layer, got {type(self.layer).__name__}")

    @property
    def kind(self) -> str:
        return self.layer.kind

    @property
    def key(self) -> str | None:
        return self.layer.key

    @property
    def relu_like(self) -> bool:
        return self.layer.relu_like

    def children(self):
        return {"": self.layer}

    def forward(self, params, x, ctx):
        return run_children(ctx, [""], x, checkpoint=True)


class Repeat(Layer):
    """The same block applied `times` times with its own params each time, as one lax.scan.

    The params of every repetition are stacked on a leading axis of size `times`, and the block
    is traced and compiled once, however deep the stack. With `remat='each'` every repetition
    keeps only its input; with `remat='sqrt'` the scan is split into segments of about
    sqrt(times / 2) repetitions that each keep only their input: memory O(sqrt(times))
    activations for one extra forward pass. (A repetition keeps about two activations, its input
    and its output, a segment one, so sqrt(times / 2) balances the two.)
    """

    layer: Layer
    times: int
    remat: str | None = dataclasses.field(default=None, kw_only=True)
    kind = "repeat"

    def __post_init__(self):
        if not isinstance(self.layer, Layer):
            raise ArgumentError(f"repeat takes a layer, got {type(self.layer).__name__}")
        arguments.positive_int("repeat", "times", self.times)
        arguments.one_of("repeat", "remat", self.remat, REMAT_POLICIES)

    def children(self):
        return {"": self.layer}

    def forward(self, params, x, ctx):
        if ctx._run.declaring:
            ctx._node.stack = self.times
            return _keeps_shape(x, ctx("", x))
        self._check_stacked(params)
        keys = None if ctx.key is None else jax.random.split(ctx.key, self.times)
        outer = ctx._run
        collect = outer.stats is not None

        def step(h, params_and_key):
            p, key = params_and_key
            inner = dataclasses.replace(outer, visits=None, stats={} if collect else None)
            y = _keeps_shape(h, call(self.layer, p, h, ctx.path, key, inner))
            return y, inner.stats  # each repetition's statistics, stacked by the scan

        if self.remat == "each":
            step = jax.checkpoint(step)
        if self.remat != "sqrt":
            y, stats = lax.scan(step, x, (params, keys))
        else:
            length = _segment_length(self.times)
            split = lambda a: a.reshape(self.times // length, length, *a.shape[1:])

            @jax.checkpoint
            def segment(h, chunk):
                return lax.scan(step, h, chunk)

            y, stats = lax.scan(segment, x, jax.tree.map(split, (params, keys)))
            stats = jax.tree.map(lambda a: a.reshape(self.times, *a.shape[2:]), stats)
        if collect:
            outer.stats.update(stats)
        return y

    def _check_stacked(self, params):
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
            if not leaf.shape or leaf.shape[0] != self.times:
                name = "/".join(str(getattr(p, "key", p)) for p in path)
                raise ShapeError(f"param {name!r} has shape {tuple(leaf.shape)}, but a block "
                                 f"repeated {self.times} times needs its params stacked on a "
                                 f"leading axis of {self.times}")


def _keeps_shape(h: Any, y: Any) -> Any:
    if y.shape != h.shape or y.dtype != h.dtype:
        raise ShapeError(f"feeds its block's output back in, so the block must keep the shape "
                         f"and dtype of its input, but it maps {h.dtype}{tuple(h.shape)} to "
                         f"{y.dtype}{tuple(y.shape)}")
    return y


def remat(layer: Layer) -> Remat:
    """Recomputes `layer`'s activations in the backward pass instead of keeping them.

    The params, their keys and the outputs are unchanged; gradients are identical.

    Example:
        >>> model = layers.serial(layers.remat(layers.serial(layers.Dense(512), layers.Tanh())),
        ...                       layers.Dense(10))
    """
    return Remat(layer)


def repeat(layer: Layer, times: int, *, remat: str | None = None,
           name: str | None = None) -> Repeat:
    """`layer` applied `times` times in sequence, each with its own params, as one lax.scan.

    Args:
        layer: a block that keeps the shape of its input, such as
            `serial(Dense(512), Tanh())`.
        times: how many repetitions.
        remat: None (keep every activation), 'each' (recompute each repetition's activations
            in the backward pass), or 'sqrt' (checkpoint segments of about sqrt(times / 2)
            repetitions).

    Example:
        >>> deep = layers.repeat(layers.serial(layers.Dense(512), layers.Tanh()), 64,
        ...                      remat="sqrt")
        >>> params = deep.init(jax.random.key(0), jnp.zeros((8, 512)))  # w: (64, 512, 512)
    """
    return Repeat(layer, times, remat=remat, name=name)


def _segment_length(times: int) -> int:
    """The divisor of `times` closest to sqrt(times / 2), so the scan splits into equal segments."""
    best = math.sqrt(times / 2)
    return min((d for d in range(1, times + 1) if times % d == 0), key=lambda d: abs(d - best))
