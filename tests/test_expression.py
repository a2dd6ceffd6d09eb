"""difprog.expression: the grammar explain reads, everything it refuses, and a fuzz test."""

from __future__ import annotations

import builtins
import contextlib
import inspect
import os
import re
import subprocess
import time

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from difprog.errors import ArgumentError, DifprogError
from difprog.expression import expression_function, parse_point
from difprog.graph import explain

PAYLOAD = ("x + exp.forward.__globals__['__builtins__']['__import__']('os')"
           ".system('touch pwned')")


def _value(expression: str, **point):
    """The expression's value at the point, in float64."""
    with jax.enable_x64(True):
        f = expression_function(expression, list(point))
        return np.asarray(f(*(np.asarray(v, np.float64) for v in point.values())))


# --- the grammar -------------------------------------------------------------------------------

@pytest.mark.parametrize("expression, point, expected", [
    ("1 + 2 * x", {"x": 3}, 7),
    ("(1 + 2) * x", {"x": 3}, 9),
    ("x - 1 - 1", {"x": 3}, 1),                # left-associative
    ("x / 2 / 2", {"x": 8}, 2),
    ("2 ** 3 ** 2 * x", {"x": 1}, 512),        # ** is right-associative
    ("-x ** 2", {"x": 3}, -9),                 # ** binds tighter than unary minus
    ("(-x) ** 2", {"x": 3}, 9),
    ("-2 ** 2 + x", {"x": 0}, -4),
    ("2 ** -x", {"x": 1}, 0.5),
    ("x ** -1", {"x": 4}, 0.25),
    ("x ** 0.5", {"x": 4}, 2),
    ("+x - -x", {"x": 2}, 4),
    ("--x", {"x": 2}, 2),
    ("1e-3 * x + .5 + 2.5E+1", {"x": 1000}, 26.5),
    ("pi * x", {"x": 1}, np.pi),
    ("e ** x", {"x": 1}, np.e),
    ("x * y - y / x", {"x": 2, "y": 4}, 6),
    ("exp(log(x))", {"x": 3}, 3),
    ("leaky_relu(x, negative_slope=0.2)", {"x": -1}, -0.2),
    ("leaky_relu(x, negative_slope=-0.5)", {"x": -2}, 1),
    ("leaky_relu(x, negative_slope=1)", {"x": -2}, -2),
    ("power(x, 3)", {"x": 2}, 8),
    ("sum([1, 2, x])", {"x": 3}, 6),
    ("sum([1, 2, x,])", {"x": 3}, 6),
    ("sum([[1, 2], [x, 4]], axis=(0, 1))", {"x": 3}, 10),
    ("sum(x * [[1], [2]], axis=0)", {"x": [1, 2]}, [3, 6]),
    ("sum(x, 0)", {"x": [1, 2]}, 3),
    ("softmax(x, -1)", {"x": [0, 0]}, [0.5, 0.5]),
    ("max(x)", {"x": [1, 5]}, 5),
    ("max(x, 3)", {"x": [1, 5]}, [3, 5]),
    ("min(x, 3)", {"x": [1, 5]}, [1, 3]),
    ("max(x, axis=0)", {"x": [1, 5]}, 5),
    ("matmul([[1, 2], [3, 4]], x)", {"x": [1, 1]}, [3, 7]),
    ("exp * 2", {"exp": 1.5}, 3),              # a variable shadows a function...
    ("pi + e", {"pi": 1, "e": 2}, 3),          # ...and a constant
    ("x +\n\t1", {"x": 1}, 2),
])
def test_the_grammar(expression, point, expected):
    np.testing.assert_allclose(_value(expression, **point), expected, rtol=1e-12)


def test_constants_are_float64_and_overflow_to_inf_at_once():
    start = time.perf_counter()
    assert _value("x + 10**10**10", x=1) == np.inf
    assert _value("x + 10**10**10**10**10", x=1) == np.inf
    assert _value("x + 1/0", x=1) == np.inf
    assert _value("x * (-8) ** (1/3)", x=1).dtype == np.float64  # nan, as numpy says
    assert _value("x + 2 ** 1023 * 2", x=1) == np.inf
    assert time.perf_counter() - start < 5


