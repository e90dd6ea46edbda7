"""The GPU check in one command (tools/gpu_check.sh) and the engine-epoch benchmark it runs.

The check needs a GPU; here it runs in its dry mode (GPU_CHECK_DRY=1: the same steps on the CPU
at tiny sizes), which exercises the script's steps, its results file and its exit status; its real
mode runs against a stand-in python that records the commands it is given.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

from perco_viz.cli import main
from perco_viz.distill import steps_per_epoch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "gpu_check.sh"
STEPS = ("machine", "cuda-tests", "loss", "estimate", "epoch")


def _run_check(tmp_path: Path, dry: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(tmp_path / "out"), "GPU_CHECK_DRY": dry}
    return subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## (\S+)\n", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


@pytest.mark.slow
def test_dry_run_writes_every_section_with_numbers(tmp_path):
    proc = _run_check(tmp_path, "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    text = (tmp_path / "out" / "gpu_check.md").read_text()
    assert proc.stdout.strip() == text.strip()  # printed at the end
    assert "DRY RUN" in text.splitlines()[2] and "not GPU figures" in text
    sections = _sections(text)
    assert list(sections) == [*STEPS, "summary"]
    for step in STEPS:
        assert "` — passed in " in sections[step], step
        assert re.search(rf"^\| {step} \| passed \| \d+\.\d \|$", sections["summary"], re.M), step
    assert "All steps passed." in sections["summary"]
    assert re.search(r"\b[1-9]\d* passed\b", sections["cuda-tests"])  # marked tests that also run on a CPU
    # each benchmark's figures: its table, and its JSON (one line, the numbers in full)
    loss = json.loads(re.search(r"```json\n(.*)\n```", sections["loss"]).group(1))
    assert [r["n"] for r in loss["rows"]] == [64, 128] and all(r["fast_ms"] > 0 for r in loss["rows"])
    assert re.search(r"^\| 64 \| [\d.]+ \| [\d.]+ \|", sections["loss"], re.M)
    epoch = json.loads(re.search(r"```json\n(.*)\n```", sections["epoch"]).group(1))["rows"]
    assert epoch["n"] == 200 and epoch["steps"] == steps_per_epoch(200, 64) and epoch["epoch_s"] > 0
    estimate = json.loads(re.search(r"```json\n(.*)\n```", sections["estimate"]).group(1))["rows"]
    assert estimate["triplets"] == 20_000 and estimate["low"] <= estimate["value"] <= estimate["high"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA (it would run the real check)")
def test_without_a_gpu_the_real_check_fails_at_once_saying_why(tmp_path):
    proc = _run_check(tmp_path, "0")
    assert proc.returncode == 1
    assert "FAILED at step machine: no CUDA device" in proc.stderr
    text = (tmp_path / "out" / "gpu_check.md").read_text()
    assert "no CUDA device visible to torch" in text and "GPU_CHECK_DRY=1" in text
    assert "## cuda-tests" not in text and "DRY RUN" not in text  # nothing else was run


@pytest.mark.slow  # ~5 s alone, over 10 s on a busy machine (the engine's set-up and first snapshot)
def test_bench_epoch_runs_one_engine_epoch_through_the_cli(tmp_path, capsys):
    out = tmp_path / "epoch.json"
    assert main(["bench", "epoch", "--n", "60", "--batch-size", "16", "--device", "cpu", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "60 synthetic 3×32×32 images" in printed and f"{steps_per_epoch(60, 16)} steps" in printed
    r = json.loads(out.read_text())["rows"]
    assert (r["n"], r["batch_size"], r["device"], r["amp"]) == (60, 16, "cpu", False)
    assert r["steps"] == steps_per_epoch(60, 16) == 4  # 3 full batches and a tail of 12
    assert r["epoch_s"] > 0 and r["images_per_s"] == pytest.approx(60 / r["epoch_s"])
    assert 0 <= r["pc_untrained"] <= 1 and 0 <= r["pc"] <= 1 and r["train_loss"] is not None
    assert r["peak_gpu_mib"] is None
    assert not list(tmp_path.glob("runs*"))  # nothing recorded as a run


FAKE_PYTHON = r"""#!/usr/bin/env bash
# stands in for .venv/bin/python: logs its arguments, answers like the real commands
echo "$*" >>"$FAKE_LOG"
case "$*" in
    *"-m pytest"*) echo "$FAKE_PYTEST" ;;
    *"json.dumps"*) cat "${@: -1}" ;;
    *"-m perco_viz bench"*)
        prev=""
        for a in "$@"; do
            if [ "$prev" = --json ]; then echo '{"rows": {"seconds": 1.5}}' >"$a"; fi
            prev=$a
        done
        echo "| 1 | 1.5 |"
        case "$*" in *"$FAKE_FAIL"*) exit 3 ;; esac ;;
    *) echo "cuda:0 Fake GPU, 141 GiB" ;;
