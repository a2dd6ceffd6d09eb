"""Image gates on NHWC inputs with HWIO kernels: convolution and pooling.

The backward of a strided window is a scatter: a strided slice's transpose is lax.pad with
interior padding, and a convolution's transposes are convolutions again.

Padding takes every form torch and JAX users write: 'SAME', 'VALID', 'SAME_LOWER' (any case),
an int, a pair (ph, pw) as in torch, or two (low, high) pairs. The pools follow
torch.nn.functional.max_pool2d and avg_pool2d: `dilation` spaces a window's points, `ceil_mode`
adds a last window that starts inside the input or its left padding, and avg_pool2d divides by
the window's points inside the padded input (count_include_pad=True) or inside the input alone,
never counting the ceil_mode overhang. Where torch refuses padding of more than half the window,
the pools refuse only padding that leaves a window with no input point in it (max_pool2d would
give -inf there, avg_pool2d 0 / 0).
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import lax

from difprog.errors import ArgumentError, ShapeError
from difprog.gate import bilinear, gate, linear
from difprog.gates import conv_paths as paths
from difprog.gates._util import check_count, check_flag, check_padding, check_pair, pair
from difprog.gates.points import distinct, empty, normal
from difprog.gates.registry import register

__all__ = ["avg_pool2d", "conv2d", "geometry", "max_pool2d"]


def _conv2d(x, w, stride=1, padding="SAME", dilation=1, groups=1):
    """conv2d[n,p,q,o] = sum x[n, p s + i d, q s + j d, c] w[i,j,c',o], c in o's group c'."""
    geo = geometry(x.shape, w.shape, stride, padding, dilation, groups)
    return _by_platform("forward", geo, w.shape,
                        lambda path, x, w: paths.forward(x, w, geo, path), x, w)

def _conv2d_backward(g, out, x, w, stride, padding, dilation, groups):
    if 0 in (x.size, w.size, g.size):  # nothing flows: the cotangents are empty, or zeros
        return jnp.zeros_like(x), jnp.zeros_like(w)
    geo = geometry(x.shape, w.shape, stride, padding, dilation, groups)
    dx = _by_platform("input_grad", geo, w.shape,
                      lambda path, g, w: paths.input_grad(g, w, x.shape, geo, path), g, w)
    dw = _by_platform("weight_grad", geo, w.shape,
                      lambda path, x, g: paths.weight_grad(x, g, w.shape, geo, path), x, g)
    return dx, dw

def geometry(x_shape, w_shape, stride, padding, dilation, groups):
    """The static shape of a convolution: pairs, explicit pads and the output's map."""
    strides, dilation = pair(stride, "stride"), pair(dilation, "dilation")
    span = _span(w_shape[:2], dilation)
    pads = _pads("conv2d", x_shape[1:3], span, strides, padding)
    out = tuple((n + lo + hi - k) // s + 1
                for n, k, s, (lo, hi) in zip(x_shape[1:3], span, strides, pads))
    return paths.Geometry(tuple(w_shape[:2]), strides, dilation, tuple(pads), groups, out)

def _by_platform(computation, geo, w_shape, compute, *args):
    """`compute(path, *args)` by the CPU rule's path on the CPU, by XLA's convolution elsewhere
    (the choice is static: one branch is lowered per platform)."""
    path = paths.choose(computation, geo, w_shape)
    if path == "xla":
        return compute("xla", *args)
    return lax.platform_dependent(*args, cpu=lambda *a: compute(path, *a),
                                  default=lambda *a: compute("xla", *a))

def _check_conv2d(x, w, stride, padding, dilation, groups):
    if x.ndim != 4 or w.ndim != 4:
        raise ShapeError(f"gate 'conv2d' needs x of rank 4 (N, H, W, C) and w of rank 4 "
                         f"(KH, KW, C_in / groups, C_out), got x{list(x.shape)} and "
                         f"w{list(w.shape)}")
    groups = check_count("conv2d", "groups", groups)
    if x.shape[3] != w.shape[2] * groups:
        per_group = "" if groups == 1 else (f" with argument 'groups' = {groups} "
                                            f"({w.shape[2]} channels per group)")
        raise ShapeError(f"gate 'conv2d': x{list(x.shape)} has {x.shape[3]} channels but the "
                         f"kernel w{list(w.shape)}{per_group} expects {w.shape[2] * groups}; "
                         f"w.shape[2] must be x's channels / groups")
    if w.shape[3] % groups:
        raise ShapeError(f"gate 'conv2d': argument 'groups' = {groups} must divide the "
                         f"{w.shape[3]} output channels of the kernel w{list(w.shape)}")
    if 0 in w.shape[:2]:
        raise ShapeError(f"gate 'conv2d': the kernel w{list(w.shape)} has an empty window; its "
                         f"height and width (KH, KW) must be at least 1")
    strides = check_pair("conv2d", "stride", stride)
    dilation = check_pair("conv2d", "dilation", dilation)
    _check_fit("conv2d", x, w.shape[:2], dilation, strides, check_padding("conv2d", padding))

def _conv2d_points(rng):
    return [
        ((normal(rng, 2, 5, 5, 3), normal(rng, 3, 3, 3, 4)), {}),
        ((normal(rng, 1, 6, 7, 2), normal(rng, 3, 2, 2, 3)), {"stride": 2, "padding": "VALID"}),
        ((normal(rng, 1, 5, 6, 2), normal(rng, 2, 3, 2, 2)), {"stride": (2, 1)}),
        ((normal(rng, 1, 7, 6, 2), normal(rng, 2, 3, 2, 3)), {"dilation": 2, "padding": 1}),
        ((normal(rng, 2, 6, 5, 4), normal(rng, 3, 3, 2, 6)),
         {"groups": 2, "padding": (1, 0), "stride": 2}),
        ((normal(rng, 1, 5, 6, 3), normal(rng, 3, 3, 1, 6)),
         {"groups": 3, "dilation": (1, 2), "padding": "same"}),
        ((normal(rng, 1, 6, 5, 2), normal(rng, 3, 2, 2, 2)),
         {"padding": ((0, 2), (1, 0)), "dilation": (2, 1), "stride": (1, 2)}),
    ]

def _conv2d_zero_size():
    z = empty
    return [((z(0, 5, 5, 2), z(3, 3, 2, 4)), {}), ((z(1, 5, 5, 0), z(3, 3, 0, 4)), {}),
            ((z(1, 5, 5, 2), z(3, 3, 2, 0)), {}), ((z(1, 0, 5, 2), z(3, 3, 2, 4)), {}),
            ((z(0, 6, 6, 2), z(3, 3, 2, 4)), {"stride": 2, "padding": "VALID"}),
            ((z(1, 0, 2, 2), z(2, 2, 2, 3)), {"padding": ((1, 1), (0, 0))}),
            ((z(0, 5, 5, 4), z(3, 3, 2, 4)), {"groups": 2, "dilation": 2, "padding": 1}),
            ((z(1, 5, 5, 0), z(3, 3, 0, 4)), {"groups": 2}),
            ((z(1, 5, 5, 4), z(3, 3, 1, 0)), {"groups": 4, "padding": (1, 2)})]

_BAD_STRIDE = (0, -1, "x", 1.5, (1,), (1, 2, 3), (0, 1), (1, 1.0), True)
_BAD_PADDING = ("bogus", ((1, 1),), ((1, 1, 1), (1, 1)), (("a", "b"), (1, 1)),
                ((-1, 0), (0, 0)), None, "SAME ", -1, 1.5, True, (1, -1), (1, 2, 3),
                ((1, 1), 2), (), (1.0, 1))

# Bilinear: its tangent, conv2d(dx, w) + conv2d(x, dw), comes from the forward.
conv2d = register(
    bilinear(_conv2d, _conv2d_backward, check=_check_conv2d),
    points=_conv2d_points, zero_size=_conv2d_zero_size,
    bad={"stride": (*_BAD_STRIDE, None), "padding": _BAD_PADDING,
         "dilation": (*_BAD_STRIDE, None),
         "groups": (0, -1, 1.5, "a", True, None, (1,), 2, 3)})


def _max_pool2d(x, window=2, stride=None, padding="VALID", dilation=1, ceil_mode=False):
    """max_pool2d: the max of each window (pads are -inf); the gradient goes to its first winner."""
    win = _window("max_pool2d", x.shape, window, stride, padding, dilation, ceil_mode)
    if win.dilation != (1, 1):  # JAX cannot differentiate a dilated reduce_window max
        return jnp.max(_windows(x, win, -jnp.inf), axis=0)
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, *win.kernel, 1), (1, *win.strides, 1),
                             win.pads)

