"""Showing difprog's pages, pictures and tables inline in a notebook (Jupyter, JupyterLab, VS Code,
Colab): the HTML that the records' `_repr_html_` methods return.

A page (the explain stepper, the training-health dashboard) goes into an `<iframe srcdoc>` with
`sandbox="allow-scripts"`: its script runs, but in an opaque origin of its own, so neither the
page nor the notebook can reach the other's document, script or styles, and two pages in one
notebook cannot meet. A picture is a PNG inline as a data URL; a text table is escaped into a
`<pre>`. Nothing refers to a file or the network, so a saved notebook shows them anywhere.
"""

from __future__ import annotations

import base64
import html
import pathlib
import tempfile
from collections.abc import Callable

__all__ = ["frame", "picture", "png", "text"]

_BORDER = "border: 1px solid #d0d7de; border-radius: 6px"


def frame(page: str, *, height: int, title: str) -> str:
    """A self-contained page, isolated in a sandboxed iframe `height` pixels tall and as wide as
    the notebook's output."""
    return (f'<iframe srcdoc="{html.escape(page, quote=True)}" sandbox="allow-scripts" '
            f'title="{html.escape(title, quote=True)}" '
            f'style="width: 100%; height: {int(height)}px; {_BORDER}"></iframe>')


def picture(data: bytes, *, alt: str) -> str:
    """A PNG, inline, at most as wide as the notebook's output."""
    source = base64.b64encode(data).decode("ascii")
    return (f'<img src="data:image/png;base64,{source}" alt="{html.escape(alt, quote=True)}" '
            f'style="max-width: 100%">')


def png(draw: Callable[[pathlib.Path], object]) -> bytes:
    """The bytes of the PNG that `draw(path)` writes (difprog's `save_*` functions), drawn into
    a temporary directory that is removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="difprog-inline-") as directory:
        path = pathlib.Path(directory) / "picture.png"
        draw(path)
        return path.read_bytes()


def text(record: object) -> str:
    """The record's `str` (its text table), escaped, in a fixed-width block: the `_repr_html_` of
    records that print as tables (`_repr_html_ = inline.text`)."""
    return f"<pre>{html.escape(str(record))}</pre>"
