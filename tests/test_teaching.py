"""The teaching view's computations (perco_viz.analysis.teaching: toy points, one anchor's view
of the loss, one step) and its figures (perco_viz.figures.teaching)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from perco_viz import figures
from perco_viz.analysis import teaching
from perco_viz.coherence import normalized_ranks
from perco_viz.losses.coherence import coherence_loss


@pytest.mark.parametrize("name", teaching.TOY_SETS)
@pytest.mark.parametrize("dim", [2, 3])
def test_toy_points_are_seeded_and_scaled(name, dim):
    x, y = teaching.toy_points(name, n=24, seed=3, dim=dim)
    x2, y2 = teaching.toy_points(name, n=24, seed=3, dim=dim)
    assert x.shape == (24, dim) and y.shape == (24,)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert np.abs(x).max() == pytest.approx(1.0)
    np.testing.assert_allclose(x.mean(0), 0.0, atol=1e-12)
    assert len(np.unique(np.round(x, 9), axis=0)) == 24  # every point visible


@pytest.mark.parametrize("bad", [{"name": "moons"}, {"dim": 4}, {"n": 2}, {"n": 10_000}])
def test_toy_points_rejects_bad_options(bad):
    with pytest.raises(ValueError):
        teaching.toy_points(**{"name": "blobs", "n": 20, "seed": 0, "dim": 2, **bad})


@pytest.fixture
def points():
    x, y = teaching.toy_points("blobs", n=16, seed=0, dim=2)
    s = teaching.make_state(x, y, arch="mlp", seed=1).student_points()
    return s, x


@pytest.mark.parametrize("kernel", ["ramp", "sigmoid"])
def test_soft_ranks_turn_hard_as_tau_shrinks(points, kernel):
    s, x = points
    gaps = []
    for tau in (1.0, 0.1, 0.01, 1e-5):
        v = teaching.anchor_view(s, x, anchor=2, tau=tau, kernel=kernel)
        gaps.append(np.nanmax(np.abs(v["student_soft"] - v["student_hard"])))
    assert gaps[0] > gaps[1] > gaps[-1]
    assert gaps[-1] < 1e-6
    assert gaps[0] > 0.01


@pytest.mark.parametrize("kernel", ["ramp", "sigmoid"])
@pytest.mark.parametrize("anchor", [0, 7, 15])
def test_loss_terms_average_to_the_loss_of_that_anchor(points, kernel, anchor):
    s, x = points
    v = teaching.anchor_view(s, x, anchor=anchor, tau=0.2, kernel=kernel)
    terms = v["terms"]
    assert np.isnan(terms[anchor]) and np.isfinite(np.delete(terms, anchor)).all()
    expected = coherence_loss(torch.tensor(s), torch.tensor(x), tau=0.2, kernel=kernel,
                              anchors=torch.tensor([anchor]))
    assert np.nanmean(terms) == pytest.approx(float(expected), rel=1e-10, abs=1e-12)
    assert v["loss"] == pytest.approx(float(expected), rel=1e-10, abs=1e-12)


def test_anchor_view_ranks_match_the_library(points):
    s, x = points
    v = teaching.anchor_view(s, x, anchor=4, tau=0.1)
    np.testing.assert_allclose(v["teacher_ranks"], normalized_ranks(x)[4], equal_nan=True)
    np.testing.assert_allclose(v["student_hard"], normalized_ranks(s)[4], equal_nan=True)
    pos = np.delete(v["teacher_position"], 4)
    assert sorted(pos.tolist()) == list(range(1, 16))  # 1 = nearest … n − 1 = farthest
    assert v["gradient"].shape == s.shape


def test_anchor_view_gradient_is_autograd_of_the_anchor_loss(points):
    s, x = points
    v = teaching.anchor_view(s, x, anchor=3, tau=0.3, kernel="sigmoid")
    eps = 1e-6
    i, d = 5, 1
    up, down = s.copy(), s.copy()
    up[i, d] += eps
    down[i, d] -= eps
    f = [teaching.anchor_view(p, x, anchor=3, tau=0.3, kernel="sigmoid")["loss"] for p in (up, down)]
    assert v["gradient"][i, d] == pytest.approx((f[0] - f[1]) / (2 * eps), rel=1e-4, abs=1e-9)


def test_anchor_view_checks_its_inputs(points):
    s, x = points
    with pytest.raises(ValueError, match="anchor"):
        teaching.anchor_view(s, x, anchor=16, tau=0.1)
    with pytest.raises(ValueError, match="tau"):
        teaching.anchor_view(s, x, anchor=0, tau=0.0)
    with pytest.raises(ValueError, match="rows"):
        teaching.anchor_view(s[:10], x, anchor=0, tau=0.1)


@pytest.mark.parametrize("arch", teaching.STUDENT_ARCHS)
@pytest.mark.parametrize("kernel", ["ramp", "sigmoid"])
def test_a_small_gradient_step_decreases_the_loss(arch, kernel):
    x, y = teaching.toy_points("circles", n=20, seed=0, dim=2)
    state = teaching.make_state(x, y, arch=arch, seed=0, optimizer="sgd", tau=0.3, kernel=kernel)
    new = teaching.train_step(state, lr=1e-3)
    assert new.step == 1 and state.step == 0
    assert new.history[-1] < state.history[-1]
    assert state.loss() == pytest.approx(state.history[-1])  # the old state is untouched


def test_points_student_moves_along_minus_the_gradient_arrows():
    x, y = teaching.toy_points("blobs", n=12, seed=0, dim=2)
    state = teaching.make_state(x, y, arch="points", optimizer="sgd", tau=0.2)
    loss, grad = teaching.batch_gradient(state.student_points(), x, tau=0.2)
    assert loss == pytest.approx(state.history[0])
    new = teaching.train_step(state, lr=0.5)
    np.testing.assert_allclose(new.student_points(), state.student_points() - 0.5 * grad, atol=1e-12)


def test_training_with_adam_makes_the_student_coherent():
    from perco_viz.coherence import perception_coherence

    x, y = teaching.toy_points("swiss_roll", n=20, seed=0, dim=2)
    state = teaching.make_state(x, y, arch="mlp", seed=0)
    pc0 = perception_coherence(state.student_points(), x)
    for _ in range(30):
        state = teaching.train_step(state)
    assert state.step == 30 and len(state.history) == 31
    assert state.history[-1] < 0.2 * state.history[0]
    assert perception_coherence(state.student_points(), x) > max(pc0, 0.95)


@pytest.mark.parametrize("point, expected", [
    ({"curve_number": 0, "point_index": 5, "customdata": [6]}, 6),
    ({"curve_number": 0, "point_index": 5, "customdata": 6}, 6),
    ({"curve_number": 0, "point_index": 5}, 6),  # anchor 2 is not in the trace: index 5 is point 6
    ({"curve_number": 1, "point_index": 0}, None),  # the anchor's own trace
    ({"customdata": [99]}, None),
    ({"customdata": "x"}, None),
])
def test_clicked_point(point, expected):
    assert teaching.clicked_point(point, n=10, anchor=2) == expected


def test_figures_of_the_page(points):
    s, x = points
    view = teaching.anchor_view(s, x, anchor=0, tau=0.05)
    fig = figures.soft_vs_hard_figure(view)
    assert "τ = 0.05" in fig.layout.title.text and fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    assert len(fig.data[1].x) == 15
    hist = figures.loss_history_figure([0.1, 0.05, 0.02])
    assert list(hist.data[0].y) == [0.1, 0.05, 0.02] and hist.layout.xaxis.title.text == "optimizer steps"


def test_two_students_bent_keeps_the_order_scrambled_does_not():
    from perco_viz import coherence
    ex = teaching.two_students()
    assert ex["pc_bent"] > 0.95 > 0.75 > ex["pc_scrambled"] > 0.5
    assert ex["pc_bent"] == coherence.perception_coherence(ex["bent"], ex["teacher"])
    # the bent student really is another geometry: its distances are no scaled copy of the teacher's
    d_t, d_b = (coherence.pairwise_dissimilarity(torch.tensor(ex[k])).numpy() for k in ("teacher", "bent"))
    ratio = d_b[d_t > 0] / d_t[d_t > 0]
    assert ratio.max() / ratio.min() > 1.5
    fig = figures.two_students_figure(ex)
    assert len(fig.data) == 3 and "PC 0.98" in fig.layout.annotations[1].text


def test_arrows_point_downhill_and_are_scaled_to_the_picture():
    points = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 2.0]])
    grad = np.array([[1.0, 0.0], [0.0, -3.0], [0.0, 0.0]])
    a = teaching.arrows(grad, points, share=0.25)
    np.testing.assert_allclose(a, [[-1 / 3, 0.0], [0.0, 1.0], [0.0, 0.0]])  # longest = ¼ of the extent 4
    assert teaching.arrows(np.zeros((3, 2)), points) is None


def test_neighbour_table_is_in_the_teachers_order(points):
    s, x = points
    view = teaching.anchor_view(s, x, anchor=5, tau=0.1)
    table = teaching.neighbour_table(view)
    assert 5 not in table["point"] and len(table["point"]) == 15
    assert table["teacher"] == sorted(table["teacher"]) == list(range(1, 16))
    assert np.allclose(table["(R̃ − R)²"], [view["terms"][j] for j in table["point"]])


def test_anchor_view_is_one_row_of_the_losss_own_terms(points):
    """The page shows exactly what the loss averages: no copy of its normalisation."""
    from perco_viz.losses.coherence import loss_terms

    s, x = points
    view = teaching.anchor_view(s, x, anchor=9, tau=0.05, kernel="sigmoid")
    lt = loss_terms(torch.tensor(s), torch.tensor(x), tau=0.05, kernel="sigmoid")
    np.testing.assert_allclose(np.delete(view["terms"], 9), lt.terms[9].numpy(), rtol=1e-12)
    np.testing.assert_allclose(np.delete(view["student_distance"], 9), lt.student_normalized[9].numpy(), rtol=1e-12)
    source = open(teaching.__file__, encoding="utf-8").read()
    assert "std(" not in source and "plotly" not in source.replace("no plotly", "")


# --------------------------------------------------------------------------- readable labels
CHAR_PX, LINE_PX, MARKER_PX, PLOT_PX = 7.0, 15.0, 5.5, 420.0  # 13 px text, 11 px markers, a ~420 px plot


def _label_boxes(trace, extent: float) -> list[tuple[float, float, float, float]]:
    """Boxes of the labels a 2-D points trace shows, in px, as plotly places them around each marker."""
    px = PLOT_PX / extent
    boxes = []
    positions = trace.textposition if not isinstance(trace.textposition, str) else [trace.textposition] * len(trace.x)
    for x, y, text, place in zip(trace.x, trace.y, trace.text, positions):
        if not text:
            continue
        w, h = len(text) * CHAR_PX, LINE_PX
        vertical, horizontal = place.split()
        cx = x * px + {"left": -(w / 2 + MARKER_PX), "center": 0.0, "right": w / 2 + MARKER_PX}[horizontal]
        cy = y * px + {"top": h / 2 + MARKER_PX, "middle": 0.0, "bottom": -(h / 2 + MARKER_PX)}[vertical]
        boxes.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    return boxes


@pytest.mark.parametrize("name", teaching.TOY_SETS)
@pytest.mark.parametrize("n", [20, 40])
def test_teaching_labels_do_not_overlap(name, n):
    """Each shown label overlaps no other label and no other point; a label left out keeps its
    text in the hover, and most labels are shown (the issue: overlapping labels in the scatters)."""
    points, labels = teaching.toy_points(name, n, 0, 2)
    state = teaching.make_state(points, labels)
    student = state.student_points()
    view = teaching.anchor_view(student, points, 0, 0.1)
    for xy in (points, student):
        fig = figures.teaching_points_figure(xy, 0, view["teacher_position"], view["student_position"])
        trace = fig.data[0]
        extent = float(np.ptp(xy, axis=0).max())
        boxes = _label_boxes(trace, extent)
        assert len(boxes) >= 0.5 * (n - 1)
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)
        px = PLOT_PX / extent
        shown = [(x * px, y * px) for x, y, t in zip(trace.x, trace.y, trace.text) if t]
        for box in boxes:  # no label over another point's marker
            covered = [p for p in shown if box[0] < p[0] < box[2] and box[1] < p[1] < box[3]]
            assert not covered, (box, covered)
        hover = [row[1] for row in trace.customdata]
        assert all(" / " in h for h in hover) and len(hover) == n - 1
        assert [int(row[0]) for row in trace.customdata] == [i for i in range(n) if i != 0]
