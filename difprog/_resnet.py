"""ResNet-18 (He et al., 2016, "Deep residual learning for image recognition"), laid out and named
as torchvision's `resnet18`, so each key of its state dict names exactly one difprog param."""

from __future__ import annotations

import jax
from jax.nn import initializers

from difprog import gates
from difprog.errors import ArgumentError, ShapeError
from difprog.layers import (
    BatchNorm,
    Conv2D,
    Dense,
    GlobalAvgPool,
    MaxPool2D,
    Relu,
    serial,
)
from difprog.layers._combinators import Container
from difprog.layers._layer import InitScope, join

# torchvision's initialisation: kaiming_normal_(mode='fan_out', nonlinearity='relu') for the
# convolutions, torch's default uniform(+-1/sqrt(fan_in)) for the classifier's weights.
_CONV_INIT = initializers.variance_scaling(2.0, "fan_out", "normal")
_FC_INIT = initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def _conv(features: int, kernel: int, stride: int, name: str) -> Conv2D:
    return Conv2D(features, kernel, stride, padding=kernel // 2, use_bias=False,
                  w_init=_CONV_INIT, name=name)


class BasicBlock(Container):
    """torchvision's BasicBlock: `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`, where the
    shortcut is the identity or, when `downsample`, a strided 1x1 convolution and a BatchNorm
    (children `downsample.0` and `downsample.1`, torchvision's names)."""

    kind = "basic_block"

    def __init__(self, features: int, stride: int = 1, *, downsample: bool = False,
                 name: str | None = None):
        main = (_conv(features, 3, stride, "conv1"), BatchNorm(name="bn1"), Relu(name="relu"),
                _conv(features, 3, 1, "conv2"), BatchNorm(name="bn2"))
        short = ((_conv(features, 1, stride, "downsample.0"), BatchNorm(name="downsample.1"))
                 if downsample else ())
        super().__init__(main + short, name=name)
        self.features, self.stride, self.downsample = features, stride, downsample

    def _settings(self):
        stride = [] if self.stride == 1 else [f"stride={self.stride}"]
        down = ["downsample=True"] if self.downsample else []
        return [str(self.features), *stride, *down, *super(Container, self)._settings()]

    def _init(self, key, x, scope):
        params, outs = {}, {}
        keys = jax.random.split(key, len(self.layers))
        for part in (self._main(), self._short()):
            h = x
            for i in part:
                k = self.keys[i]
                child, h = self.layers[i]._init(keys[i], h, InitScope(join(scope.path, k)))
                if child:
                    params[k] = child
            outs[part] = h
        return params, jax.eval_shape(lambda a, b: self._merge(a, b, scope.path), *outs.values())

    def _apply(self, params, x, run):
        children = list(zip(self._child_params(params, run), self._children(run)))
        branches = []
        for part in (self._main(), self._short()):
            h = x
            for i in part:
                child, (_, layer, child_run) = children[i]
                h = layer._call(child, h, child_run)
            branches.append(h)
        return self._merge(*branches, run.path)

    def _main(self) -> tuple[int, ...]:
        return (0, 1, 2, 3, 4)

    def _short(self) -> tuple[int, ...]:
        return (5, 6) if self.downsample else ()

    def _merge(self, main, short, path):
        if main.shape != short.shape:
            raise ShapeError(f"{self._label(path)} adds its shortcut to its convolutions' output, "
                             f"so they must have one shape, got {tuple(short.shape)} and "
                             f"{tuple(main.shape)}; use downsample=True where the stride or the "
                             f"number of channels changes")
        return gates.relu(gates.add(main, short))


def resnet18(num_classes: int = 1000) -> Container:
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
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
        raise ArgumentError(f"resnet18: num_classes must be a positive int, got {num_classes!r}")
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
