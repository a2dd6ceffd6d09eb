"""Shared helpers: every gate's check points, split into arrays and constants; and one
compilation cache for the whole test run."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difprog import gates
from difprog.gates import check_points


def _share_compilations() -> None:
    """Points JAX's persistent compilation cache at one directory for this run, so a program
    compiled once is not compiled again by a later test or by a process a test starts (training
    runs, kills, clusters). The directory is new for each run and removed after it, so every run
    starts cold; set JAX_COMPILATION_CACHE_DIR to choose it (.ci/run sets one per leg)."""
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        directory = tempfile.mkdtemp(prefix="difprog-tests-jax-cache-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        os.environ["JAX_COMPILATION_CACHE_DIR"] = directory
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


_share_compilations()

pytest_plugins = ("tests.browser",)  # the `browser` fixture of the page tests


@pytest.fixture(autouse=True, scope="module")
def _release_compilations():
    """Drops JAX's in-memory caches after each test module, so a worker's memory does not grow
    with every program the run compiles (a program needed again loads from the shared cache)."""
    yield
    jax.clear_caches()

GATE_NAMES = list(gates.ALL)


def bound_arguments(gate, args, kwargs):
    """The gate's arguments as (differentiable inputs, other arguments), by name."""
    bound = gate.signature.bind(*args, **kwargs)
    bound.apply_defaults()
    inputs = {n: v for n, v in bound.arguments.items() if n in gate.input_names}
    others = {n: v for n, v in bound.arguments.items() if n not in gate.input_names}
    return inputs, others


def as_dtype(tree, dtype):
    return jax.tree.map(lambda a: jnp.asarray(a, dtype), tree)


def first_point(name):
    return check_points(name)[0]


def random_like(tree, seed=1):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(np.shape(a)), a.dtype), tree)


def inner(a, b):
    return sum(jnp.vdot(p, q) for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def assert_trees_close(a, b, rtol=1e-10, atol=1e-12):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(p), np.asarray(q), rtol=rtol, atol=atol)


def digits_subset(name, train, test):
    """The first `train` and `test` digits: a run on them compiles and trains in about a second."""
    from difprog import data

    full = data.digits()
    return data.Dataset(name, full.x_train[:train], full.y_train[:train], full.x_test[:test],
                        full.y_test[:test], 10)


def fails_in_one_line(capsys, argv, status):
    """Runs `difprog argv`, checks its status and that stderr is one line; returns that line."""
    from difprog.cli import main

    assert main(argv) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    return err


def progress_lines(capsys, monkeypatch, argv):
    """Runs `difprog argv` with stderr captured (not a terminal) and a progress line per update;
    returns stderr's lines, after checking it holds no carriage return (no tqdm bar)."""
    from difprog import progress
    from difprog.cli import main

    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and err.endswith("\n"), err
    return err.splitlines()


@pytest.fixture(scope="session")
def linear_run(tmp_path_factory):
    """The run directory of `difprog train --model linear --epochs 1` (trained once)."""
    from difprog.cli import main

    out = tmp_path_factory.mktemp("linear_run")
    assert main(["train", "--model", "linear", "--epochs", "1", "--out", str(out),
                 "--no-progress"]) == 0
    return out


def grad_of_sum(f, argnums=0):
    """The gradient of sum(f(...)) with respect to `argnums`."""
    return jax.grad(lambda *a: jnp.sum(f(*a)), argnums)


def torch_or_skip():
    """(torch, torch.nn.functional), or the test is skipped where torch is not installed."""
    torch = pytest.importorskip("torch")
    return torch, torch.nn.functional


def torch_tensor(torch, a, grad=True):
    """`a` as a float64 torch tensor (requiring its gradient unless `grad` is False)."""
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


# Values from -1e4 to 1e4: the stable forms give finite values and gradients at all of them.
EXTREME_VALUES = jnp.array([-1e4, -100.0, -1.0, 0.0, 1.0, 100.0, 1e4], jnp.float32)


def pytest_collection_modifyitems(config, items):
    """Marks the slow tier (see tests/tiers.py): whole files by reason, and the tests listed in
    tests/slow_tests.txt; `pytest -m "not slow"` is the quick tier. Marks `once` the tests CI
    runs on one leg (tiers.ONCE), and groups the files whose tests share module fixtures on one
    worker (tiers.ONE_WORKER, with `--dist loadgroup`). Runs the slow files first."""
    from tests import tiers

    listed = tiers.slow_tests()
    for item in items:
        if item.nodeid in listed or item.nodeid.split("::")[0] in tiers.SLOW_FILES:
            item.add_marker(pytest.mark.slow)
        if tiers.runs_once(item.nodeid):
            item.add_marker(pytest.mark.once)
        if item.nodeid.split("::")[0] in tiers.ONE_WORKER:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
    # the slow files' long tests (processes, training) first, so that with several workers
    # (pytest -n) none is left running one of them alone at the end
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in tiers.SLOW_FILES)
