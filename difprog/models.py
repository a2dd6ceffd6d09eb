"""Ready-made models: for the command line (`MODELS`) a small CNN, an MLP and a linear classifier
for images such as the digits, and `resnet`, a small residual network with BatchNorm for 28x28
images; `gpt`, a decoder-only transformer language model (`difprog train --model gpt`), and
`resnet18`, torchvision's ResNet-18 with its names (not a command-line model)."""

from __future__ import annotations

import math
from collections.abc import Callable

from jax.nn import initializers

from difprog import arguments, layers
from difprog import layers as _layers  # `gpt` has an argument named layers
from difprog._resnet import BasicBlock, resnet18
from difprog.errors import ArgumentError


def cnn(num_classes: int = 10) -> layers.Serial:
    """Two 3x3 convolutions of 32 and 64 channels, 2x2 max pooling, a dense layer of 128,
    dropout."""
    return layers.serial(
        layers.Conv2D(32, 3), layers.Relu(),
        layers.Conv2D(64, 3), layers.Relu(), layers.MaxPool2D(2),
        layers.Flatten(), layers.Dropout(0.25),
        layers.Dense(128), layers.Relu(), layers.Dropout(0.25),
        layers.Dense(num_classes),
    )


def resnet(num_classes: int = 10) -> layers.Serial:
    """A small residual network with BatchNorm, for 28x28 images such as Fashion-MNIST's.

    In training, random shifts of up to 2 pixels and left-right flips; a 3x3 convolution of 32
    channels, BatchNorm, relu, 2x2 max pooling; three residual BasicBlocks of 32, 64 and 128
    channels (the last two with stride 2 and a 1x1 downsample, as ResNet-18's), on 14x14, 7x7
    and 4x4 maps; global average pooling; a dense layer: 309,418 params with the BatchNorms'
    running statistics. On Fashion-MNIST, 30 epochs of batch 128 reach 93.82% test accuracy
    (benchmarks/fashion_mnist.py; 32, 64 and 64 channels reached 92.98% in 15 epochs).
    """
    return layers.serial(
        layers.RandomShift(2), layers.RandomFlip(),
        layers.Conv2D(32, 3, padding=1, use_bias=False), layers.BatchNorm(), layers.Relu(),
        layers.MaxPool2D(2), BasicBlock(32, name="block_0"),
        BasicBlock(64, 2, downsample=True, name="block_1"),
        BasicBlock(128, 2, downsample=True, name="block_2"),
        layers.GlobalAvgPool(), layers.Dense(num_classes),
    )


def mlp(num_classes: int = 10) -> layers.Serial:
    """Flattened pixels through two hidden layers of 256 relu units."""
    return layers.serial(layers.Flatten(), layers.Dense(256), layers.Relu(), layers.Dense(256),
                         layers.Relu(), layers.Dense(num_classes))


def linear(num_classes: int = 10) -> layers.Serial:
    """A linear softmax classifier on the flattened pixels: the baseline to beat."""
    return layers.serial(layers.Flatten(), layers.Dense(num_classes))


