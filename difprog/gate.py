"""Gates: differentiable operations that carry their own backward (VJP) and tangent (JVP) rules.

A gate is a record of three plain functions over the same arguments:

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
constants, and `nondiff` names array inputs that get no derivative (integer labels, say); a
`nondiff` parameter with the default None is an optional array (a mask), None when left out.

Four builders make gates, so that each derivative is written once, by hand; all take the same
options (name, nondiff, static, check, and pytree_inputs where the rules allow pytrees):

- `gate(forward, backward=..., tangent=...)`: both rules written out;
- `elementwise(forward, derivative)`: the local derivative d out / d input of an elementwise
  operation; backward = g * derivative (summed back over broadcast axes), tangent = sum of
  dx * derivative;
- `linear(forward, backward)`: a linear operation's tangent is the forward applied to the
  tangents, so only the backward is written;
- `bilinear(forward, backward)`: an operation linear in each input on its own (matmul, a
  convolution) has the tangent f(dx, w) + f(x, dw), so only the backward is written.

This module is the record and its builders; binding arguments, checking them and telling JAX
about a gate is `difprog.adapter`'s job.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from difprog import adapter
from difprog.errors import ArgumentError

__all__ = ["Gate", "bilinear", "elementwise", "gate", "linear"]

Backward = Callable[..., tuple]
Tangent = Callable[..., Any]


@dataclasses.dataclass(frozen=True, eq=False)
class Gate:
    """A differentiable operation with hand-written backward and tangent rules.

    Call it like the jax.numpy function it stands for. Build one with `difprog.gate`,
    `difprog.gate.elementwise`, `difprog.gate.linear` or `difprog.gate.bilinear`.

    Attributes:
        forward: the computation in plain jax.numpy, the reference JAX's autodiff can check.
        backward: the hand-written VJP rule, `backward(g, out, *args) -> tuple of cotangents`.
        tangent: the hand-written JVP rule, `tangent(*input_tangents, out, *args) -> tangent`.
        name: the gate's name, used in error messages and reports.
        nondiff: array parameters that get no derivative (such as integer labels); one with
            the default None is optional (a mask, class weights) and reaches the rules as None
            when left out.
        static: parameters without a default that are constants rather than arrays.
        pytree_inputs: whether differentiable inputs may be pytrees of arrays.
        check: optional `check(x, y, *, k)` run on the bound arguments; raises difprog errors.
    """

    forward: Callable
    backward: Backward
    tangent: Tangent
    name: str = ""
    nondiff: tuple[str, ...] = ()
    static: tuple[str, ...] = ()
    pytree_inputs: bool = False
    check: Callable | None = None

    def __post_init__(self):
        setattr_ = functools.partial(object.__setattr__, self)
        setattr_("name", self.name or self.forward.__name__.lstrip("_"))
        setattr_("nondiff", tuple(self.nondiff))
        setattr_("static", tuple(self.static))
        setattr_("__doc__", self.forward.__doc__)
        parameters = self.signature.parameters
        unknown = [n for n in self.nondiff if n not in parameters or n in self.static
                   or parameters[n].default not in (parameters[n].empty, None)]
        if unknown:
            raise ArgumentError(f"gate {self.name!r}: nondiff names {sorted(unknown)}, which "
                                f"are not array parameters of its forward {self.signature} "
                                f"(an optional one has the default None)")

    @functools.cached_property
    def signature(self) -> inspect.Signature:
        """The forward's signature, which the gate is called with."""
        return inspect.signature(self.forward)

    @functools.cached_property
    def static_names(self) -> tuple[str, ...]:
        """Constant parameters: those with a default (unless named in `nondiff`), and those
        named in `static`."""
        return tuple(p.name for p in self.signature.parameters.values()
                     if (p.default is not p.empty and p.name not in self.nondiff)
                     or p.name in self.static)

    @functools.cached_property
    def optional_names(self) -> tuple[str, ...]:
        """Array parameters that may be left out: `nondiff` ones with the default None."""
        return tuple(n for n in self.nondiff if self.signature.parameters[n].default is None)

    @functools.cached_property
    def array_names(self) -> tuple[str, ...]:
        """Array parameters, differentiable or not, in the forward's order."""
        return tuple(n for n in self.signature.parameters if n not in self.static_names)

    @functools.cached_property
    def input_names(self) -> tuple[str, ...]:
        """Differentiable array parameters: one cotangent and one tangent each."""
        return tuple(n for n in self.array_names if n not in self.nondiff)

    def __call__(self, *args: Any, **kwargs: Any) -> jax.Array:
        return adapter.apply(self, args, kwargs)

    def with_rules(self, backward: Backward | None = None, tangent: Tangent | None = None) -> Gate:
        """A copy of this gate that uses the rules given in place of its own."""
        return dataclasses.replace(self, backward=backward or self.backward,
                                   tangent=tangent or self.tangent)

    def __repr__(self) -> str:
        return f"<gate {self.name}{self.signature}>"


