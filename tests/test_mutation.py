"""Mutation tests: proof that the hand-written rules are the ones running, and that the checker
catches a wrong rule. A rule scaled by 2 (and a backward rule off by 0.05%) must fail check_gate
and must change what jax.grad (resp. jax.jvp) returns."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import GATE_NAMES, as_dtype, bound_arguments, first_point, random_like

import difprog
from difprog import gates


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


@pytest.mark.parametrize("name", GATE_NAMES)
def test_doubled_backward_fails_check_and_changes_grad(name):
    gate, mutant = gates.ALL[name], scaled_backward(gates.ALL[name], 2.0)
    args, kwargs = first_point(name)
    report = difprog.check_gate(mutant, *args, **kwargs)
    assert not report.ok
    assert report.reverse_error > 0.1 and report.finite_difference_error > 0.1
    assert report.forward_error < 1e-8
    with jax.enable_x64(True):
        (grads, tangent), (mutant_grads, mutant_tangent) = (_grad_and_jvp(gate, name),
                                                            _grad_and_jvp(mutant, name))
    assert _differ(grads, mutant_grads)
    assert not _differ(tangent, mutant_tangent)


@pytest.mark.parametrize("name", GATE_NAMES)
def test_doubled_tangent_fails_check_and_changes_jvp(name):
    gate, mutant = gates.ALL[name], scaled_tangent(gates.ALL[name], 2.0)
    args, kwargs = first_point(name)
    report = difprog.check_gate(mutant, *args, **kwargs)
    assert not report.ok
    assert report.forward_error > 0.1 and report.finite_difference_error > 0.1
    assert report.reverse_error < 1e-8
    with jax.enable_x64(True):
        (grads, tangent), (mutant_grads, mutant_tangent) = (_grad_and_jvp(gate, name),
                                                            _grad_and_jvp(mutant, name))
    assert _differ(tangent, mutant_tangent)
    assert not _differ(grads, mutant_grads)


@pytest.mark.parametrize("name", GATE_NAMES)
def test_checker_catches_a_backward_off_by_five_hundredths_of_a_percent(name):
    mutant = scaled_backward(gates.ALL[name], 2.001 / 2)
    report = difprog.check_gate(mutant, *first_point(name)[0], **first_point(name)[1])
    assert not report.ok
    assert not next(c for c in report.checks if c.name == "reverse").ok
    assert not next(c for c in report.checks if c.name == "finite difference").ok
