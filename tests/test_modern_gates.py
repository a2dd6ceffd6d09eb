"""The gates of issue 17 (items 2 and 3): gelu's tanh form, softplus's beta and threshold, power
with an array exponent, rms_norm and embedding, against independent float64 references
(jax.nn, hand formulas and, where installed, torch), their conventions at the edges (x = 0 and
x < 0 for power, large |x|, out-of-range ids), and every check point under jax.vmap.

test_gates.py runs difprog.check_gate (reverse, forward, finite differences and second order,
jitted) at every check point of every gate, so each option here is checked to second order
there; the generic jit, vmap and dtype tests run at the first point only, hence the vmap test
over all points below.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tests.conftest import as_dtype, assert_trees_close, bound_arguments, random_like
from scipy.special import expit

from difprog import gates
from difprog.errors import DtypeError, LabelError, ShapeError
from difprog.gates import check_points

NEW = ["gelu", "softplus", "power", "rms_norm", "embedding"]
ABOVE = 1e4  # the activations stay finite, values and gradients, for |x| up to this


def _grad(f, argnums=0):
    return jax.grad(lambda *a: jnp.sum(f(*a)), argnums)


def _cases():
    for name in NEW:
        for i in range(len(check_points(name))):
            yield pytest.param(name, i, id=f"{name}-{i}")


@pytest.mark.parametrize("name, index", list(_cases()))
def test_every_point_under_vmap_matches_autodiff_of_forward(name, index):
    """A batch of two copies of each point (one perturbed) through jax.vmap, gradients and
    tangents, against JAX's autodiff of the forward."""
    gate = gates.ALL[name]
    with jax.enable_x64(True):
        inputs, others = bound_arguments(gate, *check_points(name)[index])
        inputs = as_dtype(inputs, jnp.float64)
        batch = jax.tree.map(lambda p, q: jnp.stack([p, p + 0.01 * q]), inputs,
                             random_like(inputs, seed=4))
        x, v = tuple(batch.values()), tuple(random_like(batch, seed=5).values())
        names = list(inputs)
        arrays = {k: jnp.stack([w, w]) for k, w in others.items() if k in gate.array_names}
        static = {k: w for k, w in others.items() if k not in arrays}

        def run(fn):
            f = lambda a, *x: fn(**dict(zip(names, x)), **a, **static)
            grad = jax.grad(lambda a, *x: jnp.sum(jnp.sin(f(a, *x))), tuple(range(1, len(x) + 1)))
            jvp = lambda a, x, v: jax.jvp(lambda *x: f(a, *x), x, v)[1]
            return jax.vmap(grad)(arrays, *x), jax.vmap(jvp)(arrays, x, v)

        assert_trees_close(jax.jit(lambda: run(gate))(), run(gate.forward))


# --- gelu ---------------------------------------------------------------------------------------

def test_gelu_is_exact_by_default_and_tanh_with_approximate():
    with jax.enable_x64(True):
        x = jnp.linspace(-6.0, 6.0, 41)
        for approximate in (False, True):
            ref = lambda x, a=approximate: jax.nn.gelu(x, approximate=a)
            kwargs = {"approximate": True} if approximate else {}
            # atol: jax.nn.gelu's 1 + tanh(u) cancels for x << 0 (ours is sigmoid(2 u))
            np.testing.assert_allclose(gates.gelu(x, **kwargs), ref(x), rtol=1e-13, atol=1e-14)
            gelu = lambda x, kwargs=kwargs: gates.gelu(x, **kwargs)
            np.testing.assert_allclose(_grad(gelu)(x), _grad(ref)(x), rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(jax.jvp(gelu, (x,), (jnp.ones_like(x),))[1],
                                       _grad(ref)(x), rtol=1e-12, atol=1e-14)
        assert not np.allclose(gates.gelu(x), jax.nn.gelu(x))  # jax.nn's default is tanh


def test_gelu_tanh_form_by_hand():
    with jax.enable_x64(True):
        x = np.array([-3.0, -0.7, 0.0, 0.4, 2.5])
        u = math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)
        t = np.tanh(u)
        slope = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * math.sqrt(2 / math.pi) * (
            1 + 3 * 0.044715 * x * x)
        gelu = lambda x: gates.gelu(x, approximate=True)
        np.testing.assert_allclose(gelu(jnp.asarray(x)), 0.5 * x * (1 + t), rtol=1e-14)
        np.testing.assert_allclose(_grad(gelu)(jnp.asarray(x)), slope, rtol=1e-13)


