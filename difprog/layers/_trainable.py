"""Layers with params: Dense, Conv2D, LayerNorm and RMSNorm.

Weights default to He normal when a relu-like activation follows the layer and to Glorot uniform
otherwise; biases and offsets start at zero, scales at one. Pass any `jax.nn.initializers`
function to override.
"""

from __future__ import annotations

from jax.nn import initializers

from difprog import gates
from difprog.errors import ArgumentError, ShapeError
from difprog.gates import pair
from difprog.gates._util import layer_padding
from difprog.layers._layer import Initializer, Leaf


def _weights(w_init: Initializer | None, before_relu: bool) -> Initializer:
    """He normal before a relu (keeps the activations' variance), Glorot uniform otherwise."""
    if w_init is not None:
        return w_init
    return initializers.he_normal() if before_relu else initializers.glorot_uniform()


def _flag(layer: str, what: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ArgumentError(f"{layer}: {what} must be True or False, got {value!r}")
    return value


def _positive_int(layer: str, what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ArgumentError(f"{layer}: {what} must be a positive int, got {value!r}")
    return value


class Dense(Leaf):
    """A fully connected layer, `y = x w + b`, over the last axis of x.

    Args:
        features: the size of the output's last axis.
        w_init: initialiser of w (shape (in, features)); default He normal before a relu,
            Glorot uniform otherwise.
        b_init: initialiser of b (shape (features,)); default zeros.
        use_bias: False for `y = x w` without b (torch's `Linear(bias=False)`).
        name: the key of its params in a container (default `dense_<i>`).

    Example:
        >>> dense = layers.Dense(10)
        >>> params = dense.init(jax.random.key(0), jnp.zeros((4, 3)))
        >>> dense.apply(params, jnp.ones((4, 3))).shape
        (4, 10)
    """

    kind = "dense"
    expects = "an input of rank >= 1, features on the last axis"

    def __init__(self, features: int, *, w_init: Initializer | None = None,
                 b_init: Initializer = initializers.zeros, use_bias: bool = True,
                 name: str | None = None):
        super().__init__(name=name)
        self.features = _positive_int("Dense", "features", features)
        self.w_init, self.b_init = w_init, b_init
        self.use_bias = _flag("Dense", "use_bias", use_bias)

    def _settings(self):
        bias = [] if self.use_bias else ["use_bias=False"]
        return [str(self.features), *bias, *super()._settings()]

    def _fits(self, shape):
        return len(shape) >= 1

    def _param_shapes(self, x_shape):
        bias = {"b": (self.features,)} if self.use_bias else {}
        return {"w": (x_shape[-1], self.features), **bias}

    def _initializers(self, before_relu):
        return {"w": _weights(self.w_init, before_relu), "b": self.b_init}

    def _forward(self, params, x, run):
        y = gates.matmul(x, params["w"])
        return gates.add(y, params["b"]) if self.use_bias else y


class Conv2D(Leaf):
    """A 2-D convolution over NHWC inputs with an HWIO kernel, plus a bias per output channel.

    Args:
        features: the number of output channels.
        kernel_size: the window, an int or (height, width).
        stride: an int or (height, width); default 1.
        padding: 'SAME' (output size ceil(input / stride)), 'VALID', 'SAME_LOWER' (any case),
            an int p (p on every side), (ph, pw) as in torch, or ((top, bottom), (left, right)).
        dilation: the kernel's dilation, an int or (height, width): its taps lie dilation
            apart; default 1.
        groups: split the input channels and the features into this many groups, each
            convolved on its own (groups = input channels: depthwise); it must divide both.
            w then has shape (kh, kw, in / groups, features).
        w_init: initialiser of w (shape (kh, kw, in, features)); default He normal before a
            relu, Glorot uniform otherwise.
        b_init: initialiser of b (shape (features,)); default zeros.
        use_bias: False for a convolution without b (torch's `Conv2d(bias=False)`, as before
            a BatchNorm).
        name: the key of its params in a container (default `conv2d_<i>`).

    Example:
        >>> conv = layers.Conv2D(8, 3)
        >>> params = conv.init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)))
        >>> params['w'].shape
        (3, 3, 1, 8)
    """

    kind = "conv2d"
    expects = "NHWC input of rank 4 (batch, height, width, channels)"

    def __init__(self, features: int, kernel_size: int | tuple[int, int], stride: int | tuple[
                 int, int] = 1, padding: str | int | tuple = "SAME", *,
                 dilation: int | tuple[int, int] = 1, groups: int = 1,
                 w_init: Initializer | None = None, b_init: Initializer = initializers.zeros,
                 use_bias: bool = True, name: str | None = None):
        super().__init__(name=name)
        self.features = _positive_int("Conv2D", "features", features)
        self.use_bias = _flag("Conv2D", "use_bias", use_bias)
        self.groups = _positive_int("Conv2D", "groups", groups)
        if self.features % self.groups:
            raise ArgumentError(f"Conv2D: groups={groups} must divide features={features}")
        try:
            self.kernel_size = pair(kernel_size, "kernel_size")
            self.stride = pair(stride, "stride")
            self.dilation = pair(dilation, "dilation")
        except ValueError as error:
            raise ArgumentError(f"Conv2D: {error}") from None
        self.padding = layer_padding("Conv2D", padding)
        self.w_init, self.b_init = w_init, b_init

    def _settings(self):
        stride = [] if self.stride == (1, 1) else [f"stride={_compact(self.stride)}"]
        padding = [] if self.padding == "SAME" else [f"padding={self.padding!r}"]
        dilation = [] if self.dilation == (1, 1) else [f"dilation={_compact(self.dilation)}"]
        groups = [] if self.groups == 1 else [f"groups={self.groups}"]
        bias = [] if self.use_bias else ["use_bias=False"]
        return [str(self.features), _compact(self.kernel_size), *stride, *padding, *dilation,
                *groups, *bias, *super()._settings()]

    def _fits(self, shape):
        return len(shape) == 4

    def _check_input(self, x, path):
        super()._check_input(x, path)
        if x.shape[-1] % self.groups:
            raise ShapeError(f"{self._label(path)} has groups={self.groups}, which does not "
                             f"divide the {x.shape[-1]} channels of its input of shape "
                             f"{tuple(x.shape)}; use groups that divide both the input "
                             f"channels and features")

    def _param_shapes(self, x_shape):
        bias = {"b": (self.features,)} if self.use_bias else {}
        return {"w": (*self.kernel_size, x_shape[-1] // self.groups, self.features), **bias}

    def _initializers(self, before_relu):
        return {"w": _weights(self.w_init, before_relu), "b": self.b_init}

    def _forward(self, params, x, run):
        y = gates.conv2d(x, params["w"], stride=self.stride, padding=self.padding,
                         dilation=self.dilation, groups=self.groups)
        return gates.add(y, params["b"]) if self.use_bias else y


class LayerNorm(Leaf):
    """Layer normalisation over the last axis, with a learned scale and offset per feature.

    Args:
        eps: added to the variance before the square root.
        name: the key of its params in a container (default `layer_norm_<i>`).
    """

    kind = "layer_norm"
    expects = "an input of rank >= 1, features on the last axis"

    def __init__(self, eps: float = 1e-5, *, name: str | None = None):
        super().__init__(name=name)
        if not eps > 0:
            raise ArgumentError(f"LayerNorm: eps must be positive, got {eps!r}")
        self.eps = float(eps)

    def _settings(self):
        eps = [] if self.eps == 1e-5 else [f"eps={self.eps}"]
        return [*eps, *super()._settings()]

    def _fits(self, shape):
        return len(shape) >= 1

    def _param_shapes(self, x_shape):
        return {"scale": (x_shape[-1],), "offset": (x_shape[-1],)}

    def _initializers(self, before_relu):
        return {"scale": initializers.ones, "offset": initializers.zeros}

    def _forward(self, params, x, run):
        return gates.layer_norm(x, params["scale"], params["offset"], eps=self.eps)


class RMSNorm(Leaf):
    """Root-mean-square normalisation over the last axis, `x / sqrt(mean(x^2) + eps) * scale`,
    with a learned scale per feature (no centring, no offset: the norm of LLaMA and T5).

    Args:
        eps: added to the mean square before the square root.
        name: the key of its params in a container (default `rms_norm_<i>`).
    """

    kind = "rms_norm"
    expects = "an input of rank >= 1, features on the last axis"

    def __init__(self, eps: float = 1e-6, *, name: str | None = None):
        super().__init__(name=name)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise ArgumentError(f"RMSNorm: eps must be a positive number, got {eps!r}")
        self.eps = float(eps)

    def _settings(self):
        return [*([] if self.eps == 1e-6 else [f"eps={self.eps}"]), *super()._settings()]

    def _fits(self, shape):
        return len(shape) >= 1

    def _param_shapes(self, x_shape):
        return {"scale": (x_shape[-1],)}

    def _initializers(self, before_relu):
        return {"scale": initializers.ones}

    def _forward(self, params, x, run):
        return gates.rms_norm(x, params["scale"], eps=self.eps)


def _compact(pair_: tuple[int, int]) -> str:
    return str(pair_[0]) if pair_[0] == pair_[1] else str(pair_)

