"""perco_viz.analysis.per_sample: c_i over a run's snapshots, its table, worst samples and classes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perco_viz.analysis import per_sample as an
from perco_viz.coherence import per_sample_coherence


def test_worst_samples_sorted_ascending(rng):
    c = rng.uniform(size=50)
    labels = rng.integers(0, 3, size=50)
    table = an.worst_samples(c, 7, labels, indices=np.arange(50) + 100, class_names=["a", "b", "c"])
    assert len(table) == 7
    assert list(table["c_i"]) == sorted(table["c_i"]) == sorted(c)[:7]
    np.testing.assert_array_equal(table["c_i"], c[table["point"]])
    assert list(table["test_index"]) == list(table["point"] + 100)
    assert list(table["class"]) == [["a", "b", "c"][v] for v in labels[table["point"]]]
    assert len(an.worst_samples(c, 500)) == 50


def test_per_class_summary(rng):
    c = rng.uniform(size=90)
    labels = rng.integers(0, 4, size=90)
    table = an.per_class_summary(c, labels, ["w", "x", "y", "z"])
    assert table["count"].sum() == 90
    assert list(table.columns) == ["label", "class", "count", "mean", "p10", "min"]
    for _, rec in table.iterrows():
        vals = c[labels == rec["label"]]
        assert rec["mean"] == pytest.approx(vals.mean())
        assert rec["min"] == pytest.approx(vals.min())
        assert rec["p10"] == pytest.approx(np.quantile(vals, 0.1))
        assert rec["class"] == "wxyz"[rec["label"]]


def test_per_sample_table_columns():
    table = an.per_sample_table([0.5, 0.75, 1.0], indices=[10, 4, 7], labels=[1, 0, 1], class_names=["a", "b"])
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["point", "test_index", "label", "class", "c_i"]
    assert list(table["class"]) == ["b", "a", "b"]


def test_coherence_by_epoch(finished_run):
    epochs, values = an.coherence_by_epoch(finished_run)
    indices = finished_run.snapshot_indices()
    assert len(epochs) == len(values) == len(indices) >= 2
    assert epochs == sorted(epochs) and epochs[-1] == pytest.approx(3.0)
    probe = finished_run.teacher_probe()
    last = finished_run.load_snapshot(indices[-1])
    assert values[-1].shape == (len(probe["indices"]),)
    np.testing.assert_allclose(values[-1], per_sample_coherence(last.student, probe["features"]), atol=1e-9)
    assert float(values[-1].mean()) == pytest.approx(last.metrics["pc"], abs=1e-6)
    same = an.coherence_by_epoch(str(finished_run.path))
    assert same[0] == epochs


def test_points_table_one_column_per_fact():
    """Issue 12: the page's tables showed "input #" and "test index" with the same numbers."""
    c = [0.9, 0.5, 0.7]
    same = an.points_table(c, indices=[0, 1, 2], labels=[1, 0, 1])
    assert list(same.columns) == ["point", "class", "c_i", "rank"]  # the test index would repeat the row
    assert list(same["class"]) == [1, 0, 1] and list(same["rank"]) == [3, 1, 2]
    other = an.points_table(c, indices=[10, 4, 7], labels=[1, 0, 1], class_names=["cat", "dog"])
    assert list(other.columns) == ["point", "test_index", "class", "c_i", "rank"]
    assert list(other["test_index"]) == [10, 4, 7] and list(other["class"]) == ["dog", "cat", "dog"]
    for table in (same, other):  # no two columns hold the same values
        cols = list(table.columns)
        assert not any(table[a].astype(str).equals(table[b].astype(str))
                       for i, a in enumerate(cols) for b in cols[i + 1:])
    bare = an.points_table([0.2, 0.1])
    assert list(bare.columns) == ["point", "c_i", "rank"] and list(bare["rank"]) == [2, 1]
