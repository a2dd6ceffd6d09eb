"""f's forward and backward pass as flat numpy source, in the style of the lecture notes.

Each node's forward and each gate's hand-written backward rule is traced to JAX primitives at
the explained shapes, and every primitive is written as the numpy expression that computes it
(`_NUMPY`); the few with no one-line numpy form (convolution, windows, gather...) call helpers
from `_numpy_lax`, whose source is copied into the output. Temporaries used once are inlined, so
a sigmoid's backward reads `grad_s3 = grad_L * L * (1.0 - L)`.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.extend.core as jex
import numpy as np

from difprog.errors import ArgumentError
from difprog.gate import gate_call
from difprog.graph import _numpy_lax
from difprog.graph._trace import Constant, Program, Step, is_float

_ATOM, _POWER, _UNARY, _PRODUCT, _SUM, _AND, _XOR, _OR, _COMPARE, _LOWEST = (
    100, 16, 15, 13, 12, 9, 8, 7, 6, 0)
_INLINE_LENGTH = 64
_CALLS = ("jit", "pjit", "closed_call", "core_call", "checkpoint", "remat", "remat2",
          "custom_jvp_call",
          "custom_vjp_call", "custom_vjp_call_jaxpr")


class _Expr(NamedTuple):
    """Python source for a value, its operator precedence, and a bare form for literals."""

    text: str
    precedence: int = _ATOM
    bare: str | None = None


def flat_code(program: Program, values: dict) -> str:
    """The source of `f_and_grad(<f's arguments>)`, which returns (value, input gradients)."""
    unwritable = sorted({d for d in map(_foreign_dtype, jax.tree.leaves(values)) if d})
    if unwritable:
        raise ArgumentError(f"flat_code writes numpy, which has no {', '.join(unwritable)}; "
                            f"explain f at float32 or float64 inputs instead")
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
    lines += [wrapped for line in body for wrapped in _wrap_line("    " + line if line else "")]
    return "\n".join(lines) + "\n"


def _foreign_dtype(value: Any) -> str | None:
    """The name of a dtype numpy lacks (bfloat16, PRNG keys), or None for numpy's own."""
    try:
        dtype = np.dtype(value.dtype)
    except TypeError:
        return str(value.dtype)
    return None if dtype.type.__module__ == "numpy" else dtype.name


