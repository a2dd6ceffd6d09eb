"""Pure-numpy versions of JAX lax primitives, embedded verbatim into generated numpy source.

Every public function is self-contained (it uses only ``np`` and ``math``) so that its source
can be copied with ``inspect.getsource`` into a generated module.
"""

import math

import numpy as np


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                         lhs_spec, rhs_spec, out_spec, feature_group_count=1,
                         batch_group_count=1, preferred_element_type=None):
    """Mirror lax.conv_general_dilated (cross-correlation, XLA grouping semantics)."""
    if feature_group_count > 1 and batch_group_count > 1:
        raise NotImplementedError("conv_general_dilated: feature_group_count > 1 together "
                                  "with batch_group_count > 1 is not supported")
    out_dtype = np.asarray(lhs).dtype if preferred_element_type is None else np.dtype(
        preferred_element_type)
    x = np.transpose(np.asarray(lhs), lhs_spec)  # (N, C, *spatial)
    w = np.transpose(np.asarray(rhs), rhs_spec)  # (O, I, *kernel)
    acc = np.result_type(x, w)
    if np.issubdtype(acc, np.inexact):
        acc = np.promote_types(acc, np.float64)
    nd = x.ndim - 2
    if any(d != 1 for d in lhs_dilation):  # base dilation: insert zeros
        shape = x.shape[:2] + tuple((s - 1) * d + 1 if s else 0
                                    for s, d in zip(x.shape[2:], lhs_dilation))
        xd = np.zeros(shape, x.dtype)
        xd[(slice(None),) * 2 + tuple(slice(None, None, d) for d in lhs_dilation)] = x
        x = xd
    x = np.pad(x, [(0, 0)] * 2 + [(max(lo, 0), max(hi, 0)) for lo, hi in padding])
    x = x[(slice(None),) * 2 + tuple(slice(max(-lo, 0), x.shape[2 + i] - max(-hi, 0))
                                     for i, (lo, hi) in enumerate(padding))]
    ksz = w.shape[2:]
    out_sp = tuple(max(0, (x.shape[2 + i] - (ksz[i] - 1) * rhs_dilation[i] - 1)
                       // window_strides[i] + 1) for i in range(nd))
    b, g = batch_group_count, feature_group_count
    n, c = x.shape[0] // b, x.shape[1] // g
    o = w.shape[0] // (b * g)
    x = x.reshape((b, n, g, c) + x.shape[2:]).astype(acc, copy=False)
    w = w.reshape((b, g, o, c) + ksz).astype(acc, copy=False)
    out = np.zeros((n, b, g, o) + out_sp, acc)
    if all(out_sp) and out.size:
        for k in np.ndindex(*ksz):
            win = tuple(slice(k[i] * rhs_dilation[i],
                              k[i] * rhs_dilation[i] + (out_sp[i] - 1) * window_strides[i] + 1,
                              window_strides[i]) for i in range(nd))
            out += np.einsum("bngc...,bgoc->nbgo...", x[(slice(None),) * 4 + win],
                             w[(Ellipsis,) + k], optimize=True)
    out = out.reshape((n, b * g * o) + out_sp)
    return np.transpose(out, np.argsort(out_spec)).astype(out_dtype)


def reduce_window(x, op, init_value, window_dimensions, window_strides, padding, base_dilation,
                  window_dilation):
    """Mirror lax.reduce_window_{max,min,sum} (op in 'max', 'min', 'sum')."""
    fn = {"max": np.maximum, "min": np.minimum, "sum": np.add}.get(op)
    if fn is None:
        raise NotImplementedError(f"reduce_window: unsupported op {op!r}")
    x = np.asarray(x)
    init = np.asarray(init_value, x.dtype)
    if any(d != 1 for d in base_dilation):  # holes take the init value
        xd = np.full(tuple((s - 1) * d + 1 if s else 0 for s, d in zip(x.shape, base_dilation)),
                     init, x.dtype)
        xd[tuple(slice(None, None, d) for d in base_dilation)] = x
        x = xd
    x = np.pad(x, [(max(lo, 0), max(hi, 0)) for lo, hi in padding], constant_values=init)
    x = x[tuple(slice(max(-lo, 0), x.shape[i] - max(-hi, 0))
                for i, (lo, hi) in enumerate(padding))]
    out_shape = tuple(max(0, (x.shape[i] - (k - 1) * window_dilation[i] - 1)
                          // window_strides[i] + 1) for i, k in enumerate(window_dimensions))
    out = np.full(out_shape, init, x.dtype)
    if all(out_shape):
        for k in np.ndindex(*window_dimensions):
            out = fn(out, x[tuple(slice(k[i] * window_dilation[i],
                                        k[i] * window_dilation[i]
                                        + (out_shape[i] - 1) * window_strides[i] + 1,
                                        window_strides[i]) for i in range(x.ndim))])
    return out.astype(x.dtype, copy=False)


def pad(x, padding_value, padding_config):
    """Mirror lax.pad (lo/hi may be negative, interior padding supported)."""
    x = np.asarray(x)
    core = [s + max(s - 1, 0) * it for s, (_, _, it) in zip(x.shape, padding_config)]
    out = np.full(tuple(max(lo, 0) + c + max(hi, 0) for c, (lo, hi, _) in
                        zip(core, padding_config)), padding_value, x.dtype)
    out[tuple(slice(max(lo, 0), max(lo, 0) + c, it + 1)
              for c, (lo, _, it) in zip(core, padding_config))] = x
    return out[tuple(slice(max(-lo, 0), out.shape[i] - max(-hi, 0))
                     for i, (lo, hi, _) in enumerate(padding_config))]


def gather(operand, indices, offset_dims, collapsed_slice_dims, start_index_map,
           operand_batching_dims, start_indices_batching_dims, slice_sizes, mode,
           fill_value=None):
    """Mirror lax.gather (index_vector_dim is the last dim; mode 'clip'/'fill'/...)."""
    operand, indices = np.asarray(operand), np.asarray(indices).astype(np.int64)
    mode = str(mode).lower().rsplit(".", 1)[-1]
    if mode not in ("clip", "fill", "drop", "fill_or_drop", "promise_in_bounds"):
        raise NotImplementedError(f"gather: unsupported mode {mode!r}")
    bshape, nb = indices.shape[:-1], indices.ndim - 1
    idx = []
    for d, (dim, size) in enumerate(zip(operand.shape, slice_sizes)):
        if d in start_index_map:
            start = np.clip(indices[..., start_index_map.index(d)], 0, dim - size)
        elif d in operand_batching_dims:
            bd = start_indices_batching_dims[operand_batching_dims.index(d)]
            start = np.arange(bshape[bd]).reshape([-1 if i == bd else 1 for i in range(nb)])
        else:
            start = np.zeros((1,) * nb, np.int64)
        start = start.reshape(start.shape + (1,) * len(slice_sizes))
        off = np.arange(size).reshape([-1 if i == d else 1 for i in range(len(slice_sizes))])
        idx.append(start + off)
    out = operand[tuple(idx)] if idx else np.broadcast_to(operand, bshape).copy()
    drop = sorted(tuple(collapsed_slice_dims) + tuple(operand_batching_dims))
    out = out.reshape(bshape + tuple(s for d, s in enumerate(slice_sizes) if d not in drop))
    if mode not in ("clip", "promise_in_bounds"):
        hi = np.array([operand.shape[d] - slice_sizes[d] for d in start_index_map], np.int64)
        ok = np.all((indices >= 0) & (indices <= hi), axis=-1)
        if fill_value is None:
            dt = operand.dtype
            if np.issubdtype(dt, np.inexact):
                fill_value = np.nan
            elif np.issubdtype(dt, np.signedinteger):
                fill_value = np.iinfo(dt).min
            elif np.issubdtype(dt, np.unsignedinteger):
                fill_value = np.iinfo(dt).max
            else:
                fill_value = True
        ok = ok.reshape(bshape + (1,) * (out.ndim - nb))
        out = np.where(ok, out, np.asarray(fill_value).astype(operand.dtype))
    return np.moveaxis(out, tuple(range(nb, out.ndim)), tuple(offset_dims))


def broadcast_in_dim(x, shape, broadcast_dimensions):
    """Mirror lax.broadcast_in_dim."""
    x = np.asarray(x)
    src = [1] * len(shape)
    for i, d in enumerate(broadcast_dimensions):
        src[d] = x.shape[i]
    return np.broadcast_to(x.reshape(src), tuple(shape)).copy()


def iota(dtype, shape, dimension):
    """Mirror lax.iota / lax.broadcasted_iota."""
    r = np.arange(shape[dimension], dtype=dtype)
    r = r.reshape([-1 if i == dimension else 1 for i in range(len(shape))])
    return np.broadcast_to(r, tuple(shape)).copy()


def erf(x):
    """Mirror lax.erf (elementwise math.erf, dtype and shape preserved)."""
    x = np.asarray(x)
    return np.array([math.erf(v) for v in x.ravel().tolist()], x.dtype).reshape(x.shape)


def dot_general(lhs, rhs, lhs_contracting, rhs_contracting, lhs_batch, rhs_batch,
                preferred_element_type=None):
    """Mirror lax.dot_general (output dims: batch, lhs free, rhs free)."""
    lhs, rhs = np.asarray(lhs), np.asarray(rhs)
    dt = np.result_type(lhs, rhs) if preferred_element_type is None else np.dtype(
        preferred_element_type)
    letters = iter("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    ls = [next(letters) for _ in range(lhs.ndim)]
    rs = [next(letters) for _ in range(rhs.ndim)]
    for a, b in zip(tuple(lhs_contracting) + tuple(lhs_batch),
                    tuple(rhs_contracting) + tuple(rhs_batch)):
        rs[b] = ls[a]
    out = ([ls[d] for d in lhs_batch]
           + [ls[d] for d in range(lhs.ndim) if d not in lhs_contracting and d not in lhs_batch]
           + [rs[d] for d in range(rhs.ndim) if d not in rhs_contracting and d not in rhs_batch])
    spec = "".join(ls) + "," + "".join(rs) + "->" + "".join(out)
    res = np.einsum(spec, lhs.astype(dt, copy=False), rhs.astype(dt, copy=False), optimize=True)
    return np.asarray(res, dt)


def select_n(which, *cases):
    """Mirror lax.select_n (which == k picks cases[k]; which is bool or int)."""
    which = np.asarray(which)
    out = np.asarray(cases[0])
    for k in range(1, len(cases)):
        out = np.where(which == k, cases[k], out)
    return np.broadcast_to(out, np.broadcast_shapes(which.shape, out.shape)).copy()


def argmax(x, axis, index_dtype):
    """Mirror lax.argmax (NaN counts as the maximum; first occurrence wins)."""
    if isinstance(axis, (tuple, list)):
        (axis,) = axis
    return np.asarray(np.argmax(np.asarray(x), axis=axis), dtype=index_dtype)


def integer_divide(x, y):
    """Mirror lax.div for integers (round toward zero; x / 0 == -1, MIN / -1 == MIN)."""
    x, y = np.asarray(x), np.asarray(y)
    if np.issubdtype(np.result_type(x, y), np.inexact):
        return np.true_divide(x, y)
    with np.errstate(all="ignore"):
        ys = np.where(y == 0, np.ones_like(y), y)
        r = np.fmod(x, ys)
        q = (x - r) // ys
        return np.where(y == 0, ~np.zeros_like(q), q)


def integer_remainder(x, y):
    """Mirror lax.rem for integers (sign of the dividend; x % 0 == x)."""
    x, y = np.asarray(x), np.asarray(y)
    if np.issubdtype(np.result_type(x, y), np.inexact):
        return np.fmod(x, y)
    with np.errstate(all="ignore"):
        r = np.fmod(x, np.where(y == 0, np.ones_like(y), y))
        return np.where(y == 0, x, r).astype(r.dtype, copy=False)


def cumulative(x, op, axis, reverse):
    """Mirror lax.cumsum / cummax / cummin / cumprod (op in 'sum', 'max', 'min', 'prod')."""
    fn = {"sum": np.add, "max": np.maximum, "min": np.minimum, "prod": np.multiply}.get(op)
    if fn is None:
        raise NotImplementedError(f"cumulative: unsupported op {op!r}")
    x = np.asarray(x)
    if reverse:
        return np.flip(fn.accumulate(np.flip(x, axis), axis=axis, dtype=x.dtype), axis)
    return fn.accumulate(x, axis=axis, dtype=x.dtype)


def scatter(operand, indices, updates, update_window_dims, inserted_window_dims,
            scatter_dims_to_operand_dims, operand_batching_dims,
            scatter_indices_batching_dims, mode, add=True):
    """Mirror lax.scatter_add (add) or lax.scatter (index_vector_dim last; clip/fill modes)."""
    out = np.array(operand, copy=True)
    indices = np.asarray(indices).astype(np.int64)
    updates = np.asarray(updates)
    mode = str(mode).lower().rsplit(".", 1)[-1]
    scatter_axes = [d for d in range(updates.ndim) if d not in update_window_dims]
    window_dims = [d for d in range(out.ndim)
                   if d not in inserted_window_dims and d not in operand_batching_dims]
    sizes = [1] * out.ndim
    for d, u in zip(window_dims, update_window_dims):
        sizes[d] = updates.shape[u]
    for b in np.ndindex(*indices.shape[:-1]):
        start = [0] * out.ndim
        for k, d in enumerate(scatter_dims_to_operand_dims):
            start[d] = int(indices[b + (k,)])
        for d, i in zip(operand_batching_dims, scatter_indices_batching_dims):
            start[d] = b[i]
        if mode == "clip" or mode == "promise_in_bounds":
            start = [min(max(s, 0), n - z) for s, n, z in zip(start, out.shape, sizes)]
        elif any(s < 0 or s + z > n for s, n, z in zip(start, out.shape, sizes)):
            continue
        where = [slice(None)] * updates.ndim
        for axis, i in zip(scatter_axes, b):
            where[axis] = i
        target = tuple(slice(s, s + z) for s, z in zip(start, sizes))
        update = updates[tuple(where)].reshape(sizes)
        out[target] = out[target] + update if add else update
    return out
