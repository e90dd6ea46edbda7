"""perco_viz.analysis.embeddings: aligned projections, subsampling, colouring, hover text, tables."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from perco_viz.analysis import embeddings as ev


@pytest.fixture
def sequence(rng):
    """A teacher (60, 10) and a student drifting towards a rotated copy of it over 4 snapshots."""
    teacher = rng.normal(size=(60, 10)) * np.linspace(3, 0.3, 10)
    target = teacher[:, :5] @ np.linalg.qr(rng.normal(size=(5, 5)))[0]
    students = [(1 - a) * rng.normal(size=(60, 5)) + a * target for a in (0.0, 0.5, 0.9, 1.0)]
    labels = np.repeat(np.arange(3), 20)
    return teacher, students, labels


# --------------------------------------------------------------------------- projections
def test_aligned_pca_shape_and_determinism(sequence):
    teacher, students, _ = sequence
    a = ev.aligned_projections(teacher, students, "pca", 2)
    b = ev.aligned_projections(teacher, students, "pca", 2)
    assert a.teacher.shape == (60, 2) and a.students.shape == (4, 60, 2)
    np.testing.assert_array_equal(a.students, b.students)
    np.testing.assert_array_equal(a.teacher, b.teacher)
    assert np.isfinite(a.students).all()


def test_aligned_3d_and_narrow_student(sequence):
    teacher, _, _ = sequence
    students = [teacher[:, :2] + 0.01 * i for i in range(3)]  # a 2-d student drawn in 3-D
    proj = ev.aligned_projections(teacher, students, "pca", 3)
    assert proj.students.shape == (3, 60, 3) and proj.teacher.shape == (60, 3)


def test_student_equal_to_teacher_lands_on_teacher(sequence):
    teacher, _, _ = sequence
    proj = ev.aligned_projections(teacher, [teacher, 2.0 * teacher + 1.0], "pca", 2)
    for frame in proj.students:  # same features, any scale: drawn exactly on the teacher
        np.testing.assert_allclose(frame, proj.teacher, atol=1e-8)


def test_sequence_is_continuous(sequence):
    """Consecutive snapshots that barely differ are drawn almost in the same place."""
    teacher, students, _ = sequence
    frames = [students[-1] + 1e-3 * i for i in range(3)]
    proj = ev.aligned_projections(teacher, frames, "pca", 2)
    scale = np.abs(proj.students[0]).max()
    assert np.abs(proj.students[1] - proj.students[0]).max() < 1e-3 * scale


def test_aligned_projections_rejects_bad_input(sequence):
    teacher, students, _ = sequence
    with pytest.raises(ValueError, match="method"):
        ev.aligned_projections(teacher, students, "mds", 2)
    with pytest.raises(ValueError, match="dim"):
        ev.aligned_projections(teacher, students, "pca", 4)
    with pytest.raises(ValueError, match="probe rows"):
        ev.aligned_projections(teacher, [students[0][:10]], "pca", 2)
    with pytest.raises(ValueError, match="no student"):
        ev.aligned_projections(teacher, [], "pca", 2)


def test_ranges_cover_every_snapshot(sequence):
    teacher, students, _ = sequence
    proj = ev.aligned_projections(teacher, students, "pca", 2)
    ranges = proj.ranges()["student"]
    for j, (lo, hi) in enumerate(ranges):
        assert lo < proj.students[..., j].min() and hi > proj.students[..., j].max()


@pytest.mark.slow
def test_aligned_umap_small(sequence):
    teacher, students, _ = sequence
    proj = ev.aligned_projections(teacher, students[:2], "umap", 2)
    assert proj.students.shape == (2, 60, 2) and np.isfinite(proj.students).all()


@pytest.mark.slow
def test_aligned_tsne_small(sequence):
    teacher, students, _ = sequence
    seen = []
    a = ev.aligned_projections(teacher, students[:2], "tsne", 2, progress=lambda d, k: seen.append((d, k)))
    assert a.students.shape == (2, 60, 2) and np.isfinite(a.students).all()
    assert seen == [(1, 3), (2, 3), (3, 3), (3, 3)]  # teacher, each snapshot, done


# --------------------------------------------------------------------------- rows shown
def test_subsample_note_text():
    assert ev.subsample_note(100_000, 250_000) == "showing 100,000 of 250,000 points, stratified by class"
    assert ev.subsample_note(10, 10) is None
    assert "at random" in ev.subsample_note(5, 10, stratified=False)


def test_display_rows_all_when_small():
    rows, note = ev.display_rows(np.zeros(50, dtype=int), 50)
    np.testing.assert_array_equal(rows, np.arange(50))
    assert note is None


def test_display_rows_stratified_beyond_the_cap():
    labels = np.repeat([0, 1, 2, 3], [100, 50, 50, 50])
    rows, note = ev.display_rows(labels, len(labels), max_points=100)
    assert note == "showing 100 of 250 points, stratified by class"
    assert len(rows) == 100 and len(np.unique(rows)) == 100 and (np.diff(rows) > 0).all()
    counts = np.bincount(labels[rows], minlength=4)
    np.testing.assert_allclose(counts / 100, [0.4, 0.2, 0.2, 0.2], atol=0.03)


# --------------------------------------------------------------------------- colour, hover, selection
def test_color_options_and_coloring():
    meta = pd.DataFrame({"position": np.linspace(0, 1, 20), "kind": ["a", "b"] * 10})
    opts = ev.color_options(True, list(meta.columns))
    assert list(opts) == ["label", "coherence", "meta:position", "meta:kind"]
    assert list(ev.color_options(False)) == ["coherence"]
    lab = ev.coloring("label", labels=np.arange(20) % 3, class_names=["x", "y", "z"])
    assert lab.kind == "label" and lab.names == ["x", "y", "z"]
    coh = ev.coloring("coherence", coherence=np.linspace(0.4, 1, 20))
    assert coh.kind == "continuous" and coh.range == (0.0, 1.0) and coh.title == "c_i"
    pos = ev.coloring("meta:position", meta=meta)
    assert pos.kind == "continuous" and pos.title == "position" and pos.colorscale == "Viridis"
    kind = ev.coloring("meta:kind", meta=meta)
    assert kind.kind == "label" and kind.names == ["a", "b"]
    with pytest.raises(ValueError, match="no labels"):
        ev.coloring("label")
    with pytest.raises(ValueError, match="metadata"):
        ev.coloring("meta:nope", meta=meta)
    with pytest.raises(ValueError, match="unknown"):
        ev.coloring("size")


def test_hover_text():
    text = ev.hover_text(np.array([3, 5]), test_indices=np.arange(10) + 100, labels=np.arange(10) % 2,
                         class_names=["even", "odd"], coherence=np.linspace(0, 1, 10),
                         meta=pd.DataFrame({"position": np.arange(10) / 3}))
    assert list(text) == ["test #103<br>class odd<br>c_i 0.333<br>position 1",
                          "test #105<br>class odd<br>c_i 0.556<br>position 1.667"]
    assert list(ev.hover_text(np.array([0, 1]))) == ["", ""]


# --------------------------------------------------------------------------- table & downloads
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_table_bytes_round_trip(sequence, fmt):
    teacher, students, labels = sequence
    proj = ev.aligned_projections(teacher, students, "pca", 2)
    coh = np.linspace(0, 1, 60)
    meta = pd.DataFrame({"position": np.arange(60) / 7})
    df = ev.embedding_table(proj, 2, student_features=students[2], coherence=coh, labels=labels,
                            class_names=["a", "b", "c"], test_indices=np.arange(60) + 10, meta=meta, epoch=2.0)
    assert list(df.columns[:6]) == ["probe_row", "test_index", "label", "class", "c_i", "epoch"]
    assert {"teacher_pc_1", "teacher_pc_2", "student_pc_1", "student_pc_2", "student_f4", "meta_position"} <= set(
        df.columns)
    np.testing.assert_array_equal(df["student_pc_1"], proj.students[2][:, 0])
    data = io.BytesIO(ev.table_bytes(df, fmt))
    back = pd.read_csv(data) if fmt == "csv" else pd.read_parquet(data)
    pd.testing.assert_frame_equal(back, df, check_exact=False, rtol=1e-12)
    with pytest.raises(ValueError, match="format"):
        ev.table_bytes(df, "xlsx")


def test_selection_table():
    df = ev.selection_table(np.array([1, 2]), test_indices=np.arange(5) + 10, labels=np.array([0, 1, 0, 1, 0]),
                            class_names=["a", "b"], coherence=np.linspace(0, 1, 5),
                            meta=pd.DataFrame({"position": np.arange(5.0)}))
    assert list(df.columns) == ["probe row", "test index", "class", "c_i", "position"]
    assert df["class"].tolist() == ["b", "a"] and df["test index"].tolist() == [11, 12]


def test_points_table_keeps_every_metadata_column():
    """The table the page's search runs over: every metadata column (the selection's shows 4), and
    a metadata column never replaces the page's own."""
    meta = pd.DataFrame({f"m{i}": np.arange(3) for i in range(6)} | {"class": ["x", "y", "z"]})
    df = ev.selection_table(np.arange(3), labels=np.array([0, 1, 0]), class_names=["a", "b"], meta=meta,
                            meta_columns=None)
    assert [f"m{i}" for i in range(6)] == [c for c in df.columns if c.startswith("m")]
    assert df["class"].tolist() == ["a", "b", "a"]
    assert len([c for c in ev.selection_table(np.arange(3), meta=meta).columns if c.startswith("m")]) == 4