def test_the_function_has_the_names_as_its_signature():
    f = expression_function("x * w + b", ["w", "x", "b"])
    assert f.__name__ == "f"
    assert list(inspect.signature(f).parameters) == ["w", "x", "b"]
    with jax.enable_x64(True):
        assert float(f(2.0, 3.0, 1.0)) == 7.0
        assert float(f(b=1.0, x=3.0, w=2.0)) == 7.0
    with pytest.raises(ArgumentError, match="missing a required argument"):
        f(1.0)


def test_explain_shows_gates_for_the_operators():
    with jax.enable_x64(True):
        f = expression_function("x ** 2 + -(x * y) / y - exp(y) ** 3", ["x", "y"])
        e = explain(f, 3.0, 2.0)
    assert e.agrees
    ops = {n.op for n in e.nodes}
    assert {"square", "power", "multiply", "divide", "negative", "add", "subtract",
            "exp"} <= ops


def test_a_thousand_term_sum_works():
    assert _value("+".join(["x"] * 1000), x=1) == 1000


# --- what it refuses ---------------------------------------------------------------------------

@pytest.mark.parametrize("expression, names, match", [
    (PAYLOAD, ["x"], r"attribute access \(\.\)"),
    ("exp.forward", [], "attribute access"),
    ("x.real", ["x"], "attribute access"),
    ("x[0]", ["x"], "subscripts"),
    ("[x, x][0]", ["x"], "subscripts"),
    ("lambda: x", ["x"], "lambdas"),
    ("(lambda x: x)(1)", ["x"], "lambdas"),
    ("[x for x in y]", ["x", "y"], "comprehensions"),
    ("sum(x for x in y)", ["x", "y"], "comprehensions"),
    ("'x'", ["x"], "strings"),
    ('x + "1"', ["x"], "strings"),
    ("(y := x)", ["x"], r"assignments \(:=\)"),
    ("x if x > 0 else y", ["x", "y"], "conditionals"),
    ("x > 0", ["x"], "comparisons"),
    ("x == x", ["x"], "comparisons"),
    ("x <= 1", ["x"], "comparisons"),
    ("x != 1", ["x"], "comparisons"),
    ("x < 1", ["x"], "comparisons"),
    ("x and x", ["x"], "boolean"),
    ("not x", ["x"], "boolean"),
    ("True * x", ["x"], "True"),
    ("import os", [], "keyword 'import'"),
    ("__import__('os')", [], "strings"),
    ("__import__(x)", ["x"], "calls __import__, which is not one of the functions"),
    ("eval(x)", ["x"], "calls eval"),
    ("open(x)", ["x"], "calls open"),
    ("x @ x", ["x"], "matmul"),
    ("x // 2", ["x"], "floor division"),
    ("x % 2", ["x"], "%"),
    ("x ^ 2", ["x"], r"write x\*\*2"),
    ("x & 1", ["x"], "bitwise"),
    ("~x", ["x"], "bitwise"),
    ("{x}", ["x"], "sets and dicts"),
    ("x; x", ["x"], "one expression"),
    ("x # comment", ["x"], "comments"),
    ("1j * x", ["x"], "'1j' is not a number"),
    ("0x10 * x", ["x"], "not a number"),
    ("1_000 * x", ["x"], "not a number"),
    ("1.2.3 * x", ["x"], "not a number"),
    ("x × 2", ["x"], "unexpected character"),
    ("x + \uff11", ["x"], "unexpected character"),    # a fullwidth digit is not a digit here
    (".\uff11", ["x"], "attribute access"),           # found by the fuzz test
    ("x(1)", ["x"], "x is a variable given by --at"),
    ("exp(exp)", ["exp"], "exp is a variable given by --at, so exp"),
    ("pi(x)", ["x"], "pi is a constant"),
    ("exp + x", ["x"], "exp is a function: call it"),
    ("(x)(x)", ["x"], "only the functions can be called"),
    ("exp(x)(x)", ["x"], "only the functions can be called"),
    ("q", ["x"], r"uses q, which --at does not give a value; add e.g. --at q=1.0"),
    ("max(3*x, 0)", ["x", "y"], "--at gives y, which"),
    ("foo(x)", ["x"], "calls foo, which is not one of the functions"),
    ("sum(x, foo=1)", ["x"], "unexpected keyword argument 'foo'"),
    ("exp(x, x)", ["x"], "too many positional arguments"),
    ("exp()", ["x"], "missing a required argument"),
    ("sum(x, axis=0, axis=1)", ["x"], "axis= twice"),
    ("sum(axis=0, x)", ["x"], "positional argument cannot follow"),
    ("sum(x, axis=x)", ["x"], "must be a number or a tuple"),
    ("sum(x, axis=None)", ["x"], "None"),
    ("sum(x, axis=(0.5,))", ["x"], "tuple of small integers"),
    ("sum(x, axis=0 + 1)", ["x"], r"expected '\)'"),
    ("x = 1", ["x"], "'=' only gives keyword arguments"),
    ("[]", ["x"], "empty vector"),
    ("x +", ["x"], "ends too early"),
    ("", ["x"], "ends too early"),
    ("(x", ["x"], r"expected '\)' to close the '\(' at character 1"),
    ("[x", ["x"], r"expected '\]'"),
    ("x)", ["x"], r"'\)' has no matching '\('"),
    ("2 x", ["x"], "missing an operator"),
    ("1e301 * x", ["x"], "too large"),
    ("1e400 * x", ["x"], "too large"),
    ("x\x00", ["x"], "control or invisible character U\\+0000"),
    ("x\u202e", ["x"], "U\\+202E"),
    ("x\udcff", ["x"], "not valid UTF-8"),
    (b"x + \xff", ["x"], "not valid UTF-8"),
    (3, ["x"], "must be text"),
    ("x", ["1x"], "not a variable name"),
    ("x", ["x", "x"], "gives x twice"),
])
def test_refusals_are_one_line_argument_errors(expression, names, match):
    with pytest.raises(ArgumentError, match=match) as caught:
        expression_function(expression, names)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("expression, match", [
    ("x" + " " * 10_000, "10,001 characters long; the limit is 10,000"),
    ("x" + "+1" * 2_600, "more than 5,000 tokens"),
    ("+".join(["x"] * 2_000), "3,999 nodes"),                     # the 2,000-term sum
    ("(" * 65 + "x" + ")" * 65, "nested more than 64 levels"),
    ("(" * 5_000, "nested more than 64 levels"),                  # no RecursionError
    ("-" * 1_000 + "x", "nested more than 64 levels"),
    ("exp(" * 65 + "x" + ")" * 65, "nested more than 64 levels"),
    ("x" + "**x" * 65, "nested more than 64 levels"),
    ("[" * 65 + "x" + "]" * 65, "nested more than 64 levels"),
    ("x * [" + ",".join(["1"] * 1_001) + "]", "more than 1,000 items"),
])
def test_limits_are_refused_before_evaluation(expression, match):
    start = time.perf_counter()
    with pytest.raises(ArgumentError, match=match):
        expression_function(expression, ["x"])
    assert time.perf_counter() - start < 1


