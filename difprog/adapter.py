"""The one module of difprog that talks to JAX's custom-rule machinery and to JAX internals.

A gate (`difprog.gate.Gate`, a plain record) is applied here: its arguments are bound and
checked, its output type inferred with `jax.eval_shape`, and each application becomes a hijax
primitive whose rules call the gate's hand-written backward under jax.vjp / jax.grad, its
tangent under jax.jvp / jax.linearize, and the gate mapped over the batch axis under jax.vmap.

What it depends on, per JAX version (tested: 0.10.2 and 0.12.0.1):

- every version: the public `jax.experimental.hijax` (`Zero`, `instantiate_zeros`, and the
  primitive base class: `VJPHiPrimitive` up to 0.11.1, `HiPrim` from 0.11.2, the same methods),
  `jax.typeof`, `jax.eval_shape`, `jax.core.ShapedArray`, `jax.core.Tracer`, `jax.extend.core`.
- JAX 0.10.x: hijax binds every primitive through one "high" primitive that `jax.jit` lowers
  anew on every call (about 1 ms a step). Gates bind an ordinary primitive, `difprog_gate`,
  instead, registered with hijax's own rules from `jax._src.hijax`
  (`_call_hi_primitive_to_lojax`, `_jvp`, `_linearize`, `_batcher`, `_dce`, `_remat`) and the
  rule tables of `jax._src.interpreters` (`ad`, `batching`, `mlir`, `partial_eval`, `remat`),
  so jitted programs of gates stay cached. If any name is missing, the public path is used.
- JAX 0.11.x: the public path (correct, about 2x the dispatch time of a jitted step): the
  private helpers changed their signatures between 0.11 releases, and no 0.11 is tested.
- JAX >= 0.12: `jax.jit` lowers hijax primitives itself and keeps its C++ fast path, so no
  `jax._src` name is imported at all.
- `lax.scan` equations: `num_consts` / `num_carry` params up to 0.10, a flat tree `ft_in` of
  (consts, carry, xs) from 0.11 (`scan_counts`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING, Any

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
from jax.experimental import hijax

from difprog.errors import ArgumentError, DtypeError, RuleError, ShapeError

if TYPE_CHECKING:
    from difprog.gate import Gate

__all__ = ["GateCall", "apply", "bind_equation", "gate_call", "is_tracer", "open_jaxpr",
           "scan_counts"]

JAX_VERSION = jax.__version_info__


# --- Binding: the gate's arguments by name, checked -----------------------------------------

def apply(gate: Gate, args: tuple, kwargs: dict) -> Any:
    """`gate(*args, **kwargs)`: binds and checks the arguments, then applies the primitive."""
    arrays, static = bind(gate, args, kwargs)
    if gate.check is not None:
        gate.check(**arrays, **static)
    avals = tuple(jax.tree.map(jax.typeof, a) for a in arrays.values())
    static_items = tuple(static.items())
    out_aval = _out_aval(gate, _hashable_tree(avals), static_items)
    return _GatePrimitive(gate, avals, out_aval, static_items)(*arrays.values())


def bind(gate: Gate, args: tuple, kwargs: dict) -> tuple[dict, dict]:
    """The arguments as (arrays by name, static constants by name), each checked."""
    try:
        bound = gate.signature.bind(*args, **kwargs)
    except TypeError as error:
        raise DtypeError(f"gate {gate.name!r}: {error}; its signature is "
                         f"{gate.name}{gate.signature}") from None
    bound.apply_defaults()
    arrays, static = {}, {}
    for name, value in bound.arguments.items():
        if name in gate.static_names:
            static[name] = _as_static(gate, name, value)
        else:
            arrays[name] = _as_array(gate, name, value)
    return arrays, static


def arguments(gate: Gate, arrays: Iterable, static_items: tuple) -> dict:
    """The gate's keyword arguments from its arrays (in order) and its static items."""
    return {**dict(zip(gate.array_names, arrays)), **dict(static_items)}


def _as_array(gate: Gate, name: str, value: Any) -> Any:
    if value is None and name in gate.optional_names:
        return None  # an optional array left out: an empty pytree to JAX
    differentiable = name not in gate.nondiff
    if differentiable and gate.pytree_inputs:
        return jax.tree.map(lambda leaf: _as_leaf(gate, name, leaf, differentiable), value)
    return _as_leaf(gate, name, value, differentiable)


