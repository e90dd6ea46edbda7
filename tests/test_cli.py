"""The command line: end to end with the run directory checked; one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from perco_viz.cli import main
from perco_viz.runs import list_runs

TINY = ["--dataset", "blobs", "--n-samples", "300", "--probe-size", "60", "--teacher", "identity",
        "--student-dim", "2", "--batch-size", "64", "--device", "cpu", "--quiet"]


def test_distill_end_to_end(tmp_path, capsys):
    assert main(["distill", *TINY, "--epochs", "2", "--out", str(tmp_path), "--name", "cli"]) == 0
    out = capsys.readouterr().out
    assert "status=finished" in out and "pc=" in out
    (run,) = list_runs(tmp_path)
    assert run.name == "cli" and len(run.metrics()) == 3 and run.status()["state"] == "finished"
    # resume to more epochs
    assert main(["resume", str(run.path), "--epochs", "3", "--quiet"]) == 0
    assert len(run.metrics()) == 4


def test_config_file_with_flag_override(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  epochs: 1\n  lr: 0.01\nloss:\n  tau: 0.2\n")
    assert main(["distill", *TINY, "--config", str(cfg), "--tau", "0.3", "--out", str(tmp_path / "r")]) == 0
    (run,) = list_runs(tmp_path / "r")
    saved = json.loads((run.path / "config.json").read_text())
    assert saved["train"]["epochs"] == 1 and saved["loss"]["tau"] == 0.3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["distill", "--loss", "triplet", "--epochs", "1"], "unknown loss"),
        (["distill", "--dataset", "imagenet", "--epochs", "1"], "imagenet"),
        (["distill", "--config", "/nonexistent.yaml"], "does not exist"),
        (["resume", "/nonexistent-run"], "not a run directory"),
    ],
)
def test_errors_are_one_line_without_traceback(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "perco_viz", *args, "--out", str(tmp_path)] if args[0] == "distill"
                          else [sys.executable, "-m", "perco_viz", *args],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr
    assert proc.stderr.strip().count("\n") <= 3


def test_bench_loss_prints_a_table(capsys):
    assert main(["bench", "loss", "--sizes", "16,32", "--repeats", "1", "--reference-max", "32"]) == 0
    out = capsys.readouterr().out
    assert "| n |" in out and "| 16 |" in out and "machine:" in out
