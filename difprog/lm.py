"""Training and sampling a language model: step-based AdamW training of `models.gpt` on a text
corpus, with checkpoints, resume and determinism, and seeded sampling from a checkpoint.

Step t trains on the batch `text_batch(fold_in(data_key, t))` with dropout key
`fold_in(dropout_key, t)`, both derived from the seed, so a run resumed from any checkpoint ends
with the same bytes as one never interrupted. Every `eval_every` steps (and after the last) the
loss on the whole validation split is measured, a checkpoint `checkpoint_<step>.safetensors`
(params, optimiser state, the curve so far, the model's settings and the vocabulary) is written
atomically, and metrics.json is rewritten. The output directory is owned as `difprog.train.fit`
owns it (see `difprog.rundir`), and a resume with other settings is refused by name unless
allowed (see `difprog.provenance`).

Example:
    >>> corpus = data.text("python-stdlib", context=128)
    >>> result = fit_lm(corpus, LMConfig(steps=1000), out="runs/gpt")
    >>> result.history[-1]["val_loss"]           # nats per character
    >>> print(sample("runs/gpt", "def ", length=200, temperature=0.8, seed=0))
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pathlib
import textwrap
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from difprog import checkpoint, gates, models, provenance, rundir
from difprog.data import Text, num_text_windows, text_batch, text_windows
from difprog.errors import (
    ArgumentError,
    CheckpointError,
    ConfigMismatchError,
    WriteError,
)
from difprog.files import kill_point, write_json
from difprog.progress import Progress, compiling, note
from difprog.train import Placement, nonfinite_loss_error

NORMS = ("layer", "rms")
EVAL_BATCH = 64


@dataclasses.dataclass(frozen=True)
class LMConfig:
    """Everything that decides a language-model run's result (and two settings that do not).

    The defaults are the run the README reports: on a 2-core CPU it reaches a validation loss
    under 1.5 nats per character on python-stdlib in under 5 minutes of training.

    Attributes:
        layers, heads, features: the transformer's depth, attention heads and width.
        context: tokens per training window (and the longest prompt the model sees at once).
        norm: 'layer' (LayerNorm, GPT-2) or 'rms' (RMSNorm).
        dropout: the rate of dropout in the blocks (0: none).
        steps: optimiser steps in all.
        batch_size: windows per step.
        learning_rate: the peak learning rate, reached after `warmup` steps of linear warm-up,
            then decayed along a cosine to `final_lr_fraction` of itself at the last step.
        warmup: steps of linear warm-up (a run of fewer steps warms up over all of them).
        final_lr_fraction: the learning rate at the last step, as a fraction of the peak.
        weight_decay: AdamW's decoupled weight decay, on the matmul weights only (leaves named
            `w`: not biases, norms or embeddings).
        clip: the largest global gradient norm; larger gradients are scaled down to it.
        eval_every: steps between two validation losses and checkpoints.
        seed: initialises params and draws the batches and dropout masks; 0 <= seed < 2**32.
        devices: local devices to shard each batch over (None: all); does not change the result
            beyond float rounding.
        keep_checkpoints: how many of the newest checkpoints to keep; does not change the result.
    """

    layers: int = 4
    heads: int = 4
    features: int = 128
    context: int = 128
    norm: str = "layer"
    dropout: float = 0.0
    steps: int = 900
    batch_size: int = 32
    learning_rate: float = 6e-3
    warmup: int = 50
    final_lr_fraction: float = 0.1
    weight_decay: float = 0.1
    clip: float = 1.0
    eval_every: int = 300
    seed: int = 0
    devices: int | None = None
    keep_checkpoints: int = 3

    def __post_init__(self):
        """Refuses any setting out of range, naming it."""
        for name in ("layers", "heads", "features", "context", "steps", "batch_size",
                     "eval_every", "keep_checkpoints"):
            _require(name, getattr(self, name), int, lambda v: v >= 1, "a positive int")
        _require("warmup", self.warmup, int, lambda v: v >= 0, "a non-negative int")
        for name, ok, what in (("learning_rate", lambda v: v > 0, "a finite positive number"),
                               ("weight_decay", lambda v: v >= 0, "a finite non-negative number"),
                               ("clip", lambda v: v > 0, "a finite positive number"),
                               ("dropout", lambda v: 0 <= v < 1, "a number in [0, 1)"),
                               ("final_lr_fraction", lambda v: 0 <= v <= 1,
                                "a number in [0, 1]")):
            _require(name, getattr(self, name), int | float,
                     lambda v, ok=ok: math.isfinite(v) and ok(v), what)
        _require("seed", self.seed, int, lambda v: 0 <= v < 2**32, "an int from 0 to 2**32 - 1")
        if self.devices is not None:
            _require("devices", self.devices, int, lambda v: v >= 1, "None (all) or a positive int")
        if self.norm not in NORMS:
            raise ArgumentError(f"LMConfig: norm must be one of {list(NORMS)}, got {self.norm!r}")
        if self.features % self.heads:
            raise ArgumentError(f"LMConfig: heads={self.heads} must divide "
                                f"features={self.features}")

    def model_settings(self) -> dict:
        """The settings of `models.gpt` (less the vocabulary), as recorded in checkpoints."""
        return {name: getattr(self, name)
                for name in ("layers", "heads", "features", "context", "norm", "dropout")}


UNRECORDED = ("devices", "keep_checkpoints")  # free to change between a run and its resume


def _require(name, value, kind, ok, what):
    if isinstance(value, bool) or not isinstance(value, kind) or not ok(value):
        raise ArgumentError(f"LMConfig: {name} must be {what}, got {value!r}")


class LMResult(NamedTuple):
    """What `fit_lm` returns: the trained params, the evaluations, the per-step training loss,
    and the seconds spent training (compiles included, evaluations not)."""

    params: Any
    history: list[dict]
    train_curve: list[float]
    seconds: float
    resumed_from: int | None


def build_model(settings: Mapping[str, Any], vocab: int):
    """`models.gpt` with the recorded `settings` (LMConfig.model_settings) and `vocab` ids."""
    settings = dict(settings)
    return models.gpt(vocab, settings.pop("layers"), settings.pop("heads"),
                      settings.pop("features"), settings.pop("context"), **settings)


def make_schedule(config: LMConfig) -> optax.Schedule:
    """The learning rate of step t (from 0): peak (t + 1) / warmup during the warm-up, then a
    cosine from the peak down to final_lr_fraction x peak at the last step."""
    peak, steps = config.learning_rate, config.steps
    warm, final = min(config.warmup, steps), config.learning_rate * config.final_lr_fraction

    def schedule(t):
        progress = jnp.clip((t - warm) / max(steps - 1 - warm, 1), 0.0, 1.0)
        decayed = final + (peak - final) * 0.5 * (1 + jnp.cos(jnp.pi * progress))
        return jnp.where(t < warm, peak * (t + 1) / max(warm, 1), decayed)

    return schedule


def make_optimizer(config: LMConfig) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW (b2 0.95) on `make_schedule`."""
    decay_mask = lambda params: jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[-1], "key", None) == "w", params)
    return optax.chain(optax.clip_by_global_norm(config.clip),
                       optax.adamw(make_schedule(config), b1=0.9, b2=0.95,
                                   weight_decay=config.weight_decay, mask=decay_mask))


