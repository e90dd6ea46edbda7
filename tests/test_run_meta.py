"""A run's own words (title, tags, note in meta.json) and deleting a run: bounded, checked on
write and on read, never breaking the run list; delete refuses runs being written and never
follows a link out of the run's folder."""

from __future__ import annotations

import json
import os
import threading

import pytest

from perco_viz.config import RunConfig
from perco_viz.runs import (
    MAX_NOTE_CHARS,
    MAX_TAG_CHARS,
    MAX_TAGS,
    MAX_TITLE_CHARS,
    RunDir,
    RunLockedError,
    RunMeta,
    RunStoreError,
    check_meta,
    list_runs,
)


def _run(root, name: str = "r") -> RunDir:
    run = RunDir.create(root, RunConfig(name=name), name)
    run.write_status("finished")
    return run


# --------------------------------------------------------------------------- meta
def test_meta_is_empty_until_written_then_reads_back_cleaned(tmp_path):
    run = _run(tmp_path)
    assert run.meta() == RunMeta()
    written = run.write_meta(title="  My   first\nrun ", tags=["good", " good ", "needs, review", ""],
                             note="line one\r\nline two\x00")
    assert written == RunMeta(title="My first run", tags=("good", "needs review"), note="line one\nline two")
    assert run.meta() == written
    assert json.loads((run.path / "meta.json").read_text()) == written.to_dict()
    assert [p.name for p in run.path.iterdir() if p.name.endswith(".tmp")] == []  # written atomically


def test_meta_at_the_bounds_is_kept(tmp_path):
    run = _run(tmp_path)
    tags = [f"t{i}".ljust(MAX_TAG_CHARS, "x") for i in range(MAX_TAGS)]
    meta = run.write_meta(title="a" * MAX_TITLE_CHARS, tags=tags, note="n" * MAX_NOTE_CHARS)
    assert run.meta() == meta and len(meta.tags) == MAX_TAGS


@pytest.mark.parametrize(("fields", "says"), [
    ({"title": "a" * (MAX_TITLE_CHARS + 1)}, f"at most {MAX_TITLE_CHARS} characters"),
    ({"tags": [f"t{i}" for i in range(MAX_TAGS + 1)]}, f"at most {MAX_TAGS} tags"),
    ({"tags": ["x" * (MAX_TAG_CHARS + 1)]}, f"at most {MAX_TAG_CHARS} characters"),
    ({"note": "n" * (MAX_NOTE_CHARS + 1)}, "note has at most"),
    ({"title": 3}, "title must be text"),
    ({"tags": "good"}, "list of words"),
    ({"tags": [1]}, "must be words"),
])
def test_meta_out_of_bounds_is_refused_with_what_to_change(tmp_path, fields, says):
    run = _run(tmp_path)
    with pytest.raises(RunStoreError, match=says):
        run.write_meta(**fields)
    assert not (run.path / "meta.json").exists()