def _as_leaf(gate: Gate, name: str, value: Any, differentiable: bool) -> jax.Array:
    if isinstance(value, bool) or not isinstance(value, (jax.Array, np.ndarray, np.generic,
                                                         int, float)):
        raise DtypeError(f"gate {gate.name!r}: argument {name!r} must be an array or a "
                         f"number, got {type(value).__name__}")
    if isinstance(value, jax.Array):
        array = value
    elif isinstance(value, (int, float)):  # Python numbers stay weakly typed, as in jax.numpy
        array = _number(gate, name, value, differentiable)
    else:
        array = _host_array(gate, name, value)
    if differentiable and not jnp.issubdtype(array.dtype, jnp.floating):
        raise DtypeError(
            f"gate {gate.name!r}: argument {name!r} has dtype {array.dtype} and shape "
            f"{array.shape}; the gate takes floating arrays there (float32, float64 or "
            f"bfloat16), the dtype of its derivative; cast it first, e.g. "
            f"{name}.astype(jnp.float32)")
    return array


def _number(gate: Gate, name: str, value: float, differentiable: bool) -> jax.Array:
    """A Python number as a weakly typed array: a float where a derivative is taken."""
    try:
        return jnp.asarray(float(value) if differentiable else value)
    except OverflowError:
        kind = "a float" if differentiable else "JAX's integer type"
        raise DtypeError(f"gate {gate.name!r}: argument {name!r} is {value}, which does not fit "
                         f"{kind}; it would overflow") from None


def _host_array(gate: Gate, name: str, value: Any) -> jax.Array:
    """A numpy value as a jax array, refusing integers that JAX's default dtype would wrap."""
    host = np.asarray(value)
    if host.dtype.kind in "iu" and host.size:
        target = np.dtype(jax.dtypes.canonicalize_dtype(host.dtype))
        limits = np.iinfo(target)
        low, high = host.min(), host.max()
        if low < limits.min or high > limits.max:
            raise DtypeError(
                f"gate {gate.name!r}: argument {name!r} holds {low if low < limits.min else high}"
                f", which does not fit {target} (JAX's integer type here; 64-bit integers need "
                f"jax.config.update('jax_enable_x64', True)); it would wrap around silently")
    return jnp.asarray(host)


def _as_static(gate: Gate, name: str, value: Any) -> Hashable:
    if isinstance(value, (list, tuple)):
        return tuple(_as_static(gate, name, v) for v in value)
    if is_tracer(value):
        raise DtypeError(f"gate {gate.name!r}: argument {name!r} must be a constant known "
                         f"before tracing (a Python number, string or tuple), got a traced "
                         f"array; mark it static in jax.jit or pass a Python value")
    if isinstance(value, (jax.Array, np.ndarray, np.generic)):
        if np.ndim(value) != 0:
            raise DtypeError(f"gate {gate.name!r}: argument {name!r} must be a constant "
                             f"number or tuple, got an array of shape {np.shape(value)}")
        value = value.item()
    try:
        hash(value)
    except TypeError:
        raise DtypeError(f"gate {gate.name!r}: argument {name!r} must be a hashable "
                         f"constant, got {type(value).__name__}") from None
    return value


def is_tracer(value: Any) -> bool:
    """Whether `value` is an abstract value being traced (its numbers are unknown)."""
    return isinstance(value, jax.core.Tracer)


@functools.lru_cache(maxsize=4096)
def _out_aval(gate: Gate, avals_key: tuple, static_items: tuple) -> Any:
    """The output type of the forward at these input types, or a ShapeError saying why not."""
    avals = jax.tree.unflatten(avals_key[1], avals_key[0])
    structs = [jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype,
                                                           weak_type=a.weak_type), a)
               for a in avals]
    try:
        out = jax.eval_shape(lambda *a: gate.forward(**arguments(gate, a, static_items)),
                             *structs)
    except (TypeError, ValueError, IndexError) as error:
        described = ", ".join(f"{n}: {_describe(a)}" for n, a in zip(gate.array_names, avals))
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ShapeError(f"gate {gate.name!r} cannot take {described}: {reason}") from None
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise RuleError(f"the forward of gate {gate.name!r} must return one array, got "
                        f"{jax.tree.structure(out)}")
    return jax.core.ShapedArray(out.shape, out.dtype, weak_type=out.weak_type)


# --- Batching: the gate mapped over a batch axis ----------------------------------------------

