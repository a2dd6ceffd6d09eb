"""The one training loop: it runs a `Task` (the image classifier of `difprog.train.fit`, the
language model of `difprog.lm.fit_lm`) step by step, with checkpoints, resume, provenance, the
run lock, metrics.json, progress, the evaluation schedule, device placement and kill safety.

A task says what is trained (its init, optimiser, jitted step, the batches of a step range, its
evaluation and what its checkpoints and metrics.json record); the loop decides when and where.
Step t trains on the task's batch t with the dropout key `fold_in(dropout_key, t)`, the keys
split from the seed, so a run resumed from any checkpoint ends with the same bytes as one never
interrupted. Every `eval_every` steps (and after the last) the task evaluates, and checkpoint
`checkpoint_<n>.safetensors` (n counts the task's unit: epochs or steps) is written atomically,
the oldest pruned, and metrics.json rewritten.

A run owns its output directory (`difprog.rundir`), resumes only a checkpoint trained with the
same settings unless asked (`difprog.provenance` records which units ran with which), never
saves or resumes non-finite params (`difprog.checkpoint`), and a crash or a full disk at any
moment leaves the last good checkpoint intact.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pathlib
import time
from collections.abc import Iterator
from typing import Any, Protocol

import jax
import numpy as np
import optax

from difprog import checkpoint, provenance, rundir
from difprog.errors import CheckpointError, ConfigMismatchError, NonFiniteLossError, WriteError
from difprog.files import kill_point, write_json
from difprog.monitor import Monitor, Origin, resume_health, write_health
from difprog.placement import Placement
from difprog.progress import Progress, compiling, note

__all__ = ["State", "Tally", "Task", "drive"]


@dataclasses.dataclass
class Tally:
    """The running totals of the steps since the last evaluation (a task's `summary` and
    `postfix` read them): every loss, the losses weighted by batch size, the examples seen and
    the sum of the steps' auxiliary counts (such as correct predictions)."""

    losses: list = dataclasses.field(default_factory=list)
    loss_sum: float = 0.0
    seen: int = 0
    aux_sum: int = 0

    def add(self, loss: float, aux: Any, size: int) -> None:
        self.losses.append(loss)
        self.loss_sum, self.seen = self.loss_sum + loss * size, self.seen + size
        self.aux_sum += int(aux)


@dataclasses.dataclass(frozen=True)
class State:
    """Where a run stands after `step` steps: params, optimiser state, the evaluations
    (`history`), the loss of every step (`curve`; before a resume only where the task's
    checkpoints record it), which units ran with which settings (`segments`), this run's settings
    (`identity`), the seconds spent in training steps and the unit count it resumed from."""

    params: Any
    opt_state: Any
    step: int
    history: list
    curve: list
    segments: list
    identity: dict
    seconds: float = 0.0
    resumed_from: int | None = None


class Task(Protocol):
    """What `drive` trains. `config` has `seed`, `devices`, `shard` and `keep_checkpoints`;
    `unit` ('epoch' or 'step') is what checkpoints count, `steps_per_unit` steps each;
    `train_step(params, opt_state, x, y, key) -> (params, opt_state, loss, aux)` is jitted (with a
    `monitor`, `train_step(..., key, record)` also returns the packed record, see
    `difprog.train.make_train_step`);
    `caller` names the function and `writer` the trainer in errors; `recorded` are the metadata
    lists a checkpoint of the task holds (besides its unit count)."""

    config: Any
    unit: str
    steps_per_unit: int
    total_steps: int
    eval_every: int
    caller: str
    writer: str
    recorded: tuple[str, ...]
    result_fields: tuple[str, ...]
    optimizer: optax.GradientTransformation
    train_step: Any
    monitor: Monitor | None

    def init(self, key: jax.Array) -> Any:
        """Fresh params."""

    def locate(self, params: Any, x: Any, y: Any, key: jax.Array) -> Origin | None:
        """Where the loss of a step or its gradient first became non-finite (monitored runs)."""

    def identity(self, params: Any) -> dict:
        """The settings, model and data a resume must match (`provenance.identity`)."""

    def batches(self, key: jax.Array, start: int, end: int) -> Iterator[tuple]:
        """The (x, y) batches of steps start..end-1, drawn with `key`."""

    def evaluate(self, params: Any, placement: Placement) -> dict:
        """The evaluation's entries of the history."""

    def summary(self, tally: Tally) -> dict:
        """The training entries of the history, from the steps since the last evaluation."""

    def postfix(self, tally: Tally) -> dict:
        """What the progress bar shows after each step."""

    def report(self, entry: dict, tally: Tally, trained: float, elapsed: float) -> str:
        """The line printed after an evaluation (`trained` seconds in steps, `elapsed` in all)."""

    def record(self, state: State) -> dict:
        """The task's entries of a checkpoint's metadata."""

    def metrics(self, state: State, checkpoint_name: str, devices: int,
                elapsed: float | None) -> dict:
        """The contents of metrics.json for the checkpoint of `state`."""