def gpt(vocab: int, layers: int = 4, heads: int = 4, features: int = 128, context: int = 128,
        *, mlp_ratio: float = 4, norm: str = "layer", dropout: float = 0.0,
        gelu_approximate: bool = False) -> _layers.Serial:
    """A decoder-only transformer (GPT-2's layout) mapping token ids (..., seq) to next-token logits
    (..., seq, vocab), every gradient through difprog gates.

    Token embedding plus a learned position embedding; `layers` pre-norm blocks, each
    `x + attention(norm(x))` (causal multi-head self-attention) then `x + mlp(norm(x))` (Dense
    mlp_ratio * features, Gelu, Dense features); a final norm; an output projection Dense(vocab).
    GPT-2's initialisation: weights normal(0.02), the output projections of the attention and
    the MLP normal(0.02 / sqrt(2 layers)) so the residual stream's variance does not grow with
    depth, biases zero.

    The output projection is not tied to the token embedding: difprog layers own their params
    and cannot share one between two layers.

    Args:
        vocab: the number of token ids (`difprog.data.text(...).vocab_size`).
        layers: the number of transformer blocks.
        heads: attention heads per block; it must divide features.
        features: the width of the residual stream.
        context: the longest sequence the model takes (the position table's rows).
        mlp_ratio: the MLP's hidden width as a multiple of features.
        norm: 'layer' (LayerNorm, as GPT-2) or 'rms' (RMSNorm, as LLaMA).
        dropout: the rate of Dropout after the embeddings and on each block's branch output,
            before the residual sum (0: none; it acts with `key=` and `train=True` only).
        gelu_approximate: the tanh form of gelu (GPT-2's) instead of the exact one.

    Params are keyed `embedding`, `position`, `block_<i>/attention/...`, `block_<i>/mlp/...`,
    `norm`, `head`; `layers.summary(model, ids)` lists them.

    Example:
        >>> model = gpt(vocab=100, layers=2, heads=2, features=32, context=16)
        >>> params = model.init(jax.random.key(0), jnp.zeros((1, 16), jnp.int32))
        >>> model.apply(params, jnp.zeros((4, 16), jnp.int32)).shape
        (4, 16, 100)
    """
    _check_gpt(vocab, layers, heads, features, context, mlp_ratio, norm, gelu_approximate)
    drop = (_layers.Dropout(dropout),) if dropout else ()  # Dropout checks the rate
    weights = initializers.normal(0.02)
    out_weights = initializers.normal(0.02 / math.sqrt(2 * layers))
    hidden, make_norm = round(mlp_ratio * features), _NORMS[norm]
    blocks = (_gpt_block(i, heads, features, hidden, make_norm, drop, gelu_approximate, weights,
                         out_weights) for i in range(layers))
    return _layers.serial(
        _layers.Embedding(vocab, features, name="embedding"),
        _layers.PositionEmbedding(context, name="position"), *drop, *blocks,
        make_norm(name="norm"), _layers.Dense(vocab, w_init=weights, name="head"))


def _gpt_block(i: int, heads: int, features: int, hidden: int, make_norm: Callable,
               drop: tuple, gelu_approximate: bool, weights: Callable,
               out_weights: Callable) -> _layers.Serial:
    """Block i: `x + attention(norm(x))`, then `x + mlp(norm(x))`, dropout on each branch."""
    attention = _layers.residual(
        make_norm(), _layers.MultiHeadAttention(heads, causal=True, w_init=weights,
                                                out_init=out_weights),
        *drop, name="attention")
    mlp = _layers.residual(
        make_norm(), _layers.Dense(hidden, w_init=weights),
        _layers.Gelu(approximate=gelu_approximate),
        _layers.Dense(features, w_init=out_weights), *drop, name="mlp")
    return _layers.serial(attention, mlp, name=f"block_{i}")


def _check_gpt(vocab, layers, heads, features, context, mlp_ratio, norm, gelu_approximate):
    for what, value in (("vocab", vocab), ("layers", layers), ("heads", heads),
                        ("features", features), ("context", context)):
        arguments.positive_int("gpt", what, value)
    if features % heads:
        raise ArgumentError(f"gpt: heads={heads} must divide features={features}")
    if not arguments.is_real(mlp_ratio) or not math.isfinite(mlp_ratio) or round(
            mlp_ratio * features) < 1:
        raise ArgumentError(f"gpt: mlp_ratio must be a positive number (at least 1 / features), "
                            f"got {mlp_ratio!r}")
    arguments.one_of("gpt", "norm", norm, sorted(_NORMS))
    arguments.flag("gpt", "gelu_approximate", gelu_approximate)


_NORMS = {"layer": _layers.LayerNorm, "rms": _layers.RMSNorm}


__all__ = ["MODELS", "build", "cnn", "gpt", "linear", "mlp", "resnet", "resnet18"]


MODELS: dict[str, Callable[[int], layers.Layer]] = {"cnn": cnn, "mlp": mlp, "linear": linear,
                                                    "resnet": resnet}


def build(name: str, num_classes: int = 10) -> layers.Layer:
    """A model by name (see `MODELS`)."""
    if not isinstance(name, str) or name not in MODELS:
        raise ArgumentError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name](num_classes)
