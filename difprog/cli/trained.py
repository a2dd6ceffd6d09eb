"""The trained image model a command reads from --checkpoint (a file or a run directory)."""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Callable

__all__ = ["checkpoint_file", "restore"]


def checkpoint_file(path: pathlib.Path) -> pathlib.Path:
    """--checkpoint as a file: itself, or the newest checkpoint of a run directory."""
    from difprog import checkpoint, shards
    from difprog.errors import CheckpointError

    if not path.exists():
        raise CheckpointError(f"no file or directory {str(path)!r}; point --checkpoint to a run's "
                              f"directory (such as difprog-demo) or one of its checkpoint files")
    if not path.is_dir() or shards.is_checkpoint(path):  # a file, or a sharded checkpoint
        return path
    found = checkpoint.latest(path)
    if found is None:
        raise CheckpointError(f"no checkpoint_<epoch>.safetensors in the directory {str(path)!r}; "
                              f"point --checkpoint to a run's directory or checkpoint file")
    return found


def restore(args: argparse.Namespace, check: Callable | None = None) -> tuple:
    """(model, params, dataset) of --checkpoint: the data set and model recorded in it (or
    --model); `check(dataset)` runs before the model is built."""
    from difprog import checkpoint, data, models
    from difprog.errors import CheckpointError
    from difprog.train import restore as load_params

    path = checkpoint_file(args.checkpoint)
    _, meta = checkpoint.load(path)
    if isinstance(meta.get("model"), dict) and meta["model"].get("name") == "gpt":
        raise CheckpointError(f"{str(path)!r} is a language model's checkpoint: difprog sample "
                              f"--checkpoint {str(path)!r} takes it; difprog {args.command} "
                              f"takes an image model's (difprog train --model cnn, mlp...)")
    dataset_name, model_name = _recorded(path, meta)
    dataset = data.load(dataset_name)
    if check is not None:
        check(dataset)
    model = models.build(args.model or model_name, dataset.num_classes)
    params, _ = load_params(path, model, dataset.x_train[:1])
    return model, params, dataset


def _recorded(path: pathlib.Path, meta: dict) -> tuple[str, str]:
    """(data set, model) an image checkpoint's metadata names (digits and cnn when it names
    none, as `fit` writes without extra_metrics); refused unless they are names."""
    from difprog.errors import CheckpointError
    from difprog.models import MODELS

    extra = meta.get("extra", {})
    dataset, model = ((extra.get("dataset", "digits"), extra.get("model", "cnn"))
                      if isinstance(extra, dict) else (None, None))
    if not isinstance(dataset, str) or not dataset or not isinstance(model, str) \
            or model not in MODELS:
        raise CheckpointError(f"{str(path)!r}: its metadata names the data set {dataset!r} and "
                              f"the model {model!r}, not a data set's name and one of "
                              f"{sorted(MODELS)}; give --model, or use a checkpoint difprog "
                              f"train wrote")
    return dataset, model