@dataclasses.dataclass(frozen=True)
class _Run:
    """One call of `drive`: the task, where it writes and its keys (init, data, dropout)."""

    task: Task
    placement: Placement
    out: pathlib.Path | None
    writes: bool
    progress: bool
    keys: tuple


def drive(task: Task, *, out: str | os.PathLike | None, progress: bool,
          allow_changes: bool) -> State:
    """Trains `task` to its last step, checkpointing into `out`; the final state.

    `out` is checked and locked before anything is computed (a `difprog.rundir.RunDirectory`
    already owned is taken as it is; None keeps nothing on disk). When it holds checkpoints,
    training resumes from the newest, provided it was trained with the same settings, model and
    data, or `allow_changes`.

    Raises:
        RunDirectoryError, ConfigMismatchError, CheckpointError, NonFiniteLossError, WriteError:
            NonFiniteLossError names the step; after a WriteError the last good checkpoint is
            kept.
    """
    placement = Placement(task.config.devices, task.config.shard)
    owned = (contextlib.nullcontext() if out is None
             else rundir.own(out, exclusive=jax.process_index() == 0))
    with owned as directory:
        run = _Run(task, placement, None if directory is None else directory.path,
                   directory is not None and directory.exclusive, progress,
                   tuple(jax.random.split(jax.random.key(task.config.seed), 3)))
        state = _start(run, allow_changes)
        while state.step < task.total_steps:
            state = _train_stretch(run, state)
    return state


def _start(run: _Run, allow_changes: bool) -> State:
    """Fresh params, or those of the newest checkpoint in `run.out`; placed on the devices."""
    params = run.task.init(run.keys[0])
    state = State(params, run.task.optimizer.init(params), 0, [], [], [],
                  run.task.identity(params))
    found = checkpoint.latest(run.out) if run.out is not None else None
    if found is not None:
        state = _sync_metrics(run, _resume(run, state, found, allow_changes), found.name)
        if run.task.monitor is not None:
            resume_health(run.out, run.task.monitor, state.step)
    return dataclasses.replace(state, params=run.placement.place(state.params),
                               opt_state=run.placement.place(state.opt_state))


def _resume(run: _Run, fresh: State, found: pathlib.Path, allow_changes: bool) -> State:
    """The state of checkpoint `found`, refused when it was trained with other settings."""
    task = run.task
    meta = checkpoint.metadata(found)
    done = meta.get(task.unit)
    if not isinstance(done, int) or isinstance(done, bool) or done < 0 or not all(
            isinstance(meta.get(name), list) for name in task.recorded):
        raise CheckpointError(f"{str(found)!r} was not written by {task.writer} (its metadata "
                              f"has no {task.unit} count and {' and '.join(task.recorded)}); "
                              f"move it out of the output directory or choose another one")
    try:
        segments = provenance.recorded_segments(meta, task.result_fields)
        changed = provenance.differences(segments[-1]["config"] if segments else {},
                                         fresh.identity)
    except (AttributeError, KeyError, TypeError, ValueError):
        raise CheckpointError(f"{str(found)!r}: its metadata's segments (which {task.unit}s ran "
                              f"with which settings) are not a list of records; it was not "
                              f"written by {task.writer}") from None
    if changed and not allow_changes:
        raise ConfigMismatchError(
            f"{str(found)!r} was trained with other settings than this run's: "
            f"{'; '.join(changed)}. Run with the checkpoint's settings to resume it, choose "
            f"another output directory for a new run, or allow the changes ({task.caller}(..., "
            f"allow_changes=True), difprog train --allow-changes) to continue with the new "
            f"settings; metrics.json then records which {task.unit}s ran with which")
    tree, meta = checkpoint.load(found, run.placement.abstract(
        {"params": fresh.params, "opt_state": fresh.opt_state}))
    note(f"resuming from {found} ({task.unit} {done} of {task.total_steps // task.steps_per_unit})"
         + (f" with changed settings: {'; '.join(changed)}" if changed else ""))
    return dataclasses.replace(fresh, params=tree["params"], opt_state=tree["opt_state"],
                               step=done * task.steps_per_unit, history=meta["history"],
                               curve=list(meta.get("curve", [])), segments=segments,
                               resumed_from=done)


