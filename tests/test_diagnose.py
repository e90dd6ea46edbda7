"""Diagnose: loading a teacher/student pair of embedding files, the panel, its figures and the HTML report."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from perco_viz.analysis import diagnose
from perco_viz.figures import diagnose as diagnose_figures
from perco_viz.metrics import student_report
from perco_viz.safe_io import InputFileError


def _rotation(d: int, rng: np.random.Generator) -> np.ndarray:
    return np.linalg.qr(rng.normal(size=(d, d)))[0]


@pytest.fixture
def teacher(rng):
    """(240, 6) features of 4 classes and their labels."""
    y = np.arange(240) % 4
    centres = rng.normal(size=(4, 6)) * 3
    return centres[y] + rng.normal(size=(240, 6)), y


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_rotated_scaled_student_has_pc_one(tmp_path, teacher, rng):
    x, y = teacher
    t_path = _write_npz(tmp_path / "teacher.npz", X=x, y=y)
    s_path = _write_npz(tmp_path / "student.npz", X=2.5 * x @ _rotation(6, rng) + 7.0)
    pair = diagnose.load_pair(t_path, s_path)
    assert pair.n == 240 and pair.labels is not None and "labels from teacher.npz" in pair.notes
    panel = diagnose.compute_panel(pair)
    assert diagnose.format_value("pc", panel.report["pc"]) == "1.000"
    assert panel.report["pc"] == pytest.approx(1.0)
    assert panel.report["knn_overlap"] == pytest.approx(1.0)
    assert panel.report["cka"] == pytest.approx(1.0)
    assert not panel.subsampled and panel.n_used == 240
    np.testing.assert_allclose(panel.coherence, 1.0)
    assert np.nanmin(panel.agreement) == pytest.approx(1.0)
    # the student's picture is the teacher's after Procrustes
    np.testing.assert_allclose(panel.student_xy, panel.teacher_xy, atol=1e-3 * np.abs(panel.teacher_xy).max())


def test_noise_student_is_at_chance(tmp_path, teacher, rng):
    x, y = teacher
    buf = io.BytesIO()
    pd.DataFrame(rng.normal(size=(240, 4)), columns=list("abcd")).assign(label=y).to_csv(buf, index=False)
    pair = diagnose.load_pair(_write_npz(tmp_path / "t.npz", X=x), buf.getvalue(), student_name="student.csv")
    assert pair.notes == ["labels from student.csv"]
    panel = diagnose.compute_panel(pair)
    assert panel.report["pc"] == pytest.approx(0.5, abs=0.03)
    assert panel.report["cka"] < 0.2


def test_panel_numbers_equal_the_library(tmp_path, teacher, rng):
    x, y = teacher
    s = np.tanh(x[:, :3]) + 0.3 * rng.normal(size=(240, 3))
    panel = diagnose.compute_panel(diagnose.EmbeddingPair(x, s, y))
    assert panel.report == student_report(s, x, y)
    table = diagnose.panel_table(panel)
    assert list(table["metric"]) == [diagnose.METRIC_INFO[k].label for k in diagnose.CARD_ORDER]
    assert table["value"].iloc[0] == f"{panel.report['pc']:.3f}"


def test_mismatched_rows_name_both_counts(tmp_path, teacher):
    x, _ = teacher
    t_path = _write_npz(tmp_path / "teacher.npz", X=x)
    s_path = _write_npz(tmp_path / "student.npz", X=x[:200])
    with pytest.raises(InputFileError, match=r"240 rows.*200"):
        diagnose.load_pair(t_path, s_path)


def test_nan_file_is_refused(tmp_path, teacher):
    x, _ = teacher
    bad = x.copy()
    bad[5, 2] = np.nan
    with pytest.raises(InputFileError, match="NaN"):
        diagnose.load_pair(_write_npz(tmp_path / "t.npz", X=x), _write_npz(tmp_path / "s.npz", X=bad))


def test_too_few_rows_and_bad_formats(tmp_path):
    small = _write_npz(tmp_path / "small.npz", X=np.eye(5))
    with pytest.raises(InputFileError, match="at least"):
        diagnose.load_pair(small, small)
    with pytest.raises(InputFileError, match="format"):
        diagnose.load_pair(b"hello", b"hello", teacher_name="t.txt", student_name="s.txt")
    with pytest.raises(InputFileError, match="file name"):
        diagnose.load_pair(b"x", b"x")


def test_labels_from_a_third_file(tmp_path, teacher):
    x, y = teacher
    t_path = _write_npz(tmp_path / "t.npz", X=x)
    s_path = _write_npz(tmp_path / "s.npz", X=x[:, :2])
    np.save(tmp_path / "labels.npy", y)
    pair = diagnose.load_pair(t_path, s_path, labels_from="file", labels=tmp_path / "labels.npy")
    np.testing.assert_array_equal(pair.labels, y)
    csv = pd.DataFrame({"digit": y}).to_csv(index=False).encode()
    pair = diagnose.load_pair(t_path, s_path, labels_from="file", labels=csv, labels_name="l.csv")
    np.testing.assert_array_equal(pair.labels, y)
    np.savez(tmp_path / "short.npz", y=y[:10])
    with pytest.raises(InputFileError, match="10 rows.*240"):
        diagnose.load_pair(t_path, s_path, labels_from="file", labels=tmp_path / "short.npz")
    with pytest.raises(InputFileError, match="not a readable"):
        diagnose.load_pair(t_path, s_path, labels_from="file", labels=b"garbage", labels_name="l.npy")
    with pytest.raises(InputFileError, match="labels"):
        diagnose.load_pair(t_path, s_path, labels_from="teacher")


def test_labels_from_a_column(tmp_path, teacher):
    x, y = teacher
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(6)]).assign(kind=np.array(["a", "b", "c", "d"])[y])
    t_path = tmp_path / "t.csv"
    df.to_csv(t_path, index=False)
    pair = diagnose.load_pair(t_path, _write_npz(tmp_path / "s.npz", X=x), labels_from="teacher",
                              label_column="kind")
    assert pair.teacher.shape == (240, 6) and set(pair.labels) == {"a", "b", "c", "d"}
    panel = diagnose.compute_panel(pair)
    assert panel.report["knn_acc"] > 0.9  # string labels work


def test_large_pairs_use_a_stratified_subsample(rng):
    n = 2600
    y = np.arange(n) % 5
    x = rng.normal(size=(n, 4)) + 4 * y[:, None]
    panel = diagnose.compute_panel(diagnose.EmbeddingPair(x, x[:, :2], y), max_points=500)
    assert panel.subsampled and panel.n_used == 500 and panel.n_total == n
    assert np.bincount(panel.labels).tolist() == [100] * 5
    assert "500 of the 2,600" in panel.scope()
    assert panel.agreement.shape == (500, 500)
    assert panel.report == student_report(x[panel.indices, :2], x[panel.indices], y[panel.indices])


def test_pair_from_run_matches_the_runs_record(finished_run):
    pair = diagnose.pair_from_run(finished_run)
    last = finished_run.snapshot_indices()[-1]
    snap = finished_run.load_snapshot(last)
    panel = diagnose.compute_panel(pair)
    assert panel.report["pc"] == pytest.approx(snap.metrics["pc"], abs=1e-9)
    assert pair.labels is not None and "snapshot" in pair.source


def _figures():
    a = go.Figure(go.Scatter(x=[0, 1], y=[1, 0]), layout={"title": {"text": "Shepard diagram of the pair"}})
    b = go.Figure(go.Heatmap(z=[[0, 1], [1, 0]]), layout={"title": {"text": "Rank agreement A"}})
    return {"Shepard diagram": a, "Rank agreement": b}


def test_html_report_is_one_self_contained_file(teacher, rng):
    x, y = teacher
    panel = diagnose.compute_panel(diagnose.EmbeddingPair(x, x @ _rotation(6, rng), y, source="test pair"))
    doc = diagnose_figures.html_report(panel, _figures(), captions={"Shepard diagram": "How to read it."})
    assert doc.startswith("<!DOCTYPE html>") and doc.rstrip().endswith("</html>")
    assert "plotly" in doc.lower()
    for title in ("Shepard diagram of the pair", "Rank agreement A", "Shepard diagram", "How to read it."):
        assert title in doc
    for key in diagnose.CARD_ORDER:
        assert diagnose.METRIC_INFO[key].label in doc
    assert "1.000" in doc and "test pair" in doc
    assert not re.search(r"<script[^>]*\bsrc\s*=\s*[\"']?(https?:)?//", doc, re.IGNORECASE)
    assert doc.count("Plotly.newPlot") >= 2
    assert len(re.findall(r"plotly\.js v\d", doc)) == 1  # plotly.js inlined once
    # a sequence of figures uses their own titles
    doc2 = diagnose_figures.html_report(panel, list(_figures().values()))
    assert "<h2>Rank agreement A</h2>" in doc2


def test_report_without_labels_says_so(teacher):
    x, _ = teacher
    panel = diagnose.compute_panel(diagnose.EmbeddingPair(x, x[:, :3]))
    assert "knn_acc" not in panel.report
    doc = diagnose_figures.html_report(panel, {})
    assert "accuracies skipped" in doc and "k-NN accuracy" not in doc


def test_panel_figures_one_per_caption(teacher, rng):
    x, y = teacher
    panel = diagnose.compute_panel(diagnose.EmbeddingPair(x, x @ _rotation(6, rng), y))
    figs = diagnose_figures.panel_figures(panel)
    assert list(figs) == list(diagnose_figures.FIGURE_CAPTIONS)
    assert all(isinstance(fig, go.Figure) for fig in figs.values())
    d_t, d_s = panel.shepard  # Euclidean distances of the same sampled pairs in both spaces
    assert d_t.shape == d_s.shape and len(d_t) == min(240 * 239 // 2, diagnose.SHEPARD_PAIRS)
    np.testing.assert_allclose(d_s, d_t, rtol=1e-9)  # a rotation keeps every distance


def test_features_beyond_the_magnitude_limit_are_refused(teacher):
    x, _ = teacher
    with pytest.raises(InputFileError, match="absolute value"):
        diagnose.EmbeddingPair(x, x * 1e300)
