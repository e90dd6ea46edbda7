"""AppTests of issue 12 on the Rank agreement and Per-sample coherence pages: the anchor picker
and its sentence after a snapshot change, the anchor in the URL, links from the worst samples to
Rank agreement, the table of every probe input (search, selection, tags, export)."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs

import numpy as np
from streamlit.testing.v1 import AppTest

RANK_PAGE = "../pages/4_Rank_agreement.py"
PSC_PAGE = "../pages/5_Per_sample_coherence.py"


def _anchor_sentence(at: AppTest) -> str:
    """The anchor named in the sentence under the picker (``Anchor **#5 · class 1 · c_i 0.653** — …``)."""
    text = next(m.value for m in at.markdown if m.value.startswith("Anchor **"))
    return re.match(r"Anchor \*\*(.+?)\*\*", text).group(1)


def _picker_shows(at: AppTest, sent: str | None) -> str:
    """What the browser's select box shows: the label the server sets (``set_value``), else the
    label the browser holds from before (``sent``: what it sent back), else the default's."""
    box = at.selectbox(key="rank-anchor")
    proto = box.proto
    if proto.set_value:
        return proto.raw_value
    return sent if sent is not None else box.options[proto.default]


# --------------------------------------------------------------------------- Rank agreement
def test_anchor_picker_and_sentence_agree_after_a_snapshot_change(app_env):
    """Issue 12: after moving the snapshot slider the picker showed one c_i and the sentence another."""
    at = AppTest.from_file(RANK_PAGE, default_timeout=60)
    at.run()
    assert _picker_shows(at, None) == _anchor_sentence(at)
    at.selectbox(key="rank-anchor").set_value(5).run()
    sent = at.selectbox(key="rank-anchor").options[at.selectbox(key="rank-anchor").index]
    assert _picker_shows(at, sent) == _anchor_sentence(at)
    before = _anchor_sentence(at)
    at.select_slider(key="rank-epoch").set_value(0).run()  # the untrained student: other c_i
    assert not at.exception
    assert at.selectbox(key="rank-anchor").value == 5  # the same anchor…
    assert _anchor_sentence(at) != before  # …with the c_i of the snapshot shown
    assert _picker_shows(at, sent) == _anchor_sentence(at)


def test_anchor_in_the_url(app_env):
    at = AppTest.from_file(RANK_PAGE, default_timeout=60)
    at.query_params["anchor"] = "12"  # a link from another page (or a shared view)
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="rank-anchor").value == 12
    assert _anchor_sentence(at).startswith("#12 ")
    assert at.query_params["anchor"] == ["12"] or at.query_params["anchor"] == "12"
    at.selectbox(key="rank-anchor").set_value(7).run()  # the person's choice goes to the URL
    assert at.selectbox(key="rank-anchor").value == 7
    assert str(at.query_params["anchor"]).strip("[]'") == "7"


def test_neighbour_table_one_column_per_fact(app_env):
    """Issue 12: the neighbour table repeated facts (two check boxes that restate the ranks)."""
    at = AppTest.from_file(RANK_PAGE, default_timeout=60)
    at.run()
    table = at.dataframe[0].value
    assert list(table.columns) == ["point", "class", "teacher_rank", "student_rank", "rank_shift", "top_k_of",
                                   "agreement", "teacher_dissimilarity", "student_dissimilarity"]
    cols = list(table.columns)
    assert not any(table[a].astype(str).equals(table[b].astype(str)) for i, a in enumerate(cols) for b in cols[i + 1:])
    k = at.slider(key="rank-k").value
    in_t, in_s = table["teacher_rank"] <= k, table["student_rank"] <= k
    assert (table["top_k_of"] == np.where(in_t & in_s, "both", np.where(in_t, "teacher only", "student only"))).all()


def test_heatmaps_fill_half_the_page(app_env):
    """Issue 12: three heatmaps in thirds of the page were small, in wide empty bands."""
    at = AppTest.from_file(RANK_PAGE, default_timeout=60)
    at.run()

    def heatmaps():
        found = set()
        for col in at.columns:
            for chart in col.get("plotly_chart"):
                spec = json.loads(chart.proto.spec)
                title = spec["layout"]["title"]["text"]
                if title.startswith("rank agreement A") or "R_T" in title or "R_S" in title:
                    assert col.weight >= 0.5, title
                    assert spec["layout"]["height"] >= 600, title
                    found.add("A" if title.startswith("rank agreement A") else "R_T" if "R_T" in title else "R_S")
        return found

    assert heatmaps() == {"A", "R_T"}  # one rank picture at a time: the switch picks which
    at.button_group(key="rank-which").set_value("student").run()
    assert not at.exception and heatmaps() == {"A", "R_S"}


