"""Data sets and minibatches: scikit-learn's handwritten digits by default, and text for language
models (`text`: any UTF-8 files, or the running Python's standard library); no download needed."""

from __future__ import annotations

import os
import sysconfig
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from difprog import arguments
from difprog.errors import ArgumentError, DtypeError, LabelError, ShapeError

__all__ = ["Dataset", "Text", "UNKNOWN", "batches", "digits", "load", "num_batches",
           "num_text_windows", "text", "text_batch", "text_windows", "validate"]


class Dataset(NamedTuple):
    """Images (N, H, W, C) in [0, 1] and integer labels, split into train and test."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int


def digits(test_fraction: float = 0.2, split_seed: int = 0) -> Dataset:
    """The 1,797 8x8 handwritten digits shipped with scikit-learn, as NHWC float32 in [0, 1].

    The train/test split is stratified (each digit in the same proportion in both) and fixed by
    `split_seed`, so every run and every machine sees the same test set.

    Example:
        >>> data = digits()
        >>> data.x_train.shape, data.x_test.shape
        ((1437, 8, 8, 1), (360, 8, 8, 1))
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    raw = load_digits()
    images = (raw.images / 16.0).astype(np.float32)[..., None]
    labels = raw.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, stratify=labels, random_state=split_seed)
    return Dataset("digits", x_train, y_train, x_test, y_test, num_classes=10)


def validate(data: Dataset) -> Dataset:
    """`data`, after checking it can be trained on: float images, labels in [0, num_classes).

    Labels outside that range (2**32 + 3 would wrap to 3 in JAX's int32) are refused here, before
    any compute, rather than turning into a wrong loss. (Non-finite images give a non-finite
    loss, which stops training with NonFiniteLossError naming the step.)
    """
    for split in ("train", "test"):
        x, y = np.asarray(getattr(data, f"x_{split}")), np.asarray(getattr(data, f"y_{split}"))
        where = f"data set {data.name!r}:"
        if len(x) != len(y):
            raise ShapeError(f"{where} x_{split} holds {len(x)} examples but y_{split} {len(y)}")
        if not np.issubdtype(x.dtype, np.floating):
            raise DtypeError(f"{where} x_{split} has dtype {x.dtype}; convert images to floats "
                             f"first, e.g. x.astype(np.float32) / 255")
        if not np.issubdtype(y.dtype, np.integer):
            raise DtypeError(f"{where} y_{split} must be integer class indices, got {y.dtype}")
        bad = (y < 0) | (y >= data.num_classes)
        if bad.any():
            raise LabelError(f"{where} y_{split} must lie in [0, {data.num_classes}), got "
                             f"{y[bad][:5].tolist()}")
    return data


DATASETS = {"digits": digits}


