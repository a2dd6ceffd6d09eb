"""The report of `difprog attack`: a model's robustness curve on test images, and a few of them
beside their perturbation and adversarial image, as pictures and attack.json."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from difprog import arguments
from difprog.attacks._gradient import fgsm, pgd
from difprog.attacks._robustness import ATTACKS, budgets, robustness
from difprog.errors import ArgumentError

EPS = (0.0, 0.05, 0.1, 0.2)  # L-inf budgets for inputs in [0, 1]: the README's figures


def write_attack(model: Any, params: Any, dataset: Any, out: str | os.PathLike, *,
                 eps: Sequence[float] = EPS, attack: str = "pgd", norm: str = "inf",
                 steps: int = 40, step_size: float | None = None, random_start: bool = False,
                 seed: int = 0, count: int = 1000, show: int = 8,
                 picture_eps: float | None = None) -> tuple[list[pathlib.Path], str]:
    """Attacks the first `count` test images at each eps and writes into `out`:
    robustness.png (accuracy against eps), adversarial.png (`show` test images the model
    classifies right, each beside its perturbation, amplified, and the adversarial image, with
    the predictions and their probabilities) and attack.json (the settings and both).

    Args:
        model, params, dataset: a trained image classifier and its `difprog.data.Dataset`
            (inputs in [0, 1]).
        eps, attack, norm, steps, step_size, random_start: the attack and its budgets (see
            `attacks.pgd`; fgsm takes one step of eps, and no norm but "inf").
        seed: the random start's key, `jax.random.key(seed)`.
        count: test images on the curve; show: images in adversarial.png.
        picture_eps: the budget of adversarial.png (default: the smallest eps above 0).

    Returns:
        (the paths written, the curve as a markdown table).
    """
    from difprog.files import write_json
    from difprog.viz import save_curves

    name = "write_attack"
    arguments.one_of(name, "attack", attack, sorted(ATTACKS))
    count = min(arguments.positive_int(name, "count", count), len(dataset.x_test))
    show = arguments.positive_int(name, "show", show)
    options = _options(attack, norm, steps, step_size, random_start)
    eps = budgets(name, eps)
    if picture_eps is None:
        picture_eps = min((e for e in eps if e > 0), default=None)
        if picture_eps is None:
            raise ArgumentError(f"{name}: give an eps above 0 to picture the adversarial images, "
                                f"got {eps}")
    key = jax.random.key(arguments.integer(name, "seed", seed, minimum=0))
    x, y = dataset.x_test[:count], dataset.y_test[:count]
    accuracy = robustness(model, params, x, y, eps, attack=attack,
                          key=key if options.get("random_start") else None, **options)
    rows = _examples(model, params, dataset, picture_eps, show, attack, key, options)
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    described = _described(attack, norm, steps, step_size, random_start)
    written = [save_curves(eps, {described: accuracy}, out / "robustness.png",
                           xlabel=f"eps ({'L2' if norm == 'l2' else 'L-inf'}, inputs in [0, 1])",
                           ylabel=f"accuracy on {count} test images", ylim=(0, 1),
                           title=f"accuracy under {described}"),
               _picture(rows, out / "adversarial.png",
                        f"{described}, eps {picture_eps:g}: the model's prediction "
                        f"(probability) for each test image and for its adversarial image")]
    written.append(write_json(out / "attack.json", {
        "attack": attack, "norm": norm, "steps": options.get("steps", 1),
        "step_size": options.get("step_size"), "random_start": random_start, "seed": seed,
        "images": count, "eps": eps, "accuracy": accuracy,
        "examples": {"eps": picture_eps, "rows": [row["record"] for row in rows]}}))
    table = "\n".join(["| eps | accuracy |", "|---:|---:|",
                       *(f"| {e:g} | {a:.4f} |" for e, a in zip(eps, accuracy))])
    return written, table


def _options(attack, norm, steps, step_size, random_start) -> dict:
    if attack == "fgsm":
        if norm != "inf" or step_size is not None or random_start:
            raise ArgumentError("write_attack: fgsm takes one L-inf step of eps from x; norm, "
                                "step_size and random_start are pgd's")
        return {}
    return {"norm": norm, "steps": steps, "step_size": step_size, "random_start": random_start}


def _described(attack, norm, steps, step_size, random_start) -> str:
    if attack == "fgsm":
        return "FGSM"
    size = "step 2.5 eps / steps" if step_size is None else f"step {step_size:g}"
    start = ", random start" if random_start else ""
    return f"PGD {'L2' if norm == 'l2' else 'L-inf'} {steps} steps ({size}{start})"


def _examples(model, params, dataset, eps, show, attack, key, options) -> list[dict]:
    """The first `show` test images the model classifies right, attacked at eps."""
    probabilities = lambda z: jax.nn.softmax(model.apply(params, z), -1)
    pool = min(len(dataset.x_test), max(4 * show, 64))
    right = np.flatnonzero(np.asarray(jnp.argmax(probabilities(dataset.x_test[:pool]), -1))
                           == np.asarray(dataset.y_test[:pool]))[:show]
    if not len(right):
        return []
    x, y = dataset.x_test[right], dataset.y_test[right]
    run = fgsm if attack == "fgsm" else pgd
    extra = {"key": key} if options.get("random_start") else {}
    adversarial = run(model, params, x, y, eps, **options, **extra)
    before, after = np.asarray(probabilities(x)), np.asarray(probabilities(adversarial))
    rows = []
    for i, index in enumerate(right):
        label, fooled = int(y[i]), int(after[i].argmax())
        rows.append({"image": np.asarray(x[i]), "adversarial": np.asarray(adversarial[i]),
                     "record": {"index": int(index), "label": dataset.class_name(label),
                                "clean": [dataset.class_name(label), float(before[i, label])],
                                "adversarial": [dataset.class_name(fooled),
                                                float(after[i, fooled])]}})
    return rows


def _picture(rows: list[dict], path: pathlib.Path, title: str) -> pathlib.Path:
    """Each row: the image, its perturbation (0.5 + k * delta, k shown) and the adversarial."""
    from difprog.viz import save_grid

    images, labels = [], []
    for row in rows:
        delta = row["adversarial"] - row["image"]
        scale = 0.5 / max(float(np.abs(delta).max()), 1e-12)
        images += [row["image"], 0.5 + scale * delta, row["adversarial"]]
        (clean, p), (fooled, q) = row["record"]["clean"], row["record"]["adversarial"]
        labels += [f"test image:\n{clean} ({p:.2f})", f"perturbation\nx{scale:.3g}, grey = 0",
                   f"adversarial:\n{fooled} ({q:.2f})"]
    if not images:
        images, labels = [np.full((2, 2, 1), 0.5)], ["no test image is classified right"]
    return save_grid(np.stack(images), path, labels=labels, columns=3, title=title)
