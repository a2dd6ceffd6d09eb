"""What the interactive page (difprog.graph._html) should show, computed from an Explanation
independently of the page's payload; shared by tests/graph/test_html.py and test_html_browser.py."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from difprog import gates, layers
from difprog.graph import explain
from difprog.graph._html import number
from difprog.graph._table import is_key, summary


def short(value) -> str:
    """The one-line text the page writes for a value (its script's `short`)."""
    if value is None:
        return ""
    if isinstance(value, tuple):
        return "(" + ", ".join(short(v) for v in value) + ")"
    if is_key(value):
        return summary(value)
    a = np.asarray(value, np.float64)
    if a.ndim == 0:
        return number(a)
    if a.size <= 4:
        return "[" + ", ".join(number(v) for v in a.ravel()) + "]"
    return f"[{','.join(map(str, a.shape))}] \u2016\u00b7\u2016={number(np.linalg.norm(a.ravel()))}"


def steps(e) -> list[tuple[str, int | None]]:
    """The page's steps: the inputs, each computed node forward, each one backward, the end."""
    forward = [("forward", i) for i, n in enumerate(e.nodes) if n.steps]
    backward = [("backward", i) for i, n in reversed(list(enumerate(e.nodes)))
                if n.steps and any(g is not None for g in n.downstream)]
    return [("start", None), *forward, *backward, ("done", None)]


@functools.cache  # shared by both test modules
def _neuron():
    with jax.enable_x64(True):
        return explain(lambda w0, x0, w1, x1, w2: 1 / (1 + jnp.exp(-(w0 * x0 + w1 * x1 + w2))),
                       2.0, -1.0, -3.0, -2.0, -3.0)


@functools.cache
def _circuit():
    with jax.enable_x64(True):
        return explain(lambda x, y, z: (x + y) * z, -2.0, 5.0, -4.0)


@functools.cache
def _matmul():
    """D = W X with W (5, 10), X (10, 3), and L = sum(D * dD): dW = dD X^T, dX = W^T dD."""
    rng = np.random.default_rng(0)
    w, x = rng.standard_normal((5, 10)), rng.standard_normal((10, 3))
    d = rng.standard_normal((5, 3))
    with jax.enable_x64(True):
        return explain(lambda w, x: gates.sum(gates.matmul(w, x) * d), w, x)


@functools.cache
def _patterns():
    """relu over a vector routes the gradient to the positive entries; add distributes, mul
    swaps, max routes, a copy (a read twice) adds."""
    with jax.enable_x64(True):
        return explain(lambda v, a, b: gates.sum(gates.relu(v) * np.arange(1.0, 6.0))
                       + gates.maximum(a, b) * (a + b),
                       np.array([-1.0, 2.0, 0.0, -3.0, 4.0]), 3.0, -1.0)


@functools.cache
def _thirty():
    """A 32-node chain of scalar gates (two inputs, 30 operations)."""
    def f(x, y):
        for i in range(6):
            x = gates.tanh(x * y + 0.1 * (i + 1)) - 0.5 * x
        return x
    with jax.enable_x64(True):
        return explain(f, 0.3, 1.7)


@functools.cache
def _cnn():
    """A tiny CNN on two 8x8 images, one node per layer (the demo's digits CNN, smaller)."""
    model = layers.serial(layers.Conv2D(4, 3), layers.Relu(), layers.MaxPool2D(2),
                          layers.Flatten(), layers.Dense(10))
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 1)).astype(np.float32)
    params = model.init(jax.random.key(0), x)
    labels = np.array([7, 6])
    return explain(lambda p, x: gates.softmax_cross_entropy(model.apply(p, x), labels), params,
                   x, group="layer")


EXAMPLES = {"circuit": _circuit, "neuron": _neuron, "matmul": _matmul, "patterns": _patterns,
            "thirty": _thirty, "cnn_layers": _cnn}
