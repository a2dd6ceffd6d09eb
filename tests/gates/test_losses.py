"""The options of the losses (issue 17): softmax_cross_entropy's probability targets, class
weights, label smoothing, ignore_index and reduction; mse_loss's reduction; multiclass_hinge_loss's
class weights, p, margin and reduction.

Checked against torch.nn.functional (float64, value and gradient, when torch is installed), against
hand-computed float64 values (always), and through jit, vmap and second order at every check point.
"""

from __future__ import annotations

import functools
import itertools

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
from difprog.gates import check_points
from tests.conftest import EXTREME_VALUES, assert_trees_close, bound_arguments

LOSSES = ["mse_loss", "softmax_cross_entropy", "multiclass_hinge_loss"]

RNG = np.random.default_rng(17)
SCORES = RNG.standard_normal((4, 3, 5))                    # two batch axes, 5 classes
LABELS = RNG.integers(0, 5, (4, 3))
LABELS[0, 0] = LABELS[2, 1] = 2
LABELS_IGNORING = LABELS.copy()
LABELS_IGNORING[1, 2] = LABELS_IGNORING[3, 0] = -100
PROBABILITIES = RNG.uniform(0.1, 1.0, (4, 3, 5))
PROBABILITIES /= PROBABILITIES.sum(-1, keepdims=True)
WEIGHTS = RNG.uniform(0.5, 2.0, 5)
COTANGENTS = {"none": RNG.standard_normal((4, 3)), "mean": 0.7, "sum": -1.3}


@functools.cache
def _value_and_cotangent(name, static_items):
    """The jitted (value, cotangent of the first input) of a gate at given constants."""
    gate = gates.ALL[name]

    def run(x, others, g):
        value, vjp = jax.vjp(lambda x: gate(x, **others, **dict(static_items)), x)
        return value, vjp(jnp.asarray(g, value.dtype))[0]
    return jax.jit(run)


def _ours(name, x, others, g, **static):
    with jax.enable_x64(True):
        others = {k: None if v is None else jnp.asarray(v) for k, v in others.items()}
        value, cotangent = _value_and_cotangent(name, tuple(sorted(static.items())))(
            jnp.asarray(x), others, g)
        return np.asarray(value), np.asarray(cotangent)


# --- softmax_cross_entropy against hand-computed float64 values ------------------------------

def _log_softmax(s):
    shifted = s - s.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def _cross_entropy_by_hand(s, labels, weights=None, smoothing=0.0, ignore=None,
                           reduction="mean"):
    """torch's definition in numpy: q = w ((1 - e) t + e / C); mean / summed weight of the
    counted targets for class indices, / the number of examples for probabilities."""
    classes = s.shape[-1]
    w = np.ones(classes) if weights is None else weights
    if labels.dtype.kind == "f":
        target, counted = labels, np.ones(labels.shape[:-1], bool)
        denominator = counted.sum()
    else:
        counted = labels != ignore
        target = np.eye(classes)[np.where(counted, labels, 0)]
        denominator = np.where(counted, w[np.where(counted, labels, 0)], 0).sum()
    q = w * ((1 - smoothing) * target + smoothing / classes) * counted[..., None]
    losses = -(q * _log_softmax(s)).sum(-1)
    return {"none": losses, "sum": losses.sum(), "mean": losses.sum() / denominator}[reduction]


_CE_GRID = [
    pytest.param(probabilities, smoothing, weighted, ignore, reduction,
                 id=f"{'prob' if probabilities else 'int'}-e{smoothing}-"
                    f"{'w' if weighted else 'now'}-ign{ignore}-{reduction}")
    for probabilities, smoothing, weighted, ignore, reduction in itertools.product(
        [False, True], [0.0, 0.1], [False, True], [None, -100, 2], ["mean", "sum", "none"])
    if not (probabilities and ignore is not None)]


def _ce_case(probabilities, ignore):
    if probabilities:
        return PROBABILITIES
    return LABELS_IGNORING if ignore == -100 else LABELS


