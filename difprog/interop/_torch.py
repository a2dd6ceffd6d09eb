"""`from_torch`: a PyTorch state dict as the params of the equivalent difprog model."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from difprog.errors import ArgumentError, CheckpointError, DtypeError
from difprog.interop._names import Entry, entries, ignored
from difprog.interop._read import read_state_dict
from difprog.layers import Activation, Dense, Dropout, Flatten, Layer, Serial, label, walk

_SHOWN = 20


def from_torch(model: Layer, example_input: Any, state_dict: Any) -> dict:
    """The params of `model` read from a PyTorch state dict, every layout converted.

    Each torch key names one param (`difprog.interop.torch_names` lists the pairs): Linear
    weights (out, in) become (in, out), Conv2d weights OIHW become HWIO, BatchNorm's running_mean
    and running_var become its `mean` and `var`; `num_batches_tracked` is accepted and ignored.
    A Dense fed by a Flatten of NHWC features gets its rows reordered from torch's (C, H, W)
    flattening order to difprog's (H, W, C), so the logits agree.

    Nothing is unpickled: safetensors files are read as numpy arrays (no torch needed), and .pt
    or .pth files only with torch installed, through `torch.load(weights_only=True)`.

    Args:
        model: the difprog model equivalent to the torch one, such as `models.resnet18()` for
            torchvision's resnet18, or a `layers.serial` mirroring an `nn.Sequential`.
        example_input: an input like the model's (an array or jax.ShapeDtypeStruct, NHWC for
            images); its floating dtype is the params' dtype (float32 otherwise).
        state_dict: `torch_model.state_dict()` (tensors or numpy arrays), or the path of a
            .safetensors, .pt or .pth file holding one.

    Returns:
        The params, as `model.init` would return them.

    Raises:
        CheckpointError: listing, in one message, every key the model needs that is missing,
            every key that belongs to no param, and every shape that does not match.
        ArgumentError: the model holds a layer no torch layer maps to.

    Example:
        >>> model = models.resnet18(num_classes=1000)
        >>> params = interop.from_torch(model, jnp.zeros((1, 224, 224, 3)),
        ...                             "resnet18.safetensors")
        >>> logits = model.apply(params, images_nhwc)
    """
    if not isinstance(model, Layer):
        raise ArgumentError(f"from_torch: model must be a difprog layer, got "
                            f"{type(model).__name__}")
    x = _struct(example_input, model)
    dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)
    found = entries(model, shapes)
    flattened = flattened_inputs(model, shapes, x)
    tensors, source = read_state_dict(state_dict)
    _check(model, found, shapes, flattened, tensors, source, np.dtype(dtype))
    params: dict = {}
    for e in found:
        array = e.to_difprog(tensors[e.torch_key], flattened.get(e.path[:-1]))
        _put(params, e.path, jnp.asarray(array.astype(np.dtype(dtype), copy=False)))
    return params


def _check(model, found: list[Entry], shapes, flattened, tensors, source, dtype) -> None:
    """Raises one CheckpointError naming every missing, unexpected and misshapen key, and every
    value that is not finite or does not fit the params' dtype."""
    needed = {e.torch_key: e for e in found}
    missing, wrong = [], []
    for key, e in needed.items():
        shape = _leaf(shapes, e.path).shape
        want = e.torch_shape(shape, flattened.get(e.path[:-1]))
        if key not in tensors:
            missing.append(f"{key!r} {want} (param {'/'.join(e.path)!r})")
        elif tuple(tensors[key].shape) != want:
            wrong.append(f"{key!r} is {tuple(tensors[key].shape)}, param {'/'.join(e.path)!r} "
                         f"needs {want} in torch's layout ({tuple(shape)} in difprog's)")
        elif not np.all(np.isfinite(np.asarray(tensors[key], np.float64))):
            wrong.append(f"{key!r} holds NaN or infinite values")
        elif _largest(tensors[key]) > float(jnp.finfo(dtype).max):
            wrong.append(f"{key!r} holds {_largest(tensors[key]):.4g}, beyond {dtype}'s largest "
                         f"value {float(jnp.finfo(dtype).max):.4g}")
        elif key.endswith("running_var") and np.any(np.asarray(tensors[key]) < 0):
            wrong.append(f"{key!r} holds negative variances")
    unexpected = [f"{k!r} {tuple(v.shape)}" for k, v in tensors.items()
                  if k not in needed and k not in ignored(model, shapes)]
    if not (missing or wrong or unexpected):
        return
    parts = [f"{what} ({len(items)}): {_listing(items)}" for what, items in (
        ("missing (the model needs them)", missing), ("unexpected (no param of the model)",
         unexpected), ("wrong shape or values", wrong)) if items]
    hint = ("; the keys start with 'module.' (a DataParallel model): strip it, "
            "{k.removeprefix('module.'): v for k, v in state_dict.items()}"
            if unexpected and all(k.startswith("module.") for k in tensors) else "")
    raise CheckpointError(
        f"from_torch: {source} does not match {label(model, '')}: {'; '.join(parts)}{hint}. "
        f"difprog.interop.torch_names(model, params) lists the key of every param; name the "
        f"difprog layers as the torch modules, or build the model that matches the weights")


