"""perco_viz.sessions: the path policy, the per-session quota, the age-based cleanup and the
time-limited parsing of uploads (no Streamlit here; the pages are tested in test_app_*.py)."""

from __future__ import annotations

import json
import operator
import os
import time
from pathlib import Path

import numpy as np
import pytest

from perco_viz import sessions
from perco_viz.config import RunConfig
from perco_viz.safe_io import InputFileError
from perco_viz.sessions import (
    ParseTimeout,
    PathNotAllowed,
    QuotaExceeded,
    SessionError,
    SessionSpace,
    check_config_paths,
    check_user_path,
)


@pytest.fixture
def server(tmp_path):
    """A data root, a folder outside it, and two sessions' folders (``mine``, ``other``)."""
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "points.csv").write_text("a,b\n1,2\n")
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key.txt").write_text("do not read")
    sessions_dir = tmp_path / "runs" / "app-sessions"
    mine, other = sessions_dir / "a", sessions_dir / "b"
    for s in (mine, other):
        (s / "uploads" / "0123").mkdir(parents=True)
        (s / "uploads" / "0123" / "x.npz").write_bytes(b"data")
    return {"root": root, "outside": outside, "sessions": sessions_dir, "mine": mine, "other": other,
            "tmp": tmp_path}


def _check(path, server, roots=None):
    roots = [server["root"]] if roots is None else roots
    return check_user_path(path, roots=roots, own_dir=server["mine"], sessions_dir=server["sessions"])


# --------------------------------------------------------------------------- path policy
def test_paths_inside_a_root_or_the_own_folder_are_allowed(server):
    assert _check(server["root"] / "sub" / "points.csv", server) == (server["root"] / "sub" / "points.csv").resolve()
    assert _check(str(server["root"]), server) == server["root"].resolve()  # the root itself (an image folder)
    own = server["mine"] / "uploads" / "0123" / "x.npz"
    assert _check(own, server, roots=[]) == own.resolve()  # own uploads: always, even with server paths off


def test_paths_outside_the_roots_are_refused_without_reading_them(server):
    with pytest.raises(PathNotAllowed, match="outside the data folders") as err:
        _check(server["outside"] / "key.txt", server)
    assert "do not read" not in str(err.value)
    with pytest.raises(PathNotAllowed, match="outside"):  # a sibling whose name starts like the root
        (server["tmp"] / "data2").mkdir()
        _check(server["tmp"] / "data2", server)
    with pytest.raises(PathNotAllowed, match="outside"):  # .. climbs out of the root
        _check(f"{server['root']}/sub/../../secret/key.txt", server)
    with pytest.raises(PathNotAllowed, match="NUL"):
        _check(f"{server['root']}/a\x00b", server)


def test_with_no_roots_every_server_path_is_refused(server):
    with pytest.raises(PathNotAllowed, match="PERCO_VIZ_DATA_ROOTS"):
        _check(server["root"] / "sub" / "points.csv", server, roots=[])


def test_symlinks_are_followed_before_the_check(server):
    link = server["root"] / "escape"
    link.symlink_to(server["outside"])
    with pytest.raises(PathNotAllowed, match="outside"):
        _check(link / "key.txt", server)
    file_link = server["root"] / "key-link.txt"
    file_link.symlink_to(server["outside"] / "key.txt")
    with pytest.raises(PathNotAllowed):
        _check(file_link, server)
    # a link in the session's own folder into another session's folder
    sneaky = server["mine"] / "uploads" / "to-b"
    sneaky.symlink_to(server["other"] / "uploads")
    with pytest.raises(PathNotAllowed, match="another session"):
        _check(sneaky / "0123" / "x.npz", server, roots=[])


def test_another_sessions_folder_is_refused_even_inside_a_root(server):
    target = server["other"] / "uploads" / "0123" / "x.npz"
    for roots in ([server["tmp"]], [server["sessions"]], ["/"]):
        with pytest.raises(PathNotAllowed, match="another session"):
            _check(target, server, roots=roots)
    # nor a folder above them (an image folder is walked recursively)
    for folder in (server["tmp"], server["tmp"] / "runs"):
        with pytest.raises(PathNotAllowed, match="holds the sessions' own folders"):
            _check(folder, server, roots=[server["tmp"]])
    # a relative path from the server's working folder is resolved the same way
    cwd = os.getcwd()
    try:
        os.chdir(server["tmp"])
        with pytest.raises(PathNotAllowed, match="another session"):
            _check("runs/app-sessions/b/uploads/0123/x.npz", server, roots=[server["tmp"]])
    finally:
        os.chdir(cwd)


