"""Tests for difprog/graph/_numpy_lax.py: numpy mirrors of lax primitives vs. JAX itself."""

import ast
import builtins
import importlib.util
import inspect
import math
import pathlib
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

_PATH = pathlib.Path(__file__).parents[2] / "difprog" / "graph" / "_numpy_lax.py"
_spec = importlib.util.spec_from_file_location("_numpy_lax_under_test", _PATH)
MOD = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(MOD)
PUBLIC = [n for n, f in vars(MOD).items()
          if inspect.isfunction(f) and not n.startswith("_") and f.__module__ == MOD.__name__]


def _isolated(name):
    """Re-create a function from its own source in a namespace holding only np and math."""
    ns = {"np": np, "math": math}
    exec(compile(inspect.getsource(getattr(MOD, name)), str(_PATH), "exec"), ns)  # noqa: S102
    return ns[name]


# Every test below uses the copies exec'd in isolation, exactly as generated code will.
L = types.SimpleNamespace(**{n: _isolated(n) for n in PUBLIC})
RNG = np.random.default_rng(0)


def _close(got, want, rtol=1e-12, of_largest=False):
    """Equal to `rtol` of each entry or, `of_largest`, of the array's largest entry (a conv's
    sums cancel, and are off by more than `rtol` of themselves when XLA adds their terms in
    another order, as it does on another CPU)."""
    want = np.asarray(want)
    assert np.asarray(got).dtype == want.dtype, (np.asarray(got).dtype, want.dtype)
    scale = float(np.abs(want).max()) if of_largest else 0.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


def _walk(jaxpr, consts, args, prim, impl, hits):
    """Evaluate a jaxpr eqn by eqn; every `prim` eqn is re-run through `impl` and compared."""
    env = dict(zip(jaxpr.constvars, consts)) | dict(zip(jaxpr.invars, args))

    def read(v):
        return v.val if type(v).__name__ == "Literal" else env[v]

    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        sub = eqn.params.get("jaxpr")
        if hasattr(sub, "consts"):  # jit / pjit / custom_jvp: recurse
            outs = _walk(sub.jaxpr, sub.consts, invals, prim, impl, hits)
        else:
            outs = eqn.primitive.bind(*invals, **eqn.params)
            outs = outs if eqn.primitive.multiple_results else [outs]
        if eqn.primitive.name == prim:
            hits.append(eqn)
            _close(impl([np.asarray(v) for v in invals], eqn.params), outs[0],
                   of_largest=prim == "conv_general_dilated")
        env.update(zip(eqn.outvars, outs))
    return [read(v) for v in jaxpr.outvars]


def check_eqns(fun, args, prim, impl, min_hits=1):
    """Trace `fun`, then compare every `prim` equation against `impl(invals, params)`."""
    closed = jax.make_jaxpr(fun)(*args)
    hits = []
    _walk(closed.jaxpr, closed.consts, args, prim, impl, hits)
    assert len(hits) >= min_hits, f"expected >= {min_hits} {prim} eqns, got {len(hits)}"
    return hits


def test_functions_are_self_contained():
    module_names = set(vars(MOD)) - {"np", "math"}
    for name in PUBLIC:
        tree = ast.parse(inspect.getsource(getattr(MOD, name)))
        bound = {a.arg for n in ast.walk(tree) if isinstance(n, ast.arguments)
                 for a in n.args + n.kwonlyargs + [n.vararg, n.kwarg] if a is not None}
        bound |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
                  and isinstance(n.ctx, ast.Store)}
        bound |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        loaded = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
                  and isinstance(n.ctx, ast.Load)}
        free = loaded - bound - set(dir(builtins))
        assert free <= {"np", "math"}, (name, free)
        assert not (free & module_names), (name, free)
        assert getattr(MOD, name).__doc__.strip().count("\n") == 0, name


# ----------------------------------------------------------------------------- conv


def _conv_impl(invals, p):
    dn = p["dimension_numbers"]
    return L.conv_general_dilated(
        *invals, p["window_strides"], p["padding"], p["lhs_dilation"], p["rhs_dilation"],
        dn.lhs_spec, dn.rhs_spec, dn.out_spec, p["feature_group_count"],
        p["batch_group_count"], p["preferred_element_type"])


def _conv_case(x_shape, w_shape, **kw):
    x, w = RNG.normal(size=x_shape), RNG.normal(size=w_shape)
    check_eqns(lambda x, w: lax.conv_general_dilated(x, w, **kw), (x, w),
               "conv_general_dilated", _conv_impl)


