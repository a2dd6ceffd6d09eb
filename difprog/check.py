"""Proof that a gate's hand-written rules are right, in float64.

`check_gate` runs the gate under JAX's transformations (so its own rules run) and compares with
JAX's autodiff of the gate's plain-jax.numpy `forward` and with central finite differences:

- reverse:  the backward rule's cotangents against jax.vjp of forward;
- forward:  the tangent rule's output tangent against jax.jvp of forward;
- finite difference: (f(x + h v) - f(x - h v)) / 2h against the tangent rule's f'(x) v, and
  <g, that> against the backward rule's <f'(x)^T g, v> (the dot-product test);
- second order: the Hessian-vector product of <g, f(x)> by forward-over-reverse and by
  reverse-over-reverse through the gate, against forward-over-reverse of forward.

Each error is a relative error, |a - b| / (|b| + atol), in the 2-norm over every leaf.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from difprog import inline
from difprog.gate import Gate

__all__ = ["Check", "CheckReport", "Tolerances", "check_gate"]


@dataclasses.dataclass(frozen=True)
class Tolerances:
    """Relative tolerances of each check; the defaults catch a rule wrong by 0.05%."""

    reverse: float = 1e-8
    forward: float = 1e-8
    finite_difference: float = 1e-5
    second_order: float = 1e-7
    atol: float = 1e-12


@dataclasses.dataclass(frozen=True)
class Check:
    """One comparison: its name, the relative error found and the tolerance it must meet."""

    name: str
    error: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return bool(self.error <= self.tolerance)


@dataclasses.dataclass(frozen=True)
class CheckReport:
    """The checks of one gate at one point. `ok` is whether every check passed.

    Example:
        >>> import jax.numpy as jnp, difprog
        >>> difprog.check_gate(difprog.gates.tanh, jnp.linspace(-2, 2, 5)).ok
        True
    """

    gate: str
    shapes: str
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def errors(self) -> dict[str, float]:
        return {c.name: c.error for c in self.checks}

    @property
    def reverse_error(self) -> float:
        return self.errors["reverse"]

    @property
    def forward_error(self) -> float:
        return self.errors["forward"]

    @property
    def finite_difference_error(self) -> float:
        return self.errors["finite difference"]

    @property
    def second_order_error(self) -> float:
        return self.errors["second order"]

    _repr_html_ = inline.text  # in a notebook: the table above

    def __str__(self) -> str:
        lines = [f"check_gate({self.gate}) at {self.shapes}: {'ok' if self.ok else 'FAILED'}",
                 f"  {'check':<18} {'error':>10} {'tolerance':>10}  ok"]
        lines += [f"  {c.name:<18} {c.error:>10.2e} {c.tolerance:>10.0e}  {'yes' if c.ok else 'NO'}"
                  for c in self.checks]
        return "\n".join(lines)


def check_gate(gate: Gate, *args: Any, seed: int = 0, step: float = 1e-6,
               tolerances: Tolerances | None = None, **kwargs: Any) -> CheckReport:
    """Checks a gate's backward and tangent rules at `gate(*args, **kwargs)`, in float64.

    Args:
        gate: the gate to check.
        *args, **kwargs: the arguments to call it with; floating inputs are cast to float64.
            An input given as a Python number is held constant (`check_gate(power, x, 2)`
            checks d/dx only); pass an array, `jnp.asarray(2.0)`, to check its derivative too.
            Choose points away from kinks (relu at 0, ties of max) for the finite differences.
        seed: seeds the random cotangent and tangent directions.
        step: the finite-difference step h along directions scaled to each input's size.
        tolerances: the relative tolerances; the defaults catch a 0.05% error.

    Returns:
        A CheckReport; `report.ok` is True when every check passed, `print(report)` shows a table.
    """
    tol = tolerances or Tolerances()
    with jax.enable_x64(True):
        bound = gate.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        names = _varied(gate, arguments)
        x = tuple(jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), arguments[n]) for n in names)

        def through_gate(*inputs):
            return gate(**{**arguments, **dict(zip(names, inputs))})

        def reference(*inputs):
            return gate.forward(**{**arguments, **dict(zip(names, inputs))})

        rng = np.random.default_rng(seed)
        random_like = lambda t: jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape)), t)
        g = random_like(jax.eval_shape(reference, *x))
        # Directions scaled to each input's size, so one relative step h fits every input.
        v = tuple(jax.tree.map(lambda a, d: d * max(1.0, float(jnp.max(jnp.abs(a), initial=0))),
                               xi, random_like(xi)) for xi in x)
        q = jax.jit(_quantities, static_argnums=(0, 1, 5))(through_gate, reference, x, g, v, step)
        checks = (
            Check("reverse", _relative(q["cotangents"], q["cotangents_ref"], tol.atol),
                  tol.reverse),
            Check("forward", _relative(q["tangent"], q["tangent_ref"], tol.atol), tol.forward),
            Check("finite difference",
                  max(_relative(q["tangent"], q["fd"], tol.atol),
                      _relative(_inner(q["cotangents"], v), _inner(g, q["fd"]), tol.atol)),
                  tol.finite_difference),
            Check("second order",
                  max(_relative(q["hvp_forward_over_reverse"], q["hvp_ref"], tol.atol),
                      _relative(q["hvp_reverse_over_reverse"], q["hvp_ref"], tol.atol)),
                  tol.second_order),
        )
    held = [n for n in gate.input_names if n not in names]
    shapes = _shapes(arguments, gate) + (f" (held constant: {', '.join(held)})" if held else "")
    return CheckReport(gate.name, shapes, checks)


def _varied(gate: Gate, arguments: dict) -> tuple[str, ...]:
    """The inputs to differentiate: the array inputs; a Python number is held constant, as
    `gate(x, 2)` holds it in a call (every input, when all of them are numbers)."""
    arrays = tuple(n for n in gate.input_names if not _is_number(arguments[n]))
    return arrays or tuple(gate.input_names)


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)  # not bool, not a numpy scalar (an array: varied)


def _quantities(through_gate, reference, x, g, v, step) -> dict:
    """Everything the checks compare, computed in one compiled program."""
    along = lambda t: tuple(jax.tree.map(lambda a, d: a + t * d, xi, vi) for xi, vi in zip(x, v))
    every = _all(x)
    grad = lambda f: jax.grad(_dot_with(f, g), argnums=every)
    hvp = lambda f: jax.jvp(grad(f), x, v)[1]
    return {
        "cotangents": jax.vjp(through_gate, *x)[1](g),
        "cotangents_ref": jax.vjp(reference, *x)[1](g),
        "tangent": jax.jvp(through_gate, x, v)[1],
        "tangent_ref": jax.jvp(reference, x, v)[1],
        "fd": (reference(*along(step)) - reference(*along(-step))) / (2 * step),
        "hvp_forward_over_reverse": hvp(through_gate),
        "hvp_reverse_over_reverse": jax.grad(lambda *a: _inner(grad(through_gate)(*a), v),
                                             argnums=every)(*x),
        "hvp_ref": hvp(reference),
    }


def _all(args: tuple) -> tuple[int, ...]:
    return tuple(range(len(args)))


def _dot_with(f, g):
    return lambda *a: _inner(f(*a), g)


def _inner(a: Any, b: Any) -> jax.Array:
    return sum(jnp.vdot(p, q) for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _relative(a: Any, b: Any, atol: float) -> float:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    diff = math.sqrt(sum(float(jnp.sum((p - q) ** 2)) for p, q in zip(la, lb)))
    size = math.sqrt(sum(float(jnp.sum(q ** 2)) for q in lb))
    error = diff / (size + atol)
    return error if math.isfinite(error) else math.inf


def _shapes(arguments: dict, gate: Gate) -> str:
    def describe(value):
        if hasattr(value, "shape"):
            return "x".join(map(str, value.shape)) or "scalar"
        return repr(value)
    parts = []
    for name, value in arguments.items():
        if name in gate.array_names:
            leaves = jax.tree.leaves(value)
            shown = ("+".join(describe(leaf) for leaf in leaves) if len(leaves) != 1
                     else describe(leaves[0]))
            parts.append(f"{name}={shown}")
        else:
            parts.append(f"{name}={value!r}")
    return ", ".join(parts)
