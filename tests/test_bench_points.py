"""tools/bench_points.py's pure parts: the synthetic run it measures and its table."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import bench_points  # noqa: E402


def test_points_run_is_a_readable_run_of_n_points(tmp_path):
    from perco_viz.runs import list_runs

    run = bench_points.write_points_run(tmp_path, "big", 300, snapshots=2)
    assert [r.name for r in list_runs(tmp_path)] == ["big"] and run.problem() is None
    probe = run.teacher_probe()
    assert probe["features"].shape == (300, bench_points.TEACHER_DIM) and probe["labels"].shape == (300,)
    assert run.snapshot_indices() == [0, 1] and run.status()["state"] == "finished"
    snap = run.load_snapshot(1)
    assert snap.student.shape == (300, bench_points.STUDENT_DIM)
    assert ((snap.coherence >= 0.5) & (snap.coherence <= 1.0)).all()
    assert np.linalg.norm(snap.student - run.load_snapshot(0).student) > 0  # the student moves


def test_table_lists_every_measurement_and_marks_the_missing():
    text = bench_points.table({"n": 100_000, "snapshots": 3, "open_s": 12.345, "pan_s": None, "hover_ok": True,
                               "selected": 1234})
    assert "100,000" in text and "12.35 s" in text and "1,234" in text
    lines = {line.split("  ")[0].strip(): line.split()[-1] for line in text.splitlines()}
    assert lines["pan (200 px drag) → redrawn"] == "—" and lines["tooltip over a point"] == "yes"
