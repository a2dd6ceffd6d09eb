"""Combinators: layers in sequence (serial), side by side (parallel), and with a skip (residual).

A container keys each child's params by its name, numbered per kind (`conv2d_0`, `conv2d_1`,
`dense_0`) unless the child was given a name; children without params get no entry.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

import jax

from difprog import gates
from difprog.errors import ArgumentError, DtypeError, ShapeError
from difprog.layers._layer import InitScope, Layer, Run, join
from difprog.layers._memory import run_layers, segment_length


class Container(Layer):
    """A layer made of child layers, each under its own key of the params dict."""

    def __init__(self, layers: tuple[Layer, ...], *, name: str | None = None):
        super().__init__(name=name)
        if not layers:
            raise ArgumentError(f"{type(self).__name__} needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise DtypeError(f"{type(self).__name__}: argument {i} is a "
                                 f"{type(layer).__name__}, not a layer; pass layers such as "
                                 f"layers.Dense(10) (note the call)")
        self.layers = tuple(layers)
        self.keys = _keys(self.layers, type(self).__name__)

    def _settings(self):
        return [*map(repr, self.layers), *super()._settings()]

    def _children(self, run: Run):
        """(key, layer, run) for each child, each with its own path and PRNG key."""
        keys = (jax.random.split(run.key, len(self.layers)) if run.key is not None
                else [None] * len(self.layers))
        return [(k, layer, dataclasses.replace(run, path=join(run.path, k), key=sub))
                for k, layer, sub in zip(self.keys, self.layers, keys)]

    def _child_params(self, params: Mapping, run: Run) -> list:
        if not isinstance(params, Mapping):
            raise ShapeError(f"{self._label(run.path)}: params must be a dict keyed by its "
                             f"layers {list(self.keys)}, got {type(params).__name__}")
        unknown = sorted(set(params) - set(self.keys))
        if unknown:
            where = f"params[{run.path!r}]" if run.path else "params"
            raise ShapeError(f"{self._label(run.path)}: {where} has entries {unknown} that "
                             f"belong to no layer; its layers are {list(self.keys)}; pass the "
                             f"params model.init returned")
        return [params.get(k, {}) for k in self.keys]


class Serial(Container):
    """Layers applied one after another: `serial(f, g, h)(x) = h(g(f(x)))`.

    With `remat` set, consecutive layers are grouped into segments (`remat` layers each, or
    about sqrt(len(layers)) for 'sqrt') that each run under one jax.checkpoint.
    """

    kind = "serial"

    def __init__(self, *layers: Layer, remat: int | str | None = None, name: str | None = None):
        super().__init__(layers, name=name)
        self.segment = segment_length(len(self.layers), remat)
        self.remat = remat

    def _settings(self):
        remat = [] if self.remat is None else [f"remat={self.remat!r}"]
        return [*super()._settings(), *remat]

    def _init(self, key, x, scope):
        params = {}
        for i, (k, layer, sub) in enumerate(zip(self.keys, self.layers,
                                                jax.random.split(key, len(self.layers)))):
            following = self.layers[i + 1].relu_like if i + 1 < len(self.layers) else None
            before_relu = scope.before_relu if following is None else following
            child, x = layer._init(sub, x, InitScope(join(scope.path, k), before_relu))
            if child:
                params[k] = child
        return params, x

    def _apply(self, params, x, run):
        steps = [(child, layer, child_run) for child, (_, layer, child_run)
                 in zip(self._child_params(params, run), self._children(run))]
        for start in range(0, len(steps), self.segment):
            x = run_layers(steps[start:start + self.segment], x,
                           checkpoint=self.remat is not None)
        return x


class Parallel(Container):
    """Every branch applied to the same input, the outputs merged by sum or by concatenation."""

    kind = "parallel"

    def __init__(self, *layers: Layer, merge: str = "sum", name: str | None = None):
        super().__init__(layers, name=name)
        if merge not in ("sum", "concat"):
            raise ArgumentError(f"Parallel: merge must be 'sum' or 'concat', got {merge!r}")
        self.merge = merge

    def _settings(self):
        merge = [] if self.merge == "sum" else [f"merge={self.merge!r}"]
        return [*super()._settings(), *merge]

    def _init(self, key, x, scope):
        params, outs = {}, []
        for k, layer, sub in zip(self.keys, self.layers, jax.random.split(key, len(self.layers))):
            child, out = layer._init(sub, x, InitScope(join(scope.path, k), scope.before_relu))
            outs.append(out)
            if child:
                params[k] = child
        return params, jax.eval_shape(lambda outs: self._merge(outs, scope.path), outs)

    def _apply(self, params, x, run):
        outs = [layer._call(child, x, child_run) for child, (_, layer, child_run)
                in zip(self._child_params(params, run), self._children(run))]
        return self._merge(outs, run.path)

    def _merge(self, outs: list, path: str):
        shapes = {k: tuple(out.shape) for k, out in zip(self.keys, outs)}
        if self.merge == "sum":
            if len(set(shapes.values())) > 1:
                raise ShapeError(f"{self._label(path)} sums its branches, so their outputs must "
                                 f"have one shape, got {shapes}; change the branches, or use "
                                 f"merge='concat'")
            return functools.reduce(gates.add, outs)
        if len({(len(s), s[:-1]) for s in shapes.values()}) > 1:
            raise ShapeError(f"{self._label(path)} concatenates its branches on the last axis, "
                             f"so their outputs must agree on every other axis, got {shapes}")
        return gates.concatenate(outs, axis=-1)


class Residual(Serial):
    """A skip connection around layers in sequence: `residual(f, g)(x) = x + g(f(x))`."""

    kind = "residual"

    def _init(self, key, x, scope):
        params, out = super()._init(key, x, scope)
        self._check_shape(x.shape, out.shape, scope.path)
        return params, out

    def _apply(self, params, x, run):
        y = super()._apply(params, x, run)
        self._check_shape(x.shape, y.shape, run.path)
        return gates.add(x, y)

    def _check_shape(self, x_shape, y_shape, path):
        if tuple(x_shape) != tuple(y_shape):
            raise ShapeError(f"{self._label(path)} adds its input to its layers' output, so "
                             f"they must have one shape, but its layers map {tuple(x_shape)} "
                             f"to {tuple(y_shape)}; make the last layer output {x_shape[-1]} "
                             f"features")


def serial(*layers: Layer, remat: int | str | None = None, name: str | None = None) -> Serial:
    """Layers in sequence, each applied to the previous one's output.

    Args:
        *layers: the layers, first to last.
        remat: None (keep every activation for the backward pass), k (recompute the
            activations of every segment of k consecutive layers, keeping only its input), or
            'sqrt' (segments of about sqrt(len(layers)) layers).
        name: the key of its params inside a container (default `serial_<i>`).

    Example:
        >>> model = layers.serial(layers.Dense(64), layers.Relu(), layers.Dense(10))
        >>> params = model.init(jax.random.key(0), jnp.zeros((1, 784)))
        >>> sorted(params)
        ['dense_0', 'dense_1']
    """
    return Serial(*layers, remat=remat, name=name)


def parallel(*layers: Layer, merge: str = "sum", name: str | None = None) -> Parallel:
    """Branches that all take the same input; their outputs are summed or concatenated.

    Args:
        *layers: the branches (use `serial` for a branch of several layers).
        merge: 'sum' (outputs of one shape) or 'concat' (joined on the last axis).

    Example:
        >>> block = layers.parallel(layers.Conv2D(8, 1), layers.Conv2D(8, 3), merge="concat")
        >>> params = block.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
        >>> block.apply(params, jnp.zeros((1, 8, 8, 3))).shape
        (1, 8, 8, 16)
    """
    return Parallel(*layers, merge=merge, name=name)


def residual(*layers: Layer, name: str | None = None) -> Residual:
    """A skip connection: the input plus the output of `layers` applied in sequence.

    Example:
        >>> block = layers.residual(layers.Dense(32), layers.Relu(), layers.Dense(32))
        >>> params = block.init(jax.random.key(0), jnp.zeros((4, 32)))
    """
    return Residual(*layers, name=name)


def _keys(layers: tuple[Layer, ...], container: str) -> tuple[str, ...]:
    counts: dict[str, int] = {}
    keys = []
    for layer in layers:
        if layer.named:
            keys.append(layer.name)
            continue
        keys.append(f"{layer.name}_{counts.get(layer.name, 0)}")
        counts[layer.name] = counts.get(layer.name, 0) + 1
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ArgumentError(f"{container}: layers must have distinct names, but {duplicates} "
                            f"is used more than once; rename one of them")
    return tuple(keys)
