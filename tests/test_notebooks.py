"""The lessons in notebooks/ run end to end in a Jupyter kernel of this Python, and are stored
stripped of outputs.

Each notebook runs in a fresh kernel started from `sys.executable` (ipykernel's own kernel spec,
not whichever `python3` spec a Jupyter installation lists), with an empty temporary directory as
its working directory, which it must leave empty. A notebook whose metadata says
`"difprog": {"requires": ["fashion-mnist"]}` is skipped, saying why, where that data set is not
installed.
"""

from __future__ import annotations

import os
import pathlib
import re
import sys
import time

import jupyter_client
import nbclient
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

import difprog

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 300  # seconds; a whole lesson takes well under a minute on 2 cores
BUDGET = 180  # seconds a lesson may take, kernel start included (the 3 minutes)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _fashion_mnist_missing() -> str | None:
    from difprog import data

    try:
        data.fashion_mnist(download=False)
    except difprog.DataError:
        return "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"
    return None


REQUIREMENTS = {"fashion-mnist": _fashion_mnist_missing}  # name -> why it is missing, or None


def test_there_are_the_lessons():
    assert len(NOTEBOOKS) >= 5, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_stripped_and_valid(path):
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata.kernelspec.name == "python3"
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name}, cell {index}: outputs are stored; strip them (Jupyter: Edit > "
                f"Clear Outputs of All Cells, or `jupyter nbconvert --clear-output --inplace`)")
    for requirement in nb.metadata.get("difprog", {}).get("requires", []):
        assert requirement in REQUIREMENTS, f"{path.name}: unknown requirement {requirement!r}"


def _kernel_manager() -> jupyter_client.AsyncKernelManager:
    """A kernel of this very interpreter: ipykernel's built-in spec runs `sys.executable`."""
    specs = KernelSpecManager(kernel_dirs=[])  # no installed specs: only the native one
    return jupyter_client.AsyncKernelManager(kernel_name="python3", kernel_spec_manager=specs)


def _same_interpreter_cell() -> nbformat.NotebookNode:
    """A first cell that fails unless the kernel runs this Python and imports this difprog."""
    return nbformat.v4.new_code_cell(
        "import sys, difprog\n"
        f"assert sys.executable == {sys.executable!r}, sys.executable\n"
        f"assert sys.prefix == {sys.prefix!r}, sys.prefix\n"
        f"assert difprog.__file__ == {difprog.__file__!r}, difprog.__file__")


def _failure(path: pathlib.Path, index: int, cell, error: Exception) -> str:
    """The notebook, the cell's number and source, and the kernel's traceback (or the error)."""
    where = "the kernel check" if index < 0 else f"cell {index} (counting every cell from 0)"
    tracebacks = ["\n".join(output.traceback) for output in cell.get("outputs", [])
                  if output.output_type == "error"]
    detail = _ANSI.sub("", tracebacks[-1]) if tracebacks else f"{type(error).__name__}: {error}"
    return f"{path.name}, {where}, failed:\n{cell.source}\n{'-' * 40}\n{detail}"


@pytest.mark.slow  # a kernel per lesson, 5 to 40 s each; the check above stays quick
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    for requirement in nb.metadata.get("difprog", {}).get("requires", []):
        reason = REQUIREMENTS[requirement]()
        if reason:
            pytest.skip(f"{path.name} needs {requirement}: {reason}")
    nb.cells.insert(0, _same_interpreter_cell())
    started = []  # the index of each cell as it starts
    client = nbclient.NotebookClient(
        nb, km=_kernel_manager(), timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(tmp_path)}},
        on_cell_start=lambda cell, cell_index: started.append(cell_index))
    # The kernel imports the difprog this test imports, as pytest does (pythonpath = ["."]).
    # Its temporary files go under tmp_path: a kernel that is shut down may not remove them.
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp"), "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    began = time.perf_counter()
    try:
        client.execute(env=env)
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as error:
        index = started[-1] if started else 0
        pytest.fail(_failure(path, index - 1, nb.cells[index], error), pytrace=False)
    seconds = time.perf_counter() - began
    assert seconds < BUDGET, f"{path.name} took {seconds:.0f} s; a lesson has {BUDGET} s"
    for index, cell in enumerate(nb.cells[1:]):  # difprog's pictures leave the user's plots alone
        if "plt.show()" in cell.get("source", ""):
            kinds = [kind for output in cell.outputs for kind in output.get("data", {})]
            assert "image/png" in kinds, f"{path.name}, cell {index}: plt.show() showed nothing"
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != "tmp")
    assert not left, f"{path.name} wrote {left} into its working directory; use a temporary one"
