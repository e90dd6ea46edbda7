"""perco_viz.figures: every figure titled, labelled, with the expected traces; the Embeddings
page's panel and animation; heatmap downsampling; thumbnails; HTML/PNG export."""

from __future__ import annotations

import base64
import importlib.util
import io

import numpy as np
import plotly.graph_objects as go
import pytest

from perco_viz import figures as F


@pytest.fixture
def probe(rng):
    """(120, 2) coordinates, (120,) labels in 4 classes, (120,) c_i in [0.5, 1]."""
    labels = np.repeat(np.arange(4), 30)
    return rng.normal(size=(120, 2)), labels, rng.uniform(0.5, 1.0, 120)


def _titled(fig: go.Figure, *axes: str) -> None:
    """A non-empty title and, for each axis name (``xaxis``, ``yaxis2``, ...), a non-empty title."""
    assert isinstance(fig, go.Figure)
    assert fig.layout.title.text
    for name in axes:
        assert fig.layout[name].title.text, f"{name} has no title"


def _points(fig: go.Figure) -> int:
    return sum(len(t.x) for t in fig.data if t.x is not None)


# ----------------------------------------------------------------------------- embeddings
def test_embedding_by_label_has_one_trace_per_class(probe):
    xy, labels, _ = probe
    fig = F.embedding_figure(xy, color=labels, labels_text=["a", "b", "c", "d"], title="probe set")
    _titled(fig, "xaxis", "yaxis")
    assert [t.name for t in fig.data] == ["a", "b", "c", "d"]
    assert all(isinstance(t, go.Scatter) for t in fig.data) and _points(fig) == 120  # SVG: few points
    ids = np.concatenate([np.asarray(t.customdata)[:, 0] for t in fig.data])
    np.testing.assert_array_equal(np.sort(ids), np.arange(120))  # customdata[:, 0] = the point's id
    assert fig.layout.legend.title.text == "class"


def test_embedding_continuous_has_a_colour_bar_and_highlight(probe):
    xy, _, c = probe
    fig = F.embedding_figure(xy, color=c, color_kind="continuous", title="c_i", highlight=[3, 7],
                             hover=[f"row {i}" for i in range(120)])
    _titled(fig, "xaxis", "yaxis")
    assert len(fig.data) == 2 and fig.data[1].name == "selected" and len(fig.data[1].x) == 2
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (0.0, 1.0)
    assert fig.layout.coloraxis.colorbar.title.text
    assert fig.data[0].marker.color[-1] == c.min()  # the lowest c_i drawn last, on top
    with pytest.raises(ValueError, match="color_kind"):
        F.embedding_figure(xy, color=c, color_kind="hue")
    with pytest.raises(ValueError, match="one entry per point"):
        F.embedding_figure(xy, color=c[:5], color_kind="continuous")


def test_embedding_3d_uses_scatter3d(rng):
    fig = F.embedding_figure(rng.normal(size=(50, 3)), color=np.arange(50) % 3, title="3-D")
    assert all(isinstance(t, go.Scatter3d) for t in fig.data) and len(fig.data) == 3
    assert fig.layout.title.text and fig.layout.scene.xaxis.title.text and fig.layout.scene.zaxis.title.text


def test_side_by_side_same_traces_and_order_in_both_panels(probe):
    xy, labels, c = probe
    fig = F.side_by_side_embeddings(xy, 2 * xy, color=labels)
    _titled(fig, "xaxis", "yaxis", "xaxis2", "yaxis2")
    assert len(fig.data) == 8
    left, right = fig.data[:4], fig.data[4:]
    for a, b in zip(left, right):
        assert a.name == b.name and a.legendgroup == b.legendgroup
        np.testing.assert_array_equal(a.customdata, b.customdata)  # linked by point index
    assert all(t.showlegend for t in left) and not any(t.showlegend for t in right)
    fig3 = F.side_by_side_embeddings(np.c_[xy, c], np.c_[xy, c], color=c, color_kind="continuous")
    assert [type(t) for t in fig3.data] == [go.Scatter3d, go.Scatter3d]
    with pytest.raises(ValueError, match="same shape"):
        F.side_by_side_embeddings(xy, xy[:10])


