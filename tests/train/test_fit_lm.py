"""Language-model training and sampling (difprog.lm, difprog train --model gpt, difprog sample):
the schedule and optimiser, checkpoints and metrics, determinism, refused resumes (after a kill:
test_kill_and_resume.py), seeded sampling against a naive loop, and the command line."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from difprog import checkpoint, data, lm, train
from difprog.errors import (
    ArgumentError,
    CheckpointError,
    ConfigMismatchError,
    NonFiniteLossError,
)
from tests.conftest import fails_in_one_line

TEXT = ("def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n\n\n"
        "class Point:\n    def __init__(self, x, y):\n        self.x, self.y = x, y\n\n") * 12
TINY = {"layers": 1, "heads": 2, "features": 16, "context": 16, "steps": 6, "batch_size": 4,
        "warmup": 2, "eval_every": 3, "learning_rate": 1e-2}
CLI = ["train", "--model", "gpt", "--layers", "1", "--heads", "2", "--features", "16",
       "--context", "16", "--steps", "6", "--batch-size", "4", "--warmup", "2",
       "--eval-every", "3", "--lr", "1e-2", "--no-progress"]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "code.py"
    path.write_text(TEXT)
    return path


@pytest.fixture(scope="module")
def corpus(text_file):
    return data.text(text_file, context=16)


@pytest.fixture(scope="module")
def straight(corpus, tmp_path_factory):
    """One uninterrupted tiny run, shared by the tests that read what it wrote."""
    out = tmp_path_factory.mktemp("straight")
    return out, lm.fit_lm(corpus, lm.LMConfig(**TINY), out=out, progress=False)


def test_config_refuses_each_bad_setting_by_name():
    for bad in ({"steps": 0}, {"heads": 3}, {"learning_rate": float("nan")}, {"dropout": 1.0},
                {"norm": "batch"}, {"seed": -1}, {"warmup": -1}, {"clip": 0},
                {"final_lr_fraction": 2}, {"layers": True}):
        with pytest.raises(ArgumentError, match=f"LMConfig: {next(iter(bad))}|heads=3"):
            lm.LMConfig(**bad)
    for bad, message in (({"devices": 0}, "devices must be None or a positive int, got 0"),
                         ({"dropout": 1.0}, "dropout must be a finite number >= 0 and < 1"),
                         ({"warmup": -1}, "warmup must be an int >= 0, got -1"),
                         ({"norm": "batch"}, r"norm must be one of \['layer', 'rms'\]")):
        with pytest.raises(ArgumentError, match=f"LMConfig: {message}"):
            lm.LMConfig(**bad)
    config = lm.LMConfig(steps=np.int64(5), devices=np.int32(1), clip=np.float32(0.5))
    assert [type(v) for v in (config.steps, config.devices, config.clip)] == [int, int, float]
    json.dumps(dataclasses.asdict(config))


def test_schedule_warms_up_linearly_then_decays_along_a_cosine():
    schedule = lm.make_schedule(lm.LMConfig(steps=101, warmup=10, learning_rate=1.0,
                                            final_lr_fraction=0.1))
    lr = {t: float(schedule(t)) for t in (0, 4, 9, 10, 55, 100)}
    assert lr[0] == pytest.approx(0.1) and lr[4] == pytest.approx(0.5)
    assert lr[9] == pytest.approx(1.0) and lr[10] == pytest.approx(1.0)
    assert lr[55] == pytest.approx(0.55) and lr[100] == pytest.approx(0.1)
    short = lm.make_schedule(lm.LMConfig(steps=4, warmup=50, learning_rate=1.0))
    assert [float(short(t)) for t in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])


def test_optimizer_clips_and_decays_only_matmul_weights():
    config = lm.LMConfig(steps=10, warmup=0, learning_rate=0.1, weight_decay=0.5, clip=1.0)
    optimizer = lm.make_optimizer(config)
    params = {"dense": {"w": jnp.ones(3), "b": jnp.ones(3)}, "embedding": {"table": jnp.ones(3)}}
    zero = jax.tree.map(jnp.zeros_like, params)
    updates, _ = optimizer.update(zero, optimizer.init(params), params)
    assert float(updates["dense"]["w"][0]) == pytest.approx(-0.1 * 0.5)  # decay only
    assert float(jnp.abs(updates["dense"]["b"]).max()) == 0
    assert float(jnp.abs(updates["embedding"]["table"]).max()) == 0
    huge = jax.tree.map(lambda a: 1e6 * jnp.ones_like(a), params)
    _, state = optimizer.update(huge, optimizer.init(params), params)
    first_moment = jax.tree.leaves(optax.tree_utils.tree_get(state, "mu"))
    norm = jnp.sqrt(sum(jnp.sum(m**2) for m in first_moment))
    assert float(norm) == pytest.approx(0.1 * 1.0, rel=1e-5)  # (1 - b1) x the clipped gradient


def test_fit_writes_checkpoints_metrics_and_learns(straight, corpus):
    out, result = straight
    assert [h["step"] for h in result.history] == [3, 6] and len(result.train_curve) == 6
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "checkpoint_0003.safetensors", "checkpoint_0006.safetensors", "metrics.json"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val_loss"] == result.history[-1]["val_loss"] < np.log(corpus.vocab_size)
    assert metrics["steps"] == 6 and metrics["seed"] == 0 and metrics["model"] == "gpt"
    assert metrics["epochs"] == pytest.approx(6 * 4 * 16 / len(corpus.train))
    assert metrics["test_accuracy"] == result.history[-1]["val_accuracy"]
    assert metrics["parameters"] == sum(a.size for a in jax.tree.leaves(result.params))
    _, meta = checkpoint.load(out / "checkpoint_0006.safetensors")
    assert meta["curve"] == result.train_curve and meta["text"]["vocab"] == list(corpus.vocab)


def test_validation_loss_is_the_mean_over_every_window(straight, corpus):
    _, result = straight
    model = lm.build_model(lm.LMConfig(**TINY).model_settings(), corpus.vocab_size)
    x, y = zip(*data.text_windows(corpus, 1000))
    logits = model.apply(result.params, np.concatenate(x))
    reference = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), np.concatenate(y)[
        ..., None], -1))
    assert result.history[-1]["val_loss"] == pytest.approx(float(reference), rel=1e-5)


def test_same_seed_same_bytes_and_a_resume_with_other_settings_is_refused(straight, corpus,
                                                                           text_file, tmp_path):
    out, _ = straight
    again = lm.fit_lm(corpus, lm.LMConfig(**TINY), out=tmp_path, progress=False)
    assert again.resumed_from is None
    for name in ("checkpoint_0003.safetensors", "checkpoint_0006.safetensors"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes()
    # the same file by another spelling of its path is the same data: the run resumes
    respelled = data.text(text_file.parent / ".." / text_file.parent.name / text_file.name,
                          context=16)
    assert respelled.name != corpus.name
    resumed = lm.fit_lm(respelled, lm.LMConfig(**TINY), out=tmp_path, progress=False)
    assert resumed.resumed_from is not None
    changed = tmp_path.parent / "changed.py"
    changed.write_text(TEXT.replace("Point", "Pixel"))
    with pytest.raises(ConfigMismatchError, match="data: "):
        lm.fit_lm(data.text(changed, context=16), lm.LMConfig(**TINY), out=tmp_path,
                  progress=False)
    with pytest.raises(ConfigMismatchError, match="learning_rate: 0.01 in the checkpoint, 0.02"):
        lm.fit_lm(corpus, lm.LMConfig(**{**TINY, "learning_rate": 2e-2}), out=tmp_path,
                  progress=False)


def test_a_diverging_run_stops_naming_the_step_and_keeps_its_checkpoint(corpus, tmp_path):
    config = lm.LMConfig(**{**TINY, "learning_rate": 1e30, "clip": 1e30, "warmup": 0})
    with pytest.raises(NonFiniteLossError, match=r"at step \d+; training stopped") as error:
        lm.fit_lm(corpus, config, out=tmp_path, progress=False)
    assert len(str(error.value).splitlines()) == 1
    for path in tmp_path.glob("checkpoint_*"):  # whatever was saved is finite and loadable
        checkpoint.load(path)


def test_a_run_directory_of_another_kind_is_refused(corpus, tmp_path):
    checkpoint.save(tmp_path / "checkpoint_0001.safetensors", {"w": np.ones(2)},
                    metadata={"epoch": 1})
    with pytest.raises(CheckpointError, match="not written by difprog's language-model"):
        lm.fit_lm(corpus, lm.LMConfig(**TINY), out=tmp_path, progress=False)


def test_context_must_match_the_corpus(corpus):
    with pytest.raises(ArgumentError, match="context=16, the config has context=32"):
        lm.fit_lm(corpus, lm.LMConfig(**{**TINY, "context": 32}), progress=False)


def _difprog(*args, env=None):
    return subprocess.run([sys.executable, "-m", "difprog.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300, check=False)


def test_sampling_is_seeded_and_greedy_equals_a_naive_loop(straight):
    out, _ = straight
    first = lm.sample(out, "def ", length=40, seed=3)
    assert first.startswith("def ") and len(first) == 44
    assert lm.sample(out, "def ", length=40, seed=3) == first
    assert lm.sample(out / "checkpoint_0006.safetensors", "def ", length=40, seed=4) != first
    loaded, prompt = lm.load_lm(out), "class Point:\n "  # 14 characters: the window grows to 16
    apply, ids = jax.jit(loaded.model.apply), list(loaded.codec.encode(prompt))
    for _ in range(24):  # then slides
        ids.append(int(jnp.argmax(apply(loaded.params, jnp.array([ids[-16:]]))[0, -1])))
    greedy = lm.sample(out, prompt, length=24, temperature=0)
    assert greedy == loaded.codec.decode(np.array(ids))
    assert lm.sample(out, prompt, length=24, top_k=1, seed=9) == greedy


def test_sample_refuses_bad_arguments_and_other_checkpoints(straight, tmp_path):
    out, _ = straight
    for kwargs, message in (
            ({"length": 0}, "length must be a positive int, got 0"),
            ({"length": True}, "length must be a positive int, got True"),
            ({"temperature": -1}, "temperature must be a finite number >= 0, got -1"),
            ({"top_k": 10_000}, r"top_k must be None or an int from 1 to \d+, got 10000"),
            ({"top_k": 0}, r"top_k must be None or a positive int, got 0"),
            ({"top_p": 0}, r"top_p must be a finite number > 0 and <= 1, got 0"),
            ({"seed": 2**32}, f"seed must be an int from 0 to {2**32 - 1}, got {2**32}")):
        with pytest.raises(ArgumentError, match=f"sample: {message}"):
            lm.sample(out, "def ", **kwargs)
    with pytest.raises(ArgumentError, match="non-empty"):
        lm.sample(out, "")
    checkpoint.save(tmp_path / "checkpoint_0001.safetensors", {"w": np.ones(2)},
                    metadata={"epoch": 1})
    with pytest.raises(CheckpointError, match="not a language-model checkpoint"):
        lm.sample(tmp_path, "def ")
    with pytest.raises(CheckpointError, match="no file or directory"):
        lm.sample(tmp_path / "missing", "def ")


@pytest.mark.parametrize("setting, value", [("vocab", 2_000_000_000), ("context", 10**9),
                                            ("layers", 10**8), ("features", 17)])
def test_settings_that_do_not_describe_the_arrays_are_refused_before_allocating(
        straight, tmp_path, setting, value):
    """A checksum proves integrity, not origin: a file re-saved with other settings in its
    metadata is refused, naming the file, before any model of those settings is built."""
    out, _ = straight
    tree, meta = checkpoint.load(out / "checkpoint_0006.safetensors")
    recorded, meta["model"][setting] = meta["model"][setting], value
    forged = checkpoint.save(tmp_path / "checkpoint_0006.safetensors", tree, metadata=meta)
    with pytest.raises(CheckpointError, match="checkpoint_0006.safetensors") as error:
        lm.load_lm(forged)
    assert ("more than the" in str(error.value)) == (value > 10**6), str(error.value)
    meta["model"][setting] = recorded
    del meta["text"]["level"]  # metadata missing a field: the same kind of error
    forged = checkpoint.save(tmp_path / "checkpoint_0006.safetensors", tree, metadata=meta)
    with pytest.raises(CheckpointError, match="cannot build a language model"):
        lm.load_lm(forged)


@pytest.mark.parametrize("forge", [
    lambda meta: meta["text"].update(level="word"),
    lambda meta: meta["text"].pop("name"),
    lambda meta: meta.pop("step"),
    lambda meta: meta.update(step=-1),
    lambda meta: meta["text"].update(vocab=["ab", *meta["text"]["vocab"][1:]]),
    lambda meta: meta["text"].update(vocab=[7, *meta["text"]["vocab"][1:]]),
])
def test_text_fields_of_other_types_are_refused_in_one_line(straight, tmp_path, capsys, forge):
    out, _ = straight
    tree, meta = checkpoint.load(out / "checkpoint_0006.safetensors")
    forge(meta)
    forged = checkpoint.save(tmp_path / "checkpoint_0006.safetensors", tree, metadata=meta)
    line = fails_in_one_line(capsys, ["sample", "--checkpoint", str(forged), "--prompt", "def ",
                                      "--length", "4"], 1)
    assert "cannot build a language model" in line and "unexpected" not in line


@pytest.mark.parametrize("command", ["visualize", "attribute"])
def test_image_commands_name_the_command_that_takes_a_language_model(straight, capsys,
                                                                       tmp_path, command):
    out, _ = straight
    line = fails_in_one_line(capsys, [command, "--checkpoint", str(out), "--out",
                                      str(tmp_path / "pictures")], 1)
    assert "is a language model's checkpoint: difprog sample --checkpoint" in line
    assert f"difprog {command} takes an image model's" in line
    with pytest.raises(CheckpointError, match="not the checkpoint of an image model"):
        train.restore(out / "checkpoint_0006.safetensors", lm.build_model(
            lm.LMConfig(**TINY).model_settings(), 10), np.zeros((1, 16), np.int32))


def test_command_line_sample_and_usage_errors(straight, tmp_path):
    out, _ = straight
    done = _difprog("sample", "--checkpoint", str(out), "--prompt", "def ", "--length", "20",
                    "--seed", "3")
    assert done.returncode == 0 and done.stdout == lm.sample(out, "def ", length=20,
                                                             seed=3) + "\n"
    for args, message in ((["train", "--model", "gpt", "--epochs", "2"], "--epochs applies only"),
                          (["train", "--model", "cnn", "--steps", "2"], "--steps applies only"),
                          (["sample", "--checkpoint", str(out), "--prompt", "x", "--length",
                            "0"], "--length"),
                          (["sample", "--checkpoint", str(out), "--prompt", "x", "--top-p",
                            "1.5"], "--top-p: expected a number in (0, 1], got 1.5")):
        failed = _difprog(*args, *(["--out", str(tmp_path / "x")] if args[0] == "train" else []))
        assert failed.returncode == 2 and message in failed.stderr
        assert len(failed.stderr.strip().splitlines()) == 1