def test_sixty_four_levels_are_fine():
    assert _value("(" * 64 + "x" + ")" * 64, x=2) == 2
    assert _value("-" * 64 + "x", x=2) == 2


@pytest.mark.parametrize("expression, point, error, match", [
    ("x / [1, 2, 3]", {"x": [1, 2]}, ArgumentError, r"cannot evaluate 'x / \[1, 2, 3\]'"),
    ("[1, [2]] + x", {"x": 1}, ArgumentError, "must all have one shape"),
    ("[x, y]", {"x": 1, "y": [1, 2]}, ArgumentError, "must all have one shape"),
    ("sum(x, axis=1)", {"x": [1, 2]}, DifprogError, "axis"),
    ("matmul(x, y)", {"x": [1, 2], "y": [1, 2, 3]}, DifprogError, "matmul"),
    ("x * y", {"x": [[1.0]] * 1001, "y": [1.0] * 1000}, ArgumentError,
     "more than 1,000,000 elements"),
])
def test_evaluation_errors_are_difprog_errors(expression, point, error, match):
    with pytest.raises(error, match=match) as caught:
        _value(expression, **point)
    assert "\n" not in str(caught.value)


def test_the_arrays_of_one_expression_are_bounded_in_all():
    column = "[" + ",".join(["[1]"] * 900) + "]"
    assert _value(f"sum(x * {column})", x=np.ones(1000)) == 900_000
    with pytest.raises(ArgumentError, match="more than 10,000,000 numbers in all"):
        _value(f"sum(exp(x * {column}) * 2 * 2 * 2 * 2 * 2 * 2 * 2 * 2 * 2 * 2 * 2)",
               x=np.ones(1000))


