"""health.html in headless Chromium: the diagnoses, the heat map (a hover shows a weight's numbers
at a step) and the curves equal health.json's; no console error, no request but its own; the
data's text stays text; a screenshot is not blank. And health.png is drawn."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from difprog import layers, monitor
from difprog.monitor._page import page
from difprog.pages import write_page
from difprog.train import TrainConfig, fit
from tests import browser as pages
from tests.conftest import digits_subset

HOSTILE = "</script><img src=x onerror=alert(1)>&amp;"


@functools.cache
def _health() -> dict:
    """A short run of relu, tanh and sigmoid layers whose update ratios are diagnosed."""
    model = layers.serial(layers.Flatten(), layers.Dense(16), layers.Relu(), layers.Dense(12),
                          layers.Tanh(), layers.Dense(8), layers.Sigmoid(), layers.Dense(10))
    strict = monitor.Thresholds(update_ratio=1e-3, patience=1)
    return fit(model, digits_subset("digits-small", 300, 100), TrainConfig(epochs=1),
               progress=False, monitor_every=2, thresholds=strict).health


def test_the_dashboard_shows_health_json(browser, tmp_path):
    health = dict(_health())
    health["labels"] = {**health["labels"], "dense_0/w": HOSTILE}
    assert health["diagnoses"]
    opened = pages.Page(browser, write_page(tmp_path / "health.html", page(health, HOSTILE)))
    try:
        p = opened.page
        assert opened.errors == [] and opened.dialogs == []
        assert opened.requests == [opened.url]
        rows = p.eval_on_selector_all("#diagnoses tbody tr", "rs => rs.map(r => [...r.cells]"
                                      ".map(c => c.textContent))")
        assert rows == [[d["kind"], d["layer"], str(d["step"]),
                         "the end" if d["until"] is None else str(d["until"]), d["message"]]
                        for d in health["diagnoses"]]
        cells = p.locator(".cell")
        assert cells.count() == len(health["weights"]) * len(health["steps"])
        assert p.locator("img").count() == 0 and HOSTILE in p.text_content("#flow")
        assert p.title() == HOSTILE
        for row, path in enumerate(health["weights"]):
            column = len(health["steps"]) - 1 - row
            p.locator(f'.cell[data-weight="{path}"]').nth(column).hover()
            shown = p.inner_text("#detail")
            assert f"at step {health['steps'][column]}" in shown
            for name, label in (("grad_norm", "gradient norm"), ("weight_norm", "weight norm"),
                                ("update_ratio", "update/weight")):
                value = float(shown.split(label + " ")[1].split()[0])
                assert value == pytest.approx(health[name][path][column], rel=1e-3)
        curves = {svg: p.locator(f"#{svg} path.curve").count()
                  for svg in ("ratio", "units", "loss")}
        assert curves == {"ratio": 4, "units": 3, "loss": 1}
        assert p.locator("#loss line.mark").count() == len(health["diagnoses"])
        pages.screenshot(opened, tmp_path, "health")
    finally:
        opened.close()


def test_a_run_without_diagnoses_or_relus_says_so(browser, tmp_path):
    """No diagnosis, and (as gpt's gelu) no ReLU, sigmoid or tanh: the outputs' deviations."""
    health = {**_health(), "diagnoses": [], "dead": {}, "saturated": {}}
    opened = pages.Page(browser, write_page(tmp_path / "health.html", page(health)))
    try:
        p = opened.page
        assert opened.errors == []
        assert p.is_visible("#nodiagnosis") and "0 diagnoses" in p.inner_text("#summary")
        assert p.inner_text("#unitsnote").startswith("No ReLU, sigmoid or tanh layer")
        names = p.eval_on_selector_all("#units path.curve", "ps => ps.map(p => p.dataset.name)")
        assert names == ["relu_0 (after dense_0)", "tanh_0 (after dense_1)",
                         "sigmoid_0 (after dense_2)"]
    finally:
        opened.close()


def test_the_files_of_a_monitored_run(tmp_path):
    from PIL import Image

    mon = monitor.Monitor(monitor.watch(layers.serial(layers.Flatten(), layers.Dense(4)),
                                        np.zeros((1, 8, 8, 1), np.float32)))
    written = monitor.write_health(tmp_path, mon)  # no record yet: still drawable
    assert [p.name for p in written] == list(monitor.FILES)
    with Image.open(tmp_path / "health.png") as image:
        assert image.size == (1200, 800)