@pytest.mark.parametrize("approximate", [False, True])
def test_gelu_is_finite_for_large_inputs(approximate):
    x = jnp.array([-ABOVE, -50.0, 50.0, ABOVE], jnp.float32)
    gelu = lambda x: gates.gelu(x, approximate=approximate)
    np.testing.assert_array_equal(gelu(x), [0, 0, 50, ABOVE])
    np.testing.assert_array_equal(_grad(gelu)(x), [0, 0, 1, 1])
    np.testing.assert_array_equal(jax.jvp(gelu, (x,), (jnp.ones_like(x),))[1], [0, 0, 1, 1])


def test_gelu_approximate_must_be_a_bool():
    for bad in (1, "tanh", None):
        with pytest.raises(DtypeError, match=r"'gelu'.*'approximate'.*True.*False"):
            gates.gelu(jnp.ones(3), approximate=bad)


# --- softplus -----------------------------------------------------------------------------------

def _softplus_by_hand(x, beta, threshold):
    bx = beta * x
    above = bx > threshold
    return np.where(above, x, np.logaddexp(bx, 0) / beta), np.where(above, 1, expit(bx))


@pytest.mark.parametrize("beta, threshold", [(1.0, 20.0), (2.0, 1.0), (0.5, 3.0), (-1.5, 2.0),
                                             (-1.0, -1.0), (3, 5)])
def test_softplus_beta_and_threshold_by_hand(beta, threshold):
    with jax.enable_x64(True):
        x = np.linspace(-8.0, 8.0, 33) + 0.01  # clear of every threshold's jump
        value, slope = _softplus_by_hand(x, beta, threshold)
        softplus = lambda x: gates.softplus(x, beta=beta, threshold=threshold)
        np.testing.assert_allclose(softplus(jnp.asarray(x)), value, rtol=1e-13, atol=1e-300)
        np.testing.assert_allclose(_grad(softplus)(jnp.asarray(x)), slope, rtol=1e-13)
        np.testing.assert_allclose(jax.jvp(softplus, (jnp.asarray(x),), (jnp.ones(33),))[1],
                                   slope, rtol=1e-13)


def test_softplus_default_is_jax_nn_softplus():
    with jax.enable_x64(True):
        x = jnp.linspace(-30.0, 19.0, 50)
        np.testing.assert_allclose(gates.softplus(x), jax.nn.softplus(x), rtol=1e-14)
        np.testing.assert_allclose(_grad(gates.softplus)(x), _grad(jax.nn.softplus)(x),
                                   rtol=1e-14)


@pytest.mark.parametrize("beta, threshold", [(1.0, 20.0), (2.0, 1.0), (-1.5, 2.0),
                                             (1.0, 1e6), (-1.0, 1e6)])
