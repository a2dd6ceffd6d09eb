"""Layers: outputs and gradients against all-jax.numpy reference models in float64, models as
plain pytrees under jit, vmap, grad, jvp and hessian-vector products, initialisers, summary."""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

import difprog
from difprog import layers
from tests.conftest import assert_trees_close, inner, random_like

KEY = jax.random.key(0)
DROP_KEY = jax.random.key(7)


def _conv(x, w, stride=1, padding="SAME"):
    return lax.conv_general_dilated(x, w, (stride, stride), padding,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _pool(x, window, stride, op, padding="VALID"):
    init = -jnp.inf if op is lax.max else 0.0
    out = lax.reduce_window(x, init, op, (1, window, window, 1), (1, stride, stride, 1), padding)
    return out if op is lax.max else out / window**2


def _layer_norm(x, scale, offset, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps) * scale + offset


def _rms_norm(x, scale, eps=1e-6):
    return x / jnp.sqrt((x * x).mean(-1, keepdims=True) + eps) * scale


def _attention_layer(p, x, heads, causal):
    """Multi-head self-attention in plain jax.numpy: (batch, seq, features) -> same."""
    b, t, f = x.shape
    split = lambda h: h.reshape(b, t, heads, f // heads).transpose(0, 2, 1, 3)
    q, k, v = (split(x @ p[f"w{n}"] + p[f"b{n}"]) for n in "qkv")
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(f // heads)
    if causal:
        scores = jnp.where(jnp.tril(jnp.ones((t, t), bool)), scores, -jnp.inf)
    mixed = (jax.nn.softmax(scores, -1) @ v).transpose(0, 2, 1, 3).reshape(b, t, f)
    return mixed @ p["wo"] + p["bo"]


def _dropout(x, rate):
    keep = jax.random.bernoulli(DROP_KEY, 1 - rate, x.shape)
    return jnp.where(keep, x / (1 - rate), 0.0)


# (id, layer, input shape, reference(params, x), apply keyword arguments)
LAYER_CASES = [
    ("dense", layers.Dense(3), (4, 5), lambda p, x: x @ p["w"] + p["b"], {}),
    ("dense_batch_axes", layers.Dense(2), (2, 3, 4), lambda p, x: x @ p["w"] + p["b"], {}),
    ("conv2d", layers.Conv2D(4, 3), (2, 6, 6, 3), lambda p, x: _conv(x, p["w"]) + p["b"], {}),
    ("conv2d_strided_valid", layers.Conv2D(2, (3, 2), stride=2, padding="VALID"), (1, 7, 6, 2),
     lambda p, x: lax.conv_general_dilated(x, p["w"], (2, 2), "VALID", dimension_numbers=(
         "NHWC", "HWIO", "NHWC")) + p["b"], {}),
    ("max_pool2d", layers.MaxPool2D(2), (2, 4, 6, 3), lambda p, x: _pool(x, 2, 2, lax.max), {}),
    ("max_pool2d_overlapping", layers.MaxPool2D(3, stride=1), (1, 5, 5, 2),
     lambda p, x: _pool(x, 3, 1, lax.max), {}),
    ("avg_pool2d", layers.AvgPool2D(2), (2, 4, 4, 3), lambda p, x: _pool(x, 2, 2, lax.add), {}),
    ("flatten", layers.Flatten(), (2, 3, 4, 5), lambda p, x: x.reshape(2, 60), {}),
    ("relu", layers.Relu(), (3, 4), lambda p, x: jnp.where(x > 0, x, 0.0), {}),
    ("leaky_relu", layers.LeakyRelu(0.2), (3, 4), lambda p, x: jnp.where(x > 0, x, 0.2 * x), {}),
    ("tanh", layers.Tanh(), (3, 4), lambda p, x: jnp.tanh(x), {}),
    ("sigmoid", layers.Sigmoid(), (3, 4), lambda p, x: 1 / (1 + jnp.exp(-x)), {}),
    ("gelu_activation", layers.Activation(difprog.gates.gelu), (3, 4),
     lambda p, x: jax.nn.gelu(x, approximate=False), {}),
    ("dropout_eval", layers.Dropout(0.5), (3, 4), lambda p, x: x, {}),
    ("dropout_train", layers.Dropout(0.3), (5, 6), lambda p, x: _dropout(x, 0.3),
     {"key": DROP_KEY, "train": True}),
    ("layer_norm", layers.LayerNorm(), (3, 5),
     lambda p, x: _layer_norm(x, p["scale"], p["offset"]), {}),
    ("gelu", layers.Gelu(), (3, 4), lambda p, x: jax.nn.gelu(x, approximate=False), {}),
    ("gelu_tanh", layers.Gelu(approximate=True), (3, 4),
     lambda p, x: jax.nn.gelu(x, approximate=True), {}),
    ("rms_norm", layers.RMSNorm(), (3, 5), lambda p, x: _rms_norm(x, p["scale"]), {}),
    ("multi_head_attention", layers.MultiHeadAttention(2), (2, 5, 4),
     lambda p, x: _attention_layer(p, x, 2, causal=False), {}),
    ("multi_head_attention_causal", layers.MultiHeadAttention(2, causal=True), (2, 6, 4),
     lambda p, x: _attention_layer(p, x, 2, causal=True), {}),
]


def _distinct_input(shape, seed=3):
    """Inputs without ties or zeros, so max and relu have one derivative everywhere."""
    rng = np.random.default_rng(seed)
    values = rng.permutation(math.prod(shape)) - math.prod(shape) / 2 + 0.5
    return jnp.asarray(values.reshape(shape) / math.prod(shape) * 4)


def _perturbed(params, seed=2):
    """Init params plus noise, so zero biases and unit scales do not hide a wrong gradient."""
    return jax.tree.map(lambda a, r: a + 0.5 * r, params, random_like(params, seed))


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("case", LAYER_CASES, ids=[c[0] for c in LAYER_CASES])
def test_layer_matches_reference_value_and_gradient(case, mode):
    _, layer, shape, reference, kwargs = case
    with jax.enable_x64(True):
        x = _distinct_input(shape)
        params = _perturbed(layer.init(KEY, x))
        apply = lambda p, x: layer.apply(p, x, **kwargs)
        if mode == "jit":
            apply = jax.jit(apply)
        y = apply(params, x)
        assert y.dtype == jnp.float64
        assert y.shape == reference(params, x).shape
        assert_trees_close(y, reference(params, x))
        g = random_like(y, seed=5)
        loss = lambda f: (lambda p, x: jnp.vdot(f(p, x), g))
        grads = jax.grad(loss(apply), argnums=(0, 1))(params, x)
        expected = jax.grad(loss(reference), argnums=(0, 1))(params, x)
        assert_trees_close(grads, expected)


def _cnn():
    return layers.serial(layers.Conv2D(4, 3), layers.Relu(), layers.MaxPool2D(2),
                         layers.Conv2D(6, 3, padding="VALID"), layers.Relu(), layers.Flatten(),
                         layers.Dense(5))


def _cnn_reference(p, x):
    h = jnp.maximum(_conv(x, p["conv2d_0"]["w"]) + p["conv2d_0"]["b"], 0)
    h = _pool(h, 2, 2, lax.max)
    h = jnp.maximum(_conv(h, p["conv2d_1"]["w"], padding="VALID") + p["conv2d_1"]["b"], 0)
    h = h.reshape(h.shape[0], -1)
    return h @ p["dense_0"]["w"] + p["dense_0"]["b"]


def _two_branch():
    wide = layers.serial(layers.Dense(6), layers.Tanh())
    narrow = layers.serial(layers.Dense(3), layers.Sigmoid(), layers.Dense(6))
    return layers.serial(layers.parallel(wide, narrow, merge="sum"), layers.LayerNorm(),
                         layers.parallel(layers.Dense(2), layers.Dense(3), merge="concat"),
                         layers.residual(layers.Dense(4), layers.LeakyRelu(0.1), layers.Dense(5)))


def _two_branch_reference(p, x):
    dense = lambda q, h: h @ q["w"] + q["b"]
    fan = p["parallel_0"]
    wide = jnp.tanh(dense(fan["serial_0"]["dense_0"], x))
    narrow = dense(fan["serial_1"]["dense_1"],
                   jax.nn.sigmoid(dense(fan["serial_1"]["dense_0"], x)))
    h = _layer_norm(wide + narrow, p["layer_norm_0"]["scale"], p["layer_norm_0"]["offset"])
    h = jnp.concatenate([dense(p["parallel_1"]["dense_0"], h),
                         dense(p["parallel_1"]["dense_1"], h)], axis=-1)
    r = p["residual_0"]
    inner_ = dense(r["dense_0"], h)
    return h + dense(r["dense_1"], jnp.where(inner_ > 0, inner_, 0.1 * inner_))


MODELS = {
    "cnn": (_cnn, _cnn_reference, (2, 8, 8, 2)),
    "two_branch": (_two_branch, _two_branch_reference, (4, 5)),
}


def _model_loss(apply):
    return lambda p, x: jnp.sum(jnp.sin(apply(p, x)))


@pytest.mark.parametrize("name", MODELS)
def test_model_init_apply_grad_jvp_hvp_match_reference(name):
    make, reference, shape = MODELS[name]
    model = make()
    with jax.enable_x64(True):
        x = _distinct_input(shape)
        params = _perturbed(model.init(KEY, x))
        assert_trees_close(jax.jit(model.apply)(params, x), reference(params, x))
        loss, ref_loss = _model_loss(model.apply), _model_loss(reference)
        grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
        assert_trees_close(grads, jax.grad(ref_loss, argnums=(0, 1))(params, x))
        v = random_like(params, seed=9)
        tangent = jax.jvp(lambda p: model.apply(p, x), (params,), (v,))
        ref_tangent = jax.jvp(lambda p: reference(p, x), (params,), (v,))
        assert_trees_close(tangent, ref_tangent)
        hvp = lambda f: jax.jit(lambda p, v: jax.jvp(jax.grad(lambda q: f(q, x)), (p,), (v,))[1])
        assert_trees_close(hvp(loss)(params, v), hvp(ref_loss)(params, v), rtol=1e-9)


@pytest.mark.parametrize("name", MODELS)
def test_model_gradient_matches_central_differences(name):
    make, _, shape = MODELS[name]
    model = make()
    with jax.enable_x64(True):
        x = _distinct_input(shape)
        params = _perturbed(model.init(KEY, x))
        loss = jax.jit(_model_loss(model.apply))
        v = random_like(params, seed=4)
        step = 1e-6
        shifted = lambda s: loss(jax.tree.map(lambda p, d: p + s * d, params, v), x)
        numeric = (shifted(step) - shifted(-step)) / (2 * step)
        analytic = inner(jax.grad(loss)(params, x), v)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6)


def test_the_hand_written_rules_carry_the_model_gradient(monkeypatch):
    """Breaking one gate's backward rule changes the model's gradient, not its value."""
    matmul = difprog.gates.matmul
    doubled = lambda g, out, x, w: tuple(2 * c for c in matmul.backward(g, out, x, w))
    model = layers.serial(layers.Dense(3), layers.Tanh(), layers.Dense(2))
    x = _distinct_input((3, 4))
    params = model.init(KEY, x)
    loss = lambda p: jnp.sum(model.apply(p, x) ** 2)
    good = jax.value_and_grad(loss)(params)
    monkeypatch.setattr(difprog.gates, "matmul", matmul.with_rules(backward=doubled))
    bad = jax.value_and_grad(loss)(params)
    assert float(bad[0]) == float(good[0])
    np.testing.assert_allclose(bad[1]["dense_1"]["w"], 2 * good[1]["dense_1"]["w"], rtol=1e-6)


def test_same_key_gives_identical_params_and_other_keys_do_not():
    model, x = _cnn(), jnp.zeros((1, 8, 8, 2))
    first, again = model.init(jax.random.key(3), x), model.init(jax.random.key(3), x)
    other = model.init(jax.random.key(4), x)
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first["conv2d_0"]["w"], other["conv2d_0"]["w"])
    assert not np.array_equal(first["conv2d_0"]["w"], first["conv2d_1"]["w"][:, :, :2, :4])


def test_init_under_jit_and_from_shape_struct_match_eager_init():
    model = _cnn()
    x = jnp.zeros((2, 8, 8, 2))
    eager = model.init(KEY, x)
    assert_trees_close(jax.jit(model.init)(KEY, x), eager, rtol=0, atol=0)
    assert_trees_close(model.init(KEY, jax.ShapeDtypeStruct(x.shape, x.dtype)), eager, rtol=0,
                       atol=0)


def test_params_are_readable_nested_dicts():
    params = _cnn().init(KEY, jnp.zeros((1, 8, 8, 2)))
    assert jax.tree.map(jnp.shape, params) == {
        "conv2d_0": {"w": (3, 3, 2, 4), "b": (4,)},
        "conv2d_1": {"w": (3, 3, 4, 6), "b": (6,)},
        "dense_0": {"w": (24, 5), "b": (5,)},
    }
    named = layers.serial(layers.Dense(3, name="hidden"), layers.Relu(), layers.Dense(2),
                          layers.Dense(2, name="logits"))
    assert list(named.init(KEY, jnp.zeros((1, 4)))) == ["hidden", "dense_0", "logits"]


def test_params_dtype_follows_the_example_input():
    model = layers.serial(layers.Dense(3), layers.LayerNorm())
    assert {a.dtype for a in jax.tree.leaves(model.init(KEY, jnp.zeros((1, 4))))} == {
        jnp.dtype(jnp.float32)}
    with jax.enable_x64(True):
        assert {a.dtype for a in jax.tree.leaves(model.init(KEY, jnp.zeros((1, 4))))} == {
            jnp.dtype(jnp.float64)}
    with pytest.raises(difprog.DtypeError, match=r"layer 'dense_0'.*int32.*astype"):
        model.init(KEY, jnp.zeros((1, 4), jnp.int32))


def test_integer_images_are_refused_at_inference_with_how_to_convert():
    """uint8 images are not silently cast: 0..255 into a model trained on [0, 1] is wrong."""
    model = difprog.models.cnn()
    images = np.full((2, 8, 8, 1), 255, np.uint8)
    params = model.init(KEY, images.astype(np.float32))
    for run in (model.apply, jax.jit(model.apply)):
        with pytest.raises(difprog.DtypeError, match=r"layer 'conv2d_0'.*floating inputs.*uint8"
                           r".*\(2, 8, 8, 1\).*astype\(jnp.float32\) / 255") as raised:
            run(params, images)
        assert "derivative" not in str(raised.value)
    assert model.apply(params, images.astype(np.float32) / 255).shape == (2, 10)


def _weights_std(model, fan_in):
    params = model.init(KEY, jnp.zeros((1, fan_in)))
    return float(jnp.std(params["dense_0"]["w"]))


def test_default_initialisers_he_before_relu_glorot_otherwise():
    n, m = 400, 300
    he, glorot = math.sqrt(2 / n), math.sqrt(2 / (n + m))
    before_relu = layers.serial(layers.Dense(m), layers.Relu())
    before_leaky = layers.serial(layers.Dense(m), layers.LeakyRelu())
    before_tanh = layers.serial(layers.Dense(m), layers.Tanh())
    nested = layers.serial(layers.serial(layers.Dense(m)), layers.Relu())
    assert _weights_std(before_relu, n) == pytest.approx(he, rel=0.03)
    assert _weights_std(before_leaky, n) == pytest.approx(he, rel=0.03)
    assert _weights_std(layers.serial(layers.Dense(m)), n) == pytest.approx(glorot, rel=0.03)
    assert _weights_std(before_tanh, n) == pytest.approx(glorot, rel=0.03)
    nested_std = float(jnp.std(nested.init(KEY, jnp.zeros((1, n)))["serial_0"]["dense_0"]["w"]))
    assert nested_std == pytest.approx(he, rel=0.03)
    params = before_relu.init(KEY, jnp.zeros((1, n)))
    np.testing.assert_array_equal(params["dense_0"]["b"], 0)
    conv = layers.serial(layers.Conv2D(64, 3), layers.Relu()).init(KEY, jnp.zeros((1, 4, 4, 32)))
    assert float(jnp.std(conv["conv2d_0"]["w"])) == pytest.approx(math.sqrt(2 / 288), rel=0.03)


def test_initialisers_can_be_overridden_per_layer():
    model = layers.serial(
        layers.Dense(3, w_init=jax.nn.initializers.constant(0.5),
                     b_init=jax.nn.initializers.ones),
        layers.Dense(2))
    params = model.init(KEY, jnp.zeros((1, 4)))
    np.testing.assert_array_equal(params["dense_0"]["w"], 0.5)
    np.testing.assert_array_equal(params["dense_0"]["b"], 1)
    np.testing.assert_array_equal(params["dense_1"]["b"], 0)


def test_dropout_rate_is_the_probability_of_dropping():
    dropout = layers.Dropout(0.25)
    x = jnp.ones((200, 200))
    y = dropout.apply({}, x, key=KEY, train=True)
    assert float(jnp.mean(y == 0)) == pytest.approx(0.25, abs=0.01)
    np.testing.assert_allclose(np.unique(np.asarray(y)), [0, 1 / 0.75], rtol=1e-6)
    assert float(jnp.mean(y)) == pytest.approx(1.0, abs=0.02)
    assert dropout.apply({}, x) is x
    np.testing.assert_array_equal(layers.Dropout(0.0).apply({}, x, key=KEY, train=True), x)


def test_dropout_needs_a_key_in_training_and_keys_differ_per_layer():
    model = layers.serial(layers.Dropout(0.5), layers.Dropout(0.5, name="second"))
    x = jnp.ones((1, 64))
    with pytest.raises(difprog.ArgumentError, match=r"'dropout_0'.*PRNG key.*train=True"):
        model.apply({}, x, train=True)
    captured = model.run({}, x, key=KEY, train=True, capture=True).captured
    first = captured["dropout_0"] != 0
    second = captured["second"] != 0
    assert not np.array_equal(first, second | ~first)
    again = model.apply({}, x, key=KEY, train=True)
    np.testing.assert_array_equal(again, captured["second"])
    with pytest.raises(difprog.ArgumentError, match=r"rate.*probability of dropping"):
        layers.Dropout(1.0)


def test_models_are_plain_pytrees_for_vmap_and_optax():
    model = layers.serial(layers.Dense(8), layers.Relu(), layers.Dense(3))
    x = jax.random.normal(KEY, (16, 4))
    labels = jnp.arange(16) % 3
    ensemble = jax.vmap(model.init, in_axes=(0, None))(jax.random.split(KEY, 5), x)
    outputs = jax.vmap(model.apply, in_axes=(0, None))(ensemble, x)
    assert outputs.shape == (5, 16, 3)
    single = jax.tree.map(lambda a: a[2], ensemble)
    np.testing.assert_allclose(outputs[2], model.apply(single, x), rtol=1e-5, atol=1e-6)
    per_example = jax.vmap(model.apply, in_axes=(None, 0))(single, x)
    np.testing.assert_allclose(per_example, model.apply(single, x), rtol=1e-5, atol=1e-6)

    loss = lambda p: difprog.gates.softmax_cross_entropy(model.apply(p, x), labels)
    optimizer = optax.adam(0.05)
    state = optimizer.init(single)

    @jax.jit
    def step(params, state):
        value, grads = jax.value_and_grad(loss)(params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    params, first = single, None
    for _ in range(30):
        params, state, value = step(params, state)
        first = value if first is None else first
    assert float(value) < 0.5 * float(first)


def test_layer_unpacks_into_init_and_apply_like_stax():
    init, apply = layers.Dense(4)
    params = init(KEY, jnp.zeros((2, 3)))
    assert apply(params, jnp.ones((2, 3))).shape == (2, 4)


def test_capture_returns_inner_outputs_by_path():
    model = _two_branch()
    x = _distinct_input((4, 5)).astype(jnp.float32)
    params = model.init(KEY, x)
    y, captured, _ = model.run(params, x, capture=("layer_norm_0", "parallel_0/serial_1/dense_1"))
    assert sorted(captured) == ["layer_norm_0", "parallel_0/serial_1/dense_1"]
    assert captured["layer_norm_0"].shape == (4, 6)
    everything = jax.jit(lambda p, x: model.run(p, x, capture=True).captured)(params, x)
    np.testing.assert_allclose(everything["residual_0"], y, rtol=1e-6)
    assert "parallel_0/serial_0/tanh_0" in everything
    with pytest.raises(difprog.ArgumentError, match=r"cannot capture \['nope'\].*layer_norm_0"):
        model.run(params, x, capture=("nope",))
    with pytest.raises(difprog.ArgumentError, match=r"\['capture'\].*model\.run"):
        model.apply(params, x, capture=True)


def test_summary_lists_every_layer_with_shapes_and_counts():
    lines = []
    layers.summary(_cnn(), jnp.zeros((2, 8, 8, 2)), print_fn=lines.append)
    text = "\n".join(lines)
    assert lines[0].split() == ["layer", "kind", "output", "params"]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert list(rows) == ["conv2d_0", "relu_0", "max_pool2d_0", "conv2d_1", "relu_1",
                          "flatten_0", "dense_0", "total"]
    assert "(2, 8, 8, 4)" in rows["conv2d_0"] and rows["conv2d_0"].endswith(" 76")
    assert "Conv2D(6, 3, padding='VALID')" in rows["conv2d_1"]
    assert rows["dense_0"].endswith(" 125") and "(2, 5)" in rows["dense_0"]
    total = 3 * 3 * 2 * 4 + 4 + 3 * 3 * 4 * 6 + 6 + 24 * 5 + 5
    assert f"{total:,}" in rows["total"] and "KiB" in text


def test_summary_indents_nested_layers():
    lines = []
    layers.summary(_two_branch(), jnp.zeros((4, 5)), print_fn=lines.append)
    names = [re.match(r"\s*\S+", line).group() for line in lines[2:-1]]
    assert names[:3] == ["parallel_0", "  serial_0", "    dense_0"]
    assert "Parallel(merge='concat')" in lines[2 + names.index("parallel_1")]


# --- bad input: every error names the layer, what it expected and what it got ---------------

def _cnn_params():
    return _cnn().init(KEY, jnp.zeros((2, 8, 8, 2)))


BAD_INPUTS = [
    ("rank_3_into_conv_at_init", lambda: _cnn().init(KEY, jnp.zeros((8, 8, 2))),
     r"layer 'conv2d_0' \(Conv2D\(4, 3\)\) expects NHWC input of rank 4.*\(8, 8, 2\)"),
    ("rank_3_into_conv_at_apply", lambda: _cnn().apply(_cnn_params(), jnp.zeros((8, 8, 2))),
     r"'conv2d_0'.*rank 4.*\(8, 8, 2\)"),
    ("channels_at_apply", lambda: _cnn().apply(_cnn_params(), jnp.zeros((2, 8, 8, 3))),
     r"'conv2d_0/w' has shape \(3, 3, 2, 4\), but an input of shape \(2, 8, 8, 3\) needs "
     r"\(3, 3, 3, 4\)"),
    ("dense_wrong_features", lambda: _cnn().apply(_cnn_params(), jnp.zeros((2, 12, 12, 2))),
     r"layer 'dense_0'.*'dense_0/w' has shape \(24, 5\).*\(2, 96\) needs \(96, 5\)"),
    ("dense_scalar", lambda: layers.Dense(3).init(KEY, jnp.zeros(())),
     r"layer 'dense' \(Dense\(3\)\) expects an input of rank >= 1.*\(\)"),
    ("pool_too_small", lambda: layers.serial(layers.MaxPool2D(4)).init(
        KEY, jnp.zeros((1, 2, 2, 1))), r"layer 'max_pool2d_0'.*window does not fit"),
    ("pool_rank", lambda: layers.AvgPool2D(2).apply({}, jnp.zeros((4, 4))),
     r"layer 'avg_pool2d'.*rank 4.*\(4, 4\)"),
    ("layer_norm_scalar", lambda: layers.LayerNorm().init(KEY, jnp.zeros(())),
     r"layer 'layer_norm'.*rank >= 1"),
    ("residual_shape", lambda: layers.serial(layers.residual(layers.Dense(3))).init(
        KEY, jnp.zeros((1, 2))),
     r"layer 'residual_0'.*map \(1, 2\) to \(1, 3\); make the last layer output 2 "),
    ("parallel_sum_shapes", lambda: layers.parallel(layers.Dense(3), layers.Dense(2)).init(
        KEY, jnp.zeros((1, 2))), r"sums its branches.*'dense_0': \(1, 3\), 'dense_1': \(1, 2\)"),
    ("parallel_concat_shapes", lambda: layers.parallel(layers.Flatten(), layers.Relu(),
                                                       merge="concat").init(
        KEY, jnp.zeros((2, 3, 4))), r"concatenates.*'flatten_0': \(2, 12\), 'relu_0'"),
]

BAD_PARAMS = [
    ("missing_layer", lambda p: {k: v for k, v in p.items() if k != "dense_0"},
     r"layer 'dense_0'.*params\['dense_0'\] has keys \[\] but the layer needs \['b', 'w'\]"),
    ("missing_leaf", lambda p: {**p, "conv2d_1": {"w": p["conv2d_1"]["w"]}},
     r"params\['conv2d_1'\] has keys \['w'\] but the layer needs \['b', 'w'\]"),
    ("unknown_entry", lambda p: {**p, "conv2d_7": p["conv2d_0"]},
     r"params has entries \['conv2d_7'\] that belong to no layer"),
    ("wrong_shape", lambda p: {**p, "dense_0": {**p["dense_0"], "b": jnp.zeros(4)}},
     r"param 'dense_0/b' has shape \(4,\).*needs \(5,\)"),
    ("not_a_dict", lambda p: [p], r"params must be a dict keyed by its layers"),
]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_shapes_raise_shape_error_naming_the_layer(case):
    _, call, message = case
    with pytest.raises(difprog.ShapeError, match=message) as error:
        call()
    assert isinstance(error.value, ValueError)


@pytest.mark.parametrize("case", BAD_PARAMS, ids=[c[0] for c in BAD_PARAMS])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_mismatched_params_raise_shape_error_naming_the_key(case, jit):
    _, corrupt, message = case
    apply = jax.jit(_cnn().apply) if jit else _cnn().apply
    with pytest.raises(difprog.ShapeError, match=message):
        apply(corrupt(_cnn_params()), jnp.zeros((2, 8, 8, 2)))


@pytest.mark.parametrize("build, error, message", [
    (lambda: layers.serial(layers.Dense(3), layers.Dense), difprog.DtypeError,
     r"argument 1 is a type, not a layer"),
    (lambda: layers.serial(), difprog.ArgumentError, r"at least one layer"),
    (lambda: layers.serial(layers.Dense(2, name="a"), layers.Dense(2, name="a")),
     difprog.ArgumentError, r"distinct names.*\['a'\]"),
    (lambda: layers.Dense(0), difprog.ArgumentError, r"features must be a positive int"),
    (lambda: layers.Conv2D(4, (3, 0)), difprog.ArgumentError, r"kernel_size"),
    (lambda: layers.Conv2D(4, 3, padding="FULL"), difprog.ArgumentError, r"padding"),
    (lambda: layers.parallel(layers.Relu(), merge="max"), difprog.ArgumentError,
     r"Parallel: merge must be one of \['sum', 'concat'\], got 'max'"),
    (lambda: layers.Dense(2, name="a/b"), difprog.ArgumentError, r"name 'a/b'"),
])
def test_bad_construction_raises_a_difprog_error(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_gate_errors_inside_a_layer_name_the_layer_and_the_gate():
    model = layers.serial(layers.Dense(2), layers.MaxPool2D(2))
    with pytest.raises(difprog.ShapeError, match=r"layer 'max_pool2d_0'.*rank 4"):
        model.init(KEY, jnp.zeros((3, 4)))
    with pytest.raises(difprog.DtypeError, match=r"layer 'dense'.*must be an array"):
        layers.Dense(2).apply({}, "not an array")
