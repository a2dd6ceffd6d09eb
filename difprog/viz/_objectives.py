"""Objectives: what an optimised input should maximise, read from the model's activations.

An objective maps the activations of a batch (`{'input': images, 'output': logits, path:
layer output, ...}`) to one score per image. Objectives combine with +, - and * (by numbers or by
other objectives); regularisers are objectives on the input image, so
`class_logit(range(10)) - 0.05 * total_variation()` reads as it optimises.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from difprog.errors import ArgumentError, ShapeError

INPUT, OUTPUT = "input", "output"
Activations = Mapping[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Objective:
    """A score per image, `score(activations) -> (batch,)`, and the layer paths it reads."""

    score: Callable[[Activations], jax.Array]
    paths: frozenset[str]
    name: str

    def __call__(self, activations: Activations) -> jax.Array:
        return self.score(activations)

    def __add__(self, other: Objective | float) -> Objective:
        return _combine(self, other, operator.add, "+")

    def __radd__(self, other: float) -> Objective:
        return self if other == 0 else _combine(self, other, operator.add, "+")

    def __sub__(self, other: Objective | float) -> Objective:
        return _combine(self, other, operator.sub, "-")

    def __rsub__(self, other: float) -> Objective:
        return _combine(-self, other, operator.add, "+")

    def __mul__(self, other: Objective | float) -> Objective:
        return _combine(self, other, operator.mul, "*")

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return Objective(lambda a: -self.score(a), self.paths, f"-({self.name})")


def _combine(a: Objective, b: Objective | float, op: Callable, symbol: str) -> Objective:
    if isinstance(b, Objective):
        return Objective(lambda acts: op(a.score(acts), b.score(acts)), a.paths | b.paths,
                         f"({a.name} {symbol} {b.name})")
    if isinstance(b, bool) or not isinstance(b, (int, float)):
        raise ArgumentError(f"objectives combine with objectives or numbers, got "
                            f"{type(b).__name__}")
    return Objective(lambda acts: op(a.score(acts), b), a.paths, f"({a.name} {symbol} {b:g})")


def _layer(acts: Activations, path: str, channel: int | None = None) -> jax.Array:
    """The activations of layer `path`, checking that `channel` is one of its channels."""
    a = acts[path]
    if channel is not None and not -a.shape[-1] <= channel < a.shape[-1]:
        raise ArgumentError(f"layer {path!r} has {a.shape[-1]} channels (output shape "
                            f"{tuple(a.shape)}), so there is no channel {channel}")
    return a


def class_logit(classes: int | Sequence[int]) -> Objective:
    """The logit of a class; a sequence gives image i the class classes[i] (one batched run).

    Example:
        >>> objective = class_logit(range(10))   # ten images, one per digit
    """
    values = np.asarray(list(classes) if not isinstance(classes, int) else classes)
    targets = jnp.asarray(values)

    def score(acts):
        logits = acts[OUTPUT]
        if values.min() < 0 or values.max() >= logits.shape[-1]:
            raise ArgumentError(f"class_logit: classes {classes} must lie in [0, "
                                f"{logits.shape[-1]}), the model's number of classes")
        if values.ndim and len(values) != logits.shape[0]:
            raise ArgumentError(f"class_logit: {len(values)} classes for a batch of "
                                f"{logits.shape[0]} images; give one class per image")
        chosen = jnp.broadcast_to(targets, logits.shape[:1])
        return jnp.take_along_axis(logits, chosen[:, None], axis=-1)[:, 0]

    return Objective(score, frozenset(), f"class_logit({classes})")


def neuron(layer: str, channel: int, position: tuple[int, int] | None = None) -> Objective:
    """One unit of a layer's output: a channel at one position (the centre by default)."""

    def score(acts):
        a = _layer(acts, layer, channel)
        if a.ndim == 4:
            y, x = position if position is not None else (a.shape[1] // 2, a.shape[2] // 2)
            if not (0 <= y < a.shape[1] and 0 <= x < a.shape[2]):
                raise ArgumentError(f"neuron: position {(y, x)} is outside layer {layer!r}'s "
                                    f"{a.shape[1]}x{a.shape[2]} output")
            return a[:, y, x, channel]
        return a.reshape(a.shape[0], -1, a.shape[-1])[:, 0, channel]

    return Objective(score, frozenset({layer}), f"neuron({layer!r}, {channel})")


def channel(layer: str, index: int) -> Objective:
    """The mean of one channel of a layer's output over all positions."""
    return Objective(lambda acts: _spatial_mean(_layer(acts, layer, index)[..., index]),
                     frozenset({layer}), f"channel({layer!r}, {index})")


def deepdream(layer: str) -> Objective:
    """DeepDream: the mean of the squared activations of a whole layer."""
    return Objective(lambda acts: _spatial_mean(jnp.square(_layer(acts, layer))),
                     frozenset({layer}), f"deepdream({layer!r})")


def direction(layer: str, vector: jax.Array) -> Objective:
    """The mean over positions of the layer's activation vectors projected on `vector`."""
    vector = jnp.asarray(vector)

    def score(acts):
        a = _layer(acts, layer)
        if a.shape[-1] != vector.shape[-1]:
            raise ShapeError(f"direction: layer {layer!r} has {a.shape[-1]} channels but the "
                             f"direction has {vector.shape[-1]}")
        return _spatial_mean(a @ vector)

    return Objective(score, frozenset({layer}), f"direction({layer!r})")


def per_image(*objectives: Objective) -> Objective:
    """A batch of different objectives: image i is scored by objectives[i]."""
    if not objectives:
        raise ArgumentError("per_image needs at least one objective")

    def score(acts):
        scores = [o.score(acts)[i] for i, o in enumerate(objectives)]
        return jnp.stack(scores)

    return Objective(score, frozenset().union(*(o.paths for o in objectives)),
                     f"per_image({', '.join(o.name for o in objectives)})")


def l1() -> Objective:
    """The L1 norm of the image (subtract it to keep images sparse)."""
    return Objective(lambda acts: _total(jnp.abs(acts[INPUT])), frozenset(), "l1")


def l2() -> Objective:
    """The squared L2 norm of the image."""
    return Objective(lambda acts: _total(jnp.square(acts[INPUT])), frozenset(), "l2")


def total_variation() -> Objective:
    """Total variation: the summed absolute differences of neighbouring pixels."""

    def score(acts):
        x = acts[INPUT]
        return (_total(jnp.abs(x[:, 1:] - x[:, :-1])) + _total(jnp.abs(x[:, :, 1:] - x[:, :, :-1])))

    return Objective(score, frozenset(), "total_variation")


def blur() -> Objective:
    """How far the image is from its 3x3 box blur (subtract it to smooth the image)."""

    def score(acts):
        x = acts[INPUT]
        padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
        h, w = x.shape[1:3]
        blurred = sum(padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9
        return _total(jnp.square(x - blurred))

    return Objective(score, frozenset(), "blur")


def _spatial_mean(a: jax.Array) -> jax.Array:
    return a.reshape(a.shape[0], -1).mean(-1)


def _total(a: jax.Array) -> jax.Array:
    return a.reshape(a.shape[0], -1).sum(-1)
