"""Rematerialisation: remat, serial(..., remat=...) and repeat give the same values and
gradients with less temporary memory."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difprog
from difprog import gates, layers
from tests.conftest import assert_trees_close

KEY = jax.random.key(0)


def _block(width=8):
    return layers.serial(layers.Dense(width), layers.Tanh())


def _loss(model, x, **kwargs):
    return lambda p: gates.mean(gates.square(model.apply(p, x, **kwargs)))


def _temp_bytes(model, params, x):
    compiled = jax.jit(jax.grad(_loss(model, x))).lower(params).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def test_remat_is_transparent_and_gives_the_same_gradient():
    x = jax.random.normal(KEY, (4, 6))
    plain = layers.serial(layers.Dense(8), layers.Relu(), _block(), layers.Dense(3))
    wrapped = layers.serial(layers.remat(layers.Dense(8)), layers.Relu(),
                            layers.remat(_block()), layers.Dense(3))
    params = plain.init(KEY, x)
    assert jax.tree.map(jnp.shape, wrapped.init(KEY, x)) == jax.tree.map(jnp.shape, params)
    assert_trees_close(wrapped.init(KEY, x), params, rtol=0, atol=0)
    assert_trees_close(jax.grad(_loss(wrapped, x))(params), jax.grad(_loss(plain, x))(params),
                       rtol=1e-6, atol=1e-7)
    jaxpr = str(jax.make_jaxpr(jax.grad(_loss(wrapped, x)))(params))
    assert "checkpoint" in jaxpr or "remat" in jaxpr
    captured = wrapped.run(params, x, capture=True).captured
    assert "serial_0" in captured and "serial_0/dense_0" not in captured


@pytest.mark.parametrize("policy", [1, 3, "sqrt"])
def test_serial_remat_policies_keep_values_and_gradients(policy):
    x = jax.random.normal(KEY, (4, 8))
    blocks = [_block() for _ in range(7)]
    plain, remat = layers.serial(*blocks), layers.serial(*blocks, remat=policy)
    params = plain.init(KEY, x)
    np.testing.assert_allclose(remat.apply(params, x), plain.apply(params, x), rtol=1e-6)
    assert_trees_close(jax.jit(jax.grad(_loss(remat, x)))(params),
                       jax.grad(_loss(plain, x))(params), rtol=1e-5, atol=1e-7)
    assert f"remat={policy!r}" in repr(remat)


def test_repeat_stacks_params_and_matches_the_unrolled_model():
    with jax.enable_x64(True):
        x = jax.random.normal(KEY, (3, 8))
        deep = layers.repeat(_block(), 6)
        params = deep.init(KEY, x)
        assert jax.tree.map(jnp.shape, params) == {"dense_0": {"w": (6, 8, 8), "b": (6, 8)}}
        unrolled = layers.serial(*[_block() for _ in range(6)])
        as_list = {f"serial_{i}": jax.tree.map(lambda a, i=i: a[i], params) for i in range(6)}
        assert_trees_close(deep.apply(params, x), unrolled.apply(as_list, x))
        grads = jax.grad(_loss(deep, x))(params)
        expected = jax.grad(_loss(unrolled, x))(as_list)
        for i in range(6):
            assert_trees_close(jax.tree.map(lambda a, i=i: a[i], grads), expected[f"serial_{i}"])


@pytest.mark.parametrize("policy", ["each", "sqrt"])
def test_repeat_remat_same_gradient_less_memory(policy):
    x = jax.random.normal(KEY, (256, 32))
    plain, remat = layers.repeat(_block(32), 32), layers.repeat(_block(32), 32, remat=policy)
    params = plain.init(KEY, x)
    assert_trees_close(jax.grad(_loss(remat, x))(params), jax.grad(_loss(plain, x))(params),
                       rtol=1e-5, atol=1e-7)
    assert _temp_bytes(remat, params, x) * {"each": 1.8, "sqrt": 3}[policy] < _temp_bytes(
        plain, params, x)


def test_dropout_inside_repeat_and_remat_draws_the_same_masks_when_recomputed():
    x = jnp.ones((4, 16))
    block = layers.serial(layers.Dense(16), layers.Dropout(0.5))
    plain, remat = layers.repeat(block, 4), layers.repeat(block, 4, remat="each")
    params = plain.init(KEY, x)
    kwargs = {"key": jax.random.key(5), "train": True}
    assert_trees_close(jax.grad(_loss(remat, x, **kwargs))(params),
                       jax.grad(_loss(plain, x, **kwargs))(params), rtol=1e-5, atol=1e-7)
    wrapped = layers.serial(layers.remat(block), layers.Dropout(0.5))
    wrapped_params = wrapped.init(KEY, x)
    unwrapped = layers.serial(block, layers.Dropout(0.5))
    assert_trees_close(jax.grad(_loss(wrapped, x, **kwargs))(wrapped_params),
                       jax.grad(_loss(unwrapped, x, **kwargs))(wrapped_params), rtol=1e-6)


def test_repeat_errors():
    with pytest.raises(difprog.ShapeError, match=r"layer 'repeat'.*maps float32\(2, 3\) to "
                                                 r"float32\(2, 4\)"):
        layers.repeat(layers.Dense(4), 3).init(KEY, jnp.zeros((2, 3)))
    params = layers.repeat(_block(3), 3).init(KEY, jnp.zeros((2, 3)))
    short = jax.tree.map(lambda a: a[:2], params)
    with pytest.raises(difprog.ShapeError, match=r"'dense_0/b' has shape \(2, 3\).*leading "
                                                 r"axis of 3"):
        layers.repeat(_block(3), 3).apply(short, jnp.zeros((2, 3)))
    with pytest.raises(difprog.ArgumentError, match="remat must be one of"):
        layers.repeat(_block(), 3, remat="all")
    with pytest.raises(difprog.ArgumentError, match="remat must be None, 'sqrt'"):
        layers.serial(_block(), remat=0)
