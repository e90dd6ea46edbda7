"""Runs you can manage (issue 12, item 3): the Runs page lists this session's runs and the shared
ones, saves a run's title, tags and note, deletes one of yours after a confirmation (never a
shared one, never one being trained); a named workspace opens the same runs in another session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from perco_viz import sessions
from perco_viz.runs import RunDir, RunMeta
from tests.conftest import ROOT

PAGE = str(ROOT / "pages" / "9_Runs.py")
TIMEOUT = 60
SHARED = "shared-run"
NAME = "purple otter sings at noon"


@pytest.fixture
def runs_env(app_env, finished_run, tmp_path, monkeypatch):
    """A runs folder of its own holding one shared run (a copy of the finished demo run)."""
    root = tmp_path / "runs"
    shutil.copytree(finished_run.path, root / SHARED)
    monkeypatch.setenv("PERCO_VIZ_RUNS", str(root))
    return root


def _own_run(root: Path, sid: str, name: str = "mine") -> RunDir:
    """A copy of the shared run in session ``sid``'s own folder."""
    target = root / sessions.SESSIONS_DIRNAME / sid / name
    shutil.copytree(root / SHARED, target)
    return RunDir(target)


def _page(root: Path) -> tuple[AppTest, RunDir]:
    """The Runs page of a new session that has one run of its own (picked)."""
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    mine = _own_run(root, at.session_state["sid"])
    at.run()
    at.selectbox(key="runs-pick").set_value("yours/mine").run()
    assert not at.exception, at.exception
    return at, mine


def _texts(at: AppTest) -> str:
    return " ".join(str(e.value) for kind in ("info", "success", "error", "warning", "caption", "markdown")
                    for e in at.get(kind))


def test_the_page_lists_yours_and_the_shared_runs(runs_env):
    at, _ = _page(runs_env)
    table = at.dataframe[0].value
    assert sorted(zip(table["title"], table["where"], strict=True)) == [("mine", "yours"), (SHARED, "shared")]
    assert set(table["state"]) == {"finished"} and table["PC"].between(0, 1).all()
    assert at.selectbox(key="runs-pick").options == ["mine  ·  yours", f"{SHARED}  ·  shared"]


def test_a_search_keeps_the_runs_that_match(runs_env):
    at, _ = _page(runs_env)
    at.text_input(key="runs-search").input("where=shared").run()
    assert not at.exception
    assert list(at.dataframe[0].value["title"]) == [SHARED]
    assert at.selectbox(key="runs-pick").options == [f"{SHARED}  ·  shared"]


def test_title_tags_and_note_are_saved_and_shown_wherever_runs_are_picked(runs_env):
    at, mine = _page(runs_env)
    at.text_input(key="runs-title").input("Baseline, eight wide")
    at.multiselect(key="runs-tags").set_value(["baseline", "d8"])
    at.text_area(key="runs-note").input("First try.\nLoss went down fast.")
    at.button(key="runs-save").click().run()
    assert not at.exception, at.exception
    assert mine.meta() == RunMeta(title="Baseline, eight wide", tags=("baseline", "d8"),
                                  note="First try.\nLoss went down fast.")
    assert "Saved." in _texts(at)
    assert at.selectbox(key="runs-pick").value == "yours/mine"  # the run stays picked under its new title
    table = at.dataframe[0].value
    row = table[table["where"] == "yours"].iloc[0]
    assert (row["title"], row["tags"], row["note"]) == ("Baseline, eight wide", "baseline, d8", "First try. …")
    assert "Baseline, eight wide  [baseline, d8]  ·  yours" in at.selectbox(key="runs-pick").options
    distill = AppTest.from_file(str(ROOT / "pages" / "2_Distill.py"), default_timeout=TIMEOUT)
    distill.session_state["sid"] = at.session_state["sid"]
    distill.run()
    assert "Baseline, eight wide  [baseline, d8]  ·  yours" in distill.selectbox(key="distill-run").options


def test_a_tag_too_long_is_not_saved_and_says_why(runs_env):
    at, mine = _page(runs_env)
    at.multiselect(key="runs-tags").set_value(["x" * 41])
    at.button(key="runs-save").click().run()
    assert not at.exception
    assert any("Not saved" in e.value and "at most 40 characters" in e.value for e in at.error)
    assert mine.meta() == RunMeta()


def test_delete_needs_a_confirmation_then_removes_the_run(runs_env):
    at, mine = _page(runs_env)
    assert at.button(key="runs-delete").disabled  # not without the confirmation
    at.checkbox(key="runs-delete-confirm").check().run()
    assert not at.button(key="runs-delete").disabled
    at.button(key="runs-delete").click().run()
    assert not at.exception, at.exception
    assert not mine.path.exists()
    assert "Deleted mine." in _texts(at)
    assert list(at.dataframe[0].value["title"]) == [SHARED]
    assert (runs_env / SHARED).exists()


def test_a_shared_run_is_read_only_here(runs_env):
    at, _ = _page(runs_env)
    at.selectbox(key="runs-pick").set_value(f"shared/{SHARED}").run()
    assert not at.exception
    assert not any(b.key == "runs-delete" for b in at.button) and not any(t.key == "runs-title" for t in at.text_input)
    assert "read-only here" in _texts(at)
    assert (runs_env / SHARED / "config.json").exists()


