"""The diagnoses: which numbers of a record break which threshold, in plain words."""

from __future__ import annotations

import math
from typing import NamedTuple

from difprog.monitor._watch import Watch

KINDS = ("vanishing", "exploding", "dead", "saturated", "update_ratio", "nonfinite")


class Diagnosis(NamedTuple):
    """A condition seen from record `step` on, until record `until` (the first of the records
    without it that ended it; None: not ended). `kind` is one of KINDS, `layer` the layer's
    path, `value` the number at its start and `message` the line the log printed."""

    kind: str
    layer: str
    step: int
    until: int | None
    value: float
    message: str


def _orders(ratio: float) -> str:
    return "infinitely many orders" if ratio == 0 else f"{abs(math.log10(ratio)):.0f} orders"


def diagnose(watch: Watch, record: dict) -> dict[tuple[str, str], tuple[float, str]]:
    """`{(kind, path): (value, message)}` for every threshold `record` (host floats) breaks."""
    limits, found = watch.thresholds, {}
    grads = record["grad_norm"]
    top = watch.weights[-1] if watch.weights else None
    if top is not None and grads[top] > 0 and math.isfinite(grads[top]):
        for path in watch.weights[:-1]:
            ratio, name = grads[path] / grads[top], watch.label(path)
            where = f"{name}: gradient norm {grads[path]:.1e}, {_orders(ratio)}"
            if ratio < limits.vanishing:
                found["vanishing", path] = ratio, (f"{where} below the top layer's "
                                                   f"({watch.label(top)}): vanishing")
            elif ratio > limits.exploding:
                found["exploding", path] = ratio, (f"{where} above the top layer's "
                                                   f"({watch.label(top)}): exploding")
    for path in watch.weights:
        weight, update = record["weight_norm"][path], record["update_norm"][path]
        if weight > 0 and update / weight > limits.update_ratio:
            found["update_ratio", path] = update / weight, (
                f"update/weight ratio {update / weight:.2g} at {watch.label(path)} (about 1e-3 "
                f"is healthy): the learning rate is too large")
    for path, fraction in record["dead"].items():
        if fraction > limits.dead:
            found["dead", path] = fraction, f"{watch.label(path)}: {fraction:.0%} of ReLUs dead"
    for path, fraction in record["saturated"].items():
        if fraction > limits.saturated:
            found["saturated", path] = fraction, (
                f"{watch.label(path)}: {fraction:.0%} of {watch.activations[path]} outputs "
                f"saturated")
    return found