@pytest.mark.parametrize("probabilities, smoothing, weighted, ignore, reduction", _CE_GRID)
def test_cross_entropy_against_numpy(probabilities, smoothing, weighted, ignore, reduction):
    labels = _ce_case(probabilities, ignore)
    weights = WEIGHTS if weighted else None
    value, _ = _ours("softmax_cross_entropy", SCORES, {"labels": labels, "weights": weights},
                     COTANGENTS[reduction], label_smoothing=smoothing, ignore_index=ignore,
                     reduction=reduction)
    expected = _cross_entropy_by_hand(SCORES, labels, weights, smoothing, ignore, reduction)
    np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-14)


def test_cross_entropy_defaults_are_todays_mean_over_the_batch():
    s, y = SCORES[0], LABELS[0]
    expected = np.mean(-_log_softmax(s)[np.arange(3), y])
    with jax.enable_x64(True):
        value, grad = jax.value_and_grad(gates.softmax_cross_entropy)(jnp.asarray(s), y)
    np.testing.assert_allclose(value, expected, rtol=1e-13)
    np.testing.assert_allclose(grad, (np.exp(_log_softmax(s)) - np.eye(5)[y]) / 3, rtol=1e-12)


# --- softmax_cross_entropy against torch --------------------------------------------------------

def _torch_cross_entropy(torch, probabilities, smoothing, weighted, ignore, reduction):
    """torch's value and gradient; torch wants the class axis at 1, so it is moved there and
    back."""
    labels = _ce_case(probabilities, ignore)
    s = torch.tensor(np.moveaxis(SCORES, -1, 1), requires_grad=True)
    target = torch.tensor(np.moveaxis(labels, -1, 1) if probabilities else labels)
    kwargs = {"label_smoothing": smoothing, "reduction": reduction}
    if ignore is not None:
        kwargs["ignore_index"] = ignore
    if weighted:
        kwargs["weight"] = torch.tensor(WEIGHTS)
    value = torch.nn.functional.cross_entropy(s, target, **kwargs)
    value.backward(torch.tensor(np.broadcast_to(COTANGENTS[reduction], value.shape).copy()))
    return value.detach().numpy(), np.moveaxis(s.grad.numpy(), 1, -1)


