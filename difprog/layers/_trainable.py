"""Layers with params: Dense, Conv2D, LayerNorm and RMSNorm.

Weights default to He normal when a relu-like activation follows the layer and to Glorot uniform
otherwise (`Param(shape)` with no initialiser); biases and offsets start at zero, scales at one.
Pass any `jax.nn.initializers` function to override.
"""

from __future__ import annotations

import dataclasses

from jax.nn import initializers

from difprog import arguments, gates
from difprog.errors import ArgumentError, ShapeError
from difprog.gates import layer_padding, pair
from difprog.layers._layer import Initializer, Input, Layer, Param

LAST_AXIS = Input(min_rank=1, text="an input of rank >= 1, features on the last axis")
NHWC = Input(rank=4, text="NHWC input of rank 4 (batch, height, width, channels)")


class Dense(Layer):
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

    features: int
    w_init: Initializer | None = dataclasses.field(default=None, repr=False, kw_only=True)
    b_init: Initializer = dataclasses.field(default=initializers.zeros, repr=False,
                                            kw_only=True)
    use_bias: bool = dataclasses.field(default=True, kw_only=True)
    kind, takes = "dense", LAST_AXIS

    def __post_init__(self):
        arguments.positive_int("Dense", "features", self.features)
        arguments.flag("Dense", "use_bias", self.use_bias)

    def params(self, x):
        bias = {"b": Param((self.features,), self.b_init)} if self.use_bias else {}
        return {"w": Param((x.shape[-1], self.features), self.w_init), **bias}

    def forward(self, params, x, ctx):
        y = gates.matmul(x, params["w"])
        return gates.add(y, params["b"]) if self.use_bias else y


class Conv2D(Layer):
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

    features: int
    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] = 1
    padding: str | int | tuple = "SAME"
    dilation: int | tuple[int, int] = dataclasses.field(default=1, kw_only=True)
    groups: int = dataclasses.field(default=1, kw_only=True)
    w_init: Initializer | None = dataclasses.field(default=None, repr=False, kw_only=True)
    b_init: Initializer = dataclasses.field(default=initializers.zeros, repr=False,
                                            kw_only=True)
    use_bias: bool = dataclasses.field(default=True, kw_only=True)
    kind, takes = "conv2d", NHWC

    def __post_init__(self):
        arguments.positive_int("Conv2D", "features", self.features)
        arguments.flag("Conv2D", "use_bias", self.use_bias)
        arguments.positive_int("Conv2D", "groups", self.groups)
        if self.features % self.groups:
            raise ArgumentError(f"Conv2D: groups={self.groups} must divide "
                                f"features={self.features}")
        try:
            for what in ("kernel_size", "stride", "dilation"):
                object.__setattr__(self, what, pair(getattr(self, what), what))
        except ValueError as error:
            raise ArgumentError(f"Conv2D: {error}") from None
        object.__setattr__(self, "padding", layer_padding("Conv2D", self.padding))

    def params(self, x):
        if x.shape[-1] % self.groups:
            raise ShapeError(f"groups={self.groups} does not divide the {x.shape[-1]} channels "
                             f"of its input of shape {tuple(x.shape)}; use groups that divide "
                             f"both the input channels and features")
        bias = {"b": Param((self.features,), self.b_init)} if self.use_bias else {}
        shape = (*self.kernel_size, x.shape[-1] // self.groups, self.features)
        return {"w": Param(shape, self.w_init), **bias}

    def forward(self, params, x, ctx):
        y = gates.conv2d(x, params["w"], stride=self.stride, padding=self.padding,
                         dilation=self.dilation, groups=self.groups)
        return gates.add(y, params["b"]) if self.use_bias else y


class LayerNorm(Layer):
    """Layer normalisation over the last axis, with a learned scale and offset per feature.

    Args:
        eps: added to the variance before the square root.
        name: the key of its params in a container (default `layer_norm_<i>`).
    """

    eps: float = 1e-5
    kind, takes = "layer_norm", LAST_AXIS

    def __post_init__(self):
        object.__setattr__(self, "eps", arguments.real("LayerNorm", "eps", self.eps,
                                                       positive=True))

    def params(self, x):
        return {"scale": Param((x.shape[-1],), initializers.ones),
                "offset": Param((x.shape[-1],), initializers.zeros)}

    def forward(self, params, x, ctx):
        return gates.layer_norm(x, params["scale"], params["offset"], eps=self.eps)


class RMSNorm(Layer):
    """Root-mean-square normalisation over the last axis, `x / sqrt(mean(x^2) + eps) * scale`,
    with a learned scale per feature (no centring, no offset: the norm of LLaMA and T5).

    Args:
        eps: added to the mean square before the square root.
        name: the key of its params in a container (default `rms_norm_<i>`).
    """

    eps: float = 1e-6
    kind, takes = "rms_norm", LAST_AXIS

    def __post_init__(self):
        object.__setattr__(self, "eps", arguments.real("RMSNorm", "eps", self.eps,
                                                       positive=True))

    def params(self, x):
        return {"scale": Param((x.shape[-1],), initializers.ones)}

    def forward(self, params, x, ctx):
        return gates.rms_norm(x, params["scale"], eps=self.eps)
