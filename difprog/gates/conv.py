"""Image gates on NHWC inputs with HWIO kernels: convolution and pooling.

The backward of a strided window is a scatter: a strided slice's transpose is lax.pad with
interior padding, and a convolution's transposes are convolutions again.
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
from jax import lax

from difprog.errors import ShapeError
from difprog.gate import gate, linear
from difprog.gates._util import check_padding, check_pair, pair

_NHWC = ("NHWC", "HWIO", "NHWC")
_PATCH_BYTES = 4 << 20


def _conv2d(x, w, stride=1, padding="SAME"):
    """conv2d(x, w)[n,p,q,o] = sum x[n, p s + i, q s + j, c] w[i,j,c,o]; dx = conv^T(g, w), dw = conv(x, g)."""
    return lax.conv_general_dilated(x, w, pair(stride, "stride"), padding,
                                    dimension_numbers=_NHWC)

def _conv2d_backward(g, out, x, w, stride, padding):
    if 0 in (x.size, w.size, g.size):  # nothing flows: the cotangents are empty, or zeros
        return jnp.zeros_like(x), jnp.zeros_like(w)
    strides, kernel = pair(stride, "stride"), w.shape[:2]
    pads = _pads(x.shape[1:3], kernel, strides, padding)
    dilated_out = [(o - 1) * s + 1 for o, s in zip(g.shape[1:3], strides)]
    # dx: the gradient, dilated by the stride, convolved with the kernel flipped and transposed.
    dx_pads = [(k - lo - 1, n + k - 1 - d - (k - lo - 1))
               for n, k, (lo, _), d in zip(x.shape[1:3], kernel, pads, dilated_out)]
    w_flipped = jnp.swapaxes(w[::-1, ::-1], 2, 3)
    dx = lax.conv_general_dilated(g, w_flipped, (1, 1), dx_pads, lhs_dilation=strides,
                                  dimension_numbers=_NHWC)
    # dw: the input correlated with the stride-dilated gradient, batch and channels swapped.
    dw_pads = [(lo, d - n + k - lo - 1)
               for n, k, (lo, _), d in zip(x.shape[1:3], kernel, pads, dilated_out)]

    def dw_by_convolution(x, g):
        dw = lax.conv_general_dilated(x, g, (1, 1), dw_pads, rhs_dilation=strides,
                                      dimension_numbers=("CHWN", "IHWO", "NHWC"))
        return jnp.transpose(dw, (1, 2, 0, 3))

    def dw_by_patches(x, g):
        return _weight_grad_by_patches(x, g, kernel, strides, pads)

    return dx, lax.platform_dependent(x, g, cpu=dw_by_patches, default=dw_by_convolution)

def _weight_grad_by_patches(x, g, kernel, strides, pads):
    """dw = patches(x)^T g, one matmul per slice of the batch (XLA:CPU's own weight-gradient
    convolution runs 2.6x slower; slices of about _PATCH_BYTES of patches stay in cache)."""
    n, c, k = x.shape[0], x.shape[3], kernel[0] * kernel[1]
    per_example = g.shape[1] * g.shape[2] * k * c * x.dtype.itemsize
    size = max(d for d in range(1, n + 1)
               if d == 1 or (n % d == 0 and d * per_example <= _PATCH_BYTES))

    def one_slice(xg):
        xs, gs = xg
        padded = lax.pad(xs, jnp.zeros((), xs.dtype), [(0, 0, 0), *((lo, hi, 0) for lo, hi in pads),
                                                        (0, 0, 0)])
        (out_h, out_w), (sh, sw) = gs.shape[1:3], strides
        patches = jnp.concatenate([
            padded[:, i:i + (out_h - 1) * sh + 1:sh, j:j + (out_w - 1) * sw + 1:sw, :]
            for i, j in _offsets(kernel)], axis=-1)
        return patches.reshape(-1, k * c).T @ gs.reshape(-1, g.shape[3])

    slices = (x.reshape(n // size, size, *x.shape[1:]), g.reshape(n // size, size, *g.shape[1:]))
    return lax.map(one_slice, slices).sum(0).reshape(*kernel, c, g.shape[3])

def _conv2d_tangent(dx, dw, out, x, w, stride, padding):
    return _conv2d(dx, w, stride, padding) + _conv2d(x, dw, stride, padding)

def _check_conv2d(x, w, stride, padding):
    if x.ndim != 4 or w.ndim != 4:
        raise ShapeError(f"gate 'conv2d' needs x of rank 4 (N, H, W, C) and w of rank 4 "
                         f"(KH, KW, C_in, C_out), got x{list(x.shape)} and w{list(w.shape)}")
    if x.shape[3] != w.shape[2]:
        raise ShapeError(f"gate 'conv2d': x{list(x.shape)} has {x.shape[3]} channels but the "
                         f"kernel w{list(w.shape)} expects {w.shape[2]}")
    if 0 in w.shape[:2]:
        raise ShapeError(f"gate 'conv2d': the kernel w{list(w.shape)} has an empty window; its "
                         f"height and width (KH, KW) must be at least 1")
    _check_fit("conv2d", x, w.shape[:2], check_pair("conv2d", "stride", stride),
               check_padding("conv2d", padding))

conv2d = gate(_conv2d, backward=_conv2d_backward, tangent=_conv2d_tangent, check=_check_conv2d)


def _max_pool2d(x, window=2, stride=None, padding="VALID"):
    """max_pool2d: the max of each window; the gradient goes to the (first) winner of each window."""
    kernel, strides, pads = _geometry(x, window, stride, padding)
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, *kernel, 1), (1, *strides, 1), pads)

def _max_pool2d_backward(g, out, x, window, stride, padding):
    if x.size == 0 or out.size == 0:
        return (jnp.zeros_like(x),)
    kernel, strides, pads = _geometry(x, window, stride, padding)
    winner = jnp.argmax(_windows(x, kernel, strides, pads, -jnp.inf), axis=0)
    g = jnp.where(jnp.isnan(out), jnp.nan, g)  # a NaN wins its window: its gradient is NaN
    return (sum(_scatter(jnp.where(winner == i, g, 0), offset, x.shape, strides, pads)
                for i, offset in enumerate(_offsets(kernel))),)

def _max_pool2d_tangent(dx, out, x, window, stride, padding):
    if x.size == 0 or out.size == 0:
        return jnp.zeros_like(out)
    kernel, strides, pads = _geometry(x, window, stride, padding)
    winner = jnp.argmax(_windows(x, kernel, strides, pads, -jnp.inf), axis=0)
    tangents = _windows(dx, kernel, strides, pads, 0)
    return jnp.where(jnp.isnan(out), jnp.nan, jnp.take_along_axis(tangents, winner[None], 0)[0])

max_pool2d = gate(_max_pool2d, backward=_max_pool2d_backward, tangent=_max_pool2d_tangent,
                  check=lambda x, **kw: _check_pool("max_pool2d", x, **kw))


def _avg_pool2d(x, window=2, stride=None, padding="VALID"):
    """avg_pool2d: the mean of each window (padding counts as zeros); d = 1 / window size each."""
    kernel, strides, pads = _geometry(x, window, stride, padding)
    total = lax.reduce_window(x, 0.0, lax.add, (1, *kernel, 1), (1, *strides, 1), pads)
    return total / (kernel[0] * kernel[1])

def _avg_pool2d_backward(g, out, x, window, stride, padding):
    if x.size == 0 or out.size == 0:
        return (jnp.zeros_like(x),)
    kernel, strides, pads = _geometry(x, window, stride, padding)
    share = g / (kernel[0] * kernel[1])
    return (sum(_scatter(share, offset, x.shape, strides, pads) for offset in _offsets(kernel)),)

avg_pool2d = linear(_avg_pool2d, _avg_pool2d_backward,
                    check=lambda x, **kw: _check_pool("avg_pool2d", x, **kw))


def _geometry(x, window, stride, padding):
    """The window's (kernel, strides, pads of all four axes); stride None means stride = window."""
    kernel = pair(window, "window")
    strides = pair(window if stride is None else stride, "stride")
    return kernel, strides, [(0, 0), *_pads(x.shape[1:3], kernel, strides, padding), (0, 0)]

