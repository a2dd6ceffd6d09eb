"""Batch normalisation (Ioffe and Szegedy, 2015), with its running statistics as explicit state.

BatchNorm's params are `{'scale', 'offset', 'mean', 'var'}`. `scale` and `offset` are trained;
`mean` and `var` are the running statistics, read under `stop_gradient` (so `jax.grad` gives them
zeros) and changed only through `update_stats`:

    y, stats = model.apply(params, x, train=True, update_stats=True)
    params = layers.merge_stats(optax.apply_updates(params, updates), stats)

`layers.trainable_mask(model, params)` is False at the statistics, for `optax.masked` or
`optax.multi_transform`, so no optimiser (weight decay included) ever moves them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import jax
from jax.nn import initializers

from difprog import gates
from difprog.errors import ArgumentError, ShapeError
from difprog.layers._combinators import Container
from difprog.layers._layer import Layer, Leaf, Params, join
from difprog.layers._memory import Remat, Repeat

STATS = ("mean", "var")


class BatchNorm(Leaf):
    """Batch normalisation over every axis but the last (channels last: (N, C) or NHWC), as
    torch.nn.BatchNorm1d / BatchNorm2d.

    `y = (x - mean) / sqrt(var + eps) * scale + offset`, per channel.

    - Evaluation (`train=False`, the default): mean and var are the running statistics in
      params, under `stop_gradient`.
    - Training (`train=True`): mean and var are the batch's (the biased variance), and the
      gradient flows through them (every step a difprog gate: mean, subtract, square, add, sqrt,
      divide). With `apply(..., train=True, update_stats=True)` the layer also returns its
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
        >>> y, stats = bn.apply(params, x, train=True, update_stats=True)
        >>> params = layers.merge_stats(params, stats)
    """

    kind = "batch_norm"
    expects = "an input of rank >= 2, batch first and channels last ((N, C) or NHWC)"

    def __init__(self, momentum: float = 0.1, eps: float = 1e-5, *, name: str | None = None):
        super().__init__(name=name)
        for what, value, top in (("momentum", momentum, 1), ("eps", eps, math.inf)):
            if (isinstance(value, bool) or not isinstance(value, numbers.Real)
                    or not 0 < value <= top):
                raise ArgumentError(f"BatchNorm: {what} must be a number in (0, {top}], got "
                                    f"{value!r}")
        self.momentum, self.eps = float(momentum), float(eps)

    def _settings(self):
        momentum = [] if self.momentum == 0.1 else [f"momentum={self.momentum}"]
        eps = [] if self.eps == 1e-5 else [f"eps={self.eps}"]
        return [*momentum, *eps, *super()._settings()]

    def _fits(self, shape):
        return len(shape) >= 2

    def _param_shapes(self, x_shape):
        return {name: (x_shape[-1],) for name in ("scale", "offset", *STATS)}

    def _initializers(self, before_relu):
        return {"scale": initializers.ones, "offset": initializers.zeros,
                "mean": initializers.zeros, "var": initializers.ones}

    def _forward(self, params, x, run):
        if run.train:
            axes = tuple(range(x.ndim - 1))
            n = math.prod(x.shape[:-1])
            if n < 2:
                raise ShapeError(f"in training needs more than one value per channel to take "
                                 f"batch statistics, got an input of shape {tuple(x.shape)}; "
                                 f"use a larger batch, or train=False")
            mean = gates.mean(x, axes)
            centered = gates.subtract(x, mean)
            var = gates.mean(gates.square(centered), axes)
            if run.stats is not None:
                run.stats[run.path] = self._running(params, mean, var, n)
        else:
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


def merge_stats(params: Params, stats: Mapping[str, Mapping[str, Any]]) -> Params:
    """The params with the running statistics `apply(..., train=True, update_stats=True)`
    returned put in place of the old ones (a new dict; `params` is unchanged).

    Args:
        params: the model's params.
        stats: `{path: {'mean': ..., 'var': ...}}`, as apply returned it.

    Example:
        >>> y, stats = model.apply(params, x, train=True, update_stats=True)
        >>> params = layers.merge_stats(params, stats)
    """
    if not isinstance(stats, Mapping):
        raise ArgumentError(f"merge_stats: stats must be the dict apply(..., update_stats=True) "
                            f"returned, got {type(stats).__name__}")
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
    """The paths of the BatchNorm layers inside `layer`."""
    if isinstance(layer, BatchNorm):
        return [path]
    if isinstance(layer, (Remat, Repeat)):
        return stat_paths(layer.layer, path)
    if isinstance(layer, Container):
        return [p for k, child in zip(layer.keys, layer.layers)
                for p in stat_paths(child, join(path, k))]
    return []
