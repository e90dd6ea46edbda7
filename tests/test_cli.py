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
        (["distill", "--loss", "triplet", "--epochs", "1"], "loss.name must be one of coherence"),
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


# --------------------------------------------------------------------------- nonsense arguments
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "perco_viz", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--batch-size", "0"], "train.batch_size must be between 3 and 65,536"),
        (["--batch-size", "2"], "train.batch_size must be between 3 and 65,536"),
        (["--epochs", "0"], "train.epochs must be between 1"),
        (["--snapshot-every", "-1"], "train.snapshot_every must be between 0"),
        (["--ce-weight", "nan"], "loss.ce_weight must be a finite number, got nan"),
        (["--device", "tpu"], "train.device must be auto, cpu, cuda, cuda:N or mps"),
    ],
)
def test_nonsense_distill_arguments_exit_1_with_one_line_and_write_nothing(tmp_path, flags, message):
    code = main(["distill", *TINY, *flags, "--out", str(tmp_path / "runs")])
    assert code == 1
    assert not (tmp_path / "runs").exists()  # refused before anything is written


def test_a_bad_config_file_and_an_absent_device_are_one_error_line(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")))
    proc = _cli("distill", "--config", str(bomb), "--out", str(tmp_path / "runs"))
    assert proc.returncode == 1 and proc.stderr.startswith("error: bomb.yaml: ") and "anchor" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [1, 2]\n")
    proc = _cli("distill", "--config", str(bad), "--out", str(tmp_path / "runs"))
    assert proc.returncode == 1 and proc.stderr == "error: bad.yaml: name must be a string (text), got [1, 2]\n"
    import torch

    if not torch.cuda.is_available():
        proc = _cli("distill", *TINY, "--device", "cuda", "--out", str(tmp_path / "runs"))
        assert proc.returncode == 1 and proc.stderr.count("\n") == 1
        assert "device 'cuda' is not available on this machine; available: cpu" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_resume_with_negative_epochs_is_refused_before_touching_the_run(tmp_path, capsys):
    assert main(["distill", *TINY, "--epochs", "1", "--out", str(tmp_path), "--name", "r"]) == 0
    (run,) = list_runs(tmp_path)
    before = {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()}
    capsys.readouterr()
    proc = _cli("resume", str(run.path), "--epochs", "-5")
    assert proc.returncode == 1
    assert proc.stderr == "error: train.epochs must be between 1 and 1,000,000, got -5\n" and not proc.stdout
    assert {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()} == before
    assert main(["resume", str(run.path), "--epochs", "0", "--quiet"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == ["error: train.epochs must be between 1 and 1,000,000, got 0"]
    assert {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()} == before


@pytest.mark.parametrize(("flags", "message"), [
    (["--dataset", "imagenet"], "data.name must be one of digits"),
    (["--seed", "-1"], "data.seed must be between 0"),
    (["--device", "tpu"], "train.device must be auto, cpu, cuda, cuda:N or mps"),
])
def test_teacher_train_checks_its_arguments_first(flags, message, capsys):
    assert main(["teacher", "train", *flags]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1
