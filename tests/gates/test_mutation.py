"""Mutation tests: proof that the hand-written rules are the ones running, and that the checker
catches a wrong rule. A rule scaled by 2 (and a backward rule off by 0.05%) must fail check_gate
and must change what jax.grad (resp. jax.jvp) returns."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difprog
from difprog import gates
from tests.conftest import GATE_NAMES, as_dtype, bound_arguments, first_point, random_like


def scaled_backward(gate, factor):
    return gate.with_rules(backward=lambda g, out, **kw: tuple(
        jax.tree.map(lambda c: factor * c, c) for c in gate.backward(g, out, **kw)))


def scaled_tangent(gate, factor):
    return gate.with_rules(tangent=lambda *t, out, **kw: factor * gate.tangent(*t, out=out, **kw))


def _grad_and_jvp(gate, name):
    inputs, others = bound_arguments(gate, *first_point(name))
    inputs = as_dtype(inputs, jnp.float64)
    names = list(inputs)
    f = lambda *x: gate(**dict(zip(names, x)), **others)
    x = tuple(inputs.values())
    g = random_like(jax.eval_shape(f, *x))
    grads = jax.grad(lambda *x: jnp.vdot(f(*x), g), tuple(range(len(x))))(*x)
    tangent = jax.jvp(f, x, tuple(random_like(inputs, seed=2).values()))[1]
    return grads, tangent


def _differ(a, b):
    return any(not np.allclose(p, q, rtol=1e-6, atol=0)
               for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("rule", ["backward", "tangent"])
@pytest.mark.parametrize("name", GATE_NAMES)
def test_doubled_rule_fails_check_and_changes_only_its_mode(name, rule):
    gate = gates.ALL[name]
    mutant = (scaled_backward if rule == "backward" else scaled_tangent)(gate, 2.0)
    mutated, untouched = ("reverse", "forward") if rule == "backward" else ("forward", "reverse")
    args, kwargs = first_point(name)
    report = difprog.check_gate(mutant, *args, **kwargs)
    assert not report.ok
    assert report.errors[mutated] > 0.1 and report.finite_difference_error > 0.1
    assert report.errors[untouched] < 1e-8
    with jax.enable_x64(True):
        original, changed = _grad_and_jvp(gate, name), _grad_and_jvp(mutant, name)
    i = 0 if rule == "backward" else 1  # (grads, tangent)
    assert _differ(original[i], changed[i])
    assert not _differ(original[1 - i], changed[1 - i])


@pytest.mark.parametrize("name", GATE_NAMES)
def test_checker_catches_a_backward_off_by_five_hundredths_of_a_percent(name):
    mutant = scaled_backward(gates.ALL[name], 2.001 / 2)
    report = difprog.check_gate(mutant, *first_point(name)[0], **first_point(name)[1])
    assert not report.ok
    assert not next(c for c in report.checks if c.name == "reverse").ok
    assert not next(c for c in report.checks if c.name == "finite difference").ok
