"""Text data for language models: `data.text`, `text_batch` and `text_windows`. The split is
fixed and disjoint by file, the vocabulary and ids depend on the text only, windows are
reproducible from a key, and bad input gives one-line errors naming the path or argument."""

from __future__ import annotations

import shutil
import sys

import jax
import numpy as np
import pytest

import difprog
from difprog import data

FILES = {  # name -> text: several files, one in a sub-folder, one with a rare character
    "a.txt": "the quick brown fox jumps over the lazy dog\n" * 3,
    "b.txt": "pack my box with five dozen liquor jugs\n" * 3,
    "c.txt": "how vexingly quick daft zebras jump!\n" * 3,
    "d.txt": "sphinx of black quartz, judge my vow\n" * 3,
    "sub/e.txt": "the five boxing wizards jump quickly: \u00e9t\u00e9 \u2192 \u03bb\n" * 3,
    "f.txt": "jackdaws love my big sphinx of quartz\n" * 3,
}


def _write(root, files):
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8", newline="")
    return root


@pytest.fixture
def corpus_dir(tmp_path):
    root = _write(tmp_path / "corpus", FILES)
    (root / ".hidden").write_bytes(b"\xff\xfe not text")  # skipped: hidden
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_bytes(b"\xff")
    return root


def _one_line(error):
    message = str(error.value)
    assert "\n" not in message
    return message


def test_directory_splits_by_file_disjointly_and_deterministically(corpus_dir, tmp_path):
    corpus = data.text(corpus_dir, context=8, validation_fraction=0.3)
    assert corpus.train_files + corpus.validation_files != ()
    assert set(corpus.train_files).isdisjoint(corpus.validation_files)
    assert sorted(corpus.train_files + corpus.validation_files) == sorted(FILES)
    assert len(corpus.validation_files) == 2  # round(0.3 * 6)
    assert list(corpus.train_files) == sorted(corpus.train_files)
    # Contents: each split is its files concatenated in order of their paths.
    train_text = "".join(FILES[f] for f in corpus.train_files)
    assert corpus.decode(corpus.train) == train_text
    validation_text = "".join(FILES[f] for f in corpus.validation_files)
    known = set(corpus.vocab)
    assert corpus.decode(corpus.validation) == "".join(
        c if c in known else data.UNKNOWN for c in validation_text)
    # The same files written in another order elsewhere give the same record.
    other = _write(tmp_path / "elsewhere", dict(reversed(list(FILES.items()))))
    again = data.text(other, context=8, validation_fraction=0.3)
    assert again.train_files == corpus.train_files
    assert again.validation_files == corpus.validation_files
    assert again.vocab == corpus.vocab
    np.testing.assert_array_equal(again.train, corpus.train)
    np.testing.assert_array_equal(again.validation, corpus.validation)
    # Another file moves at most one file out of validation.
    shutil.copy(corpus_dir / "a.txt", corpus_dir / "g.txt")
    grown = data.text(corpus_dir, context=8, validation_fraction=0.3)
    assert len(set(corpus.validation_files) - set(grown.validation_files)) <= 1


def test_char_vocabulary_is_the_sorted_training_characters_after_unknown(corpus_dir):
    corpus = data.text(corpus_dir, context=8, validation_fraction=0.3)
    train_text = "".join(FILES[f] for f in corpus.train_files)
    assert corpus.vocab[0] == data.UNKNOWN
    assert list(corpus.vocab[1:]) == sorted(set(train_text))
    assert corpus.vocab_size == len(set(train_text)) + 1
    assert corpus.level == "char" and corpus.context == 8
    for ids in (corpus.train, corpus.validation):
        assert ids.dtype == np.int32 and ids.min() >= 0 and ids.max() < corpus.vocab_size
    np.testing.assert_array_equal(corpus.encode(train_text), corpus.train)


def test_encode_decode_round_trip_and_unknown_characters(corpus_dir):
    corpus = data.text(corpus_dir, context=8)
    sample = "the lazy dog\n"
    assert corpus.decode(corpus.encode(sample)) == sample
    ids = corpus.encode("fox\U0001F600")  # an emoji the training text lacks
    assert ids[-1] == 0 and (ids[:-1] > 0).all()
    assert corpus.decode(ids) == "fox" + data.UNKNOWN
    assert corpus.encode("").shape == (0,) and corpus.decode([]) == ""
    with pytest.raises(difprog.LabelError, match=r"decode.*\[0, "):
        corpus.decode([corpus.vocab_size])
    with pytest.raises(difprog.DtypeError, match="str"):
        corpus.encode(b"bytes")


