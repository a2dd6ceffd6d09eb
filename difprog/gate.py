"""Gates: differentiable operations that carry their own backward (VJP) and tangent (JVP) rules.

A gate is three plain functions over the same arguments:

    forward(x, y, **static)               -> out        # plain jax.numpy: the reference
    backward(g, out, x, y, **static)      -> (gx, gy)   # one cotangent per differentiable input
    tangent(dx, dy, out, x, y, **static)  -> dout       # the output tangent

The backward rule gets the upstream cotangent `g` and the residuals the forward saved (its
output and its inputs) and returns the downstream cotangents; the tangent rule gets one input
tangent per differentiable input (zeros where an input is held constant) and returns the output
tangent. Under jax.grad, jax.vjp and jax.jacrev the backward rule runs; under jax.jvp,
jax.jacfwd and jax.linearize the tangent rule runs; JAX never differentiates `forward` in their
place. Both survive jax.jit, jax.vmap and nesting (jax.hessian, grad of grad).

Which arguments are which comes from the forward's signature: parameters without a default are
differentiable array inputs, parameters with a default (axis, eps, stride...) are static
constants, and `nondiff` names array inputs that get no derivative (integer labels, say).

This is the only module of difprog that talks to JAX's custom-rule machinery
(`jax.experimental.hijax.VJPHiPrimitive` and the hijax rules in `jax._src`, tested with JAX
0.10.2); a JAX upgrade should touch no other file.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
from jax._src import hijax as hijax_rules
from jax._src.interpreters import ad, batching, mlir, partial_eval, remat
from jax.experimental import hijax

from difprog.errors import DtypeError, RuleError, ShapeError

__all__ = ["Gate", "GateCall", "gate", "gate_call"]

Backward = Callable[..., tuple]
Tangent = Callable[..., Any]


class Gate:
    """A differentiable operation with hand-written backward and tangent rules.

    Call it like the jax.numpy function it stands for. Build one with `difprog.gate`.

    Attributes:
        name: the gate's name, used in error messages and reports.
        forward: the computation in plain jax.numpy, the reference JAX's autodiff can check.
        backward: the hand-written VJP rule, `backward(g, out, *args) -> tuple of cotangents`.
        tangent: the hand-written JVP rule, `tangent(*input_tangents, out, *args) -> tangent`.
    """

    def __init__(
        self,
        forward: Callable,
        backward: Backward,
        tangent: Tangent,
        *,
        name: str | None = None,
        nondiff: Iterable[str] = (),
        static: Iterable[str] = (),
        pytree_inputs: bool = False,
        check: Callable | None = None,
    ):
        self.forward = forward
        self.backward = backward
        self.tangent = tangent
        self.name = name or forward.__name__.lstrip("_")
        self.nondiff = tuple(nondiff)
        self.static = tuple(static)
        self.pytree_inputs = pytree_inputs
        self.check = check
        self.__doc__ = forward.__doc__
        self.signature = inspect.signature(forward)
        params = self.signature.parameters.values()
        self.static_names = tuple(
            p.name for p in params if p.default is not p.empty or p.name in self.static
        )
        self.array_names = tuple(p.name for p in params if p.name not in self.static_names)
        self.input_names = tuple(n for n in self.array_names if n not in self.nondiff)
        unknown = set(self.nondiff) - set(self.array_names)
        if unknown:
            raise ValueError(f"gate {self.name!r}: nondiff names {sorted(unknown)} are not "
                             f"array parameters of its forward {self.signature}")

    def __call__(self, *args: Any, **kwargs: Any) -> jax.Array:
        arrays, static = self._bind(args, kwargs)
        if self.check is not None:
            self.check(**arrays, **static)
        avals = tuple(jax.tree.map(jax.typeof, a) for a in arrays.values())
        static_items = tuple(static.items())
        out_aval = self._out_aval(_hashable_tree(avals), static_items)
        return _GatePrimitive(self, avals, out_aval, static_items)(*arrays.values())

    def with_rules(self, backward: Backward | None = None, tangent: Tangent | None = None) -> Gate:
        """A copy of this gate that uses the rules given in place of its own."""
        return Gate(
            self.forward,
            backward or self.backward,
            tangent or self.tangent,
            name=self.name,
            nondiff=self.nondiff,
            static=self.static,
            pytree_inputs=self.pytree_inputs,
            check=self.check,
        )

    def __repr__(self) -> str:
        return f"<gate {self.name}{self.signature}>"

    def _bind(self, args: tuple, kwargs: dict) -> tuple[dict, dict]:
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as error:
            raise DtypeError(f"gate {self.name!r}: {error}; its signature is "
                             f"{self.name}{self.signature}") from None
        bound.apply_defaults()
        arrays, static = {}, {}
        for name, value in bound.arguments.items():
            if name in self.static_names:
                static[name] = self._as_static(name, value)
            else:
                arrays[name] = self._as_array(name, value)
        return arrays, static

    def _as_array(self, name: str, value: Any) -> Any:
        differentiable = name not in self.nondiff
        if differentiable and self.pytree_inputs:
            return jax.tree.map(lambda leaf: self._as_leaf(name, leaf, differentiable), value)
        return self._as_leaf(name, value, differentiable)

    def _as_leaf(self, name: str, value: Any, differentiable: bool) -> jax.Array:
        if isinstance(value, bool) or not isinstance(value, (jax.Array, np.ndarray, np.generic,
                                                             int, float)):
            raise DtypeError(f"gate {self.name!r}: argument {name!r} must be an array or a "
                             f"number, got {type(value).__name__}")
        if isinstance(value, (int, float)):
            value = float(value) if differentiable else value
        array = value if isinstance(value, jax.Array) else jnp.asarray(value)
        if differentiable and not jnp.issubdtype(array.dtype, jnp.floating):
            raise DtypeError(
                f"gate {self.name!r}: argument {name!r} has dtype {array.dtype} and shape "
                f"{array.shape}, but a derivative needs a floating dtype (float32, float64 or "
                f"bfloat16); cast it first, e.g. {name}.astype(jnp.float32)")
        return array

    def _as_static(self, name: str, value: Any) -> Hashable:
        if isinstance(value, (list, tuple)):
            return tuple(self._as_static(name, v) for v in value)
        if isinstance(value, jax.core.Tracer):
            raise DtypeError(f"gate {self.name!r}: argument {name!r} must be a constant known "
                             f"before tracing (a Python number, string or tuple), got a traced "
                             f"array; mark it static in jax.jit or pass a Python value")
        if isinstance(value, (jax.Array, np.ndarray, np.generic)):
            if np.ndim(value) != 0:
                raise DtypeError(f"gate {self.name!r}: argument {name!r} must be a constant "
                                 f"number or tuple, got an array of shape {np.shape(value)}")
            value = value.item()
        try:
            hash(value)
        except TypeError:
            raise DtypeError(f"gate {self.name!r}: argument {name!r} must be a hashable "
                             f"constant, got {type(value).__name__}") from None
        return value

    @functools.lru_cache(maxsize=4096)
    def _out_aval(self, avals_key: tuple, static_items: tuple) -> Any:
        avals = jax.tree.unflatten(avals_key[1], avals_key[0])
        structs = [jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype,
                                                               weak_type=a.weak_type), a)
                   for a in avals]
        try:
            out = jax.eval_shape(lambda *a: self._forward(a, static_items), *structs)
        except (TypeError, ValueError) as error:
            described = ", ".join(f"{n}: {_describe(a)}" for n, a in zip(self.array_names, avals))
            reason = str(error).strip().splitlines()[0]
            raise ShapeError(f"gate {self.name!r} cannot take {described}: {reason}") from None
        return jax.core.ShapedArray(out.shape, out.dtype, weak_type=out.weak_type)

    @functools.lru_cache(maxsize=256)
    def _batched(self, dims_key: tuple) -> Gate:
        """This gate mapped over a batch axis: inputs batched at `dims`, output at axis 0."""
        leaves, treedef = dims_key
        in_dims = dict(zip(self.array_names, jax.tree.unflatten(treedef, leaves)))
        array_dims = tuple(in_dims.values())
        tangent_dims = tuple(in_dims[n] for n in self.input_names)

        def split(arguments):
            arrays = tuple(arguments.pop(n) for n in self.array_names)
            return arrays, arguments

        def forward(**arguments):
            arrays, static = split(arguments)
            per_example = lambda *a: self._forward(a, tuple(static.items()))
            return jax.vmap(per_example, in_axes=array_dims)(*arrays)

        def backward(g, out, **arguments):
            arrays, static = split(arguments)
            per_example = lambda g, out, *a: tuple(
                self.backward(g, out, **dict(zip(self.array_names, a)), **static))
            cotangents = jax.vmap(per_example, in_axes=(0, 0, *array_dims))(g, out, *arrays)
            return tuple(jax.tree.map(_unbatch, ct, in_dims[n], is_leaf=lambda d: d is None)
                         for n, ct in zip(self.input_names, cotangents))

        def tangent(*tangents, out, **arguments):
            arrays, static = split(arguments)
            per_example = lambda tangents, out, *a: self.tangent(
                *tangents, out=out, **dict(zip(self.array_names, a)), **static)
            return jax.vmap(per_example, in_axes=(tangent_dims, 0, *array_dims))(
                tangents, out, *arrays)

        forward.__signature__ = self.signature
        return Gate(forward, backward, tangent, name=self.name, nondiff=self.nondiff,
                    static=self.static, pytree_inputs=self.pytree_inputs)

    def _arguments(self, arrays: Iterable, static_items: tuple) -> dict:
        return {**dict(zip(self.array_names, arrays)), **dict(static_items)}

    def _forward(self, arrays: Iterable, static_items: tuple) -> jax.Array:
        return self.forward(**self._arguments(arrays, static_items))


def _unbatch(cotangent: jax.Array, dim: int | None) -> jax.Array:
    """Moves a per-example cotangent's batch axis to `dim`, or sums it away for an unbatched input."""
    return cotangent.sum(0) if dim is None else jnp.moveaxis(cotangent, 0, dim)


