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


# --------------------------------------------------------------------------- 100,000 points
def test_hover_fields_are_numbers_and_one_template():
    fields = ev.hover_fields(np.array([3, 5]), test_indices=np.arange(10) + 100, labels=np.arange(10) % 2,
                             class_names=["even", "odd"], coherence=np.linspace(0, 1, 10),
                             meta=pd.DataFrame({"position": np.arange(10) / 3, "kind": list("abcdefghij")}))
    assert fields.values.dtype == np.float32 and fields.values.shape == (2, 3)
    np.testing.assert_allclose(fields.values, [[103, 1 / 3, 1.0], [105, 5 / 9, 5 / 3]], rtol=1e-6)
    assert fields.template == ("test #%{customdata[1]:d}<br>c_i %{customdata[2]:.3f}<br>position %{customdata[3]:.4g}"
                               "<br>%{text}")
    assert list(fields.text) == ["class odd<br>kind d", "class odd<br>kind f"]
    bare = ev.hover_fields(np.arange(4))
    assert bare.values.shape == (4, 0) and bare.template == "" and bare.text is None
    assert ev.hover_fields(np.arange(2), test_indices=np.array([0, 2**25])).values.dtype == np.float64  # exact ids


@pytest.fixture(scope="module")
def big():
    """100,000 points in 2-D, 10 classes, c_i and the page's tooltip fields."""
    rng = np.random.default_rng(1)
    n = 100_000
    labels = rng.integers(0, 10, n)
    coherence = rng.uniform(0.5, 1.0, n)
    xy = rng.normal(size=(n, 2)) + labels[:, None]
    hover = ev.hover_fields(np.arange(n), test_indices=np.arange(n) * 2, coherence=coherence)
    return xy, labels, coherence, hover


def test_panel_draws_all_100k_points_with_webgl_by_class(big):
    from perco_viz.figures import embedding_panel

    xy, labels, coherence, hover = big
    names = [f"class {i}" for i in range(10)]
    fig = embedding_panel(xy, ev.coloring("label", labels=labels, class_names=names), method="pca", title="t",
                          ids=np.arange(len(xy)), hover=hover, highlight=[5, 7])
    points = [t for t in fig.data if t.name != "selected"]
    assert {type(t).__name__ for t in fig.data} == {"Scattergl"}
    assert sum(len(t.x) for t in points) == 100_000  # every point, no subsample
    for t in points:  # each class trace holds exactly its class, with its ids and tooltip numbers
        ids = np.asarray(t.customdata)[:, 0].astype(np.int64)
        assert set(labels[ids]) == {names.index(t.name)}
        np.testing.assert_allclose(np.asarray(t.x), xy[ids, 0], rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(t.customdata)[:, 1], 2 * ids)  # test index, in customdata
        assert "%{customdata[1]:d}" in t.hovertemplate and t.text is None  # no per-point strings
        assert np.asarray(t.x).dtype == np.float32
    assert sorted(np.concatenate([np.asarray(t.customdata)[:, 0] for t in points]).astype(int)) == list(range(100_000))


def test_panel_draws_all_100k_points_coloured_by_coherence(big):
    from perco_viz.figures import embedding_panel

    xy, labels, coherence, hover = big
    fig = embedding_panel(xy, ev.coloring("coherence", coherence=coherence), method="umap", title="t", hover=hover)
    (trace,) = fig.data
    assert type(trace).__name__ == "Scattergl" and len(trace.x) == 100_000
    ids = np.asarray(trace.customdata)[:, 0].astype(np.int64)
    np.testing.assert_allclose(np.asarray(trace.marker.color), coherence[ids], rtol=1e-6)  # each point its own c_i
    assert trace.marker.color[-1] == np.float32(coherence.min())  # the lowest drawn last, on top


def test_side_by_side_keeps_every_point_in_both_panels(big):
    from perco_viz.figures import side_by_side_embeddings

    xy, labels, coherence, hover = big
    fig = side_by_side_embeddings(xy, xy[:, ::-1], color=coherence, color_kind="continuous", hover=hover)
    assert [type(t).__name__ for t in fig.data] == ["Scattergl", "Scattergl"]
    assert [len(t.x) for t in fig.data] == [100_000, 100_000]
    np.testing.assert_array_equal(fig.data[0].customdata, fig.data[1].customdata)  # same point, same place


def test_3d_stays_scatter3d_with_every_point(big):
    from perco_viz.figures import embedding_panel

    xy, labels, coherence, hover = big
    xyz = np.column_stack([xy, coherence])
    fig = embedding_panel(xyz, ev.coloring("coherence", coherence=coherence), method="pca", title="t", hover=hover)
    assert type(fig.data[0]).__name__ == "Scatter3d" and len(fig.data[0].x) == 100_000


def test_animation_draws_a_stated_sample_above_its_cap(sequence):
    from perco_viz.figures import animation_figure

    teacher, students, labels = sequence
    proj = ev.aligned_projections(teacher, students, "pca", 2)
    colorings = [ev.coloring("label", labels=labels)]
    hover = ev.hover_fields(np.arange(60), coherence=np.linspace(0, 1, 60))
    fig = animation_figure(proj, colorings, [0, 1, 2, 3], hover=hover, max_points=30)
    assert len(fig.frames) == 4
    for frame in fig.frames:
        assert sum(len(t.x) for t in frame.data) == 30
    ids = np.concatenate([np.asarray(t.customdata)[:, 0] for t in fig.frames[0].data]).astype(int)
    assert np.bincount(labels[ids]).tolist() == [10, 10, 10]  # stratified by the colour's classes
    assert "30 of the 60 points" in fig.layout.title.subtitle.text
    whole = animation_figure(proj, colorings, [0, 1, 2, 3])
    assert sum(len(t.x) for t in whole.frames[0].data) == 60 and not whole.layout.title.subtitle.text


def test_aligned_projections_on_a_fit_sample_say_so(sequence):
    teacher, students, labels = sequence
    proj = ev.aligned_projections(teacher, students[:2], "tsne", 2, labels=labels, fit_points=30)
    assert proj.teacher.shape == (60, 2) and proj.students.shape == (2, 60, 2) and np.isfinite(proj.students).all()
    assert proj.n_fit == 30 and proj.note.startswith("t-SNE fitted on 30 of 60 points; the others placed")
    assert ev.aligned_projections(teacher, students, "pca", 2).note is None
