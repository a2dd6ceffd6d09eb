"""Every ```python block of README.md runs as written, in order, in one namespace (as a reader
pasting them into one Python session would), in a temporary directory for the files they write."""

from __future__ import annotations

import pathlib
import re
import time

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """Each ```python block's first line number in the file and its source."""
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in _BLOCK.finditer(text)]


def test_the_extractor_finds_every_python_fence():
    text = README.read_text()
    blocks = python_blocks(text)
    assert len(blocks) == text.count("\n```python\n") >= 8
    assert all(source.strip() for _, source in blocks)


@pytest.mark.slow
def test_every_readme_python_block_runs_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}
    seconds = {}
    for line, source in python_blocks(README.read_text()):
        began = time.perf_counter()
        # dont_inherit: the blocks run as a reader's session would, without this module's
        # `from __future__ import annotations` (a dataclass in a block reads real annotations)
        code = compile(source, f"README.md, block at line {line}", "exec", dont_inherit=True)
        exec(code, namespace)  # noqa: S102 - the README's own code, as a reader would run it
        seconds[line] = round(time.perf_counter() - began, 1)
    print("seconds per block, by line:", seconds)
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert {"neuron.svg", "classes.png", "saliency.png"} <= set(written), written
    assert any(p.startswith("runs/cnn-2/checkpoint_") for p in written), written
    # what the README's comments and text promise
    assert namespace["e"].agrees and namespace["e"].finite
    assert float(namespace["accuracy"]) > 0.85       # "about 90% test accuracy"
    assert namespace["run"].test_accuracy > 0.93       # "about 0.97 after 2 epochs"
    assert [d["layer"] for d in namespace["watched"].health["diagnoses"]] == [
        "dense_0", "dense_1", "dense_2", "dense_3"]
    assert namespace["tiny"].history[-1]["val_loss"] < 4.0   # a tiny gpt below uniform (5.1)
    assert any(p.startswith("runs/gpt-tiny/checkpoint_0020") for p in written), written
    assert namespace["maps"].shape == namespace["images"].shape == (10, 8, 8, 1)
    assert float(namespace["maps"].min()) < 0 < float(namespace["maps"].max())  # signed
