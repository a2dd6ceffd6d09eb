"""How conv2d computes on the CPU: XLA's convolution, shifted matmuls, or patches + one matmul.

conv2d[n,p,q,o] = sum_{i,j,c} xp[n, p s + i d, q s + j d, c] w[i,j,c,o], xp the padded input,
is a sum over the kernel's k = KH KW points (i, j) of a strided slice of xp times the matrix
w[i,j]. Three ways to compute it, and its two transposes (the input and weight gradients):

- "xla": lax.conv_general_dilated (the gradients are convolutions too);
- "shifted": k matmuls, one per kernel point, on strided slices of the padded input; the input
  gradient places each g @ w[i,j]^T back with lax.pad (interior padding undoes the stride), the
  weight gradient is slice[i,j]^T @ g;
- "patches": the k slices stacked (im2col), one matmul with contraction k C; the weight gradient
  goes in batch slices of about PATCH_BYTES of patches (lax.map), which stay in cache. With a
  unit stride down the rows and rows of at least ROW_WIDTH (KW C / groups) values, its patches
  span one kernel row and each of the KH rows is an offset into them (a third of the memory for
  3x3 kernels: the digits CNN's second layer, 32 -> 64 channels, in 0.7x to 0.8x the time).

Groups split the channels: the matmuls become einsums with the group as a batch axis.

XLA:CPU's convolution is slow at small maps with many channels (a 3x3, 512->512 convolution on
a 2x2 map, batch 16: 120 to 140 ms against 2.2 to 3.8 ms as shifted matmuls;
benchmarks/xla_conv_repro.py), its weight gradient is slow with groups (20x) and 1x1 kernels,
and with few input channels. On large maps its convolution is the fastest. `choose` is the
rule, derived from benchmarks/conv_paths.py's table (in benchmarks/RESULTS.md; oh ow is the
output map's number of points, C the input channels), measured on this project's 2-core x86-64
machine (an AMD EPYC, quiet, with JAX 0.10.2 and 0.12.0.1: the rule keeps XLA's convolution
unless the other path won on both):

- forward: "shifted" for one input channel per group: depthwise kernels (groups = C; 2x2 and
  16x16 maps: 12x to 40x faster over two runs) and a single-channel input under a kernel of at
  most SMALL_KERNEL (9) points (the digits CNN's first layer: 2.4x to 3.5x faster alone, and
  its nine products fuse with the bias and relu that follow: 7% to 10% of the CNN's training
  step; larger kernels were not measured and keep XLA's); without groups, on maps of at most
  TINY_MAP points (2x2: ResNet-18's layer4 at 64x64 inputs, where XLA takes 50x to 60x
  longer); XLA's convolution otherwise (on 3x3 maps the paths tie within this machine's noise,
  and from 4x4 maps on XLA's is as fast or faster).
- input gradient: "shifted" for depthwise kernels, 1x1 kernels, and, without groups, maps of at
  most SMALL_MAP points (7x7) with at least WIDE (128) channels per group (1.1x to 80x faster:
  XLA's convolution with lhs dilation is slow there); XLA's otherwise.
- weight gradient: "shifted" for 1x1 kernels without groups (1.4x to 3.2x faster); "patches" on
  maps of at least LARGE_MAP points (28x28 and up) for grouped kernels other than depthwise,
  and without groups for narrow patches: stride 1 and at most NARROW (288) kernel points times
  input channels (the digits CNN's 3x3 convolutions over 1 and 32 channels: 2.5x to 5x and,
  by kernel rows, 1.25x to 1.6x faster); with groups, "shifted" (20x to 30x faster with 4
  groups), for depthwise kernels only on maps of at most SMALL_MAP points (on a 16x16 map XLA's
  is as fast or faster); XLA's otherwise: with wide patches (64 channels and more, ResNet-18's 3x3
  layers) or a stride, its weight gradient beats patches by 1.1x to 1.9x on large maps and by
  up to 3x on small ones.

The choice is static, from shapes at trace time, and applies only to the CPU: conv.py wraps it in
lax.platform_dependent, so GPU and TPU lowerings keep lax.conv. `forced(path)` overrides the rule
(tests and benchmarks); it applies to traces made inside it.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import NamedTuple

import jax.numpy as jnp
from jax import lax

__all__ = ["PATHS", "Geometry", "choose", "forced", "forward", "input_grad", "weight_grad"]

PATHS = ("xla", "shifted", "patches")
TINY_MAP, SMALL_MAP, LARGE_MAP, WIDE, NARROW = 4, 49, 512, 128, 288
PATCH_BYTES, ROW_WIDTH, SMALL_KERNEL = 4 << 20, 96, 9
_NHWC = ("NHWC", "HWIO", "NHWC")
_forced: dict[str, str] = {}


class Geometry(NamedTuple):
    """A convolution's static shape: kernel, strides, dilation as pairs, the (low, high) pads of
    the two spatial axes, the groups, and the output's height and width."""
    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilation: tuple[int, int]
    pads: tuple[tuple[int, int], tuple[int, int]]
    groups: int
    out: tuple[int, int]