def _sync_metrics(run: _Run, state: State, checkpoint_name: str) -> State:
    """The resumed state with the training seconds metrics.json records for its checkpoint (time
    is not in the checkpoint, whose bytes the seed decides); metrics.json is rewritten when a
    crash left it behind the checkpoint or missing."""
    try:
        written = json.loads((run.out / "metrics.json").read_text())
    except (OSError, ValueError):
        written = {}
    if written.get("checkpoint") == checkpoint_name:
        return dataclasses.replace(state, seconds=float(written.get("training_seconds") or 0))
    if run.writes:
        write_json(run.out / "metrics.json",
                   run.task.metrics(state, checkpoint_name, run.placement.count, None))
    return state


def _train_stretch(run: _Run, state: State) -> State:
    """The steps up to the next evaluation, the evaluation, and the checkpoint."""
    task, began = run.task, time.perf_counter()
    end = min(task.total_steps, (state.step // task.eval_every + 1) * task.eval_every)
    first = state.step == (state.resumed_from or 0) * task.steps_per_unit
    params, opt_state, tally, last = _run_steps(run, state, end, first)
    if task.monitor is not None and not _finite(params):  # the last step's gradient went bad
        raise _nonfinite(run, tally.losses[-1], end - 1, last, None)
    trained = time.perf_counter() - began
    compiling("the evaluation step", run.progress and first)
    entry = {task.unit: end // task.steps_per_unit, **task.summary(tally),
             **task.evaluate(params, run.placement)}
    kill_point("evaluated")
    elapsed = time.perf_counter() - began
    note(task.report(entry, tally, trained, elapsed), run.progress)
    state = dataclasses.replace(
        state, params=params, opt_state=opt_state, step=end, history=[*state.history, entry],
        curve=[*state.curve, *tally.losses], seconds=state.seconds + trained,
        segments=provenance.extend(state.segments, state.identity, end // task.steps_per_unit,
                                   unit=f"{task.unit}s",
                                   start=state.step // task.steps_per_unit + 1))
    if run.out is not None and (run.writes or run.placement.spans_processes):  # sharded: every
        # process writes its pieces
        _save(run, state, elapsed)
    return state


def _run_steps(run: _Run, state: State, end: int, first: bool
               ) -> tuple[Any, Any, Tally, tuple | None]:
    """The training steps state.step..end-1: (params, opt_state, their tally, the last step's
    inputs when monitored)."""
    task, (_, data_key, dropout_key) = run.task, run.keys
    params, opt_state, tally, previous = state.params, state.opt_state, Tally(), None
    with Progress(end - state.step, _label(task, state.step, end), enabled=run.progress,
                  unit="steps") as bar:
        for step, (x, y) in enumerate(task.batches(data_key, state.step, end), state.step):
            if step == state.step and first:
                compiling("the train step", run.progress)
            inputs = (params, x, y, jax.random.fold_in(dropout_key, step))  # the host's batch
            params, opt_state, loss, aux = _step(run, inputs, opt_state, step, bar)
            kill_point("step")
            loss = float(loss)
            if not math.isfinite(loss) or (task.monitor is not None
                                           and not task.monitor.finite):
                raise _nonfinite(run, loss, step, inputs, previous)
            previous = inputs if task.monitor is not None else None
            tally.add(loss, aux, len(y))
            bar.set_postfix(**task.postfix(tally))
            bar.update(1)
    return params, opt_state, tally, previous


def _step(run: _Run, inputs: tuple, opt_state: Any, step: int, bar: Progress) -> tuple:
    """One training step: (params, opt_state, loss, aux); a monitored run records every
    `every` steps and prints the diagnoses that start or stop."""
    task, (params, x, y, key) = run.task, inputs
    x, y = run.placement.batch(x), run.placement.batch(y)
    if task.monitor is None:
        return task.train_step(params, opt_state, x, y, key)
    recording = step % task.monitor.watch.every == 0
    params, opt_state, loss, aux, health = task.train_step(params, opt_state, x, y, key,
                                                           recording)
    if recording:
        for line in task.monitor.add(step, health):
            if jax.process_index() == 0:
                bar.write(line)
    return params, opt_state, loss, aux


def _label(task: Task, start: int, end: int) -> str:
    """The progress bar's label: 'epoch 3/30' for a stretch of one unit, 'steps 1-300/900'."""
    per, total = task.steps_per_unit, task.total_steps // task.steps_per_unit
    first, last = start // per + 1, end // per
    if first == last:
        return f"{task.unit} {last}/{total}"
    return f"{task.unit}s {first}-{last}/{total}"


def _finite(params: Any) -> bool:
    """Whether params hold no NaN or infinity; True for several processes, whose params this
    one cannot read whole (the checkpoint refuses non-finite params there)."""
    return jax.process_count() > 1 or all(bool(np.all(np.isfinite(leaf)))
                                          for leaf in jax.tree.leaves(params))


def _where(task: Task, step: int) -> str:
    per = task.steps_per_unit
    return f"step {step}" + (f" ({task.unit} {step // per + 1}, batch {step % per + 1} of "
                             f"{per})" if per > 1 else "")


def _nonfinite(run: _Run, loss: float, step: int, inputs: tuple, previous: tuple | None
               ) -> NonFiniteLossError:
    """The error for a NaN or infinite loss (or, monitored, gradient) at `step`, naming the
    checkpoint kept. A monitored run names the gate and layer where it began (on the step
    before, when the params this step started from were already non-finite: a gradient that
    went bad between two records) and writes its health files."""
    task = run.task
    what = f"the training loss became {loss} at {_where(task, step)}"
    if math.isfinite(loss):
        what = f"a gradient became non-finite at {_where(task, step)} (the loss is {loss:.4g})"
    origin = None
    if task.monitor is not None:
        if previous is not None and not _finite(inputs[0]):
            what = (f"a gradient became non-finite at {_where(task, step - 1)} (the training "
                    f"loss became {loss} at step {step})")
            step, inputs = step - 1, previous
        if jax.process_count() == 1:  # explain reads every value: one process's run
            origin = task.locate(*inputs)
        task.monitor.nonfinite(step, what + (f": {origin}" if origin else ""),
                               origin.layer if origin else "")
        if run.writes:
            try:
                write_health(run.out, task.monitor)
            except WriteError as error:
                note(f"the health files could not be written: {error}")
    kept = checkpoint.latest(run.out) if run.out is not None else None
    return NonFiniteLossError(
        what + (f"; {origin}" if origin else "") + "; training stopped. "
        + (f"The last good checkpoint, {kept}, is kept. " if kept else
           "No checkpoint was written yet. ")
        + "Lower the learning rate or check the data for NaN or Inf values.")


def _save(run: _Run, state: State, elapsed: float) -> None:
    """Writes the checkpoint of `state` (sharded where params span processes, every process
    writing its pieces), prunes all but the newest, then rewrites metrics.json (process 0); a
    failed write names where training stopped and the checkpoint kept."""
    task, out = run.task, run.out
    number = state.step // task.steps_per_unit
    meta = {task.unit: number, "seed": task.config.seed,
            "config": dataclasses.asdict(task.config), "history": state.history,
            "segments": state.segments, **task.record(state)}
    try:
        path = checkpoint.save(
            checkpoint.checkpoint_path(out, number, sharded=run.placement.spans_processes),
            {"params": state.params, "opt_state": state.opt_state}, metadata=meta)
        kill_point("checkpoint-saved")
        if not run.writes:
            return
        for old in checkpoint.numbered(out)[:-task.config.keep_checkpoints]:
            checkpoint.remove(old)
        kill_point("pruned")
        write_json(out / "metrics.json",
                   task.metrics(state, path.name, run.placement.count, elapsed))
        kill_point("metrics-written")
        if task.monitor is not None:
            write_health(out, task.monitor)
    except WriteError as error:
        kept = checkpoint.latest(out)
        stopped = WriteError(f"{error}; training stopped at {task.unit} {number}; "
                             + (f"the last good checkpoint, {kept}, is intact, and the same "
                                f"command resumes from it" if kept else "no checkpoint was "
                                "written yet"))
        stopped.errno = error.errno
        raise stopped from error