def _max_pool2d_backward(g, out, x, window, stride, padding, dilation, ceil_mode):
    if x.size == 0 or out.size == 0:
        return (jnp.zeros_like(x),)
    win = _window("max_pool2d", x.shape, window, stride, padding, dilation, ceil_mode)
    winner = jnp.argmax(_windows(x, win, -jnp.inf), axis=0)
    g = jnp.where(jnp.isnan(out), jnp.nan, g)  # a NaN wins its window: its gradient is NaN
    return (sum(_scatter(jnp.where(winner == i, g, 0), offset, x.shape, win)
                for i, offset in enumerate(_offsets(win.kernel, win.dilation))),)

def _max_pool2d_tangent(dx, out, x, window, stride, padding, dilation, ceil_mode):
    if x.size == 0 or out.size == 0:
        return jnp.zeros_like(out)
    win = _window("max_pool2d", x.shape, window, stride, padding, dilation, ceil_mode)
    winner = jnp.argmax(_windows(x, win, -jnp.inf), axis=0)
    tangents = _windows(dx, win, 0)
    return jnp.where(jnp.isnan(out), jnp.nan, jnp.take_along_axis(tangents, winner[None], 0)[0])

def _pool_points(sample):
    return lambda rng: [
        ((sample(rng, 2, 4, 4, 3),), {}),
        ((sample(rng, 1, 5, 5, 2),), {"window": 3, "stride": 2, "padding": "SAME"}),
        ((sample(rng, 1, 5, 6, 2),), {"window": (2, 3), "stride": 1})]

