"""Batch normalisation (Ioffe and Szegedy, 2015), with its running statistics as explicit state.

BatchNorm's params are `{'scale', 'offset', 'mean', 'var'}`. `scale` and `offset` are trained;
`mean` and `var` are the running statistics, read under `stop_gradient` (so `jax.grad` gives them
zeros) and changed only through `update_stats`:

    stats = model.run(params, x, train=True, update_stats=True).stats
    params = layers.merge_stats(optax.apply_updates(params, updates), stats)

`layers.trainable_mask(model, params)` is False at the statistics, for `optax.masked` or
`optax.multi_transform`, so no optimiser (weight decay included) ever moves them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax.nn import initializers

from difprog import arguments, gates
from difprog.errors import ArgumentError, ShapeError
from difprog.layers._layer import Input, Layer, Param, Params, join

STATS = ("mean", "var")


class BatchNorm(Layer):
    """Batch normalisation over every axis but the last (channels last: (N, C) or NHWC), as
    torch.nn.BatchNorm1d / BatchNorm2d.

    `y = (x - mean) / sqrt(var + eps) * scale + offset`, per channel.

    - Evaluation (`train=False`, the default): mean and var are the running statistics in
      params, under `stop_gradient`.
    - Training (`train=True`): mean and var are the batch's (the biased variance), and the
      gradient flows through them (the `batch_norm` gate: one gate for the whole
      normalisation). With `run(..., train=True, update_stats=True)` the layer also returns its
      updated running statistics, as torch updates its buffers:
      `mean <- (1 - momentum) mean + momentum batch_mean`,
      `var <- (1 - momentum) var + momentum batch_var * n / (n - 1)` (the unbiased variance over
      the n = N H W values of each channel); `layers.merge_stats` puts them into the params.

    Args:
        momentum: the weight of the batch in the running averages (torch's momentum, 0.1).
        eps: added to the variance before the square root (torch's 1e-5).
        name: the key of its params in a container (default `batch_norm_<i>`).

    Example:
        >>> bn = layers.BatchNorm()
        >>> params = bn.init(jax.random.key(0), jnp.zeros((8, 4, 4, 3)))
        >>> sorted(params)
        ['mean', 'offset', 'scale', 'var']
        >>> x = jax.random.normal(jax.random.key(1), (8, 4, 4, 3))
        >>> out = bn.run(params, x, train=True, update_stats=True)
        >>> params = layers.merge_stats(params, out.stats)
    """

    momentum: float = 0.1
    eps: float = 1e-5
    kind = "batch_norm"
    takes = Input(min_rank=2, text="an input of rank >= 2, batch first and channels last "
                                   "((N, C) or NHWC)")

    def __post_init__(self):
        for what, top in (("momentum", 1), ("eps", math.inf)):
            value = getattr(self, what)
            if not arguments.is_real(value) or not 0 < value <= top:
                raise ArgumentError(f"BatchNorm: {what} must be a number in (0, {top}], got "
                                    f"{value!r}")
            object.__setattr__(self, what, float(value))

    def params(self, x):
        inits = {"scale": initializers.ones, "offset": initializers.zeros,
                 "mean": initializers.zeros, "var": initializers.ones}
        return {name: Param((x.shape[-1],), init) for name, init in inits.items()}

    def forward(self, params, x, ctx):
        if ctx.train:
            axes = tuple(range(x.ndim - 1))
            n = math.prod(x.shape[:-1])
            if n < 2:
                raise ShapeError(f"in training needs more than one value per channel to take "
                                 f"batch statistics, got an input of shape {tuple(x.shape)}; "
                                 f"use a larger batch, or train=False")
            if ctx.stats_wanted:
                ctx.put_stats(self._running(params, *_statistics(x, axes), n))
            return gates.batch_norm(x, params["scale"], params["offset"], eps=self.eps)
        mean, var = (jax.lax.stop_gradient(params[k]) for k in STATS)
        centered = gates.subtract(x, mean)
        xhat = gates.divide(centered, gates.sqrt(gates.add(var, self.eps)))
        return gates.add(gates.multiply(xhat, params["scale"]), params["offset"])

    def _running(self, params, mean, var, n):
        """torch's update of the running statistics, with the unbiased batch variance."""
        m = self.momentum
        new = {"mean": (1 - m) * params["mean"] + m * mean,
               "var": (1 - m) * params["var"] + m * var * (n / (n - 1))}
        return {k: jax.lax.stop_gradient(v).astype(params[k].dtype) for k, v in new.items()}


def _statistics(x, axes):
    """The batch's mean and (biased) variance per channel, for the running statistics: the same
    sums the batch_norm gate takes (under jit XLA may compute them once for both)."""
    x = jax.lax.stop_gradient(x)
    mean = jnp.mean(x, axes)
    centered = x - jnp.expand_dims(mean, axes)
    return mean, jnp.mean(centered * centered, axes)


def merge_stats(params: Params, stats: Mapping[str, Mapping[str, Any]]) -> Params:
    """The params with the running statistics `run(..., train=True, update_stats=True).stats`
    in place of the old ones (a new dict; `params` is unchanged).

    Args:
        params: the model's params.
        stats: `{path: {'mean': ..., 'var': ...}}`, as run returned it.

    Example:
        >>> out = model.run(params, x, train=True, update_stats=True)
        >>> params = layers.merge_stats(params, out.stats)
    """
    if not isinstance(stats, Mapping):
        raise ArgumentError(f"merge_stats: stats must be the dict run(..., update_stats=True) "
                            f"returned as .stats, got {type(stats).__name__}")
    for path, new in stats.items():
        params = _replace(params, path.split("/") if path else [], path, new)
    return params


def _replace(tree: Any, keys: list[str], path: str, new: Any) -> Any:
    if not isinstance(tree, Mapping):
        raise ArgumentError(f"merge_stats: the params have no BatchNorm at {path!r}; pass the "
                            f"stats of this model")
    tree = dict(tree)
    if keys:
        if keys[0] not in tree:
            raise ArgumentError(f"merge_stats: the params have no BatchNorm at {path!r} (no "
                                f"entry {keys[0]!r}); pass the stats of this model")
        tree[keys[0]] = _replace(tree[keys[0]], keys[1:], path, new)
        return tree
    if not isinstance(new, Mapping) or set(new) != set(STATS) or not set(STATS) <= set(tree):
        raise ArgumentError(f"merge_stats: stats[{path!r}] must be {{'mean', 'var'}} for a "
                            f"BatchNorm's params, got {_keys_of(new)}")
    for k in STATS:
        if new[k].shape != tree[k].shape:
            raise ShapeError(f"merge_stats: stats[{path!r}][{k!r}] has shape "
                             f"{tuple(new[k].shape)}, the params' {tuple(tree[k].shape)}")
        tree[k] = new[k]
    return tree


def _keys_of(value: Any) -> Any:
    return sorted(value) if isinstance(value, Mapping) else type(value).__name__


def trainable_mask(model: Layer, params: Params) -> Any:
    """A pytree of bools like `params`: False at BatchNorm's running statistics, True elsewhere.

    For an optimiser that must leave the statistics alone, weight decay included:
    `optax.masked(optax.adamw(1e-3), layers.trainable_mask(model, params))`.
    """
    mask = jax.tree.map(lambda _: True, params)
    for path in stat_paths(model):
        node = mask
        for key in path.split("/") if path else []:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.update({k: False for k in STATS if k in node})
    return mask


def stat_paths(layer: Layer, path: str = "") -> list[str]:
    """The paths of the BatchNorm layers inside `layer` (read from its children, nothing run)."""
    if isinstance(layer, BatchNorm):
        return [path]
    return [p for key, child in layer.children().items()
            for p in stat_paths(child, join(path, key))]