@contextlib.contextmanager
def forced(path: str | None = None, **by_computation: str):
    """Inside, conv2d computes by `path` ("xla", "shifted" or "patches") on every computation,
    or by computation: forced(forward="shifted", input_grad="xla", weight_grad="patches")."""
    choice = {name: path for name in ("forward", "input_grad", "weight_grad")} if path else {}
    choice.update(by_computation)
    unknown = {p for p in choice.values() if p not in PATHS} | (
        set(choice) - {"forward", "input_grad", "weight_grad"})
    if unknown:
        raise ValueError(f"forced: unknown conv2d path or computation {sorted(unknown)}; "
                         f"paths are {PATHS}")
    before = dict(_forced)
    _forced.update(choice)
    try:
        yield
    finally:
        _forced.clear()
        _forced.update(before)


def choose(computation: str, geometry: Geometry, w_shape) -> str:
    """The path of `computation` ("forward", "input_grad" or "weight_grad") on the CPU, for
    kernels of shape `w_shape` (the rule in this module's docstring)."""
    if computation in _forced:
        return _forced[computation]
    kh, kw, per_group, _ = w_shape
    groups, points = geometry.groups, geometry.out[0] * geometry.out[1]
    depthwise, pointwise = groups > 1 and per_group == 1, (kh, kw) == (1, 1) and groups == 1
    if computation == "forward":
        one_channel = depthwise or (per_group == 1 and kh * kw <= SMALL_KERNEL)
        return "shifted" if one_channel or (groups == 1 and points <= TINY_MAP) else "xla"
    if computation == "input_grad":
        many = groups == 1 and points <= SMALL_MAP and per_group >= WIDE
        return "shifted" if depthwise or pointwise or many else "xla"
    if pointwise:
        return "shifted"
    narrow = groups == 1 and geometry.strides == (1, 1) and kh * kw * per_group <= NARROW
    if points >= LARGE_MAP and (narrow or (groups > 1 and not depthwise)):
        return "patches"
    return "shifted" if groups > 1 and (not depthwise or points <= SMALL_MAP) else "xla"


def offsets(kernel, dilation=(1, 1)):
    """Where each point of a window lies from the window's corner."""
    return [(i * dilation[0], j * dilation[1])
            for i, j in itertools.product(range(kernel[0]), range(kernel[1]))]


def _slices(x, geo):
    """The strided slices xp[:, i::sh, j::sw, :] of the padded input, one per kernel point."""
    (top, bottom), (left, right) = geo.pads
    padded = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (top, bottom, 0), (left, right, 0),
                                                 (0, 0, 0)])
    (out_h, out_w), (sh, sw) = geo.out, geo.strides
    return [lax.slice(padded, (0, i, j, 0),
                      (x.shape[0], i + (out_h - 1) * sh + 1, j + (out_w - 1) * sw + 1,
                       x.shape[3]), (1, sh, sw, 1))
            for i, j in offsets(geo.kernel, geo.dilation)]