NHWC = ("NHWC", "HWIO", "NHWC")
NCHW = ("NCHW", "OIHW", "NCHW")


@pytest.mark.parametrize("kw", [
    {"window_strides": (1, 1), "padding": "SAME", "dimension_numbers": NHWC},
    {"window_strides": (2, 2), "padding": "SAME", "dimension_numbers": NHWC},
    {"window_strides": (2, 1), "padding": "VALID", "dimension_numbers": NHWC},
    {"window_strides": (1, 2), "padding": ((-1, 2), (1, -1)), "dimension_numbers": NHWC},
    {"window_strides": (1, 1), "padding": "SAME", "rhs_dilation": (2, 1),
     "dimension_numbers": NHWC},
])
def test_conv_nhwc(kw):
    with jax.enable_x64(True):
        _conv_case((2, 7, 8, 3), (3, 3, 3, 4), **kw)


@pytest.mark.parametrize("kw", [
    {"window_strides": (1, 1), "padding": "VALID", "dimension_numbers": NCHW},
    {"window_strides": (2, 3), "padding": "SAME", "dimension_numbers": NCHW},
    {"window_strides": (1, 1), "padding": ((0, -2), (-1, 0)), "rhs_dilation": (1, 2),
     "dimension_numbers": NCHW},
])
def test_conv_nchw(kw):
    with jax.enable_x64(True):
        _conv_case((2, 3, 9, 7), (5, 3, 2, 3), **kw)


