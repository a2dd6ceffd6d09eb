"""Embedding lookup: rows of a table picked by integer ids, linear in the table.

Out-of-range ids (below 0 or at least the number of rows) are a LabelError when the ids are
known (eagerly); under jit, where they cannot be checked, they give NaN rows in the value and
the tangent, and a NaN cotangent for the whole table: never a finite wrong number.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from difprog import adapter
from difprog.errors import DtypeError, LabelError, ShapeError
from difprog.gate import linear
from difprog.gates.points import empty, empty_labels, labels, normal
from difprog.gates.registry import register

__all__ = ["embedding"]


def _embedding(table, ids):
    """out[..., :] = table[ids[...], :]; d/dtable scatter-adds g into the rows ids name
    (repeated ids add up); ids have no derivative. Out-of-range ids give NaN rows."""
    vocab = table.shape[0]
    safe = jnp.where(_in_range(ids, vocab), ids, vocab)  # JAX would wrap negative ids
    return jnp.take(table, safe, axis=0, mode="fill", fill_value=jnp.nan)

def _embedding_backward(g, out, table, ids):
    vocab = table.shape[0]
    good = _in_range(ids, vocab)
    dtable = jnp.zeros_like(table).at[jnp.where(good, ids, vocab)].add(g, mode="drop")
    return (jnp.where(jnp.all(good), dtable, jnp.nan),)

def _in_range(ids, vocab):
    return (ids >= 0) & (ids < vocab)

def _check_embedding(table, ids):
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise DtypeError(f"gate 'embedding': ids must be integer row indices, got dtype "
                         f"{ids.dtype}; use ids.astype(jnp.int32)")
    if table.ndim != 2:
        raise ShapeError(f"gate 'embedding': table must have shape (vocab, features), got "
                         f"table{list(table.shape)}")
    if not adapter.is_tracer(ids):
        values = np.asarray(ids)
        bad = (values < 0) | (values >= table.shape[0])
        if bad.any():
            raise LabelError(f"gate 'embedding': ids must lie in [0, {table.shape[0]}) (the rows "
                             f"of table{list(table.shape)}), got {values[bad][:5].tolist()}")

def _embedding_points(rng):
    return [((normal(rng, 5, 3), np.array([[0, 2, 2], [4, 0, 1]], np.int32)), {}),
            ((normal(rng, 4, 2), np.int32(3)), {}),
            ((normal(rng, 6, 4), labels(rng, 2, 3, 2, classes=6)), {})]

def _embedding_zero_size():
    return [((empty(0, 3), empty_labels(0)), {}), ((empty(4, 0), empty_labels(2, 3)), {}),
            ((empty(4, 3), empty_labels(0, 2)), {})]

# Linear in the table (the ids get no derivative): the tangent is the forward of the tangent.
embedding = register(linear(_embedding, _embedding_backward, nondiff=("ids",),
                            check=_check_embedding),
                     points=_embedding_points, zero_size=_embedding_zero_size,
                     affine=("table",))