class _Writer:
    def __init__(self, program: Program, values: dict):
        self.program, self.values = program, values
        self.taken = {"np", "math", "f_and_grad", *program.arg_names, *program.inputs,
                      *program.constants, *(o for s in program.steps for o in s.outputs)}
        self.taken |= {n for n in dir(_numpy_lax) if not n.startswith("_")}
        self.lines: list[str] = []
        self.helpers: set[str] = set()
        self.count = 0

    def function_body(self) -> list[str]:
        program = self.program
        for arg, names, paths in zip(program.arg_names, program.leaf_names, program.leaf_paths):
            for name, path in zip(names, paths):
                if path:
                    self.lines.append(f"{name} = {arg}{path}")
        for name, value in program.constants.items():
            self.lines.append(f"{name} = {_array_source(np.asarray(value))}")
        self.lines.append("# forward pass")
        for step in program.steps:
            self.forward(step)
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
        value = output if isinstance(output, str) else _literal(output.value).text
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
        outs = self.jaxpr(closed, inputs)
        for name, expr in zip(step.outputs, outs):
            self.lines.append(f"{name} = {expr.text}")
        signature = f"{', '.join(step.outputs)} = {step.op}({', '.join(map(str, step.inputs))})"
        if len(self.lines) - start == 1 and len(self.lines[-1]) + len(step.op) < 90:
            self.lines[-1] += f"  # {step.op}"
        else:
            self.lines.insert(start, f"# {signature}")

    def backward(self, grad: dict[str, str]) -> set[str]:
        program = self.program
        reached: set[str] = set()
        if isinstance(program.output, str):
            self.lines.append(f"{grad[program.output]} = np.ones_like({program.output})")
            reached.add(program.output)
        for step in reversed(program.steps):
            floats = [o for o in step.outputs if is_float(self.values[o])]
            if not any(o in reached for o in floats):
                continue
            self.lines.append(f"# {step.op}: {', '.join(step.outputs)} = "
                              f"{step.op}({', '.join(map(str, step.inputs))})")
            upstream = [_Expr(grad[o]) if o in reached else _Expr(f"np.zeros_like({o})")
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
            args = [*upstream, *[_Expr(o) for o in step.outputs],
                    *[self.ref(r) for r in step.inputs]]
            outs = self.jaxpr(closed, args, wanted)
            for ref, expr, want in zip(refs, outs, wanted):
                if not want:
                    continue
                if ref in reached:
                    self.lines.append(f"{grad[ref]} = {grad[ref]} + {_wrap(expr, _SUM, False)}")
                else:
                    self.lines.append(f"{grad[ref]} = {expr.text}")
                    reached.add(ref)
        return reached

    def jaxpr(self, closed: Any, args: list[_Expr], wanted: list[bool] | None = None
              ) -> list[_Expr]:
        consts = [self.constant(c) for c in closed.consts]
        return self.body(closed.jaxpr, consts, args, wanted)

    def body(self, jaxpr: Any, consts: list[_Expr], args: list[_Expr],
             wanted: list[bool] | None = None) -> list[_Expr]:
        """Writes the equations the wanted outputs need; returns one expression per output."""
        env = dict(zip(jaxpr.constvars, consts))
        env.update(zip(jaxpr.invars, args))
        wanted = [True] * len(jaxpr.outvars) if wanted is None else wanted
        live = {v for v, w in zip(jaxpr.outvars, wanted) if w and isinstance(v, jex.Var)}
        equations = []
        for eqn in reversed(jaxpr.eqns):
            if any(v in live for v in eqn.outvars):
                equations.append(eqn)
                live |= {v for v in eqn.invars if isinstance(v, jex.Var)}
        equations.reverse()
        uses = Counter(v for eqn in equations for v in eqn.invars if isinstance(v, jex.Var))
        returned = Counter(v for v, w in zip(jaxpr.outvars, wanted)
                           if w and isinstance(v, jex.Var))
        for eqn in equations:
            outs = self.equation(eqn, [self.read(env, v) for v in eqn.invars])
            for var, expr in zip(eqn.outvars, outs):
                if isinstance(var, jex.DropVar):
                    continue
                inline = expr.precedence == _ATOM and expr.text.isidentifier()
                inline |= uses[var] + returned[var] == 1 and (
                    len(expr.text) <= _INLINE_LENGTH or not uses[var])
                if not inline:
                    name = self.fresh("t")
                    self.lines.append(f"{name} = {expr.text}")
                    expr = _Expr(name)
                env[var] = expr
        return [self.read(env, v) if w else _Expr("None")
                for v, w in zip(jaxpr.outvars, wanted)]

    def equation(self, eqn: Any, ins: list[_Expr]) -> list[_Expr]:
        name = eqn.primitive.name
        call = gate_call(eqn.primitive, eqn.params)
        if call is not None:
            values = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in eqn.invars]
            return self.jaxpr(jax.make_jaxpr(call.reference)(*values), ins)
        if name == "cond" and eqn.params.get("branches_platforms"):
            # lax.platform_dependent: every branch computes the same; numpy takes the default one
            platforms = eqn.params["branches_platforms"]
            branch = eqn.params["branches"][platforms.index(None) if None in platforms else -1]
            return self.jaxpr(branch, ins[1:])
        if name in _CALLS:
            body = next(eqn.params[k] for k in ("jaxpr", "call_jaxpr", "fun_jaxpr")
                        if k in eqn.params)
            if isinstance(body, jex.ClosedJaxpr):
                return self.jaxpr(body, ins[len(ins) - len(body.jaxpr.invars):])
            return self.body(body, [], ins)
        translate = _NUMPY.get(name)
        if translate is None:
            raise ArgumentError(
                f"flat_code cannot write JAX primitive {name!r} as numpy yet; explain() itself "
                f"(its table, graph and gradients) does not need it")
        out = translate(self, ins, eqn)
        if eqn.primitive.multiple_results:
            names = [self.fresh("t") for _ in eqn.outvars]
            self.lines.append(f"{', '.join(names)} = {out.text}")
            return [_Expr(n) for n in names]
        return [out]

    def read(self, env: dict, var: Any) -> _Expr:
        if isinstance(var, jex.Literal):
            return _literal(np.asarray(var.val, var.aval.dtype))
        return env[var]

    def ref(self, ref: Any) -> _Expr:
        return _literal(np.asarray(ref.value)) if isinstance(ref, Constant) else _Expr(ref)

    def value(self, ref: Any) -> Any:
        return ref.value if isinstance(ref, Constant) else self.values[ref]

    def constant(self, value: Any) -> _Expr:
        array = np.asarray(value)
        if array.ndim == 0:
            return _literal(array)
        name = self.fresh("k")
        self.lines.append(f"{name} = {_array_source(array)}")
        return _Expr(name)

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
        if len(current) + len(piece) + 1 > width and current.strip() and current != line[:open_at + 1]:
            out.append(current.rstrip())
            current = indent
        current += piece + " "
    out.append(current.rstrip() + ")")
    return out


