"""loss.png: the training and validation loss of a language-model run against steps."""

from __future__ import annotations

import os
import pathlib
import textwrap

import numpy as np

from difprog import figures

__all__ = ["plot_losses"]


def plot_losses(history: list[dict], curve: list[float], path: str | os.PathLike,
                *, title: str = "") -> pathlib.Path:
    """loss.png: the training loss of every step (and its running mean) and the validation loss
    at each evaluation, in nats per token, against steps."""
    steps = np.arange(1, len(curve) + 1)
    window = max(1, len(curve) // 50)
    smooth = np.convolve(curve, np.ones(window) / window, mode="valid")
    figure, axes = figures.subplots(figsize=(7, 4.2), dpi=120)
    axes.plot(steps, curve, color="tab:blue", alpha=0.25, linewidth=0.8, label="train (step)")
    axes.plot(steps[window - 1:], smooth, color="tab:blue",
              label=f"train (mean of {window} steps)")
    axes.plot([h["step"] for h in history], [h["val_loss"] for h in history], "o-",
              color="tab:orange", label="validation (whole split)")
    axes.set(xlabel="step", ylabel="loss (nats per token)")
    axes.set_title("\n".join(textwrap.wrap(title, 64)), fontsize=10)
    axes.set_ylim(0, min(max(curve[:1] + [4.0]), 6.0))
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return figures.save(figure, path)
