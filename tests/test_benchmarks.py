"""The benchmark scripts run end to end on tiny shapes."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_gates_vs_native_smoke():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gates_vs_native.py"),
         "--steps", "2", "--round", "1", "--batch", "4", "--hidden", "8"],
        capture_output=True, text=True, timeout=300, check=True)
    assert "| difprog / native |" in result.stdout
    assert "OK at 1e-5" in result.stdout


def test_attention_smoke():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "attention.py"), "--seqs", "16", "40",
         "--batch", "1", "--heads", "2", "--head-dim", "8", "--rounds", "2"],
        capture_output=True, text=True, timeout=300, check=True)
    assert "| 40 |" in result.stdout and "difprog / plain time" in result.stdout
    assert "gradients agree" in result.stdout


def test_grad_cost_and_remat_smoke():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "grad_cost_and_remat.py"), "--hidden", "16",
         "--batch", "4", "--layers", "4", "--width", "8", "--remat-batch", "4", "--repeats", "2"],
        capture_output=True, text=True, timeout=300, check=True)
    assert "| difprog |" in result.stdout and "grad / forward" in result.stdout
    for variant in ("repeat (scan), no remat", "repeat, remat='sqrt'", "serial, remat='sqrt'"):
        assert f"| {variant} |" in result.stdout


def test_bench_modes_writes_table_json_and_png(tmp_path, capsys):
    import json

    from difprog.cli import main

    assert main(["bench", "modes", "--out", str(tmp_path), "--sizes", "1", "32",
                 "--width", "8", "--repeats", "2"]) == 0
    rows = json.loads((tmp_path / "modes.json").read_text())
    assert [(r["n"], r["m"]) for r in rows] == [(1, 1), (1, 32), (32, 1), (32, 32)]
    assert all(r["agree"] and r["forward_seconds"] > 0 for r in rows)
    table = (tmp_path / "modes.md").read_text()
    assert "| 32 | 1 |" in table and "jacfwd / jacrev" in table
    assert (tmp_path / "modes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote modes.md" in capsys.readouterr().out


def test_framework_benchmark_smoke_writes_every_row(tmp_path):
    from benchmarks.frameworks import FRAMEWORKS, available

    result = subprocess.run([sys.executable, "-m", "benchmarks.run", "--out", str(tmp_path),
                             "--tiny"], capture_output=True, text=True, timeout=600,
                            check=True, cwd=ROOT)
    installed = [name for name in FRAMEWORKS if available(name)]
    assert {"difprog", "plain JAX"} <= set(installed)
    table = (tmp_path / "results.md").read_text()
    report = json.loads((tmp_path / "results.json").read_text())
    assert len(report["results"]) == 3 and any(m.startswith("GPT ") for m in report["results"])
    for model, rows in report["results"].items():
        assert list(rows) == installed
        for name, row in rows.items():
            assert f"| {model} | {name} |" in table
            assert row["ms_per_step"] > 0 and row["forward_ms"] > 0 and row["compile_seconds"] > 0
            assert row["ratio_to_jax"] > 0 and row["gflops"] > 0
            if name in ("difprog", "plain JAX"):
                assert row["temp_bytes"] > 0  # XLA's temporary memory of the compiled step
    assert sorted(report["skipped"]) == sorted(set(FRAMEWORKS) - set(installed))
    assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote results.md" in result.stdout


def test_xla_cpu_runtime_smoke():
    result = subprocess.run([sys.executable, "-m", "benchmarks.xla_cpu_runtime", "--batch", "2",
                             "--repeats", "2"], capture_output=True, text=True, timeout=300,
                            check=True, cwd=ROOT)
    rows = {cells[0].strip(): cells[1:] for cells in
            (line.split("|")[1:-1] for line in result.stdout.splitlines()
             if line.startswith("| ") and not line.startswith("| program"))}
    assert {"XLA:CPU conv, output written", "XLA:CPU conv, summed",
            "XLA:CPU conv -> relu -> 2x2 max pool", "difprog CNN step",
            "plain JAX CNN step"} <= set(rows)
    for cells in rows.values():
        assert float(cells[0]) > 0 and float(cells[1]) > 0  # ms and cores busy were measured
    assert float(rows["difprog CNN step"][4]) > 0  # XLA's temp MiB


def test_lm_sampling_smoke(tmp_path):
    from difprog import data, lm

    text = tmp_path / "code.py"
    text.write_text("def add(a, b):\n    return a + b\n\n\n" * 40, encoding="utf-8")
    config = lm.LMConfig(layers=1, heads=1, features=8, context=8, steps=2, eval_every=2)
    lm.fit_lm(data.text(text, context=8), config, out=tmp_path / "run", progress=False)
    figures = tmp_path / "figures.json"
    result = subprocess.run([sys.executable, "-m", "benchmarks.lm_sampling", str(tmp_path / "run"),
                             "--seeds", "3", "--length", "20", "--settings", "t=1", "t=0.5,p=0.9",
                             "--json", str(figures)], capture_output=True, text=True,
                            timeout=300, check=True, cwd=ROOT)
    measured, corpus = json.loads(figures.read_text()), data.text(text, context=8)
    assert list(measured["rows"]) == ["validation text", "t=1", "t=0.5,p=0.9"]
    reference = [lm.repetition(part) for part in
                 lm.stretches(corpus.decode(corpus.validation), 20, 3)]
    assert measured["rows"]["validation text"]["runs"] == [r.longest_run for r in reference]
    assert measured["rows"]["validation text"]["distinct"] == [r.distinct for r in reference]
    for name, row in measured["rows"].items():
        assert f"| {name} | " in result.stdout
        assert len(row["runs"]) == len(row["distinct"]) == 3
    assert measured["config"]["features"] == 8 and measured["step"] == 2


def test_lm_scaling_smoke():
    result = subprocess.run([sys.executable, "-m", "benchmarks.lm_scaling", "--sizes", "1x16x2x8",
                             "--batch", "2", "--repeats", "2"], capture_output=True, text=True,
                            timeout=300, check=True, cwd=ROOT)
    row = next(line for line in result.stdout.splitlines() if line.startswith("| 1x16x2x8 |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert int(cells[1].replace(",", "")) > 0 and float(cells[2]) > 0  # params, ms per step


def test_sharding_smoke():
    result = subprocess.run([sys.executable, "-m", "benchmarks.sharding", "--tiny"],
                            capture_output=True, text=True, timeout=300, check=True, cwd=ROOT)
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in result.stdout.splitlines()
            if line.startswith("| MLP")]
    held = {(r[1], r[2]): float(r[3]) for r in rows if len(r) == 8}
    assert held[("4", "sharded")] < 0.3 * held[("4", "replicated")]  # about a quarter
    assert held[("1", "sharded")] == held[("1", "replicated")]
    per_process = {r[1]: (float(r[3]), float(r[4]), float(r[6].rstrip("x")))
                   for r in rows if len(r) == 7}  # processes: (per process, per device, time)
    assert abs(per_process["2"][0] - per_process["1"][0] / 2) <= 0.01  # each process: half
    assert per_process["2"][1] == per_process["1"][1] and per_process["1"][2] == 1.0


def test_conv_paths_smoke():
    result = subprocess.run([sys.executable, "-m", "benchmarks.conv_paths", "--rounds", "1",
                             "--only", "r18-64 layer4 down"], capture_output=True, text=True,
                            timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| r18-64")]
    assert [row.split("|")[5].strip() for row in rows] == ["forward", "input_grad", "weight_grad"]
    assert all(float(cell.strip(" *")) > 0 for row in rows for cell in row.split("|")[6:9])
    assert "rule slower than xla beyond the slack at:" in result.stdout


def test_resnet_smoke():
    result = subprocess.run([sys.executable, "-m", "benchmarks.resnet", "--sizes", "32:2",
                             "--modes", "eval", "--rounds", "1", "--torch-threads", "",
                             "--blocks", "layer4.1"],
                            capture_output=True, text=True, timeout=600, check=True, cwd=ROOT)
    assert "| **whole step** |" in result.stdout and "| layer4.1 (forward + backward) |" in \
        result.stdout
    agreement = result.stdout.split("largest gradient difference")[1]
    difference = float(agreement.split(":")[1].split()[0])
    # difprog and plain JAX compute the same step (eval mode: batch statistics over the two
    # values per channel of a 1x1 map would amplify float32 rounding)
    assert difference < 1e-3


def test_fashion_mnist_benchmark_smoke(tmp_path):
    import pytest

    from difprog import data
    from difprog.errors import DataError

    try:
        data.fashion_mnist(download=False)
    except DataError:
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    result = subprocess.run([sys.executable, "-m", "benchmarks.fashion_mnist", "--tiny",
                             "--models", "linear", "--out", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, check=True)
    assert "| difprog linear | 1 |" in result.stdout and "(public table)" in result.stdout
    [row] = json.loads((tmp_path / "results.json").read_text())
    assert 0.5 < row["test_accuracy"] <= 1 and len(row["per_epoch"]) == 1


def test_fashion_mnist_benchmark_keeps_the_other_models_rows(tmp_path):
    from benchmarks.fashion_mnist import record

    record(tmp_path / "results.json", [{"model": "cnn", "test_accuracy": 0.9}])
    record(tmp_path / "results.json", [{"model": "resnet", "test_accuracy": 0.93}])
    record(tmp_path / "results.json", [{"model": "cnn", "test_accuracy": 0.91}])
    rows = json.loads((tmp_path / "results.json").read_text())
    assert rows == [{"model": "resnet", "test_accuracy": 0.93},
                    {"model": "cnn", "test_accuracy": 0.91}]


def test_class_visualization_and_diversity_benchmarks_smoke(tmp_path):
    from difprog.cli import main

    assert main(["train", "--epochs", "1", "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    result = subprocess.run([sys.executable, "-m", "benchmarks.class_visualization",
                             "--checkpoint", str(tmp_path / "run"), "--seeds", "0", "--steps",
                             "8", "--out", str(tmp_path / "classes")], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, check=True)
    assert "| seed | logistic regression | mlp |" in result.stdout
    [row] = json.loads((tmp_path / "classes" / "class_visualization.json").read_text())
    assert row["seed"] == 0 and 0 <= row["mlp"] <= 10 and 0 <= row["own_lowest"] <= 1
    result = subprocess.run([sys.executable, "-m", "benchmarks.diversity", "--checkpoint",
                             str(tmp_path / "run"), "--layer", "max_pool2d_0", "--channels", "1",
                             "--steps", "4", "--out", str(tmp_path / "diversity.png")], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, check=True)
    assert "| max_pool2d_0:1 | 0 |" in result.stdout
    assert "| max_pool2d_0:1 | 0.5 |" in result.stdout
    assert (tmp_path / "diversity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_adversarial_benchmark_smoke(tmp_path, linear_run):
    result = subprocess.run([sys.executable, "-m", "benchmarks.adversarial", "--tiny", "--out",
                             str(tmp_path), "--clean-checkpoint", str(linear_run)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, check=True)
    assert "| clean | (loaded) |" in result.stdout
    assert "| PGD eps 0.1, 7 steps |" in result.stdout
    record = json.loads((tmp_path / "adversarial.json").read_text())
    assert (record["model"], record["data"]) == ("linear", "digits")  # the checkpoint's
    for name in ("clean", "pgd"):
        pgd, fgsm = record["results"][name]["pgd"], record["results"][name]["fgsm"]
        assert pgd[0] == fgsm[0] and all(p <= f + 0.05 for p, f in zip(pgd, fgsm)), record
    assert (tmp_path / "robustness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_monitor_benchmark_smoke():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "monitor.py"), "--models", "mlp", "--steps",
         "2", "--rounds", "1", "--batch", "4"],
        capture_output=True, text=True, timeout=300, check=True)
    assert "| mlp |" in result.stdout and "mlp: every 10 steps " in result.stdout
