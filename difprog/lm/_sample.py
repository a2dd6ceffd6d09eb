"""Sampling from a trained language model: `load_lm` reads a checkpoint back, `generate` draws
tokens in one jitted scan, `sample` turns a prompt into text."""

from __future__ import annotations

import functools
import os
import pathlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from difprog import arguments, checkpoint, shards
from difprog.data import LEVELS, Text
from difprog.errors import (
    ArgumentError,
    CheckpointError,
)
from difprog.lm._config import LMConfig, build_model, make_optimizer

__all__ = ["Checkpointed", "generate", "load_lm", "sample"]


class Checkpointed(NamedTuple):
    """A trained language model read back from a checkpoint: model, params and tokenizer."""

    model: Any
    params: Any
    codec: Text  # encodes and decodes only: its token arrays are empty
    context: int
    step: int


def load_lm(path: str | os.PathLike) -> Checkpointed:
    """The model, params and vocabulary of a checkpoint `fit_lm` wrote (a file, or a run
    directory: its newest checkpoint).

    The file's recorded settings are checked against its arrays before anything is built: no
    size may exceed the number of values the file holds, and the model's params and optimizer
    state must have the file's shapes (compared by shape alone, nothing allocated).
    """
    path = _checkpoint_file(path)
    arrays, meta = checkpoint.load(path)
    model_meta, text_meta = meta.get("model"), meta.get("text")
    if not isinstance(model_meta, dict) or model_meta.get("name") != "gpt" \
            or not isinstance(text_meta, dict):
        raise CheckpointError(f"{os.fspath(path)!r} is not a language-model checkpoint (written "
                              f"by difprog train --model gpt); its metadata has no gpt model")
    settings = {k: v for k, v in model_meta.items() if k not in ("name", "vocab")}
    _check_sizes(path, {**settings, "vocab": model_meta.get("vocab")}, arrays)
    try:
        config = LMConfig(**{**meta["config"], "devices": None})
        model = build_model(settings, model_meta["vocab"])
        name, level, vocab, step = _text_fields(text_meta, meta)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{os.fspath(path)!r}: its recorded settings cannot build a "
                              f"language model ({error!r})") from None
    ids = jax.ShapeDtypeStruct((1, config.context), jnp.int32)
    template = jax.eval_shape(lambda: _template(model, config, ids))
    tree, _ = checkpoint.load(path, template)
    empty = np.zeros(0, np.int32)
    codec = Text(name, level, config.context, vocab, empty, empty, (), ())
    return Checkpointed(model, tree["params"], codec, config.context, step)


def _text_fields(text: dict, meta: dict) -> tuple[str, str, tuple, int]:
    """(name, level, vocabulary, step) as the metadata records them, each of its type: a
    character vocabulary of single characters, a level of `LEVELS`, a step >= 0."""
    name, level, step = text["name"], text["level"], meta["step"]
    if not isinstance(name, str) or level not in LEVELS:
        raise ValueError(f"text name {name!r} and level {level!r}: a name, and one of {LEVELS}")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"step {step!r}: a count of steps")
    if level == "byte":
        return name, level, tuple(bytes([i]) for i in range(256)), step
    vocab = text["vocab"]
    if not isinstance(vocab, list) or not all(isinstance(c, str) and len(c) == 1
                                               for c in vocab):
        raise ValueError("a character vocabulary that is not a list of single characters")
    return name, level, tuple(vocab), step


def _template(model, config: LMConfig, ids) -> dict:
    params = model.init(jax.random.key(0), jnp.zeros(ids.shape, ids.dtype))
    return {"params": params, "opt_state": make_optimizer(config).init(params)}


def _check_sizes(path, sizes: dict, arrays: Any) -> None:
    """Refuses a recorded size (vocab, context, layers...) larger than the number of values the
    file holds: no model of that size fits in it, and building one would allocate it."""
    held = sum(int(np.size(a)) for a in jax.tree.leaves(arrays))
    for name, value in sizes.items():
        if isinstance(value, int) and not isinstance(value, bool) and value > held:
            raise CheckpointError(f"{os.fspath(path)!r} records {name}={value}, more than the "
                                  f"{held} values its arrays hold; the file's metadata does not "
                                  f"describe its arrays, so it is refused")


def generate(model, params, prompt_ids, length: int, context: int, *, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None,
             key: jax.Array) -> np.ndarray:
    """`length` token ids drawn one by one after `prompt_ids`, each from the model's next-token
    distribution at `temperature` (0: the most likely token) over the last `context` tokens,
    cut to its `top_k` most likely tokens, then to its nucleus of mass `top_p` (None: no cut)."""
    length, temperature, top_k, top_p = _settings("generate", length, temperature, top_k, top_p)
    context = arguments.positive_int("generate", "context", context)
    prompt = np.asarray(prompt_ids, np.int32)
    buffer = jnp.zeros(len(prompt) + length, jnp.int32).at[:len(prompt)].set(prompt)
    draw = _drawing(model, len(prompt), len(buffer), min(context, len(buffer)), temperature,
                    top_k, top_p)
    return np.asarray(draw(params, buffer, key))


