"""Weights from other frameworks: PyTorch state dicts mapped onto difprog models.

`from_torch(model, example_input, state_dict)` reads a state dict (a dict of tensors or arrays, a
.safetensors file, or a .pt/.pth file with torch installed, read with `weights_only=True`) and
returns the params of the equivalent difprog model, every layout converted; `torch_names(model,
params)` lists which state-dict key becomes which param.

Supported layers: Dense (torch Linear), Conv2D (Conv2d), BatchNorm (BatchNorm1d/2d), LayerNorm,
RMSNorm, Embedding, and every layer without params, inside serial, parallel, residual, remat
and `models.resnet18`'s blocks. A torch module's name is the difprog layer's name where one was
given (`models.resnet18` names its layers as torchvision does), and its position in its container
otherwise (so a difprog `serial` mirrors a torch `nn.Sequential` layer for layer).

Example:
    >>> model = layers.serial(layers.Dense(3), layers.Relu(), layers.Dense(2))
    >>> state = {"0.weight": np.ones((3, 4)), "0.bias": np.zeros(3),   # torch's (out, in)
    ...          "2.weight": np.ones((2, 3)), "2.bias": np.zeros(2)}
    >>> params = interop.from_torch(model, jnp.zeros((1, 4)), state)
    >>> params["dense_0"]["w"].shape                                      # difprog's (in, out)
    (4, 3)
"""

from difprog.interop._names import torch_names
from difprog.interop._torch import from_torch

__all__ = ["from_torch", "torch_names"]
