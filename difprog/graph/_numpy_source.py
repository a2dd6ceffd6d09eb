"""Each JAX primitive as the numpy expression that computes it, for flat code.

`NUMPY[primitive name](writer, operands, eqn)` returns an `Expr`: source text and its operator
precedence, so operands take parentheses only where Python needs them. Primitives with no
one-line numpy form call helpers from `_numpy_lax` through `writer.helper(name)`, which copies
the helper's source into the generated file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

ATOM, _POWER, _UNARY, _PRODUCT, SUM, _AND, _XOR, _OR, _COMPARE = (
    100, 16, 15, 13, 12, 9, 8, 7, 6)


class Expr(NamedTuple):
    """Python source for a value, its operator precedence, and a bare form for literals."""

    text: str
    precedence: int = ATOM
    bare: str | None = None


def literal(value: np.ndarray) -> Expr:
    """A scalar: bare (`1.0`) where numpy arithmetic keeps the array's dtype, else typed."""
    v = value.item()
    dtype = value.dtype
    if dtype == np.bool_:
        return Expr(repr(bool(v)))
    if isinstance(v, float) and not np.isfinite(v):
        bare = "np.nan" if np.isnan(v) else ("np.inf" if v > 0 else "-np.inf")
    else:
        bare = repr(v)
    precedence = _UNARY if bare.startswith("-") else ATOM
    if dtype in (np.float64, np.int64):
        return Expr(bare, precedence, bare)
    return Expr(f"np.{dtype.name}({bare})", ATOM, bare)


def wrap(e: Expr, precedence: int, left: bool = True) -> str:
    text = e.bare if e.bare is not None else e.text
    # Comparisons chain in Python (a < b == c), so they take parentheses on both sides.
    same = e.precedence == precedence and (not left or precedence == _COMPARE)
    return f"({text})" if e.precedence < precedence or same else text


def _operand(e: Expr, other: Expr, precedence: int, left: bool) -> str:
    if e.bare is not None and other.bare is None:
        return wrap(e, precedence, left)
    return wrap(e._replace(bare=None), precedence, left)


def _binary(symbol: str, precedence: int) -> Callable:
    def translate(w: Any, ins: list[Expr], eqn: Any) -> Expr:
        a, b = ins
        return Expr(f"{_operand(a, b, precedence, True)} {symbol} "
                     f"{_operand(b, a, precedence, False)}", precedence)
    return translate


def _call(function: str, **fixed: str) -> Callable:
    """`function(operands..., key=value...)` with fixed keyword text."""
    def translate(w: Any, ins: list[Expr], eqn: Any) -> Expr:
        extra = [f"{k}={v}" for k, v in fixed.items()]
        return Expr(f"{function}({', '.join([*(i.text for i in ins), *extra])})")
    return translate


def _helper_call(w: Any, name: str, ins: list[Expr], **keywords: Any) -> Expr:
    """`name(operands..., key=value...)`, a call of the `_numpy_lax` helper copied into the code."""
    arguments = [*(i.text for i in ins), *(f"{k}={_python(v)}" for k, v in keywords.items())]
    return Expr(f"{w.helper(name)}({', '.join(arguments)})")


def _python(value: Any) -> str:
    """Source text for a static parameter: ints, tuples, dtypes, strings, expressions."""
    if isinstance(value, Expr):
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
    return lambda w, ins, eqn: Expr(f"{function}({ins[0].text})")


def _negative(w, ins, eqn):
    return Expr(f"-{wrap(ins[0]._replace(bare=None), _UNARY)}", _UNARY)


def _astype(w, ins, eqn):
    dtype = _out_dtype(eqn)
    if ins[0].bare is not None:
        return Expr(f"{dtype}({ins[0].bare})")
    return Expr(f"np.asarray({ins[0].text}, dtype={dtype})")


def _identity(w, ins, eqn):
    return ins[0]


def _division(w, ins, eqn):
    if np.issubdtype(eqn.outvars[0].aval.dtype, np.integer):
        return _helper_call(w, "integer_divide", ins)
    return _binary("/", _PRODUCT)(w, ins, eqn)


def _remainder(w, ins, eqn):
    if np.issubdtype(eqn.outvars[0].aval.dtype, np.integer):
        return _helper_call(w, "integer_remainder", ins)
    return Expr(f"np.fmod({ins[0].text}, {ins[1].text})")


