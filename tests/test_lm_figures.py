"""The README's figures of the default language model's samples, as `benchmarks/lm_sampling.py`
measured them into docs/lm/sampling.json: the README's table is the file's, the file measured
the default run's last checkpoint, and at `difprog sample`'s default settings the samples repeat
no more than the validation text does (the README's sample command uses those defaults)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import pathlib
import re
import shlex

from difprog import lm
from difprog.cli import _main

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIGURES = json.loads((ROOT / "docs" / "lm" / "sampling.json").read_text(encoding="utf-8"))
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _default_setting() -> str:
    """`difprog sample`'s defaults as a setting of benchmarks/lm_sampling.py ('t=1')."""
    defaults = inspect.signature(lm.sample).parameters
    parts = [f"t={defaults['temperature'].default:g}"]
    parts += [f"{short}={defaults[name].default:g}" for short, name in
              (("k", "top_k"), ("p", "top_p")) if defaults[name].default is not None]
    return ",".join(parts)


def test_the_readme_table_is_the_measured_one():
    for name, row in FIGURES["rows"].items():
        line = (f"| {name} | {row['longest_run_median']:g} | {row['longest_run_worst']} | "
                f"{row['distinct_median']:.3f} | {row['distinct_worst']:.3f} |")
        assert line in README, line


def test_the_figures_are_of_the_default_run_and_the_readme_command():
    default = {name: value for name, value in dataclasses.asdict(lm.LMConfig()).items()
               if name not in ("devices", "shard", "keep_checkpoints")}  # not the result's
    assert {name: FIGURES["config"][name] for name in default} == default
    assert FIGURES["step"] == default["steps"]
    assert FIGURES["seeds"] == 20 and FIGURES["length"] == 300 and FIGURES["prompt"] == "def "
    found = re.search(r"^difprog sample --checkpoint runs/gpt [^\n]*$", README, re.M)
    assert found, "the README's sample command"
    command = found.group(0)
    assert "--temperature" not in command and "--top-" not in command  # the defaults
    args = _main.parser().parse_args(shlex.split(command)[1:])
    assert (args.temperature, args.top_k, args.top_p) == tuple(
        inspect.signature(lm.sample).parameters[name].default
        for name in ("temperature", "top_k", "top_p"))


def test_samples_at_the_default_settings_repeat_no_more_than_the_text():
    text, rows = FIGURES["rows"]["validation text"], FIGURES["rows"]
    default = rows[_default_setting()]
    assert default["longest_run_worst"] <= text["longest_run_worst"]
    assert default["longest_run_median"] <= 1.5 * text["longest_run_median"]
    assert default["distinct_median"] >= text["distinct_median"]
    assert default["distinct_worst"] >= text["distinct_worst"]
    assert all(len(row["runs"]) == len(row["distinct"]) == FIGURES["seeds"]
               for row in rows.values())
