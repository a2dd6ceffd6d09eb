"""`explain(f, *args)`: the forward and backward pass of f, node by node, as the lectures draw
it."""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from difprog import arguments, inline
from difprog.errors import ArgumentError
from difprog.files import atomic
from difprog.graph import _flat_code, _html, _nodes, _render, _table
from difprog.graph._nodes import Node
from difprog.graph._render import MAX_DRAWN
from difprog.graph._trace import Constant, Program, Step, is_float, trace

_SMALL_JACOBIAN = 64


@dataclasses.dataclass(frozen=True)
class Explanation:
    """The result of `difprog.explain`: f's value, its input gradients, and the graph behind them.

    Attributes:
        value: f's output.
        input_grads: one gradient per argument of f, shaped like it (None for integer leaves).
        nodes: the graph's nodes in topological order (inputs first).
        values: every named value of the graph.
        grads: dL/d value for every named floating value.
        reference_error: the largest |difference| between input_grads and jax.grad(f).
        agrees: whether input_grads equal jax.grad(f) to within rounding.
        group: 'gate' (one node per gate or primitive) or 'layer'.
        finite: whether value and input_grads are free of NaN and infinity (when not, the
            printed report ends with a warning line naming the first non-finite node).
    """

    value: Any
    input_grads: tuple
    nodes: tuple[Node, ...]
    values: dict[str, Any]
    grads: dict[str, Any]
    reference_error: float
    agrees: bool
    group: str
    program: Program = dataclasses.field(repr=False)
    passes: _Passes = dataclasses.field(repr=False)

    def table(self, width: int = 26) -> str:
        """A text table: node, operation, inputs, value, upstream, local and downstream
        gradients."""
        return _table.table(self.nodes, width=width)

    def flat_code(self) -> str:
        """The forward and backward pass as plain numpy source defining `f_and_grad(<f's args>)`.

        Executed, `f_and_grad` returns (f's value, tuple of input gradients) for new inputs of the
        same shapes and dtypes, with no JAX involved.
        """
        return _flat_code.flat_code(self.program, self.values)

    def render(self, path: str | os.PathLike) -> pathlib.Path:
        """Draws the graph to an .svg or .png file: values above each edge, gradients below."""
        return _render.render(self, path)

    def to_html(self, path: str | os.PathLike, title: str | None = None) -> pathlib.Path:
        """Writes an interactive page (one self-contained .html file, no network access) that
        steps through the forward and backward pass node by node, beside the flat code.

        Example:
            >>> import difprog, tempfile, pathlib
            >>> e = difprog.explain(lambda x, y, z: (x + y) * z, -2.0, 5.0, -4.0)
            >>> e.to_html(pathlib.Path(tempfile.mkdtemp()) / "graph.html").name
            'graph.html'
        """
        return _html.write(self, path, title)

    def _repr_html_(self) -> str:
        """In a notebook: the interactive page of `to_html`, inline (a sandboxed iframe)."""
        return inline.frame(_html.page(self), height=800, title="difprog.explain")

    def save(self, directory: str | os.PathLike) -> list[pathlib.Path]:
        """Writes graph.svg, graph.png, graph.html, table.txt and flat_code.py into `directory`."""
        directory = pathlib.Path(directory)
        texts = {"table.txt": f"{self}\n", "flat_code.py": self.flat_code()}
        written = [self.render(directory / "graph.svg"), self.render(directory / "graph.png"),
                   self.to_html(directory / "graph.html")]
        for name, text in texts.items():
            with atomic(directory / name) as temporary:
                temporary.write_text(text)
            written.append(directory / name)
        return written

    def grouped(self, by: str = "layer", depth: int | None = None) -> Explanation:
        """The same explanation with one node per layer (its jax.named_scope), cut at `depth`."""
        if by == "gate":
            if depth is not None:
                raise ArgumentError("explain: depth applies only to group='layer'")
            return dataclasses.replace(self, nodes=_nodes.nodes(self.program, self.passes),
                                       group="gate")
        if by != "layer":
            raise ArgumentError(f"explain can group by 'gate' or 'layer', got {by!r}")
        depth = arguments.optional_int("explain", "depth", depth, minimum=1)
        return dataclasses.replace(self, nodes=_nodes.by_layer(self.program, self.passes, depth),
                                   group="layer")

    @property
    def finite(self) -> bool:
        """Whether f's value and every input gradient are finite (no NaN, no infinity)."""
        return not _nonfinite(self.value) and not _nonfinite_inputs(self)

    def __str__(self) -> str:
        verdict = "equal" if self.agrees else "DIFFER FROM"
        text = (f"{self.table()}\n\nf = {_table.summary(self.value)}; the input gradients "
                f"{verdict} jax.grad(f) (largest difference {self.reference_error:.2g}).")
        return text if self.finite else f"{text}\n{_nonfinite_warning(self)}"