def make_train_step(model, optimizer):
    """`step(params, opt_state, x, y, key) -> (params, opt_state, loss)`, jitted."""

    def step(params, opt_state, x, y, key):
        loss = lambda p: gates.softmax_cross_entropy(model.apply(p, x, key=key, train=True), y)
        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return jax.jit(step)


def make_eval_step(model):
    """`evaluate(params, x, y) -> (summed loss, correct next tokens)`, jitted."""

    def evaluate(params, x, y):
        logits = model.apply(params, x)
        return (gates.softmax_cross_entropy(logits, y, reduction="sum"),
                jnp.sum(jnp.argmax(logits, -1) == y))

    return jax.jit(evaluate)


def validation_loss(eval_step, params, corpus: Text, placement: Placement
                    ) -> tuple[float, float]:
    """(loss in nats per token, next-token accuracy) over every window of the validation split."""
    total, correct, tokens = 0.0, 0, 0
    for x, y in text_windows(corpus, EVAL_BATCH):
        loss, right = eval_step(params, placement.batch(x), placement.batch(y))
        total, correct, tokens = total + float(loss), correct + int(right), tokens + y.size
    return total / tokens, correct / tokens


# --- Training --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Run:
    """What one call of `fit_lm` trains, where it writes, and its jitted steps."""

    corpus: Text
    config: LMConfig
    model: Any
    optimizer: optax.GradientTransformation
    placement: Placement
    out: pathlib.Path | None
    writes: bool
    progress: bool
    keys: tuple
    train_step: Any
    eval_step: Any


