"""Layers without params: pooling (windows, and GlobalAvgPool), Flatten, activations (one line
each with `activation`) and Dropout."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from difprog import gates
from difprog.errors import ArgumentError
from difprog.gate import Gate
from difprog.gates import pair
from difprog.gates._util import layer_padding
from difprog.layers._layer import Leaf


class _Pool2D(Leaf):
    expects = "NHWC input of rank 4 (batch, height, width, channels)"
    pool: Gate

    def __init__(self, window: int | tuple[int, int] = 2, stride: int | tuple[int, int] | None
                 = None, padding: str | int | tuple = "VALID", *,
                 dilation: int | tuple[int, int] = 1, ceil_mode: bool = False,
                 name: str | None = None):
        super().__init__(name=name)
        layer = type(self).__name__
        try:
            self.window = pair(window, "window")
            self.stride = self.window if stride is None else pair(stride, "stride")
            self.dilation = pair(dilation, "dilation")
        except ValueError as error:
            raise ArgumentError(f"{layer}: {error}") from None
        self.padding = layer_padding(layer, padding)
        self.ceil_mode = _flag(layer, "ceil_mode", ceil_mode)

    def _options(self):
        return {"dilation": self.dilation, "ceil_mode": self.ceil_mode}

    def _settings(self):
        stride = [] if self.stride == self.window else [f"stride={self.stride}"]
        padding = [] if self.padding == "VALID" else [f"padding={self.padding!r}"]
        defaults = {"dilation": (1, 1), "ceil_mode": False, "count_include_pad": True}
        options = [f"{k}={v}" for k, v in self._options().items() if v != defaults[k]]
        return [str(self.window[0]) if self.window[0] == self.window[1] else str(self.window),
                *stride, *padding, *options, *super()._settings()]

    def _fits(self, shape):
        return len(shape) == 4

    def _forward(self, params, x, run):
        return self.pool(x, window=self.window, stride=self.stride, padding=self.padding,
                         **self._options())


def _flag(layer: str, name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ArgumentError(f"{layer}: {name} must be True or False, got {value!r}")
    return value


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

    kind = "max_pool2d"
    pool = gates.max_pool2d


class AvgPool2D(_Pool2D):
    """The mean of each window of an NHWC input, as torch.nn.AvgPool2d; stride None means
    stride = window. padding, dilation and ceil_mode as in MaxPool2D (padding counts as zeros);
    count_include_pad=True divides by the window's points inside the padded input (torch's
    default), False by those inside the input; ceil_mode's overhang never counts.
    """

    kind = "avg_pool2d"
    pool = gates.avg_pool2d

    def __init__(self, window: int | tuple[int, int] = 2, stride: int | tuple[int, int] | None
                 = None, padding: str | int | tuple = "VALID", *,
                 dilation: int | tuple[int, int] = 1, ceil_mode: bool = False,
                 count_include_pad: bool = True, name: str | None = None):
        super().__init__(window, stride, padding, dilation=dilation, ceil_mode=ceil_mode,
                         name=name)
        self.count_include_pad = _flag("AvgPool2D", "count_include_pad", count_include_pad)

    def _options(self):
        return {**super()._options(), "count_include_pad": self.count_include_pad}


class GlobalAvgPool(Leaf):
    """The mean over height and width of an NHWC input: (N, H, W, C) -> (N, C), through the mean
    gate (torch's `AdaptiveAvgPool2d(1)` followed by `flatten(1)`).

    Example:
        >>> layers.GlobalAvgPool().apply({}, jnp.ones((2, 7, 7, 512))).shape
        (2, 512)
    """

    kind = "global_avg_pool"
    expects = "NHWC input of rank 4 (batch, height, width, channels)"

    def _fits(self, shape):
        return len(shape) == 4

    def _forward(self, params, x, run):
        return gates.mean(x, (1, 2))


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
        unknown = sorted(set(settings) - set(gate.static_names))
        if unknown:
            raise ArgumentError(f"{type(self).__name__}: unknown settings {unknown}; the gate "
                                f"{gate.name!r} takes {list(gate.static_names)}")
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
        super().__init__(gates.leaky_relu, name=name, negative_slope=float(negative_slope))


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
