"""How optimised images are parameterised, and the random transforms that make them robust.

A parameterisation maps free parameters to images in [0, 1] through a sigmoid: `pixel` (one
parameter per pixel) or `fourier` (a spectrum scaled by 1 / frequency, as Lucid's FFT image, so
low frequencies move first). Transforms take (key, images) and keep the shape, so they jit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from difprog.errors import ArgumentError

Transform = Callable[[jax.Array, jax.Array], jax.Array]


class Parameterization(NamedTuple):
    """`init(key, shape) -> params` and `to_image(params, shape) -> images in [0, 1]`."""

    init: Callable[[jax.Array, tuple[int, ...]], jax.Array]
    to_image: Callable[[jax.Array, tuple[int, ...]], jax.Array]
    name: str


def pixel(scale: float = 0.01) -> Parameterization:
    """One free parameter per pixel and channel: image = sigmoid(params)."""
    return Parameterization(lambda key, shape: scale * jax.random.normal(key, shape),
                            lambda params, shape: jax.nn.sigmoid(params), "pixel")


def fourier(decay: float = 1.0, scale: float = 0.01, gain: float = 4.0) -> Parameterization:
    """A spectrum per image and channel, scaled by 1 / frequency^decay: image = sigmoid(irfft2).

    Each frequency's amplitude is divided by its frequency (capped at the lowest nonzero one),
    so gradient steps change coarse structure before fine detail, as in Lucid's FFT image.
    """

    def init(key, shape):
        n, h, w, c = _image_shape(shape)
        return scale * jax.random.normal(key, (n, h, w // 2 + 1, c, 2))

    def to_image(spectrum, shape):
        _, h, w, _ = _image_shape(shape)
        weights = jnp.asarray(_frequency_weights(h, w, decay))[None, :, :, None]
        complex_ = (spectrum[..., 0] + 1j * spectrum[..., 1]) * weights
        image = jnp.fft.irfft2(complex_, s=(h, w), axes=(1, 2)) * np.sqrt(h * w)
        return jax.nn.sigmoid(gain * image)

    return Parameterization(init, to_image, "fourier")


def _frequency_weights(h: int, w: int, decay: float) -> np.ndarray:
    frequencies = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.rfftfreq(w)[None, :] ** 2)
    return 1.0 / np.maximum(frequencies, 1.0 / max(h, w)) ** decay / max(h, w)


def _image_shape(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    if len(shape) != 4:
        raise ArgumentError(f"images must have shape (N, H, W, C), got {tuple(shape)}")
    return tuple(shape)


def jitter(pixels: int = 1) -> Transform:
    """Shifts each batch by up to `pixels` in each direction (edge pixels fill the gap)."""

    def transform(key, images):
        padded = jnp.pad(images, ((0, 0), (pixels,) * 2, (pixels,) * 2, (0, 0)), mode="edge")
        dy, dx = jax.random.randint(key, (2,), 0, 2 * pixels + 1)
        return jax.lax.dynamic_slice(padded, (0, dy, dx, 0), images.shape)

    return transform


def pad_crop(pixels: int = 1, value: float = 0.0) -> Transform:
    """Pads with a constant, then crops a random window of the original size back out."""

    def transform(key, images):
        padded = jnp.pad(images, ((0, 0), (pixels,) * 2, (pixels,) * 2, (0, 0)),
                         constant_values=value)
        dy, dx = jax.random.randint(key, (2,), 0, 2 * pixels + 1)
        return jax.lax.dynamic_slice(padded, (0, dy, dx, 0), images.shape)

    return transform


def random_scale(low: float = 0.9, high: float = 1.1) -> Transform:
    """Zooms by a random factor in [low, high] about the centre, keeping the shape."""

    def transform(key, images):
        factor = jax.random.uniform(key, (), minval=low, maxval=high)
        h, w = images.shape[1:3]
        scale = jnp.array([factor, factor])
        translation = jnp.array([h, w]) * (1 - factor) / 2
        return jax.image.scale_and_translate(images, images.shape, (1, 2), scale, translation,
                                             method="linear")

    return transform


def compose(*transforms: Transform) -> Transform:
    """The transforms applied in order, each with its own key."""

    def transform(key, images):
        for t, k in zip(transforms, jax.random.split(key, max(1, len(transforms)))):
            images = t(k, images)
        return images

    return transform


def standard_transforms(height: int) -> Transform:
    """Jitter, a small random zoom and a padded crop, scaled to the image size."""
    shift = max(1, height // 8)
    return compose(pad_crop(shift), jitter(shift), random_scale(0.95, 1.05))
