"""Ready-made models for the command line: a small CNN and an MLP for 8x8 digit images."""

from __future__ import annotations

from collections.abc import Callable

from difprog import layers
from difprog.errors import ArgumentError


def cnn(num_classes: int = 10) -> layers.Serial:
    """Two 3x3 convolutions of 32 and 64 channels, 2x2 max pooling, a dense layer of 128, dropout."""
    return layers.serial(
        layers.Conv2D(32, 3), layers.Relu(),
        layers.Conv2D(64, 3), layers.Relu(), layers.MaxPool2D(2),
        layers.Flatten(), layers.Dropout(0.25),
        layers.Dense(128), layers.Relu(), layers.Dropout(0.25),
        layers.Dense(num_classes),
    )


def mlp(num_classes: int = 10) -> layers.Serial:
    """Flattened pixels through two hidden layers of 256 relu units."""
    return layers.serial(layers.Flatten(), layers.Dense(256), layers.Relu(), layers.Dense(256),
                         layers.Relu(), layers.Dense(num_classes))


def linear(num_classes: int = 10) -> layers.Serial:
    """A linear softmax classifier on the flattened pixels: the baseline to beat."""
    return layers.serial(layers.Flatten(), layers.Dense(num_classes))


MODELS: dict[str, Callable[[int], layers.Layer]] = {"cnn": cnn, "mlp": mlp, "linear": linear}


def build(name: str, num_classes: int = 10) -> layers.Layer:
    """A model by name (see `MODELS`)."""
    if name not in MODELS:
        raise ArgumentError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name](num_classes)