@pytest.fixture
def page_projections(rng):
    """What the Embeddings page draws: ``make(dim)`` → projections of a teacher and 4 student
    snapshots of 60 points (:class:`~perco_viz.analysis.embeddings.AlignedProjections`), and labels."""
    from perco_viz.analysis.embeddings import AlignedProjections

    def make(dim: int) -> AlignedProjections:
        return AlignedProjections("pca", dim, rng.normal(size=(60, dim)), rng.normal(size=(4, 60, dim)))

    return make, np.repeat(np.arange(3), 20)


def test_embedding_panel_2d_and_highlight(page_projections):
    from perco_viz.analysis import embeddings as ev

    project, labels = page_projections
    proj = project(2)
    ids = np.arange(60) + 1000
    color = ev.coloring("label", labels=labels, class_names=["a", "b", "c"])
    fig = F.embedding_panel(proj.teacher, color, method="pca", title="Teacher", ids=ids,
                            hover=ev.hover_fields(np.arange(60), labels=labels), highlight=[1000, 1001, 1059],
                            ranges=proj.ranges()["teacher"])
    classes = [t for t in fig.data if t.name != "selected"]
    assert {t.type for t in fig.data} == {"scatter"} and [t.name for t in classes] == ["a", "b", "c"]  # SVG: few points
    assert fig.layout.xaxis.title.text == "PC 1" and fig.layout.yaxis.title.text == "PC 2"
    assert fig.layout.title.text == "Teacher" and fig.layout.legend.title.text == "class"
    faded = sorted(int(t.customdata[i][0]) for t in classes for i in t.selectedpoints)
    assert faded == [1000, 1001, 1059]  # the others fade
    ring = next(t for t in fig.data if t.name == "selected")
    assert sorted(int(c[0]) for c in ring.customdata) == [1000, 1001, 1059]
    assert sum(len(t.x) for t in classes) == 60
    assert list(fig.layout.xaxis.range) == list(proj.ranges()["teacher"][0])


def test_embedding_panel_3d_coherence(page_projections):
    from perco_viz.analysis import embeddings as ev

    proj = page_projections[0](3)
    coh = np.linspace(0.3, 1.0, 60)
    fig = F.embedding_panel(proj.students[-1], ev.coloring("coherence", coherence=coh), method="umap",
                            title="Student", highlight=[4])
    assert fig.data[0].type == "scatter3d"
    assert fig.layout.scene.xaxis.title.text == "UMAP 1" and fig.layout.scene.zaxis.title.text == "UMAP 3"
    axis = fig.layout.coloraxis
    assert axis.colorbar.title.text == "c_i" and (axis.cmin, axis.cmax) == (0.0, 1.0)
    assert fig.data[0].marker.color[-1] == pytest.approx(0.3)  # lowest c_i drawn last: on top
    assert fig.data[-1].name == "selected" and len(fig.data[-1].x) == 1


def test_animation_figure(page_projections):
    from perco_viz.analysis import embeddings as ev

    project, labels = page_projections
    proj = project(2)
    color = ev.coloring("label", labels=labels)
    fig = F.animation_figure(proj, [color], [0, 1, 2, 3])
    assert len(fig.frames) == 4 and [f.name for f in fig.frames] == ["0", "1", "2", "3"]
    assert fig.layout.sliders[0].steps[-1].label == "3" and fig.layout.xaxis.title.text == "PC 1"
    np.testing.assert_allclose(fig.frames[1].data[0].x, proj.students[1][labels == 0, 0])
    assert fig.layout.updatemenus[0].buttons[0].method == "animate"
    with pytest.raises(ValueError, match="one colouring"):
        F.animation_figure(proj, [color, color], [0, 1, 2, 3])


def test_side_by_side_default_title_is_plain_words(probe):
    """The default title was an internal name ("teacher | student embedding plots")."""
    xy, labels, _ = probe
    title = F.side_by_side_embeddings(xy, xy, color=labels).layout.title.text
    assert "|" not in title and "embedding plots" not in title
    assert title.lower().startswith("teacher and student")