def gate(
    forward: Callable,
    *,
    backward: Backward,
    tangent: Tangent,
    name: str | None = None,
    nondiff: tuple[str, ...] = (),
    static: tuple[str, ...] = (),
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
        nondiff: array parameters that get no derivative (such as integer labels); one with
            the default None is optional and reaches forward and rules as None when left out.
        static: parameters without a default that are constants rather than arrays.
        pytree_inputs: whether differentiable inputs may be pytrees of arrays.
        check: optional `check(x, y, *, k)` that raises difprog errors for bad arguments.

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
    return Gate(forward, backward, tangent, name=name or "", nondiff=nondiff, static=static,
                pytree_inputs=pytree_inputs, check=check)


def elementwise(forward: Callable, derivative: Callable, *, name: str | None = None,
                nondiff: tuple[str, ...] = (), static: tuple[str, ...] = (),
                check: Callable | None = None) -> Gate:
    """A gate from an elementwise forward and its hand-written local derivative.

    `derivative(out, x, y, **static)` gives d out / d x (and d out / d y: a tuple with one
    entry per differentiable input when there are several), elementwise and broadcastable
    against `out`; it gets every argument, `nondiff` ones included. The backward rule multiplies
    the upstream gradient by each entry and sums broadcast axes back (the copy gate adds); the
    tangent rule is the sum of each input tangent times its entry. The options are `gate`'s.

    Example:
        >>> cube = elementwise(lambda x: x ** 3, lambda out, x: 3 * x ** 2, name="cube")
    """
    def backward(g, out, *args, **kwargs):
        arguments = _bound(made, args, kwargs)
        inputs = [arguments[n] for n in made.input_names]
        return tuple(unbroadcast(g * d, x.shape)
                     for d, x in zip(_partials(derivative, out, arguments), inputs))

    def tangent(*args, **kwargs):
        tangents, out, arguments = _tangent_arguments(made, args, kwargs)
        terms = [t * d for t, d in zip(tangents, _partials(derivative, out, arguments))]
        return jnp.broadcast_to(functools.reduce(lambda a, b: a + b, terms), out.shape)

    made = gate(forward, backward=_named(backward, forward, "backward", "g * d out / d input"),
                tangent=_named(tangent, forward, "tangent", "sum of d input * d out / d input"),
                name=name, nondiff=nondiff, static=static, check=check)
    return made


def _bound(made: Gate, args: tuple, kwargs: dict) -> dict:
    """A built rule's forward arguments by name, defaults filled in."""
    bound = made.signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def _tangent_arguments(made: Gate, args: tuple, kwargs: dict) -> tuple[tuple, Any, dict]:
    """A built tangent rule's (input tangents, out, forward arguments by name)."""
    n = len(made.input_names)
    tangents, rest = args[:n], args[n:]
    if "out" in kwargs:
        out = kwargs.pop("out")
    else:
        out, rest = rest[0], rest[1:]
    return tangents, out, _bound(made, rest, kwargs)


def _partials(derivative: Callable, out: Any, arguments: dict) -> tuple:
    partials = derivative(out, **arguments)
    return partials if isinstance(partials, tuple) else (partials,)


def linear(forward: Callable, backward: Backward, *, name: str | None = None,
           nondiff: tuple[str, ...] = (), static: tuple[str, ...] = (),
           pytree_inputs: bool = False, check: Callable | None = None) -> Gate:
    """A gate that is linear in its differentiable inputs: its tangent is the forward applied to
    the tangents (`nondiff` inputs and constants as they are).

    Only the backward rule (the transpose) is written by hand. The options are `gate`'s.

    Example:
        >>> twice = linear(lambda x: 2 * x, lambda g, out, x: (2 * g,), name="twice")
    """
    def tangent(*args, **kwargs):
        tangents, _, arguments = _tangent_arguments(made, args, kwargs)
        return forward(**{**arguments, **dict(zip(made.input_names, tangents))})

    made = gate(forward, backward=backward,
                tangent=_named(tangent, forward, "tangent", "the forward applied to the tangents"),
                name=name, nondiff=nondiff, static=static, pytree_inputs=pytree_inputs,
                check=check)
    return made


def bilinear(forward: Callable, backward: Backward, *, name: str | None = None,
             nondiff: tuple[str, ...] = (), static: tuple[str, ...] = (),
             pytree_inputs: bool = False, check: Callable | None = None) -> Gate:
    """A gate that is linear in each differentiable input on its own (matmul, a convolution):
    its tangent is derived from the forward once, d f(x, w) = f(dx, w) + f(x, dw), the forward
    applied with one input replaced by its tangent, summed over the inputs.

    Only the backward rule is written by hand. The options are `gate`'s.

    Example:
        >>> dot = bilinear(lambda x, w: x @ w, lambda g, out, x, w: (g * w, g * x), name="dot")
    """
    def tangent(*args, **kwargs):
        tangents, _, arguments = _tangent_arguments(made, args, kwargs)
        terms = [forward(**{**arguments, input_name: t})
                 for input_name, t in zip(made.input_names, tangents)]
        return functools.reduce(lambda a, b: a + b, terms)

    made = gate(forward, backward=backward,
                tangent=_named(tangent, forward, "tangent",
                               "the sum over inputs of the forward with that input's tangent"),
                name=name, nondiff=nondiff, static=static, pytree_inputs=pytree_inputs,
                check=check)
    return made


def _named(rule: Callable, forward: Callable, kind: str, math: str) -> Callable:
    """Gives a built rule the name and docstring of the gate it belongs to."""
    rule.__name__ = rule.__qualname__ = f"{forward.__name__}_{kind}"
    rule.__doc__ = f"{kind} of {forward.__name__.lstrip('_')}: {math}"
    return rule


def unbroadcast(g: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Sums a cotangent over the axes that broadcasting added, back to `shape` (the copy gate
    adds)."""
    if g.shape == tuple(shape):
        return g
    extra = g.ndim - len(shape)
    stretched = tuple(extra + i for i, n in enumerate(shape) if n == 1 and g.shape[extra + i] != 1)
    return jnp.sum(g, axis=tuple(range(extra)) + stretched).reshape(shape)
