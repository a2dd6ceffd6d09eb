"""The options of conv2d and the pools (issue 17): every form of padding, conv2d's dilation and
groups (depthwise included), the pools' dilation and ceil_mode, avg_pool2d's count_include_pad,
and the layers that pass them on.

Checked in float64 against torch.nn.functional (value, VJP and JVP, when torch is installed),
always against jax.lax.conv_general_dilated (conv2d) and a loop-by-loop numpy reading of torch's
pooling rules (the pools), through check_gate (rules against JAX's autodiff of the forward), and
through jit, vmap and second order.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difprog import check_gate, gates, layers
from difprog.errors import ArgumentError, DifprogError, DtypeError, ShapeError

RNG = np.random.default_rng(17)


def _close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-10)


@functools.cache
def _value_vjp_jvp(gate, static_items):
    """Jitted (value, cotangents, tangent) of a gate at given constants."""
    def run(args, g, tangents):
        f = lambda *a: gate(*a, **dict(static_items))
        value, vjp = jax.vjp(f, *args)
        return value, vjp(g), jax.jvp(f, args, tangents)[1]
    return jax.jit(run)


def _ours(gate, args, **static):
    """Value, cotangents for a random g, and the tangent along random directions, in float64."""
    with jax.enable_x64(True):
        args = tuple(jnp.asarray(a) for a in args)
        out_shape = jax.eval_shape(lambda *a: gate(*a, **static), *args).shape
        g = jnp.asarray(RNG.standard_normal(out_shape))
        tangents = tuple(jnp.asarray(RNG.standard_normal(a.shape)) for a in args)
        value, cotangents, tangent = _value_vjp_jvp(gate, tuple(sorted(static.items())))(
            args, g, tangents)
        return value, cotangents, tangent, g, tangents


# --- the padding forms ---------------------------------------------------------------------

def test_every_padding_form_means_what_torch_and_jax_mean():
    x, w = RNG.standard_normal((1, 6, 5, 2)), RNG.standard_normal((3, 2, 2, 3))
    same = [(1, (1, 1), ((1, 1), (1, 1)), [[1, 1], [1, 1]], [1, 1]),
            ((2, 0), ((2, 2), (0, 0))),
            ("same", "SAME", "Same"), ("valid", "VALID", 0, ((0, 0), (0, 0))),
            ("same_lower", "SAME_LOWER")]
    for group in same:
        for gate, args in [(gates.conv2d, (x, w)), (gates.avg_pool2d, (x,)),
                           (gates.max_pool2d, (x,))]:
            if gate is not gates.conv2d and group[0] == (2, 0):
                continue  # pad 2 > half the pools' window 2
            kw = {"window": 3, "stride": 1} if gate is not gates.conv2d else {}
            first = gate(*args, padding=group[0], **kw)
            for padding in group[1:]:
                _close(gate(*args, padding=padding, **kw), first)
    # SAME pads a dilated kernel for its span, as jax.lax does.
    _close(gates.conv2d(x, w, padding="same", dilation=2),
           jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", rhs_dilation=(2, 2),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC")))


@pytest.mark.parametrize("gate", ["conv2d", "max_pool2d", "avg_pool2d"])
def test_bad_padding_is_one_line_error_naming_gate_argument_and_value(gate):
    args = (jnp.ones((1, 4, 4, 2)),) + ((jnp.ones((2, 2, 2, 1)),) if gate == "conv2d" else ())
    for bad, error in [(-1, ArgumentError), ((1, -2), ArgumentError), ((1, 2, 3), ArgumentError),
                       (((0, 1),), ArgumentError), (((0, 1), 2), ArgumentError),
                       ("full", ArgumentError), (1.5, DtypeError), ((1, "a"), DtypeError),
                       (True, DtypeError), (None, DtypeError)]:
        with pytest.raises(error) as caught:
            gates.ALL[gate](*args, padding=bad)
        message = str(caught.value)
        assert f"'{gate}'" in message and "'padding'" in message and repr(bad) in message
        assert "\n" not in message


def test_pool_padding_that_leaves_a_window_without_input_is_refused():
    x = jnp.ones((1, 4, 4, 1))
    with pytest.raises(ArgumentError, match=r"'max_pool2d'.*'padding' is 2.*no input point"):
        gates.max_pool2d(x, window=2, padding=2)
    with pytest.raises(ArgumentError, match=r"'avg_pool2d'.*'padding'"):
        gates.avg_pool2d(x, window=3, stride=1, padding=((0, 3), (0, 0)))
    # More than torch's half-window limit, but every window still holds an input point.
    assert gates.max_pool2d(x, window=3, stride=2, padding=2).shape == (1, 3, 3, 1)


# --- conv2d against jax.lax (always) and torch (when installed) ------------------------------

CONV_CASES = [  # (x shape, w shape, stride, padding, dilation, groups)
    ((2, 7, 6, 4), (3, 3, 4, 6), 1, "SAME", 1, 1),
    ((2, 7, 6, 4), (3, 2, 4, 6), 2, 1, 2, 1),
    ((1, 8, 7, 4), (2, 3, 2, 6), (2, 1), (1, 2), (2, 1), 2),
    ((2, 6, 6, 4), (3, 3, 1, 4), 1, "same", 2, 4),                    # depthwise
    ((1, 6, 7, 3), (3, 3, 1, 6), 2, ((0, 2), (1, 0)), (1, 2), 3),    # depthwise, multiplier 2
    ((1, 9, 8, 6), (3, 2, 2, 6), (1, 2), "VALID", 3, 3),
    ((2, 5, 5, 2), (2, 2, 2, 2), 1, "SAME_LOWER", (1, 2), 1),
]


def _lax_padding(padding):
    if isinstance(padding, str):
        return padding.upper()
    return ((padding,) * 2,) * 2 if isinstance(padding, int) else \
        tuple((p, p) if isinstance(p, int) else p for p in padding)


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "-".join(map(str, c[2:])))
def test_conv2d_matches_lax_conv_general_dilated_and_its_autodiff(case):
    x_shape, w_shape, stride, padding, dilation, groups = case
    x, w = RNG.standard_normal(x_shape), RNG.standard_normal(w_shape)
    static = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    value, cotangents, tangent, g, tangents = _ours(gates.conv2d, (x, w), **static)
    pair = lambda v: (v, v) if isinstance(v, int) else v
    with jax.enable_x64(True):
        def reference(x, w):
            return jax.lax.conv_general_dilated(
                x, w, pair(stride), _lax_padding(padding), rhs_dilation=pair(dilation),
                dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)
        ref_value, ref_vjp = jax.vjp(reference, x, w)
        _close(value, ref_value)
        for mine, ref in zip(cotangents, ref_vjp(g)):
            _close(mine, ref)
        _close(tangent, jax.jvp(reference, (x, w), tangents)[1])


@pytest.mark.parametrize("case", CONV_CASES[1:5], ids=lambda c: "-".join(map(str, c[2:])))
def test_conv2d_weight_gradient_by_convolution_off_cpu(case, monkeypatch):
    """Off CPU the weight gradient is a convolution (batch_group_count for groups), not the
    CPU's patches: run that branch here by choosing it in lax.platform_dependent."""
    from difprog.gates import conv

    x_shape, w_shape, stride, padding, dilation, groups = case
    x, w = RNG.standard_normal(x_shape), RNG.standard_normal(w_shape)
    static = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    with jax.enable_x64(True):
        out, vjp = jax.vjp(lambda x, w: gates.conv2d.forward(x, w, **static), x, w)
        g = RNG.standard_normal(out.shape)
        monkeypatch.setattr(conv.lax, "platform_dependent",
                            lambda *a, cpu, default: default(*a))
        for mine, ref in zip(conv._conv2d_backward(g, out, x, w, **static), vjp(g)):
            _close(mine, ref)


