"""How optimised images are parameterised, and the random transforms that make them robust.

A parameterisation maps free parameters to images in [0, 1] through a sigmoid: `pixel` (one
parameter per pixel) or `fourier` (a spectrum scaled by 1 / frequency, as Lucid's FFT image, so
low frequencies move first). For colour (3-channel) images both decorrelate the colours first,
as Lucid does: the free channels are a luminance and two colour-difference components, mixed
into RGB by the square root of natural images' colour correlation. Transforms take
(key, images) and keep the shape, so they jit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from difprog import arguments
from difprog.errors import ArgumentError, DtypeError

Transform = Callable[[jax.Array, jax.Array], jax.Array]


class Parameterization(NamedTuple):
    """`init(key, shape) -> params` and `to_image(params, shape) -> images in [0, 1]`."""

    init: Callable[[jax.Array, tuple[int, ...]], jax.Array]
    to_image: Callable[[jax.Array, tuple[int, ...]], jax.Array]
    name: str


# The square root (by SVD) of the 3x3 correlation of natural images' RGB colours, from Lucid
# (lucid/optvis/param/color.py, color_correlation_svd_sqrt): column 0 mixes a luminance into R,
# G and B, columns 1 and 2 two colour differences. Lucid divides it by its largest column norm,
# so that a unit of any decorrelated component moves a pixel's RGB vector by at most 1.
COLOUR_CORRELATION_SQRT = np.array([[0.26, 0.09, 0.02],
                                    [0.27, 0.00, -0.05],
                                    [0.27, -0.09, 0.03]])
COLOUR_MIXING = COLOUR_CORRELATION_SQRT / np.max(np.linalg.norm(COLOUR_CORRELATION_SQRT, axis=0))


def decorrelated_to_rgb(x: jax.Array) -> jax.Array:
    """Decorrelated colour components (..., 3) to RGB (..., 3): rgb = COLOUR_MIXING @ x per
    pixel (Lucid's `_linear_decorrelate_color`), before the sigmoid."""
    return x @ jnp.asarray(COLOUR_MIXING, x.dtype).T


def rgb_to_decorrelated(rgb: jax.Array) -> jax.Array:
    """The inverse of `decorrelated_to_rgb` (the mixing matrix is invertible)."""
    return rgb @ jnp.asarray(np.linalg.inv(COLOUR_MIXING).T, rgb.dtype)


def _decorrelates(decorrelate: bool | None, shape: tuple[int, ...], name: str) -> bool:
    """Whether to mix colours: None means for 3 channels only; True needs 3 channels."""
    channels = _image_shape(shape)[-1]
    if decorrelate is None:
        return channels == 3
    if decorrelate and channels != 3:
        raise ArgumentError(f"{name}(decorrelate=True): colour decorrelation mixes 3 RGB channels, "
                            f"but the images have shape {tuple(shape)} ({channels} channels); "
                            f"leave decorrelate=None (on for 3 channels only) or set False")
    return bool(decorrelate)


def _check_decorrelate(decorrelate: object, name: str) -> None:
    if decorrelate is not None and not isinstance(decorrelate, (bool, np.bool_)):
        raise DtypeError(f"{name}: decorrelate must be None, True or False, got {decorrelate!r}")


def pixel(scale: float = 0.01, decorrelate: bool | None = None) -> Parameterization:
    """One free parameter per pixel and channel: image = sigmoid(params), or for 3 channels
    sigmoid(decorrelated_to_rgb(params)).

    decorrelate: None (default) decorrelates colours when the images have 3 channels and leaves
    any other channel count as it is; True insists on 3 channels; False never mixes.
    """
    _check_decorrelate(decorrelate, "pixel")

    def to_image(params, shape):
        mix = _decorrelates(decorrelate, shape, "pixel")
        return jax.nn.sigmoid(decorrelated_to_rgb(params) if mix else params)

    def init(key, shape):
        _decorrelates(decorrelate, shape, "pixel")
        return scale * jax.random.normal(key, _image_shape(shape))

    return Parameterization(init, to_image, "pixel")


def fourier(decay: float = 1.0, scale: float = 0.01, gain: float = 4.0,
            decorrelate: bool | None = None) -> Parameterization:
    """A spectrum per image and channel, scaled by 1 / frequency^decay: image = sigmoid(irfft2),
    with 3 channels sigmoid(decorrelated_to_rgb(irfft2)) (Lucid's `image(..., fft=True,
    decorrelate=True)`).

    Each frequency's amplitude is divided by its frequency (capped at the lowest nonzero one),
    so gradient steps change coarse structure before fine detail, as in Lucid's FFT image. Any
    height and width work, odd ones included (the inverse real FFT is given the size).
    decorrelate: as for `pixel`.

    Example:
        >>> param = fourier()                        # colour-decorrelated for (N, H, W, 3)
        >>> images = param.to_image(param.init(jax.random.key(0), (2, 33, 47, 3)), (2, 33, 47, 3))
    """
    _check_decorrelate(decorrelate, "fourier")

    def init(key, shape):
        n, h, w, c = _image_shape(shape)
        _decorrelates(decorrelate, shape, "fourier")
        return scale * jax.random.normal(key, (n, h, w // 2 + 1, c, 2))

    def to_image(spectrum, shape):
        _, h, w, _ = _image_shape(shape)
        weights = jnp.asarray(_frequency_weights(h, w, decay))[None, :, :, None]
        complex_ = (spectrum[..., 0] + 1j * spectrum[..., 1]) * weights
        image = jnp.fft.irfft2(complex_, s=(h, w), axes=(1, 2)) * np.sqrt(h * w)
        if _decorrelates(decorrelate, shape, "fourier"):
            image = decorrelated_to_rgb(image)
        return jax.nn.sigmoid(gain * image)

    return Parameterization(init, to_image, "fourier")


def _frequency_weights(h: int, w: int, decay: float) -> np.ndarray:
    frequencies = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.rfftfreq(w)[None, :] ** 2)
    return 1.0 / np.maximum(frequencies, 1.0 / max(h, w)) ** decay / max(h, w)


def _image_shape(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    shape = tuple(shape)
    if len(shape) != 4 or not all(arguments.is_int(s) and s > 0 for s in shape):
        raise ArgumentError(f"images must have shape (N, H, W, C) of positive ints, got {shape}")
    return tuple(int(s) for s in shape)


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


def random_rotate(degrees: float | Sequence[float] = 10.0) -> Transform:
    """Rotates each batch about its centre by a random angle, counter-clockwise as displayed.

    `degrees` a number d >= 0: an angle uniform in [-d, d]; a sequence: one of its angles, each
    equally likely (Lucid's `random_rotate(angles)`). Pixels are sampled bilinearly; points
    that fall outside the image take the nearest edge pixel, as `jitter` does. Rotating a
    square image by 90 degrees equals `jnp.rot90(images, 1, axes=(1, 2))`.

    Example:
        >>> transform = compose(jitter(4), random_rotate(10), jitter(2))
    """
    angles = _angles(degrees)

    def transform(key, images):
        return _resample(images, _random_angle(key, angles), 1.0, jnp.zeros(2), "edge")

    return transform


def random_affine(degrees: float | Sequence[float] = 10.0,
                  scale: tuple[float, float] = (0.95, 1.05), shift: int = 0) -> Transform:
    """Shift, zoom and rotation in one bilinear resample, reflecting at the borders.

    A random angle as `random_rotate(degrees)`, a zoom factor uniform in [scale[0], scale[1]]
    about the centre (as `random_scale`) and a whole-pixel shift of up to `shift` each way (as
    `jitter`), applied as one sampling of the image (one gather instead of three passes, the
    fast way on CPU for large images). Points outside the image are reflected back into it, so
    border pixels are not seen more often than others.

    Example:
        >>> transform = random_affine(10, (0.9, 1.1), shift=16)   # for a 224x224 image
    """
    angles = _angles(degrees)
    low, high = _pair("random_affine", "scale", scale)
    if not 0 < low <= high:
        raise ArgumentError(f"random_affine: scale must be (low, high) with 0 < low <= high, "
                            f"got {scale}")
    shift = arguments.integer("random_affine", "shift", shift, minimum=0)

    def transform(key, images):
        k_angle, k_scale, k_shift = jax.random.split(key, 3)
        factor = jax.random.uniform(k_scale, (), minval=low, maxval=high)
        offset = jax.random.randint(k_shift, (2,), -shift, shift + 1).astype(jnp.float32)
        return _resample(images, _random_angle(k_angle, angles), factor, offset, "reflect")

    return transform


def _random_angle(key: jax.Array, angles: float | tuple[float, ...]) -> jax.Array:
    if isinstance(angles, float):
        return jax.random.uniform(key, (), minval=-angles, maxval=angles)
    return jax.random.choice(key, jnp.asarray(angles, jnp.float32))


def _pair(name: str, what: str, value: object) -> tuple[float, float]:
    """(low, high) from a pair of finite numbers, or a difprog error naming `name`."""
    if not isinstance(value, (tuple, list)) or len(value) != 2 or any(
            not arguments.is_real(v) or not math.isfinite(v) for v in value):
        raise ArgumentError(f"{name}: {what} must be a pair of finite numbers (low, high), got "
                            f"{value!r}")
    return float(value[0]), float(value[1])


def _angles(degrees: object) -> float | tuple[float, ...]:
    def number(value):
        if not arguments.is_real(value):
            raise DtypeError(f"random_rotate: degrees must be a number or a sequence of numbers "
                             f"(angles in degrees), got {value!r}")
        if not math.isfinite(value):
            raise ArgumentError(f"random_rotate: angles must be finite, got {value!r}")
        return float(value)

    if isinstance(degrees, (list, tuple, np.ndarray)):
        angles = tuple(number(d) for d in np.asarray(degrees, object).ravel())
        if not angles:
            raise ArgumentError("random_rotate: give at least one angle, got an empty sequence")
        return angles
    largest = number(degrees)
    if largest < 0:
        raise ArgumentError(f"random_rotate: degrees is the largest angle either way and must "
                            f"be >= 0, got {largest:g}; use random_rotate({-largest:g}) or a "
                            f"sequence of angles such as [{largest:g}]")
    return largest


def _resample(images: jax.Array, degrees: jax.Array, zoom: jax.Array, offset: jax.Array,
              mode: str) -> jax.Array:
    """images (N, H, W, C) rotated by `degrees` counter-clockwise about the centre, zoomed by
    `zoom` and shifted by `offset` (dy, dx), bilinearly.

    Output pixel (y, x), at offset (dy, dx) from the centre c, reads the input at
    c + (cos t dy + sin t dx, -sin t dy + cos t dx) / zoom - offset, brought back into the
    image by clipping ("edge") or reflection ("reflect").
    """
    h, w = images.shape[1:3]
    theta = jnp.deg2rad(jnp.asarray(degrees, jnp.float32))
    cos, sin = jnp.cos(theta) / zoom, jnp.sin(theta) / zoom
    cy, cx = (h - 1) / 2, (w - 1) / 2
    dy = jnp.arange(h, dtype=jnp.float32)[:, None] - cy
    dx = jnp.arange(w, dtype=jnp.float32)[None, :] - cx
    sy = _inside(cy + cos * dy + sin * dx - offset[0], h, mode)
    sx = _inside(cx - sin * dy + cos * dx - offset[1], w, mode)
    y0, x0 = jnp.floor(sy).astype(jnp.int32), jnp.floor(sx).astype(jnp.int32)
    y1, x1 = jnp.minimum(y0 + 1, h - 1), jnp.minimum(x0 + 1, w - 1)
    fy, fx = (sy - y0)[..., None].astype(images.dtype), (sx - x0)[..., None].astype(images.dtype)
    top = images[:, y0, x0] * (1 - fx) + images[:, y0, x1] * fx
    bottom = images[:, y1, x0] * (1 - fx) + images[:, y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _inside(coordinate: jax.Array, size: int, mode: str) -> jax.Array:
    """Coordinates brought into [0, size - 1]: clipped, or reflected about the end pixels."""
    if mode == "reflect" and size > 1:
        period = 2 * (size - 1)
        coordinate = (size - 1) - jnp.abs(jnp.mod(coordinate, period) - (size - 1))
    return jnp.clip(coordinate, 0, size - 1)


def compose(*transforms: Transform) -> Transform:
    """The transforms applied in order, each with its own key."""

    def transform(key, images):
        for t, k in zip(transforms, jax.random.split(key, max(1, len(transforms)))):
            images = t(k, images)
        return images

    return transform


ROTATE_FROM = 64  # standard_transforms rotates images at least this tall


def standard_transforms(height: int) -> Transform:
    """Jitter, a small random zoom and a padded crop, scaled to the image size.

    Images at least 64 pixels tall (`ROTATE_FROM`) get Lucid's set in one resample
    (`random_affine`): a shift of up to height / 8 pixels each way, a zoom in [0.95, 1.05] and
    a rotation of up to 10 degrees either way. Smaller images keep the padded crop, jitter and
    zoom, unrotated, with a shift of height / 12 (1 pixel for the 8x8 digits, 2 for 28x28
    images): on the Fashion-MNIST CNN, height / 8 (3 pixels twice over) moved a unit's pattern
    too far for its neurons to be driven at all.
    """
    if height < ROTATE_FROM:
        shift = max(1, height // 12)
        return compose(pad_crop(shift), jitter(shift), random_scale(0.95, 1.05))
    return random_affine(10, (0.95, 1.05), max(1, height // 8))
