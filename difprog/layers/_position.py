"""PositionEmbedding: a learned vector per position, added to a sequence of token vectors."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from difprog import arguments, gates
from difprog.errors import ShapeError
from difprog.layers._layer import Initializer, Input, Layer, Param
from difprog.layers._sequence import GPT2_INIT


class PositionEmbedding(Layer):
    """Adds a learned vector per position: x (..., seq, features) -> x + table[0:seq].

    The rows are looked up with the embedding gate (positions 0..seq-1), so their gradient is
    its hand-written scatter-add; seq may be anything up to `context`.

    Args:
        context: the longest sequence the layer takes (the table's rows).
        init: initialiser of the table (shape (context, features)); default normal(0.02), as
            GPT-2.
        name: the key of its params in a container (default `position_embedding_<i>`).

    Example:
        >>> model = layers.serial(layers.Embedding(100, 16), layers.PositionEmbedding(64))
        >>> params = model.init(jax.random.key(0), jnp.zeros((2, 64), jnp.int32))
        >>> model.apply(params, jnp.array([[1, 2, 3]])).shape
        (1, 3, 16)
    """

    context: int
    init_table: Initializer = dataclasses.field(default=GPT2_INIT, repr=False, kw_only=True)
    kind = "position_embedding"
    takes = Input(min_rank=2, text="an input of rank >= 2 (..., seq, features)")

    def __init__(self, context: int, *, init: Initializer = GPT2_INIT, name: str | None = None):
        object.__setattr__(self, "context",
                           arguments.positive_int("PositionEmbedding", "context", context))
        object.__setattr__(self, "init_table", init)
        object.__setattr__(self, "name", name)

    def params(self, x):
        if x.shape[-2] > self.context:
            raise ShapeError(f"has positions for sequences of up to {self.context} tokens, got "
                             f"an input of shape {tuple(x.shape)} ({x.shape[-2]} tokens); feed "
                             f"at most {self.context}, or build the model with a longer context")
        return {"table": Param((self.context, x.shape[-1]), self.init_table)}

    def forward(self, params, x, ctx):
        positions = jnp.arange(x.shape[-2], dtype=jnp.int32)
        return gates.add(x, gates.embedding(params["table"], positions))