@pytest.mark.parametrize("probabilities, smoothing, weighted, ignore, reduction", _CE_GRID)
def test_cross_entropy_against_torch(probabilities, smoothing, weighted, ignore, reduction):
    torch = pytest.importorskip("torch")
    value, grad = _ours("softmax_cross_entropy", SCORES,
                        {"labels": _ce_case(probabilities, ignore),
                         "weights": WEIGHTS if weighted else None},
                        COTANGENTS[reduction], label_smoothing=smoothing, ignore_index=ignore,
                        reduction=reduction)
    expected_value, expected_grad = _torch_cross_entropy(torch, probabilities, smoothing,
                                                         weighted, ignore, reduction)
    np.testing.assert_allclose(value, expected_value, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("weighted", [False, True])
def test_all_ignored_mean_is_nan_with_zero_gradient_as_torch(weighted):
    labels = np.full((4, 3), -100)
    weights = WEIGHTS if weighted else None
    value, grad = _ours("softmax_cross_entropy", SCORES, {"labels": labels, "weights": weights},
                        1.0, ignore_index=-100, label_smoothing=0.1)
    assert np.isnan(value)
    np.testing.assert_array_equal(grad, np.zeros_like(SCORES))
    for reduction in ["sum", "none"]:
        value, grad = _ours("softmax_cross_entropy", SCORES,
                            {"labels": labels, "weights": weights}, COTANGENTS[reduction],
                            ignore_index=-100, reduction=reduction)
        np.testing.assert_array_equal(value, np.zeros_like(value))
        np.testing.assert_array_equal(grad, np.zeros_like(SCORES))


def test_ignored_rows_under_vmap_jvp_and_second_order():
    with jax.enable_x64(True):
        s, y = jnp.asarray(SCORES), jnp.asarray(LABELS_IGNORING)
        f = functools.partial(gates.softmax_cross_entropy, labels=y, weights=jnp.asarray(WEIGHTS),
                              label_smoothing=0.1, ignore_index=-100)
        ref = functools.partial(gates.softmax_cross_entropy.forward, labels=y,
                                weights=jnp.asarray(WEIGHTS), label_smoothing=0.1,
                                ignore_index=-100, reduction="mean")
        grad = np.asarray(jax.jit(jax.grad(f))(s))
        assert not grad[1, 2].any() and not grad[3, 0].any() and grad[0, 0].all()
        v = jnp.asarray(np.random.default_rng(3).standard_normal(SCORES.shape))
        jvp = lambda f: jax.jit(lambda s, v: jax.jvp(f, (s,), (v,)))
        assert_trees_close(jvp(f)(s, v), jvp(ref)(s, v))
        assert_trees_close(jax.jit(jax.hessian(f))(s), jax.jit(jax.hessian(ref))(s), rtol=1e-9)


# --- multiclass_hinge_loss: ours = torch's multi_margin_loss times C --------------------------

def _hinge_by_hand(s, labels, weights=None, margin=1.0, p=1, reduction="mean"):
    """The CS231n multiclass SVM loss, weighted by the label's class and raised to p."""
    picked = np.take_along_axis(s, labels[..., None], -1)
    margins = np.maximum(0, s - picked + margin) ** p
    losses = margins.sum(-1) - margin ** p  # the j = y term is max(0, margin)^p = margin^p
    if weights is not None:
        losses = weights[labels] * losses
    return {"none": losses, "sum": losses.sum(), "mean": losses.mean()}[reduction]


_HINGE_GRID = list(itertools.product([1, 2], [False, True], [1.0, 0.5],
                                     ["mean", "sum", "none"]))


@pytest.mark.parametrize("p, weighted, margin, reduction", _HINGE_GRID)
def test_hinge_against_numpy(p, weighted, margin, reduction):
    weights = WEIGHTS if weighted else None
    value, _ = _ours("multiclass_hinge_loss", SCORES, {"labels": LABELS, "weights": weights},
                     COTANGENTS[reduction], margin=margin, p=p, reduction=reduction)
    np.testing.assert_allclose(value, _hinge_by_hand(SCORES, LABELS, weights, margin, p,
                                                     reduction), rtol=1e-12, atol=1e-14)


def test_hinge_default_is_todays_multiclass_svm_loss():
    s = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
    y = np.array([0, 1, 2])
    # CS231n's worked example: 2.9, 0 and 12.9; their mean.
    np.testing.assert_allclose(gates.multiclass_hinge_loss(s, y), (2.9 + 0 + 12.9) / 3,
                               rtol=1e-6)


@pytest.mark.parametrize("p, weighted, margin, reduction", _HINGE_GRID)
def test_hinge_is_torch_multi_margin_loss_times_the_number_of_classes(p, weighted, margin,
                                                                       reduction):
    torch = pytest.importorskip("torch")
    scores, labels = SCORES.reshape(12, 5), LABELS.reshape(12)
    g = COTANGENTS[reduction] if reduction != "none" else COTANGENTS["none"].reshape(12)
    value, grad = _ours("multiclass_hinge_loss", scores,
                        {"labels": labels, "weights": WEIGHTS if weighted else None}, g,
                        margin=margin, p=p, reduction=reduction)
    s = torch.tensor(scores, requires_grad=True)
    expected = torch.nn.functional.multi_margin_loss(
        s, torch.tensor(labels), p=p, margin=margin, reduction=reduction,
        weight=torch.tensor(WEIGHTS) if weighted else None)
    expected.backward(torch.tensor(np.broadcast_to(g, expected.shape).copy()))
    classes = scores.shape[-1]
    np.testing.assert_allclose(value / classes, expected.detach().numpy(), rtol=1e-12,
                               atol=1e-14)
    np.testing.assert_allclose(grad / classes, s.grad.numpy(), rtol=1e-12, atol=1e-14)


# --- mse_loss ---------------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_reductions(reduction):
    pred, target = SCORES[0], SCORES[1, 0]  # (3, 5) against (5,): broadcast
    g = {"none": RNG.standard_normal((3, 5)), "mean": 0.7, "sum": -1.3}[reduction]
    value, grad = _ours("mse_loss", pred, {"target": target}, g, reduction=reduction)
    squares = (pred - target) ** 2
    np.testing.assert_allclose(value, {"none": squares, "sum": squares.sum(),
                                       "mean": squares.mean()}[reduction], rtol=1e-13)
    scale = 1 / squares.size if reduction == "mean" else 1
    np.testing.assert_allclose(grad, 2 * scale * np.asarray(g) * (pred - target), rtol=1e-12)
    torch = pytest.importorskip("torch")
    expected = torch.nn.functional.mse_loss(torch.tensor(pred),
                                            torch.tensor(np.broadcast_to(target, pred.shape)),
                                            reduction=reduction)
    np.testing.assert_allclose(value, expected.numpy(), rtol=1e-13)


# --- every option through jit, vmap and second order ------------------------------------------

def _option_points():
    """Every check point of the three losses past the plain ones (test_rules.py runs those)."""
    for name, plain in [("mse_loss", 3), ("softmax_cross_entropy", 2),
                        ("multiclass_hinge_loss", 2)]:
        for i, point in enumerate(check_points(name)[plain:], start=plain):
            yield pytest.param(name, point, id=f"{name}-{i}")


def _functions(name, point):
    """The gate and JAX's autodiff reference as functions of the first input, in float64."""
    gate = gates.ALL[name]
    inputs, others = bound_arguments(gate, *point)
    first, *rest = gate.input_names
    rest = {n: jnp.asarray(inputs[n], jnp.float64) for n in rest}
    statics = {k: v for k, v in others.items() if k in gate.static_names}
    arrays = {k: v if v is None else jnp.asarray(v) for k, v in others.items()
              if k not in statics}
    mine = lambda x, arrays: gate(x, **rest, **arrays, **statics)
    ref = lambda x, arrays: gate.forward(x, **rest, **arrays, **statics)
    return jnp.asarray(inputs[first], jnp.float64), arrays, mine, ref


def _transformed(f):
    """f's gradient and tangent, under vmap over two inputs, and to second order (Hessian by
    forward over reverse, grad of grad by reverse over reverse), all in one jitted function."""
    scalar = lambda x, arrays: jnp.sum(jnp.sin(f(x, arrays)))
    jvp = lambda x, v, arrays: jax.jvp(lambda x: f(x, arrays), (x,), (v,))

    def run(x, v, arrays):
        xs = jnp.stack([x, x + 0.01 * v])
        return {"grad": jax.grad(scalar)(x, arrays), "jvp": jvp(x, v, arrays),
                "vmap grad": jax.vmap(jax.grad(scalar), in_axes=(0, None))(xs, arrays),
                "vmap jvp": jax.vmap(jvp, in_axes=(0, 0, None))(xs, xs, arrays),
                "hessian": jax.hessian(scalar)(x, arrays),
                "grad of grad": jax.grad(lambda x: jnp.vdot(jax.grad(scalar)(x, arrays), v))(x)}
    return jax.jit(run)


@pytest.mark.parametrize("name, point", list(_option_points()))
def test_every_option_under_jit_vmap_and_second_order(name, point):
    with jax.enable_x64(True):
        x, arrays, mine, ref = _functions(name, point)
        v = jnp.asarray(np.random.default_rng(3).standard_normal(x.shape))
        assert_trees_close(_transformed(mine)(x, v, arrays), _transformed(ref)(x, v, arrays),
                           rtol=1e-9)


@pytest.mark.parametrize("targets", [LABELS_IGNORING, PROBABILITIES], ids=["int", "prob"])
def test_labels_and_weights_batched_under_vmap(targets):
    ignore = -100 if targets.dtype.kind == "i" else None
    loss = lambda f: lambda s, y, w: jnp.sin(f(s, y, w, label_smoothing=0.1, ignore_index=ignore,
                                               reduction="sum"))
    per_example = lambda f: jax.jit(jax.vmap(jax.grad(loss(f))))
    with jax.enable_x64(True):
        s, targets = jnp.asarray(SCORES), jnp.asarray(targets)
        weights = jnp.asarray(np.stack([WEIGHTS] * 3 + [WEIGHTS[::-1]]))
        assert_trees_close(per_example(gates.softmax_cross_entropy)(s, targets, weights),
                           per_example(gates.softmax_cross_entropy.forward)(s, targets, weights))


# --- hostile input with options -----------------------------------------------------------------

@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_nan_score_gives_nan_gradient_row_with_every_option(mode):
    s = jnp.asarray(SCORES.reshape(12, 5)).at[4, 1].set(jnp.nan)
    cases = [("softmax_cross_entropy", LABELS.reshape(12),
              {"label_smoothing": 0.1, "reduction": "sum"}),
             ("softmax_cross_entropy", PROBABILITIES.reshape(12, 5), {"reduction": "none"}),
             ("multiclass_hinge_loss", LABELS.reshape(12), {"p": 2, "reduction": "none"})]
    for name, labels, static in cases:
        f = lambda s, y, w, name=name, static=static: jnp.sum(
            gates.ALL[name](s, y, weights=w, **static))
        grad = jax.grad(f)
        grad = np.asarray((jax.jit(grad) if mode == "jit" else grad)(s, labels,
                                                                      jnp.asarray(WEIGHTS)))
        assert np.isnan(grad[4]).all(), name
        assert np.isfinite(np.delete(grad, 4, axis=0)).all(), name


def test_out_of_range_label_under_jit_gives_nan_rows_but_ignored_labels_do_not():
    labels = jnp.asarray(LABELS_IGNORING.reshape(12)).at[5].set(7)
    s = jnp.asarray(SCORES.reshape(12, 5), jnp.float32)
    f = jax.jit(jax.grad(lambda s, y: gates.softmax_cross_entropy(
        s, y, label_smoothing=0.1, ignore_index=-100)))
    grad = np.asarray(f(s, labels))
    assert np.isnan(grad[5]).all() and np.isfinite(np.delete(grad, 5, axis=0)).all()
    assert np.isnan(jax.jit(lambda s, y: gates.softmax_cross_entropy(
        s, y, ignore_index=-100, reduction="none"))(s, labels)[5])


def test_out_of_range_label_is_a_label_error_eagerly_unless_ignored():
    s = jnp.asarray(SCORES.reshape(12, 5), jnp.float32)
    labels = jnp.asarray(LABELS_IGNORING.reshape(12))
    assert np.isfinite(gates.softmax_cross_entropy(s, labels, ignore_index=-100))
    with pytest.raises(LabelError, match=r"'softmax_cross_entropy'.*\[0, 5\).*-100"):
        gates.softmax_cross_entropy(s, labels)
    with pytest.raises(LabelError, match=r"ignore_index=-1.*\[-100"):
        gates.softmax_cross_entropy(s, labels, ignore_index=-1)


def test_differentiating_through_probability_targets_is_an_argument_error():
    s, t = jnp.asarray(SCORES, jnp.float32), jnp.asarray(PROBABILITIES, jnp.float32)
    with pytest.raises(ArgumentError, match=r"'softmax_cross_entropy'.*'labels'.*stop_gradient"):
        jax.grad(gates.softmax_cross_entropy, argnums=1)(s, t)
    with pytest.raises(ArgumentError, match=r"'softmax_cross_entropy'.*'labels'"):
        jax.jvp(lambda t: gates.softmax_cross_entropy(s, t), (t,), (t,))
    with pytest.raises(ArgumentError, match=r"'multiclass_hinge_loss'.*'weights'"):
        jax.grad(lambda w: gates.multiclass_hinge_loss(s, LABELS, weights=w))(jnp.asarray(WEIGHTS))
    grad = jax.grad(lambda s, t: gates.softmax_cross_entropy(s, jax.lax.stop_gradient(t)))(s, t)
    assert np.isfinite(grad).all()


# --- errors for arrays that do not fit ---------------------------------------------------------

_S, _Y = jnp.ones((4, 5)), jnp.zeros(4, jnp.int32)


@pytest.mark.parametrize("error, match, call", [
    (ShapeError, r"'softmax_cross_entropy'.*'weights'\[4\].*\[5\]",
     lambda: gates.softmax_cross_entropy(_S, _Y, jnp.ones(4))),
    (ShapeError, r"'multiclass_hinge_loss'.*'weights'\[1, 5\]",
     lambda: gates.multiclass_hinge_loss(_S, _Y, weights=jnp.ones((1, 5)))),
    (ShapeError, r"'softmax_cross_entropy'.*'weights'\[\]",
     lambda: gates.softmax_cross_entropy(_S, _Y, 2.0)),
    (DtypeError, r"'softmax_cross_entropy'.*'weights'.*int32",
     lambda: gates.softmax_cross_entropy(_S, _Y, jnp.ones(5, jnp.int32))),
    (DtypeError, r"'multiclass_hinge_loss'.*'weights'.*bool",
     lambda: gates.multiclass_hinge_loss(_S, _Y, weights=jnp.ones(5, bool))),
    (ShapeError, r"'softmax_cross_entropy'.*probabilities.*\[4, 5\].*float32\[4, 4\]",
     lambda: gates.softmax_cross_entropy(_S, jnp.ones((4, 4)))),
    (DtypeError, r"'softmax_cross_entropy'.*labels must be integer.*float32\[4\]",
     lambda: gates.softmax_cross_entropy(_S, jnp.ones(4))),
    (ShapeError, r"'softmax_cross_entropy'.*labels\[4, 5\]",
     lambda: gates.softmax_cross_entropy(_S, jnp.zeros((4, 5), jnp.int32))),
    (ArgumentError, r"'softmax_cross_entropy'.*'ignore_index' is 0.*integer labels only",
     lambda: gates.softmax_cross_entropy(_S, jnp.ones((4, 5)) / 5, ignore_index=0)),
    (DtypeError, r"'multiclass_hinge_loss'.*labels must be integer",
     lambda: gates.multiclass_hinge_loss(_S, jnp.ones((4, 5)) / 5)),
])
@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_arrays_that_do_not_fit_are_one_line_difprog_errors(error, match, call, mode):
    with pytest.raises(error, match=match) as caught:
        (jax.jit(lambda _: call()) if mode == "jit" else lambda _: call())(0.0)
    assert isinstance(caught.value, DifprogError) and "\n" not in str(caught.value)


def test_label_smoothing_bounds_are_inclusive():
    for smoothing in (0, 0.0, 1, 1.0):
        assert np.isfinite(gates.softmax_cross_entropy(_S, _Y, label_smoothing=smoothing))
    with pytest.raises(ArgumentError, match=r"'label_smoothing' must lie in \[0, 1\], got 1.01"):
        gates.softmax_cross_entropy(_S, _Y, label_smoothing=1.01)


def test_cross_entropy_is_finite_for_large_logits():
    logits = jnp.stack([EXTREME_VALUES, -EXTREME_VALUES])
    labels = jnp.array([0, 0])
    loss, grad = jax.value_and_grad(gates.softmax_cross_entropy)(logits, labels)
    np.testing.assert_allclose(loss, (2e4 + 0.0) / 2, rtol=1e-6)
    assert np.all(np.isfinite(grad))
