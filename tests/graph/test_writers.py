"""graph.write_explanations: the explanations `difprog demo` writes, from Python."""

from __future__ import annotations

import jax

from difprog import graph, models
from tests.conftest import digits_subset


def test_write_explanations_writes_the_neuron_and_the_loss_per_layer(tmp_path):
    dataset = digits_subset("digits", 8, 4)
    model = models.build("linear", dataset.num_classes)
    params = model.init(jax.random.key(0), dataset.x_train[:1])
    neuron = graph.write_explanations(model, params, dataset, tmp_path)
    assert isinstance(neuron, graph.Explanation) and neuron.agrees
    assert abs(float(neuron.value) - 0.7310585786) < 1e-9  # sigmoid(1), the lectures' value
    written = {p.name for p in (tmp_path / "explain").iterdir()}
    assert {"graph.svg", "graph.png", "graph.html", "table.txt", "flat_code.py",
            "cnn_layers.png", "cnn_layers.html"} <= written
    page = (tmp_path / "explain" / "cnn_layers.html").read_text()
    assert "the loss of the trained model on 4 test digits, one node per layer" in page
