"""PNG pictures: labelled grids of images, upscaled with nearest neighbour, and saliency overlays.

Files are written atomically, so a crash never leaves half a PNG.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import numpy as np

from difprog._files import atomic


def save_grid(images: np.ndarray, path: str | os.PathLike, labels: Sequence[str] | None = None,
              value_range: tuple[float, float] = (0.0, 1.0), columns: int | None = None,
              title: str | None = None) -> pathlib.Path:
    """Writes images (N, H, W, C) as a labelled grid; each pixel becomes a visible block."""
    plt = _pyplot()
    images = np.asarray(images)
    n = len(images)
    columns = columns or min(n, 10)
    rows = -(-n // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(1.3 * columns, 1.5 * rows + 0.4),
                                squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < n:
            ax.imshow(_displayable(images[i]), cmap="gray", vmin=value_range[0],
                      vmax=value_range[1], interpolation="nearest")
            if labels is not None:
                ax.set_title(str(labels[i]), fontsize=9)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return _save(figure, path)


def save_saliency(images: np.ndarray, maps: np.ndarray, path: str | os.PathLike,
                  labels: Sequence[str] | None = None) -> pathlib.Path:
    """Writes each image above its saliency map (|gradient|, max over channels) overlaid on it."""
    plt = _pyplot()
    images, maps = np.asarray(images), np.abs(np.asarray(maps)).max(axis=-1)
    n = len(images)
    figure, axes = plt.subplots(2, n, figsize=(1.3 * n, 3.0), squeeze=False)
    for i in range(n):
        for ax in axes[:, i]:
            ax.set_axis_off()
            ax.imshow(_displayable(images[i]), cmap="gray", interpolation="nearest")
        heat = maps[i] / max(float(maps[i].max()), 1e-12)
        axes[1, i].imshow(heat, cmap="hot", alpha=0.6, vmin=0, vmax=1, interpolation="nearest")
        if labels is not None:
            axes[0, i].set_title(str(labels[i]), fontsize=9)
    figure.suptitle("input (top) and saliency |d score / d input| (bottom)", fontsize=10)
    figure.tight_layout()
    return _save(figure, path)


def _displayable(image: np.ndarray) -> np.ndarray:
    return image[..., 0] if image.shape[-1] == 1 else np.clip(image, 0, 1)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: str | os.PathLike) -> pathlib.Path:
    try:
        with atomic(path) as temporary:
            figure.savefig(temporary, dpi=100, format="png")
    finally:
        _pyplot().close(figure)
    return pathlib.Path(path)