# --- points ------------------------------------------------------------------------------------

def test_points():
    point = parse_point("x=-2, y=5,w=[1,2], m=[[1, 2], [3, 4]], t=(1, -2.5e1), z=[1,], n=[]")
    assert list(point) == ["x", "y", "w", "m", "t", "z", "n"]
    assert all(v.dtype == np.float64 for v in point.values())
    assert point["x"] == -2 and point["m"].shape == (2, 2) and point["t"].tolist() == [1, -25]
    assert point["n"].shape == (0,)


@pytest.mark.parametrize("text, match", [
    ("", "names no variables"),
    ("x=1,x=2", "gives x twice"),
    ("1x=2", "name=value pairs"),
    ("x", "name=value pairs"),
    ("if=1", "name=value pairs"),
    ("x=abc", "must be a number or a nested list"),
    ("x=__import__('os').system('touch pwned')", "must be a number or a nested list"),
    ("x=[1,[2]]", "different lengths"),
    ("x=[1 2]", "missing a comma"),
    ("x=[[1]", "unbalanced"),
    ("x=1]", "bracket out of place"),
    ("x=[,]", "comma out of place"),
    ("x=1e999", "too large"),
    ("x=nan", "must be a number"),
    ("x=" + "[" * 40 + "1" + "]" * 40, "nested more than 32"),
    ("x=[" + ",".join(["1"] * 10_001) + "]", "more than 10,000 numbers"),
    ("x=" + "1" * 100_000, "100,002 characters long"),
    ("x=1\x1b[2J", "control or invisible character U\\+001B"),
    (b"x=\xc3\x28", "not valid UTF-8"),
])
def test_bad_points_are_refused(text, match):
    with pytest.raises(ArgumentError, match=match) as caught:
        parse_point(text)
    assert "\n" not in str(caught.value)


# --- through the command line ------------------------------------------------------------------

def _explain_cli(capsys, *args):
    """difprog explain's exit status and its stderr lines."""
    from difprog.cli import main

    status = main(["explain", *args])
    return status, capsys.readouterr().err.strip().splitlines()


