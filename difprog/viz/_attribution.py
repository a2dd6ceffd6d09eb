"""Attribution of a class score to the input image: integrated gradients, SmoothGrad, Grad-CAM and
occlusion, batched and jitted (with `saliency` and `gradient_times_input` of `_saliency`).

Every method takes a batch `x` of shape (N, H, W, C) and `classes`, an int or one per image, and
explains `score[i] = logits[i, classes[i]]`. Methods that attribute to each input value return
an array shaped like `x` (saliency, gradient x input, integrated gradients, SmoothGrad); methods
that attribute to image positions return (N, H, W) (Grad-CAM, occlusion).

Images do not interact in evaluation mode, so one backward pass of the summed scores of many
inputs (images, path points, noisy copies stacked into one batch) gives each input's own
gradient; the path points or noisy copies go through the model in chunks of at most about a
million input values per pass, in a `lax.scan`, inside one jitted function.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from difprog import arguments
from difprog.errors import ArgumentError, DtypeError, ShapeError
from difprog.layers import Layer, walk

_CHUNK_VALUES = 2**20  # input values per backward pass of the stacked path points / samples


def integrated_gradients(model: Layer, params: Any, x: jax.Array, classes: int | Sequence[int],
                         baseline: Any = None, steps: int = 64) -> jax.Array:
    """Integrated gradients (Sundararajan, Taly & Yan 2017, "Axiomatic attribution for deep
    networks"): `(x - x') * integral_0^1 d score / d x at x' + a (x - x') da`.

    The integral is the Riemann midpoint rule, `mean_k grad(x' + (k + 1/2)/steps (x - x'))` for
    k = 0..steps-1: `steps` gradients, and by completeness the attributions of an image sum to
    `score(x) - score(x')` up to the rule's error (`viz.completeness` measures it; on the digits
    CNN it is under 1% at the default 64 steps). For a linear model the result is exactly
    `(x - x') * w`.

    Args:
        model, params: the model (logits (N, classes)) and its params.
        x: the images, (N, H, W, C).
        classes: the class explained, an int or one per image.
        baseline: the reference input x', broadcastable to x (default: zeros, a black image).
        steps: points of the path, a positive int.

    Returns:
        The attributions, shaped like x.

    Example:
        >>> maps = viz.integrated_gradients(model, params, data.x_test[:8], data.y_test[:8])
        >>> maps.sum(axis=(1, 2, 3))  # ~ score(x) - score(0)
    """
    x, targets = _inputs("integrated_gradients", model, params, x, classes)
    arguments.positive_int("integrated_gradients", "steps", steps)
    baseline = _baseline("integrated_gradients", baseline, x)
    chunk = _chunk(steps, x.size)
    return _integrated(model, params, x, targets, baseline, steps, chunk)


@functools.partial(jax.jit, static_argnums=(0, 6))
def _integrated(model, params, x, targets, baseline, steps, chunk):
    """steps is traced (one compile serves every multiple of chunk); chunk is static."""
    def point(k):  # the k-th path point, alpha = (k + 1/2) / steps
        return baseline + (k.astype(x.dtype) + 0.5) / steps * (x - baseline)

    return (x - baseline) * _mean_gradient(model, params, point, steps, targets, chunk)


def smoothgrad(model: Layer, params: Any, x: jax.Array, classes: int | Sequence[int],
               key: jax.Array, samples: int = 32, noise: float = 0.15) -> jax.Array:
    """SmoothGrad (Smilkov, Thorat, Kim, Viegas & Wattenberg 2017, "SmoothGrad: removing noise
    by adding noise"): the mean gradient of the score over noisy copies of each image,
    `mean_k grad(x + sigma * e_k)`, e_k ~ N(0, I), `sigma = noise * (max(x_i) - min(x_i))` per
    image (the paper's noise level, a fraction of the input's range).

    Copy k's noise is `jax.random.normal(jax.random.split(key, samples)[k], x.shape, x.dtype)`:
    the result equals the mean of `saliency` at those inputs, and the same key gives the same
    maps.

    Args:
        model, params: the model and its params.
        x: the images, (N, H, W, C).
        classes: the class explained, an int or one per image.
        key: a PRNG key, `jax.random.key(seed)`.
        samples: noisy copies per image, a positive int.
        noise: the noise's standard deviation as a fraction of each image's value range (the
            paper finds 0.1 to 0.2 best), a finite number >= 0.

    Returns:
        The mean gradients, shaped like x (signed; show their absolute value, as the paper).

    Example:
        >>> maps = viz.smoothgrad(model, params, x, 3, jax.random.key(0), samples=32)
    """
    x, targets = _inputs("smoothgrad", model, params, x, classes)
    arguments.positive_int("smoothgrad", "samples", samples)
    arguments.real("smoothgrad", "noise", noise, minimum=0)
    keys = jax.random.split(_key("smoothgrad", key), samples)
    return _smooth(model, params, x, targets, keys, float(noise), _chunk(samples, x.size))


@functools.partial(jax.jit, static_argnums=(0, 6))
def _smooth(model, params, x, targets, keys, noise, chunk):
    axes = tuple(range(1, x.ndim))
    sigma = noise * (jnp.max(x, axes, keepdims=True) - jnp.min(x, axes, keepdims=True))
    noisy = lambda k: x + sigma * jax.random.normal(keys[k], x.shape, x.dtype)
    return _mean_gradient(model, params, noisy, keys.shape[0], targets, chunk)


def _mean_gradient(model: Layer, params: Any, inputs: Callable, count: Any, targets: jax.Array,
                   chunk: int) -> jax.Array:
    """mean over k < count (a multiple of chunk; traced or not) of d score / d input at
    `inputs(k)` (a batch shaped like x), `chunk` of them stacked into each backward pass."""

    def total(stacked):  # (chunk, N, ...): one batch of chunk * N images
        flat = stacked.reshape(-1, *stacked.shape[2:])
        return jnp.sum(_scores(model, params, flat, jnp.tile(targets, stacked.shape[0])))

    def step(group, summed):
        indices = group * chunk + jnp.arange(chunk)
        return summed + jnp.sum(jax.grad(total)(jax.vmap(inputs)(indices)), 0)

    first = jax.eval_shape(inputs, jnp.zeros((), jnp.int32))
    summed = jax.lax.fori_loop(0, count // chunk, step, jnp.zeros(first.shape, first.dtype))
    return summed / jnp.asarray(count, first.dtype)


def grad_cam(model: Layer, params: Any, x: jax.Array, classes: int | Sequence[int],
             layer: str) -> jax.Array:
    """Grad-CAM (Selvaraju, Cogswell, Das, Vedantam, Parikh & Batra 2017, "Grad-CAM: visual
    explanations from deep networks via gradient-based localization").

    With A (N, h, w, K) the output of `layer` and G = d score / d A (through `perturb=`), each
    channel's weight is `alpha_k = mean_{h,w} G[..., k]`, the map is `relu(sum_k alpha_k A_k)`
    (N, h, w), upsampled bilinearly (`jax.image.resize`) to the input's (H, W). The activations
    and their gradient come from one forward and one backward pass.

    Args:
        model, params: the model and its params.
        x: the images, (N, H, W, C).
        classes: the class explained, an int or one per image.
        layer: the path of a layer with (N, h, w, K) outputs, such as 'conv2d_1' or 'relu_1'
            (the paper takes the last convolutional layer's).

    Returns:
        The maps, (N, H, W), >= 0: one value per position, not per channel.

    Example:
        >>> maps = viz.grad_cam(model, params, x, y, "conv2d_1")  # (N, 8, 8)
    """
    x, targets = _inputs("grad_cam", model, params, x, classes, spatial=True)
    if not isinstance(layer, str):
        raise ArgumentError(f"grad_cam: layer must be a layer path such as 'conv2d_1', got "
                            f"{layer!r}")
    try:
        captured = jax.eval_shape(lambda p, x: model.run(p, x, capture=(layer,)).captured,
                                  params, x)
    except ArgumentError as error:
        raise ArgumentError(f"grad_cam: {error}") from None
    shape = captured[layer].shape
    if len(shape) != 4:
        raise ShapeError(f"grad_cam: layer {layer!r} gives outputs of shape {shape}; Grad-CAM "
                         f"needs (N, h, w, channels) feature maps: choose a convolutional layer")
    return _grad_cam(model, params, x, targets, layer)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _grad_cam(model, params, x, targets, layer):
    def total(delta):
        out = model.run(params, x, capture=(layer,), perturb={layer: delta})
        return jnp.sum(_pick(out.output, targets)), out.captured[layer]

    shape = jax.eval_shape(lambda p, x: model.run(p, x, capture=(layer,)).captured, params, x)
    zero = jnp.zeros(shape[layer].shape, shape[layer].dtype)
    gradient, activation = jax.grad(total, has_aux=True)(zero)
    weights = jnp.mean(gradient, axis=(1, 2))
    cam = jnp.maximum(jnp.einsum("nhwk,nk->nhw", activation, weights), 0)
    return jax.image.resize(cam, x.shape[:3], method="bilinear")


def occlusion(model: Layer, params: Any, x: jax.Array, classes: int | Sequence[int],
              window: int | tuple[int, int] = 2, stride: int | tuple[int, int] = 1, *,
              value: float = 0.0) -> jax.Array:
    """Occlusion (Zeiler & Fergus 2014, "Visualizing and understanding convolutional
    networks"): the drop in the score when a window of the image (all channels) is replaced by
    `value`, `score(x) - score(x with the window occluded)`, averaged at each pixel over the
    windows that cover it.

    Windows start every `stride` pixels from the top-left corner, plus one flush with the bottom
    (right) edge when the stride does not reach it, so every pixel is covered. Forward passes
    only, the occluded copies stacked into batches inside one jitted function.

    Args:
        model, params: the model and its params.
        x: the images, (N, H, W, C).
        classes: the class explained, an int or one per image.
        window: the occluded patch, (height, width) or one int for both, at most (H, W).
        stride: the step between windows, (rows, columns) or one int, at most the window.
        value: what occluded pixels become (0: black for images in [0, 1]).

    Returns:
        The maps, (N, H, W): positive where hiding the pixel lowers the score.

    Example:
        >>> maps = viz.occlusion(model, params, x, y, window=2, stride=1)  # (N, 8, 8)
    """
    x, targets = _inputs("occlusion", model, params, x, classes, spatial=True)
    size = x.shape[1:3]
    window, stride = _pair("window", window), _pair("stride", stride)
    if window[0] > size[0] or window[1] > size[1]:
        raise ArgumentError(f"occlusion: window {window} does not fit in images of {size} "
                            f"pixels; choose a smaller window")
    if stride[0] > window[0] or stride[1] > window[1]:
        raise ArgumentError(f"occlusion: stride {stride} is larger than the window {window}: "
                            f"pixels between windows would get no attribution; choose a stride "
                            f"at most the window")
    arguments.real("occlusion", "value", value)
    corners = np.array([(i, j) for i in _starts(size[0], window[0], stride[0])
                        for j in _starts(size[1], window[1], stride[1])], np.int32)
    chunk = _chunk(len(corners), x.size)
    return _occlusion(model, params, x, targets, jnp.asarray(corners), window, float(value),
                      chunk)


def _starts(size: int, window: int, stride: int) -> list[int]:
    starts = list(range(0, size - window + 1, stride))
    return starts if starts[-1] == size - window else [*starts, size - window]


@functools.partial(jax.jit, static_argnums=(0, 5, 6, 7))
def _occlusion(model, params, x, targets, corners, window, value, chunk):
    rows, columns = jnp.arange(x.shape[1]), jnp.arange(x.shape[2])

    def mask(corner):  # (H, W): True inside the window at corner
        inside = lambda at, size, where: (at >= where) & (at < where + size)
        return inside(rows, window[0], corner[0])[:, None] & \
            inside(columns, window[1], corner[1])[None, :]

    def step(summed, group):
        masks = jax.vmap(mask)(group)  # (chunk, H, W)
        hidden = jnp.where(masks[:, None, :, :, None], jnp.asarray(value, x.dtype), x[None])
        scores = _scores(model, params, hidden.reshape(-1, *x.shape[1:]),
                         jnp.tile(targets, len(group))).reshape(len(group), -1)
        drops = base[None] - scores
        return summed + jnp.einsum("cn,chw->nhw", drops, masks.astype(x.dtype)), None

    base = _scores(model, params, x, targets)
    groups = corners.reshape(-1, chunk, 2)
    summed, _ = jax.lax.scan(step, jnp.zeros(x.shape[:3], x.dtype), groups)
    covered = jnp.sum(jax.vmap(mask)(corners).astype(x.dtype), 0)
    return summed / covered


def layer_outputs(model: Layer, params: Any, x: jax.Array) -> dict[str, jax.ShapeDtypeStruct]:
    """The shape and dtype of every inner layer's output for inputs like x, `{path: struct}` in
    the order the layers run (nothing is computed)."""
    shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), (params, x))
    return {v.path: v.output for v in walk(model, *shapes) if v.path}


def _scores(model: Layer, params: Any, x: jax.Array, targets: jax.Array) -> jax.Array:
    return _pick(model.apply(params, x), targets)


def _pick(logits: jax.Array, targets: jax.Array) -> jax.Array:
    return jnp.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]


def _chunk(count: int, values: int) -> int:
    """The largest divisor of `count` whose stack of inputs of `values` each stays within
    _CHUNK_VALUES (at least 1)."""
    fits = [c for c in range(1, count + 1) if count % c == 0 and c * values <= _CHUNK_VALUES]
    return max(fits, default=1)


def _inputs(name: str, model: Layer, params: Any, x: Any, classes: Any, *,
            spatial: bool = False) -> tuple[jax.Array, jax.Array]:
    """x as a floating array (N, H, W, C for the spatial methods) and the classes as (N,) ints
    in [0, number of classes), or a difprog error naming `name`."""
    if not isinstance(x, (jax.Array, np.ndarray)) or not jnp.issubdtype(x.dtype, jnp.floating):
        raise DtypeError(f"{name}: x must be a floating array of images (N, H, W, C), got "
                         f"{getattr(x, 'dtype', type(x).__name__)}")
    x = jnp.asarray(x)
    if (x.ndim != 4 if spatial else x.ndim < 2) or not x.size:
        raise ShapeError(f"{name}: x must be a non-empty batch of images (N, H, W, C), got "
                         f"shape {tuple(x.shape)}; add the batch axis with x[None]")
    logits = jax.eval_shape(model.apply, params, x)
    if len(logits.shape) != 2 or logits.shape[0] != x.shape[0]:
        raise ShapeError(f"{name}: the model must map (N, ...) images to (N, classes) logits; "
                         f"it gives {tuple(logits.shape)} for inputs {tuple(x.shape)}")
    return x, _classes(name, classes, x.shape[0], logits.shape[1])


def _classes(name: str, classes: Any, n: int, count: int) -> jax.Array:
    return arguments.class_ids(name, classes, n, count)


def _baseline(name: str, baseline: Any, x: jax.Array) -> jax.Array:
    if baseline is None:
        return jnp.zeros_like(x)
    try:
        baseline = jnp.asarray(baseline, x.dtype)
    except (TypeError, ValueError):
        raise DtypeError(f"{name}: baseline must be None, a number or an array of images, got "
                         f"{type(baseline).__name__}") from None
    try:
        fits = np.broadcast_shapes(baseline.shape, x.shape) == x.shape
    except ValueError:
        fits = False
    if not fits:
        raise ShapeError(f"{name}: baseline of shape {tuple(baseline.shape)} does not broadcast "
                         f"to the images' {tuple(x.shape)}; pass one image (H, W, C), a batch "
                         f"like x, or a number")
    return jnp.broadcast_to(baseline, x.shape)


def _key(name: str, key: Any) -> jax.Array:
    return arguments.prng_key(name, key)


def _pair(what: str, value: Any) -> tuple[int, int]:
    pair = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(pair) != 2 or any(not arguments.is_int(v) or v <= 0 for v in pair):
        raise ArgumentError(f"occlusion: {what} must be a positive int or (rows, columns) of "
                            f"positive ints, got {value!r}")
    return int(pair[0]), int(pair[1])
