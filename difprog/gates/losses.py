"""Losses: the mean over the batch by default; reduction='sum' adds the per-example losses and
reduction='none' returns them, as in torch.nn.functional.

- softmax_cross_entropy is torch.nn.functional.cross_entropy with the class axis last: labels
  are class indices (shape logits.shape[:-1]) or probabilities (logits.shape); `weights` are
  class weights; with class indices the mean divides by the summed weight of the examples not
  ignored (NaN if all are), with probabilities by the number of examples.
- multiclass_hinge_loss is the multiclass SVM loss, sum_{j != y} max(0, s_j - s_y + margin)^p
  weighted by the label's class, averaged over the batch: torch's multi_margin_loss (same
  weight, margin, p and reduction) times the number of classes C, which torch divides by.

Each rule is written from one helper that gives every example's slope d loss_i / d scores_i, and
`_reduce` / `_share`, which apply the reduction alike to values and tangents and (transposed) to
cotangents.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from difprog import adapter
from difprog.errors import ArgumentError, DtypeError, LabelError, ShapeError
from difprog.gate import gate
from difprog.gates._util import check_real, is_int, unbroadcast
from difprog.gates.points import empty, empty_labels, labels, normal, positive
from difprog.gates.reductions import logsumexp
from difprog.gates.registry import register

__all__ = ["l2_penalty", "mse_loss", "multiclass_hinge_loss", "softmax_cross_entropy"]

REDUCTIONS = ("mean", "sum", "none")


def _reduce(per_example, reduction, weight=None):
    """The loss from per-example values (losses or their tangents): as they are ('none'), their
    sum ('sum'), or their mean ('mean'): their sum / `weight` when one is given, as torch."""
    if reduction == "none":
        return per_example
    if reduction == "sum":
        return jnp.sum(per_example)
    return jnp.mean(per_example) if weight is None else jnp.sum(per_example) / weight


def _share(g, reduction, shape, weight=None):
    """The transpose of `_reduce`: the cotangent of each per-example value (of `shape`) given
    the loss's cotangent g."""
    if reduction != "mean":
        return g
    return g / (math.prod(shape) if weight is None else weight)


def _mse_loss(pred, target, *, reduction="mean"):
    """mse = mean((pred - target)^2) (or the sum, or each); d/dpred = 2 (pred - target) / n =
    -d/dtarget, without the / n for 'sum' and 'none'."""
    diff = pred - target
    return _reduce(diff * diff, reduction)

def _mse_loss_backward(g, out, pred, target, *, reduction):
    diff = pred - target
    dpred = _share(g, reduction, diff.shape) * 2 * diff
    return unbroadcast(dpred, pred.shape), unbroadcast(-dpred, target.shape)

def _mse_loss_tangent(dpred, dtarget, out, pred, target, *, reduction):
    return _reduce(2 * (pred - target) * (dpred - dtarget), reduction)

def _check_mse(pred, target, reduction):
    _check_reduction("mse_loss", reduction)

def _mse_points(rng):
    return [((normal(rng, *a), normal(rng, *b)), kwargs) for a, b, kwargs in
            [((5,), (5,), {}), ((3, 4), (3, 4), {}), ((3, 4), (4,), {}),
             ((3, 4), (4,), {"reduction": "sum"}), ((2, 1, 3), (4, 1), {"reduction": "none"})]]

def _mse_zero_size():
    return [((empty(0), empty(0)), {}), ((empty(0, 3), empty(3)), {}),
            ((empty(0, 3), empty(3)), {"reduction": "sum"}),
            ((empty(2, 0), empty(1)), {"reduction": "none"})]

_BAD_REDUCTION = ("avg", "MEAN", None, 1, ("mean",), True)

mse_loss = register(gate(_mse_loss, backward=_mse_loss_backward, tangent=_mse_loss_tangent,
                         check=_check_mse),
                    points=_mse_points, zero_size=_mse_zero_size,
                    bad={"reduction": ("avg", "", None, 0, ("sum",), True)})


