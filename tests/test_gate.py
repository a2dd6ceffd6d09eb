"""The gate mechanism: the hand-written rules run under every transformation, JAX never
differentiates the forward, user-defined gates, and clear errors for bad rules and bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difprog
from difprog import gates


def _opaque_cube():
    """x^3 whose forward JAX cannot differentiate (stop_gradient): any correct derivative must
    come from the hand-written rules. Counts how often each rule is traced."""
    calls = {"backward": 0, "tangent": 0}

    def backward(g, out, x):
        calls["backward"] += 1
        return (3 * x * x * g,)

    def tangent(dx, out, x):
        calls["tangent"] += 1
        return 3 * x * x * dx

    cube = difprog.gate(lambda x: jax.lax.stop_gradient(x ** 3), backward=backward,
                        tangent=tangent, name="cube")
    return cube, calls


@pytest.mark.parametrize("transform, uses", [
    (jax.grad, "backward"), (jax.jacrev, "backward"),
    (jax.jacfwd, "tangent"), (lambda f: lambda x: jax.jvp(f, (x,), (1.0,))[1], "tangent"),
    (lambda f: lambda x: jax.linearize(f, x)[1](1.0), "tangent"),
])
@pytest.mark.parametrize("wrap", [
    lambda transform, f: transform(f),
    lambda transform, f: jax.jit(transform(f)),
    lambda transform, f: transform(jax.jit(f)),
    lambda transform, f: transform(lambda x: jax.lax.scan(lambda c, _: (f(c), None), x, None,
                                                          length=1)[0]),
], ids=["eager", "jit outside", "jit inside", "scan"])
def test_each_mode_runs_its_own_rule_and_never_the_forward(transform, uses, wrap):
    cube, calls = _opaque_cube()
    assert float(wrap(transform, cube)(2.0)) == 12.0
    assert calls[uses] >= 1
    assert calls["backward" if uses == "tangent" else "tangent"] == 0


def test_checkpoint_differentiates_through_the_tangent_rule():
    """Known limit (JAX 0.10.2 and 0.12.0.1): under jax.checkpoint, reverse mode transposes the
    tangent rule instead of calling the backward rule. The result is still the hand-written
    derivative, never JAX's autodiff of the forward."""
    cube, calls = _opaque_cube()
    assert float(jax.grad(jax.checkpoint(cube))(2.0)) == 12.0
    assert calls["tangent"] >= 1


def test_second_order_through_the_rules():
    cube, _ = _opaque_cube()
    assert float(jax.hessian(cube)(2.0)) == 12.0
    assert float(jax.grad(jax.grad(cube))(2.0)) == 12.0
    assert float(jax.jacfwd(jax.jacfwd(cube))(2.0)) == 12.0
    assert float(jax.jit(jax.grad(jax.grad(jax.grad(cube))))(2.0)) == 6.0


def test_vmap_of_the_rules_and_rules_of_vmap():
    cube, _ = _opaque_cube()
    x = jnp.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(jax.vmap(jax.grad(cube))(x), 3 * x ** 2)
    np.testing.assert_array_equal(jax.grad(lambda x: jnp.sum(jax.vmap(cube)(x)))(x), 3 * x ** 2)
    np.testing.assert_array_equal(jax.jacfwd(jax.vmap(cube))(x), np.diag(3 * x ** 2))
    np.testing.assert_array_equal(jax.vmap(jax.vmap(jax.hessian(cube)))(x.reshape(3, 1)),
                                  (6 * x).reshape(3, 1))


def test_with_rules_returns_a_new_gate_and_keeps_the_old():
    doubled = gates.exp.with_rules(backward=lambda g, out, x: (2 * g * out,))
    assert doubled is not gates.exp and doubled.forward is gates.exp.forward
    assert doubled.tangent is gates.exp.tangent
    assert float(jax.grad(doubled)(0.0)) == 2.0
    assert float(jax.grad(gates.exp)(0.0)) == 1.0


