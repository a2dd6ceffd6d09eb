"""The registry: a gate is registered once, where it is written, with its check points, and
everything that fans out over gates (gates.ALL, check_points, difprog check, the proofs, the
mutation and hostile-input tests, the expression functions) reads it from there."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difprog
from difprog import expression, gates
from difprog.cli import main
from difprog.errors import ArgumentError
from difprog.gate import elementwise, linear
from difprog.gates.points import empty_unary, normal, unary
from difprog.gates.registry import Registry


def _cube():
    return elementwise(lambda x: x ** 3, lambda out, x: 3 * x ** 2, name="cube")


def _register_cube(registry, **options):
    return registry.register(_cube(), points=unary(normal), zero_size=empty_unary, **options)


def test_every_gate_module_registers_its_gates_in_the_one_registry():
    assert list(gates.REGISTRY) == list(gates.ALL) and len(gates.ALL) == 41
    for name, entry in gates.REGISTRY.items():
        assert gates.ALL[name] is entry.gate is getattr(gates, name)
        module = entry.gate.forward.__module__
        assert module.startswith("difprog.gates.") and not module.startswith("difprog.gates._")
        assert entry.check_points(), name


def test_a_gate_registered_in_a_fresh_registry_joins_its_fan_out():
    """What tests/gates fan out over, for a registry of one gate written here."""
    registry = Registry()
    cube = _register_cube(registry, domain="real", expression=True)
    assert list(registry) == ["cube"] and registry.gates == {"cube": cube}
    assert registry.functions == {"cube": cube} and "cube" not in gates.ALL
    for args, kwargs in registry.check_points("cube"):  # the proof, as test_rules runs it
        assert difprog.check_gate(cube, *args, **kwargs).ok
    doubled = cube.with_rules(backward=lambda g, out, x: (6 * x ** 2 * g,))  # test_mutation's
    assert not difprog.check_gate(doubled, *registry.check_points("cube")[1][0]).ok
    for args, kwargs in registry["cube"].zero_size():  # test_hostile's zero-size cases
        assert cube(*args, **kwargs).shape == args[0].shape
    registry.unregister("cube")
    assert not registry and not registry.gates and not registry.functions


def test_a_gate_registered_in_the_shipped_registry_is_checked_and_callable(capsys):
    """gates.ALL, check_points, `difprog check` and expressions see it; unregistered, it is
    gone again, for the other tests."""
    cube = _register_cube(gates.REGISTRY, expression=("cube",))
    try:
        assert gates.ALL["cube"] is cube and len(gates.check_points("cube")) == 4
        assert main(["check", "cube"]) == 0
        assert "cube" in capsys.readouterr().out
        f = expression.expression_function("cube(x) + 1", ["x"])
        assert float(f(jnp.asarray(2.0))) == 9.0
        assert float(jax.grad(f)(jnp.asarray(2.0))) == 12.0
    finally:
        gates.unregister("cube")
    assert "cube" not in gates.ALL and "cube" not in expression.FUNCTIONS
    assert main(["check", "cube"]) == 2


def test_the_expression_functions_are_the_gates_registered_for_expressions():
    assert set(expression.FUNCTIONS) == set(gates.REGISTRY.functions)
    assert expression.FUNCTIONS["min"] is gates.minimum
    assert expression.FUNCTIONS["matmul"] is gates.matmul
    assert expression.FUNCTIONS["max"] is not gates.max  # max(x) reduces, max(x, y) is maximum
    assert {"add", "conv2d", "attention"}.isdisjoint(expression.FUNCTIONS)


@pytest.mark.parametrize("options, match", [
    ({"bad": {"axis": (1.5,)}}, r"bad names \['axis'\].*constant parameters \[\]"),
    ({"affine": ("y",)}, r"affine names \['y'\].*differentiable inputs \['x'\]"),
    ({"domain": "complex"}, r"domain must be one of \[None, 'real', 'positive'\]"),
    ({"expression": "cube"}, "expression must be True, False or a tuple of names"),
    ({"expression": ("exp",)}, r"expressions already call 'exp' \(exp\)"),
])
def test_a_registration_that_names_what_the_gate_lacks_is_refused(options, match):
    registry = Registry()
    registry.register(gates.exp, points=unary(normal), expression=True)
    with pytest.raises(ArgumentError, match=match):
        _register_cube(registry, **options)
    assert list(registry) == ["exp"]


def test_a_name_is_registered_once():
    registry = Registry()
    _register_cube(registry)
    with pytest.raises(ArgumentError, match="'cube' is registered already"):
        _register_cube(registry)
    with pytest.raises(ArgumentError, match="expected a difprog gate"):
        registry.register(np.exp, points=unary(normal))
    with pytest.raises(KeyError, match="no gate 'nope' is registered"):
        registry.unregister("nope")


def test_linear_and_bilinear_gates_register_like_any_other():
    registry = Registry()
    twice = registry.register(linear(lambda x: 2 * x, lambda g, out, x: (2 * g,), name="twice"),
                              points=unary(normal), affine=("x",))
    assert registry["twice"].affine == ("x",) and registry["twice"].gate is twice