def _describe(aval: Any) -> str:
    if isinstance(aval, jax.core.ShapedArray):
        return f"{aval.dtype}{list(aval.shape)}"
    return jax.tree.map(_describe, aval)


def gate(
    forward: Callable,
    *,
    backward: Backward,
    tangent: Tangent,
    name: str | None = None,
    nondiff: Iterable[str] = (),
    static: Iterable[str] = (),
    pytree_inputs: bool = False,
    check: Callable | None = None,
) -> Gate:
    """Defines a gate from its forward computation and its two hand-written rules.

    Args:
        forward: the computation in plain jax.numpy, `forward(x, y, *, k=default) -> out`.
        backward: `backward(g, out, x, y, *, k) -> (gx, gy)`: the cotangent of each
            differentiable input, in its shape, given the upstream cotangent `g`.
        tangent: `tangent(dx, dy, out, x, y, *, k) -> dout`: the output tangent given one
            tangent per differentiable input.
        name: defaults to the forward's name.
        nondiff: array parameters that get no derivative (such as integer labels).
        static: parameters without a default that are constants rather than arrays.
        pytree_inputs: whether differentiable inputs may be pytrees of arrays.
        check: optional `check(x, y, *, k)` that raises `difprog.ShapeError` for bad shapes.

    Returns:
        The gate, callable like `forward`.

    Example:
        >>> import jax, jax.numpy as jnp, difprog
        >>> cube = difprog.gate(
        ...     lambda x: x ** 3,
        ...     backward=lambda g, out, x: (3 * x ** 2 * g,),
        ...     tangent=lambda dx, out, x: 3 * x ** 2 * dx,
        ...     name="cube")
        >>> float(jax.grad(cube)(2.0))
        12.0
    """
    return Gate(forward, backward, tangent, name=name, nondiff=nondiff, static=static,
                pytree_inputs=pytree_inputs, check=check)


