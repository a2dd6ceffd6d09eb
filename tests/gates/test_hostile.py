"""Hostile input for every registered gate, eagerly and under jax.jit, from what each gate
registers beside its rules (`zero_size`, `bad`, `affine`):

- NaN in gives NaN out: in the value, in the backward rule (jax.vjp) and in the tangent rule
  (jax.jvp), wherever the derivative depends on the poisoned input; never a finite wrong number.
- Zero-size inputs give what jax.numpy gives (the gate's own `forward`): the same result shape,
  dtype and values, and cotangents and tangents of the right shapes.
- Wrongly typed or valued constants (axis='a', stride=0, eps=-1...) give a difprog error that
  names the gate, the argument and what it got: never a raw IndexError, an XLA dump or a NaN.
- The reproducers of issue 14: out-of-range labels give NaN gradient rows under jit (and a
  LabelError eagerly), a NaN hinge score a NaN gradient row, and the odd inputs that raised raw
  errors or returned complex numbers, NaN or empty arrays.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difprog import gates
from difprog.errors import (
    ArgumentError,
    DifprogError,
    DtypeError,
    LabelError,
    ShapeError,
)
from difprog.gates import REGISTRY, check_points
from tests.conftest import bound_arguments

NAMES = list(gates.ALL)
MODES = ["eager", "jit"]


def _value_vjp_jvp(fn, inputs, others):
    """fn's value, its cotangents for an all-ones upstream gradient and its tangent along ones."""
    names = list(inputs)
    f = lambda *x: fn(**dict(zip(names, x)), **others)
    x = tuple(inputs.values())
    out, vjp = jax.vjp(f, *x)
    tangent = jax.jvp(f, x, jax.tree.map(jnp.ones_like, x))[1]
    return out, vjp(jnp.ones_like(out)), tangent


@functools.cache
def _jitted(name, input_names, static_items, reference):
    """One compiled (value, cotangents, tangent) per gate and set of constants, shared."""
    gate = gates.ALL[name]
    fn = gate.forward if reference else gate
    return jax.jit(lambda x, arrays: _value_vjp_jvp(fn, dict(zip(input_names, x)),
                                                    {**arrays, **dict(static_items)}))


def _run(name, mode, inputs, others, reference=False):
    """The gate's (value, cotangents, tangent) eagerly or under jit; with `reference`, JAX's own
    autodiff of the gate's plain jax.numpy forward instead (under jit)."""
    gate = gates.ALL[name]
    if mode == "eager" and not reference:
        return _value_vjp_jvp(gate, inputs, others)
    arrays = {k: v for k, v in others.items() if k in gate.array_names}
    static = tuple((k, _hashable(v)) for k, v in others.items() if k not in arrays)
    return _jitted(name, tuple(inputs), static, reference)(tuple(inputs.values()), arrays)


_REFERENCES: dict = {}


def _reference(key, name, inputs, others):
    """`_run(..., reference=True)`, computed once for both modes."""
    if key not in _REFERENCES:
        _REFERENCES[key] = _run(name, "jit", inputs, others, reference=True)
    return _REFERENCES[key]


def _hashable(value):
    return tuple(map(_hashable, value)) if isinstance(value, (list, tuple)) else value


def _leaves(tree):
    return [np.asarray(leaf, np.float64) for leaf in jax.tree.leaves(tree)]


def _all_finite(tree):
    return all(np.isfinite(leaf).all() for leaf in _leaves(tree))


# --- (a) NaN in gives NaN out ----------------------------------------------------------------

# (gate, input) pairs whose derivatives (backward and tangent) do not depend on the input's
# value, as registered (`affine=`): a linear gate's gradient stays finite at a NaN input, as in JAX.
AFFINE = {(name, input_name) for name in NAMES for input_name in REGISTRY[name].affine}