def test_write_meta_needs_a_run_directory(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(RunStoreError, match="not a run directory"):
        RunDir(tmp_path / "plain").write_meta(title="x")


@pytest.mark.parametrize("content", [
    b"not json", b"[1, 2]", b'{"title": 5}', b'{"tags": "a"}', b'{"title": "' + b"a" * 200 + b'"}',
    b'{"note": NaN}', b"\xff\xfe", b'{"tags": [' + b",".join(b'"t%d"' % i for i in range(30)) + b"]}",
])
def test_a_damaged_meta_reads_as_empty_with_a_problem_and_the_run_stays_listed(tmp_path, content):
    run = _run(tmp_path)
    (run.path / "meta.json").write_bytes(content)
    meta = run.meta()
    assert (meta.title, meta.tags, meta.note) == ("", (), "")
    assert meta.problem and "meta.json" in meta.problem
    assert [r.name for r in list_runs(tmp_path)] == ["r"]
    assert run.problem() is None  # a bad meta.json does not make the run damaged
    run.write_meta(title="fixed")  # saving replaces it
    assert run.meta() == RunMeta(title="fixed")


def test_hostile_meta_files_are_refused_without_blocking(tmp_path):
    runs = tmp_path / "runs"
    fifo, link, huge = _run(runs, "fifo"), _run(runs, "link"), _run(runs, "huge")
    os.mkfifo(fifo.path / "meta.json")
    outside = tmp_path / "secret.json"
    outside.write_text('{"title": "from outside the runs folder"}')
    os.symlink(outside, link.path / "meta.json")
    (huge.path / "meta.json").write_bytes(b" " * (1 << 20))
    out = {}
    thread = threading.Thread(target=lambda: out.update({r.name: r.meta() for r in (fifo, link, huge)}), daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "reading a FIFO meta.json blocked"
    assert "not a regular file" in out["fifo"].problem
    assert "leads out of the runs folder" in out["link"].problem and out["link"].title == ""
    assert "limit" in out["huge"].problem


def test_writing_meta_keeps_the_listing_order(tmp_path):
    old = _run(tmp_path, "old")
    _run(tmp_path, "new")
    os.utime(old.path, (1_000_000, 1_000_000))
    assert [r.name for r in list_runs(tmp_path)] == ["new", "old"]
    stamp = old.stamp()
    old.write_meta(title="renamed")
    assert [r.name for r in list_runs(tmp_path)] == ["new", "old"]
    assert old.stamp() != stamp  # a cache keyed by the stamp sees the new words


def test_check_meta_drops_repeated_tags_and_keeps_order():
    assert check_meta(tags=["b", "a", "b"]).tags == ("b", "a")
    assert check_meta(title=None, note=None) == RunMeta()


# --------------------------------------------------------------------------- delete
def test_delete_removes_the_run_and_it_is_no_longer_listed(tmp_path):
    run = _run(tmp_path, "gone")
    keep = _run(tmp_path, "kept")
    run.write_meta(title="bye")
    run.delete(root=tmp_path)
    assert not run.path.exists()
    assert [r.name for r in list_runs(tmp_path)] == ["kept"] and keep.exists()


def test_delete_refuses_a_run_being_written(tmp_path):
    run = _run(tmp_path)
    with run.lock():
        with pytest.raises(RunLockedError, match="stop it first"):
            run.delete()
    assert run.exists()


def test_delete_refuses_a_run_whose_status_says_running(tmp_path):
    run = _run(tmp_path)
    run.write_status("running")  # this live process, a fresh heartbeat, no lock file: running elsewhere
    assert run.status()["state"] == "running"
    with pytest.raises(RunLockedError):
        run.delete()
    assert run.exists()


def test_delete_refuses_a_run_outside_the_given_folder(tmp_path):
    run = _run(tmp_path / "shared")
    with pytest.raises(RunStoreError, match="not one of the runs that may be deleted here"):
        run.delete(root=tmp_path / "mine")
    assert run.exists()


def test_delete_never_follows_links(tmp_path):
    runs = tmp_path / "runs"
    target = _run(tmp_path / "elsewhere", "target")
    os.makedirs(runs)
    os.symlink(target.path, runs / "alias")
    with pytest.raises(RunStoreError, match="is a link"):
        RunDir(runs / "alias").delete()
    assert target.exists()
    run = _run(runs, "with-links")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.txt").write_text("keep me")
    os.symlink(precious, run.path / "outside-dir")
    os.symlink(precious / "data.txt", run.path / "outside-file")
    run.delete(root=runs)
    assert not run.path.exists()
    assert (precious / "data.txt").read_text() == "keep me"


def test_delete_refuses_what_is_not_a_run(tmp_path):
    (tmp_path / "uploads").mkdir()
    (tmp_path / "uploads" / "x.npz").write_bytes(b"x")
    with pytest.raises(RunStoreError, match="not a run directory"):
        RunDir(tmp_path / "uploads").delete()
    assert (tmp_path / "uploads" / "x.npz").exists()
    with pytest.raises(RunStoreError, match="does not exist"):
        RunDir(tmp_path / "missing").delete()
