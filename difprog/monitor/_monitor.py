"""`Monitor`: the records of a training run on the host, the diagnoses they start and stop, and
`health()`, what health.json holds."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np

from difprog.monitor._diagnose import Diagnosis, diagnose
from difprog.monitor._health import Health
from difprog.monitor._measure import unpack
from difprog.monitor._watch import Watch

SERIES = ("grad_norm", "weight_norm", "update_norm", "mean", "std", "dead", "saturated")


def _number(x: Any) -> float | None:
    """A float for JSON: None for NaN and infinity."""
    x = float(x)
    return x if math.isfinite(x) else None


class Monitor:
    """The records of one run, in step order, and its diagnoses.

    `add(step, record)` takes a record of `monitor.measure` (device arrays are fetched) and
    returns the log lines of the diagnoses it starts and stops, such as
    'relu_1 (after conv2d_1): 71% of ReLUs dead since step 200'.

    Example (a user's optax loop; `step` returns `measure`'s record beside the new params):
        >>> mon = monitor.Monitor(monitor.watch(model, x, every=10))
        >>> for t, (x, y) in enumerate(batches):
        ...     params, opt_state, loss, record = step(params, opt_state, x, y)
        ...     if t % mon.watch.every == 0:
        ...         for line in mon.add(t, record):
        ...             print(line)
        >>> mon.health()["diagnoses"]
    """

    def __init__(self, watch: Watch):
        self.watch = watch
        self.records: list[dict] = []
        self.diagnoses: list[Diagnosis] = []
        self._open: dict[tuple[str, str], int] = {}  # (kind, path): index in diagnoses
        self._seen: dict[tuple[str, str], list] = {}  # not open: [first step, count, value, text]
        self._missed: dict[tuple[str, str], list] = {}  # open: [first step missing, count]

    def add(self, step: int, record: dict) -> list[str]:
        """Keeps the record of `step` (`measure`'s, or that `pack`ed); the log lines of the
        diagnoses it starts and stops."""
        record = (jax.tree.map(float, jax.device_get(record)) if isinstance(record, dict)
                  else unpack(self.watch, record))
        self.records.append({"step": int(step), **record})
        found = diagnose(self.watch, record)
        lines = [self._end(key, step) for key in list(self._open) if key not in found]
        for key in [k for k in self._seen if k not in found]:
            del self._seen[key]
        for key, (value, message) in found.items():
            self._missed.pop(key, None)
            if key in self._open:
                continue
            seen = self._seen.setdefault(key, [int(step), 0, value, message])
            seen[1] += 1
            if seen[1] >= self._patience(key):
                first, _, value, message = self._seen.pop(key)
                self._open[key] = len(self.diagnoses)
                self.diagnoses.append(Diagnosis(key[0], self.watch.layer(key[1]), first,
                                                None, value, f"{message} since step {first}"))
                lines.append(self.diagnoses[-1].message)
        return [line for line in lines if line]

    def _patience(self, key: tuple[str, str]) -> int:
        """Records in a row that start or end a diagnosis (`Thresholds.patience`)."""
        return 1 if key[0] == "update_ratio" else self.watch.thresholds.patience

    def _end(self, key: tuple[str, str], step: int) -> str | None:
        """Counts a record without an open diagnosis; ends it after `patience` of them."""
        missed = self._missed.setdefault(key, [int(step), 0])
        missed[1] += 1
        if missed[1] < self._patience(key):
            return None
        until, _ = self._missed.pop(key)
        index = self._open.pop(key)
        began = self.diagnoses[index]
        self.diagnoses[index] = began._replace(until=until)
        return (f"{began.layer}: {began.kind.replace('_', ' ')} no longer seen from step "
                f"{until} (seen from step {began.step})")

    @property
    def finite(self) -> bool:
        """Whether the last record's loss and every gradient were finite (True before any)."""
        return not self.records or self.records[-1].get("finite", 1.0) == 1.0

    def nonfinite(self, step: int, message: str, layer: str = "") -> str:
        """Records that the loss or a gradient became non-finite at `step`; its log line."""
        self.diagnoses.append(Diagnosis("nonfinite", layer, int(step), None, math.nan, message))
        return message

    def health(self) -> Health:
        """What health.json holds: the settings, the series by step, and the diagnoses."""
        watch, records = self.watch, self.records
        series = {name: {path: [_number(r[name][path]) for r in records]
                         for path in (records[0][name] if records else {})} for name in SERIES}
        # (health.json's objects are written with sorted keys: `weights` and `activations`
        # give the forward order)
        series["update_ratio"] = {
            path: [_number(r["update_norm"][path] / r["weight_norm"][path])
                   if r["weight_norm"][path] > 0 else None for r in records]
            for path in watch.weights}
        return Health({
            "every": watch.every, "thresholds": dataclasses.asdict(watch.thresholds),
            "weights": list(watch.weights),
            "activations": [{"path": p, "kind": k} for p, k in watch.activations.items()],
            "labels": {**{p: p for p in watch.weights},
                       **{p: watch.label(p) for p in watch.activations}},
            "steps": [r["step"] for r in records],
            "loss": [_number(r["loss"]) for r in records], **series,
            "diagnoses": [{**d._asdict(), "value": _number(d.value)} for d in self.diagnoses]})

    def resume(self, health: dict, step: int) -> None:
        """Takes the records before `step` from a run's earlier health.json (`health()`'s
        contents), so that a resumed run's health.json covers the whole run."""
        if health.get("weights") != list(self.watch.weights) or health.get("activations") != [
                {"path": p, "kind": k} for p, k in self.watch.activations.items()]:
            return
        number = lambda v: math.nan if v is None else float(v)
        records = [{"loss": number(health["loss"][i]),
                    **{name: {p: number(v[i]) for p, v in health[name].items()}
                       for name in SERIES}}
                   for i, s in enumerate(health["steps"]) if s < step]
        for s, record in zip(health["steps"], records):
            self.add(s, record)


def as_arrays(health: dict, name: str, paths: list[str]) -> np.ndarray:
    """The values of one series at `paths`, shape (paths, records), NaN where none was recorded."""
    return np.array([[np.nan if v is None else v for v in health[name][p]] for p in paths],
                    np.float64).reshape(len(paths), len(health["steps"]))


def ordered(health: dict, name: str) -> list[str]:
    """The paths of a series in the order of the forward pass."""
    paths = health["weights"] + [a["path"] for a in health["activations"]]
    return [p for p in paths if p in health[name]]


def summary(health: dict) -> str:
    """'2 diagnoses in 90 records' of health.json's contents."""
    count = len(health["diagnoses"])
    return (f"{count} diagnos{'is' if count == 1 else 'es'} in {len(health['steps'])} "
            f"record{'' if len(health['steps']) == 1 else 's'}")