def _softmax_cross_entropy(logits, labels, weights=None, *, label_smoothing=0.0,
                           ignore_index=None, reduction="mean"):
    """ce_i = sum_c q_ic (logsumexp(s_i) - s_ic), q_i = w * ((1 - e) t_i + e / C) with t_i =
    onehot(y_i) or the probabilities given; d ce_i / d s_i = sum(q_i) softmax(s_i) - q_i."""
    lse = logsumexp.forward(logits, axis=-1)
    if _are_probabilities(labels):
        target = _ce_target(logits, labels, weights, label_smoothing, ignore_index)
        losses = jnp.sum(target * (lse[..., None] - logits), axis=-1)
    else:  # -log p_y by picking s_y: a -inf score elsewhere does not make 0 * inf = NaN
        counted, good = _ce_masks(logits, labels, ignore_index)
        safe = jnp.where(counted, labels, 0)
        losses = lse - jnp.take_along_axis(logits, safe[..., None], axis=-1)[..., 0]
        if weights is not None:
            losses = _label_weight(weights, safe, logits.dtype) * losses
        if label_smoothing:
            w = 1 if weights is None else weights.astype(logits.dtype)
            uniform = jnp.sum(w * (lse[..., None] - logits), axis=-1)
            losses = (1 - label_smoothing) * losses + label_smoothing / logits.shape[-1] * uniform
        losses = jnp.where(good, jnp.where(counted, losses, 0), jnp.nan)
    return _reduce(losses, reduction, _ce_weight(logits, labels, weights, ignore_index))

def _softmax_cross_entropy_backward(g, out, logits, labels, weights, *, label_smoothing,
                                    ignore_index, reduction):
    slope = _ce_slope(logits, labels, weights, label_smoothing, ignore_index)
    share = _share(g, reduction, logits.shape[:-1],
                   _ce_weight(logits, labels, weights, ignore_index))
    cotangent = jnp.expand_dims(share, -1) * slope
    if ignore_index is None:
        return (cotangent,)
    # An ignored row keeps its slope, 0 (NaN for a NaN score), even when every row is ignored
    # and the mean divides by 0: as torch and JAX's autodiff of the forward.
    return (jnp.where((labels != ignore_index)[..., None], cotangent, slope),)

def _softmax_cross_entropy_tangent(dlogits, out, logits, labels, weights, *, label_smoothing,
                                   ignore_index, reduction):
    slope = _ce_slope(logits, labels, weights, label_smoothing, ignore_index)
    return _reduce(jnp.sum(slope * dlogits, axis=-1), reduction,
                   _ce_weight(logits, labels, weights, ignore_index))

def _ce_slope(logits, labels, weights, label_smoothing, ignore_index):
    """sum(q_i) softmax(s_i) - q_i, the gradient of each example's loss; NaN rows for bad labels."""
    target = _ce_target(logits, labels, weights, label_smoothing, ignore_index)
    probs = jnp.exp(logits - logsumexp.forward(logits, axis=-1)[..., None])
    if _are_probabilities(labels) or weights is not None:
        slope = jnp.sum(target, axis=-1, keepdims=True) * probs - target
    elif ignore_index is None:  # sum(q_i) = 1: no need to add it up
        slope = probs - target
    else:  # sum(q_i) = 1, or 0 for an ignored example
        slope = (labels != ignore_index)[..., None] * probs - target
    if _are_probabilities(labels):
        return slope
    return _nan_rows(_ce_masks(logits, labels, ignore_index)[1], slope)

def _ce_target(logits, labels, weights, label_smoothing, ignore_index):
    """q_i = w * ((1 - e) t_i + e / C): the weight of -log softmax(s_i)_c in example i's loss,
    0 for an ignored example."""
    classes = logits.shape[-1]
    if _are_probabilities(labels):
        target = labels.astype(logits.dtype)
    else:
        target = jax.nn.one_hot(labels, classes, dtype=logits.dtype)
    if label_smoothing:
        target = (1 - label_smoothing) * target + label_smoothing / classes
    if weights is not None:
        target = target * weights.astype(logits.dtype)
    if ignore_index is not None:
        target = jnp.where((labels != ignore_index)[..., None], target, 0)
    return target

def _ce_weight(logits, labels, weights, ignore_index):
    """What the mean divides by, as torch: for class indices the summed class weight of the
    counted (not ignored) examples, their number without weights; for probabilities (None)
    the number of examples."""
    if _are_probabilities(labels) or (weights is None and ignore_index is None):
        return None
    counted, _ = _ce_masks(logits, labels, ignore_index)
    if weights is None:
        return jnp.sum(counted, dtype=logits.dtype)
    return jnp.sum(jnp.where(counted, _label_weight(weights, labels, logits.dtype), 0))

def _ce_masks(logits, labels, ignore_index):
    """(counted, good): the examples not ignored, and those whose label is ignored or in range."""
    in_range = _in_range(labels, logits)
    if ignore_index is None:
        return jnp.ones_like(in_range), in_range
    counted = labels != ignore_index
    return counted, in_range | ~counted

def _are_probabilities(labels):
    return jnp.issubdtype(labels.dtype, jnp.floating)

