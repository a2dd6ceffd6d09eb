"""What a training run's result came from: its settings, model and data, epoch by epoch (or
step by step, for a language model).

A checkpoint written by `difprog.train.fit` records `segments`: a list of
`{"epochs": [first, last], "config": {...}}`, one per stretch of epochs that ran with the same
result-relevant settings, the model's parameter layout and the data. A run that was never
resumed with other settings has one segment. `differences` compares the settings recorded in a
checkpoint with those of a resume, so that a changed setting is refused by name (or, when the
user allows it, recorded as a new segment) instead of being mixed silently into the run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from difprog.data import Dataset, Text

__all__ = [
    "describe_data",
    "describe_model",
    "differences",
    "extend",
    "identity",
    "recorded_segments",
]


def identity(settings: Mapping[str, Any], params: Any, data: Dataset | Text,
             model_name: str | None = None) -> dict:
    """The settings that decide a run's result, with the model's layout and the data's digest."""
    return {**settings, "model": describe_model(params, model_name), "data": describe_data(data)}


def describe_model(params: Any, name: str | None = None) -> str:
    """The model as its parameter count, array count and a digest of every path, shape, dtype.

    A change that keeps every parameter's shape (an activation, a dropout rate) is the same
    model to this description; the name, when given, tells those apart.
    """
    pairs = jax.tree_util.tree_flatten_with_path(params)[0]
    layout = sorted(f"{jax.tree_util.keystr(path)} {np.shape(leaf)} {np.dtype(leaf.dtype)}"
                    for path, leaf in pairs)
    digest = hashlib.sha256("\n".join(layout).encode()).hexdigest()[:12]
    count = sum(int(np.size(leaf)) for _, leaf in pairs)
    shown = f"{name}: " if name else ""
    return f"{shown}{count:,} parameters in {len(pairs)} arrays (layout {digest})"


def describe_data(data: Dataset | Text) -> str:
    """The data set (or text corpus) as its name, sizes and a SHA-256 of its arrays."""
    if isinstance(data, Text):
        return (f"{data.name} ({data.level} level): {len(data.train)} train and "
                f"{len(data.validation)} validation tokens, vocabulary {data.vocab_size} "
                f"(sha256 {_digest(data.train, data.validation, np.asarray(data.vocab))})")
    return (f"{data.name}: {len(data.x_train)} train and {len(data.x_test)} test examples "
            f"(sha256 {_digest(data.x_train, data.y_train, data.x_test, data.y_test)})")


def _digest(*arrays: np.ndarray) -> str:
    """The first 12 hex digits of a SHA-256 over the arrays' dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str} {array.shape}".encode())
        digest.update(array.reshape(-1).view(np.uint8))
    return digest.hexdigest()[:12]


def differences(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """Each setting that differs, as 'epochs: 2 in the checkpoint, 4 now'.

    A setting the checkpoint does not record (one written by an older difprog) is not compared.
    The data are compared by content (sizes and digest), not by the name they were given, so
    the same files reached by another spelling of their path are the same data.
    """
    return [f"{key}: {recorded[key]!r} in the checkpoint, {value!r} now"
            for key, value in now.items() if key in recorded
            and _compared(key, recorded[key]) != _compared(key, value)]


def _compared(key: str, value: Any) -> Any:
    """What of a recorded setting a resume must match: the data's content, without its name."""
    if key == "data" and isinstance(value, str):
        return value.rsplit(": ", 1)[-1]  # the name ends at the last ': ' (sizes have none)
    return value


def extend(segments: Sequence[Mapping], config: Mapping[str, Any], end: int, *,
           unit: str = "epochs", start: int | None = None) -> list[dict]:
    """`segments` after `unit` start..end (default: just `end`) ran with `config`: the last one
    grows, or a new one starts. A language-model run counts steps (unit='steps')."""
    segments = [dict(segment) for segment in segments]
    start = end if start is None else start
    if (segments and segments[-1]["config"] == dict(config)
            and segments[-1][unit][1] == start - 1):
        segments[-1][unit] = [segments[-1][unit][0], end]
    else:
        segments.append({unit: [start, end], "config": dict(config)})
    return segments


def recorded_segments(meta: Mapping[str, Any], fields: Sequence[str]) -> list[dict]:
    """The segments a checkpoint's metadata records (rebuilt from `config` for older ones)."""
    if "segments" in meta:
        return [dict(segment) for segment in meta["segments"]]
    config = meta.get("config", {})
    settings = {field: config[field] for field in fields if field in config}
    return [{"epochs": [1, meta["epoch"]], "config": settings}] if meta.get("epoch") else []
