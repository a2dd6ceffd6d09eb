"""Seeing inside the language model: `apply(..., perturb=)` (gradients at a layer's output),
`viz.token_attribution` against jax.grad of a plain-jnp reference, causality, and its picture
(`explain` of a gpt training step: tests/graph/test_gpt_explain.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difprog import data, layers, models, viz
from difprog.errors import ArgumentError, DtypeError
from tests.models.test_gpt import _perturbed, reference_blocks, reference_embed

VOCAB = 13
IDS = jnp.array([[1, 5, 2, 12, 0, 3, 3, 7], [4, 4, 9, 1, 2, 8, 6, 0]], jnp.int32)


@pytest.fixture(scope="module")
def gpt():
    model = models.gpt(VOCAB, layers=2, heads=2, features=8, context=8)
    return model, _perturbed(model.init(jax.random.key(0), IDS))


def test_perturb_gives_the_gradient_at_a_layer_output():
    model = layers.serial(layers.Dense(4), layers.Tanh(), layers.Dense(3))
    x = jax.random.normal(jax.random.key(1), (2, 5))
    params = model.init(jax.random.key(0), x)
    captured = model.run(params, x, capture=("dense_0",)).captured
    hidden = captured["dense_0"]
    delta = jax.random.normal(jax.random.key(2), hidden.shape)
    moved = model.run(params, x, perturb={"dense_0": delta}).output
    rest = lambda h: jnp.tanh(h) @ params["dense_1"]["w"] + params["dense_1"]["b"]
    np.testing.assert_allclose(moved, rest(hidden + delta), rtol=1e-6)
    grad = jax.grad(lambda d: jnp.sum(model.run(params, x, perturb={"dense_0": d}).output**2))(
        jnp.zeros_like(hidden))
    np.testing.assert_allclose(grad, jax.grad(lambda h: jnp.sum(rest(h)**2))(hidden), rtol=1e-6)
    with pytest.raises(ArgumentError, match=r"cannot perturb \['dense_7'\].*paths are"):
        model.run(params, x, perturb={"dense_7": delta})


def test_token_attribution_is_gradient_times_embedding(gpt):
    model, params = gpt
    result = viz.token_attribution(model, params, IDS, position=5, target=[3, 11])
    embedded = reference_embed(params, IDS)
    chosen = lambda e: reference_blocks(params, e)[:, 5][jnp.arange(2), jnp.array([3, 11])].sum()
    expected = jnp.sum(jax.jit(jax.grad(chosen))(embedded) * embedded, -1)
    np.testing.assert_allclose(result.scores, expected, rtol=1e-4, atol=1e-6)
    assert result.position == 5 and result.targets.tolist() == [3, 11]
    assert np.all(np.asarray(result.scores)[:, 6:] == 0)  # causal: later tokens have no say


def test_token_attribution_defaults_to_the_prediction_at_the_last_position(gpt):
    model, params = gpt
    one = viz.token_attribution(model, params, IDS[1])
    logits = model.apply(params, IDS[1:])
    assert one.scores.shape == (8,) and one.position == 7
    assert int(one.targets[0]) == int(jnp.argmax(logits[0, -1]))
    both = viz.token_attribution(model, params, IDS)
    np.testing.assert_allclose(both.scores[1], one.scores, rtol=1e-5, atol=1e-7)
    assert np.all(np.asarray(both.scores) != 0)  # at the last position every token counts


def test_token_attribution_refuses_bad_input(gpt):
    model, params = gpt
    with pytest.raises(DtypeError, match="int token ids"):
        viz.token_attribution(model, params, IDS.astype(jnp.float32))
    for position in (8, -9, True, 1.0):
        with pytest.raises(ArgumentError, match=rf"token_attribution: position must be an int "
                                                rf"from -8 to 7, got {position!r}"):
            viz.token_attribution(model, params, IDS, position=position)
    with pytest.raises(ArgumentError, match="cannot capture"):
        viz.token_attribution(model, params, IDS, layer="missing")


def test_save_token_attribution_writes_a_png(gpt, tmp_path):
    model, params = gpt
    codec = data.Text("t", "char", 8, ("?", *"abcdef \nghij"), np.zeros(0, np.int32),
                      np.zeros(0, np.int32), (), ())
    result = viz.token_attribution(model, params, IDS[0])
    path = viz.save_token_attribution(codec, IDS[0], result, tmp_path / "a.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ArgumentError, match="one sequence's scores"):
        viz.save_token_attribution(codec, IDS, result, tmp_path / "b.png")