def _check_cross_entropy(logits, labels, weights, label_smoothing, ignore_index, reduction):
    name = "softmax_cross_entropy"
    _check_reduction(name, reduction)
    smoothing = check_real(name, "label_smoothing", label_smoothing)
    if not 0 <= smoothing <= 1:
        raise ArgumentError(f"gate {name!r}: argument 'label_smoothing' must lie in [0, 1], "
                            f"got {label_smoothing!r}")
    _check_ignore_index(name, ignore_index)
    if not _are_probabilities(labels):
        _check_labels(name, logits, labels, ignore_index, probabilities=True)
    elif labels.shape != logits.shape:
        error = DtypeError if labels.shape == logits.shape[:-1] else ShapeError
        raise error(f"gate {name!r}: labels must be integer class indices of shape "
                    f"{list(logits.shape[:-1])} or floating probabilities of the logits' shape "
                    f"{list(logits.shape)}, got {labels.dtype}{list(labels.shape)}; for indices "
                    f"use labels.astype(jnp.int32)")
    elif ignore_index is not None:
        raise ArgumentError(f"gate {name!r}: argument 'ignore_index' is {ignore_index!r}, but "
                            f"it applies to integer labels only, not to probabilities; give a "
                            f"row of zeros to drop an example")
    _check_weights(name, weights, logits)

def _probabilities(rng, *shape):
    """Probability targets: positive rows that sum to 1 along the last (class) axis."""
    weights = rng.uniform(0.1, 1.0, shape)
    return weights / weights.sum(-1, keepdims=True)

def _with_labels(scores):
    """Points of a loss of (scores, integer labels): two shapes, no options."""
    return lambda rng: [((scores(rng, 4, 5), labels(rng, 4, classes=5)), {}),
                        ((scores(rng, 2, 3, 4), labels(rng, 2, 3, classes=4)), {})]

def _cross_entropy_points(rng):
    """Integer labels first (as ever), then each option: probability targets, class weights,
    label smoothing, ignored labels (-100, and a valid class), every reduction."""
    ignoring = labels(rng, 3, 5, classes=6)
    ignoring[0, 1] = ignoring[2, 3] = -100
    return [*_with_labels(normal)(rng),
            ((normal(rng, 3, 5), _probabilities(rng, 3, 5)), {"label_smoothing": 0.1}),
            ((normal(rng, 2, 2, 4), _probabilities(rng, 2, 2, 4), positive(rng, 4)),
             {"reduction": "none", "label_smoothing": 0.2}),
            ((normal(rng, 3, 5, 6), ignoring, positive(rng, 6)),
             {"label_smoothing": 0.2, "ignore_index": -100, "reduction": "sum"}),
            ((normal(rng, 2, 3, 4), labels(rng, 2, 3, classes=4), positive(rng, 4)),
             {"ignore_index": 1, "label_smoothing": 0.1}),
            ((normal(rng, 5), np.int32(2)), {"reduction": "none", "label_smoothing": 1.0})]

def _cross_entropy_zero_size():
    z, ids = empty, empty_labels
    return [((z(0, 5), ids(0)), {}), ((z(2, 0, 3), ids(2, 0)), {}),
            ((z(0, 5), z(0, 5)), {"label_smoothing": 0.1}),
            ((z(0, 5), ids(0), z(5)), {"ignore_index": 1, "reduction": "sum"}),
            ((z(2, 0, 3), ids(2, 0), z(3)), {"reduction": "none"})]

softmax_cross_entropy = register(
    gate(_softmax_cross_entropy, backward=_softmax_cross_entropy_backward,
         tangent=_softmax_cross_entropy_tangent, nondiff=("labels", "weights"),
         check=_check_cross_entropy),
    points=_cross_entropy_points, zero_size=_cross_entropy_zero_size,
    bad={"label_smoothing": (-0.1, 1.5, "a", 1j, math.nan, math.inf, True, None),
         "ignore_index": (1.5, "a", True, 2**40, (1,)), "reduction": _BAD_REDUCTION})


def _multiclass_hinge_loss(scores, labels, margin=1.0, weights=None, *, p=1, reduction="mean"):
    """svm_i = w_y sum_{j != y} max(0, s_j - s_y + margin)^p (torch's multi_margin_loss is this
    / C); d/ds_j = w_y p max(0, .)^(p-1) for j != y, d/ds_y = -(the sum of those)."""
    violations = _margins(scores, labels, margin)
    hinge = jnp.where(violations <= 0, 0, violations)
    losses = jnp.sum(hinge if p == 1 else hinge * hinge, axis=-1)
    if weights is not None:
        losses = _label_weight(weights, labels, scores.dtype) * losses
    return _reduce(jnp.where(_in_range(labels, scores), losses, jnp.nan), reduction)

