"""The explanations `difprog demo` writes, from Python."""

from __future__ import annotations

import os
import pathlib

import jax
import jax.numpy as jnp

from difprog import gates
from difprog.graph._explain import Explanation, explain


def write_explanations(model, params, dataset, out: str | os.PathLike) -> Explanation:
    """The sigmoid neuron of the lectures and a trained model's loss, explained, into
    `out`/explain/ as `difprog demo` writes them.

    The neuron 1 / (1 + exp(-(w0 x0 + w1 x1 + w2))) at w0=2, x0=-1, w1=-3, x1=-2, w2=-3, with
    every file of `Explanation.save` (graph.svg, graph.png, graph.html, table.txt,
    flat_code.py); and the softmax cross-entropy of `model` on the first four test images of
    `dataset`, one node per layer: cnn_layers.png and the page cnn_layers.html.

    Returns:
        The neuron's Explanation (printing it gives its table).
    """
    out = pathlib.Path(out)
    with jax.enable_x64(True):
        neuron = explain(lambda w0, x0, w1, x1, w2: 1 / (1 + jnp.exp(-(w0 * x0 + w1 * x1 + w2))),
                         2.0, -1.0, -3.0, -2.0, -3.0)
        neuron.save(out / "explain")
    x, y = dataset.x_test[:4], dataset.y_test[:4]
    cnn = explain(lambda params, x: gates.softmax_cross_entropy(model.apply(params, x), y),
                  params, x, group="layer")
    cnn.render(out / "explain" / "cnn_layers.png")
    cnn.to_html(out / "explain" / "cnn_layers.html",
                title=f"difprog demo: the loss of the trained model on {len(y)} test digits, "
                      f"one node per layer")
    return neuron