class GateCall:
    """One application of a gate in a traced program (a jaxpr equation), as plain functions.

    `gate_call(eqn.primitive, eqn.params)` finds it; `difprog.explain` uses it to run each gate's
    own rules on the flat list of arrays the equation reads.
    """

    def __init__(self, gate: Gate, static: dict, in_tree: Any = None):
        self.gate, self.static = gate, dict(static)
        self.in_tree = in_tree or jax.tree.structure(tuple(gate.array_names))

    def arguments(self, flat: Iterable) -> dict:
        """The gate's arguments by name, from the equation's flat inputs."""
        arrays = jax.tree.unflatten(self.in_tree, [jnp.asarray(x) for x in flat])
        return self.gate._arguments(arrays, tuple(self.static.items()))

    def __call__(self, *flat) -> jax.Array:
        """The gate applied: under autodiff its hand-written rules run."""
        return self.gate(**self.arguments(flat))

    def reference(self, *flat) -> jax.Array:
        """The gate's plain jax.numpy forward, with no rules attached."""
        return self.gate.forward(**self.arguments(flat))

    def backward(self, g: jax.Array, out: jax.Array, *flat) -> list:
        """The hand-written backward rule, one cotangent per flat input (None where there is none)."""
        gate, arguments = self.gate, self.arguments(flat)
        by_name = _cotangents_by_name(gate, gate.backward(g, out, **arguments))
        result = []
        for name in gate.array_names:
            avals = jax.tree.map(jax.typeof, arguments[name])
            if name in by_name:
                result += jax.tree.leaves(_fit(by_name[name], avals, f"the backward rule of gate "
                                               f"{gate.name!r}", f"input {name!r}"))
            else:
                result += [None] * len(jax.tree.leaves(avals))
        return result


def gate_call(primitive: Any, params: dict) -> GateCall | None:
    """The gate a traced equation applies, or None when it applies no gate."""
    if primitive is not _gate_p:
        return None
    prim = params["_prim"]
    return GateCall(prim.gate, dict(prim.static_items), prim.in_tree)