def _multiclass_hinge_loss_backward(g, out, scores, labels, weights, *, margin, p, reduction):
    share = _share(g, reduction, labels.shape)
    return (jnp.expand_dims(share, -1) * _hinge_slope(scores, labels, weights, margin, p),)

def _multiclass_hinge_loss_tangent(dscores, out, scores, labels, weights, *, margin, p,
                                   reduction):
    slope = _hinge_slope(scores, labels, weights, margin, p)
    return _reduce(jnp.sum(slope * dscores, axis=-1), reduction)

def _margins(scores, labels, margin):
    """s_j - s_y + margin for every j != y, and 0 at j = y."""
    correct = jnp.take_along_axis(scores, labels[..., None], axis=-1)
    is_label = jax.nn.one_hot(labels, scores.shape[-1], dtype=bool)
    return jnp.where(is_label, 0, scores - correct + margin)

def _put_label(values, labels, at_label):
    """`values` with each row's entry at its label replaced by `at_label` (one per row)."""
    at_label = jnp.broadcast_to(jnp.asarray(at_label, values.dtype), labels.shape)[..., None]
    return jnp.put_along_axis(values, labels[..., None], at_label, axis=-1, inplace=False)

def _hinge_slope(scores, labels, weights, margin, p):
    """The gradient of each example's loss; NaN rows for bad labels and for a NaN margin."""
    # One gather and two scatters of one entry per row, not masks of the label over the class
    # axis (the forward's `_margins`), which XLA:CPU runs three times slower.
    correct = jnp.take_along_axis(scores, labels[..., None], axis=-1, mode="fill")
    margins = scores - correct + margin  # margin at j = y: zeroed below
    active = margins > 0
    push = active.astype(scores.dtype) if p == 1 else 2 * jnp.where(active, margins, 0)
    push = jnp.where(jnp.isnan(margins), jnp.nan, push)  # so that a NaN row's sum is NaN
    if weights is not None:
        push = _label_weight(weights, labels, scores.dtype)[..., None] * push
    push = _put_label(push, labels, 0)
    total = jnp.sum(push, -1)
    slope = _put_label(push, labels, -total)
    return _nan_rows(_in_range(labels, scores) & ~jnp.isnan(total), slope)

def _check_hinge(scores, labels, weights, margin, p, reduction):
    name = "multiclass_hinge_loss"
    _check_reduction(name, reduction)
    check_real(name, "margin", margin)
    if not is_int(p):
        raise DtypeError(f"gate {name!r}: argument 'p' must be the int 1 or 2, got {p!r} "
                         f"({type(p).__name__})")
    if p not in (1, 2):
        raise ArgumentError(f"gate {name!r}: argument 'p' must be 1 or 2, got {p!r}")
    _check_labels(name, scores, labels)
    _check_weights(name, weights, scores)

def _hinge_scores(rng, *shape):
    """Scores 0.3 k + 0.05: every margin s_j - s_y + 1 stays >= 0.1 away from the kink at 0."""
    return rng.integers(-5, 6, shape) * 0.3 + 0.05

def _hinge_points(rng):
    """Integer labels first (as ever), then class weights, p = 2, a margin, every reduction."""
    return [*_with_labels(_hinge_scores)(rng),
            ((_hinge_scores(rng, 4, 5), labels(rng, 4, classes=5), 0.5, positive(rng, 5)),
             {"p": 2, "reduction": "sum"}),
            ((_hinge_scores(rng, 2, 3, 4), labels(rng, 2, 3, classes=4)),
             {"weights": positive(rng, 4), "reduction": "none"}),
            ((_hinge_scores(rng, 3, 6), labels(rng, 3, classes=6)), {"p": 2})]

def _hinge_zero_size():
    z, ids = empty, empty_labels
    return [((z(0, 5), ids(0)), {}), ((z(2, 0, 3), ids(2, 0)), {"margin": 0.5}),
            ((z(0, 5), ids(0)), {"weights": z(5), "p": 2, "reduction": "none"})]

multiclass_hinge_loss = register(
    gate(_multiclass_hinge_loss, backward=_multiclass_hinge_loss_backward,
         tangent=_multiclass_hinge_loss_tangent, nondiff=("labels", "weights"),
         check=_check_hinge),
    points=_hinge_points, zero_size=_hinge_zero_size,
    bad={"margin": ("a", 1j, math.nan, None, True), "p": (0, 3, -1, 1.0, "2", None, True),
         "reduction": _BAD_REDUCTION})