def _integer_pow(w, ins, eqn):
    base = wrap(ins[0]._replace(bare=None), _POWER + 1)
    return Expr(f"{base} ** {eqn.params['y']}", _POWER)


def _logistic(w, ins, eqn):
    return Expr(f"1 / (1 + np.exp(-{wrap(ins[0], _UNARY)}))", _PRODUCT)


def _reduce(function: str) -> Callable:
    return lambda w, ins, eqn: Expr(
        f"np.{function}({ins[0].text}, axis={_python(tuple(eqn.params['axes']))})")


def _broadcast_in_dim(w, ins, eqn):
    shape = _python(tuple(eqn.params["shape"]))
    if not eqn.invars[0].aval.shape:
        return Expr(f"np.broadcast_to({ins[0].text}, {shape})")
    return _helper_call(w, "broadcast_in_dim", ins, shape=tuple(eqn.params["shape"]),
                        broadcast_dimensions=tuple(eqn.params["broadcast_dimensions"]))


def _reshape(w, ins, eqn):
    return Expr(f"np.reshape({ins[0].text}, {_python(tuple(eqn.params['new_sizes']))})")


def _slice(w, ins, eqn):
    p = eqn.params
    strides = p["strides"] or (1,) * len(p["start_indices"])
    parts = [f"{a}:{b}" + (f":{s}" if s != 1 else "")
             for a, b, s in zip(p["start_indices"], p["limit_indices"], strides)]
    return Expr(f"{wrap(ins[0], ATOM)}[{', '.join(parts)}]")


def _select_n(w, ins, eqn):
    if len(ins) == 3 and eqn.invars[0].aval.dtype == bool:
        return Expr(f"np.where({ins[0].text}, {ins[2].text}, {ins[1].text})")
    return _helper_call(w, "select_n", ins)


def _dot_general(w, ins, eqn):
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    la, ra = (v.aval.ndim for v in eqn.invars)
    if not lb and la in (1, 2) and ra in (1, 2) and tuple(lc) == (la - 1,) and tuple(rc) == (0,):
        product = Expr(f"{wrap(ins[0], _PRODUCT)} @ {wrap(ins[1], _PRODUCT, False)}",
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
        product = Expr(f"np.einsum({spec}, {ins[0].text}, {ins[1].text})")
    if eqn.params.get("preferred_element_type") not in (None, eqn.invars[0].aval.dtype):
        return Expr(f"{wrap(product, ATOM)}.astype({_out_dtype(eqn)})")
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
            w, "reduce_window", [*ins, Expr(repr(op)), Expr(init)],
            window_dimensions=p["window_dimensions"], window_strides=p["window_strides"],
            padding=tuple(tuple(q) for q in p["padding"]), base_dilation=p["base_dilation"],
            window_dilation=p["window_dilation"])
    return translate


def _pad(w, ins, eqn):
    config = tuple(tuple(c) for c in eqn.params["padding_config"])
    return _helper_call(w, "pad", [*ins, Expr(_python(config))])


def _gather(w, ins, eqn):
    p, dn = eqn.params, eqn.params["dimension_numbers"]
    fill = {} if p.get("fill_value") is None else {
        "fill_value": literal(np.asarray(p["fill_value"]))}
    return _helper_call(
        w, "gather", ins, offset_dims=dn.offset_dims,
        collapsed_slice_dims=dn.collapsed_slice_dims, start_index_map=dn.start_index_map,
        operand_batching_dims=dn.operand_batching_dims,
        start_indices_batching_dims=dn.start_indices_batching_dims,
        slice_sizes=p["slice_sizes"], mode=_mode(p), **fill)


def _scatter(add: bool):
    def scatter(w, ins, eqn):
        p, dn = eqn.params, eqn.params["dimension_numbers"]
        return _helper_call(
            w, "scatter", ins, update_window_dims=dn.update_window_dims,
            inserted_window_dims=dn.inserted_window_dims,
            scatter_dims_to_operand_dims=dn.scatter_dims_to_operand_dims,
            operand_batching_dims=dn.operand_batching_dims,
            scatter_indices_batching_dims=dn.scatter_indices_batching_dims, mode=_mode(p),
            add=add)
    return scatter


