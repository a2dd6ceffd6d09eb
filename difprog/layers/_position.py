"""PositionEmbedding: a learned vector per position, added to a sequence of token vectors."""

from __future__ import annotations

import jax.numpy as jnp

from difprog import gates
from difprog.errors import ShapeError
from difprog.layers._layer import Initializer, Leaf
from difprog.layers._sequence import GPT2_INIT
from difprog.layers._trainable import _positive_int


class PositionEmbedding(Leaf):
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

    kind = "position_embedding"
    expects = "an input of rank >= 2 (..., seq, features)"

    def __init__(self, context: int, *, init: Initializer = GPT2_INIT, name: str | None = None):
        super().__init__(name=name)
        self.context = _positive_int("PositionEmbedding", "context", context)
        self.table_init = init

    def _settings(self):
        return [str(self.context), *super()._settings()]

    def _fits(self, shape):
        return len(shape) >= 2

    def _check_input(self, x, path):
        super()._check_input(x, path)
        if x.shape[-2] > self.context:
            raise ShapeError(f"{self._label(path)} has positions for sequences of up to "
                             f"{self.context} tokens, got an input of shape {tuple(x.shape)} "
                             f"({x.shape[-2]} tokens); feed at most {self.context}, or build "
                             f"the model with a longer context")

    def _param_shapes(self, x_shape):
        return {"table": (self.context, x_shape[-1])}

    def _initializers(self, before_relu):
        return {"table": self.table_init}

    def _forward(self, params, x, run):
        positions = jnp.arange(x.shape[-2], dtype=jnp.int32)
        return gates.add(x, gates.embedding(params["table"], positions))