def test_conv_transposed_and_weight_grad_style():
    with jax.enable_x64(True):
        x, w = RNG.normal(size=(2, 8, 8, 3)), RNG.normal(size=(3, 3, 3, 4))
        g = RNG.normal(size=(2, 4, 4, 4))
        w_flipped = np.swapaxes(w[::-1, ::-1], 2, 3)
        # input gradient / transposed conv: dilate the cotangent by the strides
        _conv_case(g.shape, w_flipped.shape, window_strides=(1, 1), padding=((2, 1), (2, 1)),
                   lhs_dilation=(2, 2), dimension_numbers=NHWC)
        want = lax.conv_general_dilated(g, w_flipped, (1, 1), ((2, 1), (2, 1)),
                                        lhs_dilation=(2, 2), dimension_numbers=NHWC)
        got = L.conv_general_dilated(g, w_flipped, (1, 1), ((2, 1), (2, 1)), (2, 2), (1, 1),
                                     (0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
        _close(got, want, of_largest=True)
        # weight gradient: batch <-> feature swapped specs, rhs dilated by the strides
        _conv_case(x.shape, g.shape, window_strides=(1, 1), padding=((0, 1), (0, 1)),
                   rhs_dilation=(2, 2), dimension_numbers=("CHWN", "IHWO", "HWNC"))


def test_conv_groups():
    with jax.enable_x64(True):
        _conv_case((2, 6, 6, 4), (3, 3, 2, 6), window_strides=(1, 1), padding="SAME",
                   feature_group_count=2, dimension_numbers=NHWC)
        _conv_case((2, 4, 6, 6), (6, 2, 3, 3), window_strides=(2, 2), padding="VALID",
                   feature_group_count=2, dimension_numbers=NCHW)
        # batch_group_count: lhs batch 6 = 2 groups x 3, out features 4 = 2 groups x 2
        _conv_case((6, 5, 5, 3), (3, 3, 3, 4), window_strides=(1, 1), padding="SAME",
                   batch_group_count=2, dimension_numbers=NHWC)
        _conv_case((4, 3, 5, 5), (6, 3, 2, 2), window_strides=(1, 2), padding="VALID",
                   batch_group_count=2, dimension_numbers=NCHW)


@pytest.mark.parametrize("groups", [1, 2])
def test_conv_grad_jaxpr(groups):
    def loss(x, w):
        return lax.conv_general_dilated(x, w, (2, 2), "SAME", dimension_numbers=NHWC,
                                        feature_group_count=groups).sum()

    with jax.enable_x64(True):
        x, w = RNG.normal(size=(2, 8, 8, 4)), RNG.normal(size=(3, 3, 4 // groups, 6))
        hits = check_eqns(jax.grad(loss, argnums=(0, 1)), (x, w), "conv_general_dilated",
                          _conv_impl, min_hits=3)
        if groups > 1:  # the weight gradient of a grouped conv uses batch_group_count
            assert any(e.params["batch_group_count"] > 1 for e in hits)


def test_conv_1d_3d_and_float32():
    with jax.enable_x64(True):
        _conv_case((2, 9, 3), (3, 3, 4), window_strides=(2,), padding="SAME",
                   dimension_numbers=("NWC", "WIO", "NWC"))
        _conv_case((1, 2, 5, 4, 6), (3, 2, 2, 3, 2), window_strides=(1, 2, 1),
                   padding="SAME", dimension_numbers=("NCDHW", "OIDHW", "NCDHW"))
    x = RNG.normal(size=(2, 6, 6, 3)).astype(np.float32)
    w = RNG.normal(size=(3, 3, 3, 4)).astype(np.float32)
    want = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC)
    got = L.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), (1, 1), (1, 1),
                                 (0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_conv_is_vectorised_not_a_python_loop():
    """Not a benchmark: a per-element Python loop takes seconds a call here (4.7 M products),
    numpy's vectorised form about a millisecond; the bound is loose so a busy machine passes."""
    import time
    x, w = RNG.normal(size=(8, 8, 8, 32)), RNG.normal(size=(3, 3, 32, 32))
    t = time.perf_counter()
    for _ in range(10):
        L.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), (1, 1), (1, 1),
                               (0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
    assert (time.perf_counter() - t) / 10 < 1.0


# ----------------------------------------------------------------------- reduce_window

_RW = {"reduce_window_max": ("max", -np.inf), "reduce_window_min": ("min", np.inf),
       "reduce_window_sum": ("sum", 0.0)}


def _rw_impl(prim):
    def impl(invals, p):
        op, init = _RW[prim]
        return L.reduce_window(invals[0], op, init, p["window_dimensions"], p["window_strides"],
                               p["padding"], p["base_dilation"], p["window_dilation"])
    return impl


@pytest.mark.parametrize("prim,init,op", [("reduce_window_max", -np.inf, lax.max),
                                          ("reduce_window_min", np.inf, lax.min),
                                          ("reduce_window_sum", 0.0, lax.add)])
@pytest.mark.parametrize("kw", [
    {"window_dimensions": (1, 3, 3, 1), "window_strides": (1, 2, 2, 1), "padding": "SAME"},
    {"window_dimensions": (1, 2, 2, 1), "window_strides": (1, 2, 2, 1), "padding": "VALID"},
    {"window_dimensions": (2, 3, 2, 1), "window_strides": (1, 1, 2, 1),
     "padding": ((0, 1), (-1, 2), (1, 0), (0, 0)), "base_dilation": (1, 2, 1, 1),
     "window_dilation": (1, 1, 2, 1)},
])
def test_reduce_window(prim, init, op, kw):
    with jax.enable_x64(True):
        x = RNG.normal(size=(2, 7, 8, 3))
        check_eqns(lambda x: lax.reduce_window(x, init, op, **kw), (x,), prim, _rw_impl(prim))


def test_reduce_window_sum_grad_uses_pad_and_dilation():
    def loss(x):
        return (lax.reduce_window(x, 0.0, lax.add, (3, 3), (2, 2), "SAME") ** 2).sum()

    with jax.enable_x64(True):
        x = RNG.normal(size=(7, 8))
        check_eqns(jax.grad(loss), (x,), "reduce_window_sum", _rw_impl("reduce_window_sum"), 2)
        check_eqns(jax.grad(loss), (x,), "pad",
                   lambda iv, p: L.pad(iv[0], iv[1], p["padding_config"]))


# ------------------------------------------------------------------------------- pad


@pytest.mark.parametrize("config", [((-1, 2, 1), (2, -3, 0), (0, 0, 2)),
                                    ((1, 1, 0), (0, 0, 0), (-2, -1, 1)),
                                    ((-3, 0, 2), (1, -2, 3), (2, 2, 0))])
def test_pad(config):
    with jax.enable_x64(True):
        x = RNG.normal(size=(3, 4, 5))
        _close(L.pad(x, 0.5, config), lax.pad(x, 0.5, config))
        check_eqns(lambda x: lax.pad(x, -1.0, config), (x,), "pad",
                   lambda iv, p: L.pad(iv[0], iv[1], p["padding_config"]))


# ---------------------------------------------------------------------------- gather

# GatherScatterMode -> mode string, mapped by the enum member's `.name`:
#   CLIP -> 'clip', FILL_OR_DROP -> 'fill', PROMISE_IN_BOUNDS -> 'promise_in_bounds'.
# (The function also accepts str(mode), e.g. 'GatherScatterMode.FILL_OR_DROP'.)
_MODES = {"CLIP": "clip", "FILL_OR_DROP": "fill", "PROMISE_IN_BOUNDS": "promise_in_bounds"}


def _gather_impl(invals, p):
    dn = p["dimension_numbers"]
    return L.gather(*invals, dn.offset_dims, dn.collapsed_slice_dims, dn.start_index_map,
                    dn.operand_batching_dims, dn.start_indices_batching_dims,
                    p["slice_sizes"], _MODES[p["mode"].name], p["fill_value"])


def test_gather_take_along_axis():
    with jax.enable_x64(True):
        x, idx = RNG.normal(size=(3, 4, 5)), RNG.integers(-5, 5, size=(3, 4, 2))
        check_eqns(lambda x, i: jnp.take_along_axis(x, i, axis=-1), (x, idx), "gather",
                   _gather_impl)
        idx1 = RNG.integers(-4, 4, size=(3, 6, 5))
        check_eqns(lambda x, i: jnp.take_along_axis(x, i, axis=1), (x, idx1), "gather",
                   _gather_impl)


def test_gather_fancy_indexing():
    with jax.enable_x64(True):
        x = RNG.normal(size=(6, 4, 5))
        i, j = RNG.integers(0, 6, size=(2, 3)), RNG.integers(0, 5, size=(2, 3))
        check_eqns(lambda x, i: x[i], (x, i), "gather", _gather_impl)
        check_eqns(lambda x, i, j: x[i, :, j], (x, i, j), "gather", _gather_impl)
        check_eqns(lambda x, i: x[1:3, i[0]], (x, i % 4), "gather", _gather_impl)
        check_eqns(lambda x: x[:, 1], (x,), "gather", _gather_impl, min_hits=0)


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.uint8, np.bool_])
def test_gather_out_of_bounds(dtype):
    with jax.enable_x64(True):
        x = (RNG.normal(size=(5, 4)) * 10).astype(dtype)
        i = np.array([[0, 4], [7, -9], [-1, 2]])
        for mode in ("fill", "clip", "promise_in_bounds"):
            check_eqns(lambda x, i, m=mode: x.at[i].get(mode=m), (x, i), "gather", _gather_impl)
        check_eqns(lambda x, i: x.at[i].get(mode="fill", fill_value=3), (x, i), "gather",
                   _gather_impl)
        # windows that run off the end: clip shifts them, fill drops them
        idx = np.array([[0, 0], [3, 1], [4, 3], [-1, 0]])
        for mode in ("clip", "fill"):
            def f(x, i, mode=mode):
                return lax.gather(x, i, lax.GatherDimensionNumbers(
                    offset_dims=(1, 2), collapsed_slice_dims=(), start_index_map=(0, 1)),
                    slice_sizes=(2, 2), mode=mode)
            check_eqns(f, (x, idx), "gather", _gather_impl)
        got = L.gather(x, idx, (1, 2), (), (0, 1), (), (), (2, 2), "GatherScatterMode.CLIP")
        _close(got, lax.gather(x, idx, lax.GatherDimensionNumbers((1, 2), (), (0, 1)),
                               (2, 2), mode="clip"))


def test_gather_default_fill_values():
    i = np.array([[9]])
    for dtype, want in [(np.float32, np.nan), (np.int8, -128), (np.uint16, 65535),
                        (np.bool_, True)]:
        got = L.gather(np.zeros(3, dtype), i, (), (0,), (0,), (), (), (1,), "fill")
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, np.array([want], dtype))


