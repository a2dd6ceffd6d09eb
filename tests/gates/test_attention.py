"""gates.attention against jax.nn.dot_product_attention and a float64 jax.numpy reference, in
one block and in many (small blocks patched in: padding, causal skipping, masks sliced per
block), under jit, vmap and second order; its fully masked rows; its static checks; and the
memory its gradient needs, which must grow with seq, not seq squared."""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difprog
from difprog import gates
from difprog.errors import DtypeError, ShapeError

attention = gates.attention
module = importlib.import_module("difprog.gates.attention")


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 4 queries and 3 keys, so that short sequences span several padded blocks."""
    monkeypatch.setattr(module, "BLOCK_Q", 4)
    monkeypatch.setattr(module, "BLOCK_K", 3)


def reference(q, k, v, mask=None, causal=False, scale=None):
    """Attention in plain jax.numpy: the full (seq x seq) scores, rows with no key give 0."""
    batch, q_seq, heads, head_dim = q.shape
    group = heads // k.shape[2]
    k, v = jnp.repeat(k, group, axis=2), jnp.repeat(v, group, axis=2)
    scale = 1 / np.sqrt(head_dim) if scale is None else scale
    s = scale * jnp.einsum("bqhd,bkhd->bhqk", q, k)
    valid = jnp.ones((batch, heads, q_seq, k.shape[1]), bool)
    if causal:
        valid &= jnp.tril(jnp.ones((q_seq, k.shape[1]), bool))
    if mask is not None:
        valid &= mask
    s = jnp.where(valid, s, -jnp.inf)
    m = jax.lax.stop_gradient(jnp.max(s, -1, keepdims=True))
    p = jnp.exp(s - jnp.where(jnp.isfinite(m), m, 0))
    total = jnp.sum(p, -1, keepdims=True)
    return jnp.einsum("bhqk,bkhd->bqhd", p / jnp.where(total == 0, 1, total), v)


def _inputs(q_shape, k_shape, v_dim=None, *, mask_shape=None, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal(q_shape).astype(dtype)
    k = rng.standard_normal(k_shape).astype(dtype)
    v = rng.standard_normal((*k_shape[:-1], v_dim or k_shape[-1])).astype(dtype)
    mask = None if mask_shape is None else rng.random(mask_shape) > 0.3
    return q, k, v, mask


# (q shape, k shape, v head_dim, mask shape, options): self and cross lengths, grouped heads.
CASES = [
    ((2, 10, 2, 3), (2, 10, 2, 3), None, None, {}),
    ((2, 10, 2, 3), (2, 10, 2, 3), None, None, {"causal": True}),
    ((1, 9, 4, 3), (1, 7, 2, 3), 2, (1, 1, 9, 7), {"causal": True, "scale": 0.7}),
    ((2, 6, 2, 4), (2, 11, 1, 4), 5, (2, 2, 1, 11), {}),
    ((1, 7, 2, 3), (1, 12, 2, 3), None, (7, 12), {"causal": True}),
]
IDS = ["self", "self-causal", "gqa-cross-causal-mask", "cross-mask-over-keys", "mask-2d-causal"]


@pytest.mark.parametrize("blocks", ["one", "many"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_value_grad_and_jvp_match_float64_reference(case, blocks, monkeypatch):
    if blocks == "many":
        monkeypatch.setattr(module, "BLOCK_Q", 4)
        monkeypatch.setattr(module, "BLOCK_K", 3)
    q_shape, k_shape, v_dim, mask_shape, options = case
    q, k, v, mask = _inputs(q_shape, k_shape, v_dim, mask_shape=mask_shape)
    with jax.enable_x64(True):
        mine, ref = _value_grad_jvp(q, k, v, mask, options)
    for a, b in zip(mine, ref):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def _value_grad_jvp(q, k, v, mask, options):
    """(value, gradients, tangent) of attention and of the reference, in one compiled program."""
    rng = np.random.default_rng(1)
    g = rng.standard_normal((*q.shape[:3], v.shape[3]))
    tangents = tuple(rng.standard_normal(x.shape) for x in (q, k, v))

    def one(f, q, k, v, mask):
        fn = lambda q, k, v: f(q, k, v, mask, **options)
        grads = jax.grad(lambda *a: jnp.vdot(fn(*a), g), (0, 1, 2))(q, k, v)
        return fn(q, k, v), *grads, jax.jvp(fn, (q, k, v), tangents)[1]

    both = lambda *a: [one(f, *a) for f in (attention, reference)]
    return jax.jit(both)(q, k, v, mask)


def test_check_gate_passes_over_many_blocks(small_blocks):
    """Padding, causal block skipping, a mask sliced per block, grouped heads and cross lengths:
    both rules and second order, in float64."""
    q, k, v, mask = _inputs((1, 10, 4, 3), (1, 7, 2, 3), 2, mask_shape=(1, 4, 10, 1))
    report = difprog.check_gate(attention, q, k, v, mask, causal=True)
    assert report.ok, str(report)
    q, k, v, _ = _inputs((2, 5, 2, 3), (2, 8, 2, 3), seed=1)
    report = difprog.check_gate(attention, q, k, v, scale=0.3)
    assert report.ok, str(report)


NN_CASES = [  # (q shape, k shape, mask shape, is_causal): jax.nn needs equal head_dims
    ((2, 6, 4, 8), (2, 6, 4, 8), None, False),
    ((2, 6, 4, 8), (2, 6, 2, 8), None, True),
    ((1, 5, 2, 8), (1, 9, 2, 8), (1, 2, 5, 9), False),
    ((2, 9, 2, 8), (2, 4, 1, 8), (9, 4), True),
]


@pytest.mark.parametrize("blocks", ["one", "many"])
@pytest.mark.parametrize("case", NN_CASES, ids=["self", "gqa-causal", "cross-mask",
                                                "cross-mask-causal"])
def test_matches_jax_nn_dot_product_attention_in_float32(case, blocks, monkeypatch):
    if blocks == "many":
        monkeypatch.setattr(module, "BLOCK_Q", 4)
        monkeypatch.setattr(module, "BLOCK_K", 3)
    q_shape, k_shape, mask_shape, causal = case
    q, k, v, mask = _inputs(q_shape, k_shape, mask_shape=mask_shape, dtype=np.float32)
    if mask is not None:  # jax.nn averages v over a row with no key, difprog gives 0: avoid
        mask[..., 0] = True

    def both(q, k, v, r):
        ours = lambda q, k, v: attention(q, k, v, mask, causal=causal)
        theirs = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, mask=mask,
                                                              is_causal=causal)
        loss = lambda f: lambda *a: jnp.sum(f(*a) * r)
        return [(f(q, k, v), *jax.grad(loss(f), (0, 1, 2))(q, k, v)) for f in (ours, theirs)]

    r = np.random.default_rng(3).standard_normal((*q.shape[:3], v.shape[3])).astype(np.float32)
    ours, theirs = jax.jit(both)(q, k, v, r)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("blocks", ["one", "many"])
def test_a_row_with_no_key_gives_zero_and_no_gradient(blocks, monkeypatch):
    if blocks == "many":
        monkeypatch.setattr(module, "BLOCK_Q", 4)
        monkeypatch.setattr(module, "BLOCK_K", 3)
    q, k, v, mask = _inputs((1, 6, 2, 3), (1, 7, 2, 3), mask_shape=(1, 2, 6, 7))
    mask[0, 1, 4] = False  # query 4 of head 1 attends to nothing
    g = np.zeros((1, 6, 2, 3))
    g[0, 4, 1] = 1.0  # the gradient of that row's output alone
    tangents = tuple(np.ones_like(x) for x in (q, k, v))

    def row(q, k, v):
        f = lambda q, k, v: attention(q, k, v, mask)
        grads = jax.grad(lambda *a: jnp.vdot(f(*a), g), (0, 1, 2))(q, k, v)
        return f(q, k, v), grads, jax.jvp(f, (q, k, v), tangents)[1]

    with jax.enable_x64(True):
        out, grads, tangent = jax.tree.map(np.asarray, jax.jit(row)(q, k, v))
        report = difprog.check_gate(attention, q, k, v, mask)
    assert np.all(out[0, 4, 1] == 0) and np.all(np.isfinite(out))
    assert all(np.all(d == 0) for d in grads)
    assert np.all(tangent[0, 4, 1] == 0) and np.all(np.isfinite(tangent))
    assert report.ok, str(report)


def test_vmap_over_an_extra_batch_axis_with_the_mask_batched_or_not():
    q, k, v, _ = _inputs((3, 2, 5, 2, 4), (3, 2, 6, 2, 4))
    masks = np.random.default_rng(4).random((3, 2, 1, 5, 6)) > 0.3
    masks[..., 0] = True
    with jax.enable_x64(True):
        loss = lambda q, k, v, m: jnp.sum(jnp.sin(attention(q, k, v, m, causal=True)))
        ref = lambda q, k, v, m: jnp.sum(jnp.sin(reference(q, k, v, m, causal=True)))
        for in_axes, mask in [((0, 0, 0, 0), masks), ((0, 0, 0, None), masks[0])]:
            out = jax.vmap(attention, in_axes)(q, k, v, mask)
            expected = jax.vmap(reference, in_axes)(q, k, v, mask)
            np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
            grads = jax.jit(jax.vmap(jax.grad(loss, (0, 1, 2)), in_axes))(q, k, v, mask)
            ref_grads = jax.vmap(jax.grad(ref, (0, 1, 2)), in_axes)(q, k, v, mask)
            for a, b in zip(grads, ref_grads):
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_second_order_matches_the_reference(small_blocks):
    q, k, v, mask = _inputs((1, 6, 2, 3), (1, 5, 2, 3), mask_shape=(6, 5))
    mask[:, 0] = True
    with jax.enable_x64(True):
        loss = lambda f: lambda q, k, v: jnp.sum(jnp.tanh(f(q, k, v, mask, causal=True)))
        hvp = lambda f: jax.jit(lambda *x: jax.jvp(jax.grad(loss(f), (0, 1, 2)), x,
                                                   (q, k, v))[1])(q, k, v)
        for a, b in zip(hvp(attention), hvp(reference)):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)
        ggq = lambda f: jax.jit(jax.grad(lambda q: jnp.sum(jax.grad(loss(f))(q, k, v) ** 2)))(q)
        np.testing.assert_allclose(ggq(attention), ggq(reference), rtol=1e-9, atol=1e-11)


def test_bfloat16_inputs_accumulate_in_float32():
    q, k, v, _ = _inputs((1, 40, 2, 16), (1, 40, 2, 16), dtype=np.float32)
    low = [jnp.asarray(x, jnp.bfloat16) for x in (q, k, v)]
    out = attention(*low, causal=True)
    assert out.dtype == jnp.bfloat16
    exact = reference(*(x.astype(jnp.float32) for x in low), causal=True)
    np.testing.assert_allclose(np.asarray(out, np.float32), exact, atol=2e-2)
    grads = jax.grad(lambda *a: jnp.sum(attention(*a, causal=True).astype(jnp.float32)),
                     (0, 1, 2))(*low)
    assert [g.dtype for g in grads] == [jnp.bfloat16] * 3


def _temp_bytes(f, seq):
    x = jax.ShapeDtypeStruct((1, seq, 2, 16), jnp.float32)
    grad = jax.jit(jax.grad(lambda q, k, v: jnp.sum(f(q, k, v)), argnums=(0, 1, 2)))
    return grad.lower(x, x, x).compile().memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize("causal", [False, True])
def test_gradient_memory_grows_less_than_quadratically(causal):
    """4x the sequence: the gradient's temporaries grow at most 4x (jax.grad of the plain
    version: about 16x, for the (seq x seq) probabilities it keeps)."""
    ours = lambda q, k, v: attention(q, k, v, causal=causal)
    plain = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=causal)
    assert _temp_bytes(ours, 1024) <= 4 * _temp_bytes(ours, 256)
    assert _temp_bytes(plain, 1024) >= 10 * _temp_bytes(plain, 256)
    assert _temp_bytes(ours, 1024) * 8 <= _temp_bytes(plain, 1024)


def test_mask_may_be_given_by_name_or_left_out():
    q, k, v, mask = _inputs((1, 4, 2, 3), (1, 4, 2, 3), mask_shape=(4, 4), dtype=np.float32)
    mask[:, 0] = True
    np.testing.assert_array_equal(attention(q, k, v, mask=mask), attention(q, k, v, mask))
    full = np.ones((4, 4), bool)
    np.testing.assert_allclose(attention(q, k, v, full), attention(q, k, v), rtol=1e-6)
    assert gates.attention.optional_names == ("mask",)


def _bad(q_shape=(2, 5, 4, 8), k_shape=(2, 6, 2, 8), v_shape=(2, 6, 2, 8), mask=None):
    q, k, v = (jnp.zeros(s) for s in (q_shape, k_shape, v_shape))
    return q, k, v, mask


@pytest.mark.parametrize("arguments, error, words", [
    (_bad(q_shape=(5, 4, 8)), ShapeError, "q must have rank 4"),
    (_bad(v_shape=(2, 6, 2, 8, 1)), ShapeError, "v must have rank 4"),
    (_bad(k_shape=(3, 6, 2, 8), v_shape=(3, 6, 2, 8)), ShapeError, "same batch size"),
    (_bad(k_shape=(2, 6, 2, 7), v_shape=(2, 6, 2, 7)), ShapeError, "same head_dim"),
    (_bad(v_shape=(2, 5, 2, 8)), ShapeError, "k and v must have the same seq"),
    (_bad(k_shape=(2, 6, 3, 8), v_shape=(2, 6, 3, 8)), ShapeError, "must divide"),
    (_bad(mask=jnp.ones((5, 6))), DtypeError, "boolean"),
    (_bad(mask=jnp.ones((2, 4, 5, 5), bool)), ShapeError, "must broadcast"),
    (_bad(mask=jnp.ones((1, 2, 4, 5, 6), bool)), ShapeError, "must broadcast"),
])
def test_bad_shapes_and_masks_are_one_line_errors_naming_the_gate(arguments, error, words):
    for call in (attention, jax.jit(lambda *a: attention(*a))):
        with pytest.raises(error) as caught:
            call(*arguments)
        message = str(caught.value)
        assert message.startswith("gate 'attention'") and words in message, message
        assert "\n" not in message
