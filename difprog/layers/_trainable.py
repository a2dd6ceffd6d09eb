"""Layers with params: Dense, Conv2D and LayerNorm.

Weights default to He normal when a relu-like activation follows the layer and to Glorot uniform
otherwise; biases and offsets start at zero, scales at one. Pass any `jax.nn.initializers`
function to override.
"""

from __future__ import annotations

from jax.nn import initializers

from difprog import gates
from difprog.errors import ArgumentError
from difprog.gates import pair
from difprog.layers._layer import Initializer, Leaf


def _weights(w_init: Initializer | None, before_relu: bool) -> Initializer:
    """He normal before a relu (keeps the activations' variance), Glorot uniform otherwise."""
    if w_init is not None:
        return w_init
    return initializers.he_normal() if before_relu else initializers.glorot_uniform()


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
                 b_init: Initializer = initializers.zeros, name: str | None = None):
        super().__init__(name=name)
        self.features = _positive_int("Dense", "features", features)
        self.w_init, self.b_init = w_init, b_init

    def _settings(self):
        return [str(self.features), *super()._settings()]

    def _fits(self, shape):
        return len(shape) >= 1

    def _param_shapes(self, x_shape):
        return {"w": (x_shape[-1], self.features), "b": (self.features,)}

    def _initializers(self, before_relu):
        return {"w": _weights(self.w_init, before_relu), "b": self.b_init}

    def _forward(self, params, x, run):
        return gates.add(gates.matmul(x, params["w"]), params["b"])


class Conv2D(Leaf):
    """A 2-D convolution over NHWC inputs with an HWIO kernel, plus a bias per output channel.

    Args:
        features: the number of output channels.
        kernel_size: the window, an int or (height, width).
        stride: an int or (height, width); default 1.
        padding: 'SAME' (output size ceil(input / stride)), 'VALID', or ((top, bottom),
            (left, right)).
        w_init: initialiser of w (shape (kh, kw, in, features)); default He normal before a
            relu, Glorot uniform otherwise.
        b_init: initialiser of b (shape (features,)); default zeros.
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
                 int, int] = 1, padding: str | tuple = "SAME", *,
                 w_init: Initializer | None = None, b_init: Initializer = initializers.zeros,
                 name: str | None = None):
        super().__init__(name=name)
        self.features = _positive_int("Conv2D", "features", features)
        try:
            self.kernel_size = pair(kernel_size, "kernel_size")
            self.stride = pair(stride, "stride")
        except ValueError as error:
            raise ArgumentError(f"Conv2D: {error}") from None
        self.padding = padding if isinstance(padding, str) else tuple(map(tuple, padding))
        if isinstance(padding, str) and padding not in ("SAME", "VALID"):
            raise ArgumentError(f"Conv2D: padding must be 'SAME', 'VALID' or pairs of ints, "
                                f"got {padding!r}")
        self.w_init, self.b_init = w_init, b_init

    def _settings(self):
        stride = [] if self.stride == (1, 1) else [f"stride={_compact(self.stride)}"]
        padding = [] if self.padding == "SAME" else [f"padding={self.padding!r}"]
        return [str(self.features), _compact(self.kernel_size), *stride, *padding,
                *super()._settings()]

    def _fits(self, shape):
        return len(shape) == 4

    def _param_shapes(self, x_shape):
        return {"w": (*self.kernel_size, x_shape[-1], self.features), "b": (self.features,)}

    def _initializers(self, before_relu):
        return {"w": _weights(self.w_init, before_relu), "b": self.b_init}

    def _forward(self, params, x, run):
        y = gates.conv2d(x, params["w"], stride=self.stride, padding=self.padding)
        return gates.add(y, params["b"])


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


def _compact(pair_: tuple[int, int]) -> str:
    return str(pair_[0]) if pair_[0] == pair_[1] else str(pair_)