@functools.lru_cache(maxsize=256)
def _batched(gate: Gate, dims_key: tuple) -> Gate:
    """`gate` mapped over a batch axis: inputs batched at `dims`, output at axis 0."""
    leaves, treedef = dims_key
    in_dims = dict(zip(gate.array_names, jax.tree.unflatten(treedef, leaves)))
    array_dims = tuple(in_dims.values())
    tangent_dims = tuple(in_dims[n] for n in gate.input_names)

    def split(kwargs):
        return tuple(kwargs.pop(n) for n in gate.array_names), kwargs

    def forward(**kwargs):
        arrays, static = split(kwargs)
        per_example = lambda *a: gate.forward(**arguments(gate, a, tuple(static.items())))
        return jax.vmap(per_example, in_axes=array_dims)(*arrays)

    def backward(g, out, **kwargs):
        arrays, static = split(kwargs)
        per_example = lambda g, out, *a: tuple(
            gate.backward(g, out, **dict(zip(gate.array_names, a)), **static))
        cotangents = jax.vmap(per_example, in_axes=(0, 0, *array_dims))(g, out, *arrays)
        return tuple(jax.tree.map(_unbatch, ct, in_dims[n], is_leaf=lambda d: d is None)
                     for n, ct in zip(gate.input_names, cotangents))

    def tangent(*tangents, out, **kwargs):
        arrays, static = split(kwargs)
        per_example = lambda tangents, out, *a: gate.tangent(
            *tangents, out=out, **dict(zip(gate.array_names, a)), **static)
        return jax.vmap(per_example, in_axes=(tangent_dims, 0, *array_dims))(
            tangents, out, *arrays)

    forward.__signature__ = gate.signature
    return dataclasses.replace(gate, forward=forward, backward=backward, tangent=tangent,
                               check=None)


def _unbatch(cotangent: jax.Array, dim: int | None) -> jax.Array:
    """Moves a per-example cotangent's batch axis to `dim`, or sums it away for an unbatched
    input."""
    return cotangent.sum(0) if dim is None else jnp.moveaxis(cotangent, 0, dim)


# --- The primitive: one application of a gate, as JAX sees it ---------------------------------

_HiPrimitive = getattr(hijax, "HiPrim", None) or hijax.VJPHiPrimitive


class _GatePrimitive(_HiPrimitive):
    """One application of a gate to arguments of given types."""

    def __init__(self, gate: Gate, in_avals: tuple, out_aval: Any, static_items: tuple):
        self.in_avals = in_avals
        self.out_aval = out_aval
        self.params = {"gate": gate, "static_items": static_items}
        super().__init__()

    def _arguments(self, arrays: Iterable) -> dict:
        # Eager transformations hand over Python-scalar primals; rules may ask for .shape.
        return arguments(self.gate, jax.tree.map(jnp.asarray, tuple(arrays)), self.static_items)

    def expand(self, *arrays):
        return self.gate.forward(**self._arguments(arrays))

    def vjp_fwd(self, nonzeros, *arrays):
        self._refuse_nondiff_derivative(nonzeros)
        out = self(*arrays)
        return out, (out, arrays)

    def vjp_bwd_retval(self, residuals, g):
        out, arrays = residuals
        gate, kwargs = self.gate, self._arguments(arrays)
        by_name = cotangents_by_name(gate, gate.backward(hijax.instantiate_zeros(g), out, **kwargs))
        return tuple(
            fit(by_name[name], aval, f"the backward rule of gate {gate.name!r}", f"input {name!r}")
            if name in by_name else None
            for name, aval in zip(gate.array_names, self.in_avals))

    def jvp(self, primals, tangents):
        out = self(*primals)
        return out, self._tangent(out, primals, tangents)

    def lin(self, nonzeros, *arrays):
        self._refuse_nondiff_derivative(nonzeros)
        out = self(*arrays)
        return out, (out, arrays)

    def linearized(self, residuals, *tangents):
        out, arrays = residuals
        return self._tangent(out, arrays, tangents)

    def _refuse_nondiff_derivative(self, nonzeros: Iterable) -> None:
        """ArgumentError when a `nondiff` input is being differentiated: its derivative would
        be a silent zero, not the true one."""
        gate = self.gate
        for name, nonzero, aval in zip(gate.array_names, nonzeros, self.in_avals):
            if name in gate.nondiff and any(jax.tree.leaves(nonzero)) and any(
                    jnp.issubdtype(a.dtype, jnp.inexact) for a in jax.tree.leaves(aval)):
                raise ArgumentError(
                    f"gate {gate.name!r} has no derivative with respect to its input {name!r}, "
                    f"but a derivative is asked of it; if it is a constant, pass "
                    f"jax.lax.stop_gradient({name})")

    def _tangent(self, out, primals, tangents):
        gate = self.gate
        by_name = dict(zip(gate.array_names, tangents))
        self._refuse_nondiff_derivative([_nonzero(t) for t in tangents])
        input_tangents = [jax.tree.map(lambda t: jnp.asarray(hijax.instantiate_zeros(t)),
                                       by_name[name], is_leaf=lambda t: isinstance(t, hijax.Zero))
                          for name in gate.input_names]
        dout = gate.tangent(*input_tangents, out=out, **self._arguments(primals))
        return fit(dout, self.out_aval, f"the tangent rule of gate {gate.name!r}", "the output")

    def batch(self, axis_data, args, dims):
        if all(d is None for d in jax.tree.leaves(dims, is_leaf=lambda d: d is None)):
            return self(*args), None
        batched = _batched(self.gate, _hashable_tree(dims))
        return batched(**dict(zip(self.gate.array_names, args)), **dict(self.static_items)), 0