def _l2_penalty(tree):
    """l2 = sum of squares of every leaf of a pytree; d/dleaf = 2 leaf."""
    return jnp.asarray(sum((jnp.sum(leaf * leaf) for leaf in jax.tree.leaves(tree)), 0.0))

def _l2_penalty_backward(g, out, tree):
    return (jax.tree.map(lambda leaf: 2 * g * leaf, tree),)

def _l2_penalty_tangent(dtree, out, tree):
    terms = jax.tree.leaves(jax.tree.map(lambda leaf, d: 2 * jnp.sum(leaf * d), tree, dtree))
    return jnp.asarray(sum(terms, 0.0))

l2_penalty = register(
    gate(_l2_penalty, backward=_l2_penalty_backward, tangent=_l2_penalty_tangent,
         pytree_inputs=True),
    points=lambda rng: [((normal(rng, 3, 2),), {}),
                        (({"dense_0": {"w": normal(rng, 3, 2), "b": normal(rng, 2)},
                           "scale": normal(rng)},), {})],
    zero_size=lambda: [(({"w": empty(0, 3), "b": empty(2)},), {}), ((empty(0),), {})])


def _in_range(labels, logits):
    return (labels >= 0) & (labels < logits.shape[-1])

def _label_weight(weights, labels, dtype):
    """w_y, the class weight of each example's label (any weight for a label out of range,
    whose loss is NaN anyway)."""
    return jnp.take(weights.astype(dtype), labels, mode="clip")

def _nan_rows(good, slope):
    """The slope, with NaN in every row whose example is not `good` (a bad label, say): under
    jit, where labels cannot be checked, a bad label gives a NaN gradient, never a finite one."""
    return jnp.where(good[..., None], slope, jnp.nan)

_INT32 = (-2**31, 2**31 - 1)

def _check_reduction(name, reduction):
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        error = ArgumentError if isinstance(reduction, str) else DtypeError
        raise error(f"gate {name!r}: argument 'reduction' must be 'mean', 'sum' or 'none', got "
                    f"{reduction!r} ({type(reduction).__name__})")

def _check_ignore_index(name, ignore_index):
    if ignore_index is None:
        return
    if not is_int(ignore_index):
        raise DtypeError(f"gate {name!r}: argument 'ignore_index' must be an int label or None, "
                         f"got {ignore_index!r} ({type(ignore_index).__name__})")
    if not _INT32[0] <= ignore_index <= _INT32[1]:
        raise ArgumentError(f"gate {name!r}: argument 'ignore_index' must fit int32 "
                            f"[{_INT32[0]}, {_INT32[1]}], got {ignore_index!r}")

def _check_weights(name, weights, scores):
    if weights is None:
        return
    if not jnp.issubdtype(weights.dtype, jnp.floating):
        raise DtypeError(f"gate {name!r}: argument 'weights' must hold floating class weights, "
                         f"got dtype {weights.dtype}; use weights.astype(jnp.float32)")
    if scores.ndim == 0 or weights.shape != scores.shape[-1:]:
        raise ShapeError(f"gate {name!r}: argument 'weights'{list(weights.shape)} must hold one "
                         f"weight per class, shape {list(scores.shape[-1:])} for scores"
                         f"{list(scores.shape)}")

def _check_labels(name, logits, labels, ignore_index=None, probabilities=False):
    """Integer labels of the scores' shape without the class axis, in range (or ignore_index)
    when their values are known."""
    hint = " (or floating probabilities of the scores' shape)" if probabilities else ""
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise DtypeError(f"gate {name!r}: labels must be integer class indices{hint}, got dtype "
                         f"{labels.dtype}; use labels.astype(jnp.int32)")
    if logits.ndim == 0 or labels.shape != logits.shape[:-1]:
        raise ShapeError(f"gate {name!r}: labels{list(labels.shape)} must have the shape of "
                         f"the scores without their last (class) axis, scores{list(logits.shape)}"
                         f"{hint}")
    if not adapter.is_tracer(labels):
        values = np.asarray(labels)
        bad = (values < 0) | (values >= logits.shape[-1])
        if ignore_index is not None:
            bad &= values != ignore_index
        if bad.any():
            ignored = "" if ignore_index is None else f" (or be ignore_index={ignore_index})"
            raise LabelError(f"gate {name!r}: labels must lie in [0, {logits.shape[-1]}){ignored}"
                             f", got {values[bad][:5].tolist()}")
