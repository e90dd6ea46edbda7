"""Computations behind the *Per-sample coherence* page: **which** samples the student perceives
unlike its teacher — the per-sample coherence ``c_i`` over the snapshots of a run, its worst
samples and its summary per class.

Pure numpy/pandas (no Streamlit, no plotly); the figures are in
:mod:`perco_viz.figures.per_sample`, c_i itself is :func:`perco_viz.coherence.per_sample_coherence`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from perco_viz.checks import check_labels


def coherence_by_epoch(run_dir) -> tuple[list[float], list[np.ndarray]]:
    """The per-sample coherence of every snapshot of a run, in order.

    Args:
        run_dir: a :class:`perco_viz.runs.RunDir` or a path to a run directory.

    Returns:
        ``(epochs, coherences)``: the snapshots' (fractional) epochs, and one (n_probe,) array of
        c_i per snapshot.
    """
    from perco_viz.runs import RunDir

    run = run_dir if isinstance(run_dir, RunDir) else RunDir(os.fspath(run_dir))
    epochs, values = [], []
    for index in run.snapshot_indices():
        snap = run.load_snapshot(index)
        epochs.append(float(snap.epoch))
        values.append(np.asarray(snap.coherence, dtype=np.float64))
    return epochs, values


def _class_names(y: np.ndarray, class_names: Sequence[str] | None) -> list[str]:
    names = []
    for v in y:
        if class_names is not None and isinstance(v, (int, np.integer)) and 0 <= int(v) < len(class_names):
            names.append(str(class_names[int(v)]))
        else:
            names.append(str(v))
    return names


def per_sample_table(c, *, indices=None, labels=None, class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-sample scores as a table (what the CSV download holds).

    Args:
        c: (n,) per-sample coherence c_i.
        indices: (n,) each probe point's index into the test split.
        labels: (n,) labels.
        class_names: names of the label codes.

    Returns:
        Columns ``point`` (probe row), ``test_index`` (when given), ``label`` and ``class``
        (when labels), ``c_i``; one row per probe point, in probe order.
    """
    c = np.asarray(c, dtype=np.float64).reshape(-1)
    table: dict[str, object] = {"point": np.arange(len(c))}
    if indices is not None:
        table["test_index"] = check_labels(indices, len(c), "indices").astype(np.int64)
    if labels is not None:
        y = check_labels(labels, len(c))
        table["label"] = y
        table["class"] = _class_names(y, class_names)
    table["c_i"] = c
    return pd.DataFrame(table)


def points_table(c, *, indices=None, labels=None, class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Every probe point with its c_i and its rank by c_i: the page's tables (one column per fact).

    Args:
        c: (n,) per-sample coherence c_i.
        indices: (n,) each probe point's index into the test split.
        labels: (n,) labels.
        class_names: names of the label codes.

    Returns:
        One row per probe point, in probe order, with columns ``point`` (the probe row: the id
        every page uses, ``#12``); ``test_index`` only when some point's index in the test split
        differs from its probe row (else it repeats ``point``); ``class`` (when labels: the class
        name, or the label number when there are no names or they are just the numbers);
        ``c_i``; ``rank`` (1 = the lowest c_i, ties by point).
    """
    table = per_sample_table(c, indices=indices, labels=labels, class_names=class_names)
    if "test_index" in table and np.array_equal(table["test_index"].to_numpy(), table["point"].to_numpy()):
        table = table.drop(columns=["test_index"])
    if "label" in table:
        names_are_numbers = (table["class"] == table["label"].astype(str)).all()
        table = table.drop(columns=["label"] if not names_are_numbers else ["class"])
        if names_are_numbers:
            table = table.rename(columns={"label": "class"})
    order = np.argsort(table["c_i"].to_numpy(), kind="stable")
    rank = np.empty(len(table), dtype=np.int64)
    rank[order] = np.arange(1, len(table) + 1)
    table["rank"] = rank
    return table


def worst_samples(c, k: int, labels=None, *, indices=None, class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """The k probe points the student perceives least like the teacher (lowest c_i first).

    Args:
        c: (n,) per-sample coherence c_i.
        k: how many (all n when k ≥ n).
        labels: (n,) optional labels.
        indices: (n,) optional indices into the test split.
        class_names: names of the label codes.

    Returns:
        :func:`per_sample_table` restricted to the k lowest c_i, sorted ascending (ties by point).
    """
    if k < 0:
        raise ValueError(f"k must be ≥ 0, got {k}")
    table = per_sample_table(c, indices=indices, labels=labels, class_names=class_names)
    order = np.argsort(table["c_i"].to_numpy(), kind="stable")[:k]
    return table.iloc[order].reset_index(drop=True)


def per_class_summary(c, labels, class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """c_i summarized per class.

    Args:
        c: (n,) per-sample coherence c_i.
        labels: (n,) labels.
        class_names: names of the label codes (used for the ``class`` column).

    Returns:
        One row per class present, in label order, with columns ``label``, ``class``,
        ``count``, ``mean``, ``p10`` (10th percentile) and ``min``; counts sum to n.
    """
    c = np.asarray(c, dtype=np.float64).reshape(-1)
    y = check_labels(labels, len(c))
    classes = np.unique(y)
    rows = []
    for cls in classes:
        vals = c[y == cls]
        rows.append({"label": cls, "count": int(vals.size), "mean": float(vals.mean()),
                     "p10": float(np.quantile(vals, 0.1)), "min": float(vals.min())})
    out = pd.DataFrame(rows, columns=["label", "count", "mean", "p10", "min"])
    out.insert(1, "class", _class_names(classes, class_names))
    return out