def explain(f: Callable, *args: Any, group: str = "gate", depth: int | None = None,
            max_nodes: int | None = None) -> Explanation:
    """Explains f at args as a computational graph with values and gradients at every node.

    Traces f (built from difprog gates or jax.numpy) into its graph, runs the forward pass over
    the nodes in topological order recording every value, then the backward pass in reverse
    order: each gate applies its own hand-written backward rule (other primitives use JAX's),
    recording the upstream, local and downstream gradients at every node. The input gradients
    are checked against jax.grad(f).

    Args:
        f: a function of arrays (or pytrees of arrays) returning one real scalar.
        *args: where to explain it.
        group: 'gate' for one node per gate or primitive; 'layer' for one node per layer
            (the jax.named_scope each difprog layer runs in).
        depth: with group='layer', how many levels of the layer path to keep.
        max_nodes: refuse, once f is traced and before anything is computed, a graph of more
            nodes (one per gate; `graph.MAX_DRAWN` is the most `render` draws).

    Returns:
        An Explanation: `value`, `input_grads`, `nodes`, `table()`, `flat_code()` and `render()`.

    Example:
        >>> import difprog
        >>> e = difprog.explain(lambda x, y, z: (x + y) * z, -2.0, 5.0, -4.0)
        >>> float(e.value), [float(g) for g in e.input_grads]
        (-12.0, [-4.0, -4.0, 3.0])
    """
    if not callable(f):
        raise ArgumentError(f"explain needs a function, got {type(f).__name__}")
    args = tuple(jax.tree.map(_as_array, a) for a in args)
    program = trace(f, args)
    max_nodes = arguments.optional_int("explain", "max_nodes", max_nodes, minimum=1)
    if max_nodes is not None and program.node_count > max_nodes:
        raise ArgumentError(f"explain: f has {program.node_count} nodes, more than max_nodes="
                            f"{max_nodes}; nothing was computed. A picture shows at most "
                            f"{MAX_DRAWN} nodes: explain a smaller function, print the table "
                            f"without a picture, or group a model's nodes by layer")
    passes = jax.jit(lambda args: _passes(program, args))(args)
    values, grads = passes.values, passes.grads
    input_grads = tuple(
        jax.tree.unflatten(tree, [grads.get(n, jnp.zeros_like(values[n])) if is_float(values[n])
                                  else None for n in names])
        for tree, names in zip(program.arg_trees, program.leaf_names))
    error, agrees = _compare_with_jax_grad(f, args, input_grads)
    output = program.output
    value = values[output] if isinstance(output, str) else jnp.asarray(output.value)
    explanation = Explanation(value, input_grads, _nodes.nodes(program, passes), values, grads,
                              error, agrees, "gate", program, passes)
    return explanation.grouped(group, depth) if group != "gate" else explanation


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _Passes:
    """What the two passes record: every value, every gradient, and per step its downstream
    cotangents (one per input) and local Jacobians (where small)."""

    values: dict[str, Any]
    grads: dict[str, Any]
    contributions: list
    locals: list


def _as_array(leaf: Any) -> Any:
    if isinstance(leaf, bool) or not isinstance(leaf, (int, float, np.ndarray, np.generic,
                                                       jax.Array)):
        raise ArgumentError(f"explain: arguments must be arrays or numbers (or pytrees of them), "
                            f"got {type(leaf).__name__}")
    return jnp.asarray(leaf, jnp.asarray(leaf).dtype)  # Python numbers: not weakly typed


def _passes(program: Program, args: tuple) -> _Passes:
    """The forward pass in topological order, then the backward pass in reverse order.

    It runs as one jitted program; every node's value and gradient is still an output of it.
    """
    values = dict(zip(program.inputs, jax.tree.leaves(args)))
    values.update(program.constants)
    read = lambda ref: ref.value if isinstance(ref, Constant) else values[ref]
    for step in program.steps:
        values.update(zip(step.outputs, step.forward(*map(read, step.inputs))))
    grads: dict[str, Any] = {}
    if isinstance(program.output, str):
        grads[program.output] = jnp.ones_like(values[program.output])
    contributions: list = [None] * len(program.steps)
    for index in reversed(range(len(program.steps))):
        step = program.steps[index]
        outputs = [values[o] for o in step.outputs]
        if not any(map(is_float, outputs)):
            continue
        upstream = [grads.get(o, jnp.zeros_like(v)) for o, v in zip(step.outputs, outputs)]
        for o, g in zip(step.outputs, upstream):
            if is_float(values[o]):
                grads.setdefault(o, g)
        downstream = step.backward(upstream, outputs, [read(r) for r in step.inputs])
        contributions[index] = [
            None if isinstance(r, Constant) or r in program.constants or not is_float(read(r))
            else g for r, g in zip(step.inputs, downstream)]
        for ref, g in zip(step.inputs, contributions[index]):
            if g is not None:
                grads[ref] = grads[ref] + g if ref in grads else g
    locals_ = [_local(step, [read(r) for r in step.inputs], [values[o] for o in step.outputs])
               for step in program.steps]
    return _Passes(values, grads, contributions, locals_)


