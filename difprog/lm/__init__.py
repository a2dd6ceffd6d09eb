"""Training and sampling a language model: step-based AdamW training of `models.gpt` on a text
corpus, with checkpoints, resume and determinism, and seeded sampling from a checkpoint.

Step t trains on the batch `text_batch(fold_in(data_key, t))` with dropout key
`fold_in(dropout_key, t)`, both derived from the seed, so a run resumed from any checkpoint ends
with the same bytes as one never interrupted. Every `eval_every` steps (and after the last) the
loss on the whole validation split is measured, a checkpoint `checkpoint_<step>.safetensors`
(params, optimiser state, the curve so far, the model's settings and the vocabulary) is written
atomically, and metrics.json is rewritten. The output directory is owned as `difprog.train.fit`
owns it (see `difprog.rundir`), and a resume with other settings is refused by name unless
allowed (see `difprog.provenance`).

Example:
    >>> corpus = data.text("python-stdlib", context=128)
    >>> result = fit_lm(corpus, LMConfig(steps=1000), out="runs/gpt")
    >>> result.history[-1]["val_loss"]           # nats per character
    >>> print(sample("runs/gpt", "def ", length=200, seed=0))  # temperature 1: see sample
"""

from difprog.lm._config import LMConfig, build_model, make_optimizer, make_schedule
from difprog.lm._fit import (
           LMResult,
           fit_lm,
           make_eval_step,
           make_train_step,
           validation_loss,
)
from difprog.lm._plot import plot_losses
from difprog.lm._repetition import Repetition, repetition, stretches
from difprog.lm._sample import Checkpointed, generate, load_lm, sample

__all__ = ["Checkpointed", "LMConfig", "LMResult", "Repetition", "build_model", "fit_lm",
           "generate", "load_lm", "make_eval_step", "make_optimizer", "make_schedule",
           "make_train_step", "plot_losses", "repetition", "sample", "stretches",
           "validation_loss"]