def _nonzero(tangent: Any) -> bool:
    """Whether a tangent (a pytree that may hold symbolic zeros) has a nonzero leaf."""
    is_zero = lambda t: isinstance(t, hijax.Zero)
    return not all(map(is_zero, jax.tree.leaves(tangent, is_leaf=is_zero)))


def _private_fast_path() -> Any:
    """On JAX 0.10: an ordinary primitive carrying hijax's rules, or None if names moved."""
    if not (0, 10) <= JAX_VERSION[:2] < (0, 11):
        return None
    try:
        from jax._src import hijax as rules
        from jax._src.interpreters import ad, batching, mlir, partial_eval, remat
        to_lojax, jvp = rules._call_hi_primitive_to_lojax, rules._call_hi_primitive_jvp
        linearize, batcher = rules._call_hi_primitive_linearize, rules._call_hi_primitive_batcher
        dce, rematerialize = rules._call_hi_primitive_dce, rules._call_hi_primitive_remat
        leaves = rules.tree_leaves_checked
    except (ImportError, AttributeError):
        return None
    primitive = jax.extend.core.Primitive("difprog_gate")
    primitive.multiple_results = True
    primitive.def_abstract_eval(lambda *args, _prim: _prim.out_avals_flat)
    primitive.def_impl(to_lojax)
    mlir.register_lowering(primitive, mlir.lower_fun(to_lojax, multiple_results=True))
    ad.primitive_jvps[primitive] = jvp
    ad.primitive_linearizations[primitive] = linearize
    batching.fancy_primitive_batchers[primitive] = batcher
    partial_eval.dce_rules[primitive] = dce
    remat.rules[primitive] = rematerialize

    def bind(self, *arrays):
        flat = leaves(self.in_tree, arrays)
        return jax.tree.unflatten(self.out_tree, primitive.bind(*flat, _prim=self))

    _GatePrimitive.__call__ = bind
    return primitive


_FAST_PRIMITIVE = _private_fast_path()


# --- Rule results: checked against the types they must have ----------------------------------

def cotangents_by_name(gate: Gate, cotangents: Any) -> dict:
    """A backward rule's result by input name, after checking it has one per input."""
    if not isinstance(cotangents, (tuple, list)) or len(cotangents) != len(gate.input_names):
        raise RuleError(f"the backward rule of gate {gate.name!r} must return a tuple of "
                        f"{len(gate.input_names)} cotangents, one for each of "
                        f"{gate.input_names}, got {_summary(cotangents)}")
    return dict(zip(gate.input_names, cotangents))


def fit(values: Any, avals: Any, rule: str, what: str) -> Any:
    """Checks a rule's result against the types it must have and casts it to their dtypes."""
    if jax.tree.structure(values) != jax.tree.structure(avals):
        raise RuleError(f"{rule} returned {_summary(values)} for {what}, which needs the "
                        f"structure of {_describe(avals)}")

    def fit_leaf(value, aval):
        if jnp.shape(value) != aval.shape:
            raise RuleError(
                f"{rule} returned shape {jnp.shape(value)} for {what}, which has shape "
                f"{aval.shape}; sum a broadcast cotangent back with difprog.gates.unbroadcast")
        return jnp.asarray(value, dtype=aval.dtype)

    return jax.tree.map(fit_leaf, values, avals)


