"""The layer: a pair of pure functions, `init(key, example_input)` and `apply(params, x)`.

Every layer is a `Layer`. Its params are a nested dict whose keys name the layers that own them
(`{'conv2d_0': {'w': ..., 'b': ...}}`); the slash-joined keys down to a layer are its path, and
every error names it. Containers hand each child its own path, PRNG key and init hint.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from difprog import gates
from difprog.errors import ArgumentError, DifprogError, DtypeError, ShapeError

Params = dict[str, Any]
Initializer = Callable[[jax.Array, tuple[int, ...], Any], jax.Array]


@dataclasses.dataclass(frozen=True)
class InitScope:
    """Where a layer is initialised: its path, and whether a relu-like activation follows it."""

    path: str = ""
    before_relu: bool = False


@dataclasses.dataclass(frozen=True)
class Run:
    """How a layer is applied: its path, its PRNG key, train or eval, what records outputs, and
    where BatchNorm layers put their updated running statistics (`stats`, {path: {'mean', 'var'}},
    None when they are not wanted)."""

    path: str = ""
    key: jax.Array | None = None
    train: bool = False
    recorder: Recorder | None = None
    perturb: Mapping[str, Any] | None = None
    stats: dict[str, Any] | None = None


class Recorder:
    """Collects the output of every layer a run passes through, in the order layers start
    (`rows`), and the input of each (`inputs`, row by row)."""

    def __init__(self, wanted: Callable[[str], bool]):
        self.wanted = wanted
        self.rows: list[tuple[str, Layer, Any]] = []
        self.inputs: list[Any] = []

    def start(self, path: str, layer: Layer, x: Any = None) -> int:
        self.rows.append((path, layer, None))
        self.inputs.append(x)
        return len(self.rows) - 1

    def finish(self, row: int, y: Any) -> None:
        path, layer, _ = self.rows[row]
        self.rows[row] = (path, layer, y)

    def outputs(self) -> dict[str, Any]:
        return {path: y for path, _, y in self.rows if path and self.wanted(path)}


class Layer:
    """A layer of a model: `init(key, example_input) -> params`, `apply(params, x) -> y`.

    Both are pure: params are a plain pytree of arrays, so `jax.jit`, `jax.grad`, `jax.vmap`,
    `jax.jvp` and optax take them directly. Like a stax layer, a layer unpacks into the pair:
    `init, apply = layers.Dense(10)`.

    Subclasses implement `_init` and `_apply`; `name` is the key their params go under inside a
    container (numbered, `dense_0`, unless given explicitly).
    """

    kind: ClassVar[str] = "layer"
    relu_like: ClassVar[bool] = False

    def __init__(self, *, name: str | None = None):
        if name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", name):
            raise ArgumentError(f"{type(self).__name__}: name {name!r} must be a non-empty "
                                f"identifier without '/' (letters, digits, '_', '.', '-')")
        self.name = name or self.kind
        self.named = name is not None

    def init(self, key: jax.Array, example_input: Any) -> Params:
        """Draws fresh params for inputs shaped like `example_input` (an array or ShapeDtypeStruct).

        Args:
            key: a PRNG key, `jax.random.key(seed)`; the same key gives the same params.
            example_input: an input of the shape and dtype the model will be applied to (only its
                shape and dtype are used). Its floating dtype is the params' dtype.

        Returns:
            The params: a nested dict of arrays.

        Example:
            >>> model = layers.serial(layers.Dense(32), layers.Relu(), layers.Dense(10))
            >>> params = model.init(jax.random.key(0), jnp.zeros((8, 64)))
            >>> jax.tree.map(jnp.shape, params)
            {'dense_0': {'b': (32,), 'w': (64, 32)}, 'dense_1': {'b': (10,), 'w': (32, 10)}}
        """
        params, _ = self._init(key, _as_struct(example_input, self), InitScope())
        return params

    def apply(self, params: Params, x: Any, *, key: jax.Array | None = None, train: bool = False,
              capture: bool | Callable[[str], bool] | tuple[str, ...] = False,
              perturb: Mapping[str, Any] | None = None, update_stats: bool = False) -> Any:
        """Runs the layer: `y = layer(params, x)`, every gradient through difprog gates.

        Args:
            params: the params `init` returned (or any pytree of the same structure and shapes).
            x: the input.
            key: a PRNG key for random layers (Dropout) when `train=True`.
            train: training mode (Dropout drops) or evaluation mode (Dropout is the identity).
            capture: also return the outputs of inner layers, as `(y, {path: output})`: True
                for every layer, a tuple of paths such as `('conv2d_0', 'dense_0')`, or a
                predicate on the path.
            perturb: `{path: delta}`: adds delta to the output of the inner layer at each path
                (through the add gate), so `jax.grad` with respect to a zero delta is the
                gradient with respect to that layer's output (as Flax's `perturb`).
            update_stats: with `train=True`, also return the running statistics every BatchNorm
                layer updated from its batch, `{path: {'mean', 'var'}}` (stop-gradient values;
                `layers.merge_stats(params, stats)` puts them into the params).

        Returns:
            The output; `(output, captured)` when `capture` is set; with `update_stats`, the
            stats come last: `(output, stats)` or `(output, captured, stats)`.

        Example:
            >>> _, out = model.apply(params, x, capture=("dense_0",))
            >>> zero = jnp.zeros_like(out["dense_0"])
            >>> jax.grad(lambda d: model.apply(params, x, perturb={"dense_0": d}).sum())(zero)
        """
        x = _as_input(x, self)
        if update_stats is not False and (update_stats is not True or train is not True):
            raise ArgumentError(
                f"{self._label('')}: update_stats must be True or False, and True only with "
                f"train=True (running statistics are updated from the batch statistics of "
                f"training), got update_stats={update_stats!r}, train={train!r}")
        recorder = Recorder(_capture_predicate(capture)) if capture else None
        stats = {} if update_stats else None
        y = self._call(params, x, Run(key=key, train=train, recorder=recorder,
                                      perturb=dict(perturb) if perturb else None, stats=stats))
        if perturb:
            _check_paths("perturb", perturb, recorder, self, params, x)
        if capture:
            _check_captured(capture, recorder, self)
        out = (y, recorder.outputs()) if capture else (y,)
        out = (*out, stats) if update_stats else out
        return out if len(out) > 1 else y

    def __iter__(self) -> Iterator[Callable]:
        yield self.init
        yield self.apply

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(self._settings())})"

    def _settings(self) -> list[str]:
        """The constructor arguments repr shows, such as `['10']` for Dense(10)."""
        return [f"name={self.name!r}"] if self.named else []

    def _call(self, params: Params, x: Any, run: Run) -> Any:
        """Applies the layer at `run.path`, naming its scope and recording its output."""
        row = run.recorder.start(run.path, self, x) if run.recorder else None
        with jax.named_scope(run.path.rsplit("/", 1)[-1] or self.name):
            y = self._apply(params, x, run)
        if run.perturb and run.path in run.perturb:
            y = gates.add(y, run.perturb[run.path])
        if run.recorder:
            run.recorder.finish(row, y)
        return y

    def _init(self, key: jax.Array, x: jax.ShapeDtypeStruct, scope: InitScope
              ) -> tuple[Params, jax.ShapeDtypeStruct]:
        """The params for inputs like `x`, and the shape and dtype of the output."""
        raise NotImplementedError

    def _apply(self, params: Params, x: Any, run: Run) -> Any:
        raise NotImplementedError

    def _label(self, path: str) -> str:
        """How errors name this layer: its path (or name at the top) and what it is."""
        return f"layer {path or self.name!r} ({self!r})"


class Leaf(Layer):
    """A layer with no children: it checks its input and params, then computes with gates.

    Subclasses set `expects` and `_fits` (the inputs they take), and for trainable layers
    `_param_shapes` and `_initializers`; `_forward` is the computation.
    """

    expects: ClassVar[str] = "an array"
    takes_floats: ClassVar[bool] = True  # False for a layer of integer inputs (token ids)

    def _fits(self, shape: tuple[int, ...]) -> bool:
        return True

    def _param_shapes(self, x_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """The shape of each param for inputs of `x_shape`."""
        return {}

    def _initializers(self, before_relu: bool) -> dict[str, Initializer]:
        return {}

    def _forward(self, params: Params, x: Any, run: Run) -> Any:
        raise NotImplementedError

    def _init(self, key, x, scope):
        self._check_input(x, scope.path)
        shapes = self._param_shapes(x.shape)
        initializers = self._initializers(scope.before_relu)
        dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
        keys = jax.random.split(key, len(shapes)) if shapes else []
        params = {n: initializers[n](k, shape, dtype) for (n, shape), k in zip(shapes.items(), keys)}
        out = jax.eval_shape(lambda p, x: self._apply(p, x, Run(path=scope.path)), params, x)
        return params, out

    def _apply(self, params, x, run):
        self._check_input(x, run.path)
        self._check_params(params, x.shape, run.path)
        try:
            return self._forward(params, x, run)
        except DifprogError as error:
            raise type(error)(f"{self._label(run.path)}: {error}") from None

    def _check_input(self, x: Any, path: str) -> None:
        if not self._fits(tuple(x.shape)):
            raise ShapeError(f"{self._label(path)} expects {self.expects}, got an input of "
                             f"shape {tuple(x.shape)}; reshape the input, or change the layers "
                             f"before it")
        if self.takes_floats and not jnp.issubdtype(x.dtype, jnp.floating):
            raise DtypeError(
                f"{self._label(path)} takes floating inputs, got a {x.dtype} input of shape "
                f"{tuple(x.shape)}; convert them to the params' dtype first, scaled to the range "
                f"the model was trained on: 8-bit images as x.astype(jnp.float32) / 255 (the "
                f"digits of difprog.data are float32 in [0, 1])")

    def _check_params(self, params: Params, x_shape: tuple[int, ...], path: str) -> None:
        expected = self._param_shapes(tuple(x_shape))
        if not isinstance(params, Mapping):
            raise ShapeError(f"{self._label(path)}: params must be a dict with keys "
                             f"{sorted(expected)}, got {type(params).__name__}")
        if set(params) != set(expected):
            where = f"params[{path!r}]" if path else "params"
            raise ShapeError(
                f"{self._label(path)}: {where} has keys {sorted(params)} but the layer needs "
                f"{sorted(expected)} (shapes {_shapes_text(expected)}); pass the params "
                f"model.init returned")
        for name, shape in expected.items():
            got = tuple(np.shape(params[name]))
            if got != shape:
                raise ShapeError(
                    f"{self._label(path)}: param {join(path, name)!r} has shape {got}, but an "
                    f"input of shape {tuple(x_shape)} needs {shape}; either the input is not "
                    f"the one the params were initialised for, or the params belong to another "
                    f"model: feed inputs like the init example, or re-run init")


def join(path: str, key: str) -> str:
    """The path of child `key` inside the layer at `path`."""
    return f"{path}/{key}" if path else key


def _shapes_text(shapes: Mapping[str, tuple[int, ...]]) -> str:
    return ", ".join(f"{name}: {shape}" for name, shape in shapes.items())


def _as_struct(example: Any, layer: Layer) -> jax.ShapeDtypeStruct:
    if isinstance(example, jax.ShapeDtypeStruct):
        return example
    array = _as_input(example, layer)
    return jax.ShapeDtypeStruct(array.shape, array.dtype)


def _as_input(x: Any, layer: Layer) -> Any:
    if isinstance(x, (jax.Array, jax.ShapeDtypeStruct)):
        return x
    if isinstance(x, (np.ndarray, np.generic, int, float)) and not isinstance(x, bool):
        return jnp.asarray(x)
    raise DtypeError(f"{layer._label('')}: the input must be an array, got {type(x).__name__}")


def _check_captured(capture: Any, recorder: Recorder, layer: Layer) -> None:
    if callable(capture) or capture is True:
        return
    paths = [path for path, _, _ in recorder.rows if path]
    unknown = sorted(set((capture,) if isinstance(capture, str) else capture) - set(paths))
    if unknown:
        raise ArgumentError(f"{layer._label('')}: cannot capture {unknown}: no layer has that "
                            f"path; the model's paths are {paths}")


def _check_paths(what: str, wanted: Mapping[str, Any], recorder: Recorder | None, layer: Layer,
                 params: Params, x: Any) -> None:
    """Refuses paths of `wanted` that name no inner layer (a perturbation that was never added)."""
    if recorder is None:
        recorder = Recorder(lambda path: True)
        jax.eval_shape(lambda p, x: layer._call(p, x, Run(recorder=recorder)), params, x)
    paths = [path for path, _, _ in recorder.rows if path]
    unknown = sorted(set(wanted) - set(paths))
    if unknown:
        raise ArgumentError(f"{layer._label('')}: cannot {what} {unknown}: no layer has that "
                            f"path; the model's paths are {paths}")


def _capture_predicate(capture: Any) -> Callable[[str], bool]:
    if capture is True:
        return lambda path: True
    if callable(capture):
        return capture
    if isinstance(capture, str):
        capture = (capture,)
    wanted = set(capture)
    return lambda path: path in wanted