def _poison(value):
    """value with NaN in its first entry (the first leaf's, for a pytree)."""
    leaves, treedef = jax.tree.flatten(value)
    first = jnp.asarray(leaves[0], jnp.float32)
    leaves[0] = first.at[(0,) * first.ndim].set(jnp.nan)
    return jax.tree.unflatten(treedef, [leaves[0]] + [jnp.asarray(v, jnp.float32)
                                                     for v in leaves[1:]])


def _nan_cases():
    """(name, input, mode): under jit every differentiable input of every gate, eagerly (op by
    op, slow to compile) the first."""
    for name in NAMES:
        for i, input_name in enumerate(gates.ALL[name].input_names):
            for mode in MODES if i == 0 else ["jit"]:
                yield pytest.param(name, input_name, mode, id=f"{name}-{input_name}-{mode}")


@pytest.mark.parametrize("name, input_name, mode", list(_nan_cases()))
def test_nan_in_gives_nan_out_in_value_backward_and_tangent(name, input_name, mode):
    gate = gates.ALL[name]
    inputs, others = bound_arguments(gate, *check_points(name)[0])
    inputs = {n: (_poison(v) if n == input_name else jax.tree.map(
        lambda a: jnp.asarray(a, jnp.float32), v)) for n, v in inputs.items()}
    value, cotangents, tangent = _run(name, mode, inputs, others)
    ref_value, ref_cotangents, ref_tangent = _reference(("nan", name, input_name), name,
                                                        inputs, others)
    assert np.isnan(np.asarray(value)).any(), "the value hides the NaN"
    # Wherever JAX's autodiff of the forward gives NaN, so do the hand-written rules.
    for mine, ref in [(value, ref_value), (cotangents, ref_cotangents), (tangent, ref_tangent)]:
        for m, r in zip(_leaves(mine), _leaves(ref)):
            assert np.isnan(m)[np.isnan(r)].all(), "a NaN of JAX's autodiff became a number"
    if (name, input_name) in AFFINE:
        assert _all_finite(cotangents) and _all_finite(tangent)
    else:
        assert not _all_finite(cotangents), "the backward rule turned a NaN input into numbers"
        assert not _all_finite(tangent), "the tangent rule turned a NaN input into numbers"


# --- (b) zero-size inputs ----------------------------------------------------------------------

def _arrays(tree):
    """The NumPy arrays of a registered case as JAX arrays (tuples of ints, shapes, stay)."""
    return jax.tree.map(lambda a: jnp.asarray(a) if isinstance(a, np.ndarray) else a, tree)


ZERO_SIZE = {name: REGISTRY[name].zero_size for name in NAMES if REGISTRY[name].zero_size}


