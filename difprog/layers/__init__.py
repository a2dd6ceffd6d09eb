"""Layers and models as pure functions over parameter pytrees.

Writing a layer takes only the names here: subclass `Layer` (a frozen dataclass of settings),
declare params with `Param(shape, init)` in `params(x)`, compute in `forward(params, x, ctx)`
(`ctx` a `Context`); a container lists `children()` (`keyed(*layers)` numbers them) and calls
them with `ctx(key, x)`. `Layer.run` returns an `Applied`; `walk` lists `Visit`s.

A layer is a pair of pure functions, `init(key, example_input) -> params` and
`apply(params, x, *, key=None, train=False) -> y`; every layer computes through difprog gates,
so the hand-written rules carry every gradient of every model. Shapes are inferred at init from
the example input.

Example:
    >>> from difprog import layers
    >>> model = layers.serial(layers.Conv2D(8, 3), layers.Relu(), layers.MaxPool2D(2),
    ...                       layers.Flatten(), layers.Dense(10))
    >>> params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
    >>> logits = jax.jit(model.apply)(params, jnp.zeros((32, 8, 8, 1)))
"""

from difprog.layers._augment import RandomFlip, RandomShift
from difprog.layers._batch_norm import (
    BatchNorm,
    merge_stats,
    stat_paths,
    trainable_mask,
)
from difprog.layers._combinators import (
    Parallel,
    Residual,
    Serial,
    parallel,
    residual,
    serial,
)
from difprog.layers._context import Context
from difprog.layers._layer import Applied, Initializer, Input, Layer, Param, keyed, label
from difprog.layers._memory import Remat, Repeat, remat, repeat
from difprog.layers._position import PositionEmbedding
from difprog.layers._sequence import Embedding, MultiHeadAttention
from difprog.layers._stateless import (
    Activation,
    AvgPool2D,
    Dropout,
    Flatten,
    Gelu,
    GlobalAvgPool,
    LeakyRelu,
    MaxPool2D,
    Relu,
    Sigmoid,
    Tanh,
    activation,
)
from difprog.layers._summary import summary
from difprog.layers._trainable import Conv2D, Dense, LayerNorm, RMSNorm
from difprog.layers._walk import Visit, walk

__all__ = [
    "Activation",
    "Applied",
    "Context",
    "Initializer",
    "Input",
    "Param",
    "Visit",
    "keyed",
    "label",
    "walk",
    "AvgPool2D",
    "BatchNorm",
    "Conv2D",
    "Dense",
    "Dropout",
    "Embedding",
    "Flatten",
    "Gelu",
    "GlobalAvgPool",
    "Layer",
    "LayerNorm",
    "LeakyRelu",
    "MaxPool2D",
    "MultiHeadAttention",
    "Parallel",
    "PositionEmbedding",
    "RandomFlip",
    "RandomShift",
    "RMSNorm",
    "Relu",
    "Remat",
    "Repeat",
    "Residual",
    "Serial",
    "Sigmoid",
    "Tanh",
    "activation",
    "merge_stats",
    "stat_paths",
    "parallel",
    "remat",
    "repeat",
    "residual",
    "serial",
    "summary",
    "trainable_mask",
]
