"""f's forward and backward pass as flat numpy source, in the style of the lecture notes.

Each node's forward and each gate's hand-written backward rule is traced to JAX primitives at
the explained shapes, and every primitive is written as the numpy expression that computes it
(`_numpy_source.NUMPY`); the few with no one-line numpy form (convolution, windows, gather...)
call helpers from `_numpy_lax`, whose source is copied into the output. Scans become for loops
and conds if / else. Temporaries used once are inlined, so a sigmoid's backward reads
`grad_x = grad_L * (L * (1.0 - L))`.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from difprog.adapter import gate_call, scan_counts
from difprog.errors import ArgumentError
from difprog.graph import _numpy_lax
from difprog.graph._jaxpr import Walker
from difprog.graph._numpy_source import ATOM, NUMPY, SUM, Expr, literal, wrap
from difprog.graph._trace import Constant, Program, Step, is_float, printable

_INLINE_LENGTH = 64


def flat_code(program: Program, values: dict) -> str:
    """The source of `f_and_grad(<f's arguments>)`, which returns (value, input gradients)."""
    return flat_code_lines(program, values)[0]


def flat_code_lines(program: Program, values: dict) -> tuple[str, dict, dict]:
    """The flat code, and where each step's statements are in it.

    Returns (source, forward, backward): `forward[i]` and `backward[i]` are the (first, last)
    line numbers, counted from 1, of step i's forward statements and of its backward rule's
    (a step the backward pass does not reach has no backward lines).

    Example:
        >>> import difprog
        >>> e = difprog.explain(lambda x, y, z: (x + y) * z, -2.0, 5.0, -4.0)
        >>> source, forward, backward = flat_code_lines(e.program, e.values)
        >>> source.splitlines()[forward[0][0] - 1].strip()
        's0 = x + y  # add'
    """
    unwritable = sorted({d for d in map(_foreign_dtype, jax.tree.leaves(values)) if d})
    if unwritable:
        raise ArgumentError(f"flat_code writes numpy, which has no {', '.join(unwritable)}; "
                            f"explain f at float32 or float64 inputs instead")
    with jax.enable_x64(True) if _wide(values) else contextlib.nullcontext():
        writer = _Writer(program, values)
        body = writer.function_body()
    hidden = sorted(set(program.arg_names) & {"np", "math", "f_and_grad", *writer.helpers})
    if hidden:
        raise ArgumentError(f"flat_code: f's argument {hidden[0]!r} would hide the name the "
                            f"generated code uses for numpy or one of its helpers; rename it")
    lines = ['"""f and its gradient, flat: the forward pass, then the backward pass node by node.',
             "", "Written by difprog.explain; it needs only numpy.", '"""', ""]
    if "erf" in writer.helpers:
        lines.append("import math")
    lines.append("import numpy as np")
    for helper in sorted(writer.helpers):
        lines += ["", "", inspect.getsource(getattr(_numpy_lax, helper)).rstrip()]
    args = ", ".join(program.arg_names)
    lines += ["", "", f"def f_and_grad({args}):",
              f'    """Returns f({args}) and its gradient with respect to each argument."""']
    lines = "\n".join(lines).split("\n")  # the helpers' sources are several lines each
    first = []  # the output line number (from 1) of each body line
    for line in body:
        first.append(len(lines) + 1)
        lines += _wrap_line("    " + line if line else "")
    first.append(len(lines) + 1)
    spans = [{i: (first[a], first[b] - 1) for i, (a, b) in side.items()}
             for side in (writer.forward_spans, writer.backward_spans)]
    return "\n".join(lines) + "\n", *spans


def _comment(text: str) -> str:
    """Text for a comment of the generated code, on one line (a line break would end the comment
    and put the rest into the code). The trace already escapes names; this keeps it so."""
    return printable(text)


def _wide(values: dict) -> bool:
    """Whether the explanation holds 64-bit values: its rules are then retraced with x64 on, as
    they were traced (without it JAX would write them at 32 bits)."""
    return any(str(getattr(v, "dtype", "")) in ("float64", "int64", "uint64", "complex128")
               for v in jax.tree.leaves(values))


def _foreign_dtype(value: Any) -> str | None:
    """The name of a dtype numpy lacks (bfloat16, PRNG keys), or None for numpy's own."""
    try:
        dtype = np.dtype(value.dtype)
    except TypeError:
        return str(value.dtype)
    return None if dtype.type.__module__ == "numpy" else dtype.name


