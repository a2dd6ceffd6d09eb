"""The machinery under every layer: init (shape inference, then drawing), apply, and the
`Context` a forward gets (its path, PRNG key, train flag, and its children to call).

Init runs the model's forward once under `jax.eval_shape` in a declaring mode: each layer with
params declares them for the input it actually receives (and computes on zero placeholders), so
containers need no init of their own. The declarations are then drawn, each layer's PRNG key
split from its container's as the children are numbered, outside any trace.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.nn import initializers

from difprog import gates
from difprog.errors import ArgumentError, DifprogError, DtypeError, ShapeError
from difprog.layers._layer import Applied, Layer, Param, Params, join, label


@dataclasses.dataclass
class _Run:
    declaring: bool
    train: bool = False
    visits: list | None = None  # rows [path, layer, input, output], in the order layers start
    perturb: Mapping[str, Any] | None = None
    stats: dict[str, Any] | None = None


@dataclasses.dataclass(eq=False)
class _Node:
    """A layer met while declaring: its params (a layer without children) or its children."""

    layer: Layer
    index: int = 0  # its position among its container's children
    decl: dict[str, Param] | None = None
    dtype: Any = jnp.float32
    children: dict[str, _Node] = dataclasses.field(default_factory=dict)
    consumers: list[bool] = dataclasses.field(default_factory=list)  # relu_like of its takers
    stack: int | None = None  # repeat: params stacked on a leading axis of this size


class Context:
    """What a layer's forward gets besides its params and input.

    - `path`: where the layer sits in the model (`'block_0/mlp/dense_0'`; '' at the top).
    - `key`: the layer's own PRNG key (None when apply got none).
    - `random_key(doing)`: that key, or an error naming the layer and saying that training
      needs one to `doing` (Dropout: 'drop entries'); for layers that draw at random.
    - `train`: training mode.
    - `ctx(child, x)`: a container's child `child` (a key of its `children()`) applied to x, with
      its own params, path and PRNG key.
    - `stats_wanted` / `put_stats(values)`: a layer with running statistics hands its updated
      values to `run(..., update_stats=True)`.
    """

    def __init__(self, layer: Layer, params: Any, path: str, key: Any, run: _Run,
                 node: _Node | None):
        self.layer, self.path, self.key = layer, path, key
        self._params, self._run, self._node = params, run, node
        self._keys: Any = None
        self._outputs: list[tuple[_Node, Any]] = []

    @property
    def train(self) -> bool:
        return self._run.train

    @property
    def stats_wanted(self) -> bool:
        return self._run.stats is not None

    def put_stats(self, values: Mapping[str, Any]) -> None:
        if self._run.stats is not None:
            self._run.stats[self.path] = dict(values)

    def random_key(self, doing: str) -> Any:
        """The layer's PRNG key, or an error saying that training needs one to do `doing`."""
        if self.key is None:
            raise ArgumentError(f"needs a PRNG key in training (train=True) to {doing} at "
                                f"random: call apply(params, x, key=jax.random.key(seed), "
                                f"train=True), or apply with train=False to evaluate")
        return self.key

    def __call__(self, child: str, x: Any) -> Any:
        kids = self.layer.children()
        if child not in kids:
            raise ArgumentError(f"has no child {child!r}; its children are {list(kids)}")
        layer, path = kids[child], join(self.path, child)
        if not self._run.declaring:
            params = self._params if child == "" else self._params.get(child, {})
            return call(layer, params, x, path, self._child_key(child, kids), self._run)
        node = self._node.children.get(child)
        if node is None:
            node = self._node.children[child] = _Node(layer, list(kids).index(child))
        for earlier, out in self._outputs:
            if out is x:
                earlier.consumers.append(bool(layer.relu_like))
        y = call(layer, None, x, path, None, self._run, node)
        self._outputs.append((node, y))
        return y

    def _child_key(self, child: str, kids: Mapping[str, Layer]) -> Any:
        if self.key is None or child == "":
            return self.key
        if self._keys is None:
            self._keys = jax.random.split(self.key, len(kids))
        return self._keys[list(kids).index(child)]


def call(layer: Layer, params: Any, x: Any, path: str, key: Any, run: _Run,
         node: _Node | None = None) -> Any:
    """Applies `layer` at `path`: checks, names its scope, records, perturbs."""
    row = None
    if run.visits is not None:
        row = [path, layer, x, None]
        run.visits.append(row)
    with jax.named_scope(path.rsplit("/", 1)[-1] or layer.name or layer.kind):
        ctx = Context(layer, params, path, key, run, node)
        try:
            if layer.children():
                _refuse_own_params(layer)
                if not run.declaring:
                    check_container_params(layer, params, path)
                y = layer.forward(params, x, ctx)
            else:
                y = _leaf(layer, params, x, ctx)
        except DifprogError as error:
            raise labelled(error, layer, path) from None
    if run.perturb and path in run.perturb:
        y = gates.add(y, run.perturb[path])
    if row is not None:
        row[3] = y
    return y


