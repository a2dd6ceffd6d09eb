"""How faithful an attribution map is to the model: infidelity and max-sensitivity (Yeh,
Hsieh, Suggala, Inouye & Ravikumar 2019, "On the (in)fidelity and sensitivity of
explanations"; captum.metrics' definitions), and the deletion and insertion curves (Petsiuk,
Das & Saenko 2018, "RISE: randomized input sampling for explanation of black-box models").

Every metric takes the images x (N, ...), the classes explained and maps shaped like x (or, for
deletion and insertion, (N, H, W) position maps too); perturbed copies go through the model
stacked in one batch per sample.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from difprog import arguments, inline
from difprog.errors import ArgumentError, ShapeError
from difprog.layers import Layer
from difprog.viz._attribution import _inputs, _key, _pick
from difprog.viz._attribution_grid import ABSOLUTE
from difprog.viz._render import save_curves

INFIDELITY_NOISE = 0.003  # std of the Gaussian perturbations (captum.metrics' example)
SENSITIVITY_RADIUS = 0.02  # L-inf radius of the uniform perturbations (captum's default)


def infidelity(model: Layer, params: Any, x: jax.Array, classes: int | Sequence[int],
               maps: jax.Array, *, key: jax.Array | None = None, samples: int = 10,
               noise: float = INFIDELITY_NOISE, perturbations: jax.Array | None = None,
               normalize: bool = False) -> jax.Array:
    """`mean_s (sum(maps * I_s) - (f(x) - f(x - I_s)))^2` per image: how far the map's linear
    prediction of the score's change is from the change, for perturbations I_s (Yeh et al.).

    Args:
        model, params, x, classes: the model, its params, the images and the classes explained
            (f is the class's logit).
        maps: the attributions, shaped like x.
        key, samples, noise: draw `samples` perturbations I ~ N(0, noise^2) per image; or
        perturbations: the perturbations themselves, (samples, N, ...), each subtracted from x.
        normalize: first scale the maps by the beta that minimises the infidelity, so that only
            their direction counts (captum's `normalize=True`).

    Returns:
        (N,) infidelities; as `captum.metrics.infidelity` given the same perturbations.
    """
    name = "infidelity"
    x, targets = _inputs(name, model, params, x, classes)
    maps = _like(name, "maps", maps, x)
    perturbations = _perturbations(name, perturbations, key, samples, x, lambda k, shape: (
        arguments.real(name, "noise", noise, positive=True) * jax.random.normal(k, shape,
                                                                                 x.dtype)))
    arguments.flag(name, "normalize", normalize)
    return _infidelity(model, params, x, targets, maps, perturbations, normalize)


@functools.partial(jax.jit, static_argnums=(0, 6))
def _infidelity(model, params, x, targets, maps, perturbations, normalize):
    score = _pick(model.apply(params, x), targets)

    def one(perturbation):  # (predicted change, change) for one sample of every image
        changed = score - _pick(model.apply(params, x - perturbation), targets)
        return jnp.sum((maps * perturbation).reshape(len(x), -1), axis=1), changed

    predicted, changed = jax.lax.map(one, perturbations)  # (samples, N) each
    if normalize:  # captum's beta; the squares taken directly, never negative in float32
        a2, ad = jnp.sum(predicted**2, axis=0), jnp.sum(predicted * changed, axis=0)
        beta = jnp.where(a2 == 0, 0.0, ad / jnp.where(a2 == 0, 1.0, a2))
        predicted = beta * predicted
    return jnp.mean((predicted - changed) ** 2, axis=0)


def sensitivity_max(explain: Callable[[jax.Array, jax.Array], jax.Array], x: jax.Array,
                    classes: Any, *, key: jax.Array | None = None, samples: int = 10,
                    radius: float = SENSITIVITY_RADIUS,
                    perturbations: jax.Array | None = None) -> jax.Array:
    """`max_s ||explain(x + d_s) - explain(x)|| / ||explain(x)||` per image (a zero map's norm
    counted as 1): how much a map changes when the image barely does (Yeh et al.).

    Args:
        explain: `explain(images, classes) -> maps`, such as
            `lambda z, c: viz.saliency(model, params, z, c)`; called once on x and once on all
            perturbed copies stacked (sample s of image i at row i * samples + s, as captum).
        x, classes: the images and the classes explained (an int or one per image).
        key, samples, radius: draw `samples` offsets d uniform in [-radius, radius] per image;
        perturbations: or the offsets themselves, (samples, N, ...), each added to x.

    Returns:
        (N,) sensitivities; as `captum.metrics.sensitivity_max` given the same perturbations.
    """
    name = "sensitivity_max"
    if not callable(explain):
        raise ArgumentError(f"{name}: explain must be a function (images, classes) -> "
                                      f"maps, got {type(explain).__name__}")
    x = arguments.float_batch(name, x)
    classes = np.asarray(arguments.class_ids(name, classes, len(x), np.iinfo(np.int32).max))
    size = arguments.real(name, "radius", radius, positive=True)
    offsets = _perturbations(name, perturbations, key, samples, x, lambda k, shape: (
        jax.random.uniform(k, shape, x.dtype, -size, size)))
    count = len(offsets)
    base = jnp.asarray(explain(x, classes)).reshape(len(x), -1)
    stacked = jnp.swapaxes(x[None] + offsets, 0, 1).reshape(len(x) * count, *x.shape[1:])
    moved = jnp.asarray(explain(stacked, np.repeat(classes, count))).reshape(len(x), count, -1)
    norms = jnp.linalg.norm(base, axis=1)
    norms = jnp.where(norms == 0, 1.0, norms)
    return jnp.max(jnp.linalg.norm(moved - base[:, None], axis=2), axis=1) / norms


@dataclasses.dataclass(frozen=True)
class DeletionInsertion:
    """The deletion and insertion curves of maps: the class's probability as the most important
    positions are removed from the image (set to the baseline), or inserted into the baseline,
    a fraction `fractions[k]` at a time. A faithful map makes deletion fall fast (low area) and
    insertion rise fast (high area). Areas are trapezoids over fractions in [0, 1]."""

    fractions: np.ndarray  # (steps + 1,) from 0 to 1
    deletion: np.ndarray  # (N, steps + 1)
    insertion: np.ndarray  # (N, steps + 1)

    @property
    def deletion_area(self) -> np.ndarray:
        return _area(self.fractions, self.deletion)

    def _repr_html_(self) -> str:
        """In a notebook: the two curves, the mean over the images, with their areas."""
        curves = {f"deletion (area {self.deletion_area.mean():.3f})": self.deletion.mean(0),
                  f"insertion (area {self.insertion_area.mean():.3f})": self.insertion.mean(0)}
        data = inline.png(lambda path: save_curves(
            self.fractions, curves, path, xlabel="fraction of positions deleted or inserted",
            ylabel="probability of the class", ylim=(0.0, 1.0)))
        return inline.picture(data, alt="deletion and insertion curves")

    @property
    def insertion_area(self) -> np.ndarray:
        return _area(self.fractions, self.insertion)


def deletion_insertion(model: Layer, params: Any, x: jax.Array, classes: int | Sequence[int],
                       maps: jax.Array, *, steps: int = 28, baseline: float = 0.0
                       ) -> DeletionInsertion:
    """Petsiuk et al.'s deletion and insertion curves of the maps, per image.

    Positions (rows and columns) are ranked by the map summed over channels, highest first
    (ties by position); at step k the first round(k * H * W / steps) of them are deleted (set
    to `baseline`) or inserted (into an image of `baseline`), all channels at once.

    Args:
        model, params, x, classes: the model, its params, images (N, H, W, C) and classes.
        maps: shaped like x, or (N, H, W) (Grad-CAM's and occlusion's).
        steps: points of each curve after the first, a positive int.
        baseline: the value of a removed pixel (default 0, black).
    """
    name = "deletion_insertion"
    x, targets = _inputs(name, model, params, x, classes, spatial=True)
    maps = jnp.asarray(maps)
    if maps.shape == x.shape:
        maps = maps.sum(-1)
    _like(name, "maps", maps, x[..., 0])
    if not bool(jnp.all(jnp.isfinite(maps))):
        raise ArgumentError(f"{name}: the maps hold NaN or infinite values, which rank nowhere; "
                            f"check the method that made them")
    steps = arguments.positive_int(name, "steps", steps)
    baseline = arguments.real(name, "baseline", baseline)
    n, h, w = maps.shape
    order = np.argsort(-np.asarray(maps, np.float64).reshape(n, -1), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(h * w)[None], axis=1)
    counts = np.round(np.arange(steps + 1) * h * w / steps).astype(np.int32)
    deletion, insertion = _curves(model, params, x, targets, jnp.asarray(rank.reshape(n, h, w)),
                                  jnp.asarray(counts), baseline)
    return DeletionInsertion(counts / (h * w), np.asarray(deletion).T, np.asarray(insertion).T)


@functools.partial(jax.jit, static_argnums=0)
def _curves(model, params, x, targets, rank, counts, baseline):
    def probabilities(images):
        return _pick(jax.nn.softmax(model.apply(params, images), axis=-1), targets)

    def one(count):  # the first `count` positions of each image's ranking
        chosen = (rank < count)[..., None]
        return (probabilities(jnp.where(chosen, baseline, x)),
                probabilities(jnp.where(chosen, x, baseline)))

    return jax.lax.map(one, counts)


def _area(fractions: np.ndarray, curves: np.ndarray) -> np.ndarray:
    widths = np.diff(fractions)
    return ((curves[:, 1:] + curves[:, :-1]) / 2 * widths).sum(axis=1)


def _like(name: str, what: str, value: Any, x: jax.Array) -> jax.Array:
    value = jnp.asarray(value)
    if value.shape != x.shape:
        raise ShapeError(f"{name}: {what} must be shaped like the images' {tuple(x.shape)}, got "
                         f"{tuple(value.shape)}")
    return value


def _perturbations(name, given, key, samples, x, draw) -> jax.Array:
    """(samples, N, ...) perturbations: the ones given, checked, or `draw(key, shape)`."""
    if given is not None:
        given = jnp.asarray(given, x.dtype)
        if given.ndim != x.ndim + 1 or given.shape[1:] != x.shape or not given.shape[0]:
            raise ShapeError(f"{name}: perturbations must be (samples, *x.shape) = (S, "
                             f"{', '.join(map(str, x.shape))}), got {tuple(given.shape)}")
        return given
    samples = arguments.positive_int(name, "samples", samples)
    if key is None:
        raise ArgumentError(f"{name}: the perturbations are drawn from a key; pass "
                                      f"key=jax.random.key(seed), or perturbations=")
    return draw(_key(name, key), (samples, *x.shape))


@dataclasses.dataclass(frozen=True)
class Faithfulness:
    """Per method, over the images: the mean deletion and insertion areas and curves, and the
    mean normalised infidelity (`infidelity(..., normalize=True)`: the maps' direction only, so
    methods of different scales compare)."""

    methods: tuple[str, ...]
    curves: dict  # method -> DeletionInsertion
    infidelity: dict  # method -> mean normalised infidelity
    noise: float

    def areas(self, method: str) -> tuple[float, float]:
        """(mean deletion area, mean insertion area) of `method`."""
        curve = self.curves[method]
        return float(curve.deletion_area.mean()), float(curve.insertion_area.mean())

    _repr_html_ = inline.text  # in a notebook: the table above

    def __str__(self) -> str:
        width = max(len(m) for m in self.methods)
        lines = [f"faithfulness: the label's probability as each map's highest positions are "
                 f"deleted (set to black; the lower the area, the better) or inserted into "
                 f"black (the higher, the better), Petsiuk et al. 2018; and infidelity (Yeh et "
                 f"al. 2019, normalised, Gaussian perturbations of std {self.noise:g}; the "
                 f"lower, the better); means over the images",
                 f"  {'method':<{width}} {'deletion':>9} {'insertion':>9} {'infidelity':>11}"]
        for m in self.methods:
            deletion, insertion = self.areas(m)
            lines.append(f"  {m:<{width}} {deletion:>9.3f} {insertion:>9.3f} "
                         f"{self.infidelity[m]:>11.3g}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {m: {"deletion_area": self.areas(m)[0], "insertion_area": self.areas(m)[1],
                    "infidelity_normalized": self.infidelity[m],
                    "fractions": self.curves[m].fractions.tolist(),
                    "deletion_mean": self.curves[m].deletion.mean(0).tolist(),
                    "insertion_mean": self.curves[m].insertion.mean(0).tolist()}
                for m in self.methods} | {"infidelity_noise": self.noise}


def faithfulness(model: Layer, params: Any, x: jax.Array, classes: int | Sequence[int],
                 maps: dict, key: jax.Array, *, steps: int = 28, samples: int = 10,
                 noise: float = INFIDELITY_NOISE) -> Faithfulness:
    """Deletion, insertion and normalised infidelity of each method's maps (`{method: maps}`,
    as `viz.attributions` returns them); the infidelity's perturbations, drawn from `key`, are
    the same for every method. Saliency and SmoothGrad are ranked by |gradient|, max over
    channels, as the grid draws them (`save_attributions`). Infidelity needs maps shaped like
    x: (N, H, W) maps (Grad-CAM, occlusion) are spread evenly over the channels for it."""
    x = jnp.asarray(x)
    perturbations = arguments.real("faithfulness", "noise", noise, positive=True) * (
        jax.random.normal(_key("faithfulness", key), (samples, *x.shape), x.dtype))
    curves, infidelities = {}, {}
    for method, values in maps.items():
        values = jnp.asarray(values)
        drawn = jnp.abs(values).max(-1) if method in ABSOLUTE and values.shape == x.shape \
            else values  # ranked as the grid draws them (Simonyan's and Smilkov's |g|)
        curves[method] = deletion_insertion(model, params, x, classes, drawn, steps=steps)
        if values.shape != x.shape:
            values = jnp.broadcast_to(values[..., None] / x.shape[-1], x.shape)
        infidelities[method] = float(infidelity(model, params, x, classes, values,
                                                perturbations=perturbations,
                                                normalize=True).mean())
    return Faithfulness(tuple(maps), curves, infidelities, float(noise))