def _assert_same(mine, ref, where_finite=False):
    """Same structure, shapes, dtypes and values (NaN where ref has NaN); with `where_finite`,
    values are compared only where both are finite (JAX's own derivatives of reductions over
    no values are NaN or 0 depending on how the forward is written)."""
    assert jax.tree.structure(mine) == jax.tree.structure(ref)
    for m, r in zip(jax.tree.leaves(mine), jax.tree.leaves(ref)):
        assert (jnp.shape(m), jnp.result_type(m)) == (jnp.shape(r), jnp.result_type(r))
        m, r = np.asarray(m, np.float64), np.asarray(r, np.float64)
        if where_finite:
            both = np.isfinite(m) & np.isfinite(r)
            m, r = m[both], r[both]
        np.testing.assert_allclose(m, r, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_every_gate_registers_zero_size_cases():
    assert set(ZERO_SIZE) == set(NAMES)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", NAMES)
def test_zero_size_inputs_give_what_jax_numpy_gives(name, mode):
    """Under jit every case; eagerly (op by op, slow to compile) the first case of each gate."""
    gate = gates.ALL[name]
    cases = ZERO_SIZE[name]() if mode == "jit" else ZERO_SIZE[name]()[:1]
    for case, (args, kwargs) in enumerate(_arrays(cases)):
        assert 0 in [n for leaf in jax.tree.leaves(args) for n in jnp.shape(leaf)]
        inputs, others = bound_arguments(gate, args, kwargs)
        value, cotangents, tangent = _run(name, mode, inputs, others)
        ref_value, ref_cotangents, ref_tangent = _reference(("zero", name, case), name, inputs,
                                                            others)
        _assert_same(value, ref_value)
        assert jax.tree.map(jnp.shape, cotangents) == jax.tree.map(jnp.shape,
                                                                   tuple(inputs.values()))
        _assert_same(cotangents, ref_cotangents, where_finite=True)
        _assert_same(tangent, ref_tangent, where_finite=True)


# --- (c) wrongly typed or valued constants -----------------------------------------------------

BAD_STATIC = {name: REGISTRY[name].bad for name in NAMES if REGISTRY[name].bad}


def test_every_gate_with_constants_registers_bad_ones():
    with_constants = {n for n in NAMES if gates.ALL[n].static_names}
    assert set(BAD_STATIC) == with_constants


def _static_cases():
    for name, arguments in BAD_STATIC.items():
        for argument in arguments:
            yield pytest.param(name, argument, id=f"{name}-{argument}")


def _mentions(message, value):
    forms = {repr(value), str(value)}
    if isinstance(value, tuple):
        forms.add(str(list(value)))
    return any(form in message for form in forms)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name, argument", list(_static_cases()))
def test_bad_constants_are_difprog_errors_naming_gate_argument_and_value(name, argument, mode):
    gate = gates.ALL[name]
    inputs, others = bound_arguments(gate, *check_points(name)[0])
    arrays = {**inputs, **{k: v for k, v in others.items() if k in gate.array_names}}
    static = {k: v for k, v in others.items() if k not in gate.array_names}
    for bad in BAD_STATIC[name][argument]:
        call = lambda arrays, bad=bad: gate(**arrays, **{**static, argument: bad})
        with pytest.raises(DifprogError) as caught:
            (jax.jit(call) if mode == "jit" else call)(arrays)
        message = str(caught.value)
        assert f"'{name}'" in message and f"'{argument}'" in message, message
        assert _mentions(message, bad), message
        assert "\n" not in message, message


# --- (d) the reproducers of issue 14 -----------------------------------------------------------

LOSSES = ["softmax_cross_entropy", "multiclass_hinge_loss"]
_ce_grad_jit = jax.jit(jax.grad(gates.softmax_cross_entropy))
_hinge_grad_jit = jax.jit(jax.grad(gates.multiclass_hinge_loss))
_GRAD_JIT = {"softmax_cross_entropy": _ce_grad_jit, "multiclass_hinge_loss": _hinge_grad_jit}


def _loss_jvp(name):
    gate = gates.ALL[name]
    return jax.jit(lambda s, y: jax.jvp(lambda s: gate(s, y), (s,), (jnp.ones_like(s),)))


def _loss_linearized(name):
    gate = gates.ALL[name]
    return jax.jit(lambda s, y: jax.linearize(lambda s: gate(s, y), s)[1](jnp.ones_like(s)))


@pytest.mark.parametrize("bad_label", [10, -1, 2**31 - 1])
@pytest.mark.parametrize("name", LOSSES)
def test_out_of_range_label_gives_nan_gradient_row_under_jit(name, bad_label):
    scores, labels = jnp.zeros((3, 10)), jnp.array([0, 1, bad_label])
    grad = np.asarray(_GRAD_JIT[name](scores, labels))
    assert np.isnan(grad[2]).all()
    assert np.isfinite(grad[:2]).all()
    value, tangent = _loss_jvp(name)(scores, labels)
    assert np.isnan(value) and np.isnan(tangent)
    assert np.isnan(_loss_linearized(name)(scores, labels))


@pytest.mark.parametrize("name", LOSSES)
def test_out_of_range_label_is_a_label_error_eagerly(name):
    gate = gates.ALL[name]
    for labels in (jnp.array([0, 1, 10]), jnp.array([0, -1, 2])):
        with pytest.raises(LabelError, match=rf"'{name}'.*\[0, 10\)"):
            gate(jnp.zeros((3, 10)), labels)
        with pytest.raises(LabelError, match=rf"'{name}'"):
            jax.grad(gate)(jnp.zeros((3, 10)), labels)
        with pytest.raises(LabelError, match=rf"'{name}'"):
            jax.jvp(functools.partial(gate, labels=labels), (jnp.zeros((3, 10)),),
                    (jnp.ones((3, 10)),))


def test_labels_that_do_not_fit_int32_are_refused_not_wrapped():
    labels = np.array([0, 2**32 + 3])
    with jax.enable_x64(False):
        for name in LOSSES:
            with pytest.raises(DtypeError, match=rf"'{name}'.*'labels'.*{2**32 + 3}"):
                gates.ALL[name](jnp.zeros((2, 5)), labels)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("where", ["other", "label"])
def test_nan_hinge_score_gives_nan_gradient_row(where, mode):
    scores = jnp.zeros((3, 10)).at[0, 3 if where == "other" else 0].set(jnp.nan)
    labels = jnp.array([0, 1, 2])
    grad_fn = _hinge_grad_jit if mode == "jit" else jax.grad(gates.multiclass_hinge_loss)
    grad = np.asarray(grad_fn(scores, labels))
    assert np.isnan(grad[0]).all() and np.isfinite(grad[1:]).all()
    tangent = jax.jvp(lambda s: gates.multiclass_hinge_loss(s, labels), (scores,),
                      (jnp.ones_like(scores),))[1]
    assert np.isnan(tangent)


@pytest.mark.parametrize("mode", MODES)
def test_nan_logit_gives_nan_cross_entropy_gradient_row(mode):
    logits = jnp.zeros((3, 10)).at[1, 4].set(jnp.nan)
    grad_fn = _ce_grad_jit if mode == "jit" else jax.grad(gates.softmax_cross_entropy)
    grad = np.asarray(grad_fn(logits, jnp.array([0, 1, 2])))
    assert np.isnan(grad[1]).all() and np.isfinite(grad[[0, 2]]).all()


@pytest.mark.parametrize("mode", MODES)
def test_relu_gradient_at_nan_is_nan(mode):
    grad = jax.grad(gates.relu)
    assert np.isnan((jax.jit(grad) if mode == "jit" else grad)(jnp.float32(jnp.nan)))


def _maybe_jit(f, mode):
    return jax.jit(f) if mode == "jit" else f


@pytest.mark.parametrize("mode", MODES)
def test_softmax_family_on_an_empty_axis_gives_what_jax_nn_gives(mode):
    x = jnp.zeros((5, 0))
    pairs = [(gates.softmax, jax.nn.softmax), (gates.log_softmax, jax.nn.log_softmax),
             (gates.logsumexp, functools.partial(jax.nn.logsumexp, axis=-1))]
    for gate, reference in pairs:
        _assert_same(_maybe_jit(gate, mode)(x), reference(x))
        grad = _maybe_jit(jax.grad(lambda x, gate=gate: jnp.sum(gate(x))), mode)(x)
        assert grad.shape == (5, 0)
    np.testing.assert_array_equal(_maybe_jit(gates.logsumexp, mode)(x), np.full(5, -np.inf))


@pytest.mark.parametrize("mode", MODES)
def test_conv2d_with_a_batch_of_zero(mode):
    x, w = jnp.zeros((0, 5, 5, 2)), jnp.ones((3, 3, 2, 4))
    loss = lambda x, w: jnp.sum(gates.conv2d(x, w))
    assert _maybe_jit(gates.conv2d, mode)(x, w).shape == (0, 5, 5, 4)
    gx, gw = _maybe_jit(jax.grad(loss, (0, 1)), mode)(x, w)
    assert gx.shape == x.shape
    np.testing.assert_array_equal(gw, np.zeros(w.shape))


@pytest.mark.parametrize("mode", MODES)
def test_odd_arguments_are_difprog_errors(mode):
    x = jnp.ones((2, 3))
    image = jnp.ones((1, 4, 4, 1))
    cases = [
        (ShapeError, "'mean'.*'axis'.*5", lambda: gates.mean(x, axis=5)),
        (DtypeError, "'sum'.*'axis'.*'a'", lambda: gates.sum(x, axis="a")),
        (DtypeError, "'reshape'.*'shape'", lambda: gates.reshape(x, "a")),
        (DtypeError, "'reshape'.*'shape'", lambda: gates.reshape(x, (6.0,))),
        (DtypeError, "'concatenate'.*'axis'", lambda: gates.concatenate([x, x], axis="a")),
        (DtypeError, "'concatenate'.*'xs'", lambda: gates.concatenate([[x], x])),
        (DtypeError, "'max_pool2d'.*'window'", lambda: gates.max_pool2d(image, window="x")),
        (ArgumentError, "'avg_pool2d'.*'stride'", lambda: gates.avg_pool2d(image, stride=0)),
        (ArgumentError, "'max_pool2d'.*'padding'",
         lambda: gates.max_pool2d(image, padding="bogus")),
        (DtypeError, "'power'.*'p'.*complex", lambda: gates.power(x, 1j)),
        (ArgumentError, "'layer_norm'.*'eps'.*-1",
         lambda: gates.layer_norm(x, jnp.ones(3), jnp.ones(3), eps=-1)),
        (ShapeError, r"'conv2d'.*w\[0, 0, 3, 4\]",
         lambda: gates.conv2d(jnp.ones((1, 5, 5, 3)), jnp.ones((0, 0, 3, 4)))),
        (ShapeError, r"'max_pool2d'.*\(3, 3\) window.*x\[1, 2, 2, 1\]",
         lambda: gates.max_pool2d(jnp.ones((1, 2, 2, 1)), window=3, padding=((0, 0), (0, 0)))),
        (ShapeError, r"'conv2d'.*\(3, 3\) window.*x\[1, 2, 2, 1\]",
         lambda: gates.conv2d(jnp.ones((1, 2, 2, 1)), jnp.ones((3, 3, 1, 1)),
                              padding=((0, 0), (0, 0)))),
        (ShapeError, r"'max'.*empty", lambda: gates.max(jnp.ones((0, 3)), axis=0)),
    ]
    for error, match, call in cases:
        with pytest.raises(error, match=match):
            _maybe_jit(lambda _, call=call: call(), mode)(0.0)


def test_padding_and_axis_spellings_jax_accepts():
    """What jax.lax and jax.numpy accept, the gates accept: lower-case padding names,
    'SAME_LOWER', axis None and tuples of axes for the softmax family, concatenate(axis=None);
    their rules agree with JAX's autodiff of their forwards."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 5, 5, 2)), rng.standard_normal((2, 2, 2, 3))
    distinct = (rng.permutation(50) * 0.1).reshape(1, 5, 5, 2)
    cases = [("conv2d", (x, w), {"padding": "same"}),
             ("conv2d", (x, w), {"padding": "SAME_LOWER", "stride": 2}),
             ("max_pool2d", (distinct,), {"padding": "same_lower"}),
             ("avg_pool2d", (x,), {"padding": "same", "stride": 1}),
             ("softmax", (x[0, 0],), {"axis": None}),
             ("log_softmax", (x[0],), {"axis": (0, 2)}),
             ("logsumexp", (x[0],), {"axis": None}),
             ("concatenate", ([x[0, 0], x[0, :2, :2, 0]],), {"axis": None})]
    for name, args, kwargs in cases:
        inputs, others = bound_arguments(gates.ALL[name], args, kwargs)
        inputs = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), inputs)
        _assert_same(_run(name, "jit", inputs, others),
                     _run(name, "jit", inputs, others, reference=True))