def _torch_pads(padding):
    """torch's conv2d padding and the explicit (left, right, top, bottom) pads to F.pad first."""
    if isinstance(padding, str):
        return padding.lower(), (0, 0, 0, 0)
    if isinstance(padding, int) or all(isinstance(p, int) for p in padding):
        return padding, (0, 0, 0, 0)
    (top, bottom), (left, right) = padding
    return 0, (left, right, top, bottom)


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "-".join(map(str, c[2:])))
def test_conv2d_matches_torch(case):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    x_shape, w_shape, stride, padding, dilation, groups = case
    if padding == "SAME_LOWER" or (padding in ("SAME", "same") and stride != 1):
        pytest.skip("torch has no SAME_LOWER, nor 'same' with a stride")
    x, w = RNG.standard_normal(x_shape), RNG.standard_normal(w_shape)
    static = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    value, (gx, gw), tangent, g, (dx, dw) = _ours(gates.conv2d, (x, w), **static)
    torch_padding, pads = _torch_pads(padding)
    nchw = lambda a: torch.tensor(np.asarray(a)).permute(0, 3, 1, 2)
    oihw = lambda a: torch.tensor(np.asarray(a)).permute(3, 2, 0, 1)

    def conv(x, w):
        return functional.conv2d(functional.pad(x, pads), w, stride=stride,
                                 padding=torch_padding, dilation=dilation, groups=groups)
    tx, tw = nchw(x).requires_grad_(), oihw(w).requires_grad_()
    out = conv(tx, tw)
    out.backward(nchw(g))
    _close(value, out.detach().permute(0, 2, 3, 1))
    _close(gx, tx.grad.permute(0, 2, 3, 1))
    _close(gw, tw.grad.permute(2, 3, 1, 0))
    _, ref_tangent = torch.func.jvp(conv, (nchw(x), oihw(w)), (nchw(dx), oihw(dw)))
    _close(tangent, ref_tangent.permute(0, 2, 3, 1))