def _max_pool2d_points(rng):
    return [
        *_pool_points(distinct)(rng),
        ((distinct(rng, 1, 8, 7, 2),),
         {"window": 3, "stride": 2, "padding": 1, "dilation": 2, "ceil_mode": True}),
        ((distinct(rng, 2, 5, 6, 1),),
         {"window": (2, 3), "stride": 2, "padding": (1, 0), "ceil_mode": True}),
        ((distinct(rng, 1, 5, 5, 2),), {"padding": ((1, 0), (0, 1)), "stride": (1, 2)}),
    ]

def _pool_zero_size():
    z = empty
    return [((z(0, 4, 4, 2),), {}), ((z(1, 4, 4, 0),), {}),
            ((z(1, 0, 4, 2),), {"padding": "SAME"}),
            ((z(1, 0, 4, 2),), {"padding": ((1, 1), (0, 0))}),
            ((z(0, 5, 5, 2),), {"window": 3, "stride": 2, "padding": 1, "dilation": 2,
                                "ceil_mode": True}),
            ((z(1, 0, 4, 2),), {"padding": (1, 0), "ceil_mode": True})]

_BAD_FLAG = (1, 0, "yes", None, 1.0)
_BAD_POOL = {"window": ("x", 0, (2,), 1.5, True, None, (2, -2)), "stride": _BAD_STRIDE,
             # 5, (0, 2): windows of padding only
             "padding": (*_BAD_PADDING, 5, (0, 2)), "dilation": _BAD_STRIDE,
             "ceil_mode": _BAD_FLAG}

max_pool2d = register(
    gate(_max_pool2d, backward=_max_pool2d_backward, tangent=_max_pool2d_tangent,
         check=lambda x, **kw: _check_pool("max_pool2d", x, **kw)),
    points=_max_pool2d_points, zero_size=_pool_zero_size, bad=_BAD_POOL)


def _avg_pool2d(x, window=2, stride=None, padding="VALID", dilation=1, ceil_mode=False,
                count_include_pad=True):
    """avg_pool2d: a window's sum / its count of points in the padded input (or x); d = 1/count."""
    win = _window("avg_pool2d", x.shape, window, stride, padding, dilation, ceil_mode)
    total = lax.reduce_window(x, 0.0, lax.add, (1, *win.kernel, 1), (1, *win.strides, 1),
                              win.pads, window_dilation=(1, *win.dilation, 1))
    return total / _divisor(win, x, count_include_pad)

