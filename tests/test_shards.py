"""Sharded checkpoints (difprog.shards): the round trip through `checkpoint.save`/`load`, pieces
read back into any split, the same bytes for the same values, the checks (checksums, NaN,
the model's shapes) and a writer killed mid-save. The multi-process runs that write them are in
tests/train/test_distributed.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difprog import checkpoint, shard_index, shards
from difprog.errors import CheckpointError

FILE = "process_00000-of-00001.safetensors"


def _tree():
    return {"w": np.arange(24, dtype=np.float32).reshape(4, 6),
            "table": np.linspace(-1, 1, 8).astype(jnp.bfloat16),
            "count": np.int32(7), "flags": np.array([True, False])}


def _same(expected, actual):
    assert jax.tree.structure(expected) == jax.tree.structure(actual)
    for e, a in zip(jax.tree.leaves(expected), jax.tree.leaves(actual)):
        assert np.asarray(a).dtype == np.asarray(e).dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(e))


def test_round_trip_with_and_without_a_template(tmp_path):
    path = checkpoint.checkpoint_path(tmp_path, 3, sharded=True)
    assert path.name == "checkpoint_0003.shards"
    assert checkpoint.save(path, _tree(), metadata={"epoch": 3}) == path
    assert sorted(os.listdir(path)) == [shards.INDEX, FILE]
    loaded, meta = checkpoint.load(path, _tree())
    _same(_tree(), loaded)
    assert meta == {"epoch": 3} == checkpoint.metadata(path)
    nested, _ = checkpoint.load(path)
    np.testing.assert_array_equal(nested["w"], _tree()["w"])
    assert isinstance(loaded["w"], np.ndarray) and loaded["table"].dtype == jnp.bfloat16
    assert checkpoint.latest(tmp_path) == path and checkpoint.numbered(tmp_path) == [path]


def test_the_same_values_give_the_same_bytes(tmp_path):
    for name in ("a", "b"):
        checkpoint.save(tmp_path / name / "c.shards", _tree(), metadata={"epoch": 1})
    for name in (FILE, shards.INDEX):
        assert (tmp_path / "a/c.shards" / name).read_bytes() == \
            (tmp_path / "b/c.shards" / name).read_bytes()


def test_numbered_takes_both_kinds_in_epoch_order_and_remove_deletes_either(tmp_path):
    checkpoint.save(checkpoint.checkpoint_path(tmp_path, 2), _tree())
    checkpoint.save(checkpoint.checkpoint_path(tmp_path, 10, sharded=True), _tree())
    checkpoint.save(checkpoint.checkpoint_path(tmp_path, 9, sharded=True), _tree())
    (tmp_path / "checkpoint_0011.shards").write_text("a file, not a checkpoint")
    (tmp_path / "checkpoint_0013.shards").mkdir()  # no index: not a checkpoint (a copy begun)
    (tmp_path / ".checkpoint_0012.shards.partial").mkdir()
    assert [p.name for p in checkpoint.numbered(tmp_path)] == [
        "checkpoint_0002.safetensors", "checkpoint_0009.shards", "checkpoint_0010.shards"]
    assert checkpoint.latest(tmp_path).name == "checkpoint_0010.shards"
    for path in checkpoint.numbered(tmp_path)[:2]:
        checkpoint.remove(path)
    assert sorted(os.listdir(tmp_path)) == [".checkpoint_0012.shards.partial",
                                            "checkpoint_0010.shards", "checkpoint_0011.shards",
                                            "checkpoint_0013.shards"]


SPLIT = """
import json
import jax
jax.config.update("jax_num_cpu_devices", 4)
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from difprog import checkpoint
OUT = {out!r}
devices = np.array(jax.devices())
rows = NamedSharding(Mesh(devices, ("d",)), P("d"))
grid = NamedSharding(Mesh(devices.reshape(2, 2), ("a", "b")), P("b", "a"))
x = np.arange(8 * 6, dtype=np.float32).reshape(8, 6)
tree = {{"x": jax.device_put(x, rows), "y": jax.device_put(x + 1, grid),
         "s": jax.device_put(np.float32(2), NamedSharding(Mesh(devices, ("d",)), P()))}}
