"""The layers of modern models: Embedding, MultiHeadAttention, RMSNorm, Gelu and the one-line
`layers.activation`. Values and gradients against plain jax.numpy are in test_layers.py's
table; here what a table cannot say: integer inputs, causality, errors, settings."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difprog
from difprog import gates, layers

KEY = jax.random.key(0)


def test_embedding_looks_up_rows_and_accumulates_repeated_ids():
    embed = layers.Embedding(5, 3)
    params = embed.init(KEY, jnp.zeros((2, 4), jnp.int32))
    table = params["table"]
    assert table.shape == (5, 3) and table.dtype == jnp.float32
    assert 0.01 < float(jnp.std(table)) < 0.04  # normal(0.02)
    ids = jnp.array([[1, 1, 4], [0, 1, 2]])
    np.testing.assert_array_equal(embed.apply(params, ids), table[ids])
    g = jax.random.normal(jax.random.key(1), (2, 3, 3))
    grad = jax.jit(jax.grad(lambda p: jnp.vdot(embed.apply(p, ids), g)))(params)["table"]
    expected = jnp.zeros((5, 3)).at[ids].add(g)
    np.testing.assert_allclose(grad, expected, rtol=1e-6)
    np.testing.assert_allclose(grad[1], g[0, 0] + g[0, 1] + g[1, 1], rtol=1e-6)
    np.testing.assert_array_equal(grad[3], 0)


def test_embedding_refuses_float_ids_and_out_of_range_ids():
    embed = layers.Embedding(5, 3)
    params = embed.init(KEY, jnp.zeros(4, jnp.int32))
    with pytest.raises(difprog.DtypeError, match=r"layer 'embedding'.*integer ids.*float32"):
        embed.apply(params, jnp.zeros(4))
    with pytest.raises(difprog.LabelError, match=r"layer 'embedding'.*'embedding'"):
        embed.apply(params, jnp.array([0, 5]))
    rows = jax.jit(embed.apply)(params, jnp.array([0, 5, -1]))
    assert np.isfinite(rows[0]).all() and np.isnan(rows[1:]).all()


def test_embedding_then_attention_trains_under_jit_and_grad():
    model = layers.serial(layers.Embedding(7, 8), layers.MultiHeadAttention(2, causal=True),
                          layers.RMSNorm(), layers.Gelu(approximate=True), layers.Dense(7))
    ids = jnp.array([[1, 2, 3, 4], [4, 3, 2, 1]])
    params = model.init(KEY, ids)
    assert set(params) == {"embedding_0", "multi_head_attention_0", "rms_norm_0", "dense_0"}
    loss = lambda p: gates.softmax_cross_entropy(model.apply(p, ids[:, :-1]), ids[:, 1:])
    grads = jax.jit(jax.grad(loss))(params)
    assert all(np.isfinite(g).all() and np.abs(g).sum() > 0 for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("causal", [False, True])
def test_causal_attention_output_ignores_later_positions(causal):
    mha = layers.MultiHeadAttention(2, causal=causal)
    x = jax.random.normal(KEY, (1, 6, 4))
    params = mha.init(KEY, x)
    changed = x.at[:, 4:].set(7.0)
    same = np.allclose(mha.apply(params, x)[:, :4], mha.apply(params, changed)[:, :4], atol=1e-6)
    assert same == causal


def test_attention_layer_settings_and_errors():
    mha = layers.MultiHeadAttention(4, causal=True, name="attn")
    assert repr(mha) == "MultiHeadAttention(4, causal=True, name='attn')"
    shapes = jax.tree.map(jnp.shape, mha.init(KEY, jnp.zeros((2, 3, 8))))
    assert shapes == {**{f"w{p}": (8, 8) for p in "qkvo"}, **{f"b{p}": (8,) for p in "qkvo"}}
    with pytest.raises(difprog.ArgumentError, match=r"layer 'attn'.*4 heads must divide.*6"):
        mha.init(KEY, jnp.zeros((2, 3, 6)))
    with pytest.raises(difprog.ShapeError, match=r"layer 'attn'.*rank >= 2"):
        mha.init(KEY, jnp.zeros(8))
    with pytest.raises(difprog.ArgumentError, match="heads must be a positive int"):
        layers.MultiHeadAttention(0)
    with pytest.raises(difprog.ArgumentError, match="causal must be True or False"):
        layers.MultiHeadAttention(2, causal="yes")


def test_attention_layer_takes_extra_batch_axes():
    mha = layers.MultiHeadAttention(2)
    x = jax.random.normal(KEY, (2, 3, 5, 4))
    params = mha.init(KEY, x)
    np.testing.assert_allclose(mha.apply(params, x)[1], mha.apply(params, x[1]), rtol=1e-5,
                               atol=1e-6)


def test_a_layer_without_params_is_one_line():
    Softplus = layers.activation(gates.softplus)
    layer = Softplus(beta=2.0)
    assert repr(layer) == "Softplus(beta=2.0)" and layer.kind == "softplus"
    x = jnp.linspace(-3, 3, 7)
    np.testing.assert_allclose(layer.apply({}, x), jax.nn.softplus(2 * x) / 2, rtol=1e-6)
    with pytest.raises(difprog.ArgumentError, match=r"Softplus: unknown settings \['bta'\]"):
        Softplus(bta=2.0)
    assert layers.Relu.relu_like and not layers.Gelu.relu_like
    assert repr(layers.Gelu(approximate=True)) == "Gelu(approximate=True)"


def test_rms_norm_layer_settings():
    assert repr(layers.RMSNorm(eps=1e-5)) == "RMSNorm(eps=1e-05)"
    with pytest.raises(difprog.ArgumentError,
                       match="RMSNorm: eps must be a positive finite number"):
        layers.RMSNorm(eps=0)
    with pytest.raises(difprog.ShapeError, match=r"layer 'rms_norm'.*rank >= 1"):
        layers.RMSNorm().init(KEY, jnp.zeros(()))