def test_byte_level_reads_raw_bytes_and_takes_any_file(corpus_dir):
    (corpus_dir / "binary.dat").write_bytes(bytes(range(256)) * 2)
    corpus = data.text(corpus_dir, context=8, level="byte", validation_fraction=0.3)
    assert corpus.vocab_size == 256 and corpus.vocab[65] == b"A"
    raw = b"".join((corpus_dir / f).read_bytes() for f in corpus.train_files)
    np.testing.assert_array_equal(corpus.train, np.frombuffer(raw, np.uint8))
    assert corpus.train.dtype == np.int32
    sample = "\u00e9t\u00e9 \u2192 \u03bb"
    assert corpus.decode(corpus.encode(sample)) == sample
    assert corpus.decode([0xFF]) == data.UNKNOWN  # invalid UTF-8 decodes to the replacement


def test_a_single_file_splits_by_position(tmp_path):
    path = tmp_path / "one.txt"
    content = "".join(FILES.values())
    path.write_text(content, encoding="utf-8", newline="")
    corpus = data.text(path, context=16, validation_fraction=0.25)
    assert corpus.train_files == corpus.validation_files == ("one.txt",)
    assert len(corpus.validation) == round(0.25 * len(content))
    assert corpus.decode(corpus.train) == content[:len(corpus.train)]
    byte = data.text(str(path), context=16, level="byte", validation_fraction=0.25)
    np.testing.assert_array_equal(np.concatenate([byte.train, byte.validation]),
                                  np.frombuffer(content.encode(), np.uint8))


def test_text_batch_is_reproducible_and_targets_are_inputs_shifted(corpus_dir):
    corpus = data.text(corpus_dir, context=8)
    x, y = data.text_batch(jax.random.key(3), corpus, 5)
    assert x.shape == y.shape == (5, 8) and x.dtype == y.dtype == np.int32
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    x2, y2 = data.text_batch(jax.random.key(3), corpus, 5)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(data.text_batch(jax.random.key(4), corpus, 5)[0], x)
    train_text = corpus.decode(corpus.train)
    for row_x, row_y in zip(x, y):  # each window is a stretch of the training text
        assert corpus.decode(np.append(row_x, row_y[-1])) in train_text
    xv, _ = data.text_batch(jax.random.key(3), corpus, 5, split="validation")
    assert all(corpus.decode(row) in corpus.decode(corpus.validation) for row in xv)