def test_config_paths_are_checked_field_by_field(server):
    ok = RunConfig().override(**{"data.name": "csv", "data.path": str(server["root"] / "sub" / "points.csv")})
    check_config_paths(ok, roots=[server["root"]], own_dir=server["mine"], sessions_dir=server["sessions"])
    for field in ("data.path", "teacher.path", "student.path"):
        bad = ok.override(**{field: str(server["other"] / "uploads" / "0123" / "x.npz")})
        with pytest.raises(PathNotAllowed, match=field.replace(".", r"\.")):
            check_config_paths(bad, roots=[server["root"]], own_dir=server["mine"], sessions_dir=server["sessions"])


def test_data_roots_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(sessions.DATA_ROOTS_ENV, raising=False)
    assert sessions.data_roots() == ()
    monkeypatch.setenv(sessions.DATA_ROOTS_ENV, os.pathsep.join([str(tmp_path / "a"), "", str(tmp_path / "b")]))
    assert sessions.data_roots() == (tmp_path.resolve() / "a", tmp_path.resolve() / "b")


@pytest.mark.parametrize("env", [sessions.QUOTA_ENV, sessions.TTL_ENV, sessions.PARSE_TIMEOUT_ENV])
@pytest.mark.parametrize("value", ["lots", "-1", "0", "nan", "inf"])
def test_bad_limit_settings_say_what_to_set(monkeypatch, env, value):
    monkeypatch.setenv(env, value)
    getter = {sessions.QUOTA_ENV: sessions.quota_bytes, sessions.TTL_ENV: sessions.ttl_seconds,
              sessions.PARSE_TIMEOUT_ENV: sessions.parse_timeout_s}[env]
    with pytest.raises(SessionError, match=env):
        getter()


# --------------------------------------------------------------------------- uploads and quota
def test_save_upload_is_content_hashed_sanitized_and_atomic(tmp_path):
    path = sessions.save_upload(b"abc", "../../etc/pass wd.npz", tmp_path)
    assert path.parent.parent == tmp_path and path.name == "pass_wd.npz" and path.read_bytes() == b"abc"
    assert sessions.save_upload(b"abd", "pass wd.npz", tmp_path) != path  # same name, other content: apart
    assert sessions.save_upload(b"abc", "pass wd.npz", tmp_path) == path
    assert not list(tmp_path.rglob("*.tmp"))
    assert sessions.sanitize_filename(".hidden") == "hidden" and sessions.sanitize_filename("") == "upload"


def test_upload_size_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("PERCO_VIZ_MAX_FILE_MB", "0.000001")
    with pytest.raises(InputFileError, match="limit"):
        sessions.save_upload(b"x" * 100, "big.npz", tmp_path)
    assert not any(tmp_path.iterdir())


def test_quota_counts_uploads_and_runs_and_refuses_past_it(tmp_path):
    space = SessionSpace(tmp_path / "s", quota=1000, how_to_free="press Delete my uploads")
    first = space.save_upload(b"a" * 600, "one.npz")
    assert space.save_upload(b"a" * 600, "one.npz") == first  # the same file again takes no more room
    with pytest.raises(QuotaExceeded, match="Delete my uploads") as err:
        space.save_upload(b"b" * 500, "two.npz")
    assert "two.npz" in str(err.value)
    assert not list(space.uploads.rglob("two.npz"))
    run = tmp_path / "s" / "my-run"
    run.mkdir()
    (run / "student.safetensors").write_bytes(b"r" * 300)
    (run / "link").symlink_to(tmp_path.parent)  # links are not followed nor counted
    assert space.usage() == {"uploads": 600, "runs": 300, "total": 900}
    with pytest.raises(QuotaExceeded):
        space.save_upload(b"c" * 200, "three.npz")
    space.check_room()  # at 900 of 1000 bytes a training may still start …
    (run / "snapshot.npz").write_bytes(b"s" * 200)
    with pytest.raises(QuotaExceeded, match="this session's folder is full"):
        space.check_room()  # … past the quota it may not
    (run / "snapshot.npz").unlink()
    assert space.delete_uploads() == 600
    assert space.usage()["total"] == 300
    space.save_upload(b"c" * 200, "three.npz")