def test_search_matches_keep_colour_and_grey_or_hide_the_others(probe):
    """``matches``: the points a search keeps are drawn in colour, the others grey beneath them (or
    hidden), the same in teacher and student; colours and the colour bar's range do not change."""
    from perco_viz.analysis import embeddings as ev

    xy, labels, c = probe
    ids = np.arange(120) + 500
    keep = ids[(labels == 2) | (c < 0.6)]

    def drawn(traces):
        grey = sorted(int(i[0]) for t in traces if t.name == "not matching" for i in t.customdata)
        coloured = sorted(int(i[0]) for t in traces if t.name not in ("not matching", "selected")
                          for i in t.customdata)
        return coloured, grey

    fig = F.side_by_side_embeddings(xy, 2 * xy, color=labels, ids=ids, matches=keep)
    left, right = fig.data[: len(fig.data) // 2], fig.data[len(fig.data) // 2:]
    for part in (left, right):
        assert drawn(part) == (sorted(keep.tolist()), sorted(set(ids.tolist()) - set(keep.tolist())))
        assert part[0].name == "not matching"  # drawn first: beneath the coloured points
    full = F.embedding_figure(xy, color=labels, ids=ids)
    colour_of = {t.name: t.marker.color for t in full.data}
    assert all(t.marker.color == colour_of[t.name] for t in left if t.name in colour_of)  # a class keeps its colour
    hidden = F.embedding_figure(xy, color=labels, ids=ids, matches=keep, hide_others=True)
    assert drawn(hidden.data) == (sorted(keep.tolist()), [])
    color = ev.coloring("meta:v", meta=__import__("pandas").DataFrame({"v": np.linspace(-3, 7, 120)}))
    panel = F.embedding_panel(xy, color, method="pca", title="t", ids=ids, matches=ids[:5], highlight=[500])
    assert (panel.layout.coloraxis.cmin, panel.layout.coloraxis.cmax) == (-3, 7)  # the range of all points
    assert drawn(panel.data)[0] == list(range(500, 505))
    assert F.embedding_figure(xy, color=labels, ids=ids, matches=[]).data[0].name == "not matching"


def test_embedding_panel_legend_under_the_plot_and_a_marked_point(page_projections):
    """The page's panels keep their legend under the plot — outside the data, clear of the title,
    subtitle and colour bar (it sat on the subtitle with c_i colouring) — and ring the inspected
    input without fading the others (a selection fades them)."""
    from perco_viz.analysis import embeddings as ev

    proj = page_projections[0](2)
    for color in (ev.coloring("coherence", coherence=np.linspace(0.5, 1, 60)),
                  ev.coloring("label", labels=page_projections[1])):
        fig = F.embedding_panel(proj.teacher, color, method="pca", title="T", subtitle="a line under it",
                                highlight=[1, 2], marked=7)
        legend = fig.layout.legend
        assert legend.orientation == "h" and legend.y < 0 and legend.yanchor == "top"
    fig = F.embedding_panel(proj.teacher, ev.coloring("label", labels=page_projections[1]), method="pca",
                            title="T", marked=7)
    ring = [t for t in fig.data if t.name == "inspected input"]
    assert len(ring) == 1 and [int(c[0]) for c in ring[0].customdata] == [7]
    assert all(t.selectedpoints is None and t.marker.opacity is None for t in fig.data)  # nothing fades
    assert not [t for t in F.embedding_panel(proj.teacher, ev.coloring("label", labels=page_projections[1]),
                                             method="pca", title="T", marked=99).data if t.name == "inspected input"]


def test_method_axis_titles():
    assert F.method_axis_titles("pca", 2) == ["PC 1", "PC 2"]
    assert F.method_axis_titles("tsne", 3) == ["t-SNE 1", "t-SNE 2", "t-SNE 3"]


# ----------------------------------------------------------------------------- curves and bars
def _records(n: int = 10) -> list[dict]:
    return [{"epoch": e / 2, "step": e, "train_loss": 1 / (e + 1), "pc": 0.6 + e / 50 if e % 2 == 0 else None,
             "knn_acc": 0.8, "wall_s": float(e)} for e in range(n)]


def test_training_curves_three_panels_skip_missing_values():
    fig = F.training_curves(_records())
    _titled(fig, "xaxis", "yaxis", "xaxis2", "yaxis2", "xaxis3", "yaxis3")
    assert [len(t.x) for t in fig.data] == [10, 5, 10]  # PC only where recorded
    assert max(fig.data[0].x) == 4.5  # fractional epochs
    stacked = F.training_curves(_records(), stacked=True)
    assert len(stacked.data) == 3 and stacked.layout.yaxis3.title.text
    empty = F.training_curves([{"epoch": 0, "pc": None}])
    assert not empty.data and empty.layout.annotations


def test_compare_curves_one_line_per_run():
    fig = F.compare_curves({"coherence": _records(), "rkd": _records(4), "empty": []}, "pc")
    _titled(fig, "xaxis", "yaxis")
    assert [t.name for t in fig.data] == ["coherence", "rkd"]


def test_compare_embeddings_one_panel_per_run(rng):
    xy = {"teacher": rng.normal(size=(30, 2)), "a": rng.normal(size=(30, 2)), "b": rng.normal(size=(30, 2))}
    labels = np.arange(30) % 3
    fig = F.compare_embeddings(xy, labels, class_names=["x", "y", "z"], columns=2)
    assert len(fig.data) == 9 and [t.name for t in fig.data[:3]] == ["x", "y", "z"]
    assert sum(t.showlegend for t in fig.data) == 3  # one legend entry per class
    plain = F.compare_embeddings({"a": xy["a"], "b": xy["b"]}, coherence={"a": np.linspace(0.5, 1, 30)})
    assert len(plain.data) == 2 and plain.data[0].marker.colorbar.title.text == "c_i"
    assert len(plain.data[0].marker.color) == 30 and plain.data[1].marker.color is None


def test_metrics_bar_mean_and_std():
    rows = [{"method": m, "seed": s, "pc": v} for m, vals in
            {"teacher": [1.0], "coherence": [0.9, 0.8], "rkd": [0.7, 0.7]}.items() for s, v in enumerate(vals)]
    fig = F.metrics_bar(rows, "pc")
    _titled(fig, "xaxis", "yaxis")
    bar = fig.data[0]
    assert list(bar.x) == ["coherence", "rkd"]  # the teacher is the dashed reference line
    np.testing.assert_allclose(bar.y, [0.85, 0.7])
    np.testing.assert_allclose(bar.error_y.array, [np.std([0.9, 0.8], ddof=1), 0.0])
    summary = F.metrics_bar([{"method": "a", "pc_mean": 0.5, "pc_std": 0.1}], "pc", reference=None)
    assert list(summary.data[0].y) == [0.5] and list(summary.data[0].error_y.array) == [0.1]


# ----------------------------------------------------------------------------- matrices
def _agreement(rng, n: int) -> np.ndarray:
    a = rng.uniform(0.0, 1.0, size=(n, n))
    np.fill_diagonal(a, np.nan)
    return a


def test_heatmap_small_is_drawn_as_is(rng):
    A = _agreement(rng, 40)
    labels = rng.integers(0, 3, 40)
    fig = F.rank_agreement_heatmap(A, labels=labels, class_names=["x", "y", "z"])
    _titled(fig, "xaxis", "yaxis")
    (hm,) = fig.data
    order = np.argsort(labels, kind="stable")
    np.testing.assert_array_equal(np.asarray(hm.z, dtype=float), A[np.ix_(order, order)])
    assert (hm.zmin, hm.zmax) == (0.0, 1.0) and hm.colorbar.title.text
    assert len(fig.layout.shapes) == 2 * 2  # two class boundaries, a line on each axis
    assert list(fig.layout.xaxis.ticktext) == ["x", "y", "z"]


def test_heatmap_downsamples_by_block_mean(rng):
    A = _agreement(rng, 1001)
    fig = F.rank_agreement_heatmap(A, max_cells=100)
    z = np.asarray(fig.data[0].z, dtype=float)
    assert z.shape[0] == z.shape[1] <= 100
    assert np.nanmin(z) >= 0.0 and np.nanmax(z) <= 1.0
    assert "mean of 11×11" in fig.layout.title.subtitle.text
    Z, b = F.block_mean(A, 100)
    assert b == 11 and Z.shape == (91, 91)  # ceil(1001 / 11)
    np.testing.assert_allclose(Z[1, 2], np.nanmean(A[11:22, 22:33]))
    np.testing.assert_allclose(Z[0, 0], np.nanmean(A[:11, :11]))  # NaN diagonal left out
    np.testing.assert_allclose(Z[90, 90], np.nanmean(A[990:, 990:]))  # a partial block: padding left out
    Z32, _ = F.block_mean(A.astype(np.float32), 100)  # the app's float32 matrices
    np.testing.assert_allclose(Z32, Z, rtol=1e-5)
    assert np.isnan(F.block_mean(np.full((4, 4), np.nan), 2)[0]).all()


def test_ranks_heatmap_uses_the_same_helper(rng):
    R = _agreement(rng, 30)
    fig = F.ranks_heatmap(R, which="student", order=np.arange(30)[::-1])
    _titled(fig, "xaxis", "yaxis")
    assert "R_S" in fig.layout.title.text
    np.testing.assert_array_equal(np.asarray(fig.data[0].z, dtype=float), R[::-1, ::-1])
    with pytest.raises(ValueError, match="square"):
        F.ranks_heatmap(R[:, :5])


# ----------------------------------------------------------------------------- pairs and anchors
def test_shepard_samples_pairs_and_annotates(rng):
    t = rng.uniform(size=30_000)
    s = t**2 + 0.01 * rng.normal(size=30_000)
    fig = F.shepard_figure(t, s, pc=0.93, max_points=5000)
    _titled(fig, "xaxis", "yaxis")
    assert fig.layout.xaxis.title.text == "teacher dissimilarity"
    assert len(fig.data) == 1 and len(fig.data[0].x) == 5000
    note = fig.layout.annotations[0].text
    assert "PC = 0.930" in note and "Spearman ρ = 0.99" in note


def test_anchor_neighbours_slope_chart(rng):
    from perco_viz.analysis.rank_agreement import anchor_neighbours

    x = rng.normal(size=(25, 3))
    table = anchor_neighbours(x + 0.3 * rng.normal(size=x.shape), x, 0, k=5)
    fig = F.anchor_neighbours_figure(table, anchor=0)
    _titled(fig, "xaxis", "yaxis")
    assert len(fig.data) == len(table) and fig.layout.yaxis.type == "log"


def test_anchor_neighbours_labels_never_overlap():
    """Issue 12: the labels of the slope chart overlapped (ranks 9, 10, 11… are close on a log axis)."""
    import pandas as pd

    k = 30
    teacher = np.arange(1, k + 1)
    student = np.r_[np.arange(1, k // 2 + 1), np.arange(200, 200 + k - k // 2)]  # half kept, half pushed away
    table = pd.DataFrame({"point": np.arange(100, 100 + k), "teacher_rank": teacher, "student_rank": student,
                          "in_teacher_top_k": True})
    height = 520
    fig = F.anchor_neighbours_figure(table, anchor=0, height=height)
    from perco_viz.figures.rank_agreement import LABEL_GAP_PX

    assert len(fig.data) == k  # one line per neighbour: hover names each one
    hi, lo = fig.layout.yaxis.range  # reversed log axis, in decades
    px_per_decade = (height - fig.layout.margin.t - fig.layout.margin.b) / (hi - lo)
    for side in (0, 1):
        ys = sorted(np.log10(tr.y[side]) for tr in fig.data if tr.text[side])
        assert len(ys) >= 5  # still labelled where there is room
        assert np.diff(ys).min() * px_per_decade >= LABEL_GAP_PX - 1e-9
    teacher_side = {int(tr.text[0][1:]) for tr in fig.data if tr.text[0]}
    assert 100 in teacher_side  # rank 1 (room at the top)


def test_compact_matrix_and_mark_row(rng):
    fig = F.rank_agreement_heatmap(rng.uniform(size=(40, 40)), max_cells=10)
    assert F.compact_matrix(fig, n=40, max_cells=10, how="by class") is fig
    assert fig.layout.title.subtitle.text == "40 inputs, by class; each cell = mean of 4×4"
    assert list(fig.layout.yaxis.range) == [39.5, -0.5] and fig.data[0].colorbar.orientation == "h"
    F.mark_row(fig, 7)
    assert fig.layout.annotations[-1].y == 7 and fig.layout.annotations[-1].showarrow


def test_row_picker_trace_one_marker_row_per_drawn_row():
    ids = np.arange(10) + 100
    c = np.linspace(1.0, 0.0, 10)  # the last row of each block has the lowest c_i
    trace = F.row_picker_trace(ids, coherence=c, row_agreement=np.full(10, 0.5), names=list("abcdefghij"),
                               max_rows=5, max_cols=5)
    assert isinstance(trace, go.Scattergl)
    assert sorted(set(trace.y)) == [0.5, 2.5, 4.5, 6.5, 8.5]  # blocks of 2 rows, markers at their centres
    anchors = {row[0] for row in trace.customdata}
    assert anchors == {101.0, 103.0, 105.0, 107.0, 109.0}  # each block's lowest c_i
    assert all(len(row) == 3 for row in trace.customdata)
    plain = F.row_picker_trace(ids, max_rows=300)
    assert sorted({row[0] for row in plain.customdata}) == list(map(float, ids)) and plain.text is None


# ----------------------------------------------------------------------------- c_i
def test_coherence_over_epochs_one_violin_per_snapshot(rng):
    cs = [rng.uniform(0.5, 1, 8000) for _ in range(3)]
    fig = F.coherence_over_epochs(cs, [0, 0.5, 2], max_points=1000)
    _titled(fig, "xaxis", "yaxis")
    assert [type(t) for t in fig.data] == [go.Violin] * 3 and all(len(t.y) == 1000 for t in fig.data)
    with pytest.raises(ValueError, match="epochs"):
        F.coherence_over_epochs(cs, [0, 1])


def test_coherence_histogram_marks_the_10th_percentile(probe):
    _, _, c = probe
    fig = F.coherence_histogram(c)
    _titled(fig, "xaxis", "yaxis")
    assert sum(fig.data[0].y) == 120
    p10 = next(t for t in fig.data if t.name.startswith("10th percentile"))
    assert p10.x[0] == pytest.approx(np.percentile(c, 10))


def test_coherence_histogram_legend_under_the_plot(probe):
    """Issue 12: at 1024 px the legend on top ran into the title; now under the x axis, with room."""
    fig = F.coherence_histogram(probe[2])
    assert fig.layout.legend.y < 0 and fig.layout.legend.yanchor == "top"
    assert fig.layout.margin.b >= 90


def test_per_class_coherence_boxes(probe):
    _, labels, c = probe
    fig = F.per_class_coherence(c, labels, ["a", "b", "c", "d"])
    _titled(fig, "xaxis", "yaxis")
    assert len(fig.data) == 4 and all(isinstance(t, go.Box) for t in fig.data)
    assert fig.data[0].median[0] == pytest.approx(np.median(c[labels == 0]))


# ----------------------------------------------------------------------------- teaching view
def test_teaching_points_with_arrows(rng):
    pts = rng.normal(size=(8, 2))
    rt = np.r_[np.nan, np.arange(1, 8)]
    rs = np.r_[np.nan, 2, 1, np.arange(3, 8)]
    fig = F.teaching_points_figure(pts, 0, rt, rs, arrows=0.1 * rng.normal(size=(8, 2)))
    _titled(fig, "xaxis", "yaxis")
    assert [t.name for t in fig.data] == ["points", "anchor"] and len(fig.data[0].x) == 7
    assert fig.data[0].text[0] == "1 / 2"
    assert len(fig.layout.annotations) == 8  # one arrow per point
    fig3 = F.teaching_points_figure(rng.normal(size=(8, 3)), 0, rt, rs, arrows=rng.normal(size=(8, 3)))
    assert [type(t) for t in fig3.data] == [go.Scatter3d] * 3


def test_soft_step_and_its_kernels():
    x = np.array([-1.0, 0.0, 1.0])
    g = F.soft_step_functions(x, 0.5)
    np.testing.assert_allclose(g["hard"], [0, 0.5, 1])
    np.testing.assert_allclose(g["sigmoid"], 1 / (1 + np.exp(-x / 0.5)))
    np.testing.assert_allclose(g["ramp"], [0, 0.5, 1])
    fig = F.soft_step_figure(0.25, "sigmoid")
    _titled(fig, "xaxis", "yaxis")
    assert len(fig.data) == 3 and "in use" in fig.data[1].name
    with pytest.raises(ValueError, match="tau"):
        F.soft_step_figure(0.0)


def test_loss_terms_split_too_far_and_too_near():
    rt = np.array([np.nan, 0.0, 0.5, 1.0])
    rs = np.array([np.nan, 0.2, 0.5, 0.6])
    fig = F.loss_terms_figure(rt, rs)
    _titled(fig, "xaxis", "yaxis")
    far, near = fig.data
    assert list(far.x) == ["#1"] and list(near.x) == ["#2", "#3"]
    np.testing.assert_allclose(np.r_[far.y, near.y], [0.04, 0.0, 0.16])
    assert "0.0667" in fig.layout.title.text


# ----------------------------------------------------------------------------- thumbnails, export
def _open_png(uri: str) -> np.ndarray:
    """The pixels of a data-URI PNG, read back with Pillow."""
    from PIL import Image

    assert uri.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert image.format == "PNG"
    return np.asarray(image)


def test_image_data_uri_is_a_valid_png(rng):
    img = rng.integers(0, 256, size=(5, 7), dtype=np.uint8)
    grey = _open_png(F.image_data_uri(img, scale=3))
    assert grey.shape == (15, 21)
    np.testing.assert_array_equal(grey, np.repeat(np.repeat(img, 3, 0), 3, 1))
    rgb = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_open_png(F.image_data_uri(rgb, scale=1)), rgb)
    rgba = rng.integers(0, 256, size=(3, 2, 4), dtype=np.uint8)
    np.testing.assert_array_equal(_open_png(F.image_data_uri(rgba, scale=2)), np.repeat(np.repeat(rgba, 2, 0), 2, 1))
    np.testing.assert_array_equal(_open_png(F.image_data_uri(img[:, :, None], scale=1)), img)
    with pytest.raises(ValueError, match="uint8"):
        F.image_data_uri(np.zeros((4, 4)))


def test_thumbnail_strip_html_escapes_and_frames():
    images = (np.arange(3 * 8 * 8) % 256).astype(np.uint8).reshape(3, 8, 8)
    html = F.thumbnail_strip_html(images, ["a", "b", "<c>"], size=56)
    assert html.count("<img ") == 3 and "data:image/png;base64," in html
    assert "&lt;c&gt;" in html and "<c>" not in html
    assert 'width="56"' in html and html.count("#c9ccd3") == 3  # default frames
    framed = F.thumbnail_strip_html(images[:2], ["x", "y"], size=64, borders=["#ff0000", "#00ff00"])
    assert "3px solid #ff0000" in framed and "3px solid #00ff00" in framed


def test_figure_html_is_standalone(probe):
    xy, labels, _ = probe
    html = F.figure_html(F.embedding_figure(xy, color=labels, title="export me"))
    assert html.rstrip().endswith("</html>") and "plotly" in html.lower() and "export me" in html
    assert '<script src="http' not in html  # plotly.js inlined: works offline


def test_figure_image_needs_kaleido(probe, monkeypatch):
    fig = F.embedding_figure(probe[0], title="x")
    with pytest.raises(ValueError, match="fmt"):
        F.figure_image(fig, "gif")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="pip install kaleido"):
        F.figure_image(fig, "png")


def test_every_figure_uses_the_template(probe, rng):
    xy, labels, c = probe
    figs = [F.embedding_figure(xy), F.training_curves(_records()), F.coherence_histogram(c),
            F.rank_agreement_heatmap(_agreement(rng, 10)), F.soft_step_figure(0.1)]
    for fig in figs:
        assert fig.layout.template.layout.colorway[0] == F.PRIMARY
        assert fig.layout.template.layout.paper_bgcolor == "white"


def test_embedding_plots_are_svg_for_few_points_and_webgl_for_many():
    from perco_viz.figures import WEBGL_ABOVE, embedding_figure

    few = embedding_figure(np.zeros((WEBGL_ABOVE, 2)), color=np.arange(WEBGL_ABOVE) % 3)
    many = embedding_figure(np.zeros((WEBGL_ABOVE + 1, 2)), color=np.arange(WEBGL_ABOVE + 1) % 3)
    assert {t.type for t in few.data} == {"scatter"}
    assert {t.type for t in many.data} == {"scattergl"}
