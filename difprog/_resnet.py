"""ResNet-18 (He et al., 2016, "Deep residual learning for image recognition"), laid out and named
as torchvision's `resnet18`, so each key of its state dict names exactly one difprog param.

Written on `difprog.layers`' public names only: the block is a container like any user's."""

from __future__ import annotations

from jax.nn import initializers

from difprog import arguments, gates
from difprog.errors import ShapeError
from difprog.layers import (
    BatchNorm,
    Conv2D,
    Dense,
    GlobalAvgPool,
    Layer,
    MaxPool2D,
    Relu,
    Serial,
    keyed,
    serial,
)

__all__ = ["BasicBlock", "resnet18"]

# torchvision's initialisation: kaiming_normal_(mode='fan_out', nonlinearity='relu') for the
# convolutions, torch's default uniform(+-1/sqrt(fan_in)) for the classifier's weights.
_CONV_INIT = initializers.variance_scaling(2.0, "fan_out", "normal")
_FC_INIT = initializers.variance_scaling(1 / 3, "fan_in", "uniform")
_MAIN = ("conv1", "bn1", "relu", "conv2", "bn2")
_SHORT = ("downsample.0", "downsample.1")


def _conv(features: int, kernel: int, stride: int, name: str) -> Conv2D:
    return Conv2D(features, kernel, stride, padding=kernel // 2, use_bias=False,
                  w_init=_CONV_INIT, name=name)


class BasicBlock(Layer):
    """torchvision's BasicBlock: `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`, where the
    shortcut is the identity or, when `downsample`, a strided 1x1 convolution and a BatchNorm
    (children `downsample.0` and `downsample.1`, torchvision's names)."""

    features: int
    stride: int = 1
    downsample: bool = False
    kind = "basic_block"

    def __post_init__(self):
        arguments.positive_int("BasicBlock", "features", self.features)
        arguments.positive_int("BasicBlock", "stride", self.stride)
        arguments.flag("BasicBlock", "downsample", self.downsample)
        f, s = self.features, self.stride
        main = (_conv(f, 3, s, "conv1"), BatchNorm(name="bn1"), Relu(name="relu"),
                _conv(f, 3, 1, "conv2"), BatchNorm(name="bn2"))
        short = ((_conv(f, 1, s, "downsample.0"), BatchNorm(name="downsample.1"))
                 if self.downsample else ())
        object.__setattr__(self, "_children", keyed(*main, *short, owner="BasicBlock"))

    def children(self):
        return self._children

    def forward(self, params, x, ctx):
        main = x
        for key in _MAIN:
            main = ctx(key, main)
        short = x
        for key in _SHORT if self.downsample else ():
            short = ctx(key, short)
        if main.shape != short.shape:
            raise ShapeError(f"adds its shortcut to its convolutions' output, so they must have "
                             f"one shape, got {tuple(short.shape)} and {tuple(main.shape)}; use "
                             f"downsample=True where the stride or the number of channels "
                             f"changes")
        return gates.relu(gates.add(main, short))


def resnet18(num_classes: int = 1000) -> Serial:
    """ResNet-18 as torchvision builds it, for NHWC images, every gradient through difprog gates.

    conv1 (7x7, stride 2, padding 3, no bias), bn1, relu, maxpool (3x3, stride 2, padding 1);
    layer1..layer4 of two BasicBlocks each (64, 128, 256, 512 channels; the first block of
    layer2..4 has stride 2 and a 1x1 downsample); global average pool; fc.

    Its layers are named as torchvision's modules, the blocks `layer1.0` ... `layer4.1`, so the
    state-dict key `layer2.0.downsample.1.running_var` is the param
    `params['layer2.0']['downsample.1']['var']`; `difprog.interop.torch_names` lists every pair
    and `difprog.interop.from_torch` loads torchvision weights (converting the layouts). For
    1000 classes it has 11,689,512 trainable params, as torchvision's (plus the BatchNorms'
    running statistics).

    Example:
        >>> model = models.resnet18(num_classes=10)
        >>> params = model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
        >>> model.apply(params, jnp.zeros((2, 64, 64, 3))).shape
        (2, 10)
    """
    arguments.positive_int("resnet18", "num_classes", num_classes)
    blocks, inputs = [], 64
    for stage, features in enumerate((64, 128, 256, 512), start=1):
        stride = 1 if stage == 1 else 2
        blocks.append(BasicBlock(features, stride, downsample=stride != 1 or inputs != features,
                                 name=f"layer{stage}.0"))
        blocks.append(BasicBlock(features, name=f"layer{stage}.1"))
        inputs = features
    return serial(
        _conv(64, 7, 2, "conv1"), BatchNorm(name="bn1"), Relu(name="relu"),
        MaxPool2D(3, 2, padding=1, name="maxpool"), *blocks, GlobalAvgPool(name="avgpool"),
        Dense(num_classes, w_init=_FC_INIT, name="fc"), name="resnet18")