def test_softplus_is_finite_for_large_inputs(beta, threshold):
    x = jnp.array([-ABOVE, -100.0, 100.0, ABOVE], jnp.float32)
    softplus = lambda x: gates.softplus(x, beta=beta, threshold=threshold)
    for result in (softplus(x), _grad(softplus)(x), jax.jvp(softplus, (x,), (x,))[1]):
        assert np.isfinite(np.asarray(result)).all()
    value, slope = _softplus_by_hand(np.asarray(x, np.float64), beta, threshold)
    np.testing.assert_allclose(softplus(x), value, rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(_grad(softplus)(x), slope, rtol=1e-6, atol=1e-30)


def test_softplus_refuses_a_zero_or_non_finite_beta_and_threshold():
    x = jnp.ones(3)
    with pytest.raises(ValueError, match=r"'softplus'.*'beta'.*nonzero.*got 0"):
        gates.softplus(x, beta=0)
    with pytest.raises(ValueError, match=r"'softplus'.*'beta'.*got inf"):
        gates.softplus(x, beta=math.inf)
    with pytest.raises(ValueError, match=r"'softplus'.*'threshold'.*got nan"):
        gates.softplus(x, threshold=math.nan)
    with pytest.raises(DtypeError, match=r"'softplus'.*'beta'"):
        gates.softplus(x, beta="2")


# --- power --------------------------------------------------------------------------------------

def test_power_with_a_constant_on_negative_x():
    with jax.enable_x64(True):
        assert float(jax.grad(lambda x: gates.power(x, 3.0))(-2.0)) == 12.0
        assert float(jax.jvp(lambda x: gates.power(x, 3.0), (-2.0,), (1.0,))[1]) == 12.0
        assert float(jax.jit(jax.hessian(lambda x: gates.power(x, 3.0)))(-2.0)) == -12.0
        assert float(gates.power(-3.0, 2)) == 9.0
        assert float(jax.grad(lambda x: gates.power(x, 2))(-3.0)) == -6.0
        lin = jax.linearize(lambda x: gates.power(x, 3), jnp.array([-2.0, -1.0]))[1]
        np.testing.assert_array_equal(lin(jnp.ones(2)), [12.0, 3.0])


def test_power_with_a_python_number_keeps_the_input_dtype():
    x = jnp.array([1.5, 2.0], jnp.float32)
    for p in (2, 0.5, -1):
        assert gates.power(x, p).dtype == jnp.float32
        assert jax.grad(lambda x, p=p: jnp.sum(gates.power(x, p)))(x).dtype == jnp.float32
    assert gates.power(x.astype(jnp.bfloat16), 3).dtype == jnp.bfloat16


def test_power_refuses_an_integer_array_exponent():
    with pytest.raises(DtypeError, match=r"'power'.*'p'.*int32"):
        gates.power(jnp.ones(3), jnp.array([1, 2, 3], jnp.int32))


_BASES = [-2.0, -0.5, 0.0, 0.5, 2.0]
_EXPONENTS = [-1.5, -1.0, 0.0, 0.5, 1.0, 2.0, 3.0]


def test_power_follows_jax_conventions_at_zero_and_below():
    """Both derivatives equal jax.grad of jnp.power (an array exponent) everywhere, NaN for
    NaN, but for d/dx at x = 0, p = 0: 0, as jnp.power with an integer 0 and torch give
    (JAX's float rule gives 0 * 0^-1 = NaN there)."""
    with jax.enable_x64(True):
        x, p = (jnp.asarray(a) for a in np.meshgrid(_BASES, _EXPONENTS))
        mine = jax.jit(_grad(gates.power, (0, 1)))(x, p)
        ref = list(_grad(jnp.power, (0, 1))(x, p))
        at_zero = (x == 0) & (p == 0)
        assert np.isnan(ref[0][at_zero]).all()
        ref[0] = jnp.where(at_zero, _grad(lambda x: jnp.power(x, 0))(x), ref[0])
        np.testing.assert_allclose(gates.power(x, p), jnp.power(x, p), rtol=1e-15)
        for m, r in zip(mine, ref):
            np.testing.assert_allclose(m, r, rtol=1e-14, equal_nan=True)
        tangents = [jax.jvp(lambda *a: gates.power(*a), (x, p), t)[1]
                    for t in ((jnp.ones_like(x), jnp.zeros_like(p)),
                              (jnp.zeros_like(x), jnp.ones_like(p)))]
        for t, r in zip(tangents, ref):
            np.testing.assert_allclose(t, r, rtol=1e-14, equal_nan=True)


def test_power_gradient_of_the_exponent_alone_at_zero_base():
    with jax.enable_x64(True):
        for p in (0.5, 2.0):
            assert float(jax.grad(lambda p: gates.power(0.0, p))(p)) == 0.0
            assert float(jax.jvp(lambda p: gates.power(0.0, p), (p,), (1.0,))[1]) == 0.0


def test_power_broadcasts_an_array_exponent():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        x, p = rng.uniform(0.5, 2, (2, 1, 4)), rng.standard_normal((3, 1))
        gx, gp = _grad(gates.power, (0, 1))(x, p)
        out = x**p
        np.testing.assert_allclose(gx, np.sum(p * x ** (p - 1), axis=1, keepdims=True),
                                   rtol=1e-13)
        np.testing.assert_allclose(gp, np.sum(out * np.log(x), axis=(0, 2))[:, None],
                                   rtol=1e-13)


# --- rms_norm -----------------------------------------------------------------------------------

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


# --- embedding ----------------------------------------------------------------------------------

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


# --- torch, where installed (float64) ---------------------------------------------------------

def _torch():
    torch = pytest.importorskip("torch")
    return torch, torch.nn.functional


def _t(torch, a, grad=True):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


def test_gelu_and_softplus_against_torch():
    torch, F = _torch()
    with jax.enable_x64(True):
        x = np.linspace(-6.0, 6.0, 25) + 0.01
        cases = [(lambda x: gates.gelu(x, approximate=True),
                  lambda t: F.gelu(t, approximate="tanh")),
                 (gates.gelu, F.gelu)]
        cases += [(lambda x, b=b, th=th: gates.softplus(x, beta=b, threshold=th),
                   lambda t, b=b, th=th: F.softplus(t, beta=b, threshold=th))
                  for b, th in [(1.0, 20.0), (2.0, 1.0), (-1.5, 2.0), (0.5, -1.0)]]
        for mine, theirs in cases:
            t = _t(torch, x)
            out = theirs(t)
            (grad,) = torch.autograd.grad(out.sum(), t)
            np.testing.assert_allclose(mine(jnp.asarray(x)), out.detach().numpy(), rtol=1e-12,
                                       atol=1e-15)
            np.testing.assert_allclose(_grad(mine)(jnp.asarray(x)), grad.numpy(), rtol=1e-12,
                                       atol=1e-15)


def test_power_with_a_tensor_exponent_against_torch():
    torch, _ = _torch()
    with jax.enable_x64(True):
        x, p = np.meshgrid(_BASES, _EXPONENTS)
        tx, tp = _t(torch, x), _t(torch, p)
        out = torch.pow(tx, tp)
        gx, gp = torch.autograd.grad(out.sum(), (tx, tp))
        mine = _grad(gates.power, (0, 1))(jnp.asarray(x), jnp.asarray(p))
        np.testing.assert_allclose(gates.power(x, p), out.detach().numpy(), rtol=1e-14)
        np.testing.assert_allclose(mine[0], gx.numpy(), rtol=1e-14)
        # d/dp differs only at x = 0, p < 0: torch inf * log(0) = -inf, JAX log(1) * inf = NaN.
        differ = (x == 0) & (p < 0)
        np.testing.assert_allclose(np.asarray(mine[1])[~differ], gp.numpy()[~differ],
                                   rtol=1e-14)
        assert np.isnan(np.asarray(mine[1])[differ]).all()


def test_rms_norm_against_torch():
    torch, F = _torch()
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        x, scale, g = rng.standard_normal((2, 3, 4)), rng.standard_normal(4), \
            rng.standard_normal((2, 3, 4))
        for eps in (1e-6, 0.1):
            tx, ts = _t(torch, x), _t(torch, scale)
            out = F.rms_norm(tx, (4,), ts, eps=eps)
            grads = torch.autograd.grad(out, (tx, ts), _t(torch, g, grad=False))
            value, vjp = jax.vjp(lambda x, s, eps=eps: gates.rms_norm(x, s, eps=eps), x, scale)
            np.testing.assert_allclose(value, out.detach().numpy(), rtol=1e-12)
            for mine, theirs in zip(vjp(g), grads):
                np.testing.assert_allclose(mine, theirs.numpy(), rtol=1e-11)


def test_embedding_against_torch_with_repeated_ids():
    torch, F = _torch()
    with jax.enable_x64(True):
        rng = np.random.default_rng(4)
        table, ids = rng.standard_normal((6, 3)), np.array([[1, 5, 1], [1, 0, 5]])
        g = rng.standard_normal((2, 3, 3))
        tt = _t(torch, table)
        out = F.embedding(torch.tensor(ids), tt)
        (grad,) = torch.autograd.grad(out, tt, _t(torch, g, grad=False))
        value, vjp = jax.vjp(lambda t: gates.embedding(t, ids), table)
        np.testing.assert_array_equal(value, out.detach().numpy())
        np.testing.assert_allclose(vjp(g)[0], grad.numpy(), rtol=1e-14)
