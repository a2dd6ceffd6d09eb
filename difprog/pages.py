"""Self-contained HTML pages (the explain page, the training-health dashboard): a template with
its title and its data filled in, safely, and written atomically.

The data goes in as JSON with every '<', '>' and '&' escaped, so no name in it can close the
script; the title is HTML-escaped; both are filled in one pass, so a marker inside them stays
text. The templates forbid the page any network access (a Content-Security-Policy).
"""

from __future__ import annotations

import html
import json
import os
import pathlib
import re
from typing import Any

from difprog.files import atomic

__all__ = ["fill", "write_page"]


def fill(template: str, title: str, data: Any) -> str:
    """The template with `{{TITLE}}` and `{{PAYLOAD}}` (the data as a JSON literal) filled in."""
    script = json.dumps(data, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    script = script.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    parts = {"TITLE": html.escape(title), "PAYLOAD": script}
    return re.sub(r"\{\{(TITLE|PAYLOAD)\}\}", lambda m: parts[m.group(1)], template)


def write_page(path: str | os.PathLike, text: str) -> pathlib.Path:
    """Writes a page's text to `path`, atomically."""
    with atomic(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return pathlib.Path(path)