def _grouped(a, groups):
    """(..., C) -> (..., groups, C / groups)."""
    return a.reshape(*a.shape[:-1], groups, a.shape[-1] // groups)


def _accumulator(dtype):
    """The dtype the shifted path sums its matmuls in: float32 for 16-bit floats (XLA's
    convolution accumulates so), else the inputs' own (None)."""
    return jnp.float32 if jnp.dtype(dtype).itemsize < 4 else None


def _times(xs, wk, groups):
    """xs (..., C) times one kernel point's matrix wk (C / groups, O), group by group, in the
    accumulator's dtype."""
    acc = _accumulator(xs.dtype)
    if groups == 1:
        return jnp.matmul(xs, wk, preferred_element_type=acc)
    out = jnp.einsum("...gc,cgo->...go", _grouped(xs, groups), _grouped(wk, groups),
                     preferred_element_type=acc)
    return out.reshape(*xs.shape[:-1], wk.shape[-1])


def forward(x, w, geo, path):
    """conv2d(x, w) by `path`."""
    if path == "xla":
        return lax.conv_general_dilated(x, w, geo.strides, geo.pads, rhs_dilation=geo.dilation,
                                        dimension_numbers=_NHWC, feature_group_count=geo.groups)
    kh, kw, cg, o = w.shape
    if path == "shifted":
        total = sum(_times(xs, w[i, j], geo.groups) for xs, (i, j)
                    in zip(_slices(x, geo), itertools.product(range(kh), range(kw))))
        return total.astype(x.dtype)
    patches = jnp.stack(_slices(x, geo), axis=-2)  # (n, oh, ow, k, C)
    if geo.groups == 1:
        return patches.reshape(*patches.shape[:3], -1) @ w.reshape(-1, o)
    out = jnp.einsum("...kgc,kcgo->...go", _grouped(patches, geo.groups),
                     _grouped(w.reshape(kh * kw, cg, o), geo.groups))
    return out.reshape(*patches.shape[:3], o)


def _place(contribution, offset, x_shape, geo):
    """The transpose of one strided slice: lax.pad puts values back in the padded frame."""
    (i, j), (sh, sw) = offset, geo.strides
    (top, bottom), (left, right) = geo.pads
    out_h, out_w = contribution.shape[1:3]
    padded_h, padded_w = x_shape[1] + top + bottom, x_shape[2] + left + right
    return lax.pad(contribution, jnp.zeros((), contribution.dtype),
                   [(0, 0, 0), (i, padded_h - i - (out_h - 1) * sh - 1, sh - 1),
                    (j, padded_w - j - (out_w - 1) * sw - 1, sw - 1), (0, 0, 0)])


def _transposed_kernel(w, groups):
    """The kernel of XLA's dx: flipped in space, in and out channels swapped in each group."""
    kh, kw, c, o = w.shape
    flipped = w[::-1, ::-1].reshape(kh, kw, c, groups, o // groups)
    return jnp.transpose(flipped, (0, 1, 4, 3, 2)).reshape(kh, kw, o // groups, c * groups)


def input_grad(g, w, x_shape, geo, path):
    """d conv2d / d x applied to the cotangent g."""
    if path == "xla":
        # the gradient, dilated by the stride, convolved with the kernel flipped and transposed
        span = [(k - 1) * d + 1 for k, d in zip(geo.kernel, geo.dilation)]
        dilated = [(o - 1) * s + 1 for o, s in zip(geo.out, geo.strides)]
        pads = [(k - lo - 1, n + k - 1 - d - (k - lo - 1))
                for n, k, (lo, _), d in zip(x_shape[1:3], span, geo.pads, dilated)]
        return lax.conv_general_dilated(g, _transposed_kernel(w, geo.groups), (1, 1), pads,
                                        lhs_dilation=geo.strides, rhs_dilation=geo.dilation,
                                        dimension_numbers=_NHWC, feature_group_count=geo.groups)
    kh, kw, cg, o = w.shape
    points = offsets(geo.kernel, geo.dilation)
    if path == "shifted":
        parts = [_transpose_times(g, w[i, j], geo.groups)
                 for i, j in itertools.product(range(kh), range(kw))]
    else:
        wt = w.reshape(kh * kw, cg, o)
        if geo.groups == 1:
            stacked = g @ wt.reshape(-1, o).T
        else:
            stacked = jnp.einsum("...go,kcgo->...kgc", _grouped(g, geo.groups),
                                 _grouped(wt, geo.groups))
        stacked = stacked.reshape(*g.shape[:3], kh * kw, cg * geo.groups)
        parts = [stacked[..., k, :] for k in range(kh * kw)]
    total = sum(_place(part, point, x_shape, geo) for part, point in zip(parts, points))
    (top, _), (left, _) = geo.pads
    return total[:, top:top + x_shape[1], left:left + x_shape[2], :].astype(g.dtype)


def _transpose_times(g, wk, groups):
    """g (..., O) times wk^T, wk (C / groups, O), group by group: (..., C), in the
    accumulator's dtype."""
    acc = _accumulator(g.dtype)
    if groups == 1:
        return jnp.matmul(g, wk.T, preferred_element_type=acc)
    out = jnp.einsum("...go,cgo->...gc", _grouped(g, groups), _grouped(wk, groups),
                     preferred_element_type=acc)
    return out.reshape(*g.shape[:-1], wk.shape[0] * groups)


def weight_grad(x, g, w_shape, geo, path):
    """d conv2d / d w applied to the cotangent g."""
    if path == "xla":
        # the input correlated with the stride-dilated gradient, batch and channels swapped;
        # the kernel's dilation is this correlation's stride, its groups split x's channels
        span = [(k - 1) * d + 1 for k, d in zip(geo.kernel, geo.dilation)]
        dilated = [(o - 1) * s + 1 for o, s in zip(geo.out, geo.strides)]
        pads = [(lo, d - n + k - lo - 1)
                for n, k, (lo, _), d in zip(x.shape[1:3], span, geo.pads, dilated)]
        dw = lax.conv_general_dilated(x, g, geo.dilation, pads, rhs_dilation=geo.strides,
                                      dimension_numbers=("CHWN", "IHWO", "NHWC"),
                                      batch_group_count=geo.groups)
        return jnp.transpose(dw, (1, 2, 0, 3))
    if path == "shifted":
        return jnp.stack([_slice_times_g(xs, g, geo.groups) for xs in _slices(x, geo)]
                         ).reshape(w_shape).astype(x.dtype)
    return _weight_grad_by_patches(x, g, w_shape, geo)


def _slice_times_g(xs, g, groups):
    """xs^T g over batch and space: (C / groups, O), group by group."""
    acc = _accumulator(xs.dtype)
    if groups == 1:
        return jnp.einsum("nhwc,nhwo->co", xs, g, preferred_element_type=acc)
    out = jnp.einsum("nhwgc,nhwgo->cgo", _grouped(xs, groups), _grouped(g, groups),
                     preferred_element_type=acc)
    return out.reshape(out.shape[0], -1)


def _weight_grad_by_patches(x, g, w_shape, geo):
    """dw = patches(x)^T g, one matmul per slice of the batch and per group; slices of about
    PATCH_BYTES of patches stay in cache. With a unit stride down the rows and wide enough rows
    (ROW_WIDTH), the patches span one row of the kernel (`_weight_grad_by_rows`)."""
    kw, cg = w_shape[1], w_shape[2]
    if geo.strides[0] == 1 and kw * cg >= ROW_WIDTH:
        return _weight_grad_by_rows(x, g, w_shape, geo)
    n, c, k, groups = x.shape[0], x.shape[3], geo.kernel[0] * geo.kernel[1], geo.groups
    size = _slice_size(n, g.shape[1] * g.shape[2] * k * c * x.dtype.itemsize)

    def one_slice(xg):
        xs, gs = xg
        patches = jnp.stack(_slices(xs, geo), axis=-2)
        if groups == 1:
            return patches.reshape(-1, k * c).T @ gs.reshape(-1, g.shape[3])
        per_group = jnp.einsum("mkgc,mgo->kcgo", patches.reshape(-1, k, groups, c // groups),
                               gs.reshape(-1, groups, g.shape[3] // groups))
        return per_group.reshape(k * c // groups, g.shape[3])

    slices = (x.reshape(n // size, size, *x.shape[1:]), g.reshape(n // size, size, *g.shape[1:]))
    return lax.map(one_slice, slices).sum(0).reshape(w_shape)


def _slice_size(n, per_example):
    """The largest divisor of the batch n whose slice holds at most PATCH_BYTES (at least 1)."""
    return max(d for d in range(1, n + 1)
               if d == 1 or (n % d == 0 and d * per_example <= PATCH_BYTES))


def _weight_grad_by_rows(x, g, w_shape, geo):
    """dw[i] = sum over flat rows t of g[t]^T rows[t + i dh OW]: `rows` holds each output
    point's kernel-row patch (KW points, OW per image row, over the padded input's rows), so
    kernel row i is an offset of i dh OW flat rows; g gets zero rows below each image, so an
    offset never reaches the next image. KH matmuls per batch slice, a third of the patches'
    size for a 3x3 kernel."""
    kh, kw, cg, o = w_shape
    n, groups, (oh, ow) = x.shape[0], geo.groups, geo.out
    padded_h = x.shape[1] + sum(geo.pads[0])
    size = _slice_size(n, padded_h * ow * kw * x.shape[3] * x.dtype.itemsize)
    acc = _accumulator(x.dtype) or x.dtype

    def one_slice(s, total):
        xs, gs = (lax.dynamic_slice_in_dim(a, s * size, size) for a in (x, g))
        rows = _grouped(_row_patches(xs, geo, kw), groups)  # (m, kw, groups, cg)
        gp = lax.pad(gs, jnp.zeros((), gs.dtype), [(0, 0, 0), (0, padded_h - oh, 0), (0, 0, 0),
                                                   (0, 0, 0)])
        gp = _grouped(gp.reshape(-1, o), groups)  # (m, groups, o / groups)
        length = rows.shape[0] - (kh - 1) * geo.dilation[0] * ow
        parts = [_g_transpose_rows(gp[:length], rows[start:start + length], acc)
                 for start in _row_offsets(kh, geo.dilation[0], ow)]
        return total + jnp.stack(parts)  # (kh, groups, o / groups, kw, cg): g^T rows

    total = lax.fori_loop(0, n // size, one_slice,
                          jnp.zeros((kh, groups, o // groups, kw, cg), acc))
    total = jnp.transpose(total, (0, 3, 4, 1, 2)).reshape(w_shape)
    return total.astype(x.dtype)


def _g_transpose_rows(g, rows, acc):
    """g (m, groups, O / groups) transposed times rows (m, KW, groups, C / groups), group by
    group: (groups, O / groups, KW, C / groups)."""
    if g.shape[1] == 1:  # one plain matmul: XLA's fastest
        m, kw, _, c = rows.shape
        out = jnp.matmul(g[:, 0].T, rows.reshape(m, kw * c), preferred_element_type=acc)
        return out.reshape(1, g.shape[2], kw, c)
    return jnp.einsum("mgo,mkgc->gokc", g, rows, preferred_element_type=acc)


def _row_patches(x, geo, kw):
    """(N Hp OW, KW, C): for each padded input row and output column, the KW points of the
    window's row (strided and dilated along the width)."""
    (top, bottom), (left, right) = geo.pads
    padded = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (top, bottom, 0), (left, right, 0),
                                                 (0, 0, 0)])
    ow, sw, step = geo.out[1], geo.strides[1], geo.dilation[1]
    n, hp, _, c = padded.shape
    columns = [lax.slice(padded, (0, 0, j * step, 0), (n, hp, j * step + (ow - 1) * sw + 1, c),
                         (1, 1, sw, 1)) for j in range(kw)]
    return jnp.stack(columns, axis=-2).reshape(-1, kw, c)


def _row_offsets(kh, dh, ow):
    """Where kernel row i's patches start among the flat rows: i dh OW."""
    return [i * dh * ow for i in range(kh)]
