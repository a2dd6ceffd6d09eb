"""Layers for sequences of tokens: Embedding (ids to vectors) and MultiHeadAttention."""

from __future__ import annotations

import dataclasses
import math

from jax.nn import initializers

from difprog import arguments, gates
from difprog.errors import ArgumentError
from difprog.layers._layer import Initializer, Input, Layer, Param

GPT2_INIT = initializers.normal(0.02)


class Embedding(Layer):
    """A table of `vocab` learned vectors: integer ids (any shape) -> (*ids.shape, features).

    Its gradient scatter-adds into the rows the ids picked (a repeated id accumulates); an id
    outside [0, vocab) is an error eagerly and gives NaN rows under jit.

    Args:
        vocab: the number of distinct ids.
        features: the size of each vector.
        init: initialiser of the table (shape (vocab, features)); default normal(0.02), as GPT-2.
        name: the key of its params in a container (default `embedding_<i>`).

    Example:
        >>> embed = layers.Embedding(100, 16)
        >>> params = embed.init(jax.random.key(0), jnp.zeros((2, 8), jnp.int32))
        >>> embed.apply(params, jnp.array([[1, 2, 3]])).shape
        (1, 3, 16)
    """

    vocab: int
    features: int
    init_table: Initializer = dataclasses.field(default=GPT2_INIT, repr=False, kw_only=True)
    kind, takes = "embedding", Input(dtype="integer", text="integer ids of any shape")

    def __init__(self, vocab: int, features: int, *, init: Initializer = GPT2_INIT,
                 name: str | None = None):
        for what, value in (("vocab", vocab), ("features", features)):
            object.__setattr__(self, what, arguments.positive_int("Embedding", what, value))
        object.__setattr__(self, "init_table", init)
        object.__setattr__(self, "name", name)

    def params(self, x):
        return {"table": Param((self.vocab, self.features), self.init_table)}

    def forward(self, params, x, ctx):
        return gates.embedding(params["table"], x)


class MultiHeadAttention(Layer):
    """Self-attention with `heads` heads over inputs (..., seq, features).

    q, k and v are affine projections of x (the matmul gate), split into heads of
    features // heads; the attention gate mixes the sequence (its backward recomputes the
    attention probabilities in blocks, so memory grows with seq, not seq squared); an affine
    projection maps the heads back to the features.

    Args:
        heads: the number of heads; it must divide the input's features.
        causal: each position attends only to itself and earlier positions (a language model).
        w_init: initialiser of the q, k and v (features, features) projections; default Glorot
            uniform. Biases start at zero.
        out_init: initialiser of the output projection; default `w_init` (a deep residual
            network scales it down, as GPT-2 does).
        name: the key of its params in a container (default `multi_head_attention_<i>`).

    Example:
        >>> mha = layers.MultiHeadAttention(4, causal=True)
        >>> params = mha.init(jax.random.key(0), jnp.zeros((2, 10, 32)))
        >>> mha.apply(params, jnp.ones((2, 10, 32))).shape
        (2, 10, 32)
    """

    heads: int
    causal: bool = False
    w_init: Initializer | None = dataclasses.field(default=None, repr=False, kw_only=True)
    out_init: Initializer | None = dataclasses.field(default=None, repr=False, kw_only=True)
    kind = "multi_head_attention"
    takes = Input(min_rank=2, text="an input of rank >= 2 (..., seq, features)")

    def __post_init__(self):
        arguments.positive_int("MultiHeadAttention", "heads", self.heads)
        arguments.flag("MultiHeadAttention", "causal", self.causal)

    def params(self, x):
        features = x.shape[-1]
        if features % self.heads:
            raise ArgumentError(f"{self.heads} heads must divide the input's {features} "
                                f"features (input shape {tuple(x.shape)})")
        w_init = self.w_init or initializers.glorot_uniform()
        inits = {"q": w_init, "k": w_init, "v": w_init, "o": self.out_init or w_init}
        return {**{f"w{p}": Param((features, features), init) for p, init in inits.items()},
                **{f"b{p}": Param((features,), initializers.zeros) for p in inits}}

    def forward(self, params, x, ctx):
        *lead, seq, features = x.shape
        heads_shape = (math.prod(lead), seq, self.heads, features // self.heads)

        def project(p, h):
            return gates.add(gates.matmul(h, params[f"w{p}"]), params[f"b{p}"])

        q, k, v = (gates.reshape(project(p, x), heads_shape) for p in "qkv")
        mixed = gates.attention(q, k, v, causal=self.causal)
        return project("o", gates.reshape(mixed, (*lead, seq, features)))
