"""health.png: the gradient flow (a heat map of layers by steps), the update/weight ratios with
CS231n's 1e-3 guide, the dead and saturated fractions, and the loss with the diagnoses marked."""

from __future__ import annotations

import os
import pathlib

import numpy as np

from difprog import figures
from difprog.monitor._monitor import as_arrays, ordered, summary

_LEGEND_MAX = 10  # more curves than this are coloured by depth instead of named


def _lines(ax, steps, paths, values, labels) -> None:
    """One curve per path; named in a legend, or coloured from bottom (dark) to top (light)."""
    import matplotlib

    colours = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, max(len(paths), 1)))
    for i, (path, row) in enumerate(zip(paths, values)):
        ax.plot(steps, row, marker="o" if len(steps) <= 40 else None, markersize=3,
                label=labels[path], color=None if len(paths) <= _LEGEND_MAX else colours[i])
    if paths and len(paths) <= _LEGEND_MAX:
        ax.legend(fontsize=7)
    elif paths:
        ax.text(0.01, 0.01, "colour: depth (dark = first layer)", transform=ax.transAxes,
                fontsize=7)
    ax.grid(alpha=0.3)
    ax.set_xlabel("step")


def _heat_map(figure, ax, health: dict) -> None:
    paths = ordered(health, "grad_norm")
    grads = as_arrays(health, "grad_norm", paths)
    with np.errstate(divide="ignore", invalid="ignore"):
        shown = np.log10(np.where(grads > 0, grads, np.nan))
    steps = health["steps"]
    if not np.isfinite(shown).any():
        shown = np.zeros((max(len(paths), 1), max(len(steps), 1)))  # nothing to colour yet
    image = ax.imshow(shown, aspect="auto",
                      cmap="magma", interpolation="nearest",
                      extent=(-0.5, shown.shape[1] - 0.5, shown.shape[0] - 0.5, -0.5))
    ax.set_yticks(range(len(paths)), [_short(health["labels"][p]) for p in paths], fontsize=7)
    ticks = np.unique(np.linspace(0, max(len(steps) - 1, 0), min(len(steps), 6)).astype(int))
    ax.set_xticks(ticks, [str(steps[t]) for t in ticks] if steps else [])
    ax.set_xlabel("step")
    ax.set_title("gradient flow: log10 of each weight's gradient norm", fontsize=10)
    figure.colorbar(image, ax=ax, label="log10 |grad|")


def _short(label: str, width: int = 40) -> str:
    return label if len(label) <= width else "\u2026" + label[-(width - 1):]


def _units(ax, health: dict) -> None:
    """Dead and saturated fractions with their thresholds; without ReLU, sigmoid or tanh layers
    (gelu, say), the activations' standard deviations."""
    steps, limits, labels = health["steps"], health["thresholds"], health["labels"]
    dead, saturated = ordered(health, "dead"), ordered(health, "saturated")
    if not dead and not saturated:
        paths = ordered(health, "std")
        _lines(ax, steps, paths, as_arrays(health, "std", paths), labels)
        ax.set_title("standard deviation of each activation layer's outputs", fontsize=10)
        return
    names = {**{p: f"{labels[p]} dead" for p in dead},
             **{p: f"{labels[p]} saturated" for p in saturated}}
    _lines(ax, steps, dead + saturated, np.concatenate(
        [as_arrays(health, "dead", dead), as_arrays(health, "saturated", saturated)]), names)
    for name, paths in (("dead", dead), ("saturated", saturated)):
        if paths:
            ax.axhline(limits[name], color="red", linestyle=":", linewidth=1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("fraction of dead ReLU units / saturated outputs (red: thresholds)",
                 fontsize=10)


def save_health(health: dict, path: str | os.PathLike) -> pathlib.Path:
    """Draws health.json's contents into one PNG of four panels."""
    steps, limits = health["steps"], health["thresholds"]
    figure, axes = figures.subplots(2, 2, figsize=(12, 8), layout="constrained")
    _heat_map(figure, axes[0, 0], health)
    ratio = axes[0, 1]
    paths = ordered(health, "update_ratio")
    values = as_arrays(health, "update_ratio", paths)
    _lines(ratio, steps, paths, values, health["labels"])
    if np.any(values[np.isfinite(values)] > 0):
        ratio.set_yscale("log")
    ratio.axhline(1e-3, color="green", linestyle="--", linewidth=1)
    ratio.axhline(limits["update_ratio"], color="red", linestyle=":", linewidth=1)
    ratio.set_title("update / weight norm (green: 1e-3, red: too large)", fontsize=10)
    _units(axes[1, 0], health)
    loss = axes[1, 1]
    loss.plot(steps, [np.nan if v is None else v for v in health["loss"]], color="black")
    for diagnosis in health["diagnoses"]:
        loss.axvline(diagnosis["step"], color="red", alpha=0.4, linewidth=1)
    loss.grid(alpha=0.3)
    loss.set_xlabel("step")
    loss.set_title(f"training loss ({summary(health)};\nred lines: where diagnoses start)",
                   fontsize=10)
    return figures.save(figure, path, dpi=100)