@dataclasses.dataclass(frozen=True)
class _State:
    """Where a run stands after `step` steps."""

    params: Any
    opt_state: Any
    step: int
    history: list
    curve: list
    segments: list
    identity: dict
    seconds: float = 0.0
    resumed_from: int | None = None


def fit_lm(corpus: Text, config: LMConfig = LMConfig(), *, out: str | os.PathLike | None = None,
           progress: bool = True, allow_changes: bool = False) -> LMResult:
    """Trains `models.gpt` on `corpus` (from `difprog.data.text`), checkpointing into `out`.

    Args:
        corpus: the text; its context must equal config.context.
        config: the model and training settings.
        out: the output directory (None: nothing on disk, no resume). When it holds checkpoints,
            training resumes from the newest, provided it was trained with the same settings.
        progress: show progress on stderr.
        allow_changes: resume even when the settings differ; metrics.json then records which
            steps ran with which (`segments`).

    Returns:
        The params, the evaluations ({step, train_loss, val_loss, val_accuracy}) and the
        training loss of every step.

    Raises:
        ArgumentError: the corpus's context differs from config.context.
        RunDirectoryError, ConfigMismatchError, CheckpointError, NonFiniteLossError,
        WriteError: as `difprog.train.fit`.
    """
    if not isinstance(corpus, Text):
        raise ArgumentError(f"fit_lm: corpus must be a Text from difprog.data.text, got "
                            f"{type(corpus).__name__}")
    if corpus.context != config.context:
        raise ArgumentError(f"fit_lm: the corpus was read with context={corpus.context}, the "
                            f"config has context={config.context}; read it with "
                            f"data.text(..., context={config.context})")
    placement = Placement(config.devices)
    owned = (contextlib.nullcontext() if out is None
             else rundir.own(out, exclusive=jax.process_index() == 0))
    with owned as directory:
        run = _create(corpus, config, placement, directory, progress)
        state = _start(run, allow_changes)
        while state.step < config.steps:
            state = _train_stretch(run, state)
    return LMResult(state.params, state.history, state.curve, state.seconds, state.resumed_from)


def _create(corpus, config, placement, directory, progress) -> _Run:
    model = build_model(config.model_settings(), corpus.vocab_size)
    optimizer = make_optimizer(config)
    out = None if directory is None else directory.path
    return _Run(corpus, config, model, optimizer, placement, out,
                directory is not None and directory.exclusive, progress,
                tuple(jax.random.split(jax.random.key(config.seed), 3)),
                make_train_step(model, optimizer), make_eval_step(model))


def _start(run: _Run, allow_changes: bool) -> _State:
    """Fresh params, or those of the newest checkpoint in `run.out`; placed on the devices."""
    params = run.model.init(run.keys[0], run.corpus.train[None, :run.config.context])
    settings = {k: v for k, v in dataclasses.asdict(run.config).items() if k not in UNRECORDED}
    state = _State(params, run.optimizer.init(params), 0, [], [], [],
                   provenance.identity(settings, params, run.corpus, "gpt"))
    found = checkpoint.latest(run.out) if run.out is not None else None
    if found is not None:
        state = _resume(run, state, found, allow_changes)
        state = _sync_metrics(run, state, found.name)
    return dataclasses.replace(state, params=run.placement.replicate(state.params),
                               opt_state=run.placement.replicate(state.opt_state))


def _sync_metrics(run: _Run, state: _State, checkpoint_name: str) -> _State:
    """The resumed state with the training seconds metrics.json records for its checkpoint (time
    is not in the checkpoint, whose bytes the seed decides); metrics.json is rewritten when a
    crash left it behind the checkpoint."""
    try:
        written = json.loads((run.out / "metrics.json").read_text())
    except (OSError, ValueError):
        written = {}
    if written.get("checkpoint") == checkpoint_name:
        return dataclasses.replace(state, seconds=float(written.get("training_seconds") or 0))
    if run.writes:
        write_json(run.out / "metrics.json", _metrics(run, state, checkpoint_name))
    return state


