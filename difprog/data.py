"""Data sets and minibatches: scikit-learn's handwritten digits by default, no download needed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import jax
import numpy as np

from difprog.errors import ArgumentError, DtypeError, LabelError, ShapeError


class Dataset(NamedTuple):
    """Images (N, H, W, C) in [0, 1] and integer labels, split into train and test."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int


def digits(test_fraction: float = 0.2, split_seed: int = 0) -> Dataset:
    """The 1,797 8x8 handwritten digits shipped with scikit-learn, as NHWC float32 in [0, 1].

    The train/test split is stratified (each digit in the same proportion in both) and fixed by
    `split_seed`, so every run and every machine sees the same test set.

    Example:
        >>> data = digits()
        >>> data.x_train.shape, data.x_test.shape
        ((1437, 8, 8, 1), (360, 8, 8, 1))
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    raw = load_digits()
    images = (raw.images / 16.0).astype(np.float32)[..., None]
    labels = raw.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, stratify=labels, random_state=split_seed)
    return Dataset("digits", x_train, y_train, x_test, y_test, num_classes=10)


def validate(data: Dataset) -> Dataset:
    """`data`, after checking it can be trained on: float images, labels in [0, num_classes).

    Labels outside that range (2**32 + 3 would wrap to 3 in JAX's int32) are refused here, before
    any compute, rather than turning into a wrong loss. (Non-finite images give a non-finite
    loss, which stops training with NonFiniteLossError naming the step.)
    """
    for split in ("train", "test"):
        x, y = np.asarray(getattr(data, f"x_{split}")), np.asarray(getattr(data, f"y_{split}"))
        where = f"data set {data.name!r}:"
        if len(x) != len(y):
            raise ShapeError(f"{where} x_{split} holds {len(x)} examples but y_{split} {len(y)}")
        if not np.issubdtype(x.dtype, np.floating):
            raise DtypeError(f"{where} x_{split} has dtype {x.dtype}; convert images to floats "
                             f"first, e.g. x.astype(np.float32) / 255")
        if not np.issubdtype(y.dtype, np.integer):
            raise DtypeError(f"{where} y_{split} must be integer class indices, got {y.dtype}")
        bad = (y < 0) | (y >= data.num_classes)
        if bad.any():
            raise LabelError(f"{where} y_{split} must lie in [0, {data.num_classes}), got "
                             f"{y[bad][:5].tolist()}")
    return data


DATASETS = {"digits": digits}


def load(name: str) -> Dataset:
    """A data set by name (see `DATASETS`)."""
    if name not in DATASETS:
        raise ArgumentError(f"unknown data set {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name]()


def num_batches(size: int, batch_size: int) -> int:
    """How many minibatches `batches` yields: the last one may be smaller, none is dropped."""
    return -(-size // batch_size)


def batches(key: jax.Array | None, x: np.ndarray, y: np.ndarray, batch_size: int
            ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Minibatches of (x, y) covering every example once, shuffled by `key` (None: in order).

    Every example appears exactly once; when the size is not a multiple of `batch_size` the last
    batch is smaller rather than dropped.

    Example:
        >>> sizes = [len(xb) for xb, _ in batches(jax.random.key(0), x, y, 64)]  # 1437 examples
        >>> sizes[-2:], sum(sizes)
        ([64, 29], 1437)
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ArgumentError(f"batch_size must be a positive int, got {batch_size!r}")
    if len(x) != len(y):
        raise ArgumentError(f"x and y must hold the same number of examples, got {len(x)} "
                            f"and {len(y)}")
    order = (np.arange(len(x)) if key is None
             else np.asarray(jax.random.permutation(key, len(x))))
    for start in range(0, len(x), batch_size):
        chosen = order[start:start + batch_size]
        yield x[chosen], y[chosen]