def _literal(value: np.ndarray) -> _Expr:
    """A scalar: bare (`1.0`) where numpy arithmetic keeps the array's dtype, else typed."""
    v = value.item()
    dtype = value.dtype
    if dtype == bool:
        return _Expr(repr(bool(v)))
    if isinstance(v, float) and not np.isfinite(v):
        bare = "np.nan" if np.isnan(v) else ("np.inf" if v > 0 else "-np.inf")
    else:
        bare = repr(v)
    precedence = _UNARY if bare.startswith("-") else _ATOM
    if dtype in (np.float64, np.int64):
        return _Expr(bare, precedence, bare)
    return _Expr(f"np.{dtype.name}({bare})", _ATOM, bare)


def _array_source(array: np.ndarray) -> str:
    if array.ndim == 0:
        return _literal(array).text
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


def _wrap(e: _Expr, precedence: int, left: bool = True) -> str:
    text = e.bare if e.bare is not None else e.text
    # Comparisons chain in Python (a < b == c), so they take parentheses on both sides.
    same = e.precedence == precedence and (not left or precedence == _COMPARE)
    return f"({text})" if e.precedence < precedence or same else text


def _operand(e: _Expr, other: _Expr, precedence: int, left: bool) -> str:
    if e.bare is not None and other.bare is None:
        return _wrap(e, precedence, left)
    return _wrap(e._replace(bare=None), precedence, left)


def _binary(symbol: str, precedence: int) -> Callable:
    def translate(w: _Writer, ins: list[_Expr], eqn: Any) -> _Expr:
        a, b = ins
        return _Expr(f"{_operand(a, b, precedence, True)} {symbol} "
                     f"{_operand(b, a, precedence, False)}", precedence)
    return translate


def _call(function: str, **fixed: str) -> Callable:
    """`function(operands..., key=value...)` with fixed keyword text."""
    def translate(w: _Writer, ins: list[_Expr], eqn: Any) -> _Expr:
        extra = [f"{k}={v}" for k, v in fixed.items()]
        return _Expr(f"{function}({', '.join([*(i.text for i in ins), *extra])})")
    return translate


def _helper_call(w: _Writer, name: str, ins: list[_Expr], **keywords: Any) -> _Expr:
    """`name(operands..., key=value...)`, a call of the `_numpy_lax` helper copied into the code."""
    arguments = [*(i.text for i in ins), *(f"{k}={_python(v)}" for k, v in keywords.items())]
    return _Expr(f"{w.helper(name)}({', '.join(arguments)})")


def _python(value: Any) -> str:
    """Source text for a static parameter: ints, tuples, dtypes, strings, expressions."""
    if isinstance(value, _Expr):
        return value.text
    if isinstance(value, (tuple, list)):
        items = [_python(v) for v in value]
        return f"({', '.join(items)}{',' if len(items) == 1 else ''})"
    if isinstance(value, np.generic):
        return repr(value.item())
    if isinstance(value, (np.dtype, type)):
        return f"np.{np.dtype(value).name}"
    return repr(value)


