"""Records shown inline in a notebook (`_repr_html_`): the explain page and the health dashboard
as sandboxed iframes holding exactly the pages written to disk; visualisations as PNGs; the
tables of checks and sanity checks escaped into <pre>."""

from __future__ import annotations

import base64
import html
import json
import re

import jax
import jax.numpy as jnp
import numpy as np

import difprog
from difprog import gates, inline, layers, monitor, viz
from difprog.graph._html import page as explain_page
from difprog.monitor._page import page as health_page
from difprog.train import TrainConfig, fit
from tests.conftest import digits_subset

IFRAME = re.compile(r'<iframe srcdoc="([^"]*)" sandbox="allow-scripts" title="[^"]*" '
                    r'style="[^"]*"></iframe>', re.S)


def _framed(shown: str) -> str:
    """The page inside an inline frame, checked to be alone and sandboxed without the notebook's
    origin (no allow-same-origin)."""
    match = IFRAME.fullmatch(shown)
    assert match, shown[:200]
    return html.unescape(match.group(1))


def test_an_explanation_shows_its_page_in_a_sandboxed_frame():
    e = difprog.explain(lambda x, y: 1 / (y + gates.exp(-x)), 2.0, 10.0)
    assert _framed(e._repr_html_()) == explain_page(e)


def test_a_hostile_page_cannot_end_its_frame():
    shown = inline.frame('"></iframe><script>alert(1)</script>', height=10, title='"><b>')
    assert shown.count("<iframe") == 1 and "<script>" not in shown and "<b>" not in shown
    assert _framed(shown) == '"></iframe><script>alert(1)</script>'


def test_a_health_record_is_health_json_and_shows_the_dashboard():
    model = layers.serial(layers.Flatten(), layers.Dense(8), layers.Relu(), layers.Dense(10))
    health = fit(model, digits_subset("digits-small", 64, 32), TrainConfig(epochs=1),
                 progress=False, monitor_every=1).health
    assert isinstance(health, monitor.Health) and isinstance(health, dict)
    assert json.loads(json.dumps(health)) == health and health["steps"]
    assert _framed(health._repr_html_()) == health_page(health)


def test_a_visualisation_shows_its_images_as_a_png():
    images = np.linspace(0, 1, 2 * 4 * 4).reshape(2, 4, 4, 1)
    shown = viz.Visualization(images, np.array([[1.0, 2.0]]), "class 3")._repr_html_()
    assert _png(shown, "class 3").startswith(b"\x89PNG\r\n\x1a\n")
    curves = viz.DeletionInsertion(np.linspace(0, 1, 3), np.ones((2, 3)), np.zeros((2, 3)))
    assert _png(curves._repr_html_(), "deletion").startswith(b"\x89PNG\r\n\x1a\n")


def test_tables_show_escaped_in_pre():
    report = difprog.check_gate(gates.tanh, jnp.linspace(-2.0, 2.0, 5))
    assert report._repr_html_() == f"<pre>{html.escape(str(report))}</pre>"
    completeness = viz.Completeness((64,), (0.5,), (0.75,), 0.01)
    assert completeness._repr_html_() == f"<pre>{html.escape(str(completeness))}</pre>"
    assert inline.text("<a & b>") == "<pre>&lt;a &amp; b&gt;</pre>"


def _png(shown: str, alt: str) -> bytes:
    source = re.fullmatch(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]*)" '
                          r'style="max-width: 100%">', shown)
    assert source and alt in source.group(2), shown[:200]
    return base64.b64decode(source.group(1))


def test_attribution_maps_show_over_their_images_and_stay_a_dict_and_a_pytree():
    model = layers.serial(layers.Flatten(), layers.Dense(10))
    x = jnp.linspace(0.0, 1.0, 2 * 4 * 4).reshape(2, 4, 4, 1)
    params = model.init(jax.random.key(0), x)
    maps = viz.attributions(model, params, x, [1, 2], ("saliency", "gradient_times_input"))
    assert isinstance(maps, viz.Attributions) and list(maps) == ["saliency",
                                                                 "gradient_times_input"]
    assert maps.images is x and _png(maps._repr_html_(), "saliency").startswith(b"\x89PNG")
    assert len(jax.tree.leaves(maps)) == 2  # the maps alone, not the images
    doubled = jax.jit(lambda m: jax.tree.map(lambda a: 2 * a, m))(maps)
    assert isinstance(doubled, viz.Attributions) and doubled.images is x
    assert list(doubled) == list(maps)
    np.testing.assert_allclose(doubled["saliency"], 2 * maps["saliency"])
    assert viz.Attributions({"saliency": x})._repr_html_() is None  # no images: the dict