def _largest(array: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(array, np.float64)), initial=0.0))


def _struct(example: Any, model: Layer) -> jax.ShapeDtypeStruct:
    if isinstance(example, jax.ShapeDtypeStruct):
        return example
    if isinstance(example, (jax.Array, np.ndarray, np.generic, int, float)) and not isinstance(
            example, bool):
        return jax.ShapeDtypeStruct(np.shape(example), jnp.asarray(example).dtype)
    raise DtypeError(f"from_torch: {label(model, '')}: the input must be an array, got "
                     f"{type(example).__name__}")


def _listing(items: list[str]) -> str:
    more = f", and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return ", ".join(items[:_SHOWN]) + more


def flattened_inputs(model: Layer, shapes: Any, x: jax.ShapeDtypeStruct
                     ) -> dict[tuple[str, ...], tuple[int, int, int]]:
    """{path of a Dense: (H, W, C)} for each Dense whose input is a Flatten of NHWC features
    (through elementwise layers only), whose torch weight orders its inputs (C, H, W).

    Any other layer that takes such features (their order is torch's C, H, W in torch and
    H, W, C in difprog) is refused, since no reordering of its params makes the two agree.
    """
    plan: dict[tuple[str, ...], tuple[int, int, int]] = {}
    jax.eval_shape(lambda p, x: plan.update(_plan(model, walk(model, p, x))), shapes, x)
    return plan


def _plan(model: Layer, visits: list) -> dict[tuple[str, ...], tuple[int, int, int]]:
    """The plan of `flattened_inputs` from the visits of one trace (values compared by identity)."""
    _check_flattens_seen(model, visits)
    reordered: list[tuple[Any, tuple[int, int, int], str]] = []  # (array, (H, W, C), flatten)
    plan = {}
    for v in visits:
        source = next((r for r in reordered if r[0] is v.input), None)
        if isinstance(v.layer, Flatten) and source is None:
            x_in = v.input
            if x_in.ndim == 4 and x_in.shape[1] * x_in.shape[2] > 1 and x_in.shape[3] > 1:
                reordered.append((v.output, tuple(x_in.shape[1:]), v.path))
        elif source is None:
            continue
        elif isinstance(v.layer, Dense):
            plan[tuple(v.path.split("/")) if v.path else ()] = source[1]
        elif isinstance(v.layer, (Activation, Dropout, Flatten)):
            reordered.append((v.output, source[1], source[2]))
        elif not (type(v.layer) is Serial and v.layer.remat is None):
            raise ArgumentError(
                f"from_torch: {label(v.layer, v.path)} takes the features that "
                f"{source[2] or 'the Flatten'!r} flattened from NHWC, which difprog orders "
                f"(H, W, C) and torch (C, H, W); only a Dense (its rows are reordered) or "
                f"elementwise layers may take them: put this layer before the Flatten")
    return plan


def _check_flattens_seen(model: Layer, visits: list) -> None:
    """Refuses a Flatten that runs where nothing is visited (inside remat or repeat)."""
    seen = sum(isinstance(v.layer, Flatten) for v in visits)
    if seen != _count_flattens(model):
        raise ArgumentError("from_torch: the model has a Flatten inside remat or repeat, where "
                            "from_torch cannot follow the flattened features; load the "
                            "weights into the model without remat (the params are the same)")


def _count_flattens(layer: Layer) -> int:
    if isinstance(layer, Flatten):
        return 1
    return sum(_count_flattens(child) for child in layer.children().values())


def _leaf(tree: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _put(tree: dict, path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value
