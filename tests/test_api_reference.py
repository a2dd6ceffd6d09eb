"""The API reference (mkdocs.yml, docs/reference/, docs/hooks.py) builds from the docstrings with
warnings as errors, and documents every public name: the design's, and every name of each public
module's `__all__`, so a name added without its place in the reference fails here."""

from __future__ import annotations

import html
import importlib
import re
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The design's public API (DESIGN.md, "Public API"), as dotted names; a name documented where it
# is defined counts too (difprog.check_gate is difprog.check.check_gate).
DESIGN = [
    *(f"difprog.gates.{name}" for name in (
        "add subtract multiply divide negative square sqrt power exp log reciprocal abs maximum "
        "minimum relu leaky_relu sigmoid tanh softplus gelu matmul sum mean max logsumexp softmax "
        "log_softmax conv2d max_pool2d avg_pool2d layer_norm rms_norm batch_norm embedding "
        "attention mse_loss softmax_cross_entropy multiclass_hinge_loss l2_penalty ALL").split()),
    "difprog.gates", "difprog.gate", "difprog.Gate.forward", "difprog.Gate.backward",
    "difprog.Gate.tangent", "difprog.Gate.with_rules", "difprog.check_gate",
    "difprog.CheckReport.ok",
    "difprog.layers", "difprog.layers.Layer.init", "difprog.layers.Layer.apply",
    *(f"difprog.layers.{name}" for name in (
        "Dense Conv2D MaxPool2D AvgPool2D Flatten Relu Tanh Sigmoid LeakyRelu Dropout LayerNorm "
        "serial parallel residual Embedding MultiHeadAttention RMSNorm Gelu BatchNorm "
        "GlobalAvgPool").split()),
    "difprog.ShapeError",
    "difprog.models", "difprog.models.cnn", "difprog.models.mlp", "difprog.models.gpt",
    "difprog.models.resnet18",
    "difprog.compare_modes", "difprog.train",
    "difprog.viz",
    *(f"difprog.viz.{name}" for name in (
        "visualize pixel fourier decorrelated_to_rgb diversity saliency gradient_times_input "
        "integrated_gradients smoothgrad grad_cam occlusion completeness model_randomization "
        "infidelity sensitivity_max deletion_insertion").split()),
    "difprog.data.text", "difprog.data.idx", "difprog.data.fashion_mnist", "difprog.data.digits",
    "difprog.attacks", "difprog.attacks.fgsm", "difprog.attacks.pgd",
    "difprog.attacks.fooling_image", "difprog.attacks.robustness",
    "difprog.monitor",
    "difprog.Explanation", "difprog.Explanation._repr_html_", "difprog.Explanation.flat_code",
    "difprog.explain",
    "difprog.interop.from_torch",
]

# Every public module whose __all__ the reference must cover, whichever exist.
MODULES = ["difprog", "difprog.gates", "difprog.gate", "difprog.check", "difprog.layers",
           "difprog.models", "difprog.train", "difprog.driver", "difprog.checkpoint",
           "difprog.shards", "difprog.placement",
           "difprog.modes", "difprog.graph", "difprog.viz", "difprog.attacks", "difprog.data",
           "difprog.monitor", "difprog.lm", "difprog.interop", "difprog.errors",
           "difprog.inline", "difprog.figures"]

_ID = re.compile(r'\sid="(difprog(?:\.\w+)*)"')


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The reference built with `mkdocs build --strict` into a temporary directory."""
    out = tmp_path_factory.mktemp("site")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                             str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    assert result.returncode == 0, (
        f"mkdocs build --strict failed (exit {result.returncode}):\n{result.stderr}"
        f"{result.stdout}")
    print(f"mkdocs build --strict took {seconds:.1f} s")
    return out


def _pages(site: Path) -> dict[str, str]:
    return {path.name: path.read_text(encoding="utf-8") for path in site.glob("*.html")
            if path.name != "404.html"}


@pytest.fixture(scope="module")
def anchors(site) -> set[str]:
    """The id of every documented object on every page (mkdocstrings' `difprog.x.y`)."""
    return {found for text in _pages(site).values() for found in _ID.findall(text)}


def _homes(dotted: str) -> set[str]:
    """Where mkdocstrings may have documented `dotted`: the path as written (where a module
    re-exports it: difprog.models.resnet18) and, for a function or class (or a member of one),
    its home `module.qualname` with the module's path cut short at any package
    (difprog.check_gate as difprog.check.check_gate, difprog.Explanation.flat_code as
    difprog.graph.Explanation.flat_code). No other suffix counts: difprog.monitor is not
    documented by some `TrainConfig.monitor`."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    home = None
    for i, part in enumerate(parts[1:], start=2):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            break
        module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        if (isinstance(module, str) and isinstance(qualname, str) and "<" not in qualname
                and not isinstance(obj, types.ModuleType)):
            home = (module.split("."), qualname.split(".") + parts[i:])
    if home is None:
        return {dotted}
    module, rest = home
    return {dotted} | {".".join(module[:n] + rest) for n in range(1, len(module) + 1)}


def _documented(dotted: str, anchors: set[str]) -> bool:
    return not _homes(dotted).isdisjoint(anchors)


def _public_names() -> list[str]:
    names = []
    for module_name in MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        names += [f"{module_name}.{name}" for name in getattr(module, "__all__", ())]
        if module_name == "difprog.gates":
            names += [f"difprog.gates.{name}" for name in module.ALL]
    return names


def test_the_reference_builds_with_warnings_as_errors(site):
    assert (site / "index.html").is_file()


def test_every_name_of_the_design_is_documented(anchors):
    missing = [name for name in DESIGN if not _documented(name, anchors)]
    assert not missing, f"not in the API reference: {missing}"


def test_every_name_in_a_public_all_is_documented(anchors):
    names = _public_names()
    assert len(names) > 300  # the modules were found
    missing = [name for name in names if not _documented(name, anchors)]
    assert not missing, (f"public names (in an __all__) not in the API reference: {missing}; "
                         f"document them in docs/reference/ (see mkdocs.yml)")


def test_every_gate_is_listed_with_its_signature_and_docstring(site):
    from difprog import gates

    page = (site / "gates.html").read_text(encoding="utf-8")
    for name, gate in gates.ALL.items():
        start = page.find(f'id="difprog.gates.{name}"')
        assert start >= 0, f"gate {name} is not on the gates page"
        entry = html.unescape(re.sub(r"<[^>]+>", "", page[start:start + 3000]))
        assert f"difprog.gates.{name}{gate.signature}" in entry, name
        first_line = (gate.__doc__ or "").strip().splitlines()[0].strip()
        assert first_line and first_line in entry, f"gate {name}: its docstring is not shown"


def test_no_page_is_empty(site):
    pages = _pages(site)
    nav = ["index.html", "gates.html", "layers.html", "models.html", "training.html",
           "modes.html", "explain.html", "viz.html", "attacks.html", "data.html", "monitor.html",
           "lm.html", "interop.html", "errors.html", "notebooks.html"]
    assert sorted(pages) == sorted(nav)
    for name, text in pages.items():
        main = text.split('role="main"', 1)[-1]
        words = html.unescape(re.sub(r"<[^>]+>", " ", main)).split()
        assert len(words) > 100, f"{name} is (nearly) empty: {' '.join(words)[:300]}"
        if name != "index.html":
            objects = main.count('class="doc doc-heading"')
            assert objects >= 2, f"{name} documents {objects} objects"
