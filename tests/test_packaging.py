"""The wheel holds the difprog package and nothing else, and `import difprog` gives its modules
without importing matplotlib or scikit-learn."""

from __future__ import annotations

import importlib.metadata
import pathlib
import shutil
import subprocess
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
_NOT_SOURCE = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist", ".*",
                                     "difprog-demo")


def _source_copy(where: pathlib.Path) -> pathlib.Path:
    """The repository's sources copied to `where`, with a `difprog-demo/` run directory added,
    as `difprog demo` leaves one in a clone: its .py file must not become a package."""
    where.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, where / name)
    for name in ("difprog", "tests", "examples", "benchmarks"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, where / name, ignore=_NOT_SOURCE)
    demo = where / "difprog-demo" / "explain"
    demo.mkdir(parents=True)
    (demo / "flat_code.py").write_text("def f_and_grad(x):\n    return x, (1.0,)\n")
    (where / "difprog-demo" / "__init__.py").write_text("")
    return where


def _setuptools_fits() -> bool:
    """Whether this environment's setuptools meets pyproject's build requirement (>= 68)."""
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0]) >= 68
    except importlib.metadata.PackageNotFoundError:
        return False


def _build_wheel(source: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
    """pip wheel of `source`: offline with this environment's setuptools where it fits, else
    in pip's isolated build environment."""
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-q",
               str(source), "-w", str(out)]
    if _setuptools_fits():
        command.insert(4, "--no-build-isolation")
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
    [wheel] = out.glob("difprog-*.whl")
    return wheel


def test_the_wheel_holds_difprog_and_nothing_else(tmp_path):
    source = _source_copy(tmp_path / "source")
    wheel = _build_wheel(source, tmp_path / "wheels")
    names = zipfile.ZipFile(wheel).namelist()
    version = importlib.metadata.version("difprog")
    strays = [n for n in names
              if not n.startswith(("difprog/", f"difprog-{version}.dist-info/"))]
    assert not strays, f"the wheel installs more than difprog: {strays}"
    assert {"difprog/__init__.py", "difprog/graph/_trace.py", "difprog/gates/__init__.py",
            "difprog/layers/__init__.py", "difprog/viz/__init__.py"} <= set(names)
    top_level = f"difprog-{version}.dist-info/top_level.txt"
    if top_level in names:
        assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["difprog"]


def test_import_difprog_gives_its_modules_without_matplotlib_or_sklearn():
    code = ("import sys, difprog\n"
            "for name in ('train', 'data', 'viz', 'layers', 'gates', 'models', 'checkpoint'):\n"
            "    assert hasattr(difprog, name), name\n"
            "print(sorted(m for m in ('matplotlib', 'sklearn') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", "import difprog imported " + done.stdout
