"""A function traced into a graph of steps, one per gate or JAX primitive, in topological order.

`jax.make_jaxpr` gives the program, which `_jaxpr.Walker` walks: calls to jitted or checkpointed
functions are inlined, custom_jvp / custom_vjp calls (jax.nn.relu) are one step named after their
function (keeping their rules), difprog gates become steps that run the gate's own rules, and the
elementwise jax.numpy primitives that have a gate (`+`, `*`, `jnp.exp`...) become that gate, so
`(x + y) * z` is explained with the same hand-written rules as
`gates.multiply(gates.add(x, y), z)`; so does `x @ w` (a dot_general exactly as jnp.matmul makes
it becomes the matmul gate). Any other primitive is a step whose backward is JAX's own
rule for it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from difprog import adapter, gates
from difprog.adapter import GateCall, gate_call, open_jaxpr
from difprog.errors import ArgumentError, DifprogError
from difprog.graph._jaxpr import Call, Walker, function_name

_PRIMITIVE_GATES = {"add": "add", "add_any": "add", "sub": "subtract", "mul": "multiply",
                    "div": "divide", "neg": "negative", "exp": "exp", "log": "log",
                    "max": "maximum", "min": "minimum", "tanh": "tanh", "logistic": "sigmoid",
                    "sqrt": "sqrt", "abs": "abs", "square": "square"}


@dataclasses.dataclass(frozen=True)
class Constant:
    """A value the program holds fixed: a literal such as the 1 in `1 + x`, or a closed-over
    array."""

    value: Any

    def __str__(self) -> str:
        if np.ndim(self.value) == 0:
            return f"{np.asarray(self.value).item():.4g}"
        return f"const{list(np.shape(self.value))}"


Ref = str | Constant


@dataclasses.dataclass
class Step:
    """One node of the traced graph: a gate, or a JAX primitive, applied to named values."""

    op: str
    inputs: tuple[Ref, ...]
    outputs: tuple[str, ...]
    scope: str
    call: GateCall | None = None
    primitive: Any = None
    params: dict = dataclasses.field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "gate" if self.call else "primitive"

    @property
    def rule(self) -> str:
        if self.call:
            return f"hand-written backward of gate {self.call.gate.name}"
        return f"JAX's rule for primitive {self.primitive.name}"

    def forward(self, *inputs) -> list:
        """The step's outputs, as a list; gates run through the gate, so autodiff uses its rules."""
        if self.call:
            return [self.call(*inputs)]
        out = adapter.bind_equation(self.primitive, self.params, *inputs)
        return list(out) if self.primitive.multiple_results else [out]

    def reference(self, *inputs) -> list:
        """The step's outputs computed in plain jax.numpy (a gate's forward, with no rules)."""
        return [self.call.reference(*inputs)] if self.call else self.forward(*inputs)

    def backward(self, upstream: Sequence, outputs: Sequence, inputs: Sequence) -> list:
        """One downstream cotangent per input (None for a non-floating one), given the upstream."""
        if self.call:
            return self.call.backward(upstream[0], outputs[0], *inputs)
        wrt = [i for i, x in enumerate(inputs) if is_float(x)]

        def of_floats(*floats):
            full = list(inputs)
            for i, x in zip(wrt, floats):
                full[i] = x
            return self.forward(*full)

        _, vjp = jax.vjp(of_floats, *[inputs[i] for i in wrt])
        seeds = [g if is_float(o) else np.zeros(np.shape(o), jax.dtypes.float0)
                 for g, o in zip(upstream, outputs)]
        cotangents = dict(zip(wrt, vjp(seeds)))
        return [cotangents.get(i) for i in range(len(inputs))]


@dataclasses.dataclass
class Program:
    """f as a graph: its inputs (one name per array leaf of each argument), constants and steps."""

    arg_names: tuple[str, ...]
    arg_trees: tuple[Any, ...]
    leaf_names: tuple[tuple[str, ...], ...]
    leaf_paths: tuple[tuple[str, ...], ...]
    constants: dict[str, Any]
    steps: list[Step]
    output: Ref

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(n for names in self.leaf_names for n in names)

    @property
    def node_count(self) -> int:
        """How many nodes the graph has grouped by gate: inputs, constants and steps."""
        return len(self.inputs) + len(self.constants) + len(self.steps)


