"""Graph pictures (issue 16): sized to their content, at most about 1600 pixels wide (wide graphs
wrap into rows), a legend for the colours and the norm notation, and no text over another text
or over a node's box, measured with matplotlib's own renderer."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from difprog import gates, layers, models
from difprog.graph import _render, explain


def _neuron():
    with jax.enable_x64(True):
        return explain(lambda w0, x0, w1, x1, w2: 1 / (1 + jnp.exp(-(w0 * x0 + w1 * x1 + w2))),
                       2.0, -1.0, -3.0, -2.0, -3.0)


def _digits_cnn_by_layer():
    """What `difprog demo` draws as explain/cnn_layers.png (its CNN untrained here)."""
    model = models.cnn()
    x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype(np.float32)
    params = model.init(jax.random.key(0), x)
    labels = np.array([7, 6, 3, 7])
    return explain(lambda p, x: gates.softmax_cross_entropy(model.apply(p, x), labels), params,
                   x, group="layer")


def _residual_cnn():
    """A skip connection: its edge detours over the layers it skips."""
    model = layers.serial(layers.Conv2D(4, 3), layers.Relu(), layers.MaxPool2D(2),
                          layers.residual(layers.Dense(4), layers.Tanh()), layers.Flatten(),
                          layers.Dense(3))
    x = np.random.default_rng(0).uniform(size=(2, 4, 4, 1)).astype(np.float32)
    params = model.init(jax.random.key(0), x)
    return explain(lambda p, x: gates.softmax_cross_entropy(model.apply(p, x), np.array([0, 2])),
                   params, x)


GRAPHS = {"neuron": _neuron, "cnn_layers": _digits_cnn_by_layer,
          "residual_layers": lambda: _residual_cnn().grouped("layer"),
          "residual_gates": _residual_cnn,
          "square": lambda: explain(lambda x: x * x + x, 3.0)}


@pytest.fixture(scope="module")
def drawn():
    cache = {}

    def get(name):
        if name not in cache:
            explanation = GRAPHS[name]()
            cache[name] = explanation, _render.draw(explanation)
        return cache[name]

    return get


@pytest.mark.parametrize("name, widest, tallest", [("neuron", 1200, 450),
                                                  ("cnn_layers", 1600, 1000)])
def test_pictures_fit_a_laptop_screen(drawn, tmp_path, name, widest, tallest):
    """Before: the neuron was 2684x660 px and mostly white, the CNN 3542x522 with 8-pt labels."""
    explanation, _ = drawn(name)
    with Image.open(explanation.render(tmp_path / f"{name}.png")) as image:
        width, height = image.size
    assert 400 <= width <= widest and 150 <= height <= tallest, (width, height)
    svg = explanation.render(tmp_path / f"{name}.svg").read_text()
    assert svg.startswith("<?xml") and "</svg>" in svg


def test_wide_graphs_wrap_into_rows(drawn):
    _, drawing = drawn("cnn_layers")
    texts = [t.get_text() for t in drawing.labels]
    assert any(t.startswith("to row 2") for t in texts) and "from row 1" in texts
    assert drawing.figure.get_size_inches()[0] * _render.DPI <= _render.MAX_WIDTH


@pytest.mark.parametrize("name", list(GRAPHS))
def test_no_text_overlaps_another_or_a_box_and_all_lie_inside(drawn, name):
    _, drawing = drawn(name)
    boxes = drawing.boxes()  # padded boxes included: a node's box is its label's bbox patch
    texts = [t.get_text() for t in drawing.labels]
    assert len(boxes) == len(texts) > 5
    clashes = [(texts[i], texts[j]) for i, j in itertools.combinations(range(len(boxes)), 2)
               if boxes[i].overlaps(boxes[j])]
    assert not clashes, clashes[:5]
    page = drawing.figure.bbox
    outside = [t for t, b in zip(texts, boxes) if b.x0 < page.x0 or b.x1 > page.x1
               or b.y0 < page.y0 or b.y1 > page.y1]
    assert not outside, outside
    assert min(t.get_fontsize() for t in drawing.labels) >= 9  # 12.5 px at 100 dpi


def test_the_legend_explains_colours_and_norms(drawn):
    _, drawing = drawn("cnn_layers")
    colours = {t.get_text(): t.get_color() for t in drawing.labels}
    assert colours["green"] == _render._VALUE and colours["red"] == _render._GRADIENT
    texts = " ".join(colours)
    assert "forward pass" in texts and "backward pass" in texts and "L2 norm" in texts
    assert "[4,8,8,32] ‖·‖=" in texts  # a tensor: its shape and norm, named in the legend
    norm_colours = {t.get_color() for t in drawing.labels if "‖·‖=" in t.get_text()}
    assert {_render._VALUE, _render._GRADIENT} <= norm_colours
    _, scalars = drawn("neuron")
    assert "L2 norm" not in " ".join(t.get_text() for t in scalars.labels)


def test_a_value_read_twice_is_one_arrow_with_both_gradients(drawn):
    _, drawing = drawn("square")
    texts = [t.get_text() for t in drawing.labels]
    assert "3 + 3" in texts  # d(x * x)/dx through each of multiply's inputs