def _mode(params: dict) -> str:
    """A gather or scatter's GatherScatterMode as the helpers' mode string."""
    name = getattr(params["mode"], "name", str(params["mode"]))
    return {"FILL_OR_DROP": "fill", "PROMISE_IN_BOUNDS": "promise_in_bounds"}.get(name, "clip")


def _split(w, ins, eqn):
    bounds = np.cumsum([int(s) for s in eqn.params["sizes"]])[:-1].tolist()
    return Expr(f"np.split({ins[0].text}, {bounds}, axis={eqn.params['axis']})")


def _sequence(function: str, key: str) -> Callable:
    return lambda w, ins, eqn: Expr(
        f"np.{function}([{', '.join(i.text for i in ins)}], axis={eqn.params[key]})")


def _cumulative(op: str) -> Callable:
    return lambda w, ins, eqn: _helper_call(w, "cumulative", [*ins, Expr(repr(op))],
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
    return Expr(f"np.argmin({ins[0].text}, axis={p['axes'][0]})"
                 f".astype(np.{np.dtype(p['index_dtype']).name})")


def _clamp(w, ins, eqn):
    low, x, high = ins
    return Expr(f"np.clip({x.text}, {low.text}, {high.text})")


NUMPY: dict[str, Callable] = {
    "add": _binary("+", SUM), "add_any": _binary("+", SUM), "sub": _binary("-", SUM),
    "mul": _binary("*", _PRODUCT), "div": _division, "rem": _remainder,
    "pow": _call("np.power"), "max": _call("np.maximum"), "min": _call("np.minimum"),
    "atan2": _call("np.arctan2"), "nextafter": _call("np.nextafter"),
    "and": _binary("&", _AND), "or": _binary("|", _OR), "xor": _binary("^", _XOR),
    "not": lambda w, ins, eqn: Expr(f"~{wrap(ins[0], _UNARY)}", _UNARY),
    "eq": _binary("==", _COMPARE), "ne": _binary("!=", _COMPARE), "lt": _binary("<", _COMPARE),
    "le": _binary("<=", _COMPARE), "gt": _binary(">", _COMPARE), "ge": _binary(">=", _COMPARE),
    "neg": _negative, "exp": _unary("np.exp"), "exp2": _unary("np.exp2"), "log": _unary("np.log"),
    "log1p": _unary("np.log1p"), "expm1": _unary("np.expm1"), "tanh": _unary("np.tanh"),
    "sin": _unary("np.sin"), "cos": _unary("np.cos"), "tan": _unary("np.tan"),
    "sqrt": _unary("np.sqrt"), "cbrt": _unary("np.cbrt"),
    "rsqrt": lambda w, ins, eqn: Expr(f"1 / np.sqrt({ins[0].text})", _PRODUCT),
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
    "squeeze": lambda w, ins, eqn: Expr(
        f"np.squeeze({ins[0].text}, axis={_python(tuple(eqn.params['dimensions']))})"),
    "expand_dims": lambda w, ins, eqn: Expr(
        f"np.expand_dims({ins[0].text}, {_python(tuple(eqn.params['dimensions']))})"),
    "transpose": lambda w, ins, eqn: Expr(
        f"np.transpose({ins[0].text}, {_python(tuple(eqn.params['permutation']))})"),
    "rev": lambda w, ins, eqn: Expr(
        f"np.flip({ins[0].text}, axis={_python(tuple(eqn.params['dimensions']))})"),
    "slice": _slice, "concatenate": _sequence("concatenate", "dimension"),
    "stack": _sequence("stack", "axis"), "split": _split, "pad": _pad, "select_n": _select_n,
    "clamp": _clamp, "dot_general": _dot_general, "conv_general_dilated": _conv,
    "reduce_window_max": _reduce_window("max", "-np.inf"),
    "reduce_window_min": _reduce_window("min", "np.inf"),
    "reduce_window_sum": _reduce_window("sum", "0"),
    "platform_index": lambda w, ins, eqn: Expr("0"),
    "empty2": lambda w, ins, eqn: Expr(
        f"np.zeros({_python(tuple(eqn.outvars[0].aval.shape))}, dtype={_out_dtype(eqn)})"),
    "gather": _gather, "scatter-add": _scatter(add=True), "scatter": _scatter(add=False),
    "iota": _iota,
    "cumsum": _cumulative("sum"), "cumprod": _cumulative("prod"), "cummax": _cumulative("max"),
    "cummin": _cumulative("min"),
}
