"""Scaled dot-product attention whose gradient never holds the (seq x seq) probabilities.

Layout as `jax.nn.dot_product_attention`: q (batch, q_seq, heads, head_dim), k and v (batch,
k_seq, kv_heads, ...), kv_heads dividing heads (grouped-query attention: query head h reads
key/value head h // (heads / kv_heads)). Everything runs in blocks of queries and keys, as in
FlashAttention: the forward keeps a running maximum, sum and output per query row (the online
softmax); the backward recomputes each row's log-sum-exp and then, block by block, P, dV, dP,
dS, dQ and dK; the tangent rule accumulates its sums online too. Memory grows with seq, not with
seq squared, and under `causal=True` the blocks above the diagonal are skipped.

Causal means what it means in jax.nn.dot_product_attention: query i attends to keys j <= i
(aligned at the start when the lengths differ). v's head_dim may differ from q's and k's. A
query row with no key to attend to (every key masked out) gives 0 and passes no gradient, as in
FlashAttention (jax.nn.dot_product_attention gives the mean of v there instead). Grouped-query
heads take 5-d blocks, which XLA:CPU runs about 45% slower than the 4-d ones of plain
multi-head attention.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from difprog.errors import DtypeError, ShapeError
from difprog.gate import gate
from difprog.gates._util import check_flag, check_real
from difprog.gates.points import empty, normal
from difprog.gates.registry import register

__all__ = ["attention"]

# Rows of queries and keys per block: XLA:CPU's matmuls like blocks of a few hundred. Inputs no
# longer than a block run as one block (the check points: exact and cheap to compile).
BLOCK_Q = 256
BLOCK_K = 512


class _Plan(NamedTuple):
    """The static shape of one attention: sizes, blocks, options and the compute dtype."""

    batch: int
    q_seq: int
    k_seq: int
    kv_heads: int
    group: int  # query heads per key/value head
    bq: int
    bk: int
    nq: int
    nk: int
    causal: bool
    scale: float
    dtype: jnp.dtype  # float32 at least: bfloat16 and float16 accumulate in float32

    @property
    def empty(self) -> bool:
        return self.q_seq == 0 or self.k_seq == 0

    # Axes as einsum letters: b batch, q and k sequence, h kv head, g query head within its
    # group (left out when every query head has its own k and v: 5-d blocks cost XLA:CPU
    # about 45% more), d feature. Q: query-side arrays (q, g, out), K: key-side (k, v),
    # S: scores, R: one number per score row, A: per-row vectors (outputs being summed).
    @property
    def Q(self) -> str:
        return "bqhd" if self.group == 1 else "bqhgd"

    @property
    def S(self) -> str:
        return "bhqk" if self.group == 1 else "bhgqk"

    @property
    def R(self) -> str:
        return self.S[:-1]

    @property
    def A(self) -> str:
        return self.R + "d"


def _plan(q, k, v, causal, scale) -> _Plan:
    batch, q_seq, heads, head_dim = q.shape
    k_seq, kv_heads = k.shape[1], k.shape[2]
    bq, bk = max(1, min(BLOCK_Q, q_seq)), max(1, min(BLOCK_K, k_seq))
    if scale is None:
        scale = 1 / math.sqrt(head_dim) if head_dim else 1.0
    dtype = jnp.promote_types(jnp.result_type(q, k, v), jnp.float32)
    return _Plan(batch, q_seq, k_seq, kv_heads, heads // kv_heads if kv_heads else 1, bq, bk,
                 -(-q_seq // bq), -(-k_seq // bk), causal, float(scale), dtype)


def _attention(q, k, v, mask=None, *, causal=False, scale=None):
    """out = P v, P = softmax(S) over the keys a query may attend to, S = scale q k^T;
    dv = P^T g, dS = P (g v^T - rowsum(g out)), dq = scale dS k, dk = scale dS^T q;
    tangent: (P (dS - rowsum(P dS))) v + P dv with dS = scale (dq k^T + q dk^T)."""
    plan = _plan(q, k, v, causal, scale)
    if plan.empty:
        return jnp.zeros((*q.shape[:3], v.shape[3]), jnp.result_type(q, k, v))
    qs, kp, vp, mask = _queries(plan, q) * plan.scale, _keys(plan, k), _keys(plan, v), \
        _mask(plan, mask)

    def query_block(_, i):
        qi = _rows(qs, i, plan.bq)

        def step(j, carry):
            m, l, acc = carry
            kj, vj = _rows(kp, j, plan.bk), _rows(vp, j, plan.bk)
            s = _scores(plan, qi, kj, _valid(plan, mask, i, j))
            m, correction, p = _online(m, s)
            acc = acc * correction[..., None] + jnp.einsum(f"{plan.S},bkhd->{plan.A}", p, vj)
            return m, l * correction + jnp.sum(p, -1), acc

        _, l, acc = _over_keys(plan, i, step, _online_start(plan, vp.shape[-1]))
        return None, acc / _nonzero(l)[..., None]

    return _unblock(plan, _scan(query_block, None, plan.nq)[1],
                    jnp.result_type(q, k, v), v)


def _attention_backward(g, out, q, k, v, mask, *, causal, scale):
    plan = _plan(q, k, v, causal, scale)
    if plan.empty:
        return jnp.zeros_like(q), jnp.zeros_like(k), jnp.zeros_like(v)
    qs, kp, vp, mask = _queries(plan, q) * plan.scale, _keys(plan, k), _keys(plan, v), \
        _mask(plan, mask)
    gp = _queries(plan, g)
    lse = _logsumexp(plan, qs, kp, mask)
    # D = rowsum(g out), in the layout of the scores' rows: (batch, kv_heads, [group,] q_seq).
    delta = jnp.einsum(f"{plan.Q},{plan.Q}->{plan.R}", gp, _queries(plan, out))

    def key_block(dq, j):
        kj, vj = _rows(kp, j, plan.bk), _rows(vp, j, plan.bk)

        def step(carry, i):
            dk, dv = carry
            qi, gi = _rows(qs, i, plan.bq), _rows(gp, i, plan.bq)
            s = _scores(plan, qi, kj, _valid(plan, mask, i, j))
            p = jnp.exp(s - _rows(lse, i, plan.bq, -1)[..., None])
            dp = jnp.einsum(f"{plan.Q},bkhd->{plan.S}", gi, vj)
            ds = p * (dp - _rows(delta, i, plan.bq, -1)[..., None])
            dv = dv + jnp.einsum(f"{plan.S},{plan.Q}->bkhd", p, gi)
            dk = dk + jnp.einsum(f"{plan.S},{plan.Q}->bkhd", ds, qi)
            return (dk, dv), jnp.einsum(f"{plan.S},bkhd->{plan.Q}", ds, kj)

        def skip(carry, i):
            return carry, jnp.zeros_like(dq[0])

        def visit(carry, i):
            if not plan.causal:
                return step(carry, i)
            return _cond(_visible(plan, i, j), step, skip, carry, i)

        zeros = (jnp.zeros_like(kj), jnp.zeros_like(vj))
        (dk, dv), dq_j = _scan(visit, zeros, plan.nq)
        return dq + dq_j, (dk, dv)

    dq0 = jnp.zeros((plan.nq, plan.batch, plan.bq, *qs.shape[2:]), plan.dtype)
    dq, (dk, dv) = _scan(key_block, dq0, plan.nk)
    dq = jnp.moveaxis(dq, 0, 1).reshape(qs.shape)[:, :plan.q_seq] * plan.scale
    return (dq.reshape(q.shape).astype(q.dtype), _unstack(plan, dk, k), _unstack(plan, dv, v))


def _attention_tangent(dq, dk, dv, out, q, k, v, mask, *, causal, scale):
    plan = _plan(q, k, v, causal, scale)
    if plan.empty:
        return jnp.zeros_like(out)
    qs, kp, vp, mask = _queries(plan, q) * plan.scale, _keys(plan, k), _keys(plan, v), \
        _mask(plan, mask)
    dqs, dkp, dvp, op = (_queries(plan, dq) * plan.scale, _keys(plan, dk), _keys(plan, dv),
                         _queries(plan, out))

    def query_block(_, i):
        qi, dqi = _rows(qs, i, plan.bq), _rows(dqs, i, plan.bq)

        def step(j, carry):
            m, l, c, a = carry
            kj, vj, dkj, dvj = (_rows(x, j, plan.bk) for x in (kp, vp, dkp, dvp))
            valid = _valid(plan, mask, i, j)
            s = _scores(plan, qi, kj, valid)
            ds = _scores(plan, dqi, kj, valid, 0) + _scores(plan, qi, dkj, valid, 0)
            m, correction, p = _online(m, s)
            pds = p * ds
            a = a * correction[..., None] + jnp.einsum(f"{plan.S},bkhd->{plan.A}", pds, vj) \
                + jnp.einsum(f"{plan.S},bkhd->{plan.A}", p, dvj)
            return m, l * correction + jnp.sum(p, -1), c * correction + jnp.sum(pds, -1), a

        m, l, a = _online_start(plan, vp.shape[-1])
        _, l, c, a = _over_keys(plan, i, step, (m, l, jnp.zeros_like(l), a))
        oi = jnp.einsum(f"{plan.Q}->{plan.A}", _rows(op, i, plan.bq))
        return None, (a - c[..., None] * oi) / _nonzero(l)[..., None]

    return _unblock(plan, _scan(query_block, None, plan.nq)[1], out.dtype, v)


# --- The blocks ----------------------------------------------------------------------------------

def _queries(plan, x):
    """(batch, q_seq, heads, d) as (batch, q_seq padded to blocks, kv_heads, [group,] d)."""
    if plan.group != 1:
        x = x.reshape(*x.shape[:2], plan.kv_heads, plan.group, x.shape[-1])
    x = x.astype(plan.dtype)
    return _pad(x, 1, plan.nq * plan.bq - plan.q_seq)


def _keys(plan, x):
    """(batch, k_seq, kv_heads, d), padded to whole blocks of keys."""
    return _pad(x.astype(plan.dtype), 1, plan.nk * plan.bk - plan.k_seq)


def _pad(x, axis, extra, value=0):
    if not extra:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, extra)
    return jnp.pad(x, widths, constant_values=value)


def _rows(x, i, size, axis=1):
    """Block i of `size` rows along `axis` (a gather: difprog.explain's flat code writes it)."""
    if isinstance(i, int) and i == 0 and size == x.shape[axis]:
        return x  # the only block
    where = (slice(None),) * (axis % x.ndim) + (i * size + jnp.arange(size),)
    return x.at[where].get(mode="promise_in_bounds")


def _mask(plan, mask):
    """The mask in the scores' layout, (batch, kv_heads, [group,] q_seq, k_seq), each axis of
    size 1 where it broadcasts, sequence axes padded to whole blocks (padding masked out)."""
    if mask is None:
        return None
    mask = jnp.asarray(mask).reshape((1,) * (4 - mask.ndim) + mask.shape)
    if plan.group != 1:
        heads = (plan.kv_heads, plan.group) if mask.shape[1] != 1 else (1, 1)
        mask = mask.reshape(mask.shape[0], *heads, *mask.shape[2:])
    if mask.shape[-2] != 1:
        mask = _pad(mask, mask.ndim - 2, plan.nq * plan.bq - plan.q_seq, False)
    if mask.shape[-1] != 1:
        mask = _pad(mask, mask.ndim - 1, plan.nk * plan.bk - plan.k_seq, False)
    return mask


def _valid(plan, mask, i, j):
    """Which scores of block (i, j) count: keys that exist, at or before the query when
    causal, and where the mask is True; None when all do."""
    keys = j * plan.bk + jnp.arange(plan.bk)
    valid = keys < plan.k_seq if plan.k_seq % plan.bk else None
    if plan.causal:
        before = keys <= (i * plan.bq + jnp.arange(plan.bq))[:, None]
        valid = before if valid is None else valid & before
    if mask is not None:
        if mask.shape[-2] != 1:
            mask = _rows(mask, i, plan.bq, -2)
        if mask.shape[-1] != 1:
            mask = _rows(mask, j, plan.bk, -1)
        valid = mask if valid is None else valid & mask
    return valid


def _scores(plan, qi, kj, valid, fill=-jnp.inf):
    """qi kj^T as (batch, kv_heads, [group,] bq, bk), `fill` where a score does not count."""
    s = jnp.einsum(f"{plan.Q},bkhd->{plan.S}", qi, kj)
    return s if valid is None else jnp.where(valid, s, fill)


def _visible(plan, i, j):
    """Whether key block j has a key at or before some query of block i (causal)."""
    return j * plan.bk <= i * plan.bq + plan.bq - 1


def _over_keys(plan, i, step, carry):
    """`carry = step(j, carry)` over the key blocks j, skipping those a causal block i cannot
    see."""
    def visit(carry, j):
        if plan.causal:
            return _cond(_visible(plan, i, j), lambda c: step(j, c), lambda c: c, carry), None
        return step(j, carry), None
    return _scan(visit, carry, plan.nk)[0]


def _scan(f, carry, n):
    """lax.scan of f over blocks 0..n-1; a single block runs inline, as XLA:CPU would otherwise
    keep a loop of one step (and the copies in and out of it)."""
    if n > 1:
        return lax.scan(f, carry, jnp.arange(n))
    carry, out = f(carry, 0)
    return carry, jax.tree.map(lambda x: x[None], out)


def _cond(visible, step, skip, *operands):
    """lax.cond, or the branch itself when the blocks' indices are known (a single block)."""
    if isinstance(visible, bool):
        return (step if visible else skip)(*operands)
    return lax.cond(visible, step, skip, *operands)


def _online_start(plan, value_dim):
    rows = (plan.batch, plan.kv_heads, *(plan.group,) * (plan.group != 1), plan.bq)
    return (jnp.full(rows, -jnp.inf, plan.dtype), jnp.zeros(rows, plan.dtype),
            jnp.zeros((*rows, value_dim), plan.dtype))


def _online(m, s):
    """The online softmax's step: the new running maximum, the factor that rescales the sums so
    far, and exp(s - max). The maximum only keeps exp in range: the results do not depend on
    it, so no derivative flows through it."""
    new = lax.stop_gradient(jnp.maximum(m, jnp.max(s, -1)))
    shift = jnp.where(new == -jnp.inf, 0, new)  # a row with no key yet: exp(-inf - 0) = 0
    return new, jnp.exp(m - shift), jnp.exp(s - shift[..., None])


def _nonzero(l):
    """l, with 1 for a row that has no key (its sums are 0: its output and derivatives are 0)."""
    return jnp.where(l == 0, 1, l)


def _logsumexp(plan, qs, kp, mask):
    """Each query row's log-sum-exp of its scores, (batch, kv_heads, [group,] q_seq padded); 0 for
    a row with no key (its scores are all -inf, so exp(s - 0) = 0 there)."""
    def query_block(_, i):
        qi = _rows(qs, i, plan.bq)

        def step(j, carry):
            m, l = carry
            s = _scores(plan, qi, _rows(kp, j, plan.bk), _valid(plan, mask, i, j))
            m, correction, p = _online(m, s)
            return m, l * correction + jnp.sum(p, -1)

        m, l = _over_keys(plan, i, step, _online_start(plan, 0)[:2])
        shift = jnp.where(m == -jnp.inf, 0, m)
        return None, jnp.where(l == 0, 0, shift + jnp.log(_nonzero(l)))

    lse = _scan(query_block, None, plan.nq)[1]  # (nq, *R)
    return jnp.moveaxis(lse, 0, -2).reshape(*lse.shape[1:-1], plan.nq * plan.bq)


def _unblock(plan, blocks, dtype, v):
    """Per-query-block outputs (nq, *A) as (batch, q_seq, heads, d)."""
    out = jnp.einsum(f"n{plan.A}->bnq{plan.Q[2:]}", blocks)
    out = out.reshape(plan.batch, plan.nq * plan.bq, plan.kv_heads * plan.group, v.shape[-1])
    return out[:, :plan.q_seq].astype(dtype)


def _unstack(plan, blocks, x):
    """Per-key-block cotangents (nk, batch, bk, kv_heads, d) as x's (batch, k_seq, kv_heads, d)."""
    stacked = jnp.moveaxis(blocks, 0, 1).reshape(plan.batch, plan.nk * plan.bk, *x.shape[2:])
    return stacked[:, :plan.k_seq].astype(x.dtype)


# --- Checks --------------------------------------------------------------------------------------

def _check_attention(q, k, v, mask, causal, scale):
    name = "gate 'attention'"
    check_flag("attention", "causal", causal)
    if scale is not None:
        check_real("attention", "scale", scale)
    for label, x in (("q", q), ("k", k), ("v", v)):
        if x.ndim != 4:
            raise ShapeError(f"{name}: {label} must have rank 4, (batch, seq, heads, head_dim) "
                             f"as in jax.nn.dot_product_attention, got shape {list(x.shape)}")
    shapes = f"q{list(q.shape)}, k{list(k.shape)}, v{list(v.shape)}"
    if not q.shape[0] == k.shape[0] == v.shape[0]:
        raise ShapeError(f"{name}: q, k and v must have the same batch size, got {shapes}")
    if q.shape[3] != k.shape[3]:
        raise ShapeError(f"{name}: q and k must have the same head_dim, got {shapes}")
    if k.shape[1:3] != v.shape[1:3]:
        raise ShapeError(f"{name}: k and v must have the same seq and heads, got {shapes}")
    heads, kv_heads = q.shape[2], k.shape[2]
    if (heads % kv_heads if kv_heads else heads):
        raise ShapeError(f"{name}: the heads of k and v ({kv_heads}) must divide those of q "
                         f"({heads}), got {shapes}")
    if mask is not None:
        _check_mask(name, mask, (q.shape[0], heads, q.shape[1], k.shape[1]))


def _check_mask(name, mask, scores):
    if mask.dtype != jnp.bool_:
        raise DtypeError(f"{name}: mask must be a boolean array (True where a query may attend "
                         f"to a key), got dtype {mask.dtype}; compare it, e.g. mask != 0")
    try:
        fits = mask.ndim <= 4 and jnp.broadcast_shapes(mask.shape, scores) == scores
    except ValueError:
        fits = False
    if not fits:
        raise ShapeError(f"{name}: mask{list(mask.shape)} must broadcast to (batch, heads, "
                         f"q_seq, k_seq) = {list(scores)}")


# --- Registration --------------------------------------------------------------------------------

def _attention_points(rng):
    """Self-attention first (both rules matter), then cross lengths, causal, a boolean mask
    (broadcast over heads, then over batch and heads), grouped-query heads and a scale."""
    qkv = lambda q, k, v: (normal(rng, *q), normal(rng, *k), normal(rng, *v))
    return [(qkv((2, 5, 2, 3), (2, 5, 2, 3), (2, 5, 2, 3)), {}),
            (qkv((1, 6, 2, 4), (1, 4, 2, 4), (1, 4, 2, 3)), {"causal": True}),
            ((*qkv((2, 4, 4, 3), (2, 5, 2, 3), (2, 5, 2, 3)), rng.random((2, 1, 4, 5)) > 0.3),
             {}),
            ((*qkv((1, 5, 2, 3), (1, 5, 2, 3), (1, 5, 2, 3)), rng.random((5, 5)) > 0.3),
             {"causal": True, "scale": 0.5})]


def _attention_zero_size():
    z = empty
    return [((z(0, 3, 2, 4), z(0, 5, 2, 4), z(0, 5, 2, 4)), {}),
            ((z(2, 0, 2, 4), z(2, 3, 2, 4), z(2, 3, 2, 4)), {"causal": True}),
            ((z(1, 3, 2, 4), z(1, 0, 2, 4), z(1, 0, 2, 4)), {}),
            ((z(1, 3, 2, 0), z(1, 4, 2, 0), z(1, 4, 2, 3)), {"causal": True}),
            ((z(1, 3, 2, 4), z(1, 4, 1, 4), z(1, 4, 1, 0)), {}),
            ((z(1, 3, 0, 4), z(1, 4, 0, 4), z(1, 4, 0, 4)), {}),
            ((z(1, 0, 2, 4), z(1, 4, 2, 4), z(1, 4, 2, 4), np.ones((1, 1, 0, 4), bool)),
             {"scale": 0.5})]


attention = register(
    gate(_attention, backward=_attention_backward, tangent=_attention_tangent,
         nondiff=("mask",), check=_check_attention),
    points=_attention_points, zero_size=_attention_zero_size,
    bad={"causal": (1, 0, "yes", None, 1.0),
         "scale": ("a", 1j, math.nan, math.inf, True, (1.0,))})