checkpoint.save(OUT + "/c.shards", tree)
index = json.load(open(OUT + "/c.shards/index.json"))
print(*(len(index["leaves"][k]["pieces"]) for k in "xys"))
columns = NamedSharding(Mesh(devices[:3], ("d",)), P(None, "d"))
for target in (columns, rows, grid, NamedSharding(Mesh(devices[:1], ("d",)), P())):
    template = {{k: jax.ShapeDtypeStruct(np.shape(v), v.dtype,
                                         sharding=target if np.ndim(v) else v.sharding)
                 for k, v in tree.items()}}
    loaded, _ = checkpoint.load(OUT + "/c.shards", template)
    assert loaded["x"].sharding == target and loaded["y"].sharding == target
    for k in tree:
        np.testing.assert_array_equal(np.asarray(loaded[k]), np.asarray(tree[k]))
print("ok")
"""


@pytest.mark.slow
def test_pieces_are_written_once_and_read_back_into_any_split(tmp_path):
    done = subprocess.run([sys.executable, "-c", SPLIT.format(out=str(tmp_path))],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["4", "4", "1", "ok"]  # 4 rows; a 2x2 grid; a replicated one
    assert checkpoint.load(tmp_path / "c.shards")[0]["y"].shape == (8, 6)


def test_nonfinite_values_are_refused_on_save_and_on_load(tmp_path):
    tree = {"w": np.array([1.0, np.nan, np.inf], np.float32)}
    with pytest.raises(CheckpointError, match=r"refusing to save .*\(nothing was written\): "
                                              r"'w' holds 1 NaN and 1 infinite of 3 values"):
        checkpoint.save(tmp_path / "c.shards", tree)
    assert os.listdir(tmp_path) == []
    checkpoint.save(tmp_path / "c.shards", tree, allow_nonfinite=True)
    with pytest.raises(CheckpointError, match="refusing to load .*diverged run"):
        checkpoint.load(tmp_path / "c.shards")
    loaded, _ = checkpoint.load(tmp_path / "c.shards", allow_nonfinite=True)
    np.testing.assert_array_equal(loaded["w"], tree["w"])


def _damage_file(path):
    data = bytearray((path / FILE).read_bytes())
    data[-1] ^= 1
    (path / FILE).write_bytes(bytes(data))


def _edit_index(path):
    index = json.loads((path / shards.INDEX).read_text())
    index["metadata"]["epoch"] = 4
    (path / shards.INDEX).write_text(json.dumps(index))


@pytest.mark.parametrize("damage, message", [
    (_damage_file, f"{FILE}' is corrupted: its checksum does not match index.json"),
    (_edit_index, "the checksum of its index.json does not match"),
    (lambda path: (path / shards.INDEX).write_text("{"), "corrupted or not a difprog sharded"),
    (lambda path: (path / shards.INDEX).unlink(), "no sharded checkpoint at"),
    (lambda path: (path / FILE).unlink(), f"{FILE}' of the sharded checkpoint cannot be read")])
def test_damage_is_named(tmp_path, damage, message):
    path = checkpoint.save(tmp_path / "c.shards", _tree(), metadata={"epoch": 3})
    damage(path)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load(path, _tree())


def test_bfloat16_nan_is_refused_too(tmp_path):
    with pytest.raises(CheckpointError, match="'t' holds 1 NaN and 1 infinite of 3 values"):
        checkpoint.save(tmp_path / "c.shards",
                        {"t": jnp.array([np.nan, np.inf, 1.0], jnp.bfloat16)})


def _crafted(path, edit):
    """The index of `path` edited by `edit(index)`, its checksum made to match again."""
    index = json.loads((path / shards.INDEX).read_text())
    edit(index)
    (path / shards.INDEX).write_bytes(shard_index.index_bytes(
        index["leaves"], index["nonfinite"], index["files"], index["metadata"]))


def _pieces(*pieces):
    return lambda index: index["leaves"]["w"].__setitem__("pieces", [[FILE, p] for p in pieces])


def _outside(index):
    index["files"]["../outside.safetensors"] = index["files"][FILE]
    index["leaves"]["w"]["pieces"] = [["../outside.safetensors", [[0, 4], [0, 6]]]]


@pytest.mark.parametrize("edit, message", [
    (_outside, "names the file '../outside.safetensors'"),
    (_pieces([[0, 3], [0, 6]], [[2, 3], [0, 6]]), r"the pieces of 'w' do not cover its shape "
                                                  r"\(4, 6\) once"),  # 24 values, row 3 unread
    (_pieces([[0, 2], [0, 6]]), "do not cover"),
    (_pieces([[-1, 4], [0, 6]]), r"a piece of 'w' .* is not in its shape"),
    (_pieces([[0, 4]]), "is not in its shape"),
    (lambda i: i["leaves"]["w"].__setitem__("shape", [10**6] * 2), "do not cover"),
    (lambda i: i["leaves"]["w"].__setitem__("dtype", "object"), "which checkpoints do not hold"),
    (lambda i: i["leaves"]["w"].__setitem__("dtype", "nonsense"), "not a difprog sharded"),
    (lambda i: i["leaves"]["w"].__setitem__("dtype", "int32"), "'w\\[0:4,0:6\\]' is missing "
                                                                "or not of the int32"),
    (lambda i: i["nonfinite"].__setitem__("ghost", [0, 0]), "counts of 'ghost'"),
])
def test_a_crafted_index_is_refused_in_one_error(tmp_path, edit, message):
    (tmp_path / "outside.safetensors").write_bytes(b"")
    path = checkpoint.save(tmp_path / "c.shards", _tree())
    _crafted(path, edit)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load(path)


def test_an_empty_tree_and_a_file_in_the_way(tmp_path):
    assert checkpoint.load(checkpoint.save(tmp_path / "e.shards", {}))[0] == {}
    (tmp_path / "f.shards").write_text("an old file")
    checkpoint.save(tmp_path / "f.shards", _tree())
    _same(_tree(), checkpoint.load(tmp_path / "f.shards", _tree())[0])
    assert sorted(os.listdir(tmp_path)) == ["e.shards", "f.shards"]


def test_a_model_of_other_shapes_is_refused_naming_each_leaf(tmp_path):
    path = checkpoint.save(tmp_path / "c.shards", _tree())
    other = {**_tree(), "w": np.zeros((4, 5), np.float32), "extra": np.zeros(1)}
    del other["count"]
    with pytest.raises(CheckpointError) as caught:
        checkpoint.load(path, other)
    for text in ("'extra' is missing", "'count' is in the checkpoint but not in the model",
                 "'w' has shape (4, 6), the model needs (4, 5)"):
        assert text in str(caught.value)


def test_a_path_not_ending_in_shards_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="a sharded checkpoint is a directory ending in"):
        shards.save(tmp_path / "c.safetensors", _tree())


KILLED = """
import numpy as np
from difprog import checkpoint
checkpoint.save({path!r}, {{"w": np.full(3, {value}, np.float32)}}, metadata={{"n": {value}}})
"""


@pytest.mark.slow
def test_a_writer_killed_mid_save_leaves_the_last_complete_checkpoint(tmp_path):
    def save(epoch, kill_at=None):
        env = {**os.environ, **({"DIFPROG_TEST_KILL_AT": kill_at} if kill_at else {})}
        path = checkpoint.checkpoint_path(tmp_path, epoch, sharded=True)
        return subprocess.run([sys.executable, "-c", KILLED.format(path=str(path), value=epoch)],
                              env=env, capture_output=True, timeout=120, check=False).returncode

    assert save(1) == 0
    assert save(2, kill_at="renamed:1") == -9  # its file is written, the index is not
    assert sorted(os.listdir(tmp_path)) == [".checkpoint_0002.shards.partial",
                                            "checkpoint_0001.shards"]
    assert checkpoint.latest(tmp_path).name == "checkpoint_0001.shards"
    assert checkpoint.metadata(checkpoint.latest(tmp_path)) == {"n": 1}
    assert save(2) == 0  # the next save of that checkpoint clears the partial directory
    assert sorted(os.listdir(tmp_path)) == ["checkpoint_0001.shards", "checkpoint_0002.shards"]
    assert checkpoint.load(checkpoint.latest(tmp_path))[0]["w"].tolist() == [2.0] * 3
