"""Random image augmentations as layers: they act in training and are the identity in evaluation.

Each draws per image from the layer's own PRNG key, as Dropout does, and moves pixels with
one-hot matrices through the matmul gate (`rows @ image @ columns^T`), so even the input's
gradient through an augmentation is a hand-written rule. torchvision's `RandomCrop(size,
padding=p)` and `RandomHorizontalFlip()` are the models: the standard augmentation of CIFAR-10
and Fashion-MNIST training.

Being matrix products, they are exact on the CPU and wherever float32 matmuls keep float32; on
GPUs whose float32 matmuls default to TF32 (A100, H100) the moved pixels keep about 3 digits
unless `jax.config.update("jax_default_matmul_precision", "highest")`. A NaN or infinite pixel
makes its whole image NaN (0 x inf is NaN), where torchvision's copy would keep it in place.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from difprog import arguments, gates
from difprog.layers._layer import Layer
from difprog.layers._trainable import NHWC

__all__ = ["RandomFlip", "RandomShift"]


class RandomShift(Layer):
    """Shifts each image by a whole number of pixels, drawn uniformly from [-pixels, pixels] for
    height and width apart, filling what comes in with zeros (torchvision's `RandomCrop(size,
    padding=pixels)` with zero padding); the identity in evaluation.

    Example:
        >>> shift = layers.RandomShift(2)
        >>> y = shift.apply({}, jnp.ones((4, 28, 28, 1)), key=jax.random.key(0), train=True)
    """

    pixels: int
    kind, takes = "random_shift", NHWC

    def __post_init__(self):
        object.__setattr__(self, "pixels",
                           arguments.integer("RandomShift", "pixels", self.pixels, minimum=0))

    def forward(self, params, x, ctx):
        if not ctx.train or self.pixels == 0:
            return x
        n, h, w, _ = x.shape
        rows, cols = jax.random.randint(ctx.random_key("shift images"), (2, n), -self.pixels,
                                        self.pixels + 1)
        return _move(x, _shifts(rows, h, x.dtype), _shifts(cols, w, x.dtype))


class RandomFlip(Layer):
    """Mirrors each image left to right with probability 1/2 (torchvision's
    `RandomHorizontalFlip()`); the identity in evaluation."""

    kind, takes = "random_flip", NHWC

    def forward(self, params, x, ctx):
        if not ctx.train:
            return x
        n, _, w, _ = x.shape
        flip = jax.random.bernoulli(ctx.random_key("flip images"), 0.5, (n,))
        eye = jnp.eye(w, dtype=x.dtype)
        return _move(x, None, jnp.where(flip[:, None, None], eye[::-1], eye))


def _move(x, rows, cols):
    """`out[n, i, j] = sum_ab rows[n, i, a] x[n, a, b] cols[n, j, b]` through matmul gates."""
    n, h, w, c = x.shape
    if rows is not None:
        x = gates.reshape(gates.matmul(rows, gates.reshape(x, (n, h, w * c))), (n, h, w, c))
    return gates.matmul(cols[:, None], x)


def _shifts(offsets, size, dtype):
    """One-hot (N, size, size) matrices: row i picks entry i - offset, none where that is out."""
    index = jnp.arange(size)
    return (index[None, :, None] - offsets[:, None, None] == index[None, None, :]).astype(dtype)