def _avg_pool2d_backward(g, out, x, window, stride, padding, dilation, ceil_mode,
                         count_include_pad):
    if x.size == 0 or out.size == 0:
        return (jnp.zeros_like(x),)
    win = _window("avg_pool2d", x.shape, window, stride, padding, dilation, ceil_mode)
    share = g / _divisor(win, x, count_include_pad)
    # Each input point gets the shares of the windows over it: spread the shares out by the
    # stride, then sum them over the (symmetric) window, as JAX transposes a window sum.
    spread = lax.pad(share, jnp.zeros((), share.dtype), [
        (0, 0, 0),
        *((k - 1 - lo, n - (o - 1) * s - 1 + lo, s - 1) for n, k, s, o, (lo, _) in
          zip(x.shape[1:3], _span(win.kernel, win.dilation), win.strides, win.out, win.given)),
        (0, 0, 0)])
    return (lax.reduce_window(spread, 0.0, lax.add, (1, *win.kernel, 1), (1, 1, 1, 1), "VALID",
                              window_dilation=(1, *win.dilation, 1)),)

def _avg_pool2d_points(rng):
    return [
        *_pool_points(normal)(rng),
        ((normal(rng, 1, 6, 7, 2),),
         {"window": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False}),
        ((normal(rng, 2, 7, 8, 1),),
         {"window": (2, 3), "dilation": 2, "padding": (1, 1), "ceil_mode": True}),
        ((normal(rng, 1, 4, 5, 2),),
         {"padding": ((1, 0), (0, 1)), "stride": 1, "count_include_pad": False}),
    ]

avg_pool2d = register(
    linear(_avg_pool2d, _avg_pool2d_backward,
           check=lambda x, **kw: _check_pool("avg_pool2d", x, **kw)),
    points=_avg_pool2d_points, affine=("x",),
    zero_size=lambda: [*_pool_zero_size(), ((empty(0, 5, 5, 2),),
                                             {"padding": 1, "ceil_mode": True,
                                              "count_include_pad": False})],
    bad={**_BAD_POOL, "count_include_pad": _BAD_FLAG})


class _Window(NamedTuple):
    """A pool's geometry: window, strides and dilation as pairs, the pads of all four axes
    (ceil_mode's overhang included in the high ones), the (low, high) pads it was given and
    the output's height and width."""
    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilation: tuple[int, int]
    pads: list
    given: list
    out: tuple[int, int]


def _window(name, shape, window, stride, padding, dilation, ceil_mode):
    """The geometry of a pool over inputs of `shape`; stride None means stride = window."""
    kernel = pair(window, "window")
    strides = kernel if stride is None else pair(stride, "stride")
    dilation = pair(dilation, "dilation")
    span = _span(kernel, dilation)
    given = _pads(name, shape[1:3], span, strides, padding)
    high = [hi + max(0, (_out_size(n, k, s, p, ceil_mode) - 1) * s + k - n - p[0] - p[1])
            for n, k, s, p, (_, hi) in zip(shape[1:3], span, strides, given, given)]
    pads = [(0, 0), *((lo, hi) for (lo, _), hi in zip(given, high)), (0, 0)]
    out = tuple((n + lo + hi - k) // s + 1
                for n, k, s, (lo, _), hi in zip(shape[1:3], span, strides, given, high))
    return _Window(kernel, strides, dilation, pads, given, out)

def _out_size(n, span, stride, pads, ceil_mode):
    """torch's pooling output size: floor or ceil of (n + pads - span) / stride, plus one; with
    ceil_mode the last window must start inside the input or the low padding."""
    room = n + pads[0] + pads[1] - span
    out = (-(-room // stride) if ceil_mode else room // stride) + 1
    return out - 1 if ceil_mode and (out - 1) * stride >= n + pads[0] else out

def _span(kernel, dilation):
    """A dilated window's extent: (k - 1) d + 1 on each axis."""
    return tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))

def _pads(name, spatial, span, strides, padding):
    """The (low, high) pads of the two spatial axes, for any form of `padding`."""
    padding = check_padding(name, padding)
    if isinstance(padding, str):
        return [tuple(p) for p in lax.padtype_to_pads(spatial, span, strides, padding)]
    return [tuple(p) for p in padding]

def _offsets(kernel, dilation=(1, 1)):
    """Where each point of a window lies from the window's corner."""
    return [(i * dilation[0], j * dilation[1])
            for i, j in itertools.product(range(kernel[0]), range(kernel[1]))]

def _counts(n, k, s, d, given, out, include_pad):
    """For each of `out` windows along one axis, how many of its k points the mean counts."""
    lo, hi = given
    start, stop = (0, n + lo + hi) if include_pad else (lo, lo + n)
    points = np.arange(out)[:, None] * s + np.arange(k)[None, :] * d
    return ((points >= start) & (points < stop)).sum(1)

