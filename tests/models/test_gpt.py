"""models.gpt and layers.PositionEmbedding: the transformer against a plain-jax.numpy reference
with the same params (values and gradients, float32 and float64), causality, settings, errors,
and a tiny model overfitting a tiny text."""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import difprog
from difprog import data, gates, layers, models
from tests.conftest import as_dtype, assert_trees_close, random_like

KEY = jax.random.key(0)
VOCAB, CONTEXT = 11, 8
IDS = jnp.array([[1, 5, 2, 10, 0, 3, 3, 7], [4, 4, 9, 1, 2, 8, 6, 0]], jnp.int32)


def _model(**settings):
    return models.gpt(VOCAB, **{"layers": 2, "heads": 2, "features": 8, "context": CONTEXT,
                                **settings})


def _norm(p, x, kind):
    if kind == "rms":
        return x / jnp.sqrt(jnp.mean(x * x, -1, keepdims=True) + 1e-6) * p["scale"]
    mean = jnp.mean(x, -1, keepdims=True)
    var = jnp.mean((x - mean) ** 2, -1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + 1e-5) * p["scale"] + p["offset"]


def _attention(p, x, heads):
    *lead, seq, features = x.shape
    split = lambda h: h.reshape(*lead, seq, heads, features // heads)
    q, k, v = (split(x @ p[f"w{n}"] + p[f"b{n}"]) for n in "qkv")
    scores = jnp.einsum("...qhd,...khd->...hqk", q, k) / math.sqrt(features // heads)
    scores = jnp.where(jnp.tril(jnp.ones((seq, seq), bool)), scores, -jnp.inf)
    mixed = jnp.einsum("...hqk,...khd->...qhd", jax.nn.softmax(scores, -1), v)
    return mixed.reshape(*lead, seq, features) @ p["wo"] + p["bo"]


def reference(params, ids, heads=2, norm="layer", approximate=False):
    """The transformer in plain jax.numpy, reading the same params."""
    return reference_blocks(params, reference_embed(params, ids), heads, norm, approximate)


def reference_embed(params, ids):
    """The token plus position embeddings: the residual stream entering the first block."""
    return params["embedding"]["table"][ids] + params["position"]["table"][:ids.shape[-1]]


def reference_blocks(params, x, heads=2, norm="layer", approximate=False):
    """The blocks, final norm and head applied to embeddings x, in plain jax.numpy."""
    blocks = sorted((k for k in params if k.startswith("block_")), key=lambda k: int(k[6:]))
    kind = "rms_norm_0" if norm == "rms" else "layer_norm_0"
    for block in blocks:
        a, m = params[block]["attention"], params[block]["mlp"]
        x = x + _attention(a["multi_head_attention_0"], _norm(a[kind], x, norm), heads)
        h = _norm(m[kind], x, norm) @ m["dense_0"]["w"] + m["dense_0"]["b"]
        h = jax.nn.gelu(h, approximate=approximate)
        x = x + h @ m["dense_1"]["w"] + m["dense_1"]["b"]
    x = _norm(params["norm"], x, norm)
    return x @ params["head"]["w"] + params["head"]["b"]


def _perturbed(params, scale=0.3):
    """Init params plus noise, so unit scales and zero biases do not hide a wrong gradient."""
    return jax.tree.map(lambda a, r: a + scale * r, params, random_like(params, seed=3))


@pytest.fixture(scope="module")
def default():
    """The default small model, perturbed params and its jitted apply (shared: init compiles)."""
    model = _model()
    return model, _perturbed(model.init(KEY, IDS)), jax.jit(model.apply)


@pytest.mark.parametrize("settings", [{}, {"norm": "rms", "gelu_approximate": True,
                                           "heads": 4, "mlp_ratio": 2}],
                         ids=["layer-norm", "rms-tanh-4-heads"])
def test_gpt_matches_reference_value_and_gradient_float32(settings, default):
    model, params, _ = default
    if settings:
        model = _model(**settings)
        params = _perturbed(model.init(KEY, IDS))
    ref = lambda p: reference(p, IDS, settings.get("heads", 2), settings.get("norm", "layer"),
                              settings.get("gelu_approximate", False))
    logits = jax.jit(model.apply)(params, IDS)
    assert logits.shape == (2, CONTEXT, VOCAB) and logits.dtype == jnp.float32
    np.testing.assert_allclose(logits, ref(params), rtol=1e-5, atol=1e-5)
    g = random_like(logits, seed=4)
    grads = jax.jit(jax.grad(lambda p: jnp.vdot(model.apply(p, IDS), g)))(params)
    expected = jax.jit(jax.grad(lambda p: jnp.vdot(ref(p), g)))(params)
    scale = max(float(jnp.max(jnp.abs(e))) for e in jax.tree.leaves(expected))
    assert_trees_close(grads, expected, rtol=1e-4, atol=1e-4 * scale)


def test_gpt_gradient_matches_reference_float64():
    model = _model(norm="rms")
    with jax.enable_x64(True):
        params = as_dtype(_perturbed(model.init(KEY, IDS)), jnp.float64)
        logits = jax.jit(model.apply)(params, IDS)
        assert logits.dtype == jnp.float64
        assert_trees_close(logits, reference(params, IDS, norm="rms"))
        g = random_like(logits, seed=4)
        grads = jax.jit(jax.grad(lambda p: jnp.vdot(model.apply(p, IDS), g)))(params)
        expected = jax.jit(jax.grad(lambda p: jnp.vdot(reference(p, IDS, norm="rms"), g)))(
            params)
        assert_trees_close(grads, expected, rtol=1e-9, atol=1e-11)


def test_gpt_is_causal_and_takes_shorter_sequences(default):
    model, params, apply = default
    base = apply(params, IDS)
    for t in (1, 4, 7):
        changed = IDS.at[:, t:].set((IDS[:, t:] + 1) % VOCAB)
        logits = apply(params, changed)
        np.testing.assert_array_equal(logits[:, :t], base[:, :t])
        assert not np.allclose(logits[:, t], base[:, t])
    short = apply(params, IDS[:, :3])  # fewer tokens than the context: same prefix
    np.testing.assert_allclose(short, base[:, :3], rtol=1e-5, atol=1e-6)
    assert jax.eval_shape(model.apply, params, IDS[0]).shape == (CONTEXT, VOCAB)  # no batch axis


def test_gpt_params_init_and_summary(capsys):
    model = _model(layers=3)
    params = model.init(KEY, IDS)
    assert list(params) == ["embedding", "position", "block_0", "block_1", "block_2", "norm",
                            "head"]
    assert params["position"]["table"].shape == (CONTEXT, 8)
    mlp = params["block_0"]["mlp"]
    assert mlp["dense_0"]["w"].shape == (8, 32) and mlp["dense_1"]["w"].shape == (32, 8)
    assert 0.015 < float(jnp.std(params["head"]["w"])) < 0.025  # normal(0.02)
    out = np.concatenate([params[f"block_{i}"]["mlp"]["dense_1"]["w"].ravel() for i in range(3)])
    assert abs(float(np.std(out)) - 0.02 / math.sqrt(6)) < 0.002  # scaled by depth
    attention = [params[f"block_{i}"]["attention"]["multi_head_attention_0"] for i in range(3)]
    out = np.concatenate([a["wo"].ravel() for a in attention])
    assert abs(float(np.std(out)) - 0.02 / math.sqrt(6)) < 0.002  # scaled by depth too
    assert 0.015 < float(np.std(np.concatenate([a["wq"].ravel() for a in attention]))) < 0.025
    assert all(float(jnp.abs(b).max()) == 0 for path, b in
               jax.tree_util.tree_leaves_with_path(params) if jax.tree_util.keystr(path)[-3:-2]
               == "b")
    layers.summary(model, IDS)
    table = capsys.readouterr().out
    for row in ("embedding", "position", "block_2", "attention", "multi_head_attention_0",
                "MultiHeadAttention(2, causal=True)", "mlp", "norm", "head", "(2, 8, 11)"):
        assert row in table
    assert f"{sum(p.size for p in jax.tree.leaves(params)):,}" in table


def test_gpt_dropout_acts_in_training_only(default):
    model = _model(dropout=0.5)
    _, params, apply = default
    assert repr(model.layers[2]) == "Dropout(0.5)"
    assert jax.tree.structure(model.init(KEY, IDS)) == jax.tree.structure(params)
    plain = jax.jit(model.apply)(params, IDS)
    np.testing.assert_allclose(plain, apply(params, IDS), rtol=1e-6)
    trained = jax.jit(lambda p, k: model.apply(p, IDS, key=k, train=True))(
        params, jax.random.key(1))
    assert not np.allclose(trained, plain)


def test_longer_sequences_than_the_context_are_refused(default):
    model, params, _ = default
    long = jnp.zeros((1, CONTEXT + 1), jnp.int32)
    with pytest.raises(difprog.ShapeError, match=r"layer 'position' .*up to 8 tokens.*"
                                                 r"\(1, 9, 8\).*longer context") as e:
        model.apply(params, long)
    assert "\n" not in str(e.value)
    with pytest.raises(difprog.ShapeError, match="up to 8 tokens"):
        model.init(KEY, long)
    with pytest.raises(difprog.DtypeError, match="integer ids"):
        model.apply(params, IDS.astype(jnp.float32))


def test_position_embedding_adds_rows_and_its_gradient_is_the_embedding_gate():
    layer = layers.PositionEmbedding(5)
    x = jax.random.normal(KEY, (3, 4, 2))
    params = layer.init(KEY, x)
    table = params["table"]
    assert table.shape == (5, 2) and repr(layer) == "PositionEmbedding(5)"
    np.testing.assert_array_equal(layer.apply(params, x), x + table[:4])
    g = jax.random.normal(jax.random.key(1), (3, 4, 2))
    grad = jax.grad(lambda p: jnp.vdot(layer.apply(p, x), g))(params)["table"]
    np.testing.assert_allclose(grad[:4], g.sum(0), rtol=1e-6)
    np.testing.assert_array_equal(grad[4], 0)
    explained = difprog.explain(lambda t: jnp.sum(layer.apply({"table": t}, x)), table)
    assert "embedding" in str(explained)
    with pytest.raises(difprog.ArgumentError, match="context must be a positive int"):
        layers.PositionEmbedding(0)
    with pytest.raises(difprog.ShapeError, match="rank >= 2"):
        layer.apply(params, jnp.zeros(2))


@pytest.mark.parametrize("kwargs, match", [
    ({"vocab": 0}, "vocab must be a positive int, got 0"),
    ({"layers": 1.0}, "layers must be a positive int"),
    ({"heads": 3}, "heads=3 must divide features=8"),
    ({"context": True}, "context must be a positive int, got True"),
    ({"mlp_ratio": 0}, "mlp_ratio must be a positive number"),
    ({"mlp_ratio": float("nan")}, "mlp_ratio must be a positive number"),
    ({"norm": "batch"}, r"norm must be one of \['layer', 'rms'\], got 'batch'"),
    ({"dropout": 1.0}, r"rate .* \[0, 1\)"),
    ({"gelu_approximate": "tanh"}, "gelu_approximate must be True or False"),
])
def test_bad_settings_are_refused(kwargs, match):
    settings = {"vocab": VOCAB, "layers": 1, "heads": 2, "features": 8, **kwargs}
    with pytest.raises(difprog.ArgumentError, match=match):
        models.gpt(**settings)


def test_gpt_is_not_a_command_line_model_yet():
    assert "gpt" not in models.MODELS


@pytest.mark.slow
def test_tiny_gpt_overfits_a_tiny_text(tmp_path):
    path = tmp_path / "pangram.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    corpus = data.text(path, context=16)
    model = models.gpt(corpus.vocab_size, layers=1, heads=2, features=32, context=16)
    params = model.init(KEY, jnp.zeros((1, 16), jnp.int32))
    optimizer = optax.adamw(1e-2, weight_decay=0.0)
    state = optimizer.init(params)
    loss = lambda p, x, y: gates.softmax_cross_entropy(model.apply(p, x), y)

    @jax.jit
    def step(params, state, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    start = time.perf_counter()
    for i in range(300):
        x, y = data.text_batch(jax.random.key(i), corpus, 16)
        params, state, value = step(params, state, x, y)
    elapsed = time.perf_counter() - start
    # Past the first few tokens (whose successor the context cannot tell) the text is certain.
    x, y = next(data.text_windows(corpus, 64))
    late = gates.softmax_cross_entropy(model.apply(params, x)[:, 8:], y[:, 8:])
    assert float(late) < 0.05, float(late)
    assert float(value) < 0.5
    assert elapsed < 60, elapsed