def _resume(run: _Run, fresh: _State, found: pathlib.Path, allow_changes: bool) -> _State:
    """The state of checkpoint `found`, refused when it was trained with other settings."""
    _, meta = checkpoint.load(found)
    if not isinstance(meta.get("step"), int) or not isinstance(meta.get("curve"), list):
        raise CheckpointError(f"{str(found)!r} was not written by difprog's language-model "
                              f"training (its metadata has no step and curve); move it out of "
                              f"the output directory or choose another --out")
    segments = [dict(segment) for segment in meta.get("segments", [])]
    changed = provenance.differences(segments[-1]["config"] if segments else {}, fresh.identity)
    if changed and not allow_changes:
        raise ConfigMismatchError(
            f"{str(found)!r} was trained with other settings than this run's: "
            f"{'; '.join(changed)}. Run with the checkpoint's settings to resume it, choose "
            f"another output directory, or allow the changes (--allow-changes)")
    tree, meta = checkpoint.load(found, {"params": fresh.params, "opt_state": fresh.opt_state})
    note(f"resuming from {found} (step {meta['step']} of {run.config.steps})"
         + (f" with changed settings: {'; '.join(changed)}" if changed else ""))
    return dataclasses.replace(fresh, params=tree["params"], opt_state=tree["opt_state"],
                               step=meta["step"], history=meta["history"], curve=meta["curve"],
                               segments=segments, resumed_from=meta["step"])


