"""Layers without params: pooling, Flatten, activations and Dropout."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from difprog import gates
from difprog.errors import ArgumentError
from difprog.gate import Gate
from difprog.gates import pair
from difprog.layers._layer import Leaf


class _Pool2D(Leaf):
    expects = "NHWC input of rank 4 (batch, height, width, channels)"
    pool: Gate

    def __init__(self, window: int | tuple[int, int] = 2, stride: int | tuple[int, int] | None
                 = None, padding: str | tuple = "VALID", *, name: str | None = None):
        super().__init__(name=name)
        try:
            self.window = pair(window, "window")
            self.stride = self.window if stride is None else pair(stride, "stride")
        except ValueError as error:
            raise ArgumentError(f"{type(self).__name__}: {error}") from None
        self.padding = padding if isinstance(padding, str) else tuple(map(tuple, padding))

    def _settings(self):
        stride = [] if self.stride == self.window else [f"stride={self.stride}"]
        padding = [] if self.padding == "VALID" else [f"padding={self.padding!r}"]
        return [str(self.window[0]) if self.window[0] == self.window[1] else str(self.window),
                *stride, *padding, *super()._settings()]

    def _fits(self, shape):
        return len(shape) == 4

    def _forward(self, params, x, run):
        return self.pool(x, window=self.window, stride=self.stride, padding=self.padding)


class MaxPool2D(_Pool2D):
    """The max of each window of an NHWC input; stride None means stride = window.

    Example:
        >>> layers.MaxPool2D(2).apply({}, jnp.ones((1, 8, 8, 3))).shape
        (1, 4, 4, 3)
    """

    kind = "max_pool2d"
    pool = gates.max_pool2d


class AvgPool2D(_Pool2D):
    """The mean of each window of an NHWC input; stride None means stride = window."""

    kind = "avg_pool2d"
    pool = gates.avg_pool2d


class Flatten(Leaf):
    """Keeps the batch axis and flattens the rest: (N, d1, d2, ...) -> (N, d1 d2 ...)."""

    kind = "flatten"
    expects = "an input of rank >= 1 (batch first)"

    def _fits(self, shape):
        return len(shape) >= 1

    def _forward(self, params, x, run):
        return gates.reshape(x, (x.shape[0], math.prod(x.shape[1:])))


class Activation(Leaf):
    """An elementwise gate as a layer, such as `Activation(gates.gelu)`."""

    kind = "activation"

    def __init__(self, gate: Gate, *, name: str | None = None, **settings):
        super().__init__(name=name)
        self.gate, self.gate_settings = gate, settings
        if name is None and type(self) is Activation:
            self.name = gate.name

    def _settings(self):
        own = [] if type(self) is not Activation else [f"gates.{self.gate.name}"]
        return [*own, *(f"{k}={v!r}" for k, v in self.gate_settings.items()),
                *super()._settings()]

    def _forward(self, params, x, run):
        return self.gate(x, **self.gate_settings)


class Relu(Activation):
    """relu(x) = max(x, 0), elementwise."""

    kind, relu_like = "relu", True

    def __init__(self, *, name: str | None = None):
        super().__init__(gates.relu, name=name)


class LeakyRelu(Activation):
    """leaky_relu(x) = x for x > 0, negative_slope x otherwise, elementwise."""

    kind, relu_like = "leaky_relu", True

    def __init__(self, negative_slope: float = 0.01, *, name: str | None = None):
        super().__init__(gates.leaky_relu, name=name, negative_slope=float(negative_slope))


class Tanh(Activation):
    """tanh(x), elementwise."""

    kind = "tanh"

    def __init__(self, *, name: str | None = None):
        super().__init__(gates.tanh, name=name)


class Sigmoid(Activation):
    """sigmoid(x) = 1 / (1 + exp(-x)), elementwise."""

    kind = "sigmoid"

    def __init__(self, *, name: str | None = None):
        super().__init__(gates.sigmoid, name=name)


class Dropout(Leaf):
    """Zeroes each entry with probability `rate` in training, scaling the rest by 1 / (1 - rate).

    In evaluation (`train=False`) it is the identity. In training it needs a PRNG key:
    `model.apply(params, x, key=jax.random.key(step), train=True)`.

    Args:
        rate: the probability of dropping an entry, in [0, 1).
    """

    kind = "dropout"

    def __init__(self, rate: float, *, name: str | None = None):
        super().__init__(name=name)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ArgumentError(f"Dropout: rate is the probability of dropping an entry and "
                                f"must lie in [0, 1), got {rate!r}")
        self.rate = float(rate)

    def _settings(self):
        return [str(self.rate), *super()._settings()]

    def _forward(self, params, x, run):
        if not run.train or self.rate == 0:
            return x
        if run.key is None:
            raise ArgumentError("needs a PRNG key in training (train=True) to drop entries at "
                                "random: call apply(params, x, key=jax.random.key(seed), "
                                "train=True), or apply with train=False to evaluate")
        keep = jax.random.bernoulli(run.key, 1 - self.rate, jnp.shape(x))
        return gates.multiply(x, keep.astype(x.dtype) / (1 - self.rate))
