"""Inline records in a browser, inside a page that stands in for a notebook and is hostile to
them: its styles hide every svg and button and its script owns the names the pages use. The
explain page and the health dashboard still draw and step in their frames, neither reaches the
notebook nor the other, and nothing asks for the network."""

from __future__ import annotations

import functools

import jax.numpy as jnp

import difprog
from difprog import gates, layers
from difprog.train import TrainConfig, fit
from tests import browser as pages
from tests.conftest import digits_subset

NOTEBOOK = """<!DOCTYPE html><html><head><meta charset="utf-8">
<style>svg, button { display: none !important } * { font-size: 40px !important }</style>
<script>window.difprogPage = "the notebook's"; var fmt = null;</script></head>
<body>OUTPUTS</body></html>"""

REACH = """() => { try { return parent.document.title; } catch (e) { return "isolated"; } }"""


@functools.cache
def _outputs() -> list[str]:
    neuron = difprog.explain(lambda x, y: 1 / (y + gates.exp(-x)), 2.0, 10.0)
    mlp = difprog.explain(lambda w, x: gates.sum(gates.relu(w * x)), jnp.ones(3), 2.0)
    model = layers.serial(layers.Flatten(), layers.Dense(8), layers.Relu(), layers.Dense(10))
    health = fit(model, digits_subset("digits-small", 64, 32), TrainConfig(epochs=1),
                 progress=False, monitor_every=1).health
    return [neuron._repr_html_(), mlp._repr_html_(), health._repr_html_()]


def test_inline_pages_work_in_a_hostile_notebook(browser, tmp_path):
    path = tmp_path / "notebook.html"
    cells = "".join(f'<div class="output">{shown}</div>' for shown in _outputs())
    path.write_text(NOTEBOOK.replace("OUTPUTS", cells))
    opened = pages.Page(browser, path)
    try:
        p = opened.page
        p.wait_for_load_state("load")
        frames = [f for f in p.frames if f != p.main_frame]
        assert len(frames) == 3
        first, second, dashboard = frames
        for frame in (first, second):
            assert frame.evaluate(REACH) == "isolated"
            assert frame.is_visible("#graph svg") and frame.is_visible("#next")
            total = frame.evaluate("difprogPage.steps()")
            assert total > 3 and frame.evaluate("difprogPage.step") == 0
        first.click("#next")
        first.click("#next")
        assert first.evaluate("difprogPage.step") == 2  # ...and the other page did not move
        assert second.evaluate("difprogPage.step") == 0
        assert dashboard.evaluate(REACH) == "isolated"
        assert dashboard.locator(".cell").count() > 0 and dashboard.is_visible("svg#flow")
        assert p.evaluate("window.difprogPage") == "the notebook's"
        assert opened.errors == [] and opened.dialogs == []
        assert [r for r in opened.requests if not r.startswith(("file:", "about:"))] == []
    finally:
        opened.close()
