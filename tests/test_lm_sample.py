"""difprog.lm.generate on a small untrained model (no training: tests/train/test_fit_lm.py trains
and samples real language models)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from difprog import layers, lm

MODEL = layers.serial(layers.Embedding(7, 8), layers.Dense(7))
PARAMS = MODEL.init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))


def _generate(temperature, seed=3, top_k=None):
    return lm.generate(MODEL, PARAMS, [1, 2], 12, 4, temperature=temperature, top_k=top_k,
                       key=jax.random.key(seed))


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