def test_conv2d_checks_groups_against_the_shapes():
    x = jnp.ones((1, 5, 5, 4))
    with pytest.raises(ShapeError, match=r"'conv2d'.*4 channels.*'groups' = 2.*expects 6"):
        gates.conv2d(x, jnp.ones((3, 3, 3, 4)), groups=2)
    with pytest.raises(ShapeError, match=r"'conv2d'.*'groups' = 4 must divide the 6 output"):
        gates.conv2d(x, jnp.ones((3, 3, 1, 6)), groups=4)
    with pytest.raises(ShapeError, match=r"'conv2d'.*\(3, 3\) window \(dilated to span "
                                         r"\(7, 7\)\) does not fit"):
        gates.conv2d(x, jnp.ones((3, 3, 4, 1)), padding="valid", dilation=3)


# --- the pools against a loop-by-loop reading of torch's rules, and torch ----------------------

def _pool_reference(x, kind, window, stride, padding, dilation, ceil_mode, count_include_pad):
    """torch's max_pool2d / avg_pool2d, one output at a time, in numpy (pads as (lo, hi))."""
    (kh, kw), (sh, sw), (dh, dw) = window, stride, dilation
    (top, bottom), (left, right) = padding

    def size(n, k, s, d, lo, hi):
        room = n + lo + hi - (k - 1) * d - 1
        out = (-(-room // s) if ceil_mode else room // s) + 1
        return out - 1 if ceil_mode and (out - 1) * s >= n + lo else out

    n, h, w, c = x.shape
    out = np.zeros((n, size(h, kh, sh, dh, top, bottom), size(w, kw, sw, dw, left, right), c))
    for p, q in itertools.product(range(out.shape[1]), range(out.shape[2])):
        rows = [p * sh + i * dh - top for i in range(kh)]
        cols = [q * sw + j * dw - left for j in range(kw)]
        inside = [(r, s) for r in rows for s in cols if 0 <= r < h and 0 <= s < w]
        values = np.stack([x[:, r, s] for r, s in inside])
        if kind == "max":
            out[:, p, q] = values.max(0)
        else:
            padded = [(r, s) for r in rows for s in cols
                      if -top <= r < h + bottom and -left <= s < w + right]
            out[:, p, q] = values.sum(0) / len(padded if count_include_pad else inside)
    return out


POOL_CASES = [  # (x shape, window, stride, padding, dilation, ceil_mode, count_include_pad)
    ((2, 6, 6, 2), 2, None, 0, 1, False, True),
    ((1, 7, 8, 2), 3, 2, 1, 1, True, True),
    ((1, 7, 8, 2), 3, 2, 1, 1, True, False),
    ((2, 8, 7, 1), (3, 2), (2, 1), (1, 1), (2, 1), True, False),
    ((1, 9, 9, 2), 3, 2, 1, 2, False, True),
    ((1, 5, 6, 1), 2, 2, (1, 0), 1, True, True),
    ((1, 6, 5, 2), (2, 3), 1, 0, (1, 2), False, True),
    ((2, 10, 9, 1), (3, 2), (2, 3), (1, 1), 1, True, False),   # torch OpInfo-like samples
    ((1, 8, 8, 1), 3, 3, 1, 1, True, False),
]


def _pool_static(case, kind):
    _, window, stride, padding, dilation, ceil_mode, count_include_pad = case
    static = {"window": window, "stride": stride, "padding": padding, "dilation": dilation,
              "ceil_mode": ceil_mode}
    return {**static, "count_include_pad": count_include_pad} if kind == "avg" else static


def _pairs(value):
    return (value, value) if isinstance(value, int) else value


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "-".join(map(str, c[1:])))
def test_pools_match_torchs_rules_and_jax_autodiff(case, kind):
    x = (RNG.permutation(int(np.prod(case[0]))) * 0.1).reshape(case[0])  # no ties
    gate = gates.ALL[f"{kind}_pool2d"]
    static = _pool_static(case, kind)
    _, window, stride, padding, dilation, ceil_mode, count_include_pad = case
    with jax.enable_x64(True):
        ref = _pool_reference(x, kind, _pairs(window), _pairs(stride or window),
                              tuple(_pairs(p) for p in _pairs(padding)), _pairs(dilation),
                              ceil_mode, count_include_pad)
        _close(gate(jnp.asarray(x), **static), ref)
        assert check_gate(gate, x, **static).ok


def _max_pool_gradient_reference(x, g, window, stride, padding, dilation, ceil_mode):
    """max_pool2d's gradient, window by window in numpy: each window's cotangent goes to its
    first NaN, else to its first maximum (row-major over the window's points, pads never win)."""
    (kh, kw), (sh, sw), (dh, dw) = window, stride, dilation
    (top, _), (left, _) = padding
    dx = np.zeros_like(x)
    for n, p, q, c in itertools.product(*map(range, g.shape)):
        points = [(p * sh + i * dh - top, q * sw + j * dw - left)
                  for i in range(kh) for j in range(kw)]
        values = [x[n, r, s, c] if 0 <= r < x.shape[1] and 0 <= s < x.shape[2] else -np.inf
                  for r, s in points]
        nans = [k for k, v in enumerate(values) if np.isnan(v)]
        r, s = points[nans[0] if nans else int(np.argmax(values))]
        dx[n, r, s, c] += np.nan if nans else g[n, p, q, c]
    return dx


@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "-".join(map(str, c[1:])))
def test_max_pool2d_gradient_goes_to_the_first_winner(case):
    """Ties (values from {-1, 0, 1}), -inf and NaN inputs: the backward places each window's
    cotangent on its first winner, as a loop over windows does; the overlapping windows of a
    stride below the window add up."""
    shape, window, stride, padding, dilation, ceil_mode, _ = case
    x = RNG.integers(-1, 2, shape).astype(np.float64)
    x.flat[RNG.choice(x.size, 2, replace=False)] = [np.nan, -np.inf]
    x[0, 1:3, 1:3, 0] = np.nan  # windows holding several NaNs
    static = _pool_static(case, "max")
    with jax.enable_x64(True):
        out, vjp = jax.vjp(lambda x: gates.max_pool2d(x, **static), jnp.asarray(x))
        g = RNG.standard_normal(out.shape)
        (dx,) = jax.jit(vjp)(jnp.asarray(g))
    ref = _max_pool_gradient_reference(
        x, g, _pairs(window), _pairs(stride or window), tuple(_pairs(p) for p in _pairs(padding)),
        _pairs(dilation), ceil_mode)
    np.testing.assert_allclose(np.asarray(dx), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "-".join(map(str, c[1:])))