def test_quota_message_says_how_much_is_used(tmp_path):
    space = SessionSpace(tmp_path / "s", quota=3 * 2**20)
    space.save_upload(b"a" * 2 * 2**20, "big.npz")
    with pytest.raises(QuotaExceeded, match=r"2\.0 MB of its 3\.0 MB are used \(uploads 2\.0 MB, runs 0\.0 KB\)"):
        space.save_upload(b"b" * 2 * 2**20, "more.npz")


# --------------------------------------------------------------------------- cleanup
def _age(folder: Path, seconds: float) -> None:
    """Set the modification time of ``folder`` and everything below it to ``seconds`` ago."""
    t = time.time() - seconds
    for p in [*folder.rglob("*"), folder]:
        os.utime(p, (t, t), follow_symlinks=False)


def _session(sessions_dir: Path, sid: str, age_s: float) -> Path:
    folder = sessions_dir / sid
    (folder / "uploads" / "0123").mkdir(parents=True)
    (folder / "uploads" / "0123" / "x.npz").write_bytes(b"x")
    (folder / "run").mkdir()
    (folder / "run" / "config.json").write_text(json.dumps(RunConfig().to_dict()))
    _age(folder, age_s)
    return folder


def test_sweep_deletes_old_sessions_and_keeps_recent_and_live_ones(tmp_path):
    from perco_viz.runs import RunDir

    sessions_dir = tmp_path / "app-sessions"
    old = _session(sessions_dir, "old", 3 * 86400)
    recent = _session(sessions_dir, "recent", 3600)
    touched = _session(sessions_dir, "touched", 3 * 86400)
    os.utime(touched / "uploads" / "0123" / "x.npz")  # one fresh file deep inside keeps it
    live = _session(sessions_dir, "live", 3 * 86400)
    locked = _session(sessions_dir, "locked", 3 * 86400)
    (sessions_dir / "stray-file").write_text("x")
    if not hasattr(RunDir, "lock"):
        pytest.skip("RunDir.lock (the run's writer lock) is not there yet")
    with RunDir(locked / "run").lock():
        _age(locked, 3 * 86400)
        deleted = sessions.sweep_sessions(sessions_dir, ttl_s=86400, is_live=lambda f: f.name == "live")
        assert sorted(p.name for p in deleted) == ["old"]
        assert not old.exists()
        assert recent.exists() and touched.exists() and live.exists() and locked.exists()
    assert (sessions_dir / "stray-file").exists()
    # the training ended (lock released), the registry says it is over: now they go too
    deleted = sessions.sweep_sessions(sessions_dir, ttl_s=86400, is_live=lambda f: False)
    assert sorted(p.name for p in deleted) == ["live", "locked"]
    assert sorted(p.name for p in sessions_dir.iterdir()) == ["recent", "stray-file", "touched"]


def test_touch_marks_a_session_in_use(tmp_path):
    space = SessionSpace(_session(tmp_path, "s", 3 * 86400))
    space.touch()
    assert sessions.sweep_sessions(tmp_path, ttl_s=86400) == []
    SessionSpace(tmp_path / "absent").touch()  # no folder: nothing to do, no error
    assert not (tmp_path / "absent").exists()


def test_maybe_sweep_runs_in_the_background_at_most_once_per_interval(tmp_path):
    old = _session(tmp_path, "old", 3 * 86400)
    thread = sessions.maybe_sweep(tmp_path, ttl_s=86400, every_s=3600)
    assert thread is not None
    thread.join(10)
    assert not old.exists()
    again = _session(tmp_path, "again", 3 * 86400)
    assert sessions.maybe_sweep(tmp_path, ttl_s=86400, every_s=3600) is None  # too soon: nothing started
    assert again.exists()