# --- Gates inside traced programs, for difprog.explain -----------------------------------------

class GateCall:
    """One application of a gate in a traced program (a jaxpr equation), as plain functions.

    `gate_call(eqn.primitive, eqn.params)` finds it; `difprog.explain` uses it to run each gate's
    own rules on the flat list of arrays the equation reads.
    """

    def __init__(self, gate: Gate, static: dict, in_tree: Any = None):
        self.gate, self.static = gate, dict(static)
        # An array input given in `static` is a constant of the equation (x ** 3's exponent).
        self.flat_names = tuple(n for n in gate.array_names if n not in self.static)
        self.in_tree = in_tree or jax.tree.structure(self.flat_names)

    def arguments(self, flat: Iterable) -> dict:
        """The gate's arguments by name, from the equation's flat inputs."""
        arrays = jax.tree.unflatten(self.in_tree, [jnp.asarray(x) for x in flat])
        return {**dict(zip(self.flat_names, arrays)), **self.static}

    def __call__(self, *flat) -> jax.Array:
        """The gate applied: under autodiff its hand-written rules run."""
        return self.gate(**self.arguments(flat))

    def reference(self, *flat) -> jax.Array:
        """The gate's plain jax.numpy forward, with no rules attached."""
        return self.gate.forward(**self.arguments(flat))

    def backward(self, g: jax.Array, out: jax.Array, *flat) -> list:
        """The hand-written backward rule, one cotangent per flat input (None where there is
        none)."""
        gate, kwargs = self.gate, self.arguments(flat)
        by_name = cotangents_by_name(gate, gate.backward(g, out, **kwargs))
        result = []
        for name in self.flat_names:
            avals = jax.tree.map(jax.typeof, kwargs[name])
            if name in by_name:
                result += jax.tree.leaves(fit(by_name[name], avals, f"the backward rule of gate "
                                              f"{gate.name!r}", f"input {name!r}"))
            else:
                result += [None] * len(jax.tree.leaves(avals))
        return result


def gate_call(primitive: Any, params: dict) -> GateCall | None:
    """The gate a traced equation applies, or None when it applies no gate."""
    prim = params.get("_prim")
    if not isinstance(prim, _GatePrimitive):
        return None
    return GateCall(prim.gate, dict(prim.static_items), prim.in_tree)


# --- Traced programs, for difprog.graph: what differs between JAX versions --------------------

def scan_counts(params: dict) -> tuple[int, int]:
    """(number of constants, number of carries) of a lax.scan equation's params, on any JAX."""
    if "num_consts" in params:
        return params["num_consts"], params["num_carry"]
    consts, carry, _ = params["ft_in"].unpack()  # JAX >= 0.11: a flat tree (consts, carry, xs)
    return len(list(consts)), len(list(carry))


def open_jaxpr(body: Any) -> tuple[Any, list]:
    """(jaxpr, consts) of a traced body, closed or not, on any JAX.

    Up to JAX 0.10 a closed body is a ClosedJaxpr wrapping a Jaxpr; from 0.12 (jax.extend.core's
    ClosedJaxpr is an alias of Jaxpr) a Jaxpr carries its own consts.
    """
    if isinstance(body, jax.extend.core.Jaxpr):
        return body, list(getattr(body, "consts", ()))
    return body.jaxpr, list(body.consts)


def bind_equation(primitive: Any, params: dict, *inputs: Any) -> Any:
    """Applies a traced equation's primitive to new inputs (JAX's own rules run under autodiff)."""
    return primitive.bind(*inputs, **primitive.get_bind_params(params))


# --- Small helpers --------------------------------------------------------------------------------

def _hashable_tree(tree: Any) -> tuple:
    leaves, treedef = jax.tree.flatten(tree, is_leaf=lambda d: d is None)
    return tuple(leaves), treedef


def _describe(aval: Any) -> str:
    if isinstance(aval, jax.core.ShapedArray):
        return f"{aval.dtype}{list(aval.shape)}"
    return jax.tree.map(_describe, aval)


def _summary(values: Any) -> str:
    return str(jax.tree.map(lambda v: f"{getattr(v, 'dtype', type(v).__name__)}"
                                      f"{list(jnp.shape(v))}", values))
