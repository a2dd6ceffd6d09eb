"""Random augmentation layers: each image moved as a NumPy loop with the same draws moves it, the
identity in evaluation, gradients through the matmul gates against jax.vjp of a plain-jnp
reference in float64, and their errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difprog import layers
from difprog.errors import ArgumentError, DtypeError, ShapeError

KEY = jax.random.key(3)


def _images(shape=(6, 5, 7, 2), dtype=np.float32):
    return jnp.asarray(np.random.default_rng(0).normal(size=shape).astype(dtype))


def _shifted(x, rows, cols):
    """out[n, i, j] = x[n, i - rows[n], j - cols[n]], zero where that falls outside."""
    out = np.zeros_like(np.asarray(x))
    _, h, w, _ = x.shape
    for n, (dr, dc) in enumerate(zip(rows, cols)):
        for i in range(h):
            for j in range(w):
                if 0 <= i - dr < h and 0 <= j - dc < w:
                    out[n, i, j] = x[n, i - dr, j - dc]
    return out


def test_random_shift_moves_each_image_by_its_own_draw_and_fills_zeros():
    x = _images()
    y = layers.RandomShift(2).apply({}, x, key=KEY, train=True)
    rows, cols = np.asarray(jax.random.randint(KEY, (2, len(x)), -2, 3))
    np.testing.assert_array_equal(np.asarray(y), _shifted(np.asarray(x), rows, cols))
    assert len({(r, c) for r, c in zip(rows, cols)}) > 1  # the draws differ between images


def test_random_flip_mirrors_the_drawn_images_and_keeps_the_rest():
    x = _images((16, 4, 5, 3))
    y = np.asarray(layers.RandomFlip().apply({}, x, key=KEY, train=True))
    flip = np.asarray(jax.random.bernoulli(KEY, 0.5, (16,)))
    assert 0 < flip.sum() < 16
    np.testing.assert_array_equal(y[flip], np.asarray(x)[flip][:, :, ::-1])
    np.testing.assert_array_equal(y[~flip], np.asarray(x)[~flip])


@pytest.mark.parametrize("layer", [layers.RandomShift(3), layers.RandomFlip()])
def test_augmentations_are_the_identity_in_evaluation(layer):
    x = _images()
    assert layer.apply({}, x, key=KEY) is x


def test_a_shift_of_zero_pixels_is_the_identity_in_training_too():
    x = _images()
    assert layers.RandomShift(0).apply({}, x, key=KEY, train=True) is x


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("shape", [(0, 4, 4, 1), (3, 1, 1, 2), (2, 1, 5, 1)])
def test_dtypes_and_degenerate_shapes_are_kept(dtype, shape):
    x = jnp.arange(np.prod(shape), dtype=dtype).reshape(shape)
    for layer in (layers.RandomShift(1), layers.RandomFlip()):
        y = layer.apply({}, x, key=KEY, train=True)
        assert y.dtype == dtype and y.shape == shape


@pytest.mark.parametrize("layer", [layers.RandomShift(1), layers.RandomFlip()])
def test_integer_images_are_refused_naming_the_layer(layer):
    with pytest.raises(DtypeError, match=r"random_(shift|flip)"):
        layer.apply({}, jnp.zeros((2, 4, 4, 1), jnp.uint8), key=KEY, train=True)


@pytest.mark.parametrize("name", ["shift", "flip"])
def test_input_gradients_match_jax_autodiff_of_a_reference_in_float64(name):
    with jax.enable_x64(True):
        x, g = _images(dtype=np.float64), _images(dtype=np.float64)[::-1]
        if name == "shift":
            layer = layers.RandomShift(2)
            rows, cols = jax.random.randint(KEY, (2, len(x)), -2, 3)

            def reference(x):
                padded = jnp.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
                return jnp.stack([jax.lax.dynamic_slice(p, (2 - r, 2 - c, 0), x.shape[1:])
                                  for p, r, c in zip(padded, rows, cols)])
        else:
            layer = layers.RandomFlip()
            flip = jax.random.bernoulli(KEY, 0.5, (len(x),))

            def reference(x):
                return jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)

        y, vjp = jax.vjp(lambda x: layer.apply({}, x, key=KEY, train=True), x)
        want, want_vjp = jax.vjp(reference, x)
        np.testing.assert_allclose(y, want, rtol=0, atol=1e-15)
        np.testing.assert_allclose(vjp(g)[0], want_vjp(g)[0], rtol=0, atol=1e-15)
        tangent = jax.jvp(lambda x: layer.apply({}, x, key=KEY, train=True), (x,), (g,))[1]
        np.testing.assert_allclose(tangent, reference(g), rtol=0, atol=1e-15)


def test_augmentations_jit_and_draw_anew_with_each_key():
    model = layers.serial(layers.RandomShift(1), layers.RandomFlip())
    apply = jax.jit(lambda x, key: model.apply({}, x, key=key, train=True))
    x = _images((32, 6, 6, 1))
    first, again, other = (apply(x, k) for k in (KEY, KEY, jax.random.key(4)))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("layer", [layers.RandomShift(1), layers.RandomFlip()])
def test_training_without_a_key_names_the_layer_and_the_fix(layer):
    with pytest.raises(ArgumentError, match=r"random_(shift|flip).*needs a PRNG key.*key=jax"):
        layer.apply({}, _images(), train=True)


@pytest.mark.parametrize("layer", [layers.RandomShift(1), layers.RandomFlip()])
def test_a_batch_that_is_not_nhwc_is_refused_naming_the_layer(layer):
    with pytest.raises(ShapeError, match=r"random_(shift|flip).*NHWC"):
        layer.apply({}, jnp.zeros((4, 5)), key=KEY, train=True)


@pytest.mark.parametrize("pixels", [-1, 1.5, "2", True, None])
def test_random_shift_refuses_a_pixel_count_that_is_not_a_whole_number(pixels):
    with pytest.raises(ArgumentError, match="RandomShift: pixels must be an int >= 0"):
        layers.RandomShift(pixels)