def test_gate_exposes_its_parts_and_docs():
    assert gates.sigmoid.name == "sigmoid" and "s (1 - s)" in gates.sigmoid.__doc__
    assert callable(gates.sigmoid.forward) and callable(gates.sigmoid.backward)
    x = jnp.array([0.5, -1.0])
    np.testing.assert_allclose(gates.sigmoid(x), gates.sigmoid.forward(x))
    (g,) = gates.sigmoid.backward(jnp.ones(2), gates.sigmoid(x), x)
    np.testing.assert_allclose(g, jax.grad(lambda x: jnp.sum(jax.nn.sigmoid(x)))(x), rtol=1e-6)
    assert set(gates.ALL) >= {"add", "matmul", "conv2d", "softmax_cross_entropy", "l2_penalty"}


def test_python_numbers_are_weak_constants():
    x = jnp.array([1.0, 2.0], jnp.bfloat16)
    assert gates.multiply(x, 2.0).dtype == jnp.bfloat16
    grad = jax.grad(lambda x: jnp.sum(gates.multiply(x, 2)).astype(jnp.float32))(x)
    assert grad.dtype == jnp.bfloat16
    assert float(jax.grad(gates.power)(3.0, 2)) == 6.0


def test_nondiff_labels_and_pytree_inputs():
    logits = jnp.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    labels = jnp.array([1, 2])
    grad = jax.grad(gates.softmax_cross_entropy)(logits, labels)
    expected = (jax.nn.softmax(logits) - jax.nn.one_hot(labels, 3)) / 2
    np.testing.assert_allclose(grad, expected, rtol=1e-6)
    params = {"w": jnp.ones((2, 2)), "b": jnp.array([1.0, -2.0])}
    grads = jax.grad(gates.l2_penalty)(params)
    np.testing.assert_array_equal(grads["b"], [2.0, -4.0])
    assert float(gates.l2_penalty(params)) == 9.0


def _masked_scale():
    """x k where mask (an optional nondiff array) holds, else 0; without a mask, x k."""
    def forward(x, mask=None, *, k=1.0):
        return x * k if mask is None else jnp.where(mask, x * k, 0.0)
    return difprog.gate(forward, backward=lambda g, out, x, mask=None, *, k=1.0: (
        forward(g, mask, k=k),), tangent=lambda dx, out, x, mask=None, *, k=1.0: forward(
        dx, mask, k=k), nondiff=("mask",), name="masked_scale")


def test_optional_nondiff_array_input():
    masked = _masked_scale()
    assert (masked.array_names, masked.optional_names, masked.input_names,
            masked.static_names) == (("x", "mask"), ("mask",), ("x",), ("k",))
    x = jnp.arange(4.0)
    for mask, expected in [(None, [2.0] * 4), (x > 1, [0, 0, 2.0, 2.0])]:
        grad = jax.grad(lambda x, mask=mask: jnp.sum(masked(x, mask, k=2.0)))
        np.testing.assert_array_equal(grad(x), expected)
        np.testing.assert_array_equal(jax.jit(grad)(x), expected)
        tangent = jax.jvp(lambda x, mask=mask: masked(x, mask, k=2.0), (x,), (jnp.ones(4),))[1]
        np.testing.assert_array_equal(tangent, expected)
        assert difprog.check_gate(masked, x, mask).ok
    masks = jnp.stack([x > 1, x < 1])
    per_row = jax.vmap(lambda m: jax.grad(lambda x: jnp.sum(masked(x, m)))(x))(masks)
    np.testing.assert_array_equal(per_row, masks.astype(jnp.float32))


def test_optional_array_needs_default_none():
    with pytest.raises(difprog.ArgumentError, match="nondiff names.*default None"):
        difprog.gate(lambda x, mask=0.5: x, backward=lambda g, out, x, mask: (g,),
                     tangent=lambda dx, out, x, mask: dx, nondiff=("mask",))


@pytest.mark.parametrize("mode", ["grad", "jvp", "jit-grad"])
def test_differentiating_a_nondiff_float_input_is_an_error_not_a_zero(mode):
    """The gate gives labels no derivative; asking for one must not give a silent zero."""
    masked, x = _masked_scale(), jnp.arange(3.0)
    f = lambda m: jnp.sum(masked(x, m))
    run = {"grad": jax.grad(f), "jit-grad": jax.jit(jax.grad(f)),
           "jvp": lambda m: jax.jvp(f, (m,), (m,))}[mode]
    with pytest.raises(difprog.ArgumentError, match="'masked_scale'.*'mask'.*stop_gradient"):
        run(x)
    assert float(jax.grad(lambda m: jnp.sum(masked(x, jax.lax.stop_gradient(m))))(x)[0]) == 0


