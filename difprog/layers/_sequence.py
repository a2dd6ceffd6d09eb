"""Layers for sequences of tokens: Embedding (ids to vectors) and MultiHeadAttention."""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax.nn import initializers

from difprog import gates
from difprog.errors import ArgumentError, DtypeError
from difprog.layers._layer import Initializer, Leaf
from difprog.layers._trainable import _positive_int

GPT2_INIT = initializers.normal(0.02)


class Embedding(Leaf):
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

    kind = "embedding"
    expects = "integer ids of any shape"
    takes_floats = False

    def __init__(self, vocab: int, features: int, *, init: Initializer = GPT2_INIT,
                 name: str | None = None):
        super().__init__(name=name)
        self.vocab = _positive_int("Embedding", "vocab", vocab)
        self.features = _positive_int("Embedding", "features", features)
        self.table_init = init

    def _settings(self):
        return [str(self.vocab), str(self.features), *super()._settings()]

    def _check_input(self, x, path):
        if not jnp.issubdtype(x.dtype, jnp.integer):
            raise DtypeError(f"{self._label(path)} takes integer ids, got a {x.dtype} input of "
                             f"shape {tuple(x.shape)}; pass ids.astype(jnp.int32)")

    def _param_shapes(self, x_shape):
        return {"table": (self.vocab, self.features)}

    def _initializers(self, before_relu):
        return {"table": self.table_init}

    def _forward(self, params, x, run):
        return gates.embedding(params["table"], x)


class MultiHeadAttention(Leaf):
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

    kind = "multi_head_attention"
    expects = "an input of rank >= 2 (..., seq, features)"
    projections = ("q", "k", "v", "o")

    def __init__(self, heads: int, causal: bool = False, *, w_init: Initializer | None = None,
                 out_init: Initializer | None = None, name: str | None = None):
        super().__init__(name=name)
        self.heads = _positive_int("MultiHeadAttention", "heads", heads)
        if not isinstance(causal, bool):
            raise ArgumentError(f"MultiHeadAttention: causal must be True or False, got "
                                f"{causal!r}")
        self.causal = causal
        self.w_init = w_init or initializers.glorot_uniform()
        self.out_init = out_init or self.w_init

    def _settings(self):
        return [str(self.heads), *(["causal=True"] if self.causal else []),
                *super()._settings()]

    def _fits(self, shape):
        return len(shape) >= 2 and shape[-1] % self.heads == 0

    def _check_input(self, x, path):
        if len(x.shape) >= 2 and x.shape[-1] % self.heads:
            raise ArgumentError(f"{self._label(path)}: {self.heads} heads must divide the "
                                f"input's {x.shape[-1]} features (input shape {tuple(x.shape)})")
        super()._check_input(x, path)

    def _param_shapes(self, x_shape):
        features = x_shape[-1]
        return {**{f"w{p}": (features, features) for p in self.projections},
                **{f"b{p}": (features,) for p in self.projections}}

    def _initializers(self, before_relu):
        return {**{f"w{p}": self.w_init for p in "qkv"}, "wo": self.out_init,
                **{f"b{p}": initializers.zeros for p in self.projections}}

    def _forward(self, params, x, run):
        *lead, seq, features = x.shape
        heads_shape = (math.prod(lead), seq, self.heads, features // self.heads)

        def project(p, h):
            return gates.add(gates.matmul(h, params[f"w{p}"]), params[f"b{p}"])

        q, k, v = (gates.reshape(project(p, x), heads_shape) for p in "qkv")
        mixed = gates.attention(q, k, v, causal=self.causal)
        return project("o", gates.reshape(mixed, (*lead, seq, features)))