def _out_dtype(eqn: Any) -> str:
    return f"np.{np.dtype(eqn.outvars[0].aval.dtype).name}"


def _unary(function: str) -> Callable:
    return lambda w, ins, eqn: _Expr(f"{function}({ins[0].text})")


def _negative(w, ins, eqn):
    return _Expr(f"-{_wrap(ins[0]._replace(bare=None), _UNARY)}", _UNARY)


def _astype(w, ins, eqn):
    dtype = _out_dtype(eqn)
    if ins[0].bare is not None:
        return _Expr(f"{dtype}({ins[0].bare})")
    return _Expr(f"np.asarray({ins[0].text}, dtype={dtype})")


def _identity(w, ins, eqn):
    return ins[0]


def _division(w, ins, eqn):
    if np.issubdtype(eqn.outvars[0].aval.dtype, np.integer):
        return _helper_call(w, "integer_divide", ins)
    return _binary("/", _PRODUCT)(w, ins, eqn)


def _remainder(w, ins, eqn):
    if np.issubdtype(eqn.outvars[0].aval.dtype, np.integer):
        return _helper_call(w, "integer_remainder", ins)
    return _Expr(f"np.fmod({ins[0].text}, {ins[1].text})")


def _integer_pow(w, ins, eqn):
    base = _wrap(ins[0]._replace(bare=None), _POWER + 1)
    return _Expr(f"{base} ** {eqn.params['y']}", _POWER)


def _logistic(w, ins, eqn):
    return _Expr(f"1 / (1 + np.exp(-{_wrap(ins[0], _UNARY)}))", _PRODUCT)


def _reduce(function: str) -> Callable:
    return lambda w, ins, eqn: _Expr(
        f"np.{function}({ins[0].text}, axis={_python(tuple(eqn.params['axes']))})")


def _broadcast_in_dim(w, ins, eqn):
    shape = _python(tuple(eqn.params["shape"]))
    if not eqn.invars[0].aval.shape:
        return _Expr(f"np.broadcast_to({ins[0].text}, {shape})")
    return _helper_call(w, "broadcast_in_dim", ins, shape=tuple(eqn.params["shape"]),
                        broadcast_dimensions=tuple(eqn.params["broadcast_dimensions"]))


def _reshape(w, ins, eqn):
    return _Expr(f"np.reshape({ins[0].text}, {_python(tuple(eqn.params['new_sizes']))})")


def _slice(w, ins, eqn):
    p = eqn.params
    strides = p["strides"] or (1,) * len(p["start_indices"])
    parts = [f"{a}:{b}" + (f":{s}" if s != 1 else "")
             for a, b, s in zip(p["start_indices"], p["limit_indices"], strides)]
    return _Expr(f"{_wrap(ins[0], _ATOM)}[{', '.join(parts)}]")


def _select_n(w, ins, eqn):
    if len(ins) == 3 and eqn.invars[0].aval.dtype == bool:
        return _Expr(f"np.where({ins[0].text}, {ins[2].text}, {ins[1].text})")
    return _helper_call(w, "select_n", ins)


def _dot_general(w, ins, eqn):
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    la, ra = (v.aval.ndim for v in eqn.invars)
    if not lb and la in (1, 2) and ra in (1, 2) and tuple(lc) == (la - 1,) and tuple(rc) == (0,):
        product = _Expr(f"{_wrap(ins[0], _PRODUCT)} @ {_wrap(ins[1], _PRODUCT, False)}",
                        _PRODUCT)
    else:
        letters = iter("abcdefghijklmnopqrstuvwxyz")
        left = [next(letters) for _ in range(la)]
        right = [next(letters) for _ in range(ra)]
        for i, j in zip((*lc, *lb), (*rc, *rb)):
            right[j] = left[i]
        out = ([left[i] for i in lb] + [c for i, c in enumerate(left) if i not in (*lc, *lb)]
               + [c for j, c in enumerate(right) if j not in (*rc, *rb)])
        spec = f"'{''.join(left)},{''.join(right)}->{''.join(out)}'"
        product = _Expr(f"np.einsum({spec}, {ins[0].text}, {ins[1].text})")
    if eqn.params.get("preferred_element_type") not in (None, eqn.invars[0].aval.dtype):
        return _Expr(f"{_wrap(product, _ATOM)}.astype({_out_dtype(eqn)})")
    return product


