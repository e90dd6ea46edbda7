"""The writer's run directory is the engine's (issue 14, item 1): the same files (but the model
files the writer has no model for, and its own external.json), the same npz arrays with the same
dtypes, the same config.json keys and the same metrics keys in snapshot records — read by the
same ``RunDir``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import perco_viz as pv
from perco_viz.runs import RunDir, list_runs

ENGINE_ONLY = {"student.safetensors", "checkpoint.pt", "heldout.json", "meta.json"}  # a model; the app's words
WRITER_ONLY = {"external.json"}


@pytest.fixture
def both(finished_run, tmp_path) -> tuple[RunDir, RunDir]:
    """(the engine's finished run, a run of the writer that logged the engine's numbers), in one folder."""
    root = tmp_path / "runs"
    shutil.copytree(finished_run.path, root / "engine")
    rng = np.random.default_rng(0)
    probe = finished_run.teacher_probe()
    teacher, labels = probe["features"][:60], probe["labels"][:60]
    with pv.open_run(root, name="writer", teacher_features=teacher, labels=labels, epochs=2) as run:
        for epoch in range(3):
            run.log(rng.normal(size=(60, 8)).astype(np.float32), epoch=epoch, step=6 * epoch,
                    train_loss=None if epoch == 0 else 1.0 / epoch, lr=0.003)
            run.flush()
    return RunDir(root / "engine"), RunDir(run.path)


def _files(path: Path) -> set[str]:
    return {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}


def _arrays(path: Path) -> dict[str, tuple[str, int]]:
    with np.load(path, allow_pickle=False) as z:
        return {name: (z[name].dtype.str, z[name].ndim) for name in z.files}


def _keys(doc, prefix=""):
    if not isinstance(doc, dict):
        return {prefix}
    return set().union(*(_keys(v, f"{prefix}.{k}") for k, v in doc.items())) if doc else {prefix}


def test_the_same_files_in_the_same_places(both):
    engine, writer = both
    e, w = _files(engine.path), _files(writer.path)
    assert not (e & WRITER_ONLY) and WRITER_ONLY <= w
    assert {f for f in e if not f.startswith("snapshots/")} - ENGINE_ONLY == \
        {f for f in w if not f.startswith("snapshots/")} - WRITER_ONLY
    for files in (e, w):
        snaps = sorted(f for f in files if f.startswith("snapshots/"))
        assert snaps == [f"snapshots/{i:06d}.npz" for i in range(len(snaps))] and snaps


def test_the_same_arrays_dtypes_and_config_keys(both):
    engine, writer = both
    assert _arrays(engine.path / "teacher_probe.npz") == _arrays(writer.path / "teacher_probe.npz")
    assert _arrays(engine.snapshot_path(0)) == _arrays(writer.snapshot_path(0))
    read = lambda run: json.loads((run.path / "config.json").read_text())  # noqa: E731
    assert _keys(read(engine)) == _keys(read(writer))
    assert writer.config().student.dim == 8 and writer.config().data.probe_size == 60


def test_the_same_metric_keys_in_snapshot_records_read_by_the_same_reader(both):
    engine, writer = both
    assert {r.name for r in list_runs(engine.path.parent)} == {engine.name, writer.name}
    e_keys = {frozenset(k for k in r if not k.startswith("loss_")) for r in engine.metrics() if r["snapshot"] is not None}
    w_keys = {frozenset(r) for r in writer.metrics() if r["snapshot"] is not None}
    assert e_keys == w_keys and len(w_keys) == 1  # the engine's loss parts (loss_*) aside
    for run in both:
        assert run.problem() is None and run.status()["state"] == "finished"
        snap = run.load_snapshot(run.snapshot_indices()[-1])
        record = run.metrics()[-1]
        assert snap.metrics["pc"] == pytest.approx(record["pc"]) and 0 <= record["pc"] <= 1
        assert isinstance(record["snapshot"], int) and isinstance(record["step"], int)
