"""difprog: differentiable programming in JAX where every gradient is hand-written and proven.

Gates (`difprog.gates`) carry their own backward (VJP) and tangent (JVP) rules; `check_gate`
proves them against JAX's autodiff and finite differences; `explain` shows any function's
forward and backward pass node by node. `import difprog` also gives `layers`, `models`, `data`,
`train`, `checkpoint`, `interop` (PyTorch weights) and `viz`; matplotlib is imported only when
a picture is drawn.
"""

from difprog import checkpoint, data, gates, interop, layers, models, train, viz
from difprog.check import CheckReport, check_gate
from difprog.errors import (
    ArgumentError,
    CheckpointError,
    ConfigMismatchError,
    DifprogError,
    DtypeError,
    LabelError,
    NonFiniteLossError,
    RuleError,
    RunDirectoryError,
    ShapeError,
    WriteError,
)
from difprog.gate import Gate, bilinear, elementwise, gate, linear
from difprog.graph import Explanation, Node, explain
from difprog.modes import ModesReport, compare_modes, hessian, hvp

__version__ = "0.1.0"

__all__ = [
    "ArgumentError",
    "CheckReport",
    "CheckpointError",
    "ConfigMismatchError",
    "DifprogError",
    "DtypeError",
    "Explanation",
    "Gate",
    "LabelError",
    "ModesReport",
    "Node",
    "NonFiniteLossError",
    "RuleError",
    "RunDirectoryError",
    "ShapeError",
    "WriteError",
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