def _settings(owner: str, length, temperature, top_k, top_p) -> tuple:
    """(length, temperature, top_k, top_p) checked, as Python numbers (so that they key the
    compiled generation); a top_p of 1 cuts nothing, so it is None."""
    top_p = None if top_p is None else arguments.real(owner, "top_p", top_p, positive=True,
                                                      maximum=1)
    return (arguments.positive_int(owner, "length", length),
            arguments.real(owner, "temperature", temperature, minimum=0),
            arguments.optional_int(owner, "top_k", top_k, minimum=1),
            None if top_p == 1 else top_p)


@functools.lru_cache(maxsize=16)
def _drawing(model, start: int, size: int, window: int, temperature: float,
             top_k: int | None, top_p: float | None):
    """`draw(params, buffer, key)`: tokens start..size-1 of `buffer` drawn one by one, as one
    jitted scan (compiled once per model object and setting, so seed after seed reuses it)."""

    def draw(params, buffer, key):
        def next_token(buffer, t):
            first = jnp.clip(t - window, 0, size - window)
            ids = jax.lax.dynamic_slice(buffer, (first,), (window,))
            logits = model.apply(params, ids[None])[0, t - 1 - first]
            token = _draw(logits, temperature, top_k, top_p, jax.random.fold_in(key, t))
            return buffer.at[t].set(token), token

        return jax.lax.scan(next_token, buffer, jnp.arange(start, size))[1]

    return jax.jit(draw)


def _draw(logits, temperature, top_k, top_p, key):
    """One token id from softmax(logits / temperature), computed in log space from the largest
    logit, so a temperature too small for float32 (1e-40) gives the most likely token(s), not
    NaN from inf - inf; within the `top_k` largest logits, then within the nucleus: the fewest
    most likely tokens whose probability (at this temperature) sums to at least `top_p`."""
    if temperature == 0:
        return jnp.argmax(logits).astype(jnp.int32)
    if top_k is not None:
        if top_k > logits.shape[-1]:
            raise ArgumentError(f"generate: top_k={top_k} is more than the model's "
                                f"{logits.shape[-1]} tokens")
        logits = jnp.where(logits < jax.lax.top_k(logits, top_k)[0][-1], -jnp.inf, logits)
    largest = jnp.max(logits)
    scaled = jnp.where(logits == largest, 0.0, (logits - largest) / temperature)
    if top_p is not None:
        scaled = jnp.where(_nucleus(scaled, top_p), scaled, -jnp.inf)
    return jax.random.categorical(key, scaled).astype(jnp.int32)


def _nucleus(scaled, top_p):
    """Which tokens are in the nucleus of mass `top_p`: those the more likely tokens before them
    leave short of it (the most likely always)."""
    order = jnp.argsort(-scaled)
    probabilities = jax.nn.softmax(scaled[order])
    before = jnp.cumsum(probabilities) - probabilities
    return jnp.zeros(scaled.shape, bool).at[order].set(before < top_p)


def sample(path: str | os.PathLike, prompt: str, *, length: int = 200, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, seed: int = 0) -> str:
    """The prompt and `length` tokens generated after it by the checkpoint at `path` (a file, or
    a run directory: its newest checkpoint); the same seed gives the same text.

    The default draws from the model's own distribution (temperature 1, nothing cut): with
    lower temperatures, top-k or top-p the default model's samples fall into loops (runs of
    hundreds of spaces) for some seeds, where its own distribution repeats no more than its
    training text (README, "Sampling"; `benchmarks/lm_sampling.py` measures it).

    Example:
        >>> print(sample("runs/gpt", "def ", length=100, seed=0))
    """
    length, temperature, top_k, top_p = _settings("sample", length, temperature, top_k, top_p)
    seed = arguments.integer("sample", "seed", seed, minimum=0, maximum=2**32 - 1)
    if not isinstance(prompt, str) or not prompt:
        raise ArgumentError(f"sample: the prompt must be a non-empty str, got {prompt!r}")
    lm = load_lm(path)
    top_k = arguments.optional_int("sample", "top_k", top_k, minimum=1,
                                   maximum=lm.codec.vocab_size)
    ids = lm.codec.encode(prompt)
    drawn = generate(lm.model, lm.params, ids, length, lm.context, temperature=temperature,
                     top_k=top_k, top_p=top_p, key=jax.random.key(seed))
    return prompt + lm.codec.decode(drawn)


def _checkpoint_file(path) -> pathlib.Path:
    """A checkpoint file, or the newest checkpoint of a run directory."""
    path = pathlib.Path(path)
    if path.is_dir() and not shards.is_checkpoint(path):  # a run directory
        found = checkpoint.latest(path)
        if found is None:
            raise CheckpointError(f"no checkpoint_<step>.safetensors in {str(path)!r}; point to a "
                                  f"language-model run's directory or checkpoint file")
        return found
    if not path.exists():
        raise CheckpointError(f"no file or directory {str(path)!r}; point to a language-model "
                              f"run's directory (difprog train --model gpt --out DIR) or one of "
                              f"its checkpoint files")
    return path