class TestBadRules:
    def test_wrong_number_of_cotangents(self):
        bad = gates.multiply.with_rules(backward=lambda g, out, x, y: (g * y,))
        with pytest.raises(difprog.RuleError, match="multiply.*2 cotangents"):
            jax.grad(bad)(1.0, 2.0)

    def test_cotangent_not_reduced_back_to_the_input_shape(self):
        bad = gates.add.with_rules(backward=lambda g, out, x, y: (g, g))
        with pytest.raises(difprog.RuleError, match=r"add.*shape \(3,\).*'y'.*shape \(\)"):
            jax.grad(lambda x: jnp.sum(bad(x, 1.0)), argnums=0)(jnp.ones(3))
        with pytest.raises(difprog.RuleError, match="add"):
            jax.grad(lambda x, y: jnp.sum(bad(x, y)), argnums=1)(jnp.ones(3), 1.0)

    def test_tangent_of_the_wrong_shape(self):
        bad = gates.sum.with_rules(tangent=lambda dx, out, x, axis: dx)
        with pytest.raises(difprog.RuleError, match="tangent rule of gate 'sum'"):
            jax.jvp(bad, (jnp.ones(3),), (jnp.ones(3),))


class TestBadInput:
    def test_incompatible_shapes_name_gate_and_shapes(self):
        with pytest.raises(difprog.ShapeError, match=r"'add'.*\[3\].*\[4\]"):
            gates.add(jnp.ones(3), jnp.ones(4))
        with pytest.raises(difprog.ShapeError, match=r"'matmul'.*\[2, 3\].*\[4, 5\].*3 columns"):
            gates.matmul(jnp.ones((2, 3)), jnp.ones((4, 5)))
        with pytest.raises(difprog.ShapeError, match="'conv2d'.*rank 4"):
            gates.conv2d(jnp.ones((5, 5, 3)), jnp.ones((3, 3, 3, 4)))
        with pytest.raises(difprog.ShapeError, match="'conv2d'.*3 channels"):
            gates.conv2d(jnp.ones((1, 5, 5, 3)), jnp.ones((3, 3, 2, 4)))
        with pytest.raises(difprog.ShapeError, match="'max_pool2d'.*window"):
            gates.max_pool2d(jnp.ones((1, 2, 2, 1)), window=3)
        with pytest.raises(difprog.ShapeError, match="'layer_norm': scale"):
            gates.layer_norm(jnp.ones((2, 4)), jnp.ones(3), jnp.ones(4))
        with pytest.raises(difprog.ShapeError, match="'softmax_cross_entropy'.*labels"):
            gates.softmax_cross_entropy(jnp.ones((4, 3)), jnp.zeros(3, jnp.int32))
        with pytest.raises(difprog.ShapeError,
                           match=r"'reshape'.*x\[2, 3\] \(6 values\) as \[4, -1\]"):
            gates.reshape(jnp.ones((2, 3)), (4, -1))
        with pytest.raises(difprog.ShapeError,
                           match=r"'concatenate'.*\[\[2, 3\], \[3, 3\]\].*axis -1"):
            gates.concatenate([jnp.ones((2, 3)), jnp.ones((3, 3))])
        with pytest.raises(difprog.ShapeError, match=r"'concatenate'.*axis 2 is out of range"):
            gates.concatenate([jnp.ones((2, 3)), jnp.ones((2, 3))], axis=2)

    def test_shape_errors_are_value_errors_even_under_jit(self):
        with pytest.raises(ValueError, match="'multiply'"):
            jax.jit(gates.multiply)(jnp.ones((2, 3)), jnp.ones((3, 2)))

    def test_integer_array_where_a_derivative_is_needed(self):
        with pytest.raises(difprog.DtypeError, match=r"'exp'.*'x'.*int32.*floating"):
            gates.exp(jnp.arange(3))
        with pytest.raises(TypeError, match="'softmax_cross_entropy'.*labels must be integer"):
            gates.softmax_cross_entropy(jnp.ones((2, 3)), jnp.zeros(2))

    def test_non_arrays(self):
        with pytest.raises(difprog.DtypeError,
                           match="'tanh'.*must be an array or a number, got str"):
            gates.tanh("1.0")
        with pytest.raises(difprog.DtypeError, match="'add'.*got list"):
            gates.add([1.0, 2.0], 1.0)
        with pytest.raises(difprog.DtypeError, match="'relu'.*got bool"):
            gates.relu(True)
        with pytest.raises(TypeError, match="'sigmoid'.*signature"):
            gates.sigmoid(1.0, 2.0)

    def test_constant_arguments_must_be_constants(self):
        with pytest.raises(difprog.DtypeError, match="'leaky_relu'.*'negative_slope'.*constant"):
            jax.jit(gates.leaky_relu)(2.0, 0.1)
        with pytest.raises(difprog.DtypeError, match="'sum'.*'axis'.*hashable"):
            gates.sum(jnp.ones(3), axis={0: 1})

    def test_labels_out_of_range(self):
        with pytest.raises(difprog.LabelError, match=r"\[0, 3\).*\[3\]"):
            gates.softmax_cross_entropy(jnp.ones((2, 3)), jnp.array([0, 3]))
        under_jit = jax.jit(gates.softmax_cross_entropy)(jnp.ones((2, 3)), jnp.array([0, -1]))
        assert np.isnan(under_jit)
        hinge = jax.jit(gates.multiclass_hinge_loss)(jnp.ones((2, 3)), jnp.array([5, 1]))
        assert np.isnan(hinge)

    def test_labels_closed_over_by_a_jitted_function(self):
        good, bad = jnp.array([0, 2]), jnp.array([0, 3])
        loss = lambda labels: jax.jit(lambda s: gates.softmax_cross_entropy(s, labels))
        assert np.isfinite(loss(good)(jnp.ones((2, 3))))
        with pytest.raises(difprog.LabelError, match=r"\[0, 3\).*\[3\]"):
            loss(bad)(jnp.ones((2, 3)))