def _compare_with_jax_grad(f: Callable, args: tuple, input_grads: tuple) -> tuple[float, bool]:
    """The largest |difference| from jax.grad(f), and whether all differences are rounding."""
    reference = jax.jit(jax.grad(f, argnums=tuple(range(len(args))), allow_int=True))(*args)
    ours = jax.tree.leaves(input_grads, is_leaf=lambda v: v is None)
    error, agrees = 0.0, True
    for mine, theirs in zip(ours, jax.tree.leaves(reference), strict=True):
        if mine is None:
            continue
        a, b = np.asarray(mine, np.float64), np.asarray(theirs, np.float64)
        with np.errstate(invalid="ignore"):
            same = (a == b) | (np.isnan(a) & np.isnan(b))
            difference = np.where(same, 0.0, np.abs(a - b))
        error = max(error, float(np.max(difference, initial=0.0)))
        rtol = 1e-9 if mine.dtype == np.float64 else max(1e-4, 8 * float(jnp.finfo(mine.dtype).eps))
        scale = max(1.0, float(np.max(np.abs(b[np.isfinite(b)]), initial=0.0)))
        with np.errstate(invalid="ignore"):
            close = difference <= rtol * np.abs(b) + rtol * scale
        agrees &= bool(np.all(same | close))
    return error, agrees


def _nonfinite(x: Any) -> bool:
    """Whether a value (an array, a tuple of them, or None) holds a NaN or an infinity."""
    if isinstance(x, tuple):
        return any(map(_nonfinite, x))
    if x is None or _table.is_key(x) or not jnp.issubdtype(jnp.result_type(x), jnp.inexact):
        return False
    return not bool(np.all(np.isfinite(np.asarray(x))))


def _nonfinite_inputs(e: Explanation) -> list[str]:
    """The inputs whose gradient holds a NaN or an infinity."""
    return [n for n in e.program.inputs if _nonfinite(e.grads.get(n))]


def _described(node: Node) -> str:
    return f"{node.name} ({node.op} of {', '.join(node.inputs)})" if node.inputs else node.name


def _nonfinite_warning(e: Explanation) -> str:
    """The report's warning line: what is not finite, and where it first appears."""
    parts = []
    if _nonfinite(e.value):
        first = next((n for n in e.nodes if _nonfinite(n.value)), None)
        where = "" if first is None else (f"; the forward pass first gives a non-finite value "
                                          f"at node {_described(first)}")
        parts.append(f"f = {_table.summary(e.value)} is not finite{where}")
    bad = _nonfinite_inputs(e)
    if bad:
        first = next((n for n in reversed(e.nodes) if _nonfinite(n.downstream)), None)
        where = "" if first is None else (f"; the backward pass first gives a non-finite "
                                          f"gradient at node {_described(first)}")
        noun = "gradient of" if len(bad) == 1 else "gradients of"
        verb = "is" if len(bad) == 1 else "are"
        parts.append(f"the {noun} {', '.join(bad)} {verb} not finite{where}")
    return (f"warning: {'; '.join(parts)}. f or its derivative is undefined or overflows at "
            f"this point (a log or sqrt of a negative number, a division by zero...): choose "
            f"another point, or guard the expression there.")


def _local(step: Step, inputs: list, outputs: list) -> tuple | None:
    """d out / d input for each input, by the step's forward-mode rule, where it is small."""
    if len(outputs) != 1 or not is_float(outputs[0]):
        return None
    local = []
    for i, x in enumerate(inputs):
        if isinstance(step.inputs[i], Constant) or not is_float(x) or (
                np.size(outputs[0]) * np.size(x) > _SMALL_JACOBIAN):
            local.append(None)
            continue

        def one_input(xi, i=i):
            return step.forward(*inputs[:i], xi, *inputs[i + 1:])[0]

        try:
            local.append(jax.jacfwd(one_input)(x))
        except (TypeError, ValueError, NotImplementedError):  # no forward mode (custom_vjp...)
            local.append(None)
    return tuple(local)
