"""Every attribution method at once by name (`attributions`), and their picture: one row per
image, the image then one column per method, on one colour scale (`save_attributions`)."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from difprog import figures, inline
from difprog.errors import ArgumentError, ShapeError
from difprog.layers import Layer
from difprog.viz._attribution import (
    grad_cam,
    integrated_gradients,
    layer_outputs,
    occlusion,
    smoothgrad,
)
from difprog.viz._saliency import gradient_times_input, saliency

METHODS = ("saliency", "gradient_times_input", "integrated_gradients", "smoothgrad", "grad_cam",
           "occlusion")
GRADIENT_METHODS = METHODS[:5]  # the methods read from gradients (occlusion only runs forward)
ABSOLUTE = frozenset({"saliency", "smoothgrad"})  # drawn as |gradient| (Simonyan; Smilkov)


class Attributions(dict):
    """`{method: maps}` as `attributions` returns it, with the `images` they explain.

    A dict in every other way, and to JAX a pytree of the maps alone (the images ride along
    unchanged through `jax.tree.map`); as the last expression of a notebook cell it shows as
    `save_attributions`' grid.
    """

    def __init__(self, maps: Mapping[str, Any], images: Any = None):
        super().__init__(maps)
        self.images = images

    def _repr_html_(self) -> str | None:
        if self.images is None or not self:
            return None  # nothing to draw the maps over: the notebook shows the dict
        data = inline.png(lambda path: save_attributions(self.images, self, path))
        return inline.picture(data, alt=f"attribution maps: {', '.join(self)}")


class _Images:
    """The images of an `Attributions`, carried through JAX's tree functions as static data
    (compared by identity: arrays cannot be hashed)."""

    def __init__(self, images: Any):
        self.images = images


def _flatten(a: Attributions) -> tuple[list, tuple]:
    return list(a.values()), (tuple(a), _Images(a.images))


def _flatten_with_keys(a: Attributions) -> tuple[list, tuple]:
    return [(jax.tree_util.DictKey(k), v) for k, v in a.items()], _flatten(a)[1]


def _unflatten(aux: tuple, maps: Any) -> Attributions:
    return Attributions(dict(zip(aux[0], maps)), aux[1].images)


jax.tree_util.register_pytree_with_keys(Attributions, _flatten_with_keys, _unflatten, _flatten)


def attributions(model: Layer, params: Any, x: jax.Array, classes: int | Sequence[int],
                 methods: Sequence[str] = METHODS, *, key: jax.Array | None = None,
                 layer: str | None = None, steps: int = 64, samples: int = 32,
                 noise: float = 0.15, window: int | tuple[int, int] = 2,
                 stride: int | tuple[int, int] = 1) -> Attributions:
    """`{method: maps}` for each name of `methods` (from `METHODS`), with each method's settings
    (an `Attributions`: a dict that a notebook shows as the grid of maps over the images):
    `steps` (integrated_gradients), `key`, `samples`, `noise` (smoothgrad; key default
    `jax.random.key(0)`), `layer` (grad_cam; default: the last layer with (N, h, w, K) outputs),
    `window`, `stride` (occlusion).

    Example:
        >>> maps = viz.attributions(model, params, x, y, key=jax.random.key(0))
        >>> viz.save_attributions(x, maps, "attributions.png")
    """
    unknown = [m for m in methods if m not in METHODS] if not isinstance(methods, str) else \
        [methods]
    if unknown or not methods:
        raise ArgumentError(f"attributions: methods must be names from {list(METHODS)}, got "
                            f"{list(unknown) or methods!r}")
    runs = {
        "saliency": lambda: saliency(model, params, x, classes),
        "gradient_times_input": lambda: gradient_times_input(model, params, x, classes),
        "integrated_gradients": lambda: integrated_gradients(model, params, x, classes,
                                                             steps=steps),
        "smoothgrad": lambda: smoothgrad(model, params, x, classes,
                                         jax.random.key(0) if key is None else key, samples,
                                         noise),
        "grad_cam": lambda: grad_cam(model, params, x, classes,
                                     layer or last_spatial_layer(model, params, x)),
        "occlusion": lambda: occlusion(model, params, x, classes, window, stride),
    }
    return Attributions({method: runs[method]() for method in methods}, x)


def last_spatial_layer(model: Layer, params: Any, x: jax.Array) -> str:
    """The path of the last layer to finish whose outputs are (N, h, w, K) feature maps
    (Grad-CAM's default layer): of a residual block, the block (shortcut and all), not its last
    inner layer."""
    outputs = layer_outputs(model, params, x)
    spatial = [path for path in _finish_order(list(outputs))
               if len(getattr(outputs[path], "shape", ())) == 4]
    if not spatial:
        raise ArgumentError("grad_cam: the model has no layer with (N, h, w, channels) outputs; "
                            "Grad-CAM needs a convolutional model")
    return spatial[-1]


def empty_maps(maps: Mapping[str, Any]) -> dict[str, int]:
    """{method: how many images its map is 0 everywhere for}, for the methods with any."""
    counts = {name: int(np.sum(~np.any(np.asarray(m).reshape(len(m), -1) != 0, axis=1)))
              for name, m in maps.items()}
    return {name: count for name, count in counts.items() if count}


def empty_map_note(model: Layer, params: Any, x: jax.Array, classes: Any, method: str,
                   count: int, layer: str | None) -> str:
    """Why `method`'s map is 0 everywhere for `count` of the images, and what to do instead."""
    head = f"{method} is 0 everywhere for {count} of {len(x)} images"
    if method != "grad_cam":
        return f"{head}: the score does not change with those pixels' values there"
    outputs = layer_outputs(model, params, x)
    for path in reversed(_finish_order(list(outputs))):
        if path != layer and len(getattr(outputs[path], "shape", ())) == 4 and not empty_maps(
                {"grad_cam": grad_cam(model, params, x, classes, path)}):
            better = f"; at {path} it is not (--layer {path})"
            break
    else:
        better = "; no other layer gives maps that are not 0 either"
    return (f"{head} at {layer}: there the channel-weighted sum of the activations is negative "
            f"everywhere, and Grad-CAM's ReLU keeps only what is positive{better}")


def _finish_order(paths: list[str]) -> list[str]:
    """Layer paths listed in the order layers start, reordered to the order they finish: a
    container after the last of its inner layers."""
    inside = lambda q, p: q == p or q.startswith(p + "/")
    end = {p: max(i for i, q in enumerate(paths) if inside(q, p)) for p in paths}
    return sorted(paths, key=lambda p: (end[p], -p.count("/")))


def save_attributions(images: Any, maps: Mapping[str, Any], path: str | os.PathLike, *,
                      labels: Sequence[str] | None = None, title: str | None = None,
                      notes: Mapping[str, str] | None = None) -> pathlib.Path:
    """Writes a PNG grid: one row per image, the image and then one column per method.

    Each map becomes one value per pixel: saliency and smoothgrad as |gradient|, max over
    channels (as Simonyan et al. and Smilkov et al. draw them), the others summed over channels
    (their attributions add up), signed; (N, H, W) maps as they are. Each is divided by its
    largest |value|, so every cell shares one colour bar from -1 (blue, lowers the score) to 1
    (red, raises it). Images are shown stretched to their own min..max.

    Args:
        images: (N, H, W, C), the images explained.
        maps: `{method: maps}` as `attributions` returns, each (N, H, W, C) or (N, H, W).
        path: the PNG to write (atomically).
        labels: a row label per image (such as 'label 3').
        title: the figure's title.
        notes: a line under a method's column title, `{method: note}` (such as its deletion
            and insertion areas).
    """
    from difprog.viz._render import _save, _wrap

    images = np.asarray(images, np.float64)
    if images.ndim != 4 or not len(images):
        raise ShapeError(f"save_attributions: images must be (N, H, W, C), got shape "
                         f"{images.shape}")
    shown = {name: _per_pixel(name, np.asarray(m, np.float64), images.shape)
             for name, m in maps.items()}
    if labels is not None and len(labels) != len(images):
        raise ArgumentError(f"save_attributions: {len(labels)} labels for {len(images)} images")
    n, columns = len(images), len(shown) + 1
    width = 1.25 * columns + 1.0
    lines = _wrap(title, width, 9) if title else []
    figure, axes = figures.subplots(n, columns,
                                    figsize=(width, 1.25 * n + 0.5 + 0.18 * len(lines)),
                                    squeeze=False, layout="constrained")
    for i in range(n):
        _draw_image(axes[i, 0], images[i])
        if labels is not None:
            axes[i, 0].set_ylabel(str(labels[i]), fontsize=8)
        for j, values in enumerate(shown.values(), start=1):
            cell = axes[i, j].imshow(values[i], cmap="RdBu_r", vmin=-1, vmax=1,
                                     interpolation="nearest")
            if not np.any(values[i]):
                axes[i, j].text(0.5, 0.5, "all 0", ha="center", va="center", fontsize=7,
                                transform=axes[i, j].transAxes)
            _bare(axes[i, j])
    for j, name in enumerate(["image", *shown]):
        heading = name.replace("_", " ").replace("gradient times", "gradient x")
        if notes and name in notes:
            heading += f"\n{notes[name]}"
        axes[0, j].set_title(heading, fontsize=8)
    bar = figure.colorbar(cell, ax=axes, shrink=min(1.0, 3 / n + 0.3), aspect=30)
    bar.set_label("attribution / largest |attribution| of the map", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    if lines:
        figure.suptitle("\n".join(lines), fontsize=9)
    return _save(figure, path)


def _per_pixel(name: str, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(N, H, W) in [-1, 1]: the map reduced over channels and divided by its largest |value|."""
    if values.shape == shape:
        values = np.abs(values).max(-1) if name in ABSOLUTE else values.sum(-1)
    elif values.shape != shape[:3]:
        raise ShapeError(f"save_attributions: maps[{name!r}] has shape {values.shape}; expected "
                         f"the images' {shape} or {shape[:3]}")
    largest = np.abs(values).reshape(len(values), -1).max(1)
    return values / np.maximum(largest, 1e-30)[:, None, None]


def _draw_image(ax, image: np.ndarray) -> None:
    low, high = image.min(), image.max()
    scaled = (image - low) / (high - low) if high > low else np.zeros_like(image)
    shown = scaled if scaled.shape[-1] == 3 else scaled.mean(-1)  # RGB, else grey
    ax.imshow(shown, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    _bare(ax)


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
