"""The normalisation gates (difprog/gates/normalization.py): rms_norm by hand and against torch;
batch_norm against torch's training-mode batch_norm and as layer_norm of the transposed input.
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


def test_batch_norm_against_torch_in_training_mode():
    torch, F = torch_or_skip()
    with jax.enable_x64(True):
        rng = np.random.default_rng(4)
        for shape in ((6, 3), (2, 3, 4, 5)):
            x, g = rng.standard_normal(shape), rng.standard_normal(shape)
            scale, offset = rng.standard_normal(shape[-1]), rng.standard_normal(shape[-1])
            nc = lambda a: torch_tensor(torch, np.moveaxis(a, -1, 1))  # channels second
            tx, ts, to = nc(x), torch_tensor(torch, scale), torch_tensor(torch, offset)
            out = F.batch_norm(tx, None, None, ts, to, training=True, eps=1e-3)
            grads = torch.autograd.grad(out, (tx, ts, to),
                                        torch_tensor(torch, np.moveaxis(g, -1, 1), grad=False))
            value, vjp = jax.vjp(lambda x, s, o: gates.batch_norm(x, s, o, eps=1e-3),
                                 x, scale, offset)
            np.testing.assert_allclose(value, np.moveaxis(out.detach().numpy(), 1, -1),
                                       rtol=1e-12, atol=1e-12)
            mine = vjp(g)
            np.testing.assert_allclose(mine[0], np.moveaxis(grads[0].numpy(), 1, -1),
                                       rtol=1e-10, atol=1e-12)
            for a, b in zip(mine[1:], grads[1:]):
                np.testing.assert_allclose(a, b.numpy(), rtol=1e-11)


def test_batch_norm_is_layer_norm_of_each_channel():
    """Standardising each channel over the batch is layer_norm of the channel's values: the
    values, both gradients and the tangent agree (float64)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(5)
        x, g, dx = (rng.standard_normal((4, 3, 5)) for _ in range(3))
        ones, zeros = np.ones(5), np.zeros(5)
        by_channel = lambda x: gates.layer_norm(x.reshape(-1, 5).T, np.ones(12), np.zeros(12)
                                              ).T.reshape(x.shape)
        value, vjp = jax.vjp(lambda x: gates.batch_norm(x, ones, zeros), x)
        ref_value, ref_vjp = jax.vjp(by_channel, x)
        np.testing.assert_allclose(value, ref_value, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(vjp(g)[0], ref_vjp(g)[0], rtol=1e-10, atol=1e-12)
        tangent = jax.jvp(lambda x: gates.batch_norm(x, ones, zeros), (x,), (dx,))[1]
        np.testing.assert_allclose(tangent, jax.jvp(by_channel, (x,), (dx,))[1], atol=1e-12)


def test_batch_norm_needs_a_batch_axis():
    with pytest.raises(ShapeError, match=r"'batch_norm'.*rank >= 2.*\[4\]"):
        gates.batch_norm(jnp.ones(4), jnp.ones(4), jnp.ones(4))
    with pytest.raises(ShapeError, match=r"'batch_norm'.*rank >= 2.*\[\]"):
        gates.batch_norm(jnp.ones(()), jnp.ones(()), jnp.ones(()))
    with pytest.raises(ShapeError, match=r"'batch_norm': scale must have shape \[3\]"):
        gates.batch_norm(jnp.ones((2, 3)), jnp.ones(2), jnp.ones(3))