def _pads(spatial, kernel, strides, padding):
    if isinstance(padding, str):
        return lax.padtype_to_pads(spatial, kernel, strides, padding)
    return [tuple(p) for p in padding]

def _offsets(kernel):
    return list(itertools.product(range(kernel[0]), range(kernel[1])))

def _windows(x, kernel, strides, pads, fill):
    """Stacks the strided slices padded_x[:, i::sh, j::sw, :], one per window offset (i, j)."""
    padded = lax.pad(x, jnp.asarray(fill, x.dtype), [(lo, hi, 0) for lo, hi in pads])
    out_h = (padded.shape[1] - kernel[0]) // strides[0] + 1
    out_w = (padded.shape[2] - kernel[1]) // strides[1] + 1
    return jnp.stack([
        lax.slice(padded, (0, i, j, 0),
                  (x.shape[0], i + (out_h - 1) * strides[0] + 1,
                   j + (out_w - 1) * strides[1] + 1, x.shape[3]),
                  (1, strides[0], strides[1], 1))
        for i, j in _offsets(kernel)])

def _scatter(values, offset, x_shape, strides, pads):
    """The transpose of one window slice: lax.pad with interior padding puts values back in place."""
    (_, _), (top, bottom), (left, right), _ = pads
    (i, j), (sh, sw) = offset, strides
    out_h, out_w = values.shape[1:3]
    padded_h, padded_w = x_shape[1] + top + bottom, x_shape[2] + left + right
    placed = lax.pad(values, jnp.zeros((), values.dtype),
                     [(0, 0, 0), (i, padded_h - i - (out_h - 1) * sh - 1, sh - 1),
                      (j, padded_w - j - (out_w - 1) * sw - 1, sw - 1), (0, 0, 0)])
    return placed[:, top:top + x_shape[1], left:left + x_shape[2], :]

def _check_fit(name, x, kernel, strides, padding):
    """Refuses a window larger than the input padded by VALID or explicit pads (XLA would
    return an empty array); 'SAME' padding always fits."""
    if padding in ("SAME", "SAME_LOWER"):
        return
    pads = _pads(x.shape[1:3], kernel, strides, padding)
    padded = [n + lo + hi for n, (lo, hi) in zip(x.shape[1:3], pads)]
    if any(n < k for n, k in zip(padded, kernel)):
        raise ShapeError(f"gate {name!r}: the {tuple(kernel)} window does not fit the input "
                         f"x{list(x.shape)} with padding {padding!r} (padded height and width "
                         f"{tuple(padded)}); use a smaller window, more padding or "
                         f"padding='SAME'")

def _check_pool(name, x, window, stride, padding):
    if x.ndim != 4:
        raise ShapeError(f"gate {name!r} needs x of rank 4 (N, H, W, C), got x{list(x.shape)}")
    kernel = check_pair(name, "window", window)
    strides = kernel if stride is None else check_pair(name, "stride", stride)
    _check_fit(name, x, kernel, strides, check_padding(name, padding))