def _train_stretch(run: _Run, state: _State) -> _State:
    """The steps up to the next evaluation, the evaluation, and the checkpoint."""
    config, (_, data_key, dropout_key) = run.config, run.keys
    end = min(config.steps, (state.step // config.eval_every + 1) * config.eval_every)
    params, opt_state, losses = state.params, state.opt_state, []
    began = time.perf_counter()
    with Progress(end - state.step, f"steps {state.step + 1}-{end}/{config.steps}",
                  enabled=run.progress, unit="steps") as bar:
        for step in range(state.step, end):
            x, y = text_batch(jax.random.fold_in(data_key, step), run.corpus, config.batch_size)
            if step == state.step and state.step == (state.resumed_from or 0):
                compiling("the train step", run.progress)
            params, opt_state, loss = run.train_step(
                params, opt_state, run.placement.batch(x), run.placement.batch(y),
                jax.random.fold_in(dropout_key, step))
            kill_point("step")
            losses.append(float(loss))
            if not math.isfinite(losses[-1]):
                raise nonfinite_loss_error(run.out, losses[-1], f"step {step}")
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            bar.update(1)
    seconds = time.perf_counter() - began
    val_loss, val_accuracy = validation_loss(run.eval_step, params, run.corpus, run.placement)
    kill_point("evaluated")
    entry = {"step": end, "train_loss": sum(losses) / len(losses), "val_loss": val_loss,
             "val_accuracy": val_accuracy}
    note(f"step {end:>6}/{config.steps}  train loss {entry['train_loss']:.4f}  val loss "
         f"{val_loss:.4f}  val accuracy {val_accuracy:.2%}  ({seconds:.1f} s, "
         f"{len(losses) * config.batch_size * config.context / seconds:,.0f} tokens/s)",
         run.progress)
    state = dataclasses.replace(
        state, params=params, opt_state=opt_state, step=end, history=[*state.history, entry],
        curve=[*state.curve, *losses], seconds=state.seconds + seconds,
        segments=provenance.extend(state.segments, state.identity, end, unit="steps",
                                   start=state.step + 1))
    if run.writes:
        _save(run, state)
    return state


def _save(run: _Run, state: _State) -> None:
    """Writes the step's checkpoint, prunes the oldest, then rewrites metrics.json."""
    meta = {"step": state.step, "seed": run.config.seed, "config": dataclasses.asdict(run.config),
            "history": state.history, "curve": state.curve, "segments": state.segments,
            "model": {"name": "gpt", "vocab": run.corpus.vocab_size,
                      **run.config.model_settings()},
            "text": {"name": run.corpus.name, "level": run.corpus.level,
                     "vocab": _vocab_strings(run.corpus)}}
    try:
        path = checkpoint.save(checkpoint.checkpoint_path(run.out, state.step),
                               {"params": state.params, "opt_state": state.opt_state},
                               metadata=meta)
        kill_point("checkpoint-saved")
        for old in checkpoint.numbered(run.out)[:-run.config.keep_checkpoints]:
            old.unlink()
        kill_point("pruned")
        write_json(run.out / "metrics.json", _metrics(run, state, path.name))
        kill_point("metrics-written")
    except WriteError as error:
        kept = checkpoint.latest(run.out)
        stopped = WriteError(f"{error}; training stopped at step {state.step}; "
                             + (f"the last good checkpoint, {kept}, is intact, and the same "
                                f"command resumes from it" if kept else "no checkpoint was "
                                "written yet"))
        stopped.errno = error.errno
        raise stopped from error


def _metrics(run: _Run, state: _State, checkpoint_name: str) -> dict:
    """metrics.json: the last evaluation, the run's size and speed, and the whole history.

    `test_accuracy` is the next-token accuracy on the validation split and `epochs` the passes
    over the training tokens, so the keys every difprog training run writes are here too."""
    last, config = state.history[-1], run.config
    tokens = state.step * config.batch_size * config.context
    return {"model": "gpt", "data": run.corpus.name, "level": run.corpus.level,
            "steps": state.step, "seed": config.seed, "checkpoint": checkpoint_name,
            "val_loss": last["val_loss"], "train_loss": last["train_loss"],
            "test_accuracy": last["val_accuracy"], "epochs": tokens / len(run.corpus.train),
            "parameters": sum(int(np.size(a)) for a in jax.tree.leaves(state.params)),
            "tokens": tokens, "training_seconds": state.seconds,
            "tokens_per_second": tokens / state.seconds if state.seconds else None,
            "validation_tokens": num_text_windows(run.corpus) * config.context,
            "devices": run.placement.count, "config": dataclasses.asdict(config),
            "history": state.history, "segments": state.segments}


def _vocab_strings(corpus: Text) -> list[str] | None:
    """The char vocabulary as strings (JSON); None at byte level, whose vocabulary is fixed."""
    return list(corpus.vocab) if corpus.level == "char" else None


# --- Sampling --------------------------------------------------------------------------------


class Checkpointed(NamedTuple):
    """A trained language model read back from a checkpoint: model, params and tokenizer."""

    model: Any
    params: Any
    codec: Text  # encodes and decodes only: its token arrays are empty
    context: int
    step: int


def load_lm(path: str | os.PathLike) -> Checkpointed:
    """The model, params and vocabulary of a checkpoint `fit_lm` wrote (a file, or a run
    directory: its newest checkpoint)."""
    path = _checkpoint_file(path)
    _, meta = checkpoint.load(path)
    model_meta, text_meta = meta.get("model"), meta.get("text")
    if not isinstance(model_meta, dict) or model_meta.get("name") != "gpt" \
            or not isinstance(text_meta, dict):
        raise CheckpointError(f"{os.fspath(path)!r} is not a language-model checkpoint (written "
                              f"by difprog train --model gpt); its metadata has no gpt model")
    settings = {k: v for k, v in model_meta.items() if k not in ("name", "vocab")}
    config = LMConfig(**{**meta["config"], "devices": None})
    model = build_model(settings, model_meta["vocab"])
    ids = jnp.zeros((1, config.context), jnp.int32)
    params = model.init(jax.random.key(0), ids)
    tree, _ = checkpoint.load(path, {"params": params,
                                     "opt_state": make_optimizer(config).init(params)})
    level = text_meta["level"]
    vocab = tuple(text_meta["vocab"]) if level == "char" else tuple(bytes([i]) for i in range(256))
    empty = np.zeros(0, np.int32)
    codec = Text(text_meta["name"], level, config.context, vocab, empty, empty, (), ())
    return Checkpointed(model, tree["params"], codec, config.context, meta["step"])


def generate(model, params, prompt_ids, length: int, context: int, *, temperature: float = 1.0,
             top_k: int | None = None, key: jax.Array) -> np.ndarray:
    """`length` token ids drawn one by one after `prompt_ids`, each from the model's next-token
    distribution at `temperature` (0: the most likely token) over the last `context` tokens."""
    prompt = np.asarray(prompt_ids, np.int32)
    buffer = jnp.zeros(len(prompt) + length, jnp.int32).at[:len(prompt)].set(prompt)
    window = min(context, len(buffer))

    def next_token(buffer, t):
        start = jnp.clip(t - window, 0, len(buffer) - window)
        ids = jax.lax.dynamic_slice(buffer, (start,), (window,))
        logits = model.apply(params, ids[None])[0, t - 1 - start]
        token = _draw(logits, temperature, top_k, jax.random.fold_in(key, t))
        return buffer.at[t].set(token), token

    steps = jnp.arange(len(prompt), len(buffer))
    return np.asarray(jax.jit(lambda b: jax.lax.scan(next_token, b, steps)[1])(buffer))


def _draw(logits, temperature, top_k, key):
    if temperature == 0:
        return jnp.argmax(logits).astype(jnp.int32)
    if top_k is not None:
        logits = jnp.where(logits < jax.lax.top_k(logits, top_k)[0][-1], -jnp.inf, logits)
    return jax.random.categorical(key, logits / temperature).astype(jnp.int32)


def sample(path: str | os.PathLike, prompt: str, *, length: int = 200, temperature: float = 0.8,
           top_k: int | None = None, seed: int = 0) -> str:
    """The prompt and `length` tokens generated after it by the checkpoint at `path` (a file, or
    a run directory: its newest checkpoint); the same seed gives the same text.

    Example:
        >>> print(sample("runs/gpt", "def ", length=100, seed=0))
    """
    for name, value, ok, what in (
            ("length", length, lambda v: isinstance(v, int) and v >= 1, "a positive int"),
            ("temperature", temperature,
             lambda v: isinstance(v, int | float) and math.isfinite(v) and v >= 0,
             "a finite number >= 0 (0: always the most likely token)"),
            ("seed", seed, lambda v: isinstance(v, int) and 0 <= v < 2**32,
             "an int from 0 to 2**32 - 1")):
        if isinstance(value, bool) or not ok(value):
            raise ArgumentError(f"sample: {name} must be {what}, got {value!r}")
    if not isinstance(prompt, str) or not prompt:
        raise ArgumentError(f"sample: the prompt must be a non-empty str, got {prompt!r}")
    lm = load_lm(path)
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)
                              or not 1 <= top_k <= lm.codec.vocab_size):
        raise ArgumentError(f"sample: top_k must be None or an int from 1 to the vocabulary's "
                            f"{lm.codec.vocab_size}, got {top_k!r}")
    ids = lm.codec.encode(prompt)
    drawn = generate(lm.model, lm.params, ids, length, lm.context, temperature=temperature,
                     top_k=top_k, key=jax.random.key(seed))
    return prompt + lm.codec.decode(drawn)


