"""Objectives: what an optimised input should maximise, read from the model's activations.

An objective maps the activations of a batch (`{'input': images, 'output': logits, path:
layer output, ...}`) to one score per image. Objectives combine with +, - and * (by numbers or by
other objectives); regularisers are objectives on the input image, so
`class_logit(range(10)) - 0.05 * total_variation()` reads as it optimises.

An objective keeps its regularisers apart from the rest (its *feature* part) through sums,
differences and products by numbers, so that `visualize` can scale them to the feature part's
gradient: a weight of 0.05 then means the same for a class logit as for a channel of an early
layer whose gradients are tens of times smaller (see `visualize`).
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from difprog import arguments
from difprog.errors import ArgumentError, ShapeError

INPUT, OUTPUT = "input", "output"
Activations = Mapping[str, jax.Array]
Score = Callable[[Activations], jax.Array]
Penalty = Callable[[jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Objective:
    """A score per image, `score(activations) -> (batch,)`, and the layer paths it reads.

    `penalty(images) -> (batch,)`, when not None, is the regularisers' part of the score (a
    function of the input images alone) and `feature(activations)` the rest, so that
    `score = feature + penalty`. Objectives built from `l1`, `l2`, `total_variation` and `blur`
    by +, - and * by numbers have them; an objective without a penalty is all feature.
    """

    score: Score
    paths: frozenset[str]
    name: str
    penalty: Penalty | None = None
    feature: Score | None = None

    def __call__(self, activations: Activations) -> jax.Array:
        return self.score(activations)

    def parts(self) -> tuple[Score, Penalty | None]:
        """(feature, penalty): the score without its regularisers, and the regularisers."""
        if self.penalty is None:
            return self.score, None
        return self.feature or _zeros, self.penalty

    def __add__(self, other: Objective | float) -> Objective:
        return _combine(self, other, operator.add, "+")

    def __radd__(self, other: float) -> Objective:
        return self if other == 0 else _combine(self, other, operator.add, "+")

    def __sub__(self, other: Objective | float) -> Objective:
        return _combine(self, other, operator.sub, "-")

    def __rsub__(self, other: float) -> Objective:
        difference = _combine(-self, other, operator.add, "+")
        return dataclasses.replace(difference, name=f"{other:g} - {_operand(self.name)}")

    def __mul__(self, other: Objective | float) -> Objective:
        return _combine(self, other, operator.mul, "*")

    def __rmul__(self, other: float) -> Objective:
        product = _combine(self, other, operator.mul, "*")
        return dataclasses.replace(product, name=f"{other:g} * {_operand(self.name)}")

    def __neg__(self) -> Objective:
        feature, penalty = self.parts()
        return _split(lambda a: -feature(a), None if penalty is None else lambda x: -penalty(x),
                      self.paths, f"-{_operand(self.name)}")


def _split(feature: Score, penalty: Penalty | None, paths: frozenset[str], name: str
           ) -> Objective:
    """The objective feature + penalty, keeping the two parts."""
    if penalty is None:
        return Objective(feature, paths, name)
    return Objective(lambda a: feature(a) + penalty(a[INPUT]), paths, name, penalty, feature)


def _operand(name: str) -> str:
    """The name, parenthesised if it is a sum or difference (so that it can be multiplied)."""
    depth = 0
    for i, char in enumerate(name):
        depth += (char in "([{") - (char in ")]}")
        if depth == 0 and name[i:i + 3] in (" + ", " - "):
            return f"({name})"
    return name


def _zeros(acts: Activations) -> jax.Array:
    """The feature part of an objective made of regularisers only."""
    return jnp.zeros(acts[INPUT].shape[:1], acts[INPUT].dtype)


def _regularizer(penalty: Penalty, name: str) -> Objective:
    return Objective(lambda a: penalty(a[INPUT]), frozenset(), name, penalty, _zeros)


def _combine(a: Objective, b: Objective | float, op: Callable, symbol: str) -> Objective:
    fa, pa = a.parts()
    if isinstance(b, Objective):
        if op is operator.mul:  # a product mixes the parts: all of it is feature
            return Objective(lambda acts: a.score(acts) * b.score(acts), a.paths | b.paths,
                             f"{_operand(a.name)} * {_operand(b.name)}")
        name = f"{a.name} {symbol} {_operand(b.name) if op is operator.sub else b.name}"
        fb, pb = b.parts()
        penalty = None if pa is None and pb is None else (
            lambda x: op(pa(x) if pa else 0.0, pb(x) if pb else 0.0))
        return _split(lambda acts: op(fa(acts), fb(acts)), penalty, a.paths | b.paths, name)
    if not arguments.is_real(b):
        raise ArgumentError(f"objectives combine with objectives or numbers, got "
                            f"{type(b).__name__}")
    b = float(b)
    name = f"{_operand(a.name) if op is operator.mul else a.name} {symbol} {b:g}"
    if op is operator.mul:
        penalty = None if pa is None else (lambda x: pa(x) * b)
    else:  # a number added to the score moves the feature part
        penalty = pa
    return _split(lambda acts: op(fa(acts), b), penalty, a.paths, name)


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


def diversity(layer: str) -> Objective:
    """How different the images of the batch are at a layer: minus each image's mean cosine
    similarity of Gram matrices to the other images' (Lucid's `diversity`, negated to be
    maximised; Mordvintsev et al., "Feature Visualization", Distill 2017).

    For image i with activations A_i (positions x channels), G_i = A_i^T A_i / ||A_i^T A_i||
    (Frobenius norm; Lucid's l2_normalize with epsilon 1e-10 on the squared norm) and

        score_i = - 1/(N-1) sum_{j != i} <G_i, G_j>,

    so the batch mean is minus the mean pairwise similarity and the batch sum, what `visualize`
    ascends, is -N/(N-1) times Lucid's value (sum_{i != j} <G_i, G_j> / N). Each image's share
    depends on the whole batch, so it is a feature term, never scaled as a regulariser; add it
    to per-image objectives, e.g. `channel(layer, 3) + 0.5 * diversity(layer)`. It needs a batch
    of at least two images.

    Example:
        >>> objective = channel("conv2d_1", 3) + 0.5 * diversity("conv2d_1")
    """

    def score(acts):
        a = _layer(acts, layer)
        n = a.shape[0]
        if n < 2 or a.ndim < 2:
            raise ArgumentError(f"diversity({layer!r}): compares the images of a batch, so it "
                                f"needs a batch of at least 2 images with channels; layer "
                                f"{layer!r}'s output has shape {tuple(a.shape)}")
        flat = a.reshape(n, -1, a.shape[-1])
        grams = jnp.einsum("npc,npd->ncd", flat, flat).reshape(n, -1)
        grams = grams * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(grams), -1,
                                                          keepdims=True), 1e-10))
        similarity = grams @ grams.T
        others = jnp.sum(similarity, -1) - jnp.diagonal(similarity)
        return -others / (n - 1)

    return Objective(score, frozenset({layer}), f"diversity({layer!r})")


def per_image(*objectives: Objective) -> Objective:
    """A batch of different objectives: image i is scored by objectives[i]."""
    if not objectives:
        raise ArgumentError("per_image needs at least one objective")
    parts = [o.parts() for o in objectives]

    def feature(acts):
        return jnp.stack([f(acts)[i] for i, (f, _) in enumerate(parts)])

    def penalty(x):
        return jnp.stack([p(x)[i] if p else jnp.zeros((), x.dtype)
                          for i, (_, p) in enumerate(parts)])

    return _split(feature, penalty if any(p for _, p in parts) else None,
                  frozenset().union(*(o.paths for o in objectives)),
                  f"per_image({_common_name([o.name for o in objectives])})")


def _common_name(names: list[str]) -> str:
    """Names that differ in one number only, as one: `channel('conv2d_1', 0..7)`; or all of
    them, joined by commas."""
    pieces = [re.split(r"(-?\d+)", name) for name in names]
    differ = [i for i in range(len(pieces[0]))
              if len({p[i] if i < len(p) else None for p in pieces}) > 1]
    if len(names) < 3 or len({len(p) for p in pieces}) > 1 or len(differ) != 1 \
            or differ[0] % 2 == 0:  # odd pieces are the numbers
        return ", ".join(names)
    numbers = [int(p[differ[0]]) for p in pieces]
    consecutive = numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    middle = f"{numbers[0]}..{numbers[-1]}" if consecutive else f"[{', '.join(map(str, numbers))}]"
    first = pieces[0]
    return "".join(first[:differ[0]]) + middle + "".join(first[differ[0] + 1:])


def l1() -> Objective:
    """The L1 norm of the image (subtract it to keep images sparse); a regulariser."""
    return _regularizer(lambda x: _total(jnp.abs(x)), "l1")


def l2(center: ArrayLike | None = None) -> Objective:
    """The squared L2 distance of the image from `center` (default 0); a regulariser.

    `center` is one image (H, W, C) or one per image (N, H, W, C). With the training images'
    mean image, subtracting it is a Gaussian prior around the average input: Simonyan et al.
    (2013) penalise ||I||^2 of mean-subtracted images, so their class models grow out of the
    average image, not out of black.
    """
    if center is None:
        return _regularizer(lambda x: _total(jnp.square(x)), "l2")
    middle = _image_array("l2", "center", center)

    def penalty(x):
        if middle.shape not in (x.shape, x.shape[1:]):
            raise ShapeError(f"regulariser 'l2': center of shape {list(middle.shape)} does not "
                             f"fit images of shape {list(x.shape)}; pass one image (H, W, C) "
                             f"or a batch of them")
        return _total(jnp.square(x - middle.astype(x.dtype)))

    return _regularizer(penalty, "l2(center)")


def _image_array(owner: str, name: str, value: object) -> jax.Array:
    """`value` as a float array of finite numbers and rank 3 or 4, or an error naming it."""
    array = np.asarray(value) if not isinstance(value, jax.Array) else value
    if array.dtype.kind not in "biuf" or array.ndim not in (3, 4):
        raise ArgumentError(f"regulariser {owner!r}: {name} must be an image (H, W, C) or a "
                            f"batch of them, got {type(value).__name__} of shape "
                            f"{list(np.shape(array))} and dtype {array.dtype}")
    if not np.isfinite(np.asarray(array, np.float64)).all():
        raise ArgumentError(f"regulariser {owner!r}: {name} holds NaN or infinite values")
    return jnp.asarray(array) if array.dtype.kind == "f" else jnp.asarray(array, float)


def total_variation() -> Objective:
    """Total variation: the summed absolute differences of neighbouring pixels; a regulariser."""
    return _regularizer(lambda x: _total(jnp.abs(x[:, 1:] - x[:, :-1]))
                        + _total(jnp.abs(x[:, :, 1:] - x[:, :, :-1])), "total_variation")


def blur() -> Objective:
    """How far the image is from its 3x3 box blur (subtract it to smooth the image); a
    regulariser."""

    def penalty(x):
        padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
        h, w = x.shape[1:3]
        blurred = sum(padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9
        return _total(jnp.square(x - blurred))

    return _regularizer(penalty, "blur")


def _spatial_mean(a: jax.Array) -> jax.Array:
    return a.reshape(a.shape[0], -1).mean(-1)


def _total(a: jax.Array) -> jax.Array:
    return a.reshape(a.shape[0], -1).sum(-1)
