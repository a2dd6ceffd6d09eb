"""matplotlib figures drawn without pyplot: difprog's pictures switch no backend and leave no
figure open, so they never change how the user's own notebook or script plots (after a difprog
picture, `plt.show()` and `%matplotlib inline` work as before). Each is written atomically."""

from __future__ import annotations

import os
import pathlib
from typing import Any

from difprog.files import atomic

__all__ = ["new", "save", "subplots"]


def new(*, figsize: tuple[float, float] | None = None, dpi: float | None = None,
        layout: str | None = None) -> Any:
    """A matplotlib Figure on an Agg canvas of its own, known to no pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, dpi=dpi, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None,
             dpi: float | None = None, layout: str | None = None, **options: Any
             ) -> tuple[Any, Any]:
    """`pyplot.subplots` without pyplot: (figure, axes); `options` as Figure.subplots'."""
    figure = new(figsize=figsize, dpi=dpi, layout=layout)
    return figure, figure.subplots(nrows, ncols, **options)


def save(figure: Any, path: str | os.PathLike, **options: Any) -> pathlib.Path:
    """Writes the figure to `path` as PNG, atomically; `options` as Figure.savefig's."""
    with atomic(path) as temporary:
        figure.savefig(temporary, format="png", **options)
    return pathlib.Path(path)
