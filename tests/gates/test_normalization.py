"""The normalisation gates (difprog/gates/normalization.py): rms_norm by hand and against torch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difprog import gates
from difprog.errors import ShapeError
from tests.conftest import torch_or_skip, torch_tensor


def test_rms_norm_by_hand():
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        x, scale, g = rng.standard_normal((2, 3, 5)), rng.standard_normal(5), \
            rng.standard_normal((2, 3, 5))
        eps = 1e-3
        r = np.sqrt(np.mean(x * x, -1, keepdims=True) + eps)
        np.testing.assert_allclose(gates.rms_norm(x, scale, eps=eps), x / r * scale, rtol=1e-13)
        gx, gscale = jax.vjp(lambda x, s: gates.rms_norm(x, s, eps=eps), x, scale)[1](g)
        gh = g * scale
        ref_gx = gh / r - x * np.sum(gh * x, -1, keepdims=True) / (5 * r**3)
        np.testing.assert_allclose(gx, ref_gx, rtol=1e-12)
        np.testing.assert_allclose(gscale, np.sum(g * x / r, (0, 1)), rtol=1e-12)


def test_rms_norm_default_eps_and_errors():
    x = jnp.ones((2, 4))
    np.testing.assert_allclose(gates.rms_norm(x, jnp.ones(4)), 1 / np.sqrt(1 + 1e-6), rtol=1e-6)
    with pytest.raises(ShapeError, match=r"'rms_norm': scale must have shape \[4\].*got \[3\]"):
        gates.rms_norm(x, jnp.ones(3))
    with pytest.raises(ShapeError, match=r"'rms_norm'.*scalar"):
        gates.rms_norm(jnp.ones(()), jnp.ones(()))
    with pytest.raises(ValueError, match=r"'rms_norm'.*'eps'.*-1"):
        gates.rms_norm(x, jnp.ones(4), eps=-1)


def test_rms_norm_against_torch():
    torch, F = torch_or_skip()
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        x, scale, g = rng.standard_normal((2, 3, 4)), rng.standard_normal(4), \
            rng.standard_normal((2, 3, 4))
        for eps in (1e-6, 0.1):
            tx, ts = torch_tensor(torch, x), torch_tensor(torch, scale)
            out = F.rms_norm(tx, (4,), ts, eps=eps)
            grads = torch.autograd.grad(out, (tx, ts), torch_tensor(torch, g, grad=False))
            value, vjp = jax.vjp(lambda x, s, eps=eps: gates.rms_norm(x, s, eps=eps), x, scale)
            np.testing.assert_allclose(value, out.detach().numpy(), rtol=1e-12)
            for mine, theirs in zip(vjp(g), grads):
                np.testing.assert_allclose(mine, theirs.numpy(), rtol=1e-11)
