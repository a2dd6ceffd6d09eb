"""Saliency: the gradient of a class score with respect to the input image."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from difprog.layers import Layer


def saliency(model: Layer, params: Any, images: jax.Array, classes: int | Sequence[int]
             ) -> jax.Array:
    """d logit[i, classes[i]] / d images[i] for every image of the batch, in one backward pass.

    Images do not interact in evaluation mode, so the gradient of the summed scores is each
    image's own gradient (Simonyan, Vedaldi & Zisserman 2014, "Deep inside convolutional
    networks"). Jitted: one compile per model and input shape.

    Example:
        >>> maps = saliency(model, params, data.x_test[:8], data.y_test[:8])  # (8, 8, 8, 1)
    """
    from difprog.viz._attribution import _inputs

    images, targets = _inputs("saliency", model, params, images, classes)
    return _saliency(model, params, images, targets)


@functools.partial(jax.jit, static_argnums=0)
def _saliency(model: Layer, params: Any, images: jax.Array, targets: jax.Array) -> jax.Array:
    def total_score(x):
        logits = model.apply(params, x)
        return jnp.sum(jnp.take_along_axis(logits, targets[:, None], axis=-1))

    return jax.grad(total_score)(images)


def gradient_times_input(model: Layer, params: Any, images: jax.Array,
                         classes: int | Sequence[int]) -> jax.Array:
    """The saliency map multiplied by the image (gradient x input attribution; Shrikumar,
    Greenside, Shcherbina & Kundaje 2016, "Not just a black box"), shaped like the images."""
    return saliency(model, params, images, classes) * jnp.asarray(images)
