"""difprog: differentiable programming in JAX where every gradient is hand-written and proven.

Gates (`difprog.gates`) carry their own backward (VJP) and tangent (JVP) rules; `check_gate`
proves them against JAX's autodiff and finite differences; `explain` shows any function's
forward and backward pass node by node. `import difprog` also gives `layers`, `models`, `data`,
`train`, `checkpoint`, `interop` (PyTorch weights), `viz` and `attacks`; matplotlib is imported
only when a picture is drawn.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from typing import TYPE_CHECKING

from difprog.errors import (
    ArgumentError,
    CheckpointError,
    ConfigMismatchError,
    DataError,
    DifprogError,
    DownloadError,
    DtypeError,
    LabelError,
    NonFiniteLossError,
    PeerError,
    RuleError,
    RunDirectoryError,
    ShapeError,
    WriteError,
)

if TYPE_CHECKING:
    from difprog import attacks, checkpoint, data, gates, interop, layers, models, train, viz
    from difprog.check import CheckReport, check_gate
    from difprog.gate import Gate, bilinear, elementwise, gate, linear
    from difprog.graph import Explanation, Node, explain
    from difprog.modes import ModesReport, compare_modes, hessian, hvp

_MODULES = ("attacks", "checkpoint", "data", "gates", "interop", "layers", "models", "train",
            "viz")
_HOMES = {"difprog.check": ("CheckReport", "check_gate"),
          "difprog.gate": ("Gate", "bilinear", "elementwise", "linear"),
          "difprog.graph": ("Explanation", "Node", "explain"),
          "difprog.modes": ("ModesReport", "compare_modes", "hessian", "hvp")}
_HOME = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str):
    """The public modules and names, imported when first used (the command line starts, and can
    handle Ctrl-C, before JAX is imported)."""
    if name in _MODULES:
        return importlib.import_module(f"difprog.{name}")
    if name in _HOME:
        value = getattr(importlib.import_module(_HOME[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'difprog' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """This package's type: `difprog.gate` is the gate builder, though its module, imported
    lazily, has the same name (the import system would set the module there)."""

    @property
    def gate(self) -> Callable:
        return importlib.import_module("difprog.gate").gate

    @gate.setter
    def gate(self, module: types.ModuleType) -> None:
        """The import system names the submodule `difprog.gate` here; the builder keeps it."""


sys.modules[__name__].__class__ = _Package


__version__ = "0.1.0"

__all__ = [
    "ArgumentError",
    "CheckReport",
    "CheckpointError",
    "ConfigMismatchError",
    "DataError",
    "DifprogError",
    "DownloadError",
    "DtypeError",
    "Explanation",
    "Gate",
    "LabelError",
    "ModesReport",
    "Node",
    "NonFiniteLossError",
    "PeerError",
    "RuleError",
    "RunDirectoryError",
    "ShapeError",
    "WriteError",
    "attacks",
    "bilinear",
    "check_gate",
    "checkpoint",
    "compare_modes",
    "data",
    "elementwise",
    "explain",
    "gate",
    "gates",
    "hessian",
    "hvp",
    "interop",
    "layers",
    "linear",
    "models",
    "train",
    "viz",
]