def _refuse_own_params(container: Layer) -> None:
    if type(container).params is not Layer.params:
        raise ArgumentError("declares children and params of its own; a container's params "
                            "belong to its children: put them in a child layer (a layer "
                            "with a learned scale, say) and call it through ctx")


def _declared(layer: Layer, x: Any) -> dict[str, Param]:
    declared = layer.params(x)
    wrong = {n: type(p).__name__ for n, p in declared.items() if not isinstance(p, Param)}
    if wrong:
        raise DtypeError(f"params() must map each name to a layers.Param(shape, init), got "
                         f"{wrong}")
    return {n: Param(tuple(int(d) for d in p.shape), p.init) for n, p in declared.items()}


def _leaf(layer: Layer, params: Any, x: Any, ctx: Context) -> Any:
    _check_input(layer, x, ctx.path)
    declared = _declared(layer, x)
    if ctx._run.declaring:
        dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
        earlier = ctx._node.decl
        if earlier is not None and {n: p.shape for n, p in earlier.items()} != {
                n: p.shape for n, p in declared.items()}:
            raise ShapeError(
                f"is called on inputs that need params of shapes "
                f"{ {n: p.shape for n, p in earlier.items()} } and "
                f"{ {n: p.shape for n, p in declared.items()} }; a layer called more than once "
                f"shares its params, so every call must take inputs of one shape")
        ctx._node.decl, ctx._node.dtype = declared, dtype
        params = {n: jnp.zeros(p.shape, dtype) for n, p in declared.items()}
    else:
        _check_params(layer, params, declared, tuple(x.shape), ctx.path)
    return layer.forward(params, x, ctx)


def labelled(error: DifprogError, layer: Layer, path: str) -> DifprogError:
    """The error with the layer's label in front, once (the innermost layer's)."""
    if getattr(error, "_names_layer", False):
        return error
    return _named(type(error), f"{label(layer, path)}: {error}")


def _named(kind: type, message: str) -> DifprogError:
    error = kind(message)
    error._names_layer = True
    return error


def _check_input(layer: Layer, x: Any, path: str) -> None:
    takes = layer.takes
    if not takes.fits(tuple(x.shape)):
        raise _named(ShapeError, f"{label(layer, path)} expects {takes.text}, got an input of "
                                 f"shape {tuple(x.shape)}; reshape the input, or change the "
                                 f"layers before it")
    if takes.dtype == "integer" and not jnp.issubdtype(x.dtype, jnp.integer):
        raise _named(DtypeError, f"{label(layer, path)} takes integer ids, got a {x.dtype} input "
                                 f"of shape {tuple(x.shape)}; pass ids.astype(jnp.int32)")
    if takes.dtype == "floating" and not jnp.issubdtype(x.dtype, jnp.floating):
        raise _named(DtypeError,
                     f"{label(layer, path)} takes floating inputs, got a {x.dtype} input of shape "
                     f"{tuple(x.shape)}; convert them to the params' dtype first, scaled to the "
                     f"range the model was trained on: 8-bit images as x.astype(jnp.float32) / "
                     f"255 (the digits of difprog.data are float32 in [0, 1])")


def _check_params(layer: Layer, params: Any, declared: Mapping[str, Param],
                  x_shape: tuple[int, ...], path: str) -> None:
    name = label(layer, path)
    if not isinstance(params, Mapping):
        raise _named(ShapeError, f"{name}: params must be a dict with keys {sorted(declared)}, "
                                 f"got {type(params).__name__}")
    if set(params) != set(declared):
        where = f"params[{path!r}]" if path else "params"
        shapes = ", ".join(f"{n}: {p.shape}" for n, p in declared.items())
        raise _named(ShapeError, f"{name}: {where} has keys {sorted(params)} but the layer needs "
                                 f"{sorted(declared)} (shapes {shapes}); pass the params "
                                 f"model.init returned")
    for key, p in declared.items():
        got = tuple(np.shape(params[key]))
        if got != p.shape:
            raise _named(ShapeError,
                         f"{name}: param {join(path, key)!r} has shape {got}, but an input of "
                         f"shape {x_shape} needs {p.shape}; either the input is not the one the "
                         f"params were initialised for, or the params belong to another model: "
                         f"feed inputs like the init example, or re-run init")


