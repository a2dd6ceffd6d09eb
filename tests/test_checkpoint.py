"""Checkpoints: exact round trips of params and optax state, metadata, reproducible bytes, errors
that name every mismatched key, corrupted files, atomic writes, and finding the latest file."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import safetensors.numpy

import difprog
from difprog import checkpoint
from difprog.checkpoint import CheckpointError


def _state():
    rng = np.random.default_rng(0)
    params = {"dense_0": {"w": jnp.asarray(rng.standard_normal((4, 3)), jnp.float32),
                          "b": jnp.zeros(3, jnp.float32)},
              "embed": {"table": jnp.asarray(rng.standard_normal((5, 2)), jnp.bfloat16)}}
    return {"params": params,
            "opt_state": optax.adam(1e-3).init(params),
            "step": np.int64(7),
            "scale": np.float32(0.5),
            "flags": np.array([True, False, True]),
            "counts": (np.arange(3, dtype=np.int32), np.arange(2, dtype=np.uint32)),
            "half": np.array([1.5, -2.25], np.float16),
            "nothing": None}


def _assert_same(expected, actual):
    assert jax.tree.structure(expected) == jax.tree.structure(actual)
    for e, a in zip(jax.tree.leaves(expected), jax.tree.leaves(actual)):
        e = np.asarray(e)
        assert isinstance(a, np.ndarray)
        assert a.dtype == e.dtype and a.shape == e.shape
        np.testing.assert_array_equal(a, e)


def test_round_trip_params_and_adam_state(tmp_path):
    state = _state()
    path = checkpoint.save(tmp_path / "run" / "ck.safetensors", state)
    assert path == tmp_path / "run" / "ck.safetensors"
    loaded, meta = checkpoint.load(path, template=state)
    _assert_same(state, loaded)
    assert meta == {}
    assert loaded["params"]["embed"]["table"].dtype == jnp.bfloat16


def test_template_of_shape_dtype_structs(tmp_path):
    state = _state()
    path = checkpoint.save(tmp_path / "ck.safetensors", state)
    template = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype), state)
    loaded, _ = checkpoint.load(path, template=template)
    _assert_same(state, loaded)


def test_load_without_template_gives_nested_dict(tmp_path):
    path = checkpoint.save(tmp_path / "ck.safetensors", _state())
    tree, _ = checkpoint.load(path)
    assert tree["opt_state"]["0"]["count"].shape == ()
    assert tree["opt_state"]["0"]["mu"]["dense_0"]["w"].shape == (4, 3)
    assert tree["counts"]["1"].dtype == np.uint32
    assert set(tree) == {"params", "opt_state", "step", "scale", "flags", "counts", "half"}


def test_metadata_round_trip(tmp_path):
    meta = {"epoch": 3, "lr": 1e-3, "name": "mnist", "sizes": [64, 32, 10],
            "nested": {"a": [1, 2.5, "x"], "b": {"c": None, "d": True}}}
    path = checkpoint.save(tmp_path / "ck.safetensors", {"w": np.ones(2)}, metadata=meta)
    assert checkpoint.load(path)[1] == meta


def test_metadata_must_be_json(tmp_path):
    with pytest.raises(CheckpointError, match="JSON"):
        checkpoint.save(tmp_path / "ck.safetensors", {"w": np.ones(2)}, metadata={"f": object()})


def test_identical_input_gives_identical_bytes(tmp_path):
    meta = {"z": 1, "a": {"y": 2, "b": 3}}
    first = checkpoint.save(tmp_path / "a.safetensors", _state(), metadata=meta)
    second = checkpoint.save(tmp_path / "b.safetensors", _state(),
                             metadata=dict(reversed(meta.items())))
    assert first.read_bytes() == second.read_bytes()


def test_mismatches_are_all_named_in_one_error(tmp_path):
    path = checkpoint.save(tmp_path / "ck.safetensors",
                           {"a": np.zeros((64, 10), np.float32), "b": np.zeros(3, np.float32),
                            "c": np.zeros(2, np.float64), "extra": np.zeros(1)})
    template = {"a": np.zeros((32, 10), np.float32), "b": np.zeros(3, np.float32),
                "c": np.zeros(2, np.float32), "gone": np.zeros(1)}
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path, template=template)
    message = str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, difprog.DifprogError)
    assert "ck.safetensors" in message
    assert "'a' has shape (64, 10), the model needs (32, 10)" in message
    assert "'c' has dtype float64, the model needs float32" in message
    assert "'gone' is missing" in message
    assert "'extra' is in the checkpoint but not in the model" in message
    assert "'b'" not in message


def test_many_mismatches_are_capped(tmp_path):
    path = checkpoint.save(tmp_path / "ck.safetensors", {f"k{i}": np.zeros(1) for i in range(15)})
    with pytest.raises(CheckpointError, match="and 5 more \\(15 problems in all\\)"):
        checkpoint.load(path, template={f"k{i}": np.zeros(2) for i in range(15)})


def _corrupt_truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _corrupt_garbage(path):
    path.write_bytes(np.random.default_rng(0).bytes(300))


def _corrupt_flipped(path):
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))


def _corrupt_plain_safetensors(path):
    safetensors.numpy.save_file({"w": np.ones(4, np.float32)}, path)


@pytest.mark.parametrize("corrupt", [_corrupt_truncated, _corrupt_garbage, _corrupt_flipped,
                                     _corrupt_plain_safetensors])
def test_corrupted_files_are_reported(tmp_path, corrupt):
    path = checkpoint.save(tmp_path / "ck.safetensors", {"w": np.arange(40, dtype=np.float32)})
    corrupt(path)
    for template in (None, {"w": np.zeros(40, np.float32)}):
        with pytest.raises(CheckpointError, match="corrupted or not a difprog checkpoint") as info:
            checkpoint.load(path, template=template)
        assert str(path) in str(info.value)


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at") as info:
        checkpoint.load(tmp_path / "nope.safetensors")
    assert str(tmp_path / "nope.safetensors") in str(info.value)


def test_failed_save_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = checkpoint.save(tmp_path / "ck.safetensors", {"w": np.ones(3)})
    old = path.read_bytes()

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, {"w": np.zeros(3)})
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["ck.safetensors"]


def test_latest_picks_highest_number(tmp_path):
    assert checkpoint.latest(tmp_path / "missing") is None
    assert checkpoint.latest(tmp_path) is None
    for epoch in (2, 10, 9):
        checkpoint.save(checkpoint.checkpoint_path(tmp_path, epoch), {"w": np.ones(1)})
    (tmp_path / ".checkpoint_0099.safetensors.tmp-123").write_bytes(b"partial")
    (tmp_path / "checkpoint_best.safetensors").write_bytes(b"other")
    (tmp_path / "model_0500.safetensors").write_bytes(b"other")
    assert checkpoint.checkpoint_path(tmp_path, 3) == tmp_path / "checkpoint_0003.safetensors"
    assert checkpoint.checkpoint_path(tmp_path, np.int64(4)).name == "checkpoint_0004.safetensors"
    for epoch in (-1, 2.0, True):
        with pytest.raises(difprog.ArgumentError,
                           match=f"checkpoint_path: epoch must be an int >= 0, got {epoch!r}"):
            checkpoint.checkpoint_path(tmp_path, epoch)
    assert checkpoint.latest(tmp_path) == tmp_path / "checkpoint_0010.safetensors"


def test_jax_arrays_and_float64_under_x64(tmp_path):
    with jax.enable_x64(True):
        tree = {"x": jnp.linspace(0.0, 1.0, 5, dtype=jnp.float64),
                "s": jax.device_put(jnp.float64(np.pi)),
                "i": jnp.arange(3, dtype=jnp.int64)}
        path = checkpoint.save(tmp_path / "ck.safetensors", tree)
        loaded, _ = checkpoint.load(path, template=tree)
    _assert_same(tree, loaded)
    assert loaded["x"].dtype == np.float64 and loaded["s"] == np.pi


def test_sharded_jax_array_round_trips(tmp_path):
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("d",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d"))
    tree = {"w": jax.device_put(jnp.arange(4.0), sharding)}
    loaded, _ = checkpoint.load(checkpoint.save(tmp_path / "ck.safetensors", tree), template=tree)
    _assert_same(tree, loaded)


@pytest.mark.parametrize("tree, message", [({"a/b": np.ones(1)}, "containing '/'"),
                                           ({"s": np.array(["text"])}, "numeric or bool"),
                                           ({"k": jax.random.key(0)}, "key_data")])
def test_unsavable_trees_are_refused(tmp_path, tree, message):
    with pytest.raises(CheckpointError, match=message):
        checkpoint.save(tmp_path / "ck.safetensors", tree)
    assert not list(tmp_path.iterdir())
