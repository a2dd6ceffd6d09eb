"""Parameter and optimiser-state sharding (shard='params', FSDP-style): the split rule, the
same training result as data parallelism, per-device memory that falls as 1/devices, and
single-file checkpoints that move between layouts and device counts."""

from __future__ import annotations

import subprocess
import sys

import pytest

from difprog.errors import ArgumentError
from difprog.placement import Placement, split_axis
from difprog.train import TrainConfig


def test_split_axis_takes_the_longest_axis_the_devices_divide():
    assert split_axis((784, 256), 4) == 0 and split_axis((256, 1024), 4) == 1
    assert split_axis((3, 3, 32, 64), 4) == 3 and split_axis((128, 128), 2) == 1  # last of equals
    assert split_axis((10,), 4) is None and split_axis((), 4) is None  # replicated
    assert split_axis((10, 6), 4) is None and split_axis((2, 8), 4) == 1
    assert split_axis((1024, 1024), 1) is None


def test_settings_are_checked():
    with pytest.raises(ArgumentError, match=r"shard must be one of \['none', 'params'\]"):
        TrainConfig(shard="fsdp")
    with pytest.raises(ArgumentError, match="shard must be one of"):
        Placement(None, "all")


SCRIPT = """
import jax
jax.config.update("jax_num_cpu_devices", 4)
import numpy as np
from difprog import checkpoint, data, layers
from difprog.placement import Placement
from difprog.train import TrainConfig, fit
full = data.digits()
small = data.Dataset("s", full.x_train[:256], full.y_train[:256], full.x_test[:64],
                     full.y_test[:64], 10)
model = layers.serial(layers.Conv2D(8, 3), layers.Relu(), layers.Flatten(), layers.Dense(64),
                      layers.Relu(), layers.Dense(10))
settings = dict(epochs=2, batch_size=64, learning_rate=5e-3)

def gap(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))

def busiest(tree):
    bytes_on = {}
    for leaf in jax.tree.leaves(tree):
        for shard in leaf.addressable_shards:
            bytes_on[shard.device] = bytes_on.get(shard.device, 0) + shard.data.nbytes
    return max(bytes_on.values())

one = fit(model, small, TrainConfig(devices=1, **settings), progress=False, out=f"{OUT}/one")
held = {}
for devices in (2, 4):
    sharded = fit(model, small, TrainConfig(devices=devices, shard="params", **settings),
                  progress=False, out=f"{OUT}/sharded{devices}")
    assert gap(one.params, sharded.params) < 1e-5, gap(one.params, sharded.params)
    w = sharded.params["dense_0"]["w"]  # (2048, 64): split along its 2048 inputs
    assert w.sharding.spec == jax.sharding.PartitionSpec("data"), w.sharding
    held[devices] = busiest((sharded.params, sharded.opt_state))
total = sum(a.nbytes for a in jax.tree.leaves((one.params, one.opt_state)))
print("bytes", total, held)
assert held[2] < 0.52 * total and held[4] < 0.27 * total  # only biases of 10 are replicated
# the sharded 4-device checkpoint resumes on 1 device, replicated, as the replicated one does
longer = TrainConfig(devices=1, **{**settings, "epochs": 3})
more = fit(model, small, longer, progress=False, out=f"{OUT}/sharded4", allow_changes=True)
same = fit(model, small, longer, progress=False, out=f"{OUT}/one", allow_changes=True)
assert more.resumed_from == same.resumed_from == 2
assert gap(more.params, same.params) < 1e-5, gap(more.params, same.params)
# and a replicated 1-device checkpoint resumes sharded over 4
back = fit(model, small, TrainConfig(devices=4, shard="params", **{**settings, "epochs": 4}),
           progress=False, out=f"{OUT}/one", allow_changes=True)
assert back.resumed_from == 3 and back.params["dense_0"]["w"].sharding.spec[0] == "data"
# the language model takes the same layout
from difprog import lm
text = data.text("python-stdlib", context=16)
tiny = dict(layers=1, heads=2, features=16, context=16, steps=4, batch_size=8, eval_every=4)
replicated = lm.fit_lm(text, lm.LMConfig(devices=4, **tiny), progress=False)
split = lm.fit_lm(text, lm.LMConfig(devices=4, shard="params", **tiny), progress=False)
assert gap(replicated.params, split.params) < 1e-5, gap(replicated.params, split.params)
assert split.params["block_0"]["mlp"]["dense_0"]["w"].sharding.spec[1] == "data"  # (16, 64)
print("ok")
"""


@pytest.mark.slow
def test_sharded_params_train_like_replicated_ones_in_a_quarter_of_the_memory(tmp_path):
    done = subprocess.run([sys.executable, "-c", f"OUT = {str(tmp_path)!r}\n" + SCRIPT],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