# ----------------------------------------------------------------- small primitives


def test_broadcast_in_dim_and_iota():
    with jax.enable_x64(True):
        x = RNG.normal(size=(3, 5))
        _close(L.broadcast_in_dim(x, (2, 3, 4, 5), (1, 3)),
               lax.broadcast_in_dim(x, (2, 3, 4, 5), (1, 3)))
        _close(L.broadcast_in_dim(np.float64(2.0), (2, 3), ()),
               lax.broadcast_in_dim(2.0, (2, 3), ()))
        check_eqns(lambda x: jnp.broadcast_to(x[:, None], (3, 2, 5)), (x,), "broadcast_in_dim",
                   lambda iv, p: L.broadcast_in_dim(iv[0], p["shape"],
                                                    p["broadcast_dimensions"]))
        for dt in (np.int32, np.float64):
            for dim in (0, 1, 2):
                _close(L.iota(dt, (3, 4, 5), dim), lax.broadcasted_iota(dt, (3, 4, 5), dim))
        check_eqns(lambda: lax.iota(np.int32, 7), (), "iota",
                   lambda iv, p: L.iota(p["dtype"], p["shape"], p["dimension"]))


def test_erf():
    with jax.enable_x64(True):
        x = RNG.normal(size=(4, 5)) * 2
        _close(L.erf(x), lax.erf(x))
        _close(L.erf(np.float64(0.3)), lax.erf(np.float64(0.3)))
        assert L.erf(np.float64(0.3)).shape == ()
    x32 = x.astype(np.float32)
    assert L.erf(x32).dtype == np.float32 and L.erf(np.float32(0.5)).dtype == np.float32
    np.testing.assert_allclose(L.erf(x32), lax.erf(x32), rtol=1e-6, atol=1e-7)


