"""The same two models, one SGD training step each, in every framework the benchmark compares.

Each builder takes the model spec and a batch (numpy) and returns a `Variant`: `step()` runs one
training step on its own state and returns the loss, `forward()` computes the loss only, and
`flops` and `temp_bytes` are XLA's FLOP count and temporary buffer size for the step where the
framework compiles through XLA. Models:
  mlp: 784-H-H-10, relu, softmax cross-entropy;
  cnn: 28x28x1 -> conv3x3 32 relu -> conv3x3 64 relu -> maxpool 2x2 -> dense 10 (SAME padding).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

LR = 0.01


class Spec(NamedTuple):
    model: str       # 'mlp' or 'cnn'
    hidden: int      # MLP width
    image: int       # CNN input side
    channels: tuple[int, int] = (32, 64)


class Variant(NamedTuple):
    step: Callable[[], object]
    forward: Callable[[], object]
    block: Callable[[object], object]
    flops: Callable[[], float | None] = lambda: None
    temp_bytes: Callable[[], int | None] = lambda: None


def _jax_variant(loss, params, x, y) -> Variant:
    """A jitted SGD step and forward for a pure loss(params, x, y)."""
    step = jax.jit(lambda p, x, y: _sgd(loss, p, x, y), donate_argnums=0)
    forward = jax.jit(loss)
    state = {"params": params}

    def run_step():
        state["params"], value = step(state["params"], x, y)
        return value

    def compiled():
        return jax.jit(lambda p, x, y: _sgd(loss, p, x, y)).lower(state["params"], x, y).compile()

    def flops():
        cost = compiled().cost_analysis()
        return (cost[0] if isinstance(cost, list) else cost).get("flops")

    return Variant(run_step, lambda: forward(state["params"], x, y), jax.block_until_ready,
                   flops, lambda: compiled().memory_analysis().temp_size_in_bytes)


def _sgd(loss, params, x, y):
    value, grads = jax.value_and_grad(loss)(params, x, y)
    return jax.tree.map(lambda p, g: p - LR * g, params, grads), value


def _cross_entropy(logits, y):
    picked = jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - picked)


def difprog(spec: Spec, x: np.ndarray, y: np.ndarray) -> Variant:
    from difprog import gates, layers

    if spec.model == "mlp":
        model = layers.serial(layers.Dense(spec.hidden), layers.Relu(), layers.Dense(spec.hidden),
                              layers.Relu(), layers.Dense(10))
    else:
        model = layers.serial(layers.Conv2D(spec.channels[0], 3), layers.Relu(),
                              layers.Conv2D(spec.channels[1], 3), layers.Relu(),
                              layers.MaxPool2D(2), layers.Flatten(), layers.Dense(10))
    params = model.init(jax.random.key(0), x)
    loss = lambda p, x, y: gates.softmax_cross_entropy(model.apply(p, x), y)
    return _jax_variant(loss, params, jnp.asarray(x), jnp.asarray(y))


def plain_jax(spec: Spec, x: np.ndarray, y: np.ndarray) -> Variant:
    keys = iter(jax.random.split(jax.random.key(0), 8))
    dense = lambda m, n: {"w": jax.random.normal(next(keys), (m, n)) * np.sqrt(2 / m),
                          "b": jnp.zeros(n)}
    conv = lambda c, o: {"w": jax.random.normal(next(keys), (3, 3, c, o)) * np.sqrt(2 / (9 * c)),
                         "b": jnp.zeros(o)}
    if spec.model == "mlp":
        params = [dense(784, spec.hidden), dense(spec.hidden, spec.hidden), dense(spec.hidden, 10)]

        def logits(p, x):
            for layer in p[:-1]:
                x = jax.nn.relu(x @ layer["w"] + layer["b"])
            return x @ p[-1]["w"] + p[-1]["b"]
    else:
        c1, c2 = spec.channels
        flat = (spec.image // 2) ** 2 * c2
        params = [conv(1, c1), conv(c1, c2), dense(flat, 10)]

        def logits(p, x):
            for layer in p[:2]:
                x = jax.lax.conv_general_dilated(x, layer["w"], (1, 1), "SAME",
                                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
                x = jax.nn.relu(x + layer["b"])
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1),
                                      "VALID")
            return x.reshape(x.shape[0], -1) @ p[2]["w"] + p[2]["b"]

    loss = lambda p, x, y: _cross_entropy(logits(p, x), y)
    return _jax_variant(loss, params, jnp.asarray(x), jnp.asarray(y))


def flax_nnx(spec: Spec, x: np.ndarray, y: np.ndarray) -> Variant:
    from flax import nnx

    rngs = nnx.Rngs(0)
    if spec.model == "mlp":
        class Model(nnx.Module):
            def __init__(self):
                self.l1 = nnx.Linear(784, spec.hidden, rngs=rngs)
                self.l2 = nnx.Linear(spec.hidden, spec.hidden, rngs=rngs)
                self.l3 = nnx.Linear(spec.hidden, 10, rngs=rngs)

            def __call__(self, x):
                return self.l3(nnx.relu(self.l2(nnx.relu(self.l1(x)))))
    else:
        c1, c2 = spec.channels

        class Model(nnx.Module):
            def __init__(self):
                self.c1 = nnx.Conv(1, c1, (3, 3), rngs=rngs)
                self.c2 = nnx.Conv(c1, c2, (3, 3), rngs=rngs)
                self.out = nnx.Linear((spec.image // 2) ** 2 * c2, 10, rngs=rngs)

            def __call__(self, x):
                x = nnx.relu(self.c2(nnx.relu(self.c1(x))))
                x = nnx.max_pool(x, (2, 2), (2, 2))
                return self.out(x.reshape(x.shape[0], -1))

    graphdef, params = nnx.split(Model())
    loss = lambda p, x, y: _cross_entropy(nnx.merge(graphdef, p)(x), y)
    return _jax_variant(loss, params, jnp.asarray(x), jnp.asarray(y))


def equinox(spec: Spec, x: np.ndarray, y: np.ndarray) -> Variant:
    import equinox as eqx

    keys = jax.random.split(jax.random.key(0), 4)
    if spec.model == "mlp":
        model = eqx.nn.MLP(784, 10, spec.hidden, 2, activation=jax.nn.relu, key=keys[0])
        logits = lambda m, x: jax.vmap(m)(x)
    else:
        c1, c2 = spec.channels
        model = [eqx.nn.Conv2d(1, c1, 3, padding=1, key=keys[0]),
                 eqx.nn.Conv2d(c1, c2, 3, padding=1, key=keys[1]),
                 eqx.nn.MaxPool2d(2, 2),
                 eqx.nn.Linear((spec.image // 2) ** 2 * c2, 10, key=keys[2])]

        def one(m, image):
            h = jnp.transpose(image, (2, 0, 1))
            h = m[2](jax.nn.relu(m[1](jax.nn.relu(m[0](h)))))
            return m[3](h.reshape(-1))

        logits = lambda m, x: jax.vmap(lambda image: one(m, image))(x)

    loss = lambda m, x, y: _cross_entropy(logits(m, x), y)

    @eqx.filter_jit
    def step(m, x, y):
        value, grads = eqx.filter_value_and_grad(loss)(m, x, y)
        return jax.tree.map(lambda p, g: p - LR * g if eqx.is_array(p) else p, m, grads), value

    forward = eqx.filter_jit(loss)
    state = {"model": model}
    x, y = jnp.asarray(x), jnp.asarray(y)

    def run_step():
        state["model"], value = step(state["model"], x, y)
        return value

    return Variant(run_step, lambda: forward(state["model"], x, y), jax.block_until_ready)


def torch_eager(spec: Spec, x: np.ndarray, y: np.ndarray) -> Variant:
    import torch

    torch.manual_seed(0)
    nn = torch.nn
    if spec.model == "mlp":
        model = nn.Sequential(nn.Linear(784, spec.hidden), nn.ReLU(),
                              nn.Linear(spec.hidden, spec.hidden), nn.ReLU(),
                              nn.Linear(spec.hidden, 10))
        inputs = torch.from_numpy(np.asarray(x))
    else:
        c1, c2 = spec.channels
        model = nn.Sequential(nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(),
                              nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Linear((spec.image // 2) ** 2 * c2, 10))
        inputs = torch.from_numpy(np.ascontiguousarray(np.transpose(np.asarray(x), (0, 3, 1, 2))))
    targets = torch.from_numpy(np.asarray(y).astype(np.int64))
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        value = loss_fn(model(inputs), targets)
        value.backward()
        optimizer.step()
        return value

    def forward():
        with torch.no_grad():
            return loss_fn(model(inputs), targets)

    return Variant(step, forward, lambda value: float(value))


FRAMEWORKS: dict[str, Callable[[Spec, np.ndarray, np.ndarray], Variant]] = {
    "difprog": difprog, "plain JAX": plain_jax, "Flax NNX": flax_nnx, "Equinox": equinox,
    "PyTorch eager": torch_eager,
}


def available(name: str) -> bool:
    """Whether the framework's package is installed (torch, flax and equinox are optional)."""
    module = {"Flax NNX": "flax", "Equinox": "equinox", "PyTorch eager": "torch"}.get(name)
    if module is None:
        return True
    import importlib.util

    return importlib.util.find_spec(module) is not None
