"""Layers without params: pooling (windows, and GlobalAvgPool), Flatten, activations (one line
each with `activation`) and Dropout."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from difprog import arguments, gates
from difprog.errors import ArgumentError, DtypeError
from difprog.gate import Gate
from difprog.gates import layer_padding, pair
from difprog.layers._layer import Input, Layer
from difprog.layers._trainable import NHWC


class _Pool2D(Layer):
    window: int | tuple[int, int] = 2
    stride: int | tuple[int, int] | None = None
    padding: str | int | tuple = "VALID"
    dilation: int | tuple[int, int] = dataclasses.field(default=1, kw_only=True)
    ceil_mode: bool = dataclasses.field(default=False, kw_only=True)
    takes = NHWC
    pool: ClassVar[Gate]

    def __post_init__(self):
        layer = type(self).__name__
        try:
            object.__setattr__(self, "window", pair(self.window, "window"))
            stride = self.window if self.stride is None else pair(self.stride, "stride")
            object.__setattr__(self, "stride", stride)
            object.__setattr__(self, "dilation", pair(self.dilation, "dilation"))
        except ValueError as error:
            raise ArgumentError(f"{layer}: {error}") from None
        object.__setattr__(self, "padding", layer_padding(layer, self.padding))
        arguments.flag(layer, "ceil_mode", self.ceil_mode)

    def __repr__(self):
        stride = [] if self.stride == self.window else [f"stride={self.stride}"]
        padding = [] if self.padding == "VALID" else [f"padding={self.padding!r}"]
        defaults = {"dilation": (1, 1), "ceil_mode": False, "count_include_pad": True}
        options = [f"{k}={v}" for k, v in self._options().items() if v != defaults[k]]
        named = [] if self.name is None else [f"name={self.name!r}"]
        window = str(self.window[0]) if self.window[0] == self.window[1] else str(self.window)
        return f"{type(self).__name__}({', '.join([window, *stride, *padding, *options, *named])})"

    def _options(self):
        return {"dilation": self.dilation, "ceil_mode": self.ceil_mode}

    def forward(self, params, x, ctx):
        return type(self).pool(x, window=self.window, stride=self.stride, padding=self.padding,
                               **self._options())


class MaxPool2D(_Pool2D):
    """The max of each window of an NHWC input, as torch.nn.MaxPool2d; stride None means
    stride = window. padding: 'VALID', 'SAME', an int, (ph, pw) or ((top, bottom), (left,
    right)), padded with -inf; dilation spaces the window's points; ceil_mode adds a last
    window that starts inside the input or the top/left padding. Padding that leaves a window
    with no input point is refused (torch refuses padding over half the window).

    Example:
        >>> layers.MaxPool2D(2).apply({}, jnp.ones((1, 8, 8, 3))).shape
        (1, 4, 4, 3)
    """

    kind, pool = "max_pool2d", gates.max_pool2d


class AvgPool2D(_Pool2D):
    """The mean of each window of an NHWC input, as torch.nn.AvgPool2d; stride None means
    stride = window. padding, dilation and ceil_mode as in MaxPool2D (padding counts as zeros);
    count_include_pad=True divides by the window's points inside the padded input (torch's
    default), False by those inside the input; ceil_mode's overhang never counts.
    """

    count_include_pad: bool = dataclasses.field(default=True, kw_only=True)
    kind, pool = "avg_pool2d", gates.avg_pool2d

    def __post_init__(self):
        super().__post_init__()
        arguments.flag("AvgPool2D", "count_include_pad", self.count_include_pad)

    def _options(self):
        return {**super()._options(), "count_include_pad": self.count_include_pad}


class GlobalAvgPool(Layer):
    """The mean over height and width of an NHWC input: (N, H, W, C) -> (N, C), through the mean
    gate (torch's `AdaptiveAvgPool2d(1)` followed by `flatten(1)`).

    Example:
        >>> layers.GlobalAvgPool().apply({}, jnp.ones((2, 7, 7, 512))).shape
        (2, 512)
    """

    kind, takes = "global_avg_pool", NHWC

    def forward(self, params, x, ctx):
        return gates.mean(x, (1, 2))


class Flatten(Layer):
    """Keeps the batch axis and flattens the rest: (N, d1, d2, ...) -> (N, d1 d2 ...)."""

    kind, takes = "flatten", Input(min_rank=1, text="an input of rank >= 1 (batch first)")

    def forward(self, params, x, ctx):
        return gates.reshape(x, (x.shape[0], math.prod(x.shape[1:])))


class Activation(Layer):
    """An elementwise gate as a layer, such as `Activation(gates.leaky_relu,
    negative_slope=0.2)`; the keyword settings are the gate's constants."""

    gate: Gate
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __init__(self, gate: Gate, *, name: str | None = None, **settings: Any):
        label = type(self).__name__
        if not isinstance(gate, Gate):
            raise DtypeError(f"{label}: gate must be a difprog gate such as gates.relu, got "
                             f"{type(gate).__name__}")
        unknown = sorted(set(settings) - set(gate.static_names))
        if unknown:
            raise ArgumentError(f"{label}: unknown settings {unknown}; the gate {gate.name!r} "
                                f"takes {list(gate.static_names)}")
        for field, value in (("gate", gate), ("settings", settings), ("name", name)):
            object.__setattr__(self, field, value)

    @property
    def kind(self) -> str:
        return self.gate.name

    def __repr__(self):
        own = [f"gates.{self.gate.name}"] if type(self) is Activation else []
        named = [f"name={self.name!r}"] if self.name is not None else []
        return (f"{type(self).__name__}("
                f"{', '.join([*own, *(f'{k}={v!r}' for k, v in self.settings.items()), *named])})")

    def forward(self, params, x, ctx):
        return self.gate(x, **self.settings)


def activation(gate: Gate, *, relu_like: bool = False, doc: str | None = None
               ) -> type[Activation]:
    """A layer class applying the elementwise `gate`: a layer without params in one line.

    Its keyword arguments are the gate's constants, `Gelu(approximate=True)`; `relu_like`
    makes a Dense or Conv2D before it default to He initialisation.

    Example:
        >>> Softplus = layers.activation(gates.softplus)
        >>> Softplus(beta=2.0)
        Softplus(beta=2.0)
    """
    def __init__(self, *, name: str | None = None, **settings):
        Activation.__init__(self, gate, name=name, **settings)

    class_name = "".join(part.title() for part in gate.name.split("_"))
    return type(class_name, (Activation,), {
        "__init__": __init__, "__doc__": doc or f"{gate.name}, elementwise: {gate.__doc__}",
        "__module__": __name__, "kind": gate.name, "relu_like": relu_like})


Relu = activation(gates.relu, relu_like=True, doc="relu(x) = max(x, 0), elementwise.")
Tanh = activation(gates.tanh, doc="tanh(x), elementwise.")
Sigmoid = activation(gates.sigmoid, doc="sigmoid(x) = 1 / (1 + exp(-x)), elementwise.")
Gelu = activation(gates.gelu, doc="gelu(x) = x Phi(x), elementwise; Gelu(approximate=True) for "
                  "the tanh form.")


class LeakyRelu(Activation):
    """leaky_relu(x) = x for x > 0, negative_slope x otherwise, elementwise."""

    kind, relu_like = "leaky_relu", True

    def __init__(self, negative_slope: float = 0.01, *, name: str | None = None):
        slope = arguments.real("LeakyRelu", "negative_slope", negative_slope)
        Activation.__init__(self, gates.leaky_relu, negative_slope=slope, name=name)


class Dropout(Layer):
    """Zeroes each entry with probability `rate` in training, scaling the rest by 1 / (1 - rate).

    In evaluation (`train=False`) it is the identity. In training it needs a PRNG key:
    `model.apply(params, x, key=jax.random.key(step), train=True)`.

    Args:
        rate: the probability of dropping an entry, in [0, 1).
    """

    rate: float
    kind = "dropout"

    def __post_init__(self):
        if not arguments.is_real(self.rate) or not 0 <= self.rate < 1:
            raise ArgumentError(f"Dropout: rate is the probability of dropping an entry and "
                                f"must lie in [0, 1), got {self.rate!r}")
        object.__setattr__(self, "rate", float(self.rate))

    def forward(self, params, x, ctx):
        if not ctx.train or self.rate == 0:
            return x
        keep = jax.random.bernoulli(ctx.random_key("drop entries"), 1 - self.rate, jnp.shape(x))
        return gates.multiply(x, keep.astype(x.dtype) / (1 - self.rate))
