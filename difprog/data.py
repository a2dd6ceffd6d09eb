"""Data sets and minibatches: scikit-learn's handwritten digits by default (no download), any
data set in MNIST's idx format (`idx`), Fashion-MNIST (`fashion_mnist`: found on this machine or
downloaded once, checked), and text for language models (`text`: any UTF-8 files, or the running
Python's standard library)."""

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
from difprog import idx as idx_format
from difprog.download import fetch
from difprog.errors import (
    ArgumentError,
    DataError,
    DownloadError,
    DtypeError,
    LabelError,
    ShapeError,
)

__all__ = ["DATASETS", "FASHION_MNIST_CLASSES", "FASHION_MNIST_PACKAGE", "FASHION_MNIST_URLS",
           "IDX_FILES", "Dataset", "Text", "UNKNOWN", "batches", "digits", "fashion_mnist", "idx",
           "load", "num_batches", "num_text_windows", "text", "text_batch", "text_windows",
           "validate"]


class Dataset(NamedTuple):
    """Images (N, H, W, C) in [0, 1] and integer labels, split into train and test; `classes`
    names each label (None: the labels' numbers)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    classes: tuple[str, ...] | None = None

    def class_name(self, label: int) -> str:
        """The name of `label` ('Ankle boot'), or its number when the data set names none."""
        return self.classes[label] if self.classes else str(label)


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


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
FASHION_MNIST_URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                      "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/"
                      "data/fashion/")
FASHION_MNIST_PACKAGE = "/usr/share/datasets/fashion-mnist"  # apt-get install dataset-fashion-mnist
_FASHION_MD5 = {  # of the published .gz files (the dataset's README)
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310"}
_FASHION_SHA256 = {  # of their contents, whoever compressed them (Debian recompresses)
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"}


def idx(directory: str | os.PathLike, *, name: str | None = None,
        classes: tuple[str, ...] | None = None, sha256: dict | None = None) -> Dataset:
    """A data set in MNIST's file format (MNIST, Fashion-MNIST, KMNIST): the four `IDX_FILES`
    of `directory`, each gzipped (`.gz`) or not, as NHWC float32 in [0, 1].

    Args:
        directory: where the files are.
        name: the data set's name (default: the directory's).
        classes: the name of each label (default: their numbers; num_classes = largest + 1).
        sha256: {file: SHA-256 of its contents} to check.

    Raises:
        DataError naming the file: a file missing, corrupt or inconsistent (labels that do not
            match the images, images that are not (N, H, W) or (N, H, W, C)).
    """
    directory = Path(directory)
    arrays = [idx_format.read(_idx_file(directory, stem), sha256=(sha256 or {}).get(stem))
              for stem in IDX_FILES]
    for (images, labels), split in ((arrays[:2], "train"), (arrays[2:], "t10k")):
        if images.ndim not in (3, 4) or labels.ndim != 1 or len(images) != len(labels) \
                or not len(images):
            raise DataError(f"{str(directory)!r}: {split} images of shape {images.shape} and "
                            f"labels of shape {labels.shape}; expected (N, H, W) images and N "
                            f"labels, N > 0")
    count = len(classes) if classes else int(max(arrays[1].max(), arrays[3].max())) + 1
    x_train, y_train, x_test, y_test = (
        _pixels(a) if a.ndim > 1 else a.astype(np.int32) for a in arrays)
    return validate(Dataset(name or directory.name, x_train, y_train, x_test, y_test, count,
                            tuple(classes) if classes else None))


def fashion_mnist(path: str | os.PathLike | None = None, *, download: bool = True,
                  urls: tuple[str, ...] = FASHION_MNIST_URLS, progress: bool = True) -> Dataset:
    """Zalando's Fashion-MNIST: 60,000 training and 10,000 test images, 28x28 grey, 10 garment
    classes (`FASHION_MNIST_CLASSES`), MIT licence; its contents checked by SHA-256.

    Looked for in this order: `path`; $DIFPROG_DATA (and its fashion-mnist/); the user cache
    (~/.cache/difprog/fashion-mnist, or $XDG_CACHE_HOME's); Debian's package directory
    (`apt-get install dataset-fashion-mnist`). Where none has it and `download`, the four files
    are downloaded from `urls` (the official location first) into the cache, each checked
    against its published MD5 before it is kept.

    Raises:
        DataError: `path` lacks the files, or a file is corrupt. DownloadError: not found and
        the download failed (offline: the message names the apt package and the address).
    """
    if path is not None:
        if not _has_idx(Path(path)):
            raise DataError(f"no Fashion-MNIST in {str(path)!r}: it must hold the four files "
                            f"{', '.join(f + '.gz' for f in IDX_FILES)}")
        found = Path(path)
    else:
        found = next((place for place in _fashion_places() if _has_idx(place)), None)
    if found is None:
        found = _download_fashion_mnist(urls, progress) if download else None
    if found is None:
        raise DataError(f"Fashion-MNIST is not on this machine (looked in "
                        f"{', '.join(str(p) for p in _fashion_places())}); install it with "
                        f"apt-get install dataset-fashion-mnist, or allow the download")
    return idx(found, name="fashion-mnist", classes=FASHION_MNIST_CLASSES,
               sha256=_FASHION_SHA256)


def _fashion_places() -> list[Path]:
    given = os.environ.get("DIFPROG_DATA")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "difprog"
    return [*([Path(given), Path(given) / "fashion-mnist"] if given else []),
            cache / "fashion-mnist", Path(FASHION_MNIST_PACKAGE)]


def _download_fashion_mnist(urls: tuple[str, ...], progress: bool) -> Path:
    """The four files downloaded into the user cache from the first of `urls` that serves them."""
    target, failures = _fashion_places()[-2], []
    for stem in IDX_FILES:
        if _idx_file(target, stem, must=False).exists():
            continue
        for url in urls:
            try:
                fetch(f"{url}{stem}.gz", target / f"{stem}.gz", md5=_FASHION_MD5[stem],
                      progress=progress)
                break
            except DownloadError as error:
                failures.append(str(error))
        else:
            raise DownloadError(f"Fashion-MNIST is not on this machine and could not be "
                                f"downloaded ({failures[0]}); install it with apt-get install "
                                f"dataset-fashion-mnist, or put the four files in {target}")
    return target


def _has_idx(directory: Path) -> bool:
    return all(_idx_file(directory, stem, must=False).exists() for stem in IDX_FILES)


def _idx_file(directory: Path, stem: str, must: bool = True) -> Path:
    """directory/stem.gz, or directory/stem when only that exists."""
    packed = directory / f"{stem}.gz"
    if packed.exists() or not (directory / stem).exists():
        if must and not packed.exists():
            raise DataError(f"{str(directory)!r} has no {stem}.gz (nor {stem}); an idx data set "
                            f"directory holds {', '.join(IDX_FILES)}, each gzipped or not")
        return packed
    return directory / stem


def _pixels(images: np.ndarray) -> np.ndarray:
    """Images as NHWC float32 in [0, 1] (uint8 divided by 255)."""
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    x = images.astype(np.float32) / scale
    return x[..., None] if x.ndim == 3 else x


DATASETS = {"digits": digits, "fashion-mnist": fashion_mnist}


def load(name: str | os.PathLike) -> Dataset:
    """A data set by name (see `DATASETS`), or a directory of idx files (see `idx`)."""
    if isinstance(name, str) and name in DATASETS:
        return DATASETS[name]()
    if isinstance(name, str | os.PathLike) and os.fspath(name) and Path(name).is_dir():
        return idx(name)
    raise ArgumentError(f"unknown data set {str(name)!r}; choose one of {sorted(DATASETS)}, "
                        f"or a directory of idx files ({', '.join(IDX_FILES)})")


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
    held = set(sorted(files, key=lambda f: (zlib.crc32(f.encode("utf-8", "surrogateescape")),
                                            f))[:count])
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
