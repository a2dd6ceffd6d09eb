"""difprog.lm.generate on a small untrained model, and the repetition figures its samples are
judged by (no training: tests/train/test_fit_lm.py trains and samples real language models)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difprog import layers, lm
from difprog.errors import ArgumentError

MODEL = layers.serial(layers.Embedding(7, 8), layers.Dense(7))
PARAMS = MODEL.init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))


def _generate(temperature, seed=3, top_k=None, top_p=None, params=PARAMS, length=12):
    return lm.generate(MODEL, params, [1, 2], length, 4, temperature=temperature, top_k=top_k,
                       top_p=top_p, key=jax.random.key(seed))


def test_temperatures_too_small_for_float32_draw_the_most_likely_token():
    """logits / 1e-40 overflows float32 (inf - inf is NaN, and NaN logits draw any id); the draw
    works in log space from the largest logit, so it gives what temperature 0 gives."""
    greedy = _generate(0)
    for temperature, top_k in [(1e-40, None), (1e-30, 2)]:
        np.testing.assert_array_equal(_generate(temperature, top_k=top_k), greedy)


def test_sampling_at_temperature_one_follows_the_seed_and_is_not_greedy():
    first = _generate(1.0, seed=5)
    np.testing.assert_array_equal(_generate(1.0, seed=5), first)
    assert not np.array_equal(first, _generate(0))


def _uniform_but(probabilities):
    """Params under which every context gives the next-token distribution `probabilities`."""
    logits = np.log(np.asarray(probabilities, np.float32))
    return {**PARAMS, "dense_0": {"w": jnp.zeros_like(PARAMS["dense_0"]["w"]),
                                  "b": jnp.asarray(logits)}}


def test_top_p_draws_only_from_the_fewest_tokens_holding_that_mass():
    probabilities = [0.5, 0.3, 0.1, 0.05, 0.03, 0.01, 0.01]
    params = _uniform_but(probabilities)
    drawn = np.concatenate([_generate(1.0, seed=s, top_p=0.79, params=params, length=64)
                            for s in range(4)])
    assert set(drawn) == {0, 1}  # 0.5 + 0.3 passes 0.79: the third is out
    drawn = np.concatenate([_generate(1.0, seed=s, top_p=0.81, params=params, length=64)
                            for s in range(4)])
    assert set(drawn) == {0, 1, 2}
    greedy = _generate(1.0, top_p=1e-6, params=params)
    assert set(greedy) == {0}  # the most likely token is always in the nucleus
    np.testing.assert_array_equal(_generate(1.0, seed=7, top_p=1.0, params=params),
                                  _generate(1.0, seed=7, params=params))


def test_top_p_is_taken_after_the_temperature():
    params = _uniform_but([0.6, 0.4, 1e-9, 1e-9, 1e-9, 1e-9, 1e-9])
    cold = np.concatenate([_generate(0.1, seed=s, top_p=0.9, params=params, length=64)
                           for s in range(2)])
    assert set(cold) == {0}  # at 0.1, token 0 holds more than 0.98 of the mass alone
    warm = np.concatenate([_generate(1.0, seed=s, top_p=0.9, params=params, length=64)
                           for s in range(2)])
    assert set(warm) == {0, 1}


def test_repetition_counts_the_longest_run_and_the_distinct_ngrams():
    assert lm.repetition("aaaaaaa") == lm.Repetition(7, 0.25)
    assert lm.repetition("def f(x):") == lm.Repetition(1, 1.0)
    assert lm.repetition("ab" * 6, n=2) == lm.Repetition(1, 2 / 11)
    assert lm.repetition("x = 1\n" + " " * 12 + "y", n=1).longest_run == 12
    with pytest.raises(ArgumentError, match="at least n=4"):
        lm.repetition("abc")


def test_stretches_are_evenly_spaced_from_start_to_end():
    text = "".join(chr(ord("a") + i % 26) for i in range(100))
    parts = lm.stretches(text, 10, 4)
    assert parts == [text[0:10], text[30:40], text[60:70], text[90:100]]
    assert lm.stretches(text, 100, 3) == [text] * 3
    with pytest.raises(ArgumentError, match="fewer than length=101"):
        lm.stretches(text, 101, 2)


def test_generate_refuses_bad_settings_by_name():
    for bad, message in (({"top_p": 0.0}, "top_p must be"), ({"top_p": 1.5}, "top_p must be"),
                         ({"top_p": float("nan")}, "top_p must be"),
                         ({"top_k": 0}, "top_k must be"),
                         ({"top_k": 8}, "top_k=8 is more than the model's 7 tokens"),
                         ({"temperature": -1.0}, "temperature must be")):
        with pytest.raises(ArgumentError, match=message):
            _generate(**{"temperature": 1.0, **bad})
