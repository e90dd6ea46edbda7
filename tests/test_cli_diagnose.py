"""`perco-viz diagnose`: the Diagnose page's panel headless — one line per metric with its scope,
--json and --html, and one-line refusals of bad input (never a traceback)."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest

from perco_viz.analysis import diagnose
from perco_viz.cli import main


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["diagnose", *argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def files(tmp_path, rng):
    """teacher.npz (X, y), student.npy, labels.csv of 150 rows; returns the folder."""
    y = np.arange(150) % 3
    x = rng.normal(size=(150, 5)) + 3.0 * np.eye(5)[y]
    np.savez(tmp_path / "teacher.npz", X=x, y=y)
    np.save(tmp_path / "student.npy", (x[:, :2] + 0.5 * rng.normal(size=(150, 2))).astype(np.float32))
    pd.DataFrame({"label": y}).to_csv(tmp_path / "labels.csv", index=False)
    return tmp_path


def test_one_line_per_metric_with_its_scope_and_the_pages_numbers(files):
    code, out, err = _run("--teacher", str(files / "teacher.npz"), "--student", str(files / "student.npy"),
                          "--json", str(files / "out.json"), "--html", str(files / "report.html"))
    assert code == 0, err
    pair = diagnose.load_pair(files / "teacher.npz", files / "student.npy")
    panel = diagnose.compute_panel(pair)  # what the page computes for the same files and seed
    lines = out.splitlines()
    assert lines[0].startswith("diagnosis of 150 rows · teacher 5-d · student 2-d · labelled")
    metric_lines = lines[1:1 + len(panel.report)]
    assert metric_lines == diagnose.panel_lines(panel)
    for key, line in zip(panel.report, metric_lines):
        assert line.startswith(diagnose.METRIC_INFO[key].label)
        assert line.endswith("(exact on all 150 rows)")
    data = json.loads((files / "out.json").read_text())
    assert set(data) >= {"n_rows", "teacher_dim", "student_dim", "labelled", "seed", "sample_rows", "neighbour_rows",
                         "scope", "pc", "metrics", "seconds"}
    assert list(data["metrics"]) == list(panel.report)
    assert data["metrics"]["pc"]["value"] == panel.report["pc"] and data["pc"]["method"] == "exact"
    assert all(set(m) >= {"value", "low", "high", "text", "scope", "label"} for m in data["metrics"].values())
    doc = (files / "report.html").read_text()
    assert doc.startswith("<!DOCTYPE html>") and "computed on" in doc and "exact on all 150 rows" in doc


def test_a_labels_file_and_a_seed(files):
    code, out, err = _run("--teacher", str(files / "student.npy"), "--student", str(files / "teacher.npz"),
                          "--labels", str(files / "labels.csv"), "--triplets", "20000", "--seed", "3",
                          "--json", str(files / "o.json"))
    assert code == 0, err
    assert "labelled · seed 3" in out.splitlines()[0]
    assert "k-NN accuracy" in out
    data = json.loads((files / "o.json").read_text())
    assert data["pc"]["method"] == "exact" and data["seed"] == 3  # 150 rows: exact whatever --triplets says


@pytest.mark.parametrize("case, says", [
    ("missing", "does not exist"),
    ("rows", "150 rows but the student file"),
    ("nan", "NaN"),
    ("format", "unknown array format '.txt'"),
    ("triplets", "--triplets must be at least 1"),
])
def test_bad_input_is_one_line_and_a_non_zero_exit(files, case, says):
    teacher, student, extra = files / "teacher.npz", files / "student.npy", []
    if case == "missing":
        student = files / "nope.npy"
    elif case == "rows":
        np.save(files / "short.npy", np.ones((40, 2), dtype=np.float32))
        student = files / "short.npy"
    elif case == "nan":
        bad = np.load(student)
        bad[9, 0] = np.nan
        np.save(files / "nan.npy", bad)
        student = files / "nan.npy"
    elif case == "format":
        (files / "s.txt").write_text("1 2\n3 4\n")
        student = files / "s.txt"
    elif case == "triplets":
        extra = ["--triplets", "0"]
    code, out, err = _run("--teacher", str(teacher), "--student", str(student), *extra)
    assert code != 0
    assert err.startswith("error: ") and says in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err + out
