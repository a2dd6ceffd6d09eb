"""The settings of a language-model run (`LMConfig`), the model they build, and its optimiser:
AdamW with warm-up, cosine decay and clipping."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from difprog import arguments, models
from difprog.errors import (
    ArgumentError,
)
from difprog.placement import SHARDS

__all__ = ["LMConfig", "NORMS", "UNRECORDED", "build_model", "make_optimizer", "make_schedule"]

NORMS = ("layer", "rms")


@dataclasses.dataclass(frozen=True)
class LMConfig:
    """Everything that decides a language-model run's result (and two settings that do not).

    The defaults are the run the README reports: on 2 cores of an AMD EPYC it reaches a
    validation loss under 1.40 nats per character on python-stdlib in under 5 minutes of
    training (the README's table shows what each setting bought).

    Attributes:
        layers, heads, features: the transformer's depth, attention heads and width.
        context: tokens per training window (and the longest prompt the model sees at once).
        norm: 'layer' (LayerNorm, GPT-2) or 'rms' (RMSNorm).
        dropout: the rate of dropout in the blocks (0: none).
        steps: optimiser steps in all.
        batch_size: windows per step.
        learning_rate: the peak learning rate, reached after `warmup` steps of linear warm-up,
            then decayed along a cosine to `final_lr_fraction` of itself at the last step.
        warmup: steps of linear warm-up (a run of fewer steps warms up over all of them).
        final_lr_fraction: the learning rate at the last step, as a fraction of the peak.
        weight_decay: AdamW's decoupled weight decay, on the matmul weights only (leaves named
            `w`: not biases, norms or embeddings).
        clip: the largest global gradient norm; larger gradients are scaled down to it.
        eval_every: steps between two validation losses and checkpoints.
        seed: initialises params and draws the batches and dropout masks; 0 <= seed < 2**32.
        devices: local devices to shard each batch over (None: all); does not change the result
            beyond float rounding.
        shard: 'none' (params and AdamW state replicated on every device) or 'params' (split
            over the devices, FSDP-style; see `difprog.placement.Placement`); does not change the
            result beyond float rounding.
        keep_checkpoints: how many of the newest checkpoints to keep; does not change the result.
    """

    layers: int = 4
    heads: int = 4
    features: int = 64
    context: int = 128
    norm: str = "layer"
    dropout: float = 0.0
    steps: int = 2000
    batch_size: int = 32
    learning_rate: float = 1e-2
    warmup: int = 50
    final_lr_fraction: float = 0.1
    weight_decay: float = 0.1
    clip: float = 1.0
    eval_every: int = 500
    seed: int = 0
    devices: int | None = None
    shard: str = "none"
    keep_checkpoints: int = 3

    def __post_init__(self):
        """Refuses any setting out of range, naming it."""
        checked = {name: arguments.positive_int("LMConfig", name, getattr(self, name))
                   for name in ("layers", "heads", "features", "context", "steps", "batch_size",
                                "eval_every", "keep_checkpoints")}
        checked["warmup"] = arguments.integer("LMConfig", "warmup", self.warmup, minimum=0)
        checked["seed"] = arguments.integer("LMConfig", "seed", self.seed, minimum=0,
                                            maximum=2**32 - 1)
        checked["devices"] = arguments.optional_int("LMConfig", "devices", self.devices, minimum=1)
        for name, bounds in (("learning_rate", {"positive": True}),
                             ("weight_decay", {"minimum": 0}), ("clip", {"positive": True}),
                             ("dropout", {"minimum": 0, "maximum": 1, "below_maximum": True}),
                             ("final_lr_fraction", {"minimum": 0, "maximum": 1})):
            number = arguments.real("LMConfig", name, getattr(self, name), **bounds)
            if not isinstance(getattr(self, name), int | float):  # a NumPy number: as a float
                checked[name] = number
        arguments.one_of("LMConfig", "shard", self.shard, SHARDS)
        arguments.one_of("LMConfig", "norm", self.norm, NORMS)
        for name, value in checked.items():  # NumPy ints as ints: the config is recorded as JSON
            object.__setattr__(self, name, value)
        if self.features % self.heads:
            raise ArgumentError(f"LMConfig: heads={self.heads} must divide "
                                f"features={self.features}")

    def model_settings(self) -> dict:
        """The settings of `models.gpt` (less the vocabulary), as recorded in checkpoints."""
        return {name: getattr(self, name)
                for name in ("layers", "heads", "features", "context", "norm", "dropout")}


UNRECORDED = ("devices", "shard", "keep_checkpoints")  # free to change between a run and its resume


def build_model(settings: Mapping[str, Any], vocab: int):
    """`models.gpt` with the recorded `settings` (LMConfig.model_settings) and `vocab` ids."""
    settings = dict(settings)
    return models.gpt(vocab, settings.pop("layers"), settings.pop("heads"),
                      settings.pop("features"), settings.pop("context"), **settings)


def make_schedule(config: LMConfig) -> optax.Schedule:
    """The learning rate of step t (from 0): peak (t + 1) / warmup during the warm-up, then a
    cosine from the peak down to final_lr_fraction x peak at the last step."""
    peak, steps = config.learning_rate, config.steps
    warm, final = min(config.warmup, steps), config.learning_rate * config.final_lr_fraction

    def schedule(t):
        progress = jnp.clip((t - warm) / max(steps - 1 - warm, 1), 0.0, 1.0)
        decayed = final + (peak - final) * 0.5 * (1 + jnp.cos(jnp.pi * progress))
        return jnp.where(t < warm, peak * (t + 1) / max(warm, 1), decayed)

    return schedule


def make_optimizer(config: LMConfig) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW (b2 0.95) on `make_schedule`."""
    decay_mask = lambda params: jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[-1], "key", None) == "w", params)
    return optax.chain(optax.clip_by_global_norm(config.clip),
                       optax.adamw(make_schedule(config), b1=0.9, b2=0.95,
                                   weight_decay=config.weight_decay, mask=decay_mask))
