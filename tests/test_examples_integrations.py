"""examples/lightning_distill.py and examples/hf_trainer.py run (a subprocess each, CPU, offline),
leave a finished run (snapshots, metrics with PC), and that run opens in every page (AppTest)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from perco_viz.runs import RunDir
from tests.conftest import ROOT

# script, run name, writer, the app's name for the writer, extra args, snapshots at --epochs 2
EXAMPLES = {
    "lightning": ("lightning_distill.py", "lightning-digits", "Lightning callback", [], 3),  # before, 2 epochs
    "hf": ("hf_trainer.py", "hf-trainer-digits", "Hugging Face callback", ["--every", "11"], 3),  # 11 steps an epoch
}
TIMEOUT = 90


@pytest.fixture(scope="module")
def example_runs(tmp_path_factory) -> tuple[Path, dict[str, subprocess.CompletedProcess]]:
    """Both examples, 2 epochs each, into one runs folder: (the folder, {writer: the finished process})."""
    root = tmp_path_factory.mktemp("example-runs")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    procs = {}
    for writer, (script, _, _, extra, _) in EXAMPLES.items():
        procs[writer] = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--runs", str(root),
                                        "--epochs", "2", *extra], capture_output=True, text=True, timeout=300,
                                       env=env, cwd=root)
    return root, procs


@pytest.mark.slow
@pytest.mark.parametrize("writer", EXAMPLES)
def test_an_integration_example_leaves_a_finished_run(example_runs, writer):
    root, procs = example_runs
    _, name, _, _, snapshots = EXAMPLES[writer]
    proc = procs[writer]
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = RunDir(root / name)
    assert f"the run is {run.path.resolve()}" in proc.stdout
    assert f"PERCO_VIZ_RUNS={root.resolve()} make app" in proc.stdout
    assert run.status()["state"] == "finished" and run.external()["writer"] == writer
    assert run.snapshot_indices() == list(range(snapshots))
    records = [r for r in run.metrics() if r.get("snapshot") is not None]
    assert len(records) == snapshots and all(0 <= r["pc"] <= 1 and r["knn_acc"] is not None for r in records)
    assert records[-1]["pc"] > records[0]["pc"]  # the student learns the teacher's rankings
    assert records[-1]["train_loss"] > 0 and run.teacher_probe()["features"].shape == (300, 64)
    assert run.load_snapshot(snapshots - 1).student.shape == (300, 8)


def _pick(at, key: str, run: str):
    box = at.selectbox(key=key)
    box.set_value(next(o for o in box.options if o.startswith(f"{run} "))).run()
    assert not at.exception, (key, run, at.exception)
    return at


def _texts(at) -> str:
    return " ".join(str(e.value) for kind in ("error", "warning", "info", "caption", "markdown", "success")
                    for e in at.get(kind))


def test_the_example_runs_open_in_every_page(app_env, example_runs, monkeypatch):
    from streamlit.testing.v1 import AppTest

    root, procs = example_runs
    assert all(p.returncode == 0 for p in procs.values())
    monkeypatch.setenv("PERCO_VIZ_RUNS", str(root))

    def page(name: str):
        at = AppTest.from_file(str(ROOT / "pages" / name), default_timeout=TIMEOUT).run()
        assert not at.exception, (name, at.exception)
        return at

    distill = page("2_Distill.py")
    for _, name, shown, _, _ in EXAMPLES.values():
        assert f"your own training (**{shown}**)" in _texts(_pick(distill, "distill-run", name))
    for name_of_page, key in (("3_Embeddings.py", "emb-run"), ("4_Rank_agreement.py", "rank-run"),
                              ("5_Per_sample_coherence.py", "psc-run")):
        at = page(name_of_page)
        for _, name, _, _, _ in EXAMPLES.values():
            assert len(_pick(at, key, name).get("plotly_chart")) >= 2, (name_of_page, name)
    diagnose = page("6_Diagnose.py")
    diagnose.radio(key="diag-source").set_value("run").run()
    for _, name, _, _, _ in EXAMPLES.values():
        assert len(_pick(diagnose, "diag-run", name).get("plotly_chart")) >= 3, name
    compare = page("7_Compare.py")
    box = compare.multiselect(key="compare-runs")
    box.set_value([o for o in box.options if o.split(" ")[0] in {e[1] for e in EXAMPLES.values()}]).run()
    assert not compare.exception, compare.exception
    runs = page("9_Runs.py")
    assert {e[1] for e in EXAMPLES.values()} <= set(runs.dataframe[0].value["title"])