def test_pools_match_torch(case, kind):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    _, window, stride, padding, dilation, ceil_mode, count_include_pad = case
    if kind == "avg" and dilation != 1:
        pytest.skip("torch's avg_pool2d has no dilation")
    x = (RNG.permutation(int(np.prod(case[0]))) * 0.1).reshape(case[0])
    value, (gx,), tangent, g, (dx,) = _ours(gates.ALL[f"{kind}_pool2d"], (x,),
                                          **_pool_static(case, kind))
    nchw = lambda a: torch.tensor(np.asarray(a)).permute(0, 3, 1, 2)

    def pool(x):
        if kind == "max":
            return functional.max_pool2d(x, window, stride, padding, dilation,
                                         ceil_mode=ceil_mode)
        return functional.avg_pool2d(x, window, stride, padding, ceil_mode=ceil_mode,
                                     count_include_pad=count_include_pad)
    tx = nchw(x).requires_grad_()
    out = pool(tx)
    out.backward(nchw(g))
    _close(value, out.detach().permute(0, 2, 3, 1))
    _close(gx, tx.grad.permute(0, 2, 3, 1))
    _close(tangent, torch.func.jvp(pool, (nchw(x),), (nchw(dx),))[1].permute(0, 2, 3, 1))


def test_avg_pool2d_divisors_by_hand():
    """5x5 ones, window 3, stride 2, padding 1, ceil_mode: the windows start at -1, 1 and 3 on
    each axis; the last one overhangs by one (not counted); padding counts unless told not."""
    x = jnp.ones((1, 5, 5, 1))
    counted = gates.avg_pool2d(x, window=3, stride=2, padding=1, ceil_mode=True)
    np.testing.assert_allclose(counted[0, :, :, 0], np.outer([2, 3, 2], [2, 3, 2]) / 9)
    np.testing.assert_allclose(gates.avg_pool2d(x, window=3, stride=2, padding=1,
                                                ceil_mode=True, count_include_pad=False),
                               np.ones((1, 3, 3, 1)))
    # ceil_mode drops a window that would start in the right padding: 4 + 1 padding, window 2.
    assert gates.max_pool2d(jnp.ones((1, 4, 4, 1)), window=2, stride=2, padding=1,
                            ceil_mode=True).shape == (1, 3, 3, 1)


