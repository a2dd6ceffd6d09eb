"""Ctrl-C and SIGTERM (difprog.interrupts): `difprog train` interrupted while JAX is imported,
while XLA compiles and while epochs and checkpoints are written ends in one line with 130 (or
143), with no traceback, no lock file or temporary left, and every checkpoint whole; a file
being written is finished first; a SIGINT ignored by the parent (a background job) stays
ignored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from difprog import checkpoint

TRAIN = ["-m", "difprog.cli", "train", "--model", "cnn", "--epochs", "40"]


def _python(arguments: list[str], sigint=signal.SIG_DFL) -> list[str]:
    """The command running Python on `arguments` with SIGINT as `sigint` (kept across exec), as a
    shell gives it to a job in the foreground (SIG_DFL) or the background (SIG_IGN); no
    preexec_fn, which would fork this multithreaded process."""
    return [sys.executable, "-c", f"import os, signal, sys; signal.signal(signal.SIGINT, "
                                  f"signal.{sigint.name}); os.execv(sys.executable, "
                                  f"[sys.executable, *sys.argv[1:]])", *arguments]


def _interrupt(out, *, after: str | float, signal_number=signal.SIGINT):
    """Starts `difprog train`, sends the signal after `after` seconds or once a line of stderr
    holds `after`, and returns (exit status, stderr, seconds from signal to exit)."""
    process = subprocess.Popen(_python([*TRAIN, "--out", str(out)]), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    seen = []
    if isinstance(after, float):
        time.sleep(after)
    else:
        while after not in (line := process.stderr.readline()):
            assert line, f"the run ended before printing {after!r}: {''.join(seen)}"
            seen.append(line)
    sent = time.perf_counter()
    process.send_signal(signal_number)
    _, rest = process.communicate(timeout=120)
    return process.returncode, "".join(seen) + rest, time.perf_counter() - sent


def _assert_nothing_half_done(out):
    if not out.exists():
        return
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.startswith(".")], names  # no .lock, no temporaries
    for found in out.glob("checkpoint_*.safetensors"):
        checkpoint.load(found)  # checks the recorded sha256 of every array
    if (out / "metrics.json").exists():
        json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("after", [0.3, "compiling the train step", "epoch   2/40"])
def test_an_interrupted_run_ends_in_one_line_with_130_and_nothing_half_done(tmp_path, after):
    status, stderr, seconds = _interrupt(tmp_path / "run", after=after)
    last = stderr.strip().splitlines()[-1]
    assert status == 130, stderr
    assert last in ("difprog train: interrupted", "difprog: interrupted"), stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert seconds < 10, seconds
    _assert_nothing_half_done(tmp_path / "run")


def test_sigterm_ends_a_run_in_one_line_with_143(tmp_path):
    status, stderr, _ = _interrupt(tmp_path / "run", after="epoch   3/40",
                                   signal_number=signal.SIGTERM)
    assert status == 143 and stderr.strip().splitlines()[-1] == "difprog train: terminated"
    _assert_nothing_half_done(tmp_path / "run")


def _script(body: str, tmp_path, sigint=signal.SIG_DFL) -> subprocess.CompletedProcess:
    code = textwrap.dedent("""
        import os, signal, time, pathlib
        from difprog import files, interrupts
        target = pathlib.Path(os.environ["TARGET"])
    """) + textwrap.dedent(body)
    return subprocess.run(_python(["-c", code], sigint), capture_output=True, text=True,
                          timeout=60, env={**os.environ, "TARGET": str(tmp_path / "file")},
                          check=False)


def test_a_file_being_written_is_finished_before_the_interrupt_ends_the_process(tmp_path):
    done = _script("""
        with interrupts.handled("save"):
            with files.atomic(target) as temporary:
                temporary.write_bytes(b"first half ")
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.5)
                with open(temporary, "ab") as file:
                    file.write(b"second half")
            time.sleep(5)
            print("not interrupted")
    """, tmp_path)
    assert done.returncode == 130 and done.stderr == "difprog save: interrupted\n", done
    assert (tmp_path / "file").read_bytes() == b"first half second half"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_signal_while_the_watcher_starts_ends_the_process_in_one_line(tmp_path):
    """The window a loaded machine once hit: a Ctrl-C while `handled` starts its watcher thread,
    before the wake-up socket is in place. (Before the fix: a KeyboardInterrupt traceback.)"""
    done = _script("""
        start = interrupts._wake_socket
        def interrupted_start():
            os.kill(os.getpid(), signal.SIGINT)
            return start()
        interrupts._wake_socket = interrupted_start
        with interrupts.handled("early"):
            time.sleep(5)
            print("not interrupted")
    """, tmp_path)
    assert done.returncode == 130 and done.stderr == "difprog early: interrupted\n", done


def test_a_sigint_the_parent_ignores_stays_ignored_and_handlers_are_restored(tmp_path):
    done = _script("""
        before = signal.getsignal(signal.SIGTERM)
        with interrupts.handled("job"):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.3)
        assert signal.getsignal(signal.SIGTERM) == before
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        print("still running")
    """, tmp_path, sigint=signal.SIG_IGN)
    assert done.returncode == 0 and done.stdout == "still running\n", done


def test_the_last_words_stay_last_while_another_thread_writes_to_stderr():
    """interrupts.end: what a thread still running writes to fd 2 (as XLA's runtime logs a
    dead peer from C++) comes before the process's last line, never after it."""
    script = textwrap.dedent("""
        import os, threading, time
        from difprog import interrupts
        def chatter():
            while True:
                os.write(2, b"E1207 runtime: a peer died\\n")
                time.sleep(0.0005)
        threading.Thread(target=chatter, daemon=True).start()
        time.sleep(0.05)
        interrupts.end(3, "difprog train: process 0 of 2 stopped")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 3
    assert done.stderr.splitlines()[-1] == "difprog train: process 0 of 2 stopped"
    assert done.stderr.count("a peer died") > 1