def _divisor(win, x, count_include_pad):
    """What avg_pool2d divides each window's sum by: a number when all windows count the same
    number of points (the window's size without padding), else an (out_h, out_w, 1) array."""
    counts = [_counts(n, k, s, d, p, out, count_include_pad)
              for n, k, s, d, p, out in zip(x.shape[1:3], win.kernel, win.strides, win.dilation,
                                            win.given, win.out)]
    divisor = np.outer(*counts)[..., None]
    if divisor.size == 0 or (divisor == divisor.flat[0]).all():
        return float(divisor.flat[0]) if divisor.size else float(np.prod(win.kernel))
    return jnp.asarray(divisor, x.dtype)

def _windows(x, win, fill):
    """Stacks the strided slices padded_x[:, i::sh, j::sw, :], one per window point (i, j)."""
    padded = lax.pad(x, jnp.asarray(fill, x.dtype), [(lo, hi, 0) for lo, hi in win.pads])
    out_h, out_w = win.out
    return jnp.stack([
        lax.slice(padded, (0, i, j, 0),
                  (x.shape[0], i + (out_h - 1) * win.strides[0] + 1,
                   j + (out_w - 1) * win.strides[1] + 1, x.shape[3]),
                  (1, win.strides[0], win.strides[1], 1))
        for i, j in _offsets(win.kernel, win.dilation)])

def _scatter(values, offset, x_shape, win):
    """The transpose of one window slice: lax.pad with interior padding puts values back in
    place."""
    (_, _), (top, bottom), (left, right), _ = win.pads
    (i, j), (sh, sw) = offset, win.strides
    out_h, out_w = values.shape[1:3]
    padded_h, padded_w = x_shape[1] + top + bottom, x_shape[2] + left + right
    placed = lax.pad(values, jnp.zeros((), values.dtype),
                     [(0, 0, 0), (i, padded_h - i - (out_h - 1) * sh - 1, sh - 1),
                      (j, padded_w - j - (out_w - 1) * sw - 1, sw - 1), (0, 0, 0)])
    return placed[:, top:top + x_shape[1], left:left + x_shape[2], :]

def _check_fit(name, x, kernel, dilation, strides, padding, ceil_mode=False):
    """Refuses a window larger than the input padded by VALID or explicit pads (XLA would
    return an empty array); 'SAME' padding always fits."""
    if padding in ("SAME", "SAME_LOWER"):
        return
    span = _span(kernel, dilation)
    pads = _pads(name, x.shape[1:3], span, strides, padding)
    if any(_out_size(n, k, s, p, ceil_mode) < 1
           for n, k, s, p in zip(x.shape[1:3], span, strides, pads)):
        spread = "" if span == tuple(kernel) else f" (dilated to span {span})"
        padded = tuple(n + lo + hi for n, (lo, hi) in zip(x.shape[1:3], pads))
        raise ShapeError(f"gate {name!r}: the {tuple(kernel)} window{spread} does not fit the "
                         f"input x{list(x.shape)} with padding {padding!r} (padded height and "
                         f"width {padded}); use a smaller window, more padding or "
                         f"padding='SAME'")

def _check_pool(name, x, window, stride, padding, dilation, ceil_mode, count_include_pad=True):
    if x.ndim != 4:
        raise ShapeError(f"gate {name!r} needs x of rank 4 (N, H, W, C), got x{list(x.shape)}")
    kernel = check_pair(name, "window", window)
    strides = kernel if stride is None else check_pair(name, "stride", stride)
    dilation = check_pair(name, "dilation", dilation)
    check_flag(name, "ceil_mode", ceil_mode)
    check_flag(name, "count_include_pad", count_include_pad)
    _check_fit(name, x, kernel, dilation, strides, check_padding(name, padding), ceil_mode)
    win = _window(name, x.shape, kernel, strides, padding, dilation, ceil_mode)
    for n, k, s, d, p, out in zip(x.shape[1:3], kernel, strides, dilation, win.given, win.out):
        if n and out > 0 and not _counts(n, k, s, d, p, out, False).all():
            raise ArgumentError(f"gate {name!r}: argument 'padding' is {padding!r}, which leaves "
                                f"some {tuple(kernel)} windows of x{list(x.shape)} (stride "
                                f"{strides}, dilation {dilation}) with no input point, where "
                                f"max_pool2d gives -inf and avg_pool2d 0 / 0; pad at most half "
                                f"the window's span on each side (torch's limit)")