# --------------------------------------------------------------------------- Per-sample coherence
def test_worst_table_columns_are_distinct(tmp_path, monkeypatch, finished_run):
    """Issue 12: the worst-samples table showed "input #" and "test index" with the same numbers
    (a probe set that is the whole test split, in order)."""
    import shutil

    run = tmp_path / "whole-split"
    shutil.copytree(finished_run.path, run)
    with np.load(run / "teacher_probe.npz", allow_pickle=False) as arrays:
        probe = dict(arrays)
    probe["indices"] = np.arange(len(probe["indices"]))  # probe row i is test input i
    np.savez(run / "teacher_probe.npz", **probe)
    monkeypatch.setenv("PERCO_VIZ_RUNS", str(tmp_path))
    at = AppTest.from_file(PSC_PAGE, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    for table in (at.dataframe[0].value, at.dataframe[-1].value):  # the worst inputs; every input
        cols = list(table.columns)
        assert not any(table[a].astype(str).equals(table[b].astype(str))
                       for i, a in enumerate(cols) for b in cols[i + 1:]), cols
        assert "test_index" not in cols and {"point", "c_i", "rank"} <= set(cols)


def test_test_split_index_shown_when_it_differs(app_env, finished_run):
    probe = finished_run.teacher_probe()
    assert not np.array_equal(probe["indices"], np.arange(len(probe["indices"])))  # a sample of the test split
    at = AppTest.from_file(PSC_PAGE, default_timeout=60)
    at.run()
    worst = at.dataframe[0].value
    np.testing.assert_array_equal(worst["test_index"], probe["indices"][worst["point"]])


def _follow(at: AppTest, link) -> AppTest:
    """Open a page link's page with its query parameters, as the browser does."""
    at.query_params.clear()
    at.query_params.update({k: v[0] for k, v in parse_qs(link.proto.query_string).items()})
    return at.switch_page("pages/4_Rank_agreement.py").run()


def test_worst_samples_link_to_rank_agreement(app_env, finished_run):
    """Issue 12: "Open Rank agreement…" was text: every worst sample is now a link that opens Rank
    agreement with it as the anchor (same run, same snapshot)."""
    at = AppTest.from_file("../app.py", default_timeout=60)
    at.run()
    at.switch_page("pages/5_Per_sample_coherence.py").run()
    assert not at.exception, at.exception
    at.select_slider(key="psc-epoch").set_value(1).run()
    worst = at.dataframe[0].value
    links = {int(link.proto.label.lstrip("#")): link for link in at.get("page_link")
             if "anchor=" in link.proto.query_string}
    assert set(worst["point"]) <= set(links)
    row = int(worst["point"].iloc[2])
    params = parse_qs(links[row].proto.query_string)
    snap_index = finished_run.snapshot_indices()[1]
    assert params["anchor"] == [str(row)] and params["snap"] == [str(snap_index)] and params["run"]
    _follow(at, links[row])
    assert not at.exception, at.exception
    assert at.selectbox(key="rank-anchor").value == row


def test_link_from_per_sample_opens_its_snapshot(app_env):
    """The link carries the snapshot too, even when Rank agreement was open before on another one."""
    at = AppTest.from_file("../app.py", default_timeout=60)
    at.run()
    at.switch_page("pages/4_Rank_agreement.py").run()
    assert at.select_slider(key="rank-epoch").value == 3
    at.switch_page("pages/5_Per_sample_coherence.py").run()
    at.select_slider(key="psc-epoch").set_value(1).run()
    link = next(link for link in at.get("page_link") if "anchor=" in link.proto.query_string)
    _follow(at, link)
    assert not at.exception, at.exception
    assert at.select_slider(key="rank-epoch").value == 1  # the snapshot the link came from


def test_every_input_search_select_tag_export(app_env, finished_run, monkeypatch):
    """Issue 12: sort/filter the whole probe set by c_i, tag points, export the tagged list (CSV)."""
    import io

    import pandas as pd
    from streamlit.delta_generator import DeltaGenerator

    from ui.per_sample import explore_key

    offered = {}
    original = DeltaGenerator.download_button

    def recording(self, label, data, *args, **kwargs):  # what the page offers for download (any column)
        offered[kwargs.get("key")] = data
        return original(self, label, data, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "download_button", recording)
    coherence = finished_run.load_snapshot(finished_run.snapshot_indices()[-1]).coherence
    at = AppTest.from_file(PSC_PAGE, default_timeout=60)
    at.run()
    everything = at.dataframe[-1].value
    assert len(everything) == len(coherence)  # the whole set, not the worst k
    assert list(everything["c_i"]) == sorted(everything["c_i"])  # sorted by c_i, lowest first
    assert list(everything["rank"]) == list(range(1, len(coherence) + 1))
    at.text_input(key="psc-search").input("c_i<0.8").run()
    assert not at.exception, at.exception
    matches = at.dataframe[-1].value
    assert len(matches) == int((coherence < 0.8).sum()) and (matches["c_i"] < 0.8).all()
    assert at.query_params["q"] in ("c_i<0.8", ["c_i<0.8"])
    # tick two rows (what the browser sends), then tag them
    at.session_state[explore_key("c_i<0.8", finished_run.snapshot_indices()[-1])] = {
        "selection": {"rows": [0, 3], "columns": [], "cells": []}}
    at.run()
    chosen = sorted(int(matches["point"].iloc[r]) for r in (0, 3))
    assert at.button(key="psc-tags-add").label == "Tag 2 points"
    at.button(key="psc-tags-add").click().run()
    assert not at.exception, at.exception
    at.text_input(key="psc-search").input("tags=suspect").run()
    tagged = at.dataframe[-1].value
    assert sorted(tagged["point"]) == chosen and set(tagged["tags"]) == {"suspect"}
    exported = pd.read_csv(io.BytesIO(offered["psc-tags-export"]))
    assert sorted(exported["point"]) == chosen and set(exported["tags"]) == {"suspect"}
    np.testing.assert_allclose(exported.sort_values("point")["c_i"], coherence[chosen], rtol=1e-6)


def test_presentation_hides_downloads_and_tags(app_env):
    at = AppTest.from_file(PSC_PAGE, default_timeout=60)
    at.query_params["present"] = "1"
    at.run()
    assert not at.exception, at.exception
    keys = {b.key for b in at.get("download_button")}
    assert "psc-csv" not in keys and not any(str(k).endswith("-dl-html") for k in keys)
    assert not any(b.key == "psc-tags-add" for b in at.button)


def test_ranks_of_a_snapshot_computed_once_for_every_session(app_env, monkeypatch):
    """Issue 12 (waits): the n × n ranks of a (run, snapshot) are computed once, then shared by
    every session (two AppTests are two sessions of one server process)."""
    import perco_viz.analysis.rank_agreement as ra
    from ui import rank_agreement

    calls = []
    original = ra.rank_matrices

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(ra, "rank_matrices", counting)
    rank_agreement.rank_data.clear()
    rank_agreement.matrix_view.clear()
    for _ in range(2):
        at = AppTest.from_file(RANK_PAGE, default_timeout=60)
        at.run()
        assert not at.exception, at.exception
        at.radio(key="rank-order").set_value("cluster").run()  # another view of the same ranks
        assert not at.exception, at.exception
    assert len(calls) == 1


def test_linked_anchor_outside_the_drawn_rows(app_env):
    """A link's anchor that the current subset does not draw stays the anchor (not marked on the
    heatmaps, said so) until the person changes the rows drawn."""
    at = AppTest.from_file(RANK_PAGE, default_timeout=60)
    at.run()
    at.radio(key="rank-subset").set_value("first").run()
    at.number_input(key="rank-first-n").set_value(40).run()
    assert at.selectbox(key="rank-anchor").value < 40
    at.query_params["anchor"] = "150"  # a link followed in this session
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="rank-anchor").value == 150
    assert any("not among the drawn rows" in c.value for c in at.caption)
    at.slider(key="rank-k").set_value(5).run()  # other controls keep it
    assert at.selectbox(key="rank-anchor").value == 150
    at.number_input(key="rank-first-n").set_value(50).run()  # other rows drawn: a drawn anchor again
    assert at.selectbox(key="rank-anchor").value < 50
