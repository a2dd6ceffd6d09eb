"""The reductions and the softmax family (difprog/gates/reductions.py) in numerically stable forms:
finite values, gradients and tangents for |x| up to 1e4 in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difprog import gates
from tests.conftest import EXTREME_VALUES as X


@pytest.mark.parametrize("name", ["logsumexp", "log_softmax", "softmax"])
def test_softmax_family(name):
    gate = gates.ALL[name]
    x = jnp.stack([X, -X, jnp.full(7, 1e4)])
    out = gate(x)
    assert np.all(np.isfinite(out))
    grad = jax.grad(lambda x: jnp.sum(jnp.sin(gate(x))))(x)
    assert np.all(np.isfinite(grad))
    tangent = jax.jvp(gate, (x,), (jnp.ones_like(x),))[1]
    assert np.all(np.isfinite(tangent))


def test_logsumexp_values():
    np.testing.assert_allclose(gates.logsumexp(jnp.array([1e4, -1e4])), 1e4)
    np.testing.assert_allclose(gates.logsumexp(jnp.array([1e4, 1e4])), 1e4 + np.log(2), rtol=1e-7)