def _checkpoint_file(path) -> pathlib.Path:
    """A checkpoint file, or the newest checkpoint of a run directory."""
    path = pathlib.Path(path)
    if path.is_dir():
        found = checkpoint.latest(path)
        if found is None:
            raise CheckpointError(f"no checkpoint_<step>.safetensors in {str(path)!r}; point to a "
                                  f"language-model run's directory or checkpoint file")
        return found
    if not path.exists():
        raise CheckpointError(f"no file or directory {str(path)!r}; point to a language-model "
                              f"run's directory (difprog train --model gpt --out DIR) or one of "
                              f"its checkpoint files")
    return path


def plot_losses(history: list[dict], curve: list[float], path: str | os.PathLike,
                *, title: str = "") -> pathlib.Path:
    """loss.png: the training loss of every step (and its running mean) and the validation loss
    at each evaluation, in nats per token, against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from difprog.files import atomic

    steps = np.arange(1, len(curve) + 1)
    window = max(1, len(curve) // 50)
    smooth = np.convolve(curve, np.ones(window) / window, mode="valid")
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=120)
    axes.plot(steps, curve, color="tab:blue", alpha=0.25, linewidth=0.8, label="train (step)")
    axes.plot(steps[window - 1:], smooth, color="tab:blue",
              label=f"train (mean of {window} steps)")
    axes.plot([h["step"] for h in history], [h["val_loss"] for h in history], "o-",
              color="tab:orange", label="validation (whole split)")
    axes.set(xlabel="step", ylabel="loss (nats per token)")
    axes.set_title("\n".join(textwrap.wrap(title, 64)), fontsize=10)
    axes.set_ylim(0, min(max(curve[:1] + [4.0]), 6.0))
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path = pathlib.Path(path)
    with atomic(path) as temporary:
        figure.savefig(temporary, format="png")
    plt.close(figure)
    return path

