"""`difprog` itself (difprog.cli.main): every failure as one line on stderr with a non-zero exit
status (2 for usage errors), never a traceback unless --debug asks for one; --version; the
defaults in --help."""

from __future__ import annotations

import pytest

import difprog
from difprog.cli import COMMANDS, main
from tests.conftest import fails_in_one_line


@pytest.mark.parametrize("argv, message", [
    (["train", "--seed", "18446744073709551616"], "argument --seed: expected an integer from 0 "
                                                  "to 4294967295, got 18446744073709551616"),
    (["train", "--seed", "-1"], "argument --seed"),
    (["demo", "--seed", "4294967296"], "argument --seed"),
    (["visualize", "--checkpoint", "ck", "--seed", "-3"], "argument --seed"),
    (["check", "add", "--seed", "-1"], "argument --seed"),
    (["train", "--devices", "99999999999999"], "argument --devices: expected an integer from 1"),
    (["bench", "modes", "--sizes", "0"], "argument --sizes: expected an integer from 1"),
    (["bench", "modes", "--width", "-4"], "argument --width"),
    (["train", "--out", ""], "argument --out: the output directory must have a name"),
    (["train", "--epochs", "0"], "argument --epochs"),
    (["train", "--lr", "nan"], "argument --lr: expected a finite positive number"),
    (["train", "--weight-decay", "-1"], "argument --weight-decay"),
    (["train", "--devices", "0"], "argument --devices"),
    (["visualize", "--checkpoint", "ck", "--steps", "0"], "argument --steps"),
    (["train", "--optimizer", "rmsprop"], "argument --optimizer: invalid choice"),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    ([], "the following arguments are required: COMMAND"),
])
def test_usage_errors_are_one_line_and_status_2(capsys, argv, message):
    err = fails_in_one_line(capsys, argv, 2)
    assert message in err and "--help" in err


def test_an_output_directory_that_is_a_file_is_a_usage_error(capsys, tmp_path):
    (tmp_path / "file").write_text("mine")
    for command in (["train"], ["demo"], ["bench", "modes"],
                    ["visualize", "--checkpoint", "ck"], ["explain", "x", "--at", "x=1"]):
        err = fails_in_one_line(capsys, [*command, "--out", str(tmp_path / "file")], 2)
        assert "is a file, not a directory" in err
    assert (tmp_path / "file").read_text() == "mine"


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(difprog.CheckpointError, match="no file or directory"):
        main(["--debug", "visualize", "--checkpoint", str(tmp_path / "no.st")])
    with pytest.raises(difprog.CheckpointError, match="no file or directory"):
        main(["visualize", "--checkpoint", str(tmp_path / "no.st"), "--debug"])


def test_version_and_defaults_in_help(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith(f"difprog {difprog.__version__} (jax ")
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("passes over the training set (default: 30; fashion", "(default: 32;",
                  "(default: adam;", "peak learning rate (default: 0.002; gpt: 0.01)",
                  "(default: cosine;", "(default: difprog-train)", "(default: 0.0;",
                  "optimiser steps (default: 2000)"):
        assert shown in text
    assert main(["visualize", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 512)" in text and "(default: fourier)" in text


def test_the_table_of_commands_is_what_help_lists_in_order(capsys):
    assert list(COMMANDS) == ["demo", "train", "sample", "visualize", "attribute", "attack",
                              "explain", "check", "bench"]
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    places = [text.find(f" {name} {module.HELP} ") for name, module in COMMANDS.items()]
    assert -1 not in places and places == sorted(places), places
    for name, module in COMMANDS.items():
        assert main([name, "--help"]) == 0
        shown = " ".join(capsys.readouterr().out.split())
        assert " ".join(module.__doc__.split()) in shown, name