# hijax binds every VJPHiPrimitive through one "high" primitive that jax.jit must lower anew on
# every call (JAX 0.10.2 keeps no fast path for high programs: ~1 ms a step). Gates bind this
# ordinary primitive instead: the same hijax rules for jvp, linearize, transpose, vmap, DCE and
# remat, plus a direct XLA lowering of the forward, so jitted programs of gates stay cached.
_gate_p = jax.extend.core.Primitive("difprog_gate")
_gate_p.multiple_results = True
_gate_p.def_abstract_eval(lambda *args, _prim: _prim.out_avals_flat)
_gate_p.def_impl(hijax_rules._call_hi_primitive_to_lojax)
mlir.register_lowering(_gate_p, mlir.lower_fun(hijax_rules._call_hi_primitive_to_lojax,
                                                multiple_results=True))
ad.primitive_jvps[_gate_p] = hijax_rules._call_hi_primitive_jvp
ad.primitive_linearizations[_gate_p] = hijax_rules._call_hi_primitive_linearize
batching.fancy_primitive_batchers[_gate_p] = hijax_rules._call_hi_primitive_batcher
partial_eval.dce_rules[_gate_p] = hijax_rules._call_hi_primitive_dce
remat.rules[_gate_p] = hijax_rules._call_hi_primitive_remat


class _GatePrimitive(hijax.VJPHiPrimitive):
    """One application of a gate to arguments of given types, as JAX sees it."""

    def __init__(self, gate: Gate, in_avals: tuple, out_aval: Any, static_items: tuple):
        self.in_avals = in_avals
        self.out_aval = out_aval
        self.params = dict(gate=gate, static_items=static_items)
        super().__init__()

    def __call__(self, *arrays):
        flat = hijax_rules.tree_leaves_checked(self.in_tree, arrays)
        return jax.tree.unflatten(self.out_tree, _gate_p.bind(*flat, _prim=self))

    def _arguments(self, arrays: Iterable) -> dict:
        # Eager transformations hand over Python-scalar primals; rules may ask for .shape.
        return self.gate._arguments(jax.tree.map(jnp.asarray, tuple(arrays)), self.static_items)

    def expand(self, *arrays):
        return self.gate._forward(arrays, self.static_items)

    def vjp_fwd(self, nonzeros, *arrays):
        out = self(*arrays)
        return out, (out, arrays)

    def vjp_bwd_retval(self, residuals, g):
        out, arrays = residuals
        gate, arguments = self.gate, self._arguments(arrays)
        by_name = _cotangents_by_name(
            gate, gate.backward(hijax.instantiate_zeros(g), out, **arguments))
        return tuple(
            _fit(by_name[name], aval, f"the backward rule of gate {gate.name!r}", f"input {name!r}")
            if name in by_name else None
            for name, aval in zip(gate.array_names, self.in_avals))

    def jvp(self, primals, tangents):
        out = self(*primals)
        return out, self._tangent(out, primals, tangents)

    def lin(self, nonzeros, *arrays):
        out = self(*arrays)
        return out, (out, arrays)

    def linearized(self, residuals, *tangents):
        out, arrays = residuals
        return self._tangent(out, arrays, tangents)

    def _tangent(self, out, primals, tangents):
        gate = self.gate
        by_name = dict(zip(gate.array_names, tangents))
        input_tangents = [jax.tree.map(hijax.instantiate_zeros, by_name[name],
                                       is_leaf=lambda t: isinstance(t, hijax.Zero))
                          for name in gate.input_names]
        dout = gate.tangent(*input_tangents, out=out, **self._arguments(primals))
        return _fit(dout, self.out_aval, f"the tangent rule of gate {gate.name!r}", "the output")

    def batch(self, axis_data, args, dims):
        if all(d is None for d in jax.tree.leaves(dims, is_leaf=lambda d: d is None)):
            return self(*args), None
        batched = self.gate._batched(_hashable_tree(dims))
        return batched(*args, **dict(self.static_items)), 0


def _cotangents_by_name(gate: Gate, cotangents: Any) -> dict:
    """A backward rule's result by input name, after checking it has one per input."""
    if not isinstance(cotangents, (tuple, list)) or len(cotangents) != len(gate.input_names):
        raise RuleError(f"the backward rule of gate {gate.name!r} must return a tuple of "
                        f"{len(gate.input_names)} cotangents, one for each of "
                        f"{gate.input_names}, got {_summary(cotangents)}")
    return dict(zip(gate.input_names, cotangents))


def _hashable_tree(tree: Any) -> tuple:
    leaves, treedef = jax.tree.flatten(tree, is_leaf=lambda d: d is None)
    return tuple(leaves), treedef


def _fit(values: Any, avals: Any, rule: str, what: str) -> Any:
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


def _summary(values: Any) -> str:
    return str(jax.tree.map(lambda v: f"{getattr(v, 'dtype', type(v).__name__)}"
                                      f"{list(jnp.shape(v))}", values))
