"""Accuracy against the attack budget: a model's robustness curve."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from difprog import arguments
from difprog.attacks import _inputs
from difprog.attacks._gradient import fgsm, pgd
from difprog.errors import ArgumentError

ATTACKS = {"fgsm": fgsm, "pgd": pgd}


def robustness(model: Any, params: Any, x: jax.Array, labels: Any, eps_list: Sequence[float],
               *, attack: str = "pgd", batch_size: int = 256, key: jax.Array | None = None,
               **options: Any) -> list[float]:
    """The accuracy on x, labels of the attack's adversarial inputs at each eps (at eps 0, the
    clean accuracy): `[accuracy(eps) for eps in eps_list]`.

    Args:
        model, params: a difprog model and its params, or a function (see `attacks.fgsm`).
        x, labels: the inputs (N, ...) and their true classes.
        eps_list: the budgets, numbers >= 0.
        attack: "pgd" or "fgsm".
        batch_size: inputs attacked at once (the last batch is padded, so one compile serves
            them all).
        key: with `random_start=True`, batch b's start is drawn from
            `jax.random.fold_in(key, b)`.
        options: the attack's other keywords: bounds, and pgd's steps, step_size, norm and
            random_start; not targeted, since accuracy counts the true labels.

    The jitted attack is compiled once per model object and batch shape: a model built anew
    (even the same layers) compiles again.

    Example:
        >>> attacks.robustness(model, params, x, y, [0, 0.05, 0.1, 0.2], steps=20)
        [0.93, 0.41, 0.05, 0.0]
    """
    name = "robustness"
    run = ATTACKS[arguments.one_of(name, "attack", attack, sorted(ATTACKS))]
    if "targeted" in options:
        raise ArgumentError(f"{name}: counts the inputs still given their true labels, so it "
                            f"takes no targeted attack")
    pgd_only = sorted(set(options) - {"bounds"}) + (["key"] if key is not None else [])
    if attack == "fgsm" and pgd_only:
        raise ArgumentError(f"{name}: fgsm takes one step of eps and draws nothing; "
                            f"{', '.join(pgd_only)} {'is' if len(pgd_only) == 1 else 'are'} "
                            f"pgd's")
    if key is not None:
        options["key"] = _inputs.key(name, key)
    eps_list = budgets(name, eps_list)
    batch_size = arguments.positive_int(name, "batch_size", batch_size)
    forward = _inputs.forward(name, model, params)
    low, high = _inputs.bounds(name, options.get("bounds", (0, 1)))
    x = _inputs.images(name, x, low, high)
    labels = _inputs.labels(name, forward, params, x, labels)
    correct = np.zeros(len(eps_list), np.int64)
    for b, begin in enumerate(range(0, x.shape[0], batch_size)):
        images, truth, real = _padded(x, labels, begin, batch_size)
        batch_options = dict(options)
        if key is not None:
            batch_options["key"] = jax.random.fold_in(key, b)
        for i, eps in enumerate(eps_list):
            adversarial = run(model, params, images, truth, eps, **batch_options)
            hits = jnp.argmax(forward(params, adversarial), axis=-1) == truth
            correct[i] += int(jnp.sum(hits[:real]))
    return [float(c) / x.shape[0] for c in correct]


def budgets(name: str, eps_list: Any) -> list[float]:
    """eps_list (a list or 1-d array of numbers >= 0, not empty) as floats."""
    given = eps_list
    if isinstance(eps_list, jax.Array | np.ndarray):
        eps_list = np.asarray(eps_list).tolist() if np.ndim(eps_list) == 1 else None
    if not isinstance(eps_list, Sequence) or isinstance(eps_list, str) or not len(eps_list):
        raise ArgumentError(f"{name}: eps_list must be a non-empty list of numbers >= 0, got "
                            f"{given!r}")
    return [arguments.real(name, "each eps", float(e) if isinstance(e, np.floating) else e,
                           minimum=0) for e in eps_list]


def _padded(x, labels, begin, size):
    """Rows begin..begin+size of x and labels, the last batch padded with copies of its first
    row; and how many rows are real."""
    images, truth = x[begin:begin + size], labels[begin:begin + size]
    real = images.shape[0]
    if real < size and x.shape[0] > size:
        fill = size - real
        images = jnp.concatenate([images, jnp.repeat(images[:1], fill, axis=0)])
        truth = jnp.concatenate([truth, jnp.repeat(truth[:1], fill)])
    return images, truth, real