def test_the_command_line_runs_no_payload(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, err = _explain_cli(capsys, PAYLOAD, "--at", "x=1")
    assert status == 2 and len(err) == 1 and "attribute access" in err[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("expression, match", [
    ("x if x > 0 else y", "conditionals"),
    ("+".join(["x"] * 2_000), "nodes"),
    ("x" + "**x" * 1_000, "nested"),
])
def test_the_command_line_refuses_in_one_line(capsys, expression, match):
    status, err = _explain_cli(capsys, expression, "--at", "x=1,y=2")
    assert status != 0 and len(err) == 1 and match in err[0]


def test_the_command_line_finishes_a_huge_power_at_once(capsys):
    start = time.perf_counter()
    from difprog.cli import main

    main(["explain", "x + 10**10**10", "--at", "x=1"])
    assert "inf" in capsys.readouterr().out
    assert time.perf_counter() - start < 30


# --- fuzz --------------------------------------------------------------------------------------

class CodeRan(BaseException):
    """Raised by the stand-ins for eval, exec, open, __import__, os.system...: never caught."""


def _forbidden(*args, **kwargs):
    raise CodeRan(str(args[0])[:80] if args and isinstance(args[0], str) else "")


_DANGEROUS = {"os", "posix", "subprocess", "shutil", "socket", "pty", "ctypes", "pickle",
              "marshal", "importlib", "builtins", "sys"}


@contextlib.contextmanager
def _no_code_can_run(imports: bool = True):
    """Replaces eval, exec, compile, open, os.system, subprocess.Popen and __import__.

    With imports=False, __import__ still works for modules other than os, subprocess,
    sys... (JAX imports re and others inside its functions while it evaluates).
    """
    original_import = builtins.__import__

    def guarded_import(name, *args, **kwargs):
        if imports or name.partition(".")[0] in _DANGEROUS:
            raise CodeRan(name)
        return original_import(name, *args, **kwargs)

    targets = [(builtins, "eval"), (builtins, "exec"), (builtins, "compile"),
               (builtins, "open"), (builtins, "breakpoint"), (os, "system"), (os, "popen"),
               (os, "execv"), (os, "execve"), (subprocess, "Popen")]
    saved = [(module, name, getattr(module, name)) for module, name in targets]
    for module, name, _ in saved:
        setattr(module, name, _forbidden)
    builtins.__import__ = guarded_import
    try:
        yield
    finally:
        builtins.__import__ = original_import
        for module, name, original in saved:
            setattr(module, name, original)


POINT = {"x": np.float64(0.7), "y": np.array([0.5, -1.5, 2.0])}
_USES = {name: re.compile(rf"\b{name}\b") for name in POINT}


def _check(text, evaluate: bool, must_parse: bool = False) -> None:
    """Parses `text` (and maybe evaluates it): a function of float64, or a DifprogError."""
    names = [n for n, used in _USES.items() if used.search(str(text))] if must_parse else ["x", "y"]
    with _no_code_can_run(imports=not evaluate):
        try:
            f = expression_function(text, names)
        except ArgumentError as error:
            assert "\n" not in str(error)
            assert not must_parse or re.search("nested more than|nodes", str(error)), error
            return
        if not evaluate:
            return
        try:
            with jax.enable_x64(True):
                out = np.asarray(f(*(POINT[n] for n in names)))
        except DifprogError as error:
            assert str(error)
            return
    assert out.dtype == np.float64


_NUMBERS = st.one_of(st.integers(0, 10**6).map(str),
                     st.floats(0, 1e6, allow_nan=False).map(repr),
                     st.sampled_from(["1e-3", ".5", "2.5E+1", "1e300", "0", "10"]))
_UNARY = ["exp", "log", "sqrt", "abs", "square", "reciprocal", "sigmoid", "tanh", "relu",
          "softplus", "gelu", "sum", "mean", "max", "logsumexp", "softmax", "log_softmax"]


def _extend(inner, vectors: bool = True):
    """The grammar's productions over smaller expressions (vector literals too, if `vectors`)."""
    productions = [
        st.tuples(st.sampled_from(["-", "+"]), inner).map("".join),
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "**"]), inner).map(" ".join),
        inner.map("({})".format),
        st.tuples(st.sampled_from(_UNARY), inner).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(st.sampled_from(["max", "min", "maximum", "minimum", "matmul"]), inner,
                  inner).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        inner.map("leaky_relu({}, negative_slope=0.2)".format),
        inner.map("sum({}, axis=0)".format),
        inner.map("mean({}, axis=(0,))".format),
        inner.map("softmax({}, -1)".format),
        inner.map("power({}, 3)".format),
    ]
    if vectors:
        productions.append(st.lists(inner, min_size=1, max_size=3).map(
            lambda items: f"[{', '.join(items)}]"))
    return st.one_of(productions)


VALID = st.recursive(st.one_of(st.sampled_from(["x", "y", "pi", "e"]), _NUMBERS), _extend,
                     max_leaves=12)
# for evaluation: the shapes of x and y only, so that JAX compiles little once warmed up
EVALUABLE = st.recursive(
    st.one_of(st.sampled_from(["x", "y", "pi", "[1, 2, 3]"]), _NUMBERS),
    lambda inner: _extend(inner, vectors=False), max_leaves=10)
TOKENS = [
    "x", "y", "z", "1", "2.5", "1e-3", "1e308", "10", ".5", "0", "pi", "e", "exp", "max", "min",
    "sum", "leaky_relu", "power", "matmul", "softmax", "negative_slope", "axis", "+", "-", "*",
    "/", "**", "(", ")", "[", "]", ",", "=", " ",
    ".", "forward", "__globals__", "__builtins__", "__import__", "'os'", '"a"', "lambda", ":",
    "if", "else", "for", "in", "not", "and", "True", "None", ">", "<", "==", ">=", ":=", "@",
    "//", "%", "^", "~", "{", "}", ";", "#", "\\", "1j", "0x10", "1_0", "1e999", "eval", "exec",
    "open", "system", "os", "\x00", "\n", "\t", "é", "\u202e", "\uff11", "\udcff",
]
SOUP = st.tuples(st.lists(st.sampled_from(TOKENS), max_size=40),
                 st.sampled_from(["", " "])).map(lambda t: t[1].join(t[0]))