def test_a_run_being_trained_cannot_be_deleted(runs_env):
    at, mine = _page(runs_env)
    with mine.lock():
        at.run()
        assert not at.exception
        assert not any(b.key == "runs-delete" for b in at.button)
        assert "being trained" in _texts(at)
    assert mine.exists()


def test_a_named_workspace_opens_the_same_runs_in_another_session(runs_env):
    first = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    random_sid = first.session_state["sid"]
    first.text_input(key="workspace-name").input("too short")
    first.button(key="workspace-open").click().run()
    assert first.session_state["sid"] == random_sid
    assert any("at least 12 characters" in e.value for e in first.error)
    first.text_input(key="workspace-name").input(NAME)
    first.button(key="workspace-open").click().run()
    assert not first.exception, first.exception
    sid = first.session_state["sid"]
    assert sid == sessions.workspace_id(NAME) != random_sid
    assert first.query_params["sid"] in (sid, [sid])
    assert first.text_input(key="workspace-name").value == ""  # the name does not stay on screen
    _own_run(runs_env, sid, "in-the-workspace")

    second = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not any("in-the-workspace" in o for o in second.selectbox(key="runs-pick").options)  # isolation holds
    second.text_input(key="workspace-name").input(f"  {NAME} ")
    second.button(key="workspace-open").click().run()
    assert not second.exception, second.exception
    assert second.session_state["sid"] == sid
    assert "in-the-workspace  ·  yours" in second.selectbox(key="runs-pick").options


def test_the_workspace_box_shows_this_sessions_link_but_not_on_a_projector(runs_env):
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    sid = at.session_state["sid"]
    assert any(f"sid={sid}" in c.value for c in at.code)
    assert "sees your runs and uploads" in _texts(at)
    at.toggle(key="present").set_value(True).run()
    assert not any(sid in c.value for c in at.code)


def test_damaged_runs_are_listed_marked_and_can_be_deleted(runs_env):
    """Damaged files never break the list: each run is a row (a bad config or status: state
    'damaged'; a junk meta.json: its folder name and a warning when picked), and a damaged run of
    yours can still be deleted."""
    import os

    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    sid = at.session_state["sid"]
    (_own_run(runs_env, sid, "bad-config").path / "config.json").write_bytes(b"{")
    (_own_run(runs_env, sid, "list-status").path / "status.json").write_bytes(b"[1]")
    fifo = _own_run(runs_env, sid, "fifo-status").path / "status.json"
    fifo.unlink()
    os.mkfifo(fifo)
    (_own_run(runs_env, sid, "junk-meta").path / "meta.json").write_bytes(b"\x00junk")
    metrics = _own_run(runs_env, sid, "zero-metrics").path / "metrics.jsonl"
    metrics.unlink()
    os.symlink("/dev/zero", metrics)
    at.run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value.set_index("title")
    assert {"bad-config", "list-status", "fifo-status", "junk-meta", "zero-metrics", SHARED} <= set(table.index)
    assert set(table.loc[["bad-config", "list-status", "fifo-status"], "state"]) == {"damaged"}
    assert table.loc["junk-meta", "state"] == "finished"
    at.selectbox(key="runs-pick").set_value("yours/junk-meta").run()
    assert not at.exception and any("cannot be read" in w.value for w in at.warning)
    at.selectbox(key="runs-pick").set_value("yours/list-status").run()
    at.checkbox(key="runs-delete-confirm").check().run()
    at.button(key="runs-delete").click().run()
    assert not at.exception, at.exception
    assert not (runs_env / sessions.SESSIONS_DIRNAME / sid / "list-status").exists()


def test_links_open_the_picked_run_on_the_other_pages(runs_env):
    """Watch on Distill, Open on Embeddings and Compare carry the session and the picked run."""
    from urllib.parse import parse_qs

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    sid = at.session_state["sid"]
    _own_run(runs_env, sid)
    at.switch_page("pages/9_Runs.py").run()
    at.selectbox(key="runs-pick").set_value("yours/mine").run()
    assert not at.exception, at.exception
    mine = {"Watch on Distill": "Distill", "Open on Embeddings": "Embeddings", "Compare": "Compare"}
    links = [link.proto for link in at.get("page_link") if link.proto.label in mine]
    assert {link.label for link in links} == set(mine)
    for link in links:
        query = parse_qs(link.query_string)
        assert link.page == mine[link.label]
        assert query["run"] == ["yours/mine"] and query["sid"] == [sid]


def test_naming_a_workspace_brings_this_tabs_runs_along(runs_env):
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    old_sid = at.session_state["sid"]
    _own_run(runs_env, old_sid, "my-demo")
    at.run()
    assert at.checkbox(key="workspace-bring").value is True  # offered, on, when the tab has runs
    at.text_input(key="workspace-name").input(NAME)
    at.button(key="workspace-open").click().run()
    assert not at.exception, at.exception
    sid = sessions.workspace_id(NAME)
    assert at.session_state["sid"] == sid
    assert (runs_env / sessions.SESSIONS_DIRNAME / sid / "my-demo" / "config.json").exists()
    assert not (runs_env / sessions.SESSIONS_DIRNAME / old_sid / "my-demo").exists()
    assert "my-demo  ·  yours" in at.selectbox(key="runs-pick").options
    assert any("my-demo" in s.value for s in at.success)
    assert at.checkbox(key="workspace-bring").value is False  # the workspace's runs move on only when asked
    assert not at.warning
