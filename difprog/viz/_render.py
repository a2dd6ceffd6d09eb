"""PNG pictures: labelled grids of images, upscaled with nearest neighbour, saliency overlays,
and curves.

Files are written atomically, so a crash never leaves half a PNG.
"""

from __future__ import annotations

import os
import pathlib
import textwrap
from collections.abc import Mapping, Sequence

import numpy as np

from difprog import figures


def save_grid(images: np.ndarray, path: str | os.PathLike, labels: Sequence[str] | None = None,
              value_range: tuple[float, float] = (0.0, 1.0), columns: int | None = None,
              title: str | None = None) -> pathlib.Path:
    """Writes images (N, H, W, C) as a labelled grid; each pixel becomes a visible block.

    The figure is sized to the grid (1.3 inches a cell, at least 4 inches wide) and a long title
    is wrapped at word boundaries to the figure's width, so nothing runs off the picture.
    """
    return _save(_grid_figure(images, labels, value_range, columns, title), path)


def _grid_figure(images: np.ndarray, labels: Sequence[str] | None,
                 value_range: tuple[float, float], columns: int | None, title: str | None):
    """The figure of `save_grid`, laid out; its `_suptitle` is the wrapped title."""
    images = np.asarray(images)
    n = len(images)
    columns = columns or min(n, 10)
    rows = -(-n // columns)
    label_lines = max((str(label).count("\n") + 1 for label in labels or []), default=0)
    width = max(_CELL * columns, _MIN_WIDTH)
    title_lines = _wrap(title, width, _TITLE_SIZE) if title else []
    height = rows * (_CELL + label_lines * _LABEL_SIZE * 1.4 / 72) + 0.2 + \
        len(title_lines) * _TITLE_SIZE * 1.45 / 72
    figure, axes = figures.subplots(rows, columns, figsize=(width, height), squeeze=False,
                                    layout="constrained")
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < n:
            ax.imshow(_displayable(images[i]), cmap="gray", vmin=value_range[0],
                      vmax=value_range[1], interpolation="nearest")
            if labels is not None:
                ax.set_title(str(labels[i]), fontsize=_LABEL_SIZE)
    if title_lines:
        figure.suptitle("\n".join(title_lines), fontsize=_TITLE_SIZE)
    return figure


_CELL, _MIN_WIDTH, _TITLE_SIZE, _LABEL_SIZE = 1.3, 4.0, 10, 9


def _wrap(text: str, width_inches: float, fontsize: float) -> list[str]:
    """The text's lines wrapped at spaces to fit `width_inches` (0.6 em a character: DejaVu
    Sans's widest average); a word longer than a line is broken."""
    characters = max(10, int((width_inches - 0.2) * 72 / (0.6 * fontsize)))
    lines = []
    for paragraph in text.splitlines() or [""]:
        lines += textwrap.wrap(paragraph, characters, break_on_hyphens=False) or [""]
    return lines


def save_saliency(images: np.ndarray, maps: np.ndarray, path: str | os.PathLike,
                  labels: Sequence[str] | None = None) -> pathlib.Path:
    """Writes each image above its saliency map (|gradient|, max over channels) overlaid on it."""
    images, maps = np.asarray(images), np.abs(np.asarray(maps)).max(axis=-1)
    n = len(images)
    figure, axes = figures.subplots(2, n, figsize=(1.3 * n, 3.0), squeeze=False)
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


def save_curves(x: Sequence[float], curves: Mapping[str, Sequence[float]],
                path: str | os.PathLike, *, xlabel: str, ylabel: str, title: str | None = None,
                ylim: tuple[float, float] | None = None) -> pathlib.Path:
    """Writes one line with markers per curve against x, each named in the legend."""
    return save_curve_panels(x, {"": curves}, path, xlabel=xlabel, ylabel=ylabel, title=title,
                             ylim=ylim)


def save_curve_panels(x: Sequence[float], panels: Mapping[str, Mapping[str, Sequence[float]]],
                      path: str | os.PathLike, *, xlabel: str, ylabel: str,
                      title: str | None = None, ylim: tuple[float, float] | None = None
                      ) -> pathlib.Path:
    """Writes panels side by side, `{panel title: {curve name: values}}`, each curve against x
    (markers where there are at most 40 points), named in each panel's legend."""
    figure, axes = figures.subplots(1, len(panels), figsize=(5.0 * len(panels), 3.6),
                                    squeeze=False, layout="constrained")
    for ax, (name, curves) in zip(axes[0], panels.items()):
        for label, values in curves.items():
            ax.plot(list(x), list(values), marker="o" if len(x) <= 40 else None,
                    markersize=3, label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=_LABEL_SIZE - 1)
        if name:
            ax.set_title(name, fontsize=_TITLE_SIZE)
    if title:
        width = 5.0 * len(panels) - 0.2
        figure.suptitle("\n".join(_wrap(title, width, _TITLE_SIZE)), fontsize=_TITLE_SIZE)
    return _save(figure, path)


def _displayable(image: np.ndarray) -> np.ndarray:
    return image[..., 0] if image.shape[-1] == 1 else np.clip(image, 0, 1)


def _save(figure, path: str | os.PathLike) -> pathlib.Path:
    return figures.save(figure, path, dpi=100)
