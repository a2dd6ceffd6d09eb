"""Losses: scalar results, averaged over the batch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from difprog import adapter
from difprog.errors import DtypeError, LabelError, ShapeError
from difprog.gate import gate
from difprog.gates._util import check_real, unbroadcast
from difprog.gates.reductions import logsumexp


def _mse_loss(pred, target):
    """mse = mean((pred - target)^2); d/dpred = 2 (pred - target) / n = -d/dtarget."""
    diff = pred - target
    return jnp.mean(diff * diff)

def _mse_loss_backward(g, out, pred, target):
    diff = pred - target
    dpred = g * 2 * diff / diff.size
    return unbroadcast(dpred, pred.shape), unbroadcast(-dpred, target.shape)

def _mse_loss_tangent(dpred, dtarget, out, pred, target):
    return jnp.mean(2 * (pred - target) * (dpred - dtarget))

mse_loss = gate(_mse_loss, backward=_mse_loss_backward, tangent=_mse_loss_tangent)


def _softmax_cross_entropy(logits, labels):
    """ce = mean(logsumexp(s) - s_y); d/ds = (softmax(s) - onehot(y)) / n. Bad labels give NaN."""
    picked = jnp.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
    losses = logsumexp.forward(logits, axis=-1) - picked
    return jnp.mean(jnp.where(_in_range(labels, logits), losses, jnp.nan))

def _softmax_cross_entropy_backward(g, out, logits, labels):
    return (g / labels.size * _ce_slope(logits, labels),)

def _softmax_cross_entropy_tangent(dlogits, out, logits, labels):
    return jnp.mean(jnp.sum(_ce_slope(logits, labels) * dlogits, axis=-1))

def _ce_slope(logits, labels):
    """softmax(s) - onehot(y), the gradient of each example's loss; NaN rows for bad labels."""
    probs = jnp.exp(logits - logsumexp.forward(logits, axis=-1)[..., None])
    onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    return _nan_rows(_in_range(labels, logits), probs - onehot)

softmax_cross_entropy = gate(
    _softmax_cross_entropy, backward=_softmax_cross_entropy_backward,
    tangent=_softmax_cross_entropy_tangent, nondiff=("labels",),
    check=lambda logits, labels: _check_labels("softmax_cross_entropy", logits, labels))


def _multiclass_hinge_loss(scores, labels, margin=1.0):
    """svm = mean over the batch of sum_{j != y} max(0, s_j - s_y + margin);
    d/ds_j = [margin_j > 0] for j != y, d/ds_y = -(number of j with margin_j > 0)."""
    violations = _margins(scores, labels, margin)
    losses = jnp.sum(jnp.where(violations <= 0, 0, violations), axis=-1)
    return jnp.mean(jnp.where(_in_range(labels, scores), losses, jnp.nan))

def _multiclass_hinge_loss_backward(g, out, scores, labels, margin):
    return (g / labels.size * _hinge_slope(scores, labels, margin),)

def _multiclass_hinge_loss_tangent(dscores, out, scores, labels, margin):
    return jnp.mean(jnp.sum(_hinge_slope(scores, labels, margin) * dscores, axis=-1))

def _margins(scores, labels, margin):
    """s_j - s_y + margin for every j != y, and 0 at j = y."""
    correct = jnp.take_along_axis(scores, labels[..., None], axis=-1)
    is_label = jax.nn.one_hot(labels, scores.shape[-1], dtype=bool)
    return jnp.where(is_label, 0, scores - correct + margin)

def _hinge_slope(scores, labels, margin):
    """The gradient of each example's loss; NaN rows for bad labels and for a NaN margin."""
    margins = _margins(scores, labels, margin)
    active = (margins > 0).astype(scores.dtype)
    is_label = jax.nn.one_hot(labels, scores.shape[-1], dtype=scores.dtype)
    slope = active - is_label * jnp.sum(active, -1, keepdims=True)
    return _nan_rows(_in_range(labels, scores) & ~jnp.any(jnp.isnan(margins), -1), slope)

def _check_hinge(scores, labels, margin):
    _check_labels("multiclass_hinge_loss", scores, labels)
    check_real("multiclass_hinge_loss", "margin", margin)

multiclass_hinge_loss = gate(
    _multiclass_hinge_loss, backward=_multiclass_hinge_loss_backward,
    tangent=_multiclass_hinge_loss_tangent, nondiff=("labels",), check=_check_hinge)


def _l2_penalty(tree):
    """l2 = sum of squares of every leaf of a pytree; d/dleaf = 2 leaf."""
    return jnp.asarray(sum((jnp.sum(leaf * leaf) for leaf in jax.tree.leaves(tree)), 0.0))

def _l2_penalty_backward(g, out, tree):
    return (jax.tree.map(lambda leaf: 2 * g * leaf, tree),)

def _l2_penalty_tangent(dtree, out, tree):
    terms = jax.tree.leaves(jax.tree.map(lambda leaf, d: 2 * jnp.sum(leaf * d), tree, dtree))
    return jnp.asarray(sum(terms, 0.0))

l2_penalty = gate(_l2_penalty, backward=_l2_penalty_backward, tangent=_l2_penalty_tangent,
                  pytree_inputs=True)


def _in_range(labels, logits):
    return (labels >= 0) & (labels < logits.shape[-1])

def _nan_rows(good, slope):
    """The slope, with NaN in every row whose example is not `good` (a bad label, say): under
    jit, where labels cannot be checked, a bad label gives a NaN gradient, never a finite one."""
    return jnp.where(good[..., None], slope, jnp.nan)

def _check_labels(name, logits, labels):
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise DtypeError(f"gate {name!r}: labels must be integer class indices, got dtype "
                         f"{labels.dtype}; use labels.astype(jnp.int32)")
    if logits.ndim == 0 or labels.shape != logits.shape[:-1]:
        raise ShapeError(f"gate {name!r}: labels{list(labels.shape)} must have the shape of "
                         f"the scores without their last (class) axis, scores{list(logits.shape)}")
    if not adapter.is_tracer(labels):
        values = np.asarray(labels)
        bad = (values < 0) | (values >= logits.shape[-1])
        if bad.any():
            raise LabelError(f"gate {name!r}: labels must lie in [0, {logits.shape[-1]}), got "
                             f"{values[bad][:5].tolist()}")
