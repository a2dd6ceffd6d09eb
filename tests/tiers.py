"""The two test tiers: the quick tier (`pytest -m "not slow"`, minutes) and everything (`pytest`).

A test is slow when it runs processes, a browser, kills or long training (whole files, below,
each with its reason), or when it took over `LIMIT` seconds on the reference machine (a 2-core
x86-64 CPU, Python 3.12, JAX 0.12): `tests/slow_tests.txt` lists those, and `tests/conftest.py`
marks both kinds slow at collection. After adding heavy tests, regenerate the list from a run
of everything (or of the quick tier: listed tests missing from the log stay listed) with its
durations, on one process:

    pytest -q --durations=0 -p no:xdist > durations.log; python -m tests.tiers durations.log
"""

from __future__ import annotations

import pathlib
import re
import sys
from collections import defaultdict

LIMIT = 0.5  # seconds, setup and call together
LIST = pathlib.Path(__file__).with_name("slow_tests.txt")
SLOW_FILES = {
    "tests/train/test_kill_and_resume.py": "kills training processes at 14 points",
    "tests/train/test_distributed.py": "starts several processes that join one cluster",
    "tests/train/test_launch.py": "starts several processes that join one cluster",
    "tests/train/test_placement.py": "trains on 1, 2 and 4 devices to compare them",
    "tests/train/test_fit_lm.py": "trains language models",
    "tests/test_benchmarks.py": "runs every benchmark script end to end",
    "tests/test_examples.py": "runs the example scripts in their own processes",
    "tests/test_readme.py": "runs every block of the README, training included",
    "tests/viz/test_colour.py": "optimises colour images for hundreds of steps",
    "tests/graph/test_html_browser.py": "drives a browser",
    "tests/monitor/test_health_page.py": "drives a browser",
    "tests/test_inline_browser.py": "drives a browser",
    "tests/test_api_reference.py": "builds the API reference with mkdocs in a process",
    "tests/test_interrupts.py": "interrupts training processes at several points",
}
ONCE = {  # node ids (regular expressions) whose outcome does not depend on the JAX version,
    # whose JAX-dependent part other tests prove on every leg, or that smoke-test developer
    # scripts: marked `once`; .ci/run runs them on its newest-JAX leg only (`-m "not once"` on
    # the other), which saves that leg their time
    r"tests/graph/test_html_browser\.py::.*": "the explain page's script in a browser",
    r"tests/monitor/test_health_page\.py::.*": "the dashboard's script in a browser",
    r"tests/test_inline_browser\.py::.*": "the inline pages' script in a browser",
    r"tests/test_api_reference\.py::.*": "the docstrings through mkdocs",
    r"tests/train/test_kill_and_resume\.py::.*":
        "kills at difprog's own file writes and locks (a resume to the same params is proven on "
        "every leg by test_fit and test_distributed)",
    r"tests/train/test_launch\.py::.*":
        "the launcher's processes, pipes and signals, in Python (the clusters it starts are "
        "tested on every leg in test_distributed)",
    r"tests/train/test_distributed\.py::test_(two_processes_match_one_process_of_four_devices"
    r"|a_killed_process_and_the_restart_of_both_end_with_the_same_bytes"
    r"|the_language_model_sharded_over_two_processes_matches_one_process)":
        "the replicated layout and the gpt across processes (the CNN's sharded runs, on every "
        "leg, go through the same runtime, rendezvous, kill and resume)",
    r"tests/train/test_distributed\.py::test_(starts_that_cannot_run_end_every_process_in_one"
    r"_line|sigterm_to_one_process_ends_all_of_them_promptly|distributed_variables_must_be"
    r"_complete_and_valid)":
        "difprog's own meeting of the processes (difprog.rendezvous, difprog.cluster) before "
        "and around JAX's",
    r"tests/test_readme\.py::test_every_readme_python_block_runs_in_order":
        "the README's blocks, which call the functions other tests prove on every leg",
    r"tests/test_notebooks\.py::test_notebook_runs\[.*\]":
        "the lessons end to end (their training, pictures and language model run on every leg "
        "in tests of their own)",
    r"tests/test_examples\.py::test_training_health_diagnoses_each_pathology_and_not_the_healthy"
    r"_run": "the example script end to end (tests/monitor proves each of its diagnoses on every "
             "leg)",
    r"tests/test_benchmarks\.py::test_(?!bench_modes).*":
        "the benchmark scripts (developer tools; `difprog bench modes` runs on every leg)",
}
ONE_WORKER = {  # files whose tests share costly module fixtures: with `pytest -n N --dist
    # loadgroup` (as .ci/run runs) one worker runs all of a file's tests, so each fixture runs once
    "tests/train/test_distributed.py": "the 2-process runs, plain and sharded, and the 1-process "
                                       "run they are compared with",
}
ALWAYS_QUICK = {  # node ids (regular expressions) kept quick whatever they take, with the reason
    r"tests/gates/test_rules\.py::test_rules_match_autodiff_of_forward\[.*-jit\]":
        "the quick tier proves every gate's rules against JAX's autodiff",
    r"tests/monitor/test_monitor\.py::test_(the_records_equal_plain_jax_on_the_same_batch"
    r"|a_wrong_backward_rule_shows_in_the_recorded_norms)":
        "the quick tier proves the monitor's records against plain JAX, and its mutant",
}
_ROW = re.compile(r"^([0-9.]+)s (setup|call|teardown) +(\S.*)$")


def slow_tests() -> set[str]:
    """The node ids listed in slow_tests.txt."""
    lines = LIST.read_text().splitlines() if LIST.exists() else []
    return {line for line in lines if line and not line.startswith("#")}


def runs_once(nodeid: str) -> bool:
    """Whether .ci/run runs this test on its newest-JAX leg only (ONCE)."""
    return any(re.fullmatch(pattern, nodeid) for pattern in ONCE)


def is_slow(nodeid: str) -> bool:
    return nodeid.split("::")[0] in SLOW_FILES or nodeid in slow_tests()


def _durations(log: str) -> dict[str, float]:
    seconds: dict[str, float] = defaultdict(float)
    for line in log.splitlines():
        match = _ROW.match(line.strip())
        if match:
            seconds[match.group(3)] += float(match.group(1))
    return seconds


def main(path: str) -> None:
    seconds = _durations(pathlib.Path(path).read_text())
    kept = {n for n in slow_tests() if n not in seconds}  # not in this log: keeps its place
    slow = sorted(n for n in kept | {n for n, s in seconds.items() if s > LIMIT}
                  if n.split("::")[0] not in SLOW_FILES
                  and not any(re.fullmatch(p, n) for p in ALWAYS_QUICK))
    quick = sum(s for n, s in seconds.items() if n not in slow
                and n.split("::")[0] not in SLOW_FILES)
    LIST.write_text(f"# tests over {LIMIT} s (setup and call) on the reference machine; "
                    f"written by `python -m tests.tiers LOG`\n" + "\n".join(slow) + "\n")
    print(f"{len(slow)} tests listed slow; the quick tier's tests took {quick:.0f} s in {path}")


if __name__ == "__main__":
    main(sys.argv[1])