def test_text_batch_reaches_both_ends_of_a_short_split(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("0123456789" * 2)
    corpus = data.text(path, context=4, validation_fraction=0.5)  # train "0123456789"
    x, y = data.text_batch(jax.random.key(0), corpus, 500)
    starts = {corpus.decode(row)[0] for row in x}
    assert starts == set("012345")  # every start whose window of 5 fits
    assert {corpus.decode(row)[-1] for row in y} == set("456789")


def test_text_windows_cover_the_split_in_order(corpus_dir):
    corpus = data.text(corpus_dir, context=7, validation_fraction=0.3)
    batches = list(data.text_windows(corpus, 4))
    count = data.num_text_windows(corpus)
    assert count == (len(corpus.validation) - 1) // 7
    assert [len(x) for x, _ in batches] == [4] * (count // 4) + ([count % 4] if count % 4 else [])
    inputs = np.concatenate([x for x, _ in batches]).ravel()
    targets = np.concatenate([y for _, y in batches]).ravel()
    np.testing.assert_array_equal(inputs, corpus.validation[:count * 7])
    np.testing.assert_array_equal(targets, corpus.validation[1:count * 7 + 1])
    assert len(corpus.validation) - 1 - count * 7 < 7  # at most a window's worth left out
    train = list(data.text_windows(corpus, 1000, split="train"))
    assert len(train) == 1 and len(train[0][0]) == data.num_text_windows(corpus, "train")


def test_missing_or_empty_sources_are_refused(tmp_path):
    with pytest.raises(difprog.ArgumentError, match=r"no file or directory '.*nowhere'") as e:
        data.text(tmp_path / "nowhere")
    _one_line(e)
    (tmp_path / "empty").mkdir()
    with pytest.raises(difprog.ArgumentError, match=r"'.*empty'.*no files matching") as e:
        data.text(tmp_path / "empty")
    _one_line(e)
    (tmp_path / "empty" / ".only_hidden").write_text("x" * 1000)
    with pytest.raises(difprog.ArgumentError, match="no files"):
        data.text(tmp_path / "empty")
    with pytest.raises(difprog.ArgumentError, match=r"no files matching '\*\.md'"):
        data.text(_write(tmp_path / "texts", FILES), pattern="*.md")
    for source in ("", 3, None):
        with pytest.raises(difprog.ArgumentError, match="source"):
            data.text(source)


def test_non_utf8_is_refused_at_char_level_naming_the_file(corpus_dir):
    (corpus_dir / "sub" / "latin1.txt").write_bytes("caf\u00e9 au lait\n".encode("latin-1") * 9)
    with pytest.raises(difprog.ArgumentError,
                       match=r"file 'sub/latin1.txt' is not UTF-8 \(byte 0xe9 at offset 3\).*"
                             r"level='byte'") as e:
        data.text(corpus_dir, context=8)
    _one_line(e)
    assert data.text(corpus_dir, context=8, level="byte").vocab_size == 256
    assert data.text(corpus_dir, context=8, pattern="*.txt").vocab_size > 1  # top level only


def test_text_shorter_than_a_window_is_refused(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("abcdefghij" * 2)
    with pytest.raises(difprog.ShapeError, match=r"validation split \(tiny.txt\) holds 2 "
                                                  r"characters, fewer than context \+ 1 = 9") as e:
        data.text(path, context=8)
    _one_line(e)
    with pytest.raises(difprog.ShapeError, match=r"train split .* holds 0 bytes"):
        (tmp_path / "empty.txt").write_text("")
        data.text(tmp_path / "empty.txt", level="byte", context=1)
    assert data.text(path, context=1).context == 1


@pytest.mark.parametrize("kwargs, match", [
    ({"context": 0}, "context must be a positive int, got 0"),
    ({"context": True}, "context must be a positive int, got True"),
    ({"context": 2.0}, "context must be a positive int, got 2.0"),
    ({"level": "word"}, r"text: level must be one of \['char', 'byte'\], got 'word'"),
    ({"validation_fraction": 0}, r"validation_fraction must be a finite number > 0 and < 1, got 0"),
    ({"validation_fraction": 1.0}, r"validation_fraction .* got 1.0"),
    ({"validation_fraction": "0.1"}, r"validation_fraction .* got '0.1'"),
    ({"pattern": ""}, "pattern must be a non-empty glob"),
    ({"pattern": "/etc/*"}, "pattern must be a glob inside the directory read"),
    ({"pattern": "../*.txt"}, "pattern must be a glob inside the directory read"),
])
def test_bad_arguments_give_one_line_errors(tmp_path, kwargs, match):
    with pytest.raises(difprog.ArgumentError, match=match) as e:
        data.text(_write(tmp_path, FILES), **kwargs)
    _one_line(e)


def test_bad_split_and_batch_size(corpus_dir):
    corpus = data.text(corpus_dir, context=8)
    with pytest.raises(difprog.ArgumentError, match=r"split must be one of .* got 'test'"):
        data.text_batch(jax.random.key(0), corpus, 2, split="test")
    with pytest.raises(difprog.ArgumentError, match=r"split must be one of"):
        next(data.text_windows(corpus, 2, split="valid"))
    for size in (0, -1, True, 2.0):
        with pytest.raises(difprog.ArgumentError,
                           match="text_batch: batch_size must be a positive int"):
            data.text_batch(jax.random.key(0), corpus, size)
        with pytest.raises(difprog.ArgumentError,
                           match="text_windows: batch_size must be a positive int"):
            next(data.text_windows(corpus, size))
    with pytest.raises(difprog.DtypeError, match="Text from difprog.data.text"):
        data.text_batch(jax.random.key(0), corpus.train, 2)
    for key, shown in ((3, "got 3"), (jax.random.split(jax.random.key(0)), "shape \\(2,\\)")):
        with pytest.raises(difprog.DtypeError, match=f"one JAX random key .*{shown}") as e:
            data.text_batch(key, corpus, 2)
        _one_line(e)
    assert data.text_batch(jax.random.PRNGKey(0), corpus, 2)[0].shape == (2, 8)  # a raw key
    with pytest.raises(difprog.DtypeError, match="ragged"):
        corpus.decode([[1, 2], [3]])


def test_python_stdlib_ships_with_python():
    corpus = data.text("python-stdlib", context=128)
    files = corpus.train_files + corpus.validation_files
    assert corpus.name == "python-stdlib"
    assert 140 <= len(files) <= 200 and all(f.endswith(".py") and "/" not in f for f in files)
    assert set(corpus.train_files).isdisjoint(corpus.validation_files)
    assert "os.py" in files and "this.py" in files
    chars = len(corpus.train) + len(corpus.validation)
    assert 4.0e6 < chars < 5.5e6
    assert 0.07 < len(corpus.validation) / chars < 0.2
    assert 120 < corpus.vocab_size < 400
    if sys.version_info[:2] == (3, 11):  # the numbers
        assert len(files) == 168 and round(chars / 1e6, 1) == 4.7
    counts = np.bincount(np.concatenate([corpus.train, corpus.validation]))
    p = counts[counts > 0] / chars
    assert abs(-np.sum(p * np.log(p)) - 3.15) < 0.1  # unigram entropy, nats per character
    assert corpus.decode(corpus.encode("def f(x):\n    return x\n")) == "def f(x):\n    return x\n"
