"""The optimisation loop: gradient ascent on an input image, through the model's gate rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from difprog import arguments, inline
from difprog.errors import ArgumentError
from difprog.layers import Layer
from difprog.progress import Progress, compiling
from difprog.viz._images import (
    Parameterization,
    Transform,
    _image_shape,
    fourier,
    standard_transforms,
)
from difprog.viz._objectives import INPUT, OUTPUT, Objective
from difprog.viz._render import save_grid


class Visualization(NamedTuple):
    """Optimised images, in the model's input range, and the objective's history (steps, N). In
    a notebook it shows as the grid of images with their final scores."""

    images: np.ndarray
    history: np.ndarray
    objective: str

    def _repr_html_(self) -> str:
        scores = [f"score {float(s):.3g}" for s in self.history[-1]] if len(self.history) else None
        shown = (min(0.0, float(np.min(self.images))), max(1.0, float(np.max(self.images))))
        data = inline.png(lambda path: save_grid(self.images, path, scores, shown,
                                                 title=self.objective))
        return inline.picture(data, alt=f"feature visualisation: {self.objective}")


def visualize(model: Layer, params: Any, objective: Objective, shape: tuple[int, int, int, int],
              *, parameterization: Parameterization | None = None,
              transforms: Transform | None | bool = None, steps: int = 512,
              optimizer: optax.GradientTransformation | None = None,
              learning_rate: float = 0.05, seed: int = 0,
              value_range: tuple[float, float] = (0.0, 1.0), progress: bool = True,
              chunk: int = 128, scale_regularizers: bool = True) -> Visualization:
    """Optimises a batch of input images to maximise `objective` of `model`.

    Every step: parameters -> image (sigmoid into `value_range`) -> random transforms -> the
    model, capturing the layers the objective reads -> the objective's score per image; optax
    (Adam by default) ascends its gradient, which flows back through every gate's backward rule.
    The loop is jit-compiled as a lax.scan over chunks of steps.

    Regularisers are scaled to the objective (`scale_regularizers`, the default): at every step
    and for every image, the gradient of the regularisers (`l1`, `l2`, `total_variation`,
    `blur`, with their weights) is multiplied by the root mean square over pixels of the
    gradient of the rest of the objective. A regulariser's weight is thus its pull on a pixel
    relative to the objective's typical pull: `- 0.05 * l1()` pulls each pixel towards 0 with
    5% of the objective's RMS gradient, whether the objective is a class logit or the mean of a
    channel of the first layer, whose gradients are tens of times smaller. Without scaling,
    weights that suit a class logit (0.05) flatten a channel's images to a uniform black.

    Args:
        model: the model; params: its params.
        objective: the score per image to maximise (see `class_logit`, `channel`, ...).
        shape: (N, H, W, C) of the image batch.
        parameterization: `fourier()` (default) or `pixel()`; both decorrelate the colours of
            3-channel images (Lucid's colour parameterisation) unless given decorrelate=False.
        transforms: a transform (default `standard_transforms(H)`, which also rotates images
            64 pixels or taller); False for none.
        steps: optimisation steps.
        seed: seeds the initial parameters and every transform, so a seed reproduces a run.
        value_range: the model's valid input range.
        progress: show a progress bar on stderr.
        scale_regularizers: scale the regularisers' gradient to the objective's (above);
            False adds the objective's gradient as written. An objective made of regularisers
            alone, or an image whose objective has a zero gradient, is never scaled.

    Returns:
        The images (N, H, W, C) and the history (steps, N) of each image's score.

    Example:
        >>> result = visualize(model, params, class_logit(range(10)) - 0.05 * total_variation(),
        ...                    (10, 8, 8, 1))
    """
    arguments.positive_int("visualize", "steps", steps)
    shape = _image_shape(shape)
    param = parameterization or fourier()
    transform = standard_transforms(shape[1]) if transforms is None else transforms or None
    optimizer = optimizer or optax.adam(learning_rate)
    image_of = _image_function(param, shape, value_range)
    step = _ascent_step(model, params, objective, image_of, transform, optimizer,
                        scale_regularizers)
    run = jax.jit(lambda z, state, keys: jax.lax.scan(step, (z, state), keys))
    init_key, step_key = jax.random.split(jax.random.key(seed))
    z = param.init(init_key, shape)
    state = optimizer.init(z)
    keys = jax.random.split(step_key, steps)
    history = []
    bar = Progress(steps, f"visualizing {objective.name}", enabled=progress, unit="steps")
    with bar:
        for start in range(0, steps, chunk):
            size = len(keys[start:start + chunk])
            if start == 0 or size < chunk:  # a scan of a new length compiles
                compiling(f"the visualisation loop ({size} steps a call)", progress)
            (z, state), values = run(z, state, keys[start:start + chunk])
            history.append(np.asarray(values))
            bar.set_postfix(score=f"{float(np.mean(history[-1][-1])):.3f}")
            bar.update(len(history[-1]))
    images = np.asarray(jax.jit(image_of)(z))
    return Visualization(images, np.concatenate(history), objective.name)


def _ascent_step(model: Layer, params: Any, objective: Objective, image_of: Callable,
                 transform: Transform | None, optimizer: optax.GradientTransformation,
                 scale_regularizers: bool) -> Callable:
    """One step of gradient ascent on the image parameters z: `((z, state), key) ->
    ((z, state), scores)`, the regularisers' gradient scaled to the objective's (see
    `visualize`)."""
    paths = tuple(sorted(objective.paths - {INPUT, OUTPUT}))
    feature, penalty = objective.parts() if scale_regularizers else (objective.score, None)

    def feature_scores(image, key):
        seen = transform(key, image) if transform else image
        out = model.run(params, seen, capture=paths)
        return feature({INPUT: image, OUTPUT: out.output, **out.captured})

    def step(carry, key):
        z, state = carry
        image, image_pullback = jax.vjp(image_of, z)
        values, pullback = jax.vjp(lambda x: feature_scores(x, key), image)
        (grads,) = pullback(jnp.ones_like(values))
        if penalty is not None:
            penalties, penalty_pullback = jax.vjp(penalty, image)
            (penalty_grads,) = penalty_pullback(jnp.ones_like(penalties))
            grads = grads + _rms(grads) * penalty_grads
            values = values + penalties
        (grads,) = image_pullback(-grads)
        updates, state = optimizer.update(grads, state, z)
        return (optax.apply_updates(z, updates), state), values

    return step


def _rms(grads: jax.Array) -> jax.Array:
    """Each image's root mean square gradient, shaped to broadcast; 1 where it is zero."""
    rms = jnp.sqrt(jnp.mean(jnp.square(grads.reshape(grads.shape[0], -1)), axis=1))
    return jnp.where(rms > 0, rms, 1.0).reshape((-1,) + (1,) * (grads.ndim - 1))


def _image_function(param: Parameterization, shape: tuple, value_range: tuple[float, float]
                    ) -> Callable:
    low, high = value_range
    if not high > low:
        raise ArgumentError(f"visualize: value_range must be (low, high) with high > low, got "
                            f"{value_range}")
    return lambda z: low + (high - low) * param.to_image(z, shape)