# --- jit, vmap and second order with the options -----------------------------------------------

TRANSFORM_CASES = [
    ("conv2d", ((1, 6, 6, 4), (3, 3, 2, 4)), {"stride": 2, "padding": (1, 2), "dilation": 2,
                                              "groups": 2}),
    ("max_pool2d", ((1, 7, 7, 2),), {"window": 3, "stride": 2, "padding": 1, "dilation": 2,
                                    "ceil_mode": True}),
    ("avg_pool2d", ((1, 7, 7, 2),), {"window": 3, "stride": 2, "padding": [1, 0],
                                    "ceil_mode": True, "count_include_pad": False}),
]


@pytest.mark.parametrize("name, shapes, static", TRANSFORM_CASES, ids=[c[0] for c in
                                                                      TRANSFORM_CASES])
def test_options_survive_jit_vmap_and_second_order(name, shapes, static):
    gate = gates.ALL[name]
    with jax.enable_x64(True):
        args = [jnp.asarray((RNG.permutation(int(np.prod(s))) * 0.1).reshape(s)) for s in shapes]
        batched = [jnp.stack([a, 2 * a + 0.05]) for a in args]

        def second(fn):
            """d/da of |d loss / da|^2: a Hessian-vector product through both rules."""
            argnums = tuple(range(len(args)))
            loss = lambda *a: jnp.sum(jnp.sin(fn(*a, **static)))
            grads = lambda *a: sum(jnp.sum(d ** 2) for d in jax.grad(loss, argnums)(*a))
            return jax.vmap(jax.grad(grads, argnums))
        jax.tree.map(_close, jax.jit(second(gate))(*batched), second(gate.forward)(*batched))
        _close(jax.jit(jax.vmap(lambda *a: gate(*a, **static)))(*batched),
               jax.vmap(lambda *a: gate.forward(*a, **static))(*batched))


# --- the layers ---------------------------------------------------------------------------------

