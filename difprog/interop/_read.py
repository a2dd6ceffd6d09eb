"""Reading a PyTorch state dict without unpickling anything: from a dict of tensors or arrays, a
.safetensors file (no torch needed), or a .pt/.pth file through `torch.load(weights_only=True)`."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import safetensors.numpy

from difprog.errors import CheckpointError, DtypeError

_TORCH_SUFFIXES = (".pt", ".pth", ".bin")


def read_state_dict(state_dict: Any) -> tuple[dict[str, np.ndarray], str]:
    """The state dict as {key: numpy array}, and how errors name where it came from."""
    if isinstance(state_dict, (str, os.PathLike)):
        path = pathlib.Path(state_dict)
        source = f"the file {str(path)!r}"
        entries = _read_file(path, source)
    elif isinstance(state_dict, Mapping):
        source, entries = "the state dict", state_dict
    else:
        raise DtypeError(f"from_torch: state_dict must be a dict of tensors or arrays, or the "
                         f"path of a .safetensors or .pt file, got {type(state_dict).__name__}")
    if isinstance(entries.get("state_dict"), Mapping):  # a training checkpoint {'state_dict': ...}
        entries = entries["state_dict"]
    out, bad = {}, []
    for key, value in entries.items():
        array, problem = _as_numpy(value)
        if not isinstance(key, str):
            bad.append(f"{key!r} (a key that is not a string)")
        elif problem:
            bad.append(f"{key!r} ({problem})")
        else:
            out[key] = array
    if bad:
        raise CheckpointError(f"from_torch: {source} holds entries difprog cannot take as "
                              f"params: {', '.join(bad[:10])}; pass model.state_dict() of real, "
                              f"dense tensors with data")
    return out, source


def _read_file(path: pathlib.Path, source: str) -> Mapping[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"from_torch: there is no file {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        try:
            return safetensors.numpy.load_file(path)
        except Exception as error:  # the library's errors name no common base class
            raise CheckpointError(f"from_torch: cannot read {source} as safetensors "
                                  f"({type(error).__name__}: {error})") from None
    if suffix not in _TORCH_SUFFIXES:
        raise CheckpointError(f"from_torch: cannot tell the format of {source}: name a "
                              f".safetensors file, or a torch file ({', '.join(_TORCH_SUFFIXES)})")
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"from_torch: reading {source} needs PyTorch (pip install torch); or, where torch "
            f"is, save it as safetensors, which difprog reads without torch: "
            f"safetensors.torch.save_file(model.state_dict(), 'model.safetensors')") from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # weights_only refuses pickled objects; torch raises many types
        raise CheckpointError(f"from_torch: cannot read {source} with torch.load(weights_only="
                              f"True), which unpickles only tensors and plain containers "
                              f"({type(error).__name__}: {str(error).splitlines()[0]}); save "
                              f"model.state_dict() rather than the model") from None
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"from_torch: {source} holds a {type(loaded).__name__}, not a "
                              f"state dict; save model.state_dict()")
    return loaded


def _as_numpy(value: Any) -> tuple[np.ndarray | None, str]:
    """A torch tensor, numpy or jax array as a numpy array of real numbers, or None and why not."""
    if hasattr(value, "detach") and hasattr(value, "is_floating_point"):  # a torch tensor
        problem = _torch_problem(value)
        if problem:
            return None, problem
        value = value.detach().cpu()
        if value.is_floating_point() and value.dtype.itemsize < 4:
            value = value.float()  # bfloat16 has no numpy dtype; half is widened the same way
        return value.numpy(), ""
    if isinstance(value, (np.ndarray, np.generic)) or hasattr(value, "__array__"):
        array = np.asarray(value)
        if array.dtype.kind == "c":
            return None, f"complex values ({array.dtype})"
        return (array, "") if array.dtype.kind in "biuf" else (None, f"dtype {array.dtype}")
    return None, f"a {type(value).__name__}, not a tensor"


def _torch_problem(tensor: Any) -> str:
    """Why a torch tensor has no real, dense values to read ('' when it has)."""
    if getattr(tensor, "is_meta", False):
        return "a meta tensor, which has no data"
    if getattr(tensor, "is_quantized", False):
        return "a quantized tensor; dequantize() it first"
    if "strided" not in str(getattr(tensor, "layout", "torch.strided")):
        return f"a {tensor.layout} tensor; to_dense() it first"
    if tensor.is_complex():
        return f"complex values ({tensor.dtype})"
    return ""