class _Writer(Walker):
    """Writes f_and_grad's body line by line, naming temporaries and noting the helpers used."""

    prune = True

    def __init__(self, program: Program, values: dict):
        self.program, self.values = program, values
        self.taken = {"np", "math", "f_and_grad", *program.arg_names, *program.inputs,
                      *program.constants, *(o for s in program.steps for o in s.outputs)}
        self.taken |= {n for n in dir(_numpy_lax) if not n.startswith("_")}
        self.lines: list[str] = []
        self.helpers: set[str] = set()
        self.count = 0
        self.arrays: dict[int, Expr] = {}  # id of a Constant step input -> its expression
        # step index -> (first, end) of its statements among the body's lines
        self.forward_spans: dict[int, tuple[int, int]] = {}
        self.backward_spans: dict[int, tuple[int, int]] = {}

    def function_body(self) -> list[str]:
        program = self.program
        for arg, names, paths in zip(program.arg_names, program.leaf_names, program.leaf_paths):
            for name, path in zip(names, paths):
                if path:
                    self.lines.append(f"{name} = {arg}{path}")
        for name, value in program.constants.items():
            self.lines.append(f"{name} = {_array_source(np.asarray(value))}")
        self.lines.append("# forward pass")
        for index, step in enumerate(program.steps):
            start = len(self.lines)
            self.forward(step)
            self.forward_spans[index] = (start, len(self.lines))
        self.lines += ["", "# backward pass"]
        grad = {n: self.fresh(f"grad_{n}") for n in self.values}
        reached = self.backward(grad)
        inputs = []
        for name in program.inputs:
            if not is_float(self.values[name]):
                inputs.append("None")
            else:
                inputs.append(grad[name] if name in reached else f"np.zeros_like({name})")
        output = program.output
        value = output if isinstance(output, str) else literal(output.value).text
        grads = self.split_by_argument(inputs)
        self.lines.append(f"return {value}, ({', '.join(grads)}{',' if len(grads) == 1 else ''})")
        return self.lines

    def split_by_argument(self, leaves: list[str]) -> list[str]:
        out, start = [], 0
        for tree, names in zip(self.program.arg_trees, self.program.leaf_names):
            out.append(_tree_source(jax.tree.unflatten(tree, leaves[start:start + len(names)])))
            start += len(names)
        return out

    def forward(self, step: Step) -> None:
        inputs = [self.ref(r) for r in step.inputs]
        values = [self.value(r) for r in step.inputs]
        start = len(self.lines)
        closed = jax.make_jaxpr(lambda *a: step.reference(*a))(*values)
        outs = self.walk(closed, inputs)
        for name, expr in zip(step.outputs, outs):
            self.lines.append(f"{name} = {expr.text}")
        signature = f"{', '.join(step.outputs)} = {step.op}({', '.join(map(str, step.inputs))})"
        if len(self.lines) - start == 1 and len(self.lines[-1]) + len(step.op) < 90:
            self.lines[-1] += f"  # {_comment(step.op)}"
        else:
            self.lines.insert(start, f"# {_comment(signature)}")

    def backward(self, grad: dict[str, str]) -> set[str]:
        program = self.program
        reached: set[str] = set()
        if isinstance(program.output, str):
            self.lines.append(f"{grad[program.output]} = np.ones_like({program.output})")
            reached.add(program.output)
        for index in reversed(range(len(program.steps))):
            step, start = program.steps[index], len(self.lines)
            floats = [o for o in step.outputs if is_float(self.values[o])]
            if not any(o in reached for o in floats):
                continue
            self.lines.append(_comment(f"# {step.op}: {', '.join(step.outputs)} = "
                                       f"{step.op}({', '.join(map(str, step.inputs))})"))
            upstream = [Expr(grad[o]) if o in reached else Expr(f"np.zeros_like({o})")
                        for o in step.outputs]
            outputs = [self.value(o) for o in step.outputs]
            inputs = [self.value(r) for r in step.inputs]
            present: list[bool] = []

            def rule(g, out, x, step=step, present=present):
                cotangents = step.backward(g, out, x)
                present[:] = [c is not None for c in cotangents]
                return [c for c in cotangents if c is not None]

            closed = jax.make_jaxpr(rule)(outputs, outputs, inputs)
            wanted = [isinstance(r, str) and r not in program.constants
                      and is_float(self.values[r])
                      for r, p in zip(step.inputs, present) if p]
            refs = [r for r, p in zip(step.inputs, present) if p]
            args = [*upstream, *[Expr(o) for o in step.outputs],
                    *[self.ref(r) for r in step.inputs]]
            outs = self.walk(closed, args, wanted)
            for ref, expr, want in zip(refs, outs, wanted):
                if not want:
                    continue
                if ref in reached:
                    self.lines.append(f"{grad[ref]} = {grad[ref]} + {wrap(expr, SUM, False)}")
                else:
                    self.lines.append(f"{grad[ref]} = {expr.text}")
                    reached.add(ref)
            self.backward_spans[index] = (start, len(self.lines))
        return reached

    def bind(self, expr: Expr, uses: int, returned: int) -> Expr:
        """The expression inlined where it is short and read once, else a named temporary."""
        inline = expr.precedence == ATOM and expr.text.isidentifier()
        inline |= uses + returned == 1 and (len(expr.text) <= _INLINE_LENGTH or not uses)
        if inline:
            return expr
        name = self.fresh("t")
        self.lines.append(f"{name} = {expr.text}")
        return Expr(name)

    def literal(self, value: np.ndarray) -> Expr:
        return literal(value)

    def equation(self, eqn: Any, ins: list[Expr]) -> list[Expr]:
        """One equation as numpy: a gate by its forward, cond and scan as control flow."""
        name = eqn.primitive.name
        call = gate_call(eqn.primitive, eqn.params)
        if call is not None:
            values = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in eqn.invars]
            return self.walk(jax.make_jaxpr(call.reference)(*values), ins)
        if name == "cond" and eqn.params.get("branches_platforms"):
            # lax.platform_dependent: every branch computes the same; numpy takes the default one
            platforms = eqn.params["branches_platforms"]
            branch = eqn.params["branches"][platforms.index(None) if None in platforms else -1]
            return self.walk(branch, ins[1:])
        if name == "cond":
            return self.branches(eqn, ins)
        if name == "scan":
            return self.loop(eqn, ins)
        translate = NUMPY.get(name)
        if translate is None:
            raise ArgumentError(
                f"flat_code cannot write JAX primitive {name!r} as numpy yet; explain() itself "
                f"(its table, graph and gradients) does not need it")
        out = translate(self, ins, eqn)
        if eqn.primitive.multiple_results:
            names = [self.fresh("t") for _ in eqn.outvars]
            self.lines.append(f"{', '.join(names)} = {out.text}")
            return [Expr(n) for n in names]
        return [out]

    def branches(self, eqn: Any, ins: list[Expr]) -> list[Expr]:
        """lax.cond and lax.switch as if / elif / else on the branch index."""
        index, operands = self.named(ins[0]), [self.named(e) for e in ins[1:]]
        outs = [self.fresh("t") for _ in eqn.outvars]
        branches = eqn.params["branches"]
        for k, branch in enumerate(branches):
            if k == len(branches) - 1:
                self.lines.append("else:" if k else "if True:")
            else:
                self.lines.append(f"{'if' if k == 0 else 'elif'} {index.text} == {k}:")
            self.indented(lambda branch=branch: self.assign(outs, self.walk(branch, operands)))
        return [Expr(o) for o in outs]

    def loop(self, eqn: Any, ins: list[Expr]) -> list[Expr]:
        """lax.scan as a for loop: the carry updated in place, the outputs stacked."""
        p = eqn.params
        n_consts, n_carry = scan_counts(p)
        consts = [self.named(e) for e in ins[:n_consts]]
        carry = [self.fresh("carry") for _ in range(n_carry)]
        self.assign(carry, ins[n_consts:n_consts + n_carry])
        xs = [self.named(e) for e in ins[n_consts + n_carry:]]
        ys = [self.fresh("ys") for _ in eqn.outvars[n_carry:]]
        self.lines += [f"{y} = []" for y in ys]
        i, length = self.fresh("i"), p["length"]
        steps = f"range({length} - 1, -1, -1)" if p["reverse"] else f"range({length})"
        self.lines.append(f"for {i} in {steps}:")

        def body():
            outs = self.walk(p["jaxpr"], [*consts, *map(Expr, carry),
                                           *(Expr(f"{x.text}[{i}]") for x in xs)])
            stacked = [self.fresh("y") for _ in ys]  # one assignment: all read the old carry
            self.assign([*carry, *stacked], outs)
            self.lines += [f"{y}.append({t})" for y, t in zip(ys, stacked)]

        self.indented(body)
        order = "[::-1]" if p["reverse"] else ""
        self.lines += [f"{y} = np.stack({y}{order})" for y in ys]
        return [*map(Expr, carry), *map(Expr, ys)]

    def indented(self, write: Callable[[], None]) -> None:
        outer, self.lines = self.lines, []
        write()
        inner, self.lines = self.lines or ["pass"], outer
        self.lines += ["    " + line for line in inner]

    def assign(self, names: list[str], exprs: list[Expr]) -> None:
        if names:
            self.lines.append(f"{', '.join(names)} = {', '.join(e.text for e in exprs)}")

    def named(self, expr: Expr) -> Expr:
        """The expression as a name, so a loop or branch does not compute it again."""
        if expr.text.isidentifier() or expr.bare is not None:
            return expr
        name = self.fresh("t")
        self.lines.append(f"{name} = {expr.text}")
        return Expr(name)

    def ref(self, ref: Any) -> Expr:
        """A step's input: a name, a scalar literal, or an array constant written once as `k`."""
        if not isinstance(ref, Constant):
            return Expr(ref)
        if id(ref) not in self.arrays:
            self.arrays[id(ref)] = self.constant(ref.value)
        return self.arrays[id(ref)]

    def value(self, ref: Any) -> Any:
        return ref.value if isinstance(ref, Constant) else self.values[ref]

    def constant(self, value: Any) -> Expr:
        array = np.asarray(value)
        if array.ndim == 0:
            return literal(array)
        name = self.fresh("k")
        self.lines.append(f"{name} = {_array_source(array)}")
        return Expr(name)

    def helper(self, name: str) -> str:
        self.helpers.add(name)
        return name

    def fresh(self, base: str) -> str:
        name = base if base != "t" else f"t{self.count}"
        while name in self.taken:
            self.count += 1
            name = f"{base}{self.count}" if base != "t" else f"t{self.count}"
        if base == "t":
            self.count += 1
        self.taken.add(name)
        return name