def test_conv2d_layer_takes_dilation_groups_and_every_padding_form():
    x = jnp.asarray(RNG.standard_normal((2, 7, 7, 6)), jnp.float32)
    for padding in ["same", "SAME", 1, (1, 1), [[1, 1], [1, 1]]]:
        conv = layers.Conv2D(4, 3, padding=padding, dilation=1, groups=2)
        params = conv.init(jax.random.key(0), x)
        assert params["w"].shape == (3, 3, 3, 4)
        assert conv.apply(params, x).shape == (2, 7, 7, 4)
    depthwise = layers.Conv2D(12, 3, padding="valid", dilation=2, groups=6)
    params = depthwise.init(jax.random.key(0), x)
    assert params["w"].shape == (3, 3, 1, 12)
    np.testing.assert_allclose(
        depthwise.apply(params, x),
        gates.conv2d(x, params["w"], padding="VALID", dilation=2, groups=6) + params["b"])
    assert repr(depthwise) == "Conv2D(12, 3, padding='VALID', dilation=2, groups=6)"
    assert repr(layers.Conv2D(4, 3, padding="same")) == "Conv2D(4, 3)"
    assert repr(layers.Conv2D(4, 3, padding=[1, 2])) == "Conv2D(4, 3, padding=(1, 2))"


def test_conv2d_layer_errors_name_the_layer():
    with pytest.raises(ArgumentError, match=r"Conv2D: groups=3 must divide features=4"):
        layers.Conv2D(4, 3, groups=3)
    with pytest.raises(ArgumentError, match=r"Conv2D: groups must be a positive int, got 0"):
        layers.Conv2D(4, 3, groups=0)
    with pytest.raises(DifprogError, match=r"Conv2D: padding must be .* got 'full'"):
        layers.Conv2D(4, 3, padding="full")
    with pytest.raises(ArgumentError, match=r"Conv2D: dilation"):
        layers.Conv2D(4, 3, dilation=0)
    with pytest.raises(ShapeError, match=r"layer 'conv2d'.*groups=2.*3 channels"):
        layers.Conv2D(4, 3, groups=2).init(jax.random.key(0), jnp.zeros((1, 5, 5, 3)))


def test_pool_layers_take_dilation_ceil_mode_and_count_include_pad():
    x = jnp.asarray(RNG.standard_normal((2, 7, 7, 3)), jnp.float32)
    options = {"dilation": 2, "ceil_mode": True}
    max_pool = layers.MaxPool2D(3, 2, "same", **options)
    np.testing.assert_allclose(max_pool.apply({}, x), gates.max_pool2d(
        x, window=3, stride=2, padding="SAME", **options))
    avg_pool = layers.AvgPool2D(3, 2, [1, 1], ceil_mode=True, count_include_pad=False)
    np.testing.assert_allclose(avg_pool.apply({}, x), gates.avg_pool2d(
        x, window=3, stride=2, padding=(1, 1), ceil_mode=True, count_include_pad=False))
    assert repr(max_pool) == ("MaxPool2D(3, stride=(2, 2), padding='SAME', dilation=(2, 2), "
                              "ceil_mode=True)")
    assert repr(avg_pool) == ("AvgPool2D(3, stride=(2, 2), padding=(1, 1), ceil_mode=True, "
                              "count_include_pad=False)")
    assert repr(layers.AvgPool2D(2)) == "AvgPool2D(2)"
    with pytest.raises(ArgumentError, match=r"AvgPool2D: count_include_pad must be True or "
                                            r"False, got 1"):
        layers.AvgPool2D(count_include_pad=1)
    with pytest.raises(ArgumentError, match=r"MaxPool2D: ceil_mode"):
        layers.MaxPool2D(ceil_mode="yes")


def test_explicit_padding_pairs_given_as_lists():
    x, w = jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 1))
    explicit = gates.conv2d(x, w, padding=[[1, 1], [1, 1]])
    np.testing.assert_array_equal(explicit, gates.conv2d(x, w, padding="SAME"))
    assert check_gate(gates.conv2d, x * 0.5, w * 0.3, padding=[[2, 0], [0, 1]]).ok
