"""Saliency: the gradient of a class score with respect to the input image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from difprog.layers import Layer


def saliency(model: Layer, params: Any, images: jax.Array, classes: int | Sequence[int]
             ) -> jax.Array:
    """d logit[i, classes[i]] / d images[i] for every image of the batch, in one backward pass.

    Images do not interact in evaluation mode, so the gradient of the summed scores is each
    image's own gradient.

    Example:
        >>> maps = saliency(model, params, data.x_test[:8], data.y_test[:8])  # (8, 8, 8, 1)
    """
    images = jnp.asarray(images)
    targets = jnp.broadcast_to(jnp.asarray(classes), images.shape[:1])

    def total_score(x):
        logits = model.apply(params, x)
        return jnp.sum(jnp.take_along_axis(logits, targets[:, None], axis=-1))

    return jax.grad(total_score)(images)


def gradient_times_input(model: Layer, params: Any, images: jax.Array,
                         classes: int | Sequence[int]) -> jax.Array:
    """The saliency map multiplied by the image (gradient x input attribution)."""
    return saliency(model, params, images, classes) * jnp.asarray(images)