def _conv(w, ins, eqn):
    p, dn = eqn.params, eqn.params["dimension_numbers"]
    return _helper_call(
        w, "conv_general_dilated", ins, window_strides=p["window_strides"],
        padding=tuple(tuple(q) for q in p["padding"]), lhs_dilation=p["lhs_dilation"],
        rhs_dilation=p["rhs_dilation"], lhs_spec=dn.lhs_spec, rhs_spec=dn.rhs_spec,
        out_spec=dn.out_spec, feature_group_count=p["feature_group_count"],
        batch_group_count=p["batch_group_count"])


def _reduce_window(op: str, init: str) -> Callable:
    def translate(w, ins, eqn):
        p = eqn.params
        return _helper_call(
            w, "reduce_window", [*ins, _Expr(repr(op)), _Expr(init)],
            window_dimensions=p["window_dimensions"], window_strides=p["window_strides"],
            padding=tuple(tuple(q) for q in p["padding"]), base_dilation=p["base_dilation"],
            window_dilation=p["window_dilation"])
    return translate


def _pad(w, ins, eqn):
    config = tuple(tuple(c) for c in eqn.params["padding_config"])
    return _helper_call(w, "pad", [*ins, _Expr(_python(config))])


def _gather(w, ins, eqn):
    p, dn = eqn.params, eqn.params["dimension_numbers"]
    fill = {} if p.get("fill_value") is None else {
        "fill_value": _literal(np.asarray(p["fill_value"]))}
    return _helper_call(
        w, "gather", ins, offset_dims=dn.offset_dims,
        collapsed_slice_dims=dn.collapsed_slice_dims, start_index_map=dn.start_index_map,
        operand_batching_dims=dn.operand_batching_dims,
        start_indices_batching_dims=dn.start_indices_batching_dims,
        slice_sizes=p["slice_sizes"], mode=_mode(p), **fill)


def _scatter_add(w, ins, eqn):
    p, dn = eqn.params, eqn.params["dimension_numbers"]
    return _helper_call(
        w, "scatter_add", ins, update_window_dims=dn.update_window_dims,
        inserted_window_dims=dn.inserted_window_dims,
        scatter_dims_to_operand_dims=dn.scatter_dims_to_operand_dims,
        operand_batching_dims=dn.operand_batching_dims,
        scatter_indices_batching_dims=dn.scatter_indices_batching_dims, mode=_mode(p))


def _mode(params: dict) -> str:
    """A gather or scatter's GatherScatterMode as the helpers' mode string."""
    name = getattr(params["mode"], "name", str(params["mode"]))
    return {"FILL_OR_DROP": "fill", "PROMISE_IN_BOUNDS": "promise_in_bounds"}.get(name, "clip")


def _split(w, ins, eqn):
    bounds = np.cumsum([int(s) for s in eqn.params["sizes"]])[:-1].tolist()
    return _Expr(f"np.split({ins[0].text}, {bounds}, axis={eqn.params['axis']})")


def _sequence(function: str, key: str) -> Callable:
    return lambda w, ins, eqn: _Expr(
        f"np.{function}([{', '.join(i.text for i in ins)}], axis={eqn.params[key]})")


def _cumulative(op: str) -> Callable:
    return lambda w, ins, eqn: _helper_call(w, "cumulative", [*ins, _Expr(repr(op))],
                                            axis=eqn.params["axis"],
                                            reverse=eqn.params["reverse"])


def _iota(w, ins, eqn):
    p = eqn.params
    return _helper_call(w, "iota", [], dtype=np.dtype(p["dtype"]), shape=tuple(p["shape"]),
                        dimension=p["dimension"])


def _argmax(w, ins, eqn):
    p = eqn.params
    return _helper_call(w, "argmax", ins, axis=p["axes"][0],
                        index_dtype=np.dtype(p["index_dtype"]))


def _argmin(w, ins, eqn):
    p = eqn.params
    return _Expr(f"np.argmin({ins[0].text}, axis={p['axes'][0]})"
                 f".astype(np.{np.dtype(p['index_dtype']).name})")


