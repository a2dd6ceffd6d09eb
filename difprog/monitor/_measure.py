"""The numbers a monitor records, computed inside the jitted training step from what the step
already has (params, gradients, updates, the captured activations, the loss): no second forward
pass and no host callback."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from difprog.monitor._watch import DYING, SATURATING, Watch

__all__ = ["measure", "measured", "pack", "unpack"]


def _wide(x: Any) -> jax.Array:
    """x in float32 at least (float16 and bfloat16 widened; float64 kept)."""
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _norm(x: Any) -> jax.Array:
    return jnp.sqrt(jnp.sum(jnp.square(_wide(x))))


def _leaves(tree: Any, paths: tuple[str, ...]) -> dict[str, Any]:
    """The leaves of a params-like tree at 'layer/name' paths."""
    found = {}
    for path in paths:
        node = tree
        for key in path.split("/"):
            node = node[key]
        found[path] = node
    return found


def _dead(y: jax.Array) -> jax.Array:
    """The fraction of units (the last axis) whose output is 0 for the whole batch."""
    alive = jnp.any(y.reshape(-1, y.shape[-1] if y.ndim else 1) > 0, axis=0)
    return 1.0 - jnp.mean(alive.astype(jnp.float32))


def _saturated(y: jax.Array, kind: str, margin: float) -> jax.Array:
    """The fraction of outputs within margin (of the range) of the activation's bounds."""
    low, high = SATURATING[kind]
    edge = margin * (high - low)
    return jnp.mean(((y < low + edge) | (y > high - edge)).astype(jnp.float32))


def measure(watch: Watch, params: Any, grads: Any, updates: Any,
            activations: dict[str, jax.Array], loss: jax.Array) -> dict[str, Any]:
    """One record: the loss; `finite`, 1 where the loss and every gradient (biases and scales
    included) are free of NaN and infinity, else 0; per weight its gradient norm, norm and
    update norm; per activation layer the mean and standard deviation of its outputs, and the
    fraction of dead units (ReLU) or saturated outputs (sigmoid, tanh). Every entry a scalar
    of float32 or wider; jit-compatible.

    Args:
        watch: what to record (`monitor.watch`).
        params: the params the step started from.
        grads: their gradients.
        updates: what the optimiser adds to them (`optax.apply_updates(params, updates)`).
        activations: the captured outputs, `model.run(..., capture=watch.capture).captured`.
        loss: the step's loss.
    """
    weights, gradients = _leaves(params, watch.weights), _leaves(grads, watch.weights)
    steps = _leaves(updates, watch.weights)
    checks = [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)
              if jnp.issubdtype(g.dtype, jnp.inexact)]
    record: dict[str, Any] = {
        "loss": _wide(loss),
        "finite": jnp.all(jnp.stack([jnp.isfinite(loss), *checks])).astype(jnp.float32),
        "grad_norm": {p: _norm(gradients[p]) for p in watch.weights},
        "weight_norm": {p: _norm(weights[p]) for p in watch.weights},
        "update_norm": {p: _norm(steps[p]) for p in watch.weights},
        "mean": {}, "std": {}, "dead": {}, "saturated": {}}
    for path, kind in watch.activations.items():
        y = _wide(activations[path])
        record["mean"][path], record["std"][path] = jnp.mean(y), jnp.std(y)
        if kind in DYING:
            record["dead"][path] = _dead(y)
        if kind in SATURATING:
            record["saturated"][path] = _saturated(y, kind, watch.thresholds.margin)
    return record


def _layout(watch: Watch) -> list[tuple[str, str | None]]:
    """The (series, path) of each entry of a packed record, in order."""
    kinds = watch.activations
    return [("loss", None), ("finite", None),
            *((name, p) for name in ("grad_norm", "weight_norm", "update_norm")
              for p in watch.weights),
            *((name, p) for name in ("mean", "std") for p in kinds),
            *(("dead", p) for p in kinds if kinds[p] in DYING),
            *(("saturated", p) for p in kinds if kinds[p] in SATURATING)]


def pack(watch: Watch, record: dict[str, Any]) -> jax.Array:
    """A record of `measure` as one vector: one transfer to the host instead of dozens."""
    return jnp.stack([record[name] if path is None else record[name][path]
                      for name, path in _layout(watch)])


def unpack(watch: Watch, vector: Any) -> dict[str, Any]:
    """The record of a `pack`ed vector (host floats)."""
    values = [float(v) for v in np.asarray(vector)]
    record: dict[str, Any] = {"loss": values[0], "finite": values[1], "grad_norm": {},
                              "weight_norm": {}, "update_norm": {}, "mean": {}, "std": {},
                              "dead": {}, "saturated": {}}
    for (name, path), value in zip(_layout(watch)[2:], values[2:], strict=True):
        record[name][path] = value
    return record


def measured(record: bool, watch: Watch, params: Any, grads: Any, updates: Any,
             activations: dict[str, jax.Array], loss: jax.Array) -> jax.Array | None:
    """In a training step: the `pack`ed record where `record` (a static bool), else None."""
    return pack(watch, measure(watch, params, grads, updates, activations, loss)) if record \
        else None
