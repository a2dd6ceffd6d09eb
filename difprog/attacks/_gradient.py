"""Gradient attacks: the fast gradient sign method and projected gradient descent.

Both climb the softmax cross-entropy of the labels (or descend that of the targets), its
gradient with respect to the input taken through the model's gates' hand-written backward
rules, and keep every input within `bounds`. Images do not interact in evaluation mode, so one
backward pass of the summed losses gives each input's own gradient.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from difprog import arguments, gates
from difprog.attacks import _inputs
from difprog.errors import ArgumentError

NORMS = ("inf", "l2")
_TINY = 1e-12  # the least norm divided by (Foolbox's; float16's least normal number for it)


def fgsm(model: Any, params: Any, x: jax.Array, labels: Any, eps: float, *,
         targeted: bool = False, bounds: tuple[float, float] = (0, 1)) -> jax.Array:
    """The fast gradient sign method (Goodfellow, Shlens & Szegedy 2015, "Explaining and
    harnessing adversarial examples"): `clip(x + eps * sign(grad_x CE(f(x), y)), bounds)`.

    Args:
        model, params: a difprog model (logits (N, classes), evaluation mode) and its params; or
            a function `model(params, x)`, or with params None `model(x)`, giving logits.
        x: the inputs (N, ...), within bounds.
        labels: their true classes, an int or one per input; with `targeted`, the classes to
            reach, and the step descends their loss: `x - eps * sign(grad_x CE(f(x), t))`.
        eps: the L-inf budget, a number >= 0.
        bounds: the range of valid inputs, (low, high).

    Returns:
        The adversarial inputs, shaped like x: Foolbox's `FGSM`'s, and Captum's `FGSM`'s except
        where Captum leaves a value whose gradient is under 1e-6 in magnitude unchanged.

    Example:
        >>> adversarial = attacks.fgsm(model, params, x, y, eps=0.1)
    """
    return _run("fgsm", model, params, x, labels, eps, steps=1, step_size=None, norm="inf",
                random_start=False, key=None, targeted=targeted, bounds=bounds)


def pgd(model: Any, params: Any, x: jax.Array, labels: Any, eps: float, *, steps: int = 40,
        step_size: float | None = None, norm: str = "inf", random_start: bool = False,
        key: jax.Array | None = None, targeted: bool = False,
        bounds: tuple[float, float] = (0, 1)) -> jax.Array:
    """Projected gradient descent (Madry, Makelov, Schmidt, Tsipras & Vladu 2018, "Towards deep
    learning models resistant to adversarial attacks"): `steps` times, a step of `step_size`
    up the loss's gradient, then projection onto the ball of radius eps around x and clipping
    to bounds.

    The step is `step_size * sign(g)` for norm "inf" and `step_size * g / ||g||_2` (per input)
    for "l2"; the projection clips each value to within eps of x ("inf") or scales the
    perturbation down to L2 norm eps ("l2"). The update and its order are Foolbox 3's
    (`LinfPGD`, `L2PGD`); for "inf" also Captum's `PGD`.

    Args:
        model, params, x, labels, targeted, bounds: as `fgsm`'s.
        eps: the radius of the ball, a number >= 0.
        steps: gradient steps, a positive int.
        step_size: each step's length (default `2.5 * eps / steps`, the rule of the Madry
            Lab's `robustness` library; the paper took 0.01 for eps 0.3 and 40 steps).
        norm: "inf" or "l2".
        random_start: start from a uniform random point of the ball (clipped to bounds), drawn
            from `key`, rather than from x.
        key: a PRNG key, needed with random_start.

    Returns:
        The adversarial inputs, shaped like x.

    Example:
        >>> adversarial = attacks.pgd(model, params, x, y, eps=0.1, steps=40)
    """
    return _run("pgd", model, params, x, labels, eps, steps=steps, step_size=step_size,
                norm=norm, random_start=random_start, key=key, targeted=targeted, bounds=bounds)


def perturb(forward: Any, params: Any, x: jax.Array, labels: jax.Array, eps: float, *,
            steps: int, step_size: float | None = None, norm: str = "inf",
            key: jax.Array | None = None, targeted: bool = False,
            bounds: tuple[float, float] = (0, 1)) -> jax.Array:
    """`pgd` without its checks, for use inside a traced function (adversarial training):
    `forward(params, x)` gives the logits, labels are (N,) ints, and a key means a random start.
    It checks nothing, so x must already lie within bounds."""
    step_size = 2.5 * eps / steps if step_size is None else step_size
    start = x if key is None else _random_start(key, x, eps, *bounds, norm)
    return _pgd(forward, params, x, labels, start, eps, step_size, steps, *bounds, norm=norm,
                targeted=targeted)


def _run(name, model, params, x, labels, eps, *, steps, step_size, norm, random_start, key,
         targeted, bounds):
    """Checks every argument, then runs the jitted attack."""
    forward = _inputs.forward(name, model, params)
    low, high = _inputs.bounds(name, bounds)
    x = _inputs.images(name, x, low, high)
    labels = _inputs.labels(name, forward, params, x, labels,
                            "targets" if targeted else "labels")
    eps = arguments.real(name, "eps", eps, minimum=0)
    steps = arguments.positive_int(name, "steps", steps)
    norm = arguments.one_of(name, "norm", norm, NORMS)
    step_size = (eps if name == "fgsm" else 2.5 * eps / steps) if step_size is None else (
        arguments.real(name, "step_size", step_size, positive=True))
    arguments.flag(name, "targeted", targeted)
    start = x
    if arguments.flag(name, "random_start", random_start):
        if key is None:
            raise ArgumentError(f"{name}: random_start draws from a key; pass key="
                                f"jax.random.key(seed)")
        start = _random_start(_inputs.key(name, key), x, eps, low, high, norm)
    return _pgd(forward, params, x, labels, start, eps, step_size, steps, low, high,
                norm=norm, targeted=targeted)


@functools.partial(jax.jit, static_argnames=("forward", "norm", "targeted"))
def _pgd(forward, params, x, labels, start, eps, step_size, steps, low, high, *, norm,
         targeted):
    """steps, eps and the step size are traced: one compile serves every budget."""
    sign = -1 if targeted else 1
    eps, step_size = (jnp.asarray(v, x.dtype) for v in (eps, step_size))

    def step(_, adversarial):
        gradient = loss_gradient(forward, params, adversarial, labels)
        moved = adversarial + sign * step_size * _direction(gradient, norm)
        return jnp.clip(x + _project(moved - x, eps, norm), low, high)

    return lax.fori_loop(0, steps, step, start)


def loss_gradient(forward, params, x, labels):
    """grad_x of the summed softmax cross-entropy of `labels`: each input's own gradient."""
    def loss(inputs):
        return gates.softmax_cross_entropy(forward(params, inputs), labels, reduction="sum")

    return jax.grad(loss)(x)


def _direction(gradient, norm):
    if norm == "inf":
        return jnp.sign(gradient)
    return gradient / jnp.maximum(_norms(gradient), _least(gradient))


def _project(delta, eps, norm):
    """The perturbation brought back into the ball of radius eps."""
    if norm == "inf":
        return jnp.clip(delta, -eps, eps)
    return delta * jnp.minimum(1, eps / jnp.maximum(_norms(delta), _least(delta)))


def _least(values):
    """The least norm divided by: a zero gradient or perturbation gives 0, not NaN."""
    return max(_TINY, float(jnp.finfo(values.dtype).tiny))


def _norms(values):
    """Each input's L2 norm, shaped (N, 1, 1, ...) to broadcast against it."""
    axes = tuple(range(1, values.ndim))
    return jnp.sqrt(jnp.sum(values * values, axis=axes, keepdims=True))


@functools.partial(jax.jit, static_argnames=("norm",))
def _random_start(key, x, eps, low, high, norm):
    """A point drawn uniformly from the ball of radius eps around each input, clipped."""
    eps = jnp.asarray(eps, x.dtype)
    if norm == "inf":
        delta = jax.random.uniform(key, x.shape, x.dtype, -eps, eps)
    else:  # a uniform direction, and a radius whose volume is uniform: eps * u^(1 / size)
        direction_key, radius_key = jax.random.split(key)
        direction = jax.random.normal(direction_key, x.shape, x.dtype)
        size = x[0].size
        radius = eps * jax.random.uniform(radius_key, (x.shape[0],) + (1,) * (x.ndim - 1),
                                          x.dtype) ** (1 / size)
        delta = radius * direction / jnp.maximum(_norms(direction), _least(direction))
    return jnp.clip(x + delta, low, high)