def _clamp(w, ins, eqn):
    low, x, high = ins
    return _Expr(f"np.clip({x.text}, {low.text}, {high.text})")


_NUMPY: dict[str, Callable] = {
    "add": _binary("+", _SUM), "add_any": _binary("+", _SUM), "sub": _binary("-", _SUM),
    "mul": _binary("*", _PRODUCT), "div": _division, "rem": _remainder,
    "pow": _call("np.power"), "max": _call("np.maximum"), "min": _call("np.minimum"),
    "atan2": _call("np.arctan2"), "nextafter": _call("np.nextafter"),
    "and": _binary("&", _AND), "or": _binary("|", _OR), "xor": _binary("^", _XOR),
    "not": lambda w, ins, eqn: _Expr(f"~{_wrap(ins[0], _UNARY)}", _UNARY),
    "eq": _binary("==", _COMPARE), "ne": _binary("!=", _COMPARE), "lt": _binary("<", _COMPARE),
    "le": _binary("<=", _COMPARE), "gt": _binary(">", _COMPARE), "ge": _binary(">=", _COMPARE),
    "neg": _negative, "exp": _unary("np.exp"), "exp2": _unary("np.exp2"), "log": _unary("np.log"),
    "log1p": _unary("np.log1p"), "expm1": _unary("np.expm1"), "tanh": _unary("np.tanh"),
    "sin": _unary("np.sin"), "cos": _unary("np.cos"), "tan": _unary("np.tan"),
    "sqrt": _unary("np.sqrt"), "cbrt": _unary("np.cbrt"),
    "rsqrt": lambda w, ins, eqn: _Expr(f"1 / np.sqrt({ins[0].text})", _PRODUCT),
    "abs": _unary("np.abs"), "sign": _unary("np.sign"), "floor": _unary("np.floor"),
    "ceil": _unary("np.ceil"), "round": _unary("np.round"), "is_finite": _unary("np.isfinite"),
    "square": _unary("np.square"), "logistic": _logistic, "integer_pow": _integer_pow,
    "erf": lambda w, ins, eqn: _helper_call(w, "erf", ins),
    "convert_element_type": _astype, "copy": _identity, "copy_p": _identity,
    "stop_gradient": _identity, "optimization_barrier": _identity,
    "reduce_sum": _reduce("sum"), "reduce_max": _reduce("max"), "reduce_min": _reduce("min"),
    "reduce_prod": _reduce("prod"), "reduce_and": _reduce("all"), "reduce_or": _reduce("any"),
    "argmax": _argmax, "argmin": _argmin,
    "broadcast_in_dim": _broadcast_in_dim, "reshape": _reshape,
    "squeeze": lambda w, ins, eqn: _Expr(
        f"np.squeeze({ins[0].text}, axis={_python(tuple(eqn.params['dimensions']))})"),
    "expand_dims": lambda w, ins, eqn: _Expr(
        f"np.expand_dims({ins[0].text}, {_python(tuple(eqn.params['dimensions']))})"),
    "transpose": lambda w, ins, eqn: _Expr(
        f"np.transpose({ins[0].text}, {_python(tuple(eqn.params['permutation']))})"),
    "rev": lambda w, ins, eqn: _Expr(
        f"np.flip({ins[0].text}, axis={_python(tuple(eqn.params['dimensions']))})"),
    "slice": _slice, "concatenate": _sequence("concatenate", "dimension"),
    "stack": _sequence("stack", "axis"), "split": _split, "pad": _pad, "select_n": _select_n,
    "clamp": _clamp, "dot_general": _dot_general, "conv_general_dilated": _conv,
    "reduce_window_max": _reduce_window("max", "-np.inf"),
    "reduce_window_min": _reduce_window("min", "np.inf"),
    "reduce_window_sum": _reduce_window("sum", "0"),
    "platform_index": lambda w, ins, eqn: _Expr("0"),
    "gather": _gather, "scatter-add": _scatter_add, "iota": _iota,
    "cumsum": _cumulative("sum"), "cumprod": _cumulative("prod"), "cummax": _cumulative("max"),
    "cummin": _cumulative("min"),
}