esac
"""


def _fake_gpu_check(tmp_path: Path, pytest_says: str = "3 passed in 1.0s", fail: str = "nothing fails"):
    """The script in a copy of the repository whose .venv/bin/python is FAKE_PYTHON: the real
    (not dry) mode's commands, without a GPU."""
    repo = tmp_path / "repo"
    (repo / "tools").mkdir(parents=True)
    (repo / "tools" / "gpu_check.sh").write_text(SCRIPT.read_text())
    (repo / "tests").mkdir()
    (repo / "tests" / "test_on_gpu.py").write_text("@pytest.mark.cuda\ndef test_x(): ...\n")
    (repo / "tests" / "test_other.py").write_text("def test_y(): ...\n")
    fake = repo / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    log = tmp_path / "commands.log"
    env = {**os.environ, "OUT": str(tmp_path / "out"), "FAKE_LOG": str(log), "FAKE_PYTEST": pytest_says,
           "FAKE_FAIL": fail}
    env.pop("GPU_CHECK_DRY", None)
    proc = subprocess.run(["bash", str(repo / "tools" / "gpu_check.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    return proc, log.read_text(), (tmp_path / "out" / "gpu_check.md").read_text()


def test_the_real_check_runs_the_cuda_tests_and_benchmarks_at_full_size(tmp_path):
    proc, commands, text = _fake_gpu_check(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "-m pytest -q -ra -p no:cacheprovider -m cuda tests/test_on_gpu.py\n" in commands  # marked files only
    assert "-m perco_viz bench loss --device cuda --sizes 1024,4096,16384 --reference-max 1024 --json" in commands
    assert "-m perco_viz bench estimate --device cuda --rows 1000000 --triplets 10000000 --json" in commands
    assert "-m perco_viz bench epoch --device cuda --n 50000 --batch-size 512 --json" in commands
    assert "DRY RUN" not in text and "All steps passed." in text and "Fake GPU" in text
    assert text.count('```json\n{"rows": {"seconds": 1.5}}\n```') == 3


def test_a_failed_step_is_named_and_the_next_steps_still_run(tmp_path):
    proc, commands, text = _fake_gpu_check(tmp_path, fail="bench loss")
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith("gpu_check: FAILED steps: loss (details in "
                                        f"{tmp_path / 'out' / 'gpu_check.md'})")
    assert "bench estimate" in commands and "bench epoch" in commands
    assert "| loss | FAILED: exit status 3 |" in text and "| epoch | passed |" in text
    assert text.rstrip().endswith("FAILED steps: loss")


def test_on_a_gpu_a_skipped_cuda_test_fails_the_check(tmp_path):
    proc, _, text = _fake_gpu_check(tmp_path, pytest_says="2 passed, 1 skipped in 1.0s")
    assert proc.returncode == 1 and "FAILED steps: cuda-tests" in proc.stderr
    assert "| cuda-tests | FAILED: exit status 1 |" in text


@pytest.mark.parametrize("argv, message", [
    (["--n", "20"], "--n must be at least 30"),
    (["--n", "40", "--batch-size", "64"], "batch_size must be between 3 and n = 40, got 64"),
])
def test_bench_epoch_refuses_bad_sizes(capsys, argv, message):
    assert main(["bench", "epoch", "--device", "cpu", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_bench_epoch_refuses_an_absent_device_before_writing_images(monkeypatch, capsys):
    def written(*args, **kwargs):
        raise AssertionError("images written before the device was checked")

    monkeypatch.setattr("perco_viz.bench._write_synthetic_images", written)
    assert main(["bench", "epoch", "--n", "40", "--batch-size", "8", "--device", "cuda"]) == 2
    assert "device 'cuda' is not available on this machine" in capsys.readouterr().err


def test_the_script_is_valid_bash_and_executable():
    assert os.access(SCRIPT, os.X_OK)
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