class TestBuilders:
    """elementwise and linear: each derivative written once, both rules still proven."""

    def test_elementwise_builds_both_rules_from_one_derivative(self):
        from difprog.gate import elementwise

        cube = elementwise(lambda x: x ** 3, lambda out, x: 3 * x ** 2, name="cube")
        x = jnp.array([1.0, 2.0])
        (g,) = cube.backward(jnp.ones(2), cube(x), x)
        np.testing.assert_allclose(g, [3.0, 12.0])
        np.testing.assert_allclose(cube.tangent(jnp.ones(2), cube(x), x), [3.0, 12.0])
        assert difprog.check_gate(cube, np.array([0.5, -1.5, 2.0])).ok
        wrong = elementwise(lambda x: x ** 3, lambda out, x: 2 * x ** 2, name="cube")
        report = difprog.check_gate(wrong, np.array([0.5, -1.5, 2.0]))
        assert not report.ok and report.reverse_error > 0.1 and report.forward_error > 0.1

    def test_elementwise_with_two_inputs_broadcasts_and_sums_back(self):
        from difprog.gate import elementwise

        mul = elementwise(lambda x, y: x * y, lambda out, x, y: (y, x), name="mul")
        x, y = np.arange(6.0).reshape(2, 3), np.array([1.0, -2.0, 3.0])
        gx, gy = jax.grad(lambda x, y: jnp.sum(mul(x, y)), (0, 1))(x, y)
        np.testing.assert_allclose(gx, np.broadcast_to(y, (2, 3)))
        np.testing.assert_allclose(gy, x.sum(0))
        assert difprog.check_gate(mul, x, y).ok

    def test_linear_tangent_is_the_forward_of_the_tangents(self):
        from difprog.gate import linear

        calls = []

        def forward(x, axis=0):
            calls.append(axis)
            return jnp.cumsum(x, axis=axis)

        cumsum = linear(forward, lambda g, out, x, axis: (jnp.flip(jnp.cumsum(
            jnp.flip(g, axis), axis), axis),), name="cumsum")
        x = np.arange(6.0).reshape(2, 3)
        assert difprog.check_gate(cumsum, x, axis=1).ok
        calls.clear()
        t = np.ones_like(x)
        np.testing.assert_allclose(cumsum.tangent(t, cumsum(x, axis=1), x, axis=1),
                                   np.cumsum(t, axis=1))
        assert calls[-1] == 1  # the tangent rule ran the forward, with the static axis

    def test_with_rules_replaces_one_rule_of_a_built_gate(self):
        doubled = gates.exp.with_rules(backward=lambda g, out, x: (2 * g * out,))
        assert doubled.tangent is gates.exp.tangent and doubled.name == "exp"
        assert float(jax.grad(doubled)(0.0)) == 2.0
        assert float(jax.jvp(doubled, (0.0,), (1.0,))[1]) == 1.0

    def test_a_gate_is_an_immutable_record(self):
        import dataclasses

        with pytest.raises(dataclasses.FrozenInstanceError):
            gates.exp.backward = None
        assert gates.add.input_names == ("x", "y") and gates.sum.static_names == ("axis",)

    def test_elementwise_takes_nondiff_inputs(self):
        from difprog.gate import elementwise

        scaled = elementwise(lambda x, s: x * s, lambda out, x, s: s, nondiff=("s",),
                             name="scaled")
        x, s = np.array([0.5, -1.5, 2.0]), np.array([2.0, 3.0, -1.0])
        assert scaled.input_names == ("x",) and scaled.nondiff == ("s",)
        np.testing.assert_allclose(jax.grad(lambda x: jnp.sum(scaled(x, s)))(x), s)
        np.testing.assert_allclose(jax.jvp(lambda x: scaled(x, s), (x,), (np.ones(3),))[1], s)
        assert difprog.check_gate(scaled, x, s).ok

    def test_builders_take_the_same_options(self):
        import inspect

        from difprog.gate import bilinear, elementwise, gate, linear

        options = lambda f: {n for n, p in inspect.signature(f).parameters.items()
                             if p.kind is p.KEYWORD_ONLY} - {"backward", "tangent"}
        assert options(linear) == options(bilinear) == options(gate)
        assert options(elementwise) == options(gate) - {"pytree_inputs"}  # arrays, elementwise

    def test_bilinear_tangent_is_the_forward_with_each_input_replaced(self):
        from difprog.gate import bilinear

        calls = []

        def forward(x, w, scale=1.0):
            calls.append(scale)
            return scale * (x @ w)

        def backward(g, out, x, w, scale):
            return scale * g @ w.T, scale * x.T @ g

        matmul = bilinear(forward, backward, name="scaled_matmul")
        rng = np.random.default_rng(0)
        x, w, dx, dw = (rng.standard_normal(s) for s in [(3, 4), (4, 2), (3, 4), (4, 2)])
        out = matmul.forward(x, w, 2.0)
        calls.clear()
        tangent = matmul.tangent(dx, dw, out, x, w, scale=2.0)
        np.testing.assert_allclose(tangent, 2.0 * (dx @ w + x @ dw), rtol=1e-12)
        assert calls == [2.0, 2.0]  # the forward, once per input, with the constants given
        assert difprog.check_gate(matmul, x, w, scale=2.0).ok
        wrong = bilinear(forward, lambda g, out, x, w, scale: (g @ w.T, scale * x.T @ g),
                         name="scaled_matmul")
        assert not difprog.check_gate(wrong, x, w, scale=2.0).ok

    def test_matmul_conv2d_and_embedding_state_their_tangent_once(self):
        """Their tangent rules are the builders', derived from the forward."""
        assert gates.matmul.tangent.__doc__.startswith("tangent of matmul: the sum over inputs")
        assert gates.conv2d.tangent.__doc__.startswith("tangent of conv2d: the sum over inputs")
        assert gates.embedding.tangent.__doc__ == \
            "tangent of embedding: the forward applied to the tangents"
