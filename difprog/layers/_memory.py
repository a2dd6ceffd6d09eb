"""Trading compute for memory: rematerialisation (`remat`) and repeated blocks (`repeat`).

Backprop keeps every intermediate for the backward pass. Under `jax.checkpoint` a block keeps
only its input and recomputes its activations when the backward pass reaches it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
from jax import lax

from difprog.errors import ArgumentError, ShapeError
from difprog.layers._layer import Layer, Run

REMAT_POLICIES = (None, "each", "sqrt")


def run_layers(steps: Sequence[tuple], x, *, checkpoint: bool = False):
    """Applies (params, layer, run) steps in order, all under one jax.checkpoint if asked.

    Inside a checkpoint nothing is recorded (recorded values would be the checkpoint's inner
    tracers); PRNG keys go in as arguments so the recomputation draws the same masks, and
    BatchNorm's updated statistics come out as outputs of the checkpoint.
    """
    if not checkpoint:
        for params, layer, run in steps:
            x = layer._call(params, x, run)
        return x
    outer = steps[0][2].stats if steps else None
    layers_ = [(layer, dataclasses.replace(run, key=None, recorder=None, stats=None))
               for _, layer, run in steps]

    def segment(params, keys, x):
        stats = None if outer is None else {}
        for p, key, (layer, run) in zip(params, keys, layers_):
            x = layer._call(p, x, dataclasses.replace(run, key=key, stats=stats))
        return x, stats

    x, stats = jax.checkpoint(segment)([p for p, _, _ in steps], [r.key for _, _, r in steps], x)
    if outer is not None:
        outer.update(stats)
    return x


def segment_length(count: int, remat: int | str | None) -> int:
    """How many consecutive layers share one checkpoint: all of them (no remat), k, or ~sqrt."""
    if remat is None:
        return count
    if remat == "sqrt":
        return max(1, math.ceil(math.sqrt(count)))
    if isinstance(remat, bool) or not isinstance(remat, int) or remat < 1:
        raise ArgumentError(f"remat must be None, 'sqrt' or a positive number of layers per "
                            f"checkpointed segment, got {remat!r}")
    return remat


class Remat(Layer):
    """A layer whose activations are recomputed in the backward pass instead of kept.

    Transparent: it has the wrapped layer's name, params and path, so wrapping a layer of a
    trained model changes no checkpoint.
    """

    def __init__(self, layer: Layer):
        if not isinstance(layer, Layer):
            raise ArgumentError(f"remat takes a layer, got {type(layer).__name__}")
        super().__init__(name=layer.name if layer.named else None)
        self.layer, self.name, self.named = layer, layer.name, layer.named
        self.relu_like = layer.relu_like

    def _settings(self):
        return [repr(self.layer)]

    def _init(self, key, x, scope):
        return self.layer._init(key, x, scope)

    def _apply(self, params, x, run):
        return run_layers([(params, self.layer, run)], x, checkpoint=True)


class Repeat(Layer):
    """The same block applied `times` times with its own params each time, as one lax.scan.

    The params of every repetition are stacked on a leading axis of size `times`, and the block
    is traced and compiled once, however deep the stack. With `remat='each'` every repetition
    keeps only its input; with `remat='sqrt'` the scan is split into segments of about
    sqrt(times / 2) repetitions that each keep only their input: memory O(sqrt(times))
    activations for one extra forward pass. (A repetition keeps about two activations, its input
    and its output, a segment one, so sqrt(times / 2) balances the two.)
    """

    kind = "repeat"

    def __init__(self, layer: Layer, times: int, *, remat: str | None = None,
                 name: str | None = None):
        super().__init__(name=name)
        if not isinstance(layer, Layer):
            raise ArgumentError(f"repeat takes a layer, got {type(layer).__name__}")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ArgumentError(f"repeat: times must be a positive int, got {times!r}")
        if remat not in REMAT_POLICIES:
            raise ArgumentError(f"repeat: remat must be one of {list(REMAT_POLICIES)}, got "
                                f"{remat!r}")
        self.layer, self.times, self.remat = layer, times, remat

    def _settings(self):
        remat = [] if self.remat is None else [f"remat={self.remat!r}"]
        return [repr(self.layer), str(self.times), *remat, *super()._settings()]

    def _init(self, key, x, scope):
        init_one = lambda k: self.layer._init(k, x, scope)[0]
        params = jax.vmap(init_one)(jax.random.split(key, self.times))
        out = jax.eval_shape(lambda p, x: self._apply(p, x, Run(path=scope.path)), params, x)
        return params, out

    def _apply(self, params, x, run):
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
            if not leaf.shape or leaf.shape[0] != self.times:
                name = "/".join(str(getattr(p, "key", p)) for p in path)
                raise ShapeError(f"{self._label(run.path)}: param {name!r} has shape "
                                 f"{tuple(leaf.shape)}, but a block repeated {self.times} times "
                                 f"needs its params stacked on a leading axis of {self.times}")
        keys = None if run.key is None else jax.random.split(run.key, self.times)
        inner = dataclasses.replace(run, key=None, recorder=None, stats=None)
        collect = run.stats is not None

        def step(h, params_and_key):
            p, key = params_and_key
            stats = {} if collect else None  # each repetition's statistics, stacked by the scan
            y = self.layer._call(p, h, dataclasses.replace(inner, key=key, stats=stats))
            if y.shape != h.shape or y.dtype != h.dtype:
                raise ShapeError(f"{self._label(run.path)} feeds its block's output back in, so "
                                 f"the block must keep the shape and dtype of its input, but it "
                                 f"maps {h.dtype}{tuple(h.shape)} to {y.dtype}{tuple(y.shape)}")
            return y, stats

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
            run.stats.update(stats)
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