def test_dot_general():
    with jax.enable_x64(True):
        a, b = RNG.normal(size=(2, 3, 4, 5)), RNG.normal(size=(2, 5, 4, 6))
        dn = (((2, 3), (2, 1)), ((0,), (0,)))
        _close(L.dot_general(a, b, (2, 3), (2, 1), (0,), (0,)), lax.dot_general(a, b, dn))
        a2, b2 = RNG.normal(size=(4, 2, 3)), RNG.normal(size=(3, 7, 2))
        dn2 = (((2,), (0,)), ((1,), (2,)))  # batch dims not leading
        _close(L.dot_general(a2, b2, (2,), (0,), (1,), (2,)), lax.dot_general(a2, b2, dn2))

        def impl(iv, p):
            (lc, rc), (lb, rb) = p["dimension_numbers"]
            return L.dot_general(*iv, lc, rc, lb, rb, p["preferred_element_type"])

        check_eqns(lambda x, y: x @ y, (RNG.normal(size=(3, 4)), RNG.normal(size=(4,))),
                   "dot_general", impl)
        check_eqns(lambda x, y: jnp.einsum("bij,bjk->bik", x, y),
                   (RNG.normal(size=(2, 3, 4)), RNG.normal(size=(2, 4, 5))), "dot_general", impl)
        i8 = RNG.integers(-100, 100, size=(3, 4)).astype(np.int8)
        check_eqns(lambda x: lax.dot_general(x, x.T, (((1,), (0,)), ((), ())),
                                             preferred_element_type=np.int32),
                   (i8,), "dot_general", impl)


def test_select_n():
    with jax.enable_x64(True):
        a, b, c = (RNG.normal(size=(3, 4)) for _ in range(3))
        p = RNG.random((3, 4)) > 0.5
        k = RNG.integers(0, 3, size=(3, 4)).astype(np.int32)
        _close(L.select_n(p, a, b), lax.select_n(p, a, b))
        _close(L.select_n(k, a, b, c), lax.select_n(k, a, b, c))
        _close(L.select_n(np.True_, a, b), lax.select_n(True, a, b))
        _close(L.select_n(np.int32(2), a, b, c), lax.select_n(np.int32(2), a, b, c))


def test_argmax():
    with jax.enable_x64(True):
        nan = np.nan
        x = np.array([[1.0, nan, 3.0, nan], [2.0, 5.0, 5.0, 1.0], [nan, nan, nan, nan],
                      [-np.inf, -np.inf, -np.inf, -np.inf], [0.0, -0.0, 0.0, -1.0]])
        for axis in (0, 1):
            for dt in (np.int32, np.int64):
                _close(L.argmax(x, axis, dt), lax.argmax(x, axis, dt))
        check_eqns(lambda x: jnp.argmax(x, axis=1), (x,), "argmax",
                   lambda iv, p: L.argmax(iv[0], p["axes"], p["index_dtype"]))
        xi = RNG.integers(-3, 3, size=(4, 6)).astype(np.int32)
        _close(L.argmax(xi, 1, np.int32), lax.argmax(xi, 1, np.int32))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.int8, np.uint8])