# --------------------------------------------------------------------------- nearest neighbours
def test_nearest_neighbours_are_argsorts_of_the_full_features(rng):
    teacher, student = rng.normal(size=(40, 12)), rng.normal(size=(40, 5))
    labels = np.arange(40) % 4
    lists = ev.nearest_neighbours(teacher, student, 7, 6, labels=labels)
    for side, x in (("teacher", teacher), ("student", student)):
        d = np.linalg.norm(x - x[7], axis=1)
        d[7] = np.inf
        part = lists[side]
        assert part["point"].tolist() == np.argsort(d, kind="stable")[:6].tolist()  # nearest first
        assert part["rank"].tolist() == list(range(1, 7)) and 7 not in part["point"].tolist()
        assert part["label"].tolist() == (part["point"] % 4).tolist()
    shared = set(lists["teacher"]["point"]) & set(lists["student"]["point"])
    for side in ("teacher", "student"):
        part = lists[side]
        assert part["shared"].tolist() == [p in shared for p in part["point"]]
        assert ((part["other_rank"] <= 6) == part["shared"]).all()
    same = ev.nearest_neighbours(teacher, 3 * teacher, 0, 5)  # a student equal up to scale: the same lists
    assert same["teacher"]["point"].tolist() == same["student"]["point"].tolist() and same["teacher"]["shared"].all()
    with pytest.raises(ValueError, match="anchor"):
        ev.nearest_neighbours(teacher, student, 40)


def test_neighbour_list_table():
    part = pd.DataFrame({"rank": [1, 2], "point": [3, 0], "other_rank": [1, 9], "label": [1, 0],
                         "shared": [True, False]})
    df = ev.neighbour_list_table(part, "teacher", class_names=["a", "b"], coherence=np.array([0.5, 0, 0, 0.9]))
    assert list(df.columns) == ["rank", "input", "class", "c_i", "rank by the student", "in both lists"]
    assert df["class"].tolist() == ["b", "a"] and df["c_i"].tolist() == [0.9, 0.5]
    no_labels = ev.neighbour_list_table(part.assign(label=None), "student")
    assert "class" not in no_labels.columns and "rank by the teacher" in no_labels.columns