TEXT = st.text(st.one_of(st.sampled_from(list("xy+-*/()[],=.0123456789e ")), st.characters()),
               max_size=100)

FAST = settings(deadline=300, database=None, suppress_health_check=[HealthCheck.too_slow])


def _fuzz(strategy, examples: int, check, deadline: int = 300) -> None:
    """Runs check on `examples` inputs drawn from strategy, each within `deadline` ms."""
    settings(FAST, max_examples=examples, deadline=deadline)(given(strategy)(check))()


def _warm_up():
    """Starts JAX and compiles the operations for the fuzz shapes, outside the guard of
    _no_code_can_run (JAX loads modules the first time it compiles), so no example pays for it."""
    operands = ["x", "y", "2"]  # [1, 2, 3] is a float64 array like y
    texts = [f"{name}({a})" for a in ["x", "y"] for name in _UNARY + ["leaky_relu"]]
    texts += [f"{a} {op} {b}" for a in operands for b in operands
              for op in ["+", "-", "*", "/", "**"]]
    texts += [f"{name}({a}, {b})" for a in operands for b in operands
              for name in ["max", "min", "matmul"]]
    for text in texts:
        names = [n for n, used in _USES.items() if used.search(text)]
        with contextlib.suppress(DifprogError), jax.enable_x64(True):
            expression_function(text, names)(*(POINT[n] for n in names))


@pytest.mark.slow
def test_fuzz_valid_expressions_parse():
    """3,000 expressions of the grammar, parsed only: each parses, unless nested too deep."""
    _fuzz(VALID, 3_000, lambda text: _check(text, evaluate=False, must_parse=True))


@pytest.mark.slow
def test_fuzz_valid_expressions_evaluate():
    """400 expressions of the grammar over x, y and [1, 2, 3], evaluated: float64 or a DifprogError.

    Vector literals of other shapes are left to the parse-only tests: every new shape makes JAX
    compile again, which would make the time per example depend on what came before.
    """
    _warm_up()
    _fuzz(EVALUABLE, 400, lambda text: _check(text, evaluate=True, must_parse=True),
          deadline=1_000)


@pytest.mark.slow
def test_fuzz_token_soups():
    """3,500 soups of the grammar's and forbidden tokens, parsed only: parse or refuse."""
    _fuzz(SOUP, 3_500, lambda text: _check(text, evaluate=False))


@pytest.mark.slow
def test_fuzz_text_and_bytes():
    """2,000 random texts and 1,500 random byte strings, parsed only: parse or refuse."""
    _fuzz(TEXT, 2_000, lambda text: _check(text, evaluate=False))
    _fuzz(st.binary(max_size=100), 1_500, lambda data: _check(data, evaluate=False))


@pytest.mark.slow
def test_fuzz_points():
    """1,000 random --at texts: float64 arrays or an ArgumentError."""
    points = st.one_of(TEXT, SOUP.map(lambda s: "x=" + s), st.binary(max_size=100))

    def check(text):
        with _no_code_can_run():
            try:
                point = parse_point(text)
            except ArgumentError as error:
                assert "\n" not in str(error)
                return
        assert all(np.asarray(v).dtype == np.float64 for v in point.values())

    _fuzz(points, 1_000, check)


def test_an_expression_starting_with_a_minus_is_an_expression_not_an_option(capsys):
    """`difprog explain '-x' --at x=3` explains -x (argparse alone reads '-x' as an option);
    the options may come before or after it, and another command's values are left alone."""
    from difprog.cli import main
    from difprog.cli.explain import expression_last

    assert main(["explain", "-x", "--at", "x=3"]) == 0
    assert "f = -3;" in capsys.readouterr().out
    assert main(["explain", "--at=x=2", "-x ** 2"]) == 0
    assert "f = -4;" in capsys.readouterr().out
    assert expression_last(["--debug", "explain", "-x", "--out", "d", "--at", "x=1"]) == \
        ["--debug", "explain", "--out", "d", "--at", "x=1", "--", "-x"]
    sample = ["sample", "--prompt", "explain", "-x"]
    assert expression_last(sample) == sample
    assert main(["explain", "-x"]) == 2  # --at is still required: a usage error
    capsys.readouterr()
    assert main(["explain", "-x", "--at", "x=3", "--debug"]) == 0  # --help lists --debug
    assert "f = -3;" in capsys.readouterr().out
