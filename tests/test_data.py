"""The digits data set and the minibatch iterator."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import difprog
from difprog import data


@pytest.fixture(scope="module")
def digits():
    return data.digits()


def test_digits_are_nhwc_in_unit_range_with_a_fixed_stratified_split(digits):
    assert digits.x_train.shape == (1437, 8, 8, 1) and digits.x_test.shape == (360, 8, 8, 1)
    assert digits.x_train.dtype == np.float32 and digits.y_train.dtype == np.int32
    assert digits.x_train.min() == 0 and digits.x_train.max() == 1
    assert digits.num_classes == 10 and set(digits.y_test) == set(range(10))
    test_share = np.bincount(digits.y_test) / np.bincount(np.concatenate(
        [digits.y_train, digits.y_test]))
    np.testing.assert_allclose(test_share, 0.2, atol=0.01)
    again = data.load("digits")
    np.testing.assert_array_equal(again.x_test, digits.x_test)
    np.testing.assert_array_equal(again.y_train, digits.y_train)


def test_batches_cover_every_example_once_and_keep_the_remainder(digits):
    x, y = digits.x_train, digits.y_train
    seen = list(data.batches(jax.random.key(0), x, y, 64))
    assert [len(b) for b, _ in seen][-2:] == [64, 1437 - 22 * 64]
    assert len(seen) == data.num_batches(len(x), 64) == 23
    stacked = np.concatenate([b for b, _ in seen]).reshape(len(x), -1)
    assert sorted(map(bytes, stacked)) == sorted(map(bytes, x.reshape(len(x), -1)))
    labels = np.concatenate([b for _, b in seen])
    assert np.bincount(labels).tolist() == np.bincount(y).tolist()


def test_shuffles_are_reproducible_from_the_key(digits):
    x, y = digits.x_train[:100], digits.y_train[:100]
    first = [b for _, b in data.batches(jax.random.key(1), x, y, 32)]
    again = [b for _, b in data.batches(jax.random.key(1), x, y, 32)]
    other = [b for _, b in data.batches(jax.random.key(2), x, y, 32)]
    in_order = [b for _, b in data.batches(None, x, y, 32)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(np.concatenate(first), np.concatenate(other))
    np.testing.assert_array_equal(np.concatenate(in_order), y)


def test_bad_arguments():
    x = np.zeros((4, 2))
    for size in (0, True, 2.0, "2"):
        with pytest.raises(difprog.ArgumentError,
                           match=f"batches: batch_size must be a positive int, got {size!r}"):
            next(data.batches(None, x, np.zeros(4), size))
    assert [len(xb) for xb, _ in data.batches(None, x, np.zeros(4), np.int64(3))] == [3, 1]
    with pytest.raises(difprog.ArgumentError, match="same number of examples"):
        next(data.batches(None, x, np.zeros(3), 2))
    with pytest.raises(difprog.ArgumentError, match="unknown data set 'mnist'"):
        data.load("mnist")


def test_fit_refuses_labels_that_would_wrap_or_lie_outside_the_classes(digits):
    """An int64 label of 2**32 + 3 would wrap to 3 in JAX's int32: refused before any compute."""
    from difprog import models, train

    base = digits
    for bad in (2**32 + 3, 10, -1):
        y = base.y_train.astype(np.int64)
        y[5] = bad
        with pytest.raises(difprog.LabelError, match=str(bad)):
            train.fit(models.mlp(), base._replace(y_train=y), train.TrainConfig(epochs=1))
    with pytest.raises(difprog.DtypeError, match="convert images"):
        train.fit(models.mlp(), base._replace(x_train=(base.x_train * 16).astype(np.uint8)),
                  train.TrainConfig(epochs=1))