def _wrap_line(line: str, width: int = 99) -> list[str]:
    """Splits a long `name = f(a, b, ...)` after the commas of its outermost call."""
    open_at = line.find("(", line.find(" = ") + 3)
    if len(line) <= width or open_at < 0 or not line.endswith(")") or "#" in line:
        return [line]
    pieces, depth, start = [], 0, open_at + 1
    for i in range(open_at + 1, len(line) - 1):
        depth += line[i] in "([{"
        depth -= line[i] in ")]}"
        if depth < 0:
            return [line]  # the call closes before the end: not one call
        if line[i] == "," and depth == 0:
            pieces.append(line[start:i + 1].strip())
            start = i + 1
    pieces.append(line[start:-1].strip())
    indent = " " * (open_at + 1)
    out, current = [], line[:open_at + 1]
    for piece in pieces:
        full = len(current) + len(piece) + 1 > width
        if full and current.strip() and current != line[:open_at + 1]:
            out.append(current.rstrip())
            current = indent
        current += piece + " "
    out.append(current.rstrip() + ")")
    return out


def _array_source(array: np.ndarray) -> str:
    if array.ndim == 0:
        return literal(array).text
    text = repr(array.tolist()).replace("nan", "np.nan").replace("inf", "np.inf")
    return f"np.array({text}, dtype=np.{array.dtype.name})"


def _tree_source(tree: Any) -> str:
    if isinstance(tree, str):
        return tree
    if isinstance(tree, dict):
        return "{" + ", ".join(f"{k!r}: {_tree_source(v)}" for k, v in tree.items()) + "}"
    if type(tree) is list:
        return "[" + ", ".join(map(_tree_source, tree)) + "]"
    if type(tree) is tuple:
        items = ", ".join(map(_tree_source, tree))
        return f"({items}{',' if len(tree) == 1 else ''})"
    if tree is None:
        return "None"
    raise ArgumentError(f"flat_code writes gradients for arguments that are arrays, dicts, lists "
                        f"or tuples of them; got a {type(tree).__name__}")
