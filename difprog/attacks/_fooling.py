"""CS231n's fooling image: walk an input up a target class's score until the model predicts it."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from difprog import arguments
from difprog.attacks import _inputs
from difprog.attacks._gradient import _least, _norms


def fooling_image(model: Any, params: Any, x: jax.Array, target: Any, *,
                  learning_rate: float = 1.0, max_steps: int = 100,
                  bounds: tuple[float, float] | None = None) -> jax.Array:
    """Gradient ascent on the target class's score, `x += learning_rate * g / ||g||_2` with
    `g = grad_x logits[target]` (CS231n's "Network Visualization" assignment; Szegedy et al.
    2014, "Intriguing properties of neural networks"), until the model predicts the target.

    Each input stops as soon as its prediction is its target (checked before each step, as the
    assignment does), and the whole batch after `max_steps` steps; the images that have not
    reached their target by then are returned as they are, so check the model's predictions.

    Args:
        model, params: a difprog model and its params, or a function (see `fgsm`).
        x: the inputs (N, ...).
        target: the class to reach, an int or one per input.
        learning_rate: the L2 length of each step, a positive number.
        max_steps: the most steps, a positive int.
        bounds: None (the assignment's: no clipping), or (low, high): the inputs must lie
            within it and every step is clipped to it.

    Returns:
        The fooling images, shaped like x.

    Example:
        >>> fooled = attacks.fooling_image(model, params, x, target=6)
        >>> (model.apply(params, fooled).argmax(-1) == 6).mean()
    """
    name = "fooling_image"
    forward = _inputs.forward(name, model, params)
    low, high = (-jnp.inf, jnp.inf) if bounds is None else _inputs.bounds(name, bounds)
    x = _inputs.images(name, x, low, high)
    target = _inputs.labels(name, forward, params, x, target, "target")
    learning_rate = arguments.real(name, "learning_rate", learning_rate, positive=True)
    max_steps = arguments.positive_int(name, "max_steps", max_steps)
    return _fool(forward, params, x, target, learning_rate, max_steps, low, high)


@functools.partial(jax.jit, static_argnames=("forward",))
def _fool(forward, params, x, target, learning_rate, max_steps, low, high):
    def scores(inputs):
        logits = forward(params, inputs)
        picked = jnp.take_along_axis(logits, target[:, None], axis=-1)
        return jnp.sum(picked), jnp.argmax(logits, axis=-1) == target

    def step(state):
        done_steps, images, _ = state
        gradient, reached = jax.grad(scores, has_aux=True)(images)
        moved = images + learning_rate * gradient / jnp.maximum(_norms(gradient), _least(gradient))
        keep = reached.reshape((-1,) + (1,) * (x.ndim - 1))
        return done_steps + 1, jnp.where(keep, images, jnp.clip(moved, low, high)), reached

    def going(state):
        done_steps, _, reached = state
        return (done_steps < max_steps) & ~jnp.all(reached)

    start = (jnp.asarray(0), x, jnp.zeros(x.shape[0], bool))
    return lax.while_loop(going, step, start)[1]