def load(name: str) -> Dataset:
    """A data set by name (see `DATASETS`)."""
    if name not in DATASETS:
        raise ArgumentError(f"unknown data set {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name]()


def num_batches(size: int, batch_size: int) -> int:
    """How many minibatches `batches` yields: the last one may be smaller, none is dropped."""
    return -(-size // batch_size)


def batches(key: jax.Array | None, x: np.ndarray, y: np.ndarray, batch_size: int
            ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Minibatches of (x, y) covering every example once, shuffled by `key` (None: in order).

    Every example appears exactly once; when the size is not a multiple of `batch_size` the last
    batch is smaller rather than dropped.

    Example:
        >>> sizes = [len(xb) for xb, _ in batches(jax.random.key(0), x, y, 64)]  # 1437 examples
        >>> sizes[-2:], sum(sizes)
        ([64, 29], 1437)
    """
    arguments.positive_int("batches", "batch_size", batch_size)
    if len(x) != len(y):
        raise ArgumentError(f"x and y must hold the same number of examples, got {len(x)} "
                            f"and {len(y)}")
    order = (np.arange(len(x)) if key is None
             else np.asarray(jax.random.permutation(key, len(x))))
    for start in range(0, len(x), batch_size):
        chosen = order[start:start + batch_size]
        yield x[chosen], y[chosen]


# --- Text: character- or byte-level language-model data --------------------------------------

UNKNOWN = "\ufffd"  # the character id 0 stands for at char level: any character not in training
LEVELS = ("char", "byte")
SPLITS = ("train", "validation")


class Text(NamedTuple):
    """A text corpus as token ids, split by file into train and validation.

    Token id i stands for `vocab[i]`: at char level vocab[0] is UNKNOWN ('\\ufffd', the id of
    every character the training split lacks) and the rest are the training split's characters,
    sorted by code point; at byte level vocab is the 256 single bytes. The same text therefore
    gives the same ids on every machine.

    Attributes:
        name: the built-in corpus name, or the path read.
        level: 'char' or 'byte'.
        context: the tokens a window feeds the model (a window holds context + 1).
        vocab: the token each id stands for (str at char level, bytes at byte level).
        train, validation: the token ids of each split, int32 arrays.
        train_files, validation_files: the files (relative to the directory read) of each split.
    """

    name: str
    level: str
    context: int
    vocab: tuple
    train: np.ndarray
    validation: np.ndarray
    train_files: tuple[str, ...]
    validation_files: tuple[str, ...]

    @property
    def vocab_size(self) -> int:
        """The number of distinct ids: the model's vocab."""
        return len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        """The int32 ids of `text` (a character the training split lacks gives id 0)."""
        if not isinstance(text, str):
            raise DtypeError(f"Text.encode takes a str, got {type(text).__name__}")
        if self.level == "byte":
            return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)
        return _char_ids(text, self.vocab)

    def decode(self, ids) -> str:
        """The text `ids` stand for; at byte level invalid UTF-8 decodes to '\\ufffd'."""
        try:
            ids = np.asarray(ids)
        except ValueError:
            raise DtypeError("Text.decode: ids must be an array of integers (rows of equal "
                             "length), got a ragged sequence") from None
        if ids.size and (not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0
                         or ids.max() >= self.vocab_size):
            raise LabelError(f"Text.decode: ids must be integers in [0, {self.vocab_size}), got "
                             f"{ids.ravel()[:5].tolist()}...")
        tokens = [self.vocab[i] for i in ids.ravel().tolist()]
        if self.level == "byte":
            return b"".join(tokens).decode("utf-8", errors="replace")
        return "".join(tokens)

    def split(self, split: str) -> np.ndarray:
        """The ids of split 'train' or 'validation'."""
        arguments.one_of(f"text {self.name!r}", "split", split, SPLITS)
        return self.train if split == "train" else self.validation


def _stdlib() -> tuple[str, Path, str]:
    """The top-level *.py files of the running Python's standard library: no download."""
    return "python-stdlib", Path(sysconfig.get_paths()["stdlib"]), "*.py"


TEXTS = {"python-stdlib": _stdlib}


def text(source: str | os.PathLike, *, context: int = 128, level: str = "char",
         validation_fraction: float = 0.1, pattern: str = "**/*") -> Text:
    """A UTF-8 text file, a directory of them, or a built-in corpus, as token ids.

    Files are read in order of their relative path (hidden files and folders, names starting
    with '.', are skipped), so the split and the ids are the same on every machine. A directory
    splits by file: the max(1, round(validation_fraction * n)) files whose relative paths have
    the smallest CRC-32 go to validation, the rest to training (so a file's split hardly depends
    on the others: adding a file moves at most one out of validation). A single file splits by
    position: its last validation_fraction is the validation split. Each split's files are
    concatenated as they are (a window may span two).

    At char level a file that is not valid UTF-8 is refused (ArgumentError naming it and the
    offset); read it with level='byte', or leave it out with `pattern`. Text is decoded
    without newline translation ('\\r\\n' stays two characters).

    Args:
        source: a path, or a built-in corpus: 'python-stdlib', the top-level *.py files of the
            running Python's standard library (168 files, 4.7 M characters under Python 3.11).
        context: tokens per model input; each split must hold at least context + 1.
        level: 'char' (a vocabulary of the training split's characters, plus id 0 for the
            unknown) or 'byte' (ids 0..255 of the UTF-8 bytes).
        validation_fraction: the share of files (or of a single file) kept for validation, in
            (0, 1).
        pattern: the glob of files read inside a directory (default every file, recursively).

    Example:
        >>> corpus = text("python-stdlib", context=64)
        >>> len(corpus.train_files), len(corpus.validation_files)  # Python 3.11
        (151, 17)
        >>> x, y = text_batch(jax.random.key(0), corpus, 8)  # (8, 64) each; y is x shifted by 1
        >>> corpus.decode(x[0])[:20]
    """
    _check_text_arguments(context, level, validation_fraction, pattern)
    name, root, pattern = _resolve(source, pattern)
    files = _files(name, root, pattern)
    if len(files) == 1:
        return _single_file(name, root, files[0], context, level, validation_fraction)
    count = min(len(files) - 1, max(1, round(validation_fraction * len(files))))
    held = set(sorted(files, key=lambda f: (zlib.crc32(f.encode("utf-8")), f))[:count])
    splits = {"train": [f for f in files if f not in held], "validation": sorted(held)}
    if level == "byte":
        raw = {s: b"".join(_read_bytes(name, root, f) for f in fs) for s, fs in splits.items()}
        ids = {s: np.frombuffer(b, np.uint8).astype(np.int32) for s, b in raw.items()}
        return _record(name, level, context, _BYTES, ids, splits)
    chars = {s: "".join(_read_text(name, root, f) for f in fs) for s, fs in splits.items()}
    vocab = _char_vocab(chars["train"])
    ids = {s: _char_ids(t, vocab) for s, t in chars.items()}
    return _record(name, level, context, vocab, ids, splits)


def text_batch(key: jax.Array, corpus: Text, batch_size: int, *, split: str = "train"
               ) -> tuple[np.ndarray, np.ndarray]:
    """`batch_size` windows of context + 1 tokens at random positions of `split`, drawn by `key`.

    The same key gives the same windows on every machine. Returns (inputs, targets), int32
    arrays of shape (batch_size, context): targets are the inputs shifted by one token.
    """
    ids, context = _split_ids(corpus, split), corpus.context
    arguments.positive_int("text_batch", "batch_size", batch_size)
    _check_key(key)
    starts = np.asarray(jax.random.randint(key, (batch_size,), 0, len(ids) - context))
    windows = ids[starts[:, None] + np.arange(context + 1)]
    return windows[:, :-1], windows[:, 1:]


def text_windows(corpus: Text, batch_size: int, *, split: str = "validation"
                 ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every window of `split` in order, as batches of (inputs, targets) for a whole-split loss.

    Window i holds tokens [i context, (i + 1) context], so the targets cover each token after
    the first exactly once, except the last (len - 1) % context tokens, fewer than a window;
    the last batch may be smaller (as `batches`).
    """
    ids, context = _split_ids(corpus, split), corpus.context
    arguments.positive_int("text_windows", "batch_size", batch_size)
    count = (len(ids) - 1) // context
    for first in range(0, count, batch_size):
        starts = np.arange(first, min(first + batch_size, count)) * context
        windows = ids[starts[:, None] + np.arange(context + 1)]
        yield windows[:, :-1], windows[:, 1:]


def num_text_windows(corpus: Text, split: str = "validation") -> int:
    """How many windows `text_windows` yields in all."""
    return (len(_split_ids(corpus, split)) - 1) // corpus.context


_BYTES = tuple(bytes([i]) for i in range(256))


def _check_text_arguments(context, level, validation_fraction, pattern):
    arguments.positive_int("text", "context", context)
    arguments.one_of("text", "level", level, LEVELS)
    arguments.real("text", "validation_fraction", validation_fraction, positive=True, maximum=1,
                   below_maximum=True)
    if not isinstance(pattern, str) or not pattern:
        raise ArgumentError(f"text: pattern must be a non-empty glob such as '*.txt', got "
                            f"{pattern!r}")
    if pattern.startswith(("/", "\\")) or ".." in pattern.replace("\\", "/").split("/"):
        raise ArgumentError(f"text: pattern must be a glob inside the directory read, such as "
                            f"'**/*.txt', got {pattern!r}; pass the directory as the source")


def _check_key(key):
    typed = getattr(key, "dtype", None) is not None and jax.dtypes.issubdtype(
        key.dtype, jax.dtypes.prng_key) and key.shape == ()
    raw = getattr(key, "dtype", None) == np.uint32 and getattr(key, "shape", None) == (2,)
    if not (typed or raw):
        shown = repr(key) if np.ndim(key) == 0 and not hasattr(key, "dtype") else \
            f"{type(key).__name__} of shape {np.shape(key)}"
        raise DtypeError(f"text_batch: key must be one JAX random key (jax.random.key(seed)), "
                         f"got {shown}")


def _split_ids(corpus: Text, split: str) -> np.ndarray:
    if not isinstance(corpus, Text):
        raise DtypeError(f"expected a Text from difprog.data.text, got {type(corpus).__name__}")
    return corpus.split(split)


def _resolve(source, pattern) -> tuple[str, Path, str]:
    """(name, root, pattern): a built-in corpus, or a path that must exist."""
    if isinstance(source, str) and source in TEXTS:
        return TEXTS[source]()
    if not isinstance(source, (str, os.PathLike)) or not str(source):
        raise ArgumentError(f"text: source must be a path or one of {sorted(TEXTS)}, got "
                            f"{source!r}")
    path = Path(source)
    if not path.exists():
        raise ArgumentError(f"text: no file or directory {str(path)!r}; pass a UTF-8 text file, "
                            f"a directory of them, or a built-in corpus: {sorted(TEXTS)}")
    return str(path), path, pattern


def _files(name: str, root: Path, pattern: str) -> list[str]:
    """The relative paths (POSIX form) of the files to read, sorted; hidden ones skipped."""
    if root.is_file():
        return [root.name]
    found = sorted(p.relative_to(root).as_posix() for p in root.glob(pattern) if p.is_file())
    files = [f for f in found if not any(part.startswith(".") for part in f.split("/"))]
    if not files:
        raise ArgumentError(f"text {name!r}: the directory holds no files matching "
                            f"{pattern!r} (hidden ones are skipped); add some text files")
    return files


def _path(root: Path, file: str) -> Path:
    return root if root.is_file() else root / file


def _read_bytes(name: str, root: Path, file: str) -> bytes:
    try:
        return _path(root, file).read_bytes()
    except OSError as error:
        raise ArgumentError(f"text {name!r}: cannot read {file!r}: {error.strerror}") from None


def _read_text(name: str, root: Path, file: str) -> str:
    raw = _read_bytes(name, root, file)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ArgumentError(
            f"text {name!r}: file {file!r} is not UTF-8 (byte {raw[error.start]:#04x} at offset "
            f"{error.start}); read it with level='byte', or leave it out with pattern") from None


def _single_file(name, root, file, context, level, validation_fraction) -> Text:
    """One file: its first (1 - validation_fraction) trains, the rest validates."""
    splits = {"train": [file], "validation": [file]}
    if level == "byte":
        ids = np.frombuffer(_read_bytes(name, root, file), np.uint8).astype(np.int32)
        cut = len(ids) - round(validation_fraction * len(ids))
        return _record(name, level, context, _BYTES, {"train": ids[:cut], "validation": ids[cut:]},
                       splits)
    chars = _read_text(name, root, file)
    cut = len(chars) - round(validation_fraction * len(chars))
    vocab = _char_vocab(chars[:cut])
    ids = {"train": _char_ids(chars[:cut], vocab), "validation": _char_ids(chars[cut:], vocab)}
    return _record(name, level, context, vocab, ids, splits)


def _record(name, level, context, vocab, ids, splits) -> Text:
    unit = "characters" if level == "char" else "bytes"
    for split in SPLITS:
        if len(ids[split]) < context + 1:
            files = splits[split]
            shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
            raise ShapeError(
                f"text {name!r}: the {split} split ({shown}) holds {len(ids[split])} {unit}, "
                f"fewer than context + 1 = {context + 1}; use a smaller context or more text")
    return Text(name, level, context, tuple(vocab), ids["train"], ids["validation"],
                tuple(splits["train"]), tuple(splits["validation"]))


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), np.uint32)


def _char_vocab(train: str) -> tuple[str, ...]:
    """UNKNOWN, then the training text's distinct characters sorted by code point."""
    points = np.unique(_code_points(train))
    return (UNKNOWN, *(chr(p) for p in points.tolist() if chr(p) != UNKNOWN))


def _char_ids(text: str, vocab: tuple[str, ...]) -> np.ndarray:
    """Each character's index in vocab, 0 (UNKNOWN) for a character vocab lacks."""
    known = np.array([ord(c) for c in vocab[1:]], np.uint32)
    points = _code_points(text)
    at = np.searchsorted(known, points)
    found = (at < len(known)) & (known[np.minimum(at, len(known) - 1)] == points) \
        if len(known) else np.zeros(len(points), bool)
    return np.where(found, at + 1, 0).astype(np.int32)
