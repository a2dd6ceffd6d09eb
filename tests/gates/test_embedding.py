"""The embedding gate (difprog/gates/embedding.py): rows and scatter-added gradients with repeated
ids, out-of-range ids (a LabelError eagerly, NaN under jit), ids without a derivative, torch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difprog import gates
from difprog.errors import DtypeError, LabelError, ShapeError
from tests.conftest import torch_or_skip, torch_tensor


def test_embedding_rows_and_gradient_with_repeated_ids():
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        table, g = rng.standard_normal((5, 3)), rng.standard_normal((2, 3, 3))
        ids = np.array([[0, 2, 2], [4, 2, 0]])
        np.testing.assert_array_equal(gates.embedding(table, ids), table[ids])
        (gtable,) = jax.vjp(lambda t: gates.embedding(t, ids), table)[1](g)
        expected = np.zeros_like(table)
        np.add.at(expected, ids, g)
        np.testing.assert_allclose(gtable, expected, rtol=1e-14)
        assert expected[2].any() and not expected[1].any()
        dtable = rng.standard_normal(table.shape)
        np.testing.assert_allclose(jax.jvp(lambda t: gates.embedding(t, ids), (table,),
                                           (dtable,))[1], dtable[ids])


def test_embedding_of_a_scalar_id_and_under_vmap():
    table = jnp.arange(12.0).reshape(4, 3)
    np.testing.assert_array_equal(gates.embedding(table, 2), table[2])
    ids = jnp.array([[1, 3], [0, 0]])
    np.testing.assert_array_equal(jax.vmap(gates.embedding, (None, 0))(table, ids), table[ids])
    grads = jax.vmap(jax.grad(lambda t, i: jnp.sum(gates.embedding(t, i))), (None, 0))(table, ids)
    np.testing.assert_array_equal(grads[0], [[0] * 3, [1] * 3, [0] * 3, [1] * 3])
    np.testing.assert_array_equal(grads[1], [[2] * 3, [0] * 3, [0] * 3, [0] * 3])


@pytest.mark.parametrize("bad", [5, -1, 2**31 - 1])
def test_out_of_range_ids_are_a_label_error_eagerly(bad):
    table, ids = jnp.ones((5, 2)), jnp.array([0, bad, 3])
    with pytest.raises(LabelError, match=rf"'embedding'.*\[0, 5\).*\[{bad}\]"):
        gates.embedding(table, ids)
    with pytest.raises(LabelError, match=r"'embedding'"):
        jax.grad(lambda t: jnp.sum(gates.embedding(t, ids)))(table)
    with pytest.raises(LabelError, match=r"'embedding'"):
        jax.jvp(lambda t: gates.embedding(t, ids), (table,), (table,))


_embedding_jit = jax.jit(lambda t, i: (gates.embedding(t, i),
                                       jax.grad(lambda t: jnp.sum(gates.embedding(t, i)))(t),
                                       jax.jvp(lambda t: gates.embedding(t, i), (t,), (t,))[1]))


@pytest.mark.parametrize("bad", [5, -1, 2**31 - 1])
def test_out_of_range_ids_give_nan_under_jit(bad):
    value, grad, tangent = _embedding_jit(jnp.ones((5, 2)), jnp.array([0, bad, 3]))
    for rows in map(np.asarray, (value, tangent)):
        assert np.isnan(rows[1]).all() and np.isfinite(rows[[0, 2]]).all()
    assert np.isnan(grad).all()
    value, grad, tangent = _embedding_jit(jnp.ones((5, 2)), jnp.array([0, 4, 3]))
    assert np.isfinite(value).all() and np.isfinite(grad).all() and np.isfinite(tangent).all()


def test_embedding_refuses_float_ids_and_a_table_not_of_rank_two():
    with pytest.raises(DtypeError, match=r"'embedding'.*ids.*integer.*float32"):
        gates.embedding(jnp.ones((5, 2)), jnp.array([0.0, 1.0]))
    with pytest.raises(DtypeError, match=r"'embedding'.*ids.*integer.*bool"):
        gates.embedding(jnp.ones((5, 2)), jnp.array([True]))
    with pytest.raises(ShapeError, match=r"'embedding'.*table.*\[5\]"):
        gates.embedding(jnp.ones(5), jnp.array([0]))


def test_embedding_ids_get_no_derivative():
    grad = jax.grad(lambda t, i: jnp.sum(gates.embedding(t, i)), (0, 1), allow_int=True)(
        jnp.ones((3, 2)), jnp.array([0, 2]))
    assert grad[1].dtype == jax.dtypes.float0


def test_embedding_against_torch_with_repeated_ids():
    torch, F = torch_or_skip()
    with jax.enable_x64(True):
        rng = np.random.default_rng(4)
        table, ids = rng.standard_normal((6, 3)), np.array([[1, 5, 1], [1, 0, 5]])
        g = rng.standard_normal((2, 3, 3))
        tt = torch_tensor(torch, table)
        out = F.embedding(torch.tensor(ids), tt)
        (grad,) = torch.autograd.grad(out, tt, torch_tensor(torch, g, grad=False))
        value, vjp = jax.vjp(lambda t: gates.embedding(t, ids), table)
        np.testing.assert_array_equal(value, out.detach().numpy())
        np.testing.assert_allclose(vjp(g)[0], grad.numpy(), rtol=1e-14)
