"""perco_viz.analysis.rank_agreement: orderings, rank matrices, anchor neighbours, Shepard pairs, Spearman's ρ."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from perco_viz.analysis import rank_agreement as an
from perco_viz.coherence import (
    normalized_ranks,
    pairwise_dissimilarity,
    rank_agreement,
)


@pytest.fixture
def pair(rng):
    """(60, 8) teacher with 3 well-separated classes, a noisy (60, 3) student, labels."""
    labels = np.repeat([2, 0, 1], 20)
    rng.shuffle(labels)
    centres = rng.normal(scale=6.0, size=(3, 8))
    teacher = centres[labels] + rng.normal(size=(60, 8))
    student = teacher[:, :3] + 0.5 * rng.normal(size=(60, 3))
    return student, teacher, labels


# --------------------------------------------------------------------------- ordering
@pytest.mark.parametrize("by", ["label", "cluster"])
def test_order_is_a_permutation(pair, by):
    _, teacher, labels = pair
    order = an.order_points(teacher, labels, by=by)
    assert order.dtype == np.int64
    assert np.array_equal(np.sort(order), np.arange(len(teacher)))


@pytest.mark.parametrize("by", ["label", "cluster"])
def test_order_groups_labels(pair, by):
    _, teacher, labels = pair
    ordered = labels[an.order_points(teacher, labels, by=by)]
    # each class is one contiguous block (the clusters here are the classes)
    assert (np.diff(ordered) != 0).sum() == 2
    if by == "label":
        assert list(ordered) == sorted(ordered)


def test_order_by_label_within_class_follows_teacher():
    teacher = np.array([[3.0], [0.0], [10.0], [2.0], [1.0], [11.0]])
    labels = np.array([0, 0, 1, 0, 0, 1])
    order = an.order_points(teacher, labels, by="label")
    # within class 0 the points are in teacher order along its (only) axis
    assert list(order) == [1, 4, 3, 0, 2, 5]


def test_order_large_n_uses_kmeans(rng, monkeypatch):
    monkeypatch.setattr(an, "HIERARCHICAL_MAX_POINTS", 50)
    teacher = np.concatenate([rng.normal(size=(40, 4)), rng.normal(loc=20.0, size=(40, 4))])
    order = an.order_points(teacher, by="cluster", n_clusters=4)
    assert np.array_equal(np.sort(order), np.arange(80))
    assert ((order[:40] < 40).all() or (order[:40] >= 40).all())


def test_order_errors(pair):
    _, teacher, labels = pair
    with pytest.raises(ValueError, match="no labels"):
        an.order_points(teacher, None, by="label")
    with pytest.raises(ValueError, match="unknown ordering"):
        an.order_points(teacher, labels, by="alphabet")
    with pytest.raises(ValueError, match="one entry per point"):
        an.order_points(teacher, labels[:-1], by="label")


# --------------------------------------------------------------------------- ranks
def test_rank_matrices_match_library(pair):
    student, teacher, _ = pair
    r_t, r_s, agreement = an.rank_matrices(student, teacher)
    np.testing.assert_array_equal(r_t, normalized_ranks(teacher))
    np.testing.assert_array_equal(r_s, normalized_ranks(student))
    np.testing.assert_array_equal(agreement, rank_agreement(student, teacher))
    assert np.isnan(np.diag(agreement)).all()


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_anchor_neighbours_ranks_are_argsorts(pair, metric):
    student, teacher, labels = pair
    anchor, k = 7, 5
    table = an.anchor_neighbours(student, teacher, anchor, k=k, metric=metric, labels=labels)
    expected_cols = {"point", "teacher_rank", "student_rank", "rank_shift", "teacher_dissimilarity",
                     "student_dissimilarity", "label"}
    assert expected_cols <= set(table.columns)
    assert anchor not in set(table["point"])
    others = np.delete(np.arange(len(teacher)), anchor)
    for side, feats in (("teacher", teacher), ("student", student)):
        row = pairwise_dissimilarity(torch.from_numpy(feats), metric=metric).numpy()[anchor, others]
        ranked = others[np.argsort(row, kind="stable")]  # nearest first
        for _, rec in table.iterrows():
            assert ranked[int(rec[f"{side}_rank"]) - 1] == rec["point"]
            np.testing.assert_allclose(rec[f"{side}_dissimilarity"], row[others == rec["point"]][0], rtol=1e-9)
        top = set(ranked[:k])
        assert top <= set(table["point"])  # both sides' k nearest are listed
    assert (table["rank_shift"] == table["student_rank"] - table["teacher_rank"]).all()
    assert list(table["teacher_rank"]) == sorted(table["teacher_rank"])
    assert list(table["label"]) == list(labels[table["point"]])


def test_anchor_neighbours_agreement_is_a_row_of_A(pair):
    student, teacher, _ = pair
    table = an.anchor_neighbours(student, teacher, 3, k=6)
    agreement = rank_agreement(student, teacher)
    np.testing.assert_allclose(table["agreement"], agreement[3, table["point"]], atol=1e-12)


def test_anchor_neighbours_identical_student_has_no_shift(pair):
    _, teacher, _ = pair
    table = an.anchor_neighbours(2.0 * teacher + 1.0, teacher, 0, k=8)
    assert len(table) == 8 and (table["rank_shift"] == 0).all()
    assert table["label"].isna().all()


def test_anchor_neighbours_errors(pair):
    student, teacher, _ = pair
    with pytest.raises(ValueError, match="anchor must be"):
        an.anchor_neighbours(student, teacher, 60)
    with pytest.raises(ValueError, match="unknown metric"):
        an.anchor_neighbours(student, teacher, 0, metric="manhattan")
    with pytest.raises(ValueError, match="same points"):
        an.anchor_neighbours(student[:-1], teacher, 0)


# --------------------------------------------------------------------------- Shepard
@pytest.mark.parametrize("n,max_pairs", [(5, 100), (50, 300), (2000, 20000)])
def test_sample_pairs_distinct_and_reproducible(n, max_pairs):
    i, j = an.sample_pairs(n, max_pairs, seed=3)
    assert len(i) == min(max_pairs, n * (n - 1) // 2)
    assert (i < j).all() and (i >= 0).all() and (j < n).all()
    assert len(set(zip(i.tolist(), j.tolist()))) == len(i)
    i2, j2 = an.sample_pairs(n, max_pairs, seed=3)
    assert np.array_equal(i, i2) and np.array_equal(j, j2)
    if max_pairs < n * (n - 1) // 2:
        i3, _ = an.sample_pairs(n, max_pairs, seed=4)
        assert not np.array_equal(i, i3)


def test_sample_pairs_all_pairs_when_few():
    i, j = an.sample_pairs(4, 1000)
    assert list(zip(i.tolist(), j.tolist())) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_shepard_pairs_are_the_dissimilarities(pair, metric):
    student, teacher, _ = pair
    d_t, d_s = an.shepard_pairs(student, teacher, max_pairs=200, seed=1, metric=metric)
    i, j = an.sample_pairs(len(teacher), 200, seed=1)
    full_t = pairwise_dissimilarity(torch.from_numpy(teacher), metric=metric).numpy()
    full_s = pairwise_dissimilarity(torch.from_numpy(student), metric=metric).numpy()
    np.testing.assert_allclose(d_t, full_t[i, j], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(d_s, full_s[i, j], rtol=1e-9, atol=1e-9)


def test_shepard_pairs_callable_metric(pair):
    student, teacher, _ = pair

    def manhattan(x, y):
        return (x[:, None, :] - y[None, :, :]).abs().sum(-1)

    d_t, _ = an.shepard_pairs(student, teacher, max_pairs=100, metric=manhattan)
    i, j = an.sample_pairs(len(teacher), 100)
    np.testing.assert_allclose(d_t, np.abs(teacher[i] - teacher[j]).sum(1), rtol=1e-9)


def test_spearman_monotone_is_one(rng):
    d_t = rng.uniform(0.1, 5.0, size=500)
    assert an.spearman(d_t, np.log(d_t) * 3.0 + np.exp(d_t)) == pytest.approx(1.0)
    assert an.spearman(d_t, -d_t) == pytest.approx(-1.0)
    assert np.isnan(an.spearman(d_t, np.ones_like(d_t)))


# --------------------------------------------------------------------------- input checks (perco_viz.checks)
@pytest.mark.parametrize("call", [
    lambda s, t: an.order_points(t, by="cluster"),
    lambda s, t: an.anchor_neighbours(s, t, 0),
    lambda s, t: an.shepard_pairs(s, t, max_pairs=10),
])
def test_features_too_large_or_not_numbers_are_refused(pair, call):
    student, teacher, _ = pair
    with pytest.raises(ValueError, match="absolute value"):
        call(student, teacher * 1e200)
    with pytest.raises(ValueError, match="NaN/inf"):
        call(student, np.where(np.eye(*teacher.shape) > 0, np.nan, teacher))
    with pytest.raises(ValueError):
        call(student, np.full(teacher.shape, "x"))
