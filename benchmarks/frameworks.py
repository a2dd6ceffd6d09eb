"""The same three models, one SGD training step each, in every framework the benchmark compares.

Each builder takes the model spec and a batch (numpy) and returns a `Variant`: `step()` runs one
training step on its own state and returns the loss, `forward()` computes the loss only, and
`flops` and `temp_bytes` are XLA's FLOP count and temporary buffer size for the step where the
framework compiles through XLA. Models:
  mlp: 784-H-H-10, relu, softmax cross-entropy;
  cnn: 28x28x1 -> conv3x3 32 relu -> conv3x3 64 relu -> maxpool 2x2 -> dense 10 (SAME padding);
  gpt: a decoder-only transformer language model, GPT-2's layout as `difprog.models.gpt` builds
    it (token and learned position embeddings, pre-LayerNorm blocks of causal multi-head
    self-attention and a 4x GELU (erf) MLP, biases everywhere, a final LayerNorm, an untied
    head), mean next-token cross-entropy over (batch, context) int ids.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

LR = 0.01


class Spec(NamedTuple):
    model: str       # 'mlp', 'cnn' or 'gpt'
    hidden: int      # MLP width
    image: int       # CNN input side
    channels: tuple[int, int] = (32, 64)
    gpt: tuple[int, int, int, int, int] = (4, 256, 4, 256, 128)  # layers, features, heads,
    #                                                               context, vocab


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
    logits, y = logits.reshape(-1, logits.shape[-1]), y.reshape(-1)
    picked = jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - picked)


def difprog(spec: Spec, x: np.ndarray, y: np.ndarray) -> Variant:
    from difprog import gates, layers

    if spec.model == "gpt":
        model = _difprog_gpt(spec)
    elif spec.model == "mlp":
        model = layers.serial(layers.Dense(spec.hidden), layers.Relu(), layers.Dense(spec.hidden),
                              layers.Relu(), layers.Dense(10))
    else:
        model = layers.serial(layers.Conv2D(spec.channels[0], 3), layers.Relu(),
                              layers.Conv2D(spec.channels[1], 3), layers.Relu(),
                              layers.MaxPool2D(2), layers.Flatten(), layers.Dense(10))
    params = model.init(jax.random.key(0), x)
    loss = lambda p, x, y: gates.softmax_cross_entropy(model.apply(p, x), y)
    return _jax_variant(loss, params, jnp.asarray(x), jnp.asarray(y))


def _difprog_gpt(spec: Spec):
    from difprog import models

    layers, features, heads, context, vocab = spec.gpt
    return models.gpt(vocab, layers, heads, features, context)


def plain_jax(spec: Spec, x: np.ndarray, y: np.ndarray) -> Variant:
    if spec.model == "gpt":
        return _plain_gpt(spec, x, y)
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


def _plain_gpt(spec: Spec, x: np.ndarray, y: np.ndarray) -> Variant:
    """The transformer in jax.numpy with jax.grad, on the params difprog's gpt initialises
    (the same values): attention materialises its (seq x seq) probabilities."""
    heads = spec.gpt[2]

    def norm(p, h):
        mean = jnp.mean(h, -1, keepdims=True)
        var = jnp.mean((h - mean) ** 2, -1, keepdims=True)
        return (h - mean) * jax.lax.rsqrt(var + 1e-5) * p["scale"] + p["offset"]

    def attention(p, h):
        batch, seq, features = h.shape
        split = lambda t: t.reshape(batch, seq, heads, features // heads)
        q, k, v = (split(h @ p[f"w{n}"] + p[f"b{n}"]) for n in "qkv")
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(features // heads)
        scores = jnp.where(jnp.tril(jnp.ones((seq, seq), bool)), scores, -jnp.inf)
        mixed = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, -1), v)
        return mixed.reshape(batch, seq, features) @ p["wo"] + p["bo"]

    def logits(params, ids):
        h = params["embedding"]["table"][ids] + params["position"]["table"][:ids.shape[-1]]
        for i in range(spec.gpt[0]):
            a, m = params[f"block_{i}"]["attention"], params[f"block_{i}"]["mlp"]
            h = h + attention(a["multi_head_attention_0"], norm(a["layer_norm_0"], h))
            u = norm(m["layer_norm_0"], h) @ m["dense_0"]["w"] + m["dense_0"]["b"]
            h = h + jax.nn.gelu(u, approximate=False) @ m["dense_1"]["w"] + m["dense_1"]["b"]
        return norm(params["norm"], h) @ params["head"]["w"] + params["head"]["b"]

    params = _difprog_gpt(spec).init(jax.random.key(0), x)
    loss = lambda p, x, y: _cross_entropy(logits(p, x), y)
    return _jax_variant(loss, params, jnp.asarray(x), jnp.asarray(y))


def flax_nnx(spec: Spec, x: np.ndarray, y: np.ndarray) -> Variant:
    from flax import nnx

    rngs = nnx.Rngs(0)
    if spec.model == "gpt":
        Model = _flax_gpt(spec, rngs)
    elif spec.model == "mlp":
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


def _flax_gpt(spec: Spec, rngs):
    """The transformer as Flax NNX modules (nnx.MultiHeadAttention with a causal mask)."""
    from flax import nnx

    layers, features, heads, context, vocab = spec.gpt
    normal = nnx.initializers.normal(0.02)

    class Block(nnx.Module):
        def __init__(self):
            self.norm1 = nnx.LayerNorm(features, rngs=rngs)
            self.attention = nnx.MultiHeadAttention(heads, features, decode=False,
                                                    kernel_init=normal, rngs=rngs)
            self.norm2 = nnx.LayerNorm(features, rngs=rngs)
            self.up = nnx.Linear(features, 4 * features, kernel_init=normal, rngs=rngs)
            self.down = nnx.Linear(4 * features, features, kernel_init=normal, rngs=rngs)

        def __call__(self, h, mask):
            h = h + self.attention(self.norm1(h), mask=mask)
            return h + self.down(nnx.gelu(self.up(self.norm2(h)), approximate=False))

    class Model(nnx.Module):
        def __init__(self):
            self.embed = nnx.Embed(vocab, features, embedding_init=normal, rngs=rngs)
            self.position = nnx.Embed(context, features, embedding_init=normal, rngs=rngs)
            self.blocks = nnx.List([Block() for _ in range(layers)]) if hasattr(nnx, "List") \
                else [Block() for _ in range(layers)]
            self.norm = nnx.LayerNorm(features, rngs=rngs)
            self.head = nnx.Linear(features, vocab, kernel_init=normal, rngs=rngs)

        def __call__(self, ids):
            h = self.embed(ids) + self.position(jnp.arange(ids.shape[-1]))
            mask = nnx.make_causal_mask(ids)
            for block in self.blocks:
                h = block(h, mask)
            return self.head(self.norm(h))

    return Model


def equinox(spec: Spec, x: np.ndarray, y: np.ndarray) -> Variant:
    import equinox as eqx

    keys = jax.random.split(jax.random.key(0), 4)
    if spec.model == "gpt":
        model, logits = _equinox_gpt(spec)
    elif spec.model == "mlp":
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

    def temp_bytes():  # Equinox's Compiled wraps JAX's, which has the memory analysis
        compiled = step.lower(state["model"], x, y).compile().compiled
        return compiled.memory_analysis().temp_size_in_bytes

    return Variant(run_step, lambda: forward(state["model"], x, y), jax.block_until_ready,
                   temp_bytes=temp_bytes)


def _equinox_gpt(spec: Spec):
    """The transformer as Equinox modules (eqx.nn.MultiheadAttention with a causal mask), applied
    to one sequence and vmapped over the batch, as Equinox models are written."""
    import equinox as eqx

    layers, features, heads, context, vocab = spec.gpt
    keys = iter(jax.random.split(jax.random.key(0), 4 * layers + 4))

    class Block(eqx.Module):
        norm1: eqx.nn.LayerNorm
        attention: eqx.nn.MultiheadAttention
        norm2: eqx.nn.LayerNorm
        up: eqx.nn.Linear
        down: eqx.nn.Linear

        def __init__(self):
            self.norm1, self.norm2 = eqx.nn.LayerNorm(features), eqx.nn.LayerNorm(features)
            self.attention = eqx.nn.MultiheadAttention(
                heads, features, use_query_bias=True, use_key_bias=True, use_value_bias=True,
                use_output_bias=True, key=next(keys))
            self.up = eqx.nn.Linear(features, 4 * features, key=next(keys))
            self.down = eqx.nn.Linear(4 * features, features, key=next(keys))

        def __call__(self, h, mask):
            n = jax.vmap(self.norm1)(h)
            h = h + self.attention(n, n, n, mask=mask)
            u = jax.vmap(self.up)(jax.vmap(self.norm2)(h))
            return h + jax.vmap(self.down)(jax.nn.gelu(u, approximate=False))

    class Model(eqx.Module):
        embed: eqx.nn.Embedding
        position: eqx.nn.Embedding
        blocks: list
        norm: eqx.nn.LayerNorm
        head: eqx.nn.Linear

        def __init__(self):
            self.embed = eqx.nn.Embedding(vocab, features, key=next(keys))
            self.position = eqx.nn.Embedding(context, features, key=next(keys))
            self.blocks = [Block() for _ in range(layers)]
            self.norm = eqx.nn.LayerNorm(features)
            self.head = eqx.nn.Linear(features, vocab, key=next(keys))

        def __call__(self, ids):
            seq = ids.shape[0]
            h = jax.vmap(self.embed)(ids) + jax.vmap(self.position)(jnp.arange(seq))
            mask = jnp.tril(jnp.ones((seq, seq), bool))
            for block in self.blocks:
                h = block(h, mask)
            return jax.vmap(self.head)(jax.vmap(self.norm)(h))

    return Model(), lambda m, x: jax.vmap(m)(x)


def torch_eager(spec: Spec, x: np.ndarray, y: np.ndarray) -> Variant:
    import torch

    torch.manual_seed(0)
    nn = torch.nn
    if spec.model == "gpt":
        model = _torch_gpt(spec)
        inputs = torch.from_numpy(np.asarray(x).astype(np.int64))
    elif spec.model == "mlp":
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
    targets = torch.from_numpy(np.asarray(y).astype(np.int64)).reshape(-1)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    cross_entropy = nn.CrossEntropyLoss()
    loss_fn = lambda logits, t: cross_entropy(logits.reshape(-1, logits.shape[-1]), t)

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


def _torch_gpt(spec: Spec):
    """The transformer as torch modules, attention by F.scaled_dot_product_attention(is_causal)."""
    import torch

    nn, F = torch.nn, torch.nn.functional
    layers, features, heads, context, vocab = spec.gpt

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(features), nn.LayerNorm(features)
            self.qkv, self.out = nn.Linear(features, 3 * features), nn.Linear(features, features)
            self.up = nn.Linear(features, 4 * features)
            self.down = nn.Linear(4 * features, features)

        def forward(self, h):
            batch, seq, _ = h.shape
            q, k, v = (t.view(batch, seq, heads, -1).transpose(1, 2)
                       for t in self.qkv(self.norm1(h)).split(features, -1))
            mixed = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            h = h + self.out(mixed.transpose(1, 2).reshape(batch, seq, features))
            return h + self.down(F.gelu(self.up(self.norm2(h))))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.position = nn.Embedding(vocab, features), nn.Embedding(context,
                                                                                    features)
            self.blocks = nn.ModuleList(Block() for _ in range(layers))
            self.norm, self.head = nn.LayerNorm(features), nn.Linear(features, vocab)

        def forward(self, ids):
            h = self.embed(ids) + self.position(torch.arange(ids.shape[-1]))
            for block in self.blocks:
                h = block(h)
            return self.head(self.norm(h))

    return Model()


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
