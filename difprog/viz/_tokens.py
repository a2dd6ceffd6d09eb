"""Attribution of a language model's prediction to its input tokens: gradient x input on the
embeddings (Denil et al. 2014, "Extraction of salient sentences from labelled documents";
Shrikumar et al. 2016, "Not just a black box"), and its picture."""

from __future__ import annotations

import functools
import os
import pathlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from difprog import arguments, figures
from difprog.errors import ArgumentError, DtypeError
from difprog.layers import Layer


class TokenAttribution(NamedTuple):
    """Per-token scores of one predicted token, for each sequence of a batch.

    Attributes:
        scores: (batch, seq), or (seq,) for the ids of one sequence (seq,): sum over
            features of embedding x d logit / d embedding; tokens after `position` get exactly
            0 in a causal model.
        targets: (batch,), or (1,) for the ids of one sequence: the token whose logit is
            explained.
        position: the position (from 0) whose next-token prediction is explained.
    """

    scores: jax.Array
    targets: jax.Array
    position: int


def token_attribution(model: Layer, params: Any, ids: Any, position: int = -1,
                      target: int | Sequence[int] | None = None, *,
                      layer: str = "position") -> TokenAttribution:
    """Gradient x input of the logit of `target` at `position`, per input token.

    The input of a token is its vector at the output of `layer`: for `models.gpt`, 'position',
    the token embedding plus the position embedding, the residual stream entering the first
    block. The score of token t is sum_f e[t, f] * d logit / d e[t, f]: positive where the
    token's embedding pushes the prediction up, negative where it pushes it down.

    Args:
        model: a language model mapping ids (batch, seq) to logits (batch, seq, vocab).
        params: its params.
        ids: int token ids, (batch, seq) or (seq,).
        position: the position whose next-token logits are explained (negative counts from the
            end).
        target: the token id explained (one, or one per sequence); None: the predicted one.
        layer: the path of the layer whose output is the tokens' input vectors.

    Example:
        >>> lm = difprog.lm.load_lm("runs/gpt")
        >>> ids = lm.codec.encode("def __init__(self")
        >>> result = viz.token_attribution(lm.model, lm.params, ids)
        >>> viz.save_token_attribution(lm.codec, ids, result, "attribution.png")
    """
    ids = jnp.asarray(ids)
    if not jnp.issubdtype(ids.dtype, jnp.integer) or ids.ndim not in (1, 2) or not ids.size:
        raise DtypeError(f"token_attribution: ids must be non-empty int token ids of shape "
                         f"(batch, seq) or (seq,), got dtype {ids.dtype} and shape "
                         f"{tuple(ids.shape)}")
    batch = ids if ids.ndim == 2 else ids[None]
    seq = batch.shape[1]
    at = arguments.integer("token_attribution", "position", position, minimum=-seq,
                           maximum=seq - 1) % seq
    targets = None if target is None else jnp.broadcast_to(jnp.asarray(target), batch.shape[:1])
    scores, targets = _attribute(model, params, batch, targets, at, layer)
    return TokenAttribution(scores if ids.ndim == 2 else scores[0], targets, at)


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _attribute(model, params, ids, targets, at, layer):
    """(scores, targets): sum_f e * d(sum over the batch of the chosen logits)/de, one backward
    pass for the batch (sequences do not interact); targets None: the predicted tokens."""
    logits, captured, _ = model.run(params, ids, capture=(layer,))
    targets = jnp.argmax(logits[:, at], -1) if targets is None else targets
    embedded = captured[layer]

    def chosen(delta):
        logits = model.run(params, ids, perturb={layer: delta}).output
        return jnp.sum(jnp.take_along_axis(logits[:, at], targets[:, None], -1))

    gradient = jax.grad(chosen)(jnp.zeros_like(embedded))
    return jnp.sum(gradient * embedded, -1), targets


_SHOWN = {"\n": "⏎", " ": "·", "\t": "⇥"}


def save_token_attribution(codec: Any, ids: Any, result: TokenAttribution,
                           path: str | os.PathLike, *, title: str | None = None,
                           columns: int = 48) -> pathlib.Path:
    """A PNG of one sequence's tokens, each on a background coloured by its score (red pushes
    the prediction up, blue down, white nothing), with a colour bar; the explained position is
    outlined and the predicted token named in the title. The scale is symmetric about 0 and set
    by the other tokens, so the explained token itself, usually the largest, may saturate.

    Args:
        codec: what decodes ids to text: a `difprog.data.Text` (or `lm.load_lm(...).codec`).
        ids: the sequence's token ids, (seq,).
        result: `token_attribution` of that sequence (scores (seq,)).
        path: the PNG to write (atomically).
        title: the title (default: what is explained).
        columns: tokens per row; a newline token also ends its row.
    """
    import matplotlib.cm
    import matplotlib.colors
    import matplotlib.patches

    from difprog.viz._render import _save

    ids, scores = np.asarray(ids).reshape(-1), np.asarray(result.scores, np.float64)
    if scores.shape != ids.shape:
        raise ArgumentError(f"save_token_attribution: one sequence's scores, shape {ids.shape}, "
                            f"expected; got {scores.shape}")
    tokens = [codec.decode(ids[i:i + 1]) for i in range(len(ids))]
    cells = _layout(tokens, columns)
    rows, width = max(r for r, _ in cells) + 1, max(c for _, c in cells) + 1
    figure, axes = figures.subplots(figsize=(0.2 * max(width, 30) + 1.5, 0.3 * rows + 1.0))
    others = np.delete(scores, result.position) if len(scores) > 1 else scores
    limit = float(np.max(np.abs(others))) or float(np.max(np.abs(scores))) or 1.0
    norm, cmap = matplotlib.colors.Normalize(-limit, limit), matplotlib.colormaps["RdBu_r"]
    for i, ((row, column), token) in enumerate(zip(cells, tokens)):
        edge = "black" if i == result.position else "none"
        axes.add_patch(matplotlib.patches.Rectangle((column, -row - 1), 1, 1, edgecolor=edge,
                                                    facecolor=cmap(norm(scores[i])),
                                                    linewidth=1.5))
        axes.text(column + 0.5, -row - 0.5, _SHOWN.get(token, token), ha="center", va="center",
                  family="monospace", fontsize=9)
    axes.set(xlim=(0, max(width, 30)), ylim=(-rows, 0), aspect="equal")
    axes.axis("off")
    predicted = codec.decode(np.asarray(result.targets).reshape(-1)[:1])
    axes.set_title(title or f"gradient x input of the logit of {predicted!r} after position "
                            f"{result.position} (outlined)", fontsize=9)
    figure.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.8,
                    label="score", extend="both")
    figure.tight_layout()
    return _save(figure, path)


def _layout(tokens: list[str], columns: int) -> list[tuple[int, int]]:
    """(row, column) of each token: left to right, a new row after a newline or a full row."""
    cells, row, column = [], 0, 0
    for token in tokens:
        if column == columns:
            row, column = row + 1, 0
        cells.append((row, column))
        row, column = (row + 1, 0) if token == "\n" else (row, column + 1)
    return cells
