"""Diagnose: loading a teacher/student pair of embedding files, the panel, its figures and the HTML report."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from perco_viz.analysis import diagnose
from perco_viz.coherence import per_sample_coherence
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
    # PC, c_i and CKA describe all rows (exact at this size); the neighbourhood metrics the sample
    full = student_report(x[:, :2], x, y)
    for key in ("pc", "coherence_mean", "coherence_p10", "cka"):
        assert panel.report[key] == pytest.approx(full[key], abs=1e-12), key
        assert panel.scopes[key] == "exact on all 2,600 rows"
    sample = student_report(x[panel.indices, :2], x[panel.indices], y[panel.indices])
    for key in ("knn_acc", "linear_acc", "trustworthiness", "knn_overlap"):
        assert panel.report[key] == sample[key], key
        assert panel.scopes[key] == "on a sample of 500 rows, stratified by label"
    np.testing.assert_allclose(panel.coherence, per_sample_coherence(x[:, :2], x)[panel.indices], atol=1e-12)


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


# --------------------------------------------------------------------------- metadata, the per-input table
def _meta_csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode()


def test_metadata_in_row_order_needs_one_line_per_row():
    meta = diagnose.load_metadata(_meta_csv(pd.DataFrame({"site": ["a", "b", "c"] * 4})), "m.csv", 12)
    assert not meta.keyed and meta.columns == ["site"] and len(meta.table) == 12
    assert meta.table["site"].tolist()[:4] == ["a", "b", "c", "a"] and "in order" in meta.note
    with pytest.raises(InputFileError, match=r"11 lines but the features have 12 rows.*'row' column"):
        diagnose.load_metadata(_meta_csv(pd.DataFrame({"site": ["a"] * 11})), "m.csv", 12)


def test_metadata_keyed_by_a_row_column():
    csv = _meta_csv(pd.DataFrame({"Row": [4, 0, 2], "site": ["paris", "oslo", "rome"], "age": [3.5, 1.0, 2.0]}))
    meta = diagnose.load_metadata(csv, "m.csv", 5)
    assert meta.keyed and meta.columns == ["site", "age"]
    assert meta.table["site"].tolist() == ["oslo", "", "rome", "", "paris"]  # rows not named are blank, said so
    assert meta.table["age"].iloc[4] == 3.5 and np.isnan(meta.table["age"].iloc[1])
    assert "3 of 5 rows" in meta.note and "other 2 are blank" in meta.note


@pytest.mark.parametrize("rows, message", [
    ([0, 1, 7], r"outside 0 to 4 \(e\.g\. 7\)"),
    ([0, 1, 1], r"row 1 appears 2 times"),
    ([0, 1.5, 2], r"whole row numbers"),
    ([0, "x", 2], r"whole row numbers.*'x'"),
])
def test_metadata_row_keys_are_checked(rows, message):
    csv = _meta_csv(pd.DataFrame({"row": rows, "site": ["a", "b", "c"]}))
    with pytest.raises(InputFileError, match=message):
        diagnose.load_metadata(csv, "m.csv", 5)


def test_metadata_files_are_bounded_and_plain_csv():
    with pytest.raises(InputFileError, match=r"\.csv file"):
        diagnose.load_metadata(b"\x80\x04pickle", "meta.pkl", 5)
    with pytest.raises(InputFileError, match="above the"):
        diagnose.load_metadata(b"site\n" + b"x\n" * 600_000, "m.csv", 600_000, max_mb=1)
    with pytest.raises(InputFileError, match="no metadata column"):
        diagnose.load_metadata(b"row\n0\n1\n", "m.csv", 2)
    wide = pd.DataFrame(np.zeros((3, diagnose.METADATA_MAX_COLUMNS + 1)))
    with pytest.raises(InputFileError, match="metadata columns, above the limit"):
        diagnose.load_metadata(_meta_csv(wide), "m.csv", 3)
    with pytest.raises(InputFileError, match="empty"):
        diagnose.load_metadata(b"", "m.csv", 3)
    # a column named like one of the per-input table is renamed, not lost
    meta = diagnose.load_metadata(b"c_i,class\n1,x\n2,y\n", "m.csv", 2)
    assert meta.columns == ["meta c_i", "meta class"]


def test_sample_table_uses_rows_of_the_pair_not_positions(rng):
    n = 300
    y = np.arange(n) % 3
    x = rng.normal(size=(n, 4)) + 3 * y[:, None]
    panel = diagnose.compute_panel(diagnose.EmbeddingPair(x, x[:, :2] + rng.normal(size=(n, 2)), y,
                                                          class_names=["cat", "dog", "fox"]), max_points=60)
    assert panel.subsampled and panel.indices.max() > 60
    meta = diagnose.load_metadata(_meta_csv(pd.DataFrame({"tag": [f"r{i}" for i in range(n)]})), "m.csv", n)
    test_idx = np.arange(n) * 2 + 1
    table = diagnose.sample_table(panel, meta.table, test_indices=test_idx)
    assert list(table.columns) == ["row", "test index", "class", "c_i", "tag"]
    assert table["row"].tolist() == panel.indices.tolist()
    assert table["tag"].tolist() == [f"r{i}" for i in panel.indices]  # metadata follows the row, not the position
    assert table["test index"].tolist() == (panel.indices * 2 + 1).tolist()
    assert set(table["class"]) == {"cat", "dog", "fox"}
    np.testing.assert_array_equal(table["c_i"], panel.coherence)
    assert "test index" not in diagnose.sample_table(panel, test_indices=np.arange(n)).columns  # same as row
    worst = diagnose.worst_rows(panel, 5)
    assert worst[0] == panel.indices[np.argmin(panel.coherence)]
    assert set(worst) <= set(panel.indices.tolist())


def test_embedding_figure_in_plain_words_and_coloured_by_metadata(teacher, rng):
    from perco_viz.analysis.embeddings import coloring

    x, y = teacher
    panel = diagnose.compute_panel(diagnose.EmbeddingPair(x, x[:, :3], y))
    title = diagnose_figures.panel_figures(panel)["Embeddings"].layout.title.text
    assert "|" not in title and "embedding plots" not in title and title.startswith("Teacher and student")
    meta = pd.DataFrame({"site": np.where(np.arange(240) % 2, "paris", "oslo"), "age": np.linspace(0, 9, 240)})
    by_site = diagnose_figures.embeddings_figure(panel, coloring("meta:site", meta=meta))
    assert {t.name for t in by_site.data} == {"paris", "oslo"} and "site" in by_site.layout.title.text
    by_age = diagnose_figures.embeddings_figure(panel, coloring("meta:age", meta=meta), highlight=[0, 5])
    assert by_age.layout.coloraxis.colorbar.title.text == "age"
    assert by_age.layout.coloraxis.colorscale[0][1].lower() == "#440154"  # viridis, not the c_i scale
    assert any(t.name == "selected" and len(t.x) == 2 for t in by_age.data)


# --------------------------------------------------------------------------- at scale: every number says its rows
def test_a_small_set_is_exact_and_equals_the_library(teacher, rng):
    import perco_viz as pv

    x, y = teacher
    s = np.tanh(x[:, :3]) + 0.3 * rng.normal(size=(240, 3))
    panel = diagnose.compute_panel(diagnose.EmbeddingPair(x, s, y))
    assert panel.pc.exact and not panel.estimated and not panel.subsampled
    assert panel.report["pc"] == pytest.approx(pv.perception_coherence(s, x), abs=1e-12)
    assert panel.report["coherence_mean"] == panel.report["pc"]
    assert set(panel.scopes) == set(panel.report) and set(panel.scopes.values()) == {"exact on all 240 rows"}
    assert "±" not in diagnose.value_text(panel, "pc")
    assert diagnose.panel_lines(panel)[0].endswith("(exact on all 240 rows)")


def _memmapped_pair(tmp_path, n: int, rng) -> tuple:
    y = np.arange(n) % 4
    t = (rng.normal(size=(n, 6)) + 3.0 * np.eye(6)[y]).astype(np.float32)
    s = (t[:, :3] + 0.5 * rng.normal(size=(n, 3)).astype(np.float32)).astype(np.float32)
    np.save(tmp_path / "teacher.npy", t)
    np.save(tmp_path / "student.npy", s)
    np.save(tmp_path / "labels.npy", y)
    return t, s, y


def test_a_200k_row_memmapped_pair_is_estimated_with_its_interval(tmp_path, rng):
    from perco_viz.estimate import estimate_perception_coherence
    from perco_viz.metrics import linear_cka

    n = 200_000
    t, s, y = _memmapped_pair(tmp_path, n, rng)
    pair = diagnose.load_pair(tmp_path / "teacher.npy", tmp_path / "student.npy", labels_from="file",
                              labels=tmp_path / "labels.npy")
    assert isinstance(pair.teacher, np.memmap) and isinstance(pair.student, np.memmap)  # never read whole
    panel = diagnose.compute_panel(pair, max_points=400, neighbour_points=200, n_triplets=50_000, n_pairs=300)
    assert panel.estimated and panel.n_total == n and panel.n_used == 400 and panel.n_neighbour == 200
    pc = panel.pc
    assert pc.low < pc.value < pc.high and pc.n_triplets == 50_000 and pc.high - pc.low < 0.02
    # the same seeded triplets as the estimator called on its own
    assert pc.value == estimate_perception_coherence(s, t, n_triplets=50_000, seed=0).value
    assert panel.report["cka"] == pytest.approx(linear_cka(s.astype(np.float64), t.astype(np.float64)), abs=1e-9)
    assert np.bincount(panel.neighbour_labels).tolist() == [50] * 4  # stratified
    assert set(panel.neighbour_indices) <= set(panel.indices)
    # every number says which rows it describes
    assert panel.scopes["pc"] == panel.scopes["coherence_mean"] == "estimated on all 200,000 rows, 95% CI, 50,000 triplets"
    for key in ("knn_acc", "linear_acc", "trustworthiness", "knn_overlap"):
        assert panel.scopes[key] == "on a sample of 200 rows, stratified by label"
    assert panel.scopes["cka"] == "exact on all 200,000 rows"
    assert "200 sampled rows" in panel.scopes["coherence_p10"] and "300 pairs" in panel.scopes["coherence_p10"]
    np.testing.assert_array_equal(panel.per_sample.anchors, panel.neighbour_indices)
    assert panel.report["coherence_p10"] == np.percentile(panel.per_sample.value, 10)
    table = diagnose.panel_table(panel)
    assert table["computed on"].str.len().min() > 0
    assert table["value"].iloc[0].startswith(f"{pc.value:.3f}"[:4]) and "±" in table["value"].iloc[0]
    lines = diagnose.panel_lines(panel)
    assert len(lines) == len(panel.report) and "±" in lines[0] and "estimated on all 200,000 rows" in lines[0]
    assert "200,000" in panel.scope() and "200 of the 200,000" in panel.scope()
    # each c_i shown is an estimate over all rows, with its interval in the table
    assert np.all(panel.coherence_low <= panel.coherence) and np.all(panel.coherence <= panel.coherence_high)
    assert np.all(panel.coherence_high > panel.coherence_low)
    in_nb = np.isin(panel.indices, panel.neighbour_indices)
    np.testing.assert_array_equal(panel.coherence[in_nb], panel.per_sample.value)
    assert "c_i ±" in diagnose.sample_table(panel).columns


def test_parquet_and_csv_inputs(tmp_path, teacher):
    x, y = teacher
    cols = [f"f{i}" for i in range(6)]
    pd.DataFrame(x, columns=cols).assign(label=y, site="a").to_parquet(tmp_path / "t.parquet")
    pd.DataFrame(x[:, :2], columns=["a", "b"]).to_csv(tmp_path / "s.csv", index=False)
    pair = diagnose.load_pair(tmp_path / "t.parquet", tmp_path / "s.csv")
    assert pair.teacher.shape == (240, 6) and pair.student.shape == (240, 2)
    np.testing.assert_array_equal(pair.labels, y)
    np.testing.assert_allclose(pair.teacher, x.astype(np.float32))
    data = (tmp_path / "t.parquet").read_bytes()  # an upload: bytes and a name
    pair = diagnose.load_pair(data, (tmp_path / "s.csv").read_bytes(), teacher_name="t.parquet",
                              student_name="s.csv")
    assert pair.n == 240 and pair.labels is not None
    pd.DataFrame({"kind": np.array(["a", "b", "c", "d"])[y]}).to_parquet(tmp_path / "labels.parquet")
    pair = diagnose.load_pair(tmp_path / "t.parquet", tmp_path / "s.csv", labels_from="file",
                              labels=tmp_path / "labels.parquet")
    assert list(pair.labels[:4]) == ["a", "b", "c", "d"]
    with pytest.raises(InputFileError, match="not a readable Parquet"):
        diagnose.load_pair(b"PAR1 garbage", data, teacher_name="x.parquet", student_name="t.parquet")


def test_a_memmapped_file_with_nan_is_refused_naming_the_rows(tmp_path, rng):
    bad = rng.normal(size=(300, 3)).astype(np.float32)
    bad[[7, 250], 1] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    np.save(tmp_path / "good.npy", rng.normal(size=(300, 3)).astype(np.float32))
    with pytest.raises(InputFileError, match=r"2 of 300 rows contain NaN/inf \(first rows \[7, 250\]\)"):
        diagnose.load_pair(tmp_path / "good.npy", tmp_path / "bad.npy")
