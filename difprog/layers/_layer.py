"""The layer contract: a frozen dataclass of settings, a declaration of params, one forward.

A layer with params says what params it needs for an input (`params(x) -> {name: Param}`) and
how it computes (`forward(params, x, ctx)`); a container names its children
(`children() -> {key: layer}`) and calls them through `ctx(key, x)` in its forward. Everything
else (init, apply, the checks of inputs and params, errors naming the layer's path, PRNG keys,
captures, perturbations, running statistics) is the machinery's (`_context.py`).

Params are a nested dict whose keys name the layers that own them
(`{'conv2d_0': {'w': ..., 'b': ...}}`); the slash-joined keys down to a layer are its path.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, NamedTuple, dataclass_transform

import jax

from difprog.errors import ArgumentError, DtypeError

Params = dict[str, Any]
Initializer = Callable[[jax.Array, tuple[int, ...], Any], jax.Array]


@dataclasses.dataclass(frozen=True)
class Param:
    """One param a layer needs: its shape and its initialiser `init(key, shape, dtype)`.

    `init=None` is the default for weights: He normal when a relu-like layer takes the layer's
    output, Glorot uniform otherwise.
    """

    shape: tuple[int, ...]
    init: Initializer | None = None


@dataclasses.dataclass(frozen=True)
class Input:
    """The inputs a layer takes: a rank (exact, or at least `min_rank`), a dtype kind
    ('floating', 'integer' or 'any') and how errors describe them."""

    rank: int | None = None
    min_rank: int = 0
    dtype: str = "floating"
    text: str = ""

    def __post_init__(self):
        if self.dtype not in ("floating", "integer", "any"):
            raise ArgumentError(f"Input: dtype must be one of ['floating', 'integer', 'any'], "
                                f"got {self.dtype!r}")
        if not self.text:
            text = (f"an input of rank {self.rank}" if self.rank is not None else
                    f"an input of rank >= {self.min_rank}" if self.min_rank else "an array")
            object.__setattr__(self, "text", text)

    def fits(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == self.rank if self.rank is not None else len(shape) >= self.min_rank


class Applied(NamedTuple):
    """What `Layer.run` returns: the output, the captured outputs of inner layers
    (`{path: output}`) and the updated running statistics (`{path: {'mean', 'var'}}`)."""

    output: Any
    captured: dict[str, Any]
    stats: dict[str, Any]


@dataclass_transform(frozen_default=True)
class Layer:
    """A layer: `init(key, example_input) -> params` and `apply(params, x) -> y`, both pure.

    A subclass is a frozen dataclass (made one automatically) whose fields are its settings; it
    checks them in `__post_init__`. It defines:

    - `forward(self, params, x, ctx) -> y`: the computation, through difprog gates. `ctx.train`
      and `ctx.key` (its own PRNG key, or None) serve random and train-only behaviour; a
      container calls its children with `ctx(child_key, x)`.
    - `params(self, x) -> {name: Param(shape, init)}`: the params it needs for inputs like x
      (none by default); the machinery draws them at init and checks them at apply.
    - `children(self) -> {key: layer}` for a container (none by default); `keyed(*layers)`
      gives them the default keys (`dense_0`, `conv2d_1`, ...).
    - class attributes: `takes` (an `Input`: rank and dtype, checked before forward), `kind`
      (the stem of its default key, default the class name in snake case) and `relu_like` (a
      layer before it draws default weights He normal rather than Glorot uniform).

    Like a stax layer, a layer unpacks into its pair: `init, apply = layers.Dense(10)`.
    """

    name: str | None = dataclasses.field(default=None, kw_only=True)

    kind: ClassVar[str] = "layer"
    relu_like: ClassVar[bool] = False
    takes: ClassVar[Input] = Input()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" not in cls.__dict__ and not isinstance(getattr(cls, "kind", None), property):
            cls.kind = _snake(cls.__name__)
        written = "__init__" in cls.__dict__  # a hand-written __init__ (varargs, renamed args)
        inherited = getattr(cls.__init__, "_written", False)  # a subclass keeps its base's
        dataclasses.dataclass(frozen=True, eq=False, repr=False, init=not inherited)(cls)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_checks_name", False):
            cls.__init__ = _checking_name(init)
            cls.__init__._written = written

    # ---- what a layer defines ----

    def forward(self, params: Params, x: Any, ctx: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} defines no forward(params, x, ctx)")

    def params(self, x: Any) -> dict[str, Param]:
        """The params for inputs like x (anything with .shape and .dtype): `{name: Param}`."""
        return {}

    def children(self) -> Mapping[str, Layer]:
        """The child layers of a container, by key (empty for a layer without children)."""
        return {}

    # ---- what every layer gets ----

    @property
    def key(self) -> str | None:
        """The key it asks for inside a container: its name, or None for a numbered key."""
        return self.name

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
        from difprog.layers import _context
        return _context.init(self, key, as_struct(example_input, self))

    def apply(self, params: Params, x: Any, *, key: jax.Array | None = None,
              train: bool = False, **others: Any) -> Any:
        """Runs the layer: `y = layer(params, x)`, every gradient through difprog gates.

        Args:
            params: the params `init` returned (or any pytree of the same structure and shapes).
            x: the input.
            key: a PRNG key for random layers (Dropout) when `train=True`.
            train: training mode (Dropout drops, BatchNorm uses the batch's statistics) or
                evaluation mode.

        Returns:
            The output, always one array (`run` also gives inner outputs and statistics).
        """
        if others:
            raise ArgumentError(
                f"{type(self).__name__}.apply takes params, x, key= and train=, got "
                f"{sorted(others)}; apply returns the output alone: for captures, "
                f"perturbations or updated statistics use model.run(params, x, capture=..., "
                f"perturb=..., update_stats=...), whose .output, .captured and .stats hold them")
        return self.run(params, x, key=key, train=train).output

    def run(self, params: Params, x: Any, *, key: jax.Array | None = None, train: bool = False,
            capture: bool | Callable[[str], bool] | tuple[str, ...] | str = (),
            perturb: Mapping[str, Any] | None = None, update_stats: bool = False) -> Applied:
        """Runs the layer as `apply` does, and returns an `Applied(output, captured, stats)`.

        Args:
            params, x, key, train: as for `apply`.
            capture: the inner layers whose outputs to return in `captured` (`{path: output}`):
                True for every layer, a tuple of paths such as `('conv2d_0', 'dense_0')`, or a
                predicate on the path.
            perturb: `{path: delta}`: adds delta to the output of the inner layer at each path
                (through the add gate), so `jax.grad` with respect to a zero delta is the
                gradient with respect to that layer's output (as Flax's `perturb`).
            update_stats: with `train=True`, `stats` holds the running statistics every
                BatchNorm layer updated from its batch, `{path: {'mean', 'var'}}` (stop-gradient
                values; `layers.merge_stats(params, stats)` puts them into the params).

        Example:
            >>> out = model.run(params, x, capture=("dense_0",))
            >>> zero = jnp.zeros_like(out.captured["dense_0"])
            >>> jax.grad(lambda d: model.run(params, x, perturb={"dense_0": d}).output.sum())(zero)
        """
        from difprog.layers import _context
        return _context.run(self, params, as_input(x, self), key=key, train=train,
                            capture=capture, perturb=perturb, update_stats=update_stats)

    def __iter__(self) -> Iterator[Callable]:
        yield self.init
        yield self.apply

    def __repr__(self) -> str:
        shown = []
        for field in sorted(dataclasses.fields(self), key=lambda f: f.kw_only):
            value = getattr(self, field.name)
            if not field.repr:
                continue
            if field.metadata.get("star"):
                shown += [repr(v) for v in value]
            elif field.default is dataclasses.MISSING and not field.kw_only:
                shown.append(_short(value))
            elif not _same(value, _default(field)):
                shown.append(f"{field.name}={_short(value)}")
        return f"{type(self).__name__}({', '.join(shown)})"


def label(layer: Layer, path: str) -> str:
    """How errors name a layer: its path (its name or kind at the top) and what it is."""
    return f"layer {path or layer.name or layer.kind!r} ({layer!r})"


def keyed(*layers: Layer, owner: str = "container") -> dict[str, Layer]:
    """Children under their default keys: the name given, or the kind numbered per kind in order
    (`conv2d_0`, `conv2d_1`, `dense_0`). Distinct keys are required."""
    counts: dict[str, int] = {}
    out: dict[str, Layer] = {}
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise DtypeError(f"{owner}: argument {i} is a {type(layer).__name__}, not a layer; "
                             f"pass layers such as layers.Dense(10) (note the call)")
        key = layer.key
        if key is None:
            key = f"{layer.kind}_{counts.get(layer.kind, 0)}"
            counts[layer.kind] = counts.get(layer.kind, 0) + 1
        if key in out:
            raise ArgumentError(f"{owner}: layers must have distinct names, but [{key!r}] is "
                                f"used more than once; rename one of them")
        out[key] = layer
    return out


def join(path: str, key: str) -> str:
    """The path of child `key` inside the layer at `path` (key '' is the same path)."""
    return f"{path}/{key}" if path and key else path or key


def as_struct(example: Any, layer: Layer) -> jax.ShapeDtypeStruct:
    if isinstance(example, jax.ShapeDtypeStruct):
        return example
    array = as_input(example, layer)
    return jax.ShapeDtypeStruct(array.shape, array.dtype)


def as_input(x: Any, layer: Layer) -> Any:
    import jax.numpy as jnp
    import numpy as np
    if isinstance(x, (jax.Array, jax.ShapeDtypeStruct)):
        return x
    if isinstance(x, (np.ndarray, np.generic, int, float)) and not isinstance(x, bool):
        return jnp.asarray(x)
    raise DtypeError(f"{label(layer, '')}: the input must be an array, got {type(x).__name__}")


def _checking_name(init: Callable) -> Callable:
    @functools.wraps(init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        name = getattr(self, "name", None)
        if name is not None and not (isinstance(name, str) and re.fullmatch(
                r"[A-Za-z_][A-Za-z0-9_.-]*", name)):
            raise ArgumentError(f"{type(self).__name__}: name {name!r} must be a non-empty "
                                f"identifier without '/' (letters, digits, '_', '.', '-')")

    __init__._checks_name = True
    return __init__


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _same(value: Any, default: Any) -> bool:
    try:
        if value is default or bool(value == default):
            return True
    except Exception:  # arrays and other values without a plain ==
        return False
    return _short(value) == _short(default)


def _short(value: Any) -> str:
    """An int pair (3, 3) as 3; anything else as its repr."""
    if isinstance(value, tuple) and len(value) == 2 and value[0] == value[1] and all(
            isinstance(v, int) for v in value):
        return str(value[0])
    return repr(value)


Layer = dataclass_transform(frozen_default=True)(
    dataclasses.dataclass(frozen=True, eq=False, repr=False)(Layer))
Layer.__init__ = _checking_name(Layer.__init__)