def printable(text: str) -> str:
    """A name (a gate's, a layer's: a user chose it) on one line for tables, pictures and
    generated code: line breaks and other control characters are written escaped, as in repr."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def is_float(x: Any) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.floating)


def trace(f: Callable, args: tuple) -> Program:
    """Traces f at args into a Program; f must return one real scalar, as for jax.grad."""
    if not args:
        raise ArgumentError("explain needs at least one argument of f to differentiate by")
    try:
        closed, shape = jax.make_jaxpr(f, return_shape=True)(*args)
    except DifprogError:
        raise
    except (TypeError, ValueError, IndexError) as error:
        raise ArgumentError(f"explain could not trace f at the arguments given: {error}") from error
    if not isinstance(shape, jax.ShapeDtypeStruct) or shape.shape != () or not is_float(shape):
        raise ArgumentError(
            f"explain needs f to return one real scalar, as jax.grad does; it returned "
            f"{jax.tree.map(lambda s: f'{s.dtype}{list(s.shape)}', shape)}. Reduce it to a "
            f"scalar first (e.g. with difprog.gates.sum), and pass floats such as -2.0, not "
            f"ints, for the arguments to differentiate by")
    arg_names = _argument_names(f, len(args))
    leaf_names, leaf_paths, taken = [], [], set(arg_names)
    for name, arg in zip(arg_names, args):
        paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(arg)[0]]
        names = [name if not path else _unique(_identifier(name, path), taken) for path in paths]
        leaf_names.append(tuple(names))
        leaf_paths.append(tuple(jax.tree_util.keystr(path) for path in paths))
    _, consts = open_jaxpr(closed)
    constants = {_unique(f"c{i}", taken): c for i, c in enumerate(consts)}
    tracer = _Tracer(taken)
    [output] = tracer.walk(closed, [n for names in leaf_names for n in names],
                           consts=list(constants))
    output = tracer.rename(output, _unique("L", taken))
    return Program(tuple(arg_names), tuple(jax.tree.structure(a) for a in args),
                   tuple(leaf_names), tuple(leaf_paths), constants, tracer.steps, output)


class _Tracer(Walker):
    """Walks f's jaxpr into steps: calls inlined, custom_jvp / custom_vjp calls one step each."""

    def __init__(self, taken: set[str]):
        self.taken, self.steps, self.count = taken, [], 0
        self.scope, self.hint = "", None

    def literal(self, value: np.ndarray) -> Constant:
        return Constant(value)

    def constant(self, value: Any) -> Constant:
        return Constant(value)

    def descend(self, eqn: Any, call: Call) -> bool:
        return not call.custom  # keeps the custom rules; the step takes the function's name

    def call(self, eqn: Any, call: Call, ins: list) -> list:
        """An inlined call: its steps run in its scope, named after it where they need a name."""
        outer = self.scope, self.hint
        self.scope, self.hint = self.scope_of(eqn), eqn.params.get("name", self.hint)
        try:
            return super().call(eqn, call, ins)
        finally:
            self.scope, self.hint = outer

    def scope_of(self, eqn: Any) -> str:
        """The layer path an equation ran in, below the calls it is inlined from."""
        return "/".join(s for s in (self.scope, str(eqn.source_info.name_stack)) if s)

    def equation(self, eqn: Any, ins: list) -> tuple[str, ...]:
        """One step: a gate with its own rules, a custom_jvp / custom_vjp call, or a primitive."""
        call = gate_call(eqn.primitive, eqn.params) or _primitive_as_gate(eqn)
        outputs = tuple(self.fresh() for _ in eqn.outvars)
        name = eqn.primitive.name
        if call:
            op = call.gate.name
        elif name.startswith("custom_"):
            op = function_name(eqn) or self.hint or name
        else:
            op = name
        self.steps.append(Step(printable(op), tuple(ins), outputs, printable(self.scope_of(eqn)),
                               call, eqn.primitive, eqn.params))
        return outputs

    def fresh(self) -> str:
        name = _unique(f"s{self.count}", self.taken)
        self.count += 1
        return name

    def rename(self, ref: Ref, new: str) -> Ref:
        """Gives f's output the name `new`, so the report and flat code call it L."""
        if not isinstance(ref, str) or not any(ref in s.outputs for s in self.steps):
            return ref
        swap = lambda r: new if r == ref else r
        for s in self.steps:
            s.inputs = tuple(map(swap, s.inputs))
            s.outputs = tuple(map(swap, s.outputs))
        return new


def _primitive_as_gate(eqn: Any) -> GateCall | None:
    """The difprog gate an elementwise jax.numpy primitive stands for, if there is one."""
    if not all(jnp.issubdtype(v.aval.dtype, jnp.floating) for v in eqn.invars):
        return None
    name, params = eqn.primitive.name, eqn.params
    if name in _PRIMITIVE_GATES:
        return GateCall(gates.ALL[_PRIMITIVE_GATES[name]], {})
    if name == "integer_pow":
        return (GateCall(gates.square, {}) if params["y"] == 2
                else GateCall(gates.power, {"p": params["y"]}))
    if name == "reduce_sum":
        return GateCall(gates.sum, {"axis": tuple(params["axes"])})
    if name == "dot_general" and _is_matmul(eqn):
        return GateCall(gates.matmul, {})
    return None


def _is_matmul(eqn: Any) -> bool:
    """Whether a dot_general is exactly the one equation jnp.matmul makes for its operands."""
    x, w = (v.aval for v in eqn.invars)
    made = _matmul_equation((x.shape, x.dtype), (w.shape, w.dtype))
    return made is not None and made == (dict(eqn.params), eqn.outvars[0].aval.shape)


@functools.lru_cache(maxsize=256)
def _matmul_equation(x: tuple, w: tuple) -> tuple[dict, tuple] | None:
    """The params and output shape of jnp.matmul's dot_general at these operands, when jnp.matmul
    is that one equation on them (not after a squeeze or before a transpose); else None."""
    try:
        closed = jax.make_jaxpr(jnp.matmul)(jax.ShapeDtypeStruct(*x), jax.ShapeDtypeStruct(*w))
    except (TypeError, ValueError):
        return None
    jaxpr, _ = open_jaxpr(closed)
    if len(jaxpr.eqns) != 1:
        return None
    [eqn] = jaxpr.eqns
    if (eqn.primitive.name != "dot_general" or list(eqn.invars) != list(jaxpr.invars)
            or list(eqn.outvars) != list(jaxpr.outvars)):
        return None
    return dict(eqn.params), eqn.outvars[0].aval.shape


def _argument_names(f: Callable, n: int) -> list[str]:
    try:
        parameters = list(inspect.signature(f).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    positional = [p.name for p in parameters
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    names = positional[:n] if len(positional) >= n else [f"arg{i}" for i in range(n)]
    return [name if name.isidentifier() else f"arg{i}" for i, name in enumerate(names)]


def _identifier(name: str, path: tuple) -> str:
    parts = [str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path]
    return re.sub(r"\W", "_", "_".join([name, *parts]))


def _unique(name: str, taken: set[str]) -> str:
    candidate, i = name, 1
    while candidate in taken:
        candidate, i = f"{name}_{i}", i + 1
    taken.add(candidate)
    return candidate