# --------------------------------------------------------------------------- parsing with a time limit
@pytest.mark.slow
def test_parsing_runs_in_the_worker_with_a_time_limit(tmp_path):
    assert sessions.run_limited(operator.add, 2, 3, timeout_s=120) == 5  # starts the worker
    worker = sessions.parse_worker()
    with pytest.raises(ParseTimeout, match=r"longer than 1 s.*PERCO_VIZ_PARSE_TIMEOUT_S"):
        sessions.run_limited(time.sleep, 60, timeout_s=1, what="slow.csv")  # not the 60 s sleep
    assert sessions.parse_worker() is not worker  # the stuck worker was ended; a fresh one serves the next call
    assert sessions.run_limited(os.getpid, timeout_s=60) != os.getpid()
    X = np.arange(12.0).reshape(6, 2)
    csv = ("a,b,label\n" + "\n".join(f"{a},{b},{i % 2}" for i, (a, b) in enumerate(X))).encode()
    assert sessions.run_limited(sessions.check_array_upload, csv, "p.csv", None, timeout_s=60) == (6, 2, 2)
    with pytest.raises(InputFileError, match="NaN"):  # the file's own error reaches the caller
        sessions.run_limited(sessions.check_array_upload, b"a,b\n1,2\nnan,3\n4,5\n", "bad.csv", None, timeout_s=60)


# --------------------------------------------------------------------------- named workspaces
def test_a_workspace_name_gives_one_session_id_everywhere():
    """The same name (spaces around it aside) is the same session id; another name is another;
    the id looks like a random one (``ui.common.session_id`` accepts it)."""
    import re

    sid = sessions.workspace_id("purple otter sings at noon")
    assert re.fullmatch(r"[0-9a-f]{32}", sid)
    assert sessions.workspace_id("  purple otter sings at noon\n") == sid
    assert sessions.workspace_id("cafe\u0301 au lait ok") == sessions.workspace_id("caf\u00e9 au lait ok")  # NFC
    assert sessions.workspace_id("Purple otter sings at noon") != sid  # case counts, as in a password
    assert sessions.workspace_id("purple otter sings at noo") != sid


@pytest.mark.parametrize(("name", "says"), [
    ("short", "at least 12 characters"), ("  eleven chr  ", "at least 12"), ("x" * 201, "at most 200"),
    (None, "must be text"),
])
def test_a_workspace_name_too_easy_to_guess_is_refused(name, says):
    with pytest.raises(SessionError, match=says):
        sessions.workspace_id(name)


def test_move_session_brings_runs_and_uploads_and_leaves_a_training(tmp_path):
    """Runs move by rename (their upload paths repointed), uploads too; a run being written
    stays; a name taken in the workspace gets a suffix; links are not followed."""
    from perco_viz.runs import RunDir

    sessions_dir = tmp_path / "app-sessions"
    old, new = SessionSpace(sessions_dir / ("a" * 32)), SessionSpace(sessions_dir / ("b" * 32))
    upload = old.save_upload(b"x,y\n1,2\n", "points.csv")
    cfg = RunConfig().override(**{"data.name": "csv", "data.path": str(upload), "train.epochs": 1})
    done = RunDir.create(old.root, cfg, "done")
    done.write_status("finished")
    busy = RunDir.create(old.root, RunConfig(), "busy")
    busy.write_status("running")  # a live writer elsewhere: fresh heartbeat
    RunDir.create(new.root, RunConfig(), "done").write_status("finished")  # the name is taken there
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, old.root / "link")

    moved, stayed = sessions.move_session(old.root, new.root)
    assert moved == ["done-2"] and len(stayed) == 1 and "busy is training" in stayed[0]
    arrived = RunDir(new.root / "done-2")
    assert arrived.status()["state"] == "finished" and not done.path.exists() and busy.exists()
    assert arrived.config().data.path == str(new.uploads / upload.relative_to(old.uploads))
    assert Path(arrived.config().data.path).read_bytes() == b"x,y\n1,2\n"
    assert outside.exists() and (old.root / "link").is_symlink()  # left alone
    assert sessions.move_session(new.root, new.root) == ([], [])
