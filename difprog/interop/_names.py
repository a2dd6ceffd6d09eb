"""Which PyTorch state-dict key is which difprog param, and how its layout differs.

A torch module's name is the path of the difprog layer, one part per container level: the
layer's own name where one was given (`layer1.0`, `conv1`), its position in its container
otherwise (`0`, `3`, as in `nn.Sequential`). The param keys map per layer:

| difprog layer | param: torch name                           | layout (torch -> difprog)      |
|---------------|---------------------------------------------|--------------------------------|
| Dense         | w: weight, b: bias                          | (out, in) -> (in, out)         |
| Conv2D        | w: weight, b: bias                          | OIHW -> HWIO                   |
| BatchNorm     | scale: weight, offset: bias,                | as is; num_batches_tracked is  |
|               | mean: running_mean, var: running_var        | accepted and ignored           |
| LayerNorm     | scale: weight, offset: bias                 | as is                          |
| RMSNorm       | scale: weight                               | as is                          |
| Embedding     | table: weight                               | as is                          |
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from difprog.errors import ArgumentError
from difprog.layers import (
    BatchNorm,
    Conv2D,
    Dense,
    Embedding,
    Layer,
    LayerNorm,
    Remat,
    Repeat,
    RMSNorm,
    label,
)

NAMES: dict[type, dict[str, str]] = {
    Dense: {"w": "weight", "b": "bias"},
    Conv2D: {"w": "weight", "b": "bias"},
    BatchNorm: {"scale": "weight", "offset": "bias", "mean": "running_mean",
                "var": "running_var"},
    LayerNorm: {"scale": "weight", "offset": "bias"},
    RMSNorm: {"scale": "weight"},
    Embedding: {"table": "weight"},
}
IGNORED = {BatchNorm: ("num_batches_tracked",)}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One param: its torch key, its difprog path (keys from the top), and its layer."""

    torch_key: str
    path: tuple[str, ...]
    layer: Layer
    module: str  # the torch module name, the key without its last part

    @property
    def name(self) -> str:
        return self.path[-1]

    def torch_shape(self, shape: tuple[int, ...], flatten: tuple[int, ...] | None) -> tuple:
        """The shape torch stores for a difprog param of `shape`."""
        if self.name == "w" and isinstance(self.layer, Conv2D):
            kh, kw, i, o = shape
            return (o, i, kh, kw)
        if self.name == "w" and isinstance(self.layer, Dense):
            return tuple(reversed(shape))
        return tuple(shape)

    def to_difprog(self, array: np.ndarray, flatten: tuple[int, ...] | None) -> np.ndarray:
        """The torch array in difprog's layout; `flatten` (H, W, C) for a Dense whose input was
        flattened from NHWC, whose rows torch orders (C, H, W)."""
        if self.name == "w" and isinstance(self.layer, Conv2D):
            return array.transpose(2, 3, 1, 0)
        if self.name == "w" and isinstance(self.layer, Dense):
            if flatten is None:
                return array.T
            h, w, c = flatten
            out = array.shape[0]
            return array.reshape(out, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, out)
        return array


def entries(model: Layer, params: Any) -> list[Entry]:
    """Every param of `model` with its torch key, in the order of the model's layers."""
    found: list[Entry] = []
    _walk(model, params, (), (), found)
    return found


def torch_names(model: Layer, params: Any) -> list[tuple[str, str]]:
    """The pairs (torch state-dict key, difprog param path) that `from_torch` maps, in order.

    Args:
        model: a difprog model (see `difprog.interop` for the layers it may hold).
        params: its params, or their shapes (`jax.eval_shape(model.init, key, x)`).

    Example:
        >>> model = models.resnet18()
        >>> params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
        >>> interop.torch_names(model, params)[:2]
        [('conv1.weight', 'conv1/w'), ('bn1.weight', 'bn1/scale')]
    """
    return [(e.torch_key, "/".join(e.path)) for e in entries(model, params)]


def _walk(layer: Layer, params: Any, path: tuple[str, ...], module: tuple[str, ...],
          found: list[Entry]) -> None:
    if isinstance(layer, Remat):
        return _walk(layer.layer, params, path, module, found)
    if isinstance(layer, Repeat):
        raise ArgumentError(f"from_torch: {label(layer, '/'.join(path))} stacks the params of "
                            f"its repetitions, which no torch module does; build the model "
                            f"with its blocks one by one (serial) to load torch weights")
    children = layer.children()
    if children:
        for i, (key, child) in enumerate(children.items()):
            if isinstance(params, Mapping) and key in params:
                part = child.key if child.key is not None else str(i)
                _walk(child, params[key], (*path, key), (*module, part), found)
        return
    if not params:
        return
    names = NAMES.get(type(layer))
    if names is None or not set(params) <= set(names):
        raise ArgumentError(
            f"from_torch: {label(layer, '/'.join(path))} has params {sorted(params)} that no "
            f"torch layer is mapped to; the supported layers with params are "
            f"{sorted(t.__name__ for t in NAMES)}")
    prefix = ".".join(module)
    for name in (n for n in names if n in params):  # torch's order, not the sorted keys
        key = f"{prefix}.{names[name]}" if prefix else names[name]
        found.append(Entry(key, (*path, name), layer, prefix))


def ignored(model: Layer, params: Any) -> set[str]:
    """The torch keys accepted and ignored (BatchNorm's num_batches_tracked)."""
    out = set()
    for e in entries(model, params):
        for suffix in IGNORED.get(type(e.layer), ()):
            out.add(f"{e.module}.{suffix}" if e.module else suffix)
    return out