def check_container_params(layer: Layer, params: Any, path: str) -> None:
    keys = [k for k in layer.children() if k]
    if not keys:
        return
    if not isinstance(params, Mapping):
        raise _named(ShapeError, f"{label(layer, path)}: params must be a dict keyed by its "
                                 f"layers {keys}, got {type(params).__name__}")
    unknown = sorted(set(params) - set(keys))
    if unknown:
        where = f"params[{path!r}]" if path else "params"
        raise _named(ShapeError, f"{label(layer, path)}: {where} has entries {unknown} that "
                                 f"belong to no layer; its layers are {keys}; pass the params "
                                 f"model.init returned")


# ---- init: declare under eval_shape, then draw ----

def init(layer: Layer, key: jax.Array, x: jax.ShapeDtypeStruct) -> Params:
    root = _Node(layer)
    run = _Run(declaring=True)
    jax.eval_shape(lambda x: call(layer, None, x, "", None, run, root), x)
    return _draw(root, key, False)


def _draw(node: _Node, key: jax.Array, before_relu: bool) -> Any:
    if node.stack is not None:
        return jax.vmap(lambda k: _draw_one(node, k, before_relu))(
            jax.random.split(key, node.stack))
    return _draw_one(node, key, before_relu)


def _draw_one(node: _Node, key: jax.Array, before_relu: bool) -> Any:
    if node.decl is not None:
        if not node.decl:
            return {}
        keys = jax.random.split(key, len(node.decl))
        return {n: (p.init or default_weights(before_relu))(k, p.shape, node.dtype)
                for (n, p), k in zip(node.decl.items(), keys)}
    params, keys = {}, None
    for child_key, child in node.children.items():
        hint = any(child.consumers) if child.consumers else before_relu
        if child_key == "":
            return _draw(child, key, hint)
        if keys is None:
            keys = jax.random.split(key, len(node.layer.children()))
        drawn = _draw(child, keys[child.index], hint)
        if drawn:
            params[child_key] = drawn
    return params


def default_weights(before_relu: bool) -> Callable:
    """He normal before a relu (keeps the activations' variance), Glorot uniform otherwise."""
    return initializers.he_normal() if before_relu else initializers.glorot_uniform()


# ---- run: apply with captures, perturbations and statistics ----

def run(layer: Layer, params: Params, x: Any, *, key: Any, train: bool, capture: Any,
        perturb: Mapping[str, Any] | None, update_stats: bool) -> Applied:
    if update_stats is not False and (update_stats is not True or train is not True):
        raise ArgumentError(
            f"{label(layer, '')}: update_stats must be True or False, and True only with "
            f"train=True (running statistics are updated from the batch statistics of "
            f"training), got update_stats={update_stats!r}, train={train!r}")
    state = _Run(declaring=False, train=train, visits=[] if capture else None,
                 perturb=dict(perturb) if perturb else None, stats={} if update_stats else None)
    y = call(layer, params, x, "", key, state)
    if perturb:
        _check_paths("perturb", perturb, state.visits, layer, params, x)
    captured = {}
    if capture:
        if not (callable(capture) or capture is True):
            _check_paths("capture", (capture,) if isinstance(capture, str) else capture,
                         state.visits, layer, params, x)
        wanted = _predicate(capture)
        captured = {path: out for path, _, _, out in state.visits if path and wanted(path)}
    return Applied(y, captured, state.stats if state.stats is not None else {})


def visits(layer: Layer, params: Any, x: Any) -> list[list]:
    """Rows [path, layer, input, output] of a forward pass in evaluation mode."""
    state = _Run(declaring=False, visits=[])
    call(layer, params, x, "", None, state)
    return state.visits


def _check_paths(what: str, wanted: Any, rows: list | None, layer: Layer, params: Any,
                 x: Any) -> None:
    """Refuses paths that name no inner layer (a perturbation that was never added)."""
    if rows is None:
        found: list = []
        jax.eval_shape(lambda p, x: found.extend(r[0] for r in visits(layer, p, x)), params, x)
        paths = [p for p in found if p]
    else:
        paths = [row[0] for row in rows if row[0]]
    unknown = sorted(set(wanted) - set(paths))
    if unknown:
        raise ArgumentError(f"{label(layer, '')}: cannot {what} {unknown}: no layer has that "
                            f"path; the model's paths are {paths}")


def _predicate(capture: Any) -> Callable[[str], bool]:
    if capture is True:
        return lambda path: True
    if callable(capture):
        return capture
    wanted = {capture} if isinstance(capture, str) else set(capture)
    return lambda path: path in wanted