def test_integer_divide_remainder(dtype):
    with jax.enable_x64(True):
        info = np.iinfo(dtype)
        x = np.array([7, -7, 7, -7, 0, 5, -5, 3, info.min, info.min, info.max, 9], dtype=object)
        y = np.array([2, 2, -2, -2, 3, 0, 0, -1, -1, 0, 7, 9], dtype=object)
        if info.min == 0:
            x, y = np.abs(x), np.abs(y)
        x, y = x.astype(dtype), y.astype(dtype)
        _close(L.integer_divide(x, y), lax.div(x, y))
        _close(L.integer_remainder(x, y), lax.rem(x, y))
        check_eqns(lambda a, b: lax.div(a, b), (x, y), "div",
                   lambda iv, p: L.integer_divide(*iv))
        check_eqns(lambda a, b: lax.rem(a, b), (x, y), "rem",
                   lambda iv, p: L.integer_remainder(*iv))


@pytest.mark.parametrize("op,lax_fn", [("sum", lax.cumsum), ("max", lax.cummax),
                                        ("min", lax.cummin), ("prod", lax.cumprod)])
def test_cumulative(op, lax_fn):
    with jax.enable_x64(True):
        x = RNG.normal(size=(4, 6))
        x[1, 2] = np.nan
        xi = RNG.integers(-3, 4, size=(4, 6)).astype(np.int32)
        for arr in (x, xi):
            for axis in (0, 1):
                for reverse in (False, True):
                    _close(L.cumulative(arr, op, axis, reverse),
                           lax_fn(arr, axis=axis, reverse=reverse))
        prim = "cum" + op
        check_eqns(lambda a: lax_fn(a, axis=1, reverse=True), (x,), prim,
                   lambda iv, p: L.cumulative(iv[0], op, p["axis"], p["reverse"]))


def test_unsupported_raise():
    with pytest.raises(NotImplementedError, match="reduce_window"):
        L.reduce_window(np.zeros(3), "prod", 1.0, (2,), (1,), ((0, 0),), (1,), (1,))
    with pytest.raises(NotImplementedError, match="gather"):
        L.gather(np.zeros(3), np.zeros((1, 1), int), (), (0,), (0,), (), (), (1,), "one_hot")
    with pytest.raises(NotImplementedError, match="cumulative"):
        L.cumulative(np.zeros(3), "and", 0, False)
    with pytest.raises(NotImplementedError, match="conv_general_dilated"):
        L.conv_general_dilated(np.zeros((4, 4, 3)), np.zeros((4, 2, 3)), (1,), ((0, 0),), (1,),
                               (1,), (0, 1, 2), (0, 1, 2), (0, 1, 2), 2, 2)


def _scatter_impl(add):
    def impl(invals, p):
        dn = p["dimension_numbers"]
        return L.scatter(*invals, dn.update_window_dims, dn.inserted_window_dims,
                         dn.scatter_dims_to_operand_dims, dn.operand_batching_dims,
                         dn.scatter_indices_batching_dims, _MODES[p["mode"].name], add=add)
    return impl


_scatter_add_impl = _scatter_impl(add=True)


def test_scatter_add_from_the_gradients_of_gathers():
    with jax.enable_x64(True):
        x = RNG.normal(size=(3, 4, 5))
        idx = RNG.integers(-5, 5, size=(3, 4, 2))
        grad = jax.grad(lambda x, i: jnp.sum(jnp.take_along_axis(x, i, axis=-1) ** 2))
        check_eqns(grad, (x, idx), "scatter-add", _scatter_add_impl)
        i = RNG.integers(0, 3, size=(2, 3))
        check_eqns(jax.grad(lambda x, i: jnp.sum(x[i, :, 1:3] ** 2)), (x, i), "scatter-add",
                   _scatter_add_impl)
        clip = lambda x, i: jnp.sum(x.at[i].get(mode="clip") ** 2)
        check_eqns(jax.grad(clip), (x, np.array([0, 5, -2])), "scatter-add", _scatter_add_impl)


def test_scatter_that_sets_entries():
    with jax.enable_x64(True):
        x = RNG.normal(size=(3, 5))
        labels = np.array([4, 0, 2])
        put = lambda x, i: jnp.put_along_axis(x, i[:, None], -x[:, :1], axis=-1, inplace=False)
        check_eqns(put, (x, labels), "scatter", _scatter_impl(add=False))
        check_eqns(lambda x, i: x.at[i].set(7.0), (x, np.array([2, 0, 9])), "scatter",
                   _scatter_impl(add=False))
