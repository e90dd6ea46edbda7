"""AppTest of the Rank agreement and Per-sample coherence pages on the finished fixture run."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from perco_viz.coherence import perception_coherence, rank_agreement

RANK_PAGE = "../pages/4_Rank_agreement.py"
PSC_PAGE = "../pages/5_Per_sample_coherence.py"


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _title(spec: dict) -> str:
    return spec["layout"]["title"]["text"]


@pytest.fixture
def last(finished_run):
    """The fixture run's last snapshot and its teacher probe."""
    return finished_run.load_snapshot(finished_run.snapshot_indices()[-1]), finished_run.teacher_probe()


# --------------------------------------------------------------------------- Rank agreement
def test_rank_page_renders(app_env, last):
    snap, probe = last
    at = AppTest.from_file(RANK_PAGE, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert not at.error
    for key in ("rank-run", "rank-anchor"):
        assert at.selectbox(key=key)
    assert at.select_slider(key="rank-epoch")
    assert at.radio(key="rank-subset") and at.radio(key="rank-order")
    assert at.slider(key="rank-k")
    specs = _charts(at)
    titles = [_title(s) for s in specs]
    assert any(t.startswith("rank agreement A") for t in titles)
    assert any("R_T" in t for t in titles) and not any("R_S" in t for t in titles)  # R_S: behind the switch
    assert any("Shepard" in t for t in titles) and any("neighbours of anchor" in t for t in titles)
    # the PC shown is the library's on the snapshot and the teacher probe
    pc = perception_coherence(snap.student, probe["features"])
    assert _metric(at, "PC at this snapshot") == f"{pc:.4f}"
    # the mean A shown is the library's rank agreement (all probe points drawn by default)
    a = rank_agreement(snap.student, probe["features"])
    assert _metric(at, "Mean A of the drawn cells") == f"{np.nanmean(a):.3f}"
    # the default anchor is the point with the lowest c_i
    assert at.selectbox(key="rank-anchor").value == int(np.argmin(snap.coherence))
    assert len(at.dataframe) >= 1


def test_rank_page_anchor_epoch_and_subsets(app_env, finished_run):
    at = AppTest.from_file(RANK_PAGE, default_timeout=60)
    at.run()
    assert not at.exception
    at.selectbox(key="rank-anchor").set_value(5).run()
    assert not at.exception
    assert at.selectbox(key="rank-anchor").value == 5
    table = at.dataframe[0].value
    assert 5 not in set(table["point"]) and (table["teacher_rank"].diff().dropna() >= 0).all()
    assert any(_title(s) == "neighbours of anchor #5" for s in _charts(at))

    at.select_slider(key="rank-epoch").set_value(0).run()  # the untrained student
    assert not at.exception
    snap0 = finished_run.load_snapshot(finished_run.snapshot_indices()[0])
    assert _metric(at, "PC at this snapshot") == f"{snap0.coherence.mean():.4f}"

    at.radio(key="rank-order").set_value("cluster").run()
    assert not at.exception
    at.radio(key="rank-subset").set_value("classes").run()
    assert not at.exception
    at.multiselect(key="rank-classes").set_value([1]).run()
    assert not at.exception
    labels = finished_run.teacher_probe()["labels"]
    assert _metric(at, "Inputs drawn") == f"{int((labels == 1).sum()):,}"
    assert labels[at.selectbox(key="rank-anchor").value] == 1  # the anchor follows the subset
    at.radio(key="rank-subset").set_value("first").run()
    at.number_input(key="rank-first-n").set_value(40).run()
    assert not at.exception
    assert _metric(at, "Inputs drawn") == "40"


def test_rank_page_click_on_A_picks_the_anchor(app_env):
    at = AppTest.from_file(RANK_PAGE, default_timeout=60)
    at.run()
    # what the browser sends when a row marker of A is clicked
    at.session_state["rank-fig-a"] = {"selection": {"points": [{"curve_number": 1, "point_index": 0,
                                                                "customdata": [17.0, 0.9, 0.9]}],
                                                    "point_indices": [0], "box": [], "lasso": []}}
    at.run()
    assert not at.exception
    assert at.selectbox(key="rank-anchor").value == 17


def test_rank_page_without_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("PERCO_VIZ_RUNS", str(tmp_path))
    at = AppTest.from_file(RANK_PAGE, default_timeout=60)
    at.run()
    assert not at.exception
    assert at.info and "No runs yet" in at.info[0].value


# --------------------------------------------------------------------------- Per-sample coherence
def test_psc_page_renders(app_env, last):
    snap, probe = last
    at = AppTest.from_file(PSC_PAGE, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert not at.error
    assert at.selectbox(key="psc-run") and at.select_slider(key="psc-epoch") and at.slider(key="psc-k")
    titles = [_title(s) for s in _charts(at)]
    assert any("over epochs" in t for t in titles)
    assert any(t.startswith("distribution of c_i") for t in titles)
    assert any("coloured by c_i" in t for t in titles)
    assert any("by class" in t for t in titles)
    pc = perception_coherence(snap.student, probe["features"])
    assert _metric(at, "PC (mean c_i)") == f"{pc:.4f}" == f"{snap.metrics['pc']:.4f}"
    assert _metric(at, "c_i, 10th percentile") == f"{np.quantile(snap.coherence, 0.1):.4f}"
    worst = at.dataframe[0].value
    assert len(worst) == 12 and list(worst["c_i"]) == sorted(snap.coherence)[:12]
    per_class = at.dataframe[1].value
    assert per_class["count"].sum() == len(probe["indices"])


def test_psc_page_k_epoch_and_csv(app_env, finished_run, monkeypatch):
    import streamlit as st

    offered = {}
    original = st.download_button

    def recording(label, data, *args, **kwargs):  # what the page offers for download
        offered[label] = data
        return original(label, data, *args, **kwargs)

    monkeypatch.setattr(st, "download_button", recording)
    at = AppTest.from_file(PSC_PAGE, default_timeout=60)
    at.run()
    at.slider(key="psc-k").set_value(5).run()
    assert not at.exception
    assert len(at.dataframe[0].value) == 5
    at.select_slider(key="psc-epoch").set_value(0).run()
    assert not at.exception
    snap0 = finished_run.load_snapshot(finished_run.snapshot_indices()[0])
    assert _metric(at, "PC (mean c_i)") == f"{snap0.coherence.mean():.4f}"
    # the CSV holds every probe point: its test-split index, label and c_i of the chosen snapshot
    table = pd.read_csv(io.StringIO(offered["Download every c_i (CSV)"]))
    probe = finished_run.teacher_probe()
    assert list(table.columns) == ["point", "test_index", "label", "class", "c_i"]
    np.testing.assert_array_equal(table["test_index"], probe["indices"])
    np.testing.assert_array_equal(table["label"], probe["labels"])
    np.testing.assert_allclose(table["c_i"], snap0.coherence, rtol=1e-12)


@pytest.mark.parametrize("page,key", [(RANK_PAGE, "rank"), (PSC_PAGE, "psc")])
def test_pages_survive_a_damaged_snapshot(tmp_path, monkeypatch, finished_run, page, key):
    import shutil

    run = tmp_path / "damaged"
    shutil.copytree(finished_run.path, run)
    last = finished_run.snapshot_indices()[-1]
    (run / "snapshots" / f"{last:06d}.npz").write_bytes(b"not an npz file")
    monkeypatch.setenv("PERCO_VIZ_RUNS", str(tmp_path))
    at = AppTest.from_file(page, default_timeout=60)
    at.run()
    assert not at.exception
    assert at.error and "cannot be read" in at.error[0].value
    at.select_slider(key=f"{key}-epoch").set_value(0).run()  # an intact snapshot still shows
    assert not at.exception
    assert at.get("plotly_chart")
