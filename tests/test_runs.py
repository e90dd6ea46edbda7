"""The run directory: atomic files, torn lines, stale heartbeats, safe names, and defensive
reads of damaged or hostile run files (FIFOs, links out of the runs folder, huge files, wrong
types, wrongly shaped snapshots) — each refused with RunStoreError in bounded time."""

from __future__ import annotations

import io
import json
import os
import threading
import time

import numpy as np
import pytest

from perco_viz import runs as runs_mod
from perco_viz.config import ConfigError, RunConfig
from perco_viz.runs import (
    RunDir,
    RunStoreError,
    Snapshot,
    check_metrics_record,
    list_runs,
    sanitize_name,
)

N, D = 5, 2  # probe points, student width of the runs made here


def _snap(i: int, n: int = N, d: int = D) -> Snapshot:
    return Snapshot(i, float(i), 10 * i, np.full((n, d), i, np.float32), np.full(n, 0.5 + 0.01 * i),
                    {"epoch": float(i), "step": 10 * i, "pc": 0.5 + 0.01 * i})


def _run(root, name: str = "r", snapshots: int = 2) -> RunDir:
    """A small valid run: config (student.dim = D), teacher probe of N points, snapshots, status."""
    run = RunDir.create(root, RunConfig().override(**{"student.dim": D}), name)
    run.save_teacher_probe(np.zeros((N, 3)), np.arange(N), np.arange(N))
    for i in range(snapshots):
        run.save_snapshot(_snap(i))
    run.write_status("finished")
    return run


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _within(seconds: float, fn):
    """Run ``fn`` in a thread; fail (not hang) if it takes longer than ``seconds``. Returns
    ``("ok", value)`` or ``("raised", exception)``."""
    out: list = []

    def target():
        try:
            out.append(("ok", fn()))
        except BaseException as exc:  # noqa: BLE001 — handed to the test
            out.append(("raised", exc))

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"the read did not return within {seconds} s (it hangs)"
    return out[0]


# --------------------------------------------------------------------------- the basics
def test_create_write_read_roundtrip(tmp_path):
    cfg = RunConfig().override(**{"student.dim": D})
    run = RunDir.create(tmp_path, cfg, "demo")
    assert run.exists() and run.config() == cfg
    run.save_teacher_probe(np.zeros((N, 3)), np.arange(N), np.arange(N))
    for i in range(3):
        run.save_snapshot(_snap(i))
    assert run.snapshot_indices() == [0, 1, 2]
    snap = run.load_snapshot(2)
    assert snap.step == 20 and snap.student.shape == (N, D) and snap.metrics["pc"] == pytest.approx(0.52)
    assert set(run.teacher_probe()) == {"features", "labels", "indices"}
    assert run.problem() is None
    # a second run with the same name does not overwrite the first
    assert RunDir.create(tmp_path, cfg, "demo").name == "demo-1"
    assert [r.name for r in list_runs(tmp_path)] and len(list_runs(tmp_path)) == 2


def test_torn_last_line_is_skipped(tmp_path):
    run = RunDir.create(tmp_path, RunConfig(), "torn")
    run.append_metrics({"epoch": 0, "step": 0, "pc": 0.5})
    with open(run.path / "metrics.jsonl", "a") as fh:
        fh.write('{"epoch": 1, "step": 5, "pc"')  # a writer killed mid-line
    assert run.metrics() == [{"epoch": 0, "step": 0, "pc": 0.5}]
    assert run.metrics_skipped() == 1


def test_nan_metrics_become_null(tmp_path):
    run = RunDir.create(tmp_path, RunConfig(), "nan")
    run.append_metrics({"epoch": 0.0, "step": 0, "pc": float("nan"), "knn_acc": np.float32(0.5)})
    assert run.metrics() == [{"epoch": 0.0, "step": 0, "pc": None, "knn_acc": 0.5}]
    json.loads((run.path / "metrics.jsonl").read_text())  # strict JSON


def test_status_and_stale_heartbeat(tmp_path):
    run = RunDir.create(tmp_path, RunConfig(), "s")
    assert run.status() == {"state": "unknown"}
    run.write_status("running", epoch=1)
    assert run.status()["state"] == "running"  # no lock file (never locked): pid + heartbeat decide
    status = json.loads((run.path / "status.json").read_text())
    status["heartbeat"] = time.time() - 3600
    (run.path / "status.json").write_text(json.dumps(status))
    assert run.status()["state"] == "stale" and "resume" in run.status()["error"]
    with pytest.raises(ValueError):
        run.write_status("exploded")


def test_truncate_for_resume(tmp_path):
    run = _run(tmp_path, snapshots=4)
    run.truncate_metrics(10)
    run.remove_snapshots_after(1)
    assert [r["step"] for r in run.metrics()] == [0, 10] and run.snapshot_indices() == [0, 1]


@pytest.mark.parametrize("name", ["../../etc", "a/b", "..x", "x\\y", "  spaced name "])
def test_names_cannot_escape_the_root(tmp_path, name):
    run = RunDir.create(tmp_path / "root", RunConfig(), name)
    assert run.path.parent == tmp_path / "root"
    assert "/" not in sanitize_name(name.replace("..", "a"))


def test_empty_name_rejected():
    with pytest.raises(RunStoreError, match="usable characters"):
        sanitize_name("../..")


def test_unwritable_root_gives_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(RunStoreError, match="cannot write"):
        RunDir.create(blocker / "runs", RunConfig(), "x")


def test_not_a_run_directory(tmp_path):
    with pytest.raises(RunStoreError, match="not a run directory"):
        RunDir(tmp_path).config()
    assert "not a run directory" in RunDir(tmp_path / "nowhere").problem()


def test_config_roundtrip_and_errors(tmp_path):
    cfg = RunConfig().override(**{"loss.tau": "0.05", "train.epochs": "3", "train.amp": "false"})
    assert cfg.loss.tau == 0.05 and cfg.train.epochs == 3 and cfg.train.amp is False
    assert RunConfig.from_text(cfg.to_yaml()) == cfg == RunConfig.from_text(cfg.to_json())
    path = tmp_path / "c.yaml"
    cfg.save(path)
    assert RunConfig.load(path) == cfg
    with pytest.raises(ConfigError, match="unknown key"):
        RunConfig.from_dict({"loss": {"temperature": 1}})
    with pytest.raises(ConfigError, match="unknown config section"):
        RunConfig.from_dict({"optimizer": {}})
    with pytest.raises(ConfigError, match="must be"):
        RunConfig().override(**{"train.epochs": "many"})
    with pytest.raises(ConfigError, match="not valid YAML"):
        RunConfig.from_text("loss: [unclosed")


# --------------------------------------------------------------------------- special files
@pytest.mark.parametrize("name", ["status.json", "metrics.jsonl", "config.json", "teacher_probe.npz",
                                  "snapshots/000001.npz"])
def test_a_fifo_is_refused_without_blocking(tmp_path, name):
    """A FIFO with no writer blocks a plain open() forever; the entrance refuses it at once."""
    run = _run(tmp_path)
    (run.path / name).unlink()
    os.mkfifo(run.path / name)
    reads = {"status.json": run.status, "metrics.jsonl": run.metrics, "config.json": run.config,
             "teacher_probe.npz": run.teacher_probe, "snapshots/000001.npz": lambda: run.load_snapshot(1)}
    kind, value = _within(5, reads[name])  # a blocking open() would hang: the guard fails instead
    if name == "status.json":
        assert kind == "ok" and value["state"] == "damaged" and "FIFO" in value["error"]
    else:
        assert kind == "raised" and isinstance(value, RunStoreError), value
        assert "FIFO" in str(value) and repr(run.name) in str(value)
    if name in ("status.json", "config.json"):
        assert "FIFO" in run.problem()
    else:
        assert run.problem() is None  # the cheap check reads config and status only


@pytest.mark.parametrize("target", ["/dev/zero", "huge"])
def test_metrics_linked_out_of_the_runs_folder_is_refused(tmp_path, target):
    """metrics.jsonl linked to an endless or huge file outside the runs folder: refused before
    a byte is read (the link leaves the folder), in well under a second."""
    root = tmp_path / "runs"
    run = _run(root)
    if target == "huge":
        target = tmp_path / "outside.bin"
        with open(target, "wb") as fh:
            fh.truncate(8 << 30)  # 8 GiB, sparse: costs no disk
    (run.path / "metrics.jsonl").unlink()
    os.symlink(target, run.path / "metrics.jsonl")
    kind, value = _within(5, run.metrics)
    assert kind == "raised" and isinstance(value, RunStoreError) and "out of the runs folder" in str(value)
    kind, value = _within(5, lambda: run.load_snapshot(0))  # its metrics line is optional
    assert kind == "ok" and value.metrics == {}
    assert run.signature()[1] == 2  # never raises


def test_huge_file_inside_the_run_is_refused_by_its_size(tmp_path):
    run = _run(tmp_path)
    with open(run.path / "metrics.jsonl", "r+b") as fh:
        fh.truncate(runs_mod.MAX_BYTES["metrics.jsonl"] + 1)  # sparse
    kind, value = _within(5, run.metrics)
    assert kind == "raised" and "over the 64.0 MiB limit" in str(value)
    with open(run.path / "status.json", "r+b") as fh:
        fh.truncate(2 << 20)
    assert run.status()["state"] == "damaged" and "limit" in run.status()["error"]


def test_links_inside_the_runs_folder_are_followed(tmp_path):
    run = _run(tmp_path)
    shared = tmp_path / "shared-metrics.jsonl"  # in the runs folder, beside the run
    os.replace(run.path / "metrics.jsonl", shared)
    os.symlink(shared, run.path / "metrics.jsonl")
    assert len(run.metrics()) == 2


def test_snapshots_folder_linked_out_is_refused(tmp_path):
    root = tmp_path / "runs"
    run = _run(root)
    outside = tmp_path / "elsewhere"
    os.replace(run.path / "snapshots", outside)
    os.symlink(outside, run.path / "snapshots")
    with pytest.raises(RunStoreError, match="out of the runs folder"):
        run.snapshot_indices()
    with pytest.raises(RunStoreError, match="out of the runs folder"):
        run.load_snapshot(0)
    assert run.signature()[1] == -1


# --------------------------------------------------------------------------- status.json
@pytest.mark.parametrize(("text", "message"), [
    ("[1, 2, 3]", "must be a JSON object, not a list"),
    ('"finished"', "must be a JSON object, not a string"),
    ("{}", "has no 'state'"),
    ('{"state": "exploded"}', "'state' must be one of"),
    ('{"state": ["running"]}', "'state' must be one of"),
    ('{"state": "running", "heartbeat": "soon"}', "'heartbeat' must be a number"),
    ('{"state": "running", "heartbeat": NaN}', "not valid JSON"),
    ('{"state": "running", "heartbeat": 1e999}', "not valid JSON"),
    ('{"state": "running", "pid": true}', "'pid' must be a positive integer"),
    ('{"state": "running", "pid": 1.5}', "'pid' must be a positive integer"),
    ('{"state": "failed", "error": {"a": 1}}', "'error' must be a string or null"),
    ('{"state": "running", "step": -1}', "'step' must be an integer >= 0"),
    ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ('{"state": "fin', "not valid JSON"),
    ("\xff\xfe", "not valid JSON"),
])
def test_damaged_status_reads_damaged(tmp_path, text, message):
    run = _run(tmp_path)
    (run.path / "status.json").write_bytes(text.encode("latin-1"))
    status = run.status()  # never raises
    assert status["state"] == "damaged"
    assert message in status["error"] and "status.json of run 'r'" in status["error"]
    assert run.problem() == status["error"]
    run.write_status("failed", error="x")  # the writer replaces a damaged status
    assert run.status()["state"] == "failed"


def test_status_keeps_known_fields_and_plain_extras(tmp_path):
    run = _run(tmp_path)
    (run.path / "status.json").write_text(json.dumps(
        {"state": "finished", "epoch": 2, "step": 30, "note": "ok", "nested": {"x": [1]}}))
    assert run.status() == {"state": "finished", "epoch": 2, "step": 30, "note": "ok"}


# --------------------------------------------------------------------------- metrics.jsonl
def test_metrics_records_of_the_wrong_types_are_skipped(tmp_path):
    run = _run(tmp_path, snapshots=1)
    lines = [
        '{"epoch": "one", "step": 1}',  # epoch a string
        '{"epoch": 1.0, "step": 1.5}',  # step not an integer
        '{"epoch": 1.0, "step": true}',  # a boolean is not a number
        '{"step": 1}',  # no epoch
        '{"epoch": -1, "step": 1}',
        '{"epoch": 1.0, "step": 1, "pc": [0.5]}',
        '{"epoch": 1.0, "step": 1, "pc": "high"}',
        '{"epoch": 1.0, "step": 1, "loss_ce": {}}',
        '{"epoch": 1.0, "step": 1, "snapshot": -3}',
        '{"epoch": 1.0, "step": 1, "snapshot": "1"}',
        '{"epoch": 1.0, "step": 1, "other": [1, 2]}',
        '{"epoch": NaN, "step": 1}',
        '{"epoch": 1e999, "step": 1}',
        "[1, 2]",
        "1" * 5000,  # an integer too long to parse
        "\x00\xff junk",
        '{"epoch": 2.0, "step": 20, "pc": null, "knn_acc": 0.75, "snapshot": 1, "comment": "fine"}',
    ]
    with open(run.path / "metrics.jsonl", "a", encoding="utf-8", errors="surrogateescape") as fh:
        fh.write("\n".join(lines) + "\n")
    records = run.metrics()
    assert [r["step"] for r in records] == [0, 20]
    assert run.metrics_skipped() == len(lines) - 1
    for rec in records:
        assert check_metrics_record(rec) is None
        assert isinstance(rec["epoch"], (int, float)) and isinstance(rec["step"], int)
    assert records[-1]["comment"] == "fine"


def test_check_metrics_record_says_why():
    assert check_metrics_record({"epoch": 0, "step": 0}) is None
    assert "'step' must be an integer" in check_metrics_record({"epoch": 0, "step": "0"})
    assert "must be an object" in check_metrics_record([1])


# --------------------------------------------------------------------------- snapshots
@pytest.mark.parametrize(("arrays", "message"), [
    (b"definitely not a zip file", "cannot be read"),
    (b"PK\x03\x04" + b"\x00" * 100, "cannot be read"),
    ({"student": np.zeros((N, D), np.float32)}, "it has no coherence, epoch, index, step"),
    ({"student": np.zeros(N, np.float32)}, "'student' must be a non-empty 2-D float array"),
    ({"student": np.zeros((N, D), np.int64)}, "'student' must be a non-empty 2-D float array"),
    ({"student": np.zeros((0, D), np.float32)}, "'student' must be a non-empty 2-D float array"),
    ({"coherence": np.zeros(N + 1)}, "'coherence' must be a 1-D float array of 5 values"),
    ({"coherence": np.zeros((N, 1))}, "'coherence' must be a 1-D float array"),
    ({"student": np.full((N, D), np.nan, np.float32)}, "NaN or inf"),
    ({"coherence": np.full(N, np.inf)}, "NaN or inf"),
    ({"epoch": np.array([1.0, 2.0])}, "'epoch' must be a number >= 0 (a scalar)"),
    ({"epoch": np.float64(np.nan)}, "'epoch' must be a number"),
    ({"step": np.float64(3.5)}, "'step' must be a number"),
    ({"step": np.int64(-1)}, "'step' must be a number >= 0"),
    ({"index": np.int64(7)}, "it says it is snapshot 7"),
    ({"coherence": np.full(N, 1.5)}, "per-sample coherence lies outside [0, 1]"),
    ({"coherence": np.full(N, -0.1)}, "per-sample coherence lies outside [0, 1]"),
    ({"student": np.full((N, D), 1e300)}, "student features reach 1e+300"),
    ({"student": np.zeros((N + 2, D), np.float32), "coherence": np.zeros(N + 2)},
     "it has 7 probe points, the run's teacher probe has 5"),
    ({"student": np.zeros((N, D + 3), np.float32)}, "its student features are 5-D, the run's student.dim is 2"),
    ({"student": np.array([[None, 1]] * N, dtype=object)}, "cannot be read"),  # a pickle: refused
])
def test_damaged_snapshot_is_refused_with_its_reason(tmp_path, arrays, message):
    run = _run(tmp_path)
    if isinstance(arrays, dict):
        good = {"student": np.zeros((N, D), np.float32), "coherence": np.zeros(N), "epoch": np.float64(1),
                "step": np.int64(10), "index": np.int64(1)}
        if list(arrays) == ["student"] and "no coherence" in message:
            good = {}
        data = _npz(**{**good, **arrays})
    else:
        data = arrays
    (run.path / "snapshots" / "000001.npz").write_bytes(data)
    with pytest.raises(RunStoreError) as err:
        run.load_snapshot(1)
    assert str(err.value).startswith("snapshot 1 of run 'r' ")
    assert "damaged" in str(err.value) or "cannot be read" in str(err.value)
    assert message in str(err.value)
    assert run.load_snapshot(0).student.shape == (N, D)  # the others still load


def test_snapshot_unpacking_past_its_limit_is_refused(tmp_path):
    """A few kB that unpack to 8 MB: over what a snapshot of this run (probe_size x student.dim)
    can hold, refused from the zip headers before anything is unpacked."""
    run = _run(tmp_path)
    buf = io.BytesIO()
    np.savez_compressed(buf, student=np.zeros((N, D), np.float32), coherence=np.zeros(N),
                        epoch=np.float64(1), step=np.int64(1), index=np.int64(1), pad=np.zeros(1 << 20))
    assert len(buf.getvalue()) < 20_000
    (run.path / "snapshots" / "000001.npz").write_bytes(buf.getvalue())
    with pytest.raises(RunStoreError, match=r"snapshot 1 of run 'r' is damaged and cannot be read: .*unpacks to"):
        run.load_snapshot(1)


def test_snapshot_indices_ignore_odd_names(tmp_path):
    run = _run(tmp_path)
    for name in ("12a.npz", "x.npz", "٣.npz", "²³.npz", "000003.npz.tmp", ".000004.npz.123.tmp", "1234567890.npz"):
        (run.path / "snapshots" / name).write_bytes(b"")
    assert run.snapshot_indices() == [0, 1]


def test_damaged_teacher_probe(tmp_path):
    run = _run(tmp_path)
    (run.path / "teacher_probe.npz").write_bytes(
        _npz(features=np.zeros((N, 3), np.float32), indices=np.arange(N), labels=np.arange(N + 1)))
    with pytest.raises(RunStoreError, match="'labels' must be 5 integers"):
        run.teacher_probe()
    with pytest.raises(RunStoreError, match="teacher_probe.npz of run 'r'"):
        run.load_snapshot(0)
    (run.path / "teacher_probe.npz").write_bytes(_npz(features=np.zeros((N, 3), np.complex64), indices=np.arange(N)))
    with pytest.raises(RunStoreError, match="'features' must be a non-empty 2-D float array"):
        run.teacher_probe()
    (run.path / "teacher_probe.npz").write_bytes(_npz(features=np.full((N, 3), 1e300), indices=np.arange(N)))
    with pytest.raises(RunStoreError, match="teacher features reach 1e\\+300 .* overflow"):
        run.teacher_probe()


def test_damaged_config_is_a_run_store_error(tmp_path):
    run = _run(tmp_path)
    (run.path / "config.json").write_text('{"name": ["a", "list"]}')
    with pytest.raises(RunStoreError, match="config.json of run 'r' is invalid"):
        run.config()
    assert "config.json of run 'r'" in run.problem()
    (run.path / "config.json").write_bytes(b"\xff\xfe\x00")
    assert "not UTF-8" in run.problem()


# --------------------------------------------------------------------------- checkpoints
def test_damaged_checkpoint_is_refused(tmp_path):
    import pickle

    import torch

    run = _run(tmp_path)
    assert run.read_checkpoint() is None
    run.checkpoint_path.write_bytes(b"junk")
    with pytest.raises(RunStoreError, match="checkpoint.pt of run 'r' is damaged"):
        run.read_checkpoint()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    buf = io.BytesIO()
    torch.save({"student": Evil()}, buf, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    run.checkpoint_path.write_bytes(buf.getvalue())
    with pytest.raises(RunStoreError, match="checkpoint.pt of run 'r' is damaged"):
        run.read_checkpoint()
    buf = io.BytesIO()
    torch.save({"student": {}, "epoch": "two"}, buf)
    run.checkpoint_path.write_bytes(buf.getvalue())
    with pytest.raises(RunStoreError, match="'loss' must be a state dict"):
        run.read_checkpoint()


# --------------------------------------------------------------------------- listing
def test_list_runs_survives_broken_entries(tmp_path):
    root = tmp_path / "runs"
    good = _run(root, "good")
    older = _run(root, "older")
    os.utime(older.path, (time.time() - 100, time.time() - 100))
    (root / "junk").mkdir()  # no config: not a run
    (root / "a-file").write_text("x")
    fifo_run = root / "fifo"
    fifo_run.mkdir()
    os.mkfifo(fifo_run / "config.json")  # not a regular file: not listed
    os.symlink(tmp_path / "missing", root / "dangling")
    os.symlink(root / "loop", root / "loop")
    outside = _run(tmp_path / "elsewhere", "outside")
    os.symlink(outside.path, root / "link-out")  # leads out of the runs folder: skipped
    os.symlink(good.path, root / "alias")  # stays inside: listed
    damaged = _run(root, "damaged")
    (damaged.path / "status.json").write_text("[]")
    names = [r.name for r in _within(5, lambda: list_runs(root))[1]]
    assert set(names) == {"good", "older", "alias", "damaged"}
    assert names.index("good") < names.index("older")  # newest first
    problems = {r.name: r.problem() for r in list_runs(root)}
    assert problems["good"] is None and problems["alias"] is None
    assert "must be a JSON object" in problems["damaged"]
    assert list_runs(tmp_path / "nowhere") == [] and list_runs(root / "a-file") == []


def test_list_runs_skips_an_entry_that_cannot_be_looked_at(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    _run(root, "good")
    _run(root, "vanishing")
    class Entry:
        def __init__(self, entry):
            self._e, self.name, self.path = entry, entry.name, entry.path

        def is_dir(self):
            if self.name == "vanishing":
                raise PermissionError(13, "Permission denied")
            return self._e.is_dir()

        def is_symlink(self):
            return self._e.is_symlink()

        def stat(self):
            return self._e.stat()

    real_scandir = os.scandir

    class Scan:
        def __init__(self, path):
            self._it = real_scandir(path)

        def __enter__(self):
            return (Entry(e) for e in self._it)

        def __exit__(self, *exc):
            self._it.close()

    monkeypatch.setattr(runs_mod.os, "scandir", Scan)
    assert [r.name for r in list_runs(root)] == ["good"]


def test_signature_and_stamps_never_raise(tmp_path):
    run = _run(tmp_path)
    path, count, mtime = run.signature()
    assert path == str(run.path) and count == 2 and mtime > 0
    assert run.snapshot_stamp(1) > 0 and run.snapshot_stamp(9) == 0.0
    assert RunDir(tmp_path / "nowhere").signature() == (str(tmp_path / "nowhere"), 0, 0.0)


def test_file_places_and_facts_come_from_the_run(tmp_path):
    """Code outside runs.py asks RunDir where a file is and what the run measured with."""
    run = _run(tmp_path)
    assert run.snapshot_path(1).is_file() and not run.snapshot_path(7).exists()
    assert run.snapshot_path(1).parent.parent == run.path
    assert run.metrics_path.is_file() and run.metrics_path.parent == run.path
    assert run.coherence_metrics() == ("euclidean", None)
    cosine = RunDir.create(tmp_path, RunConfig().override(**{"loss.metric": "cosine"}), "cos")
    assert cosine.coherence_metrics() == ("cosine", None)
    assert RunDir(tmp_path / "nowhere").coherence_metrics() == ("euclidean", None)  # never raises


def test_heldout_scores_roundtrip(tmp_path):
    run = _run(tmp_path)
    assert run.heldout() is None
    run.save_heldout({"method": "rkd", "seed": 0, "pc": np.float64(0.9), "knn_acc": float("nan"), "error": None})
    assert run.heldout() == {"method": "rkd", "seed": 0, "pc": 0.9, "knn_acc": None, "error": None}
    (run.path / "heldout.json").write_text("[1, 2]")
    with pytest.raises(RunStoreError, match="heldout.json of run 'r' is damaged: it must be a JSON object"):
        run.heldout()


def test_student_weights_are_read_through_the_entrance(tmp_path):
    import torch

    from perco_viz.safe_io import load_state_dict, save_safetensors

    root = tmp_path / "runs"
    run = _run(root)
    assert run.student_weights() is None and run.student_file() is None
    save_safetensors({"w": torch.ones(2)}, run.student_path)
    assert run.student_weights() == run.student_path.read_bytes()
    assert load_state_dict(run.student_file())["w"].tolist() == [1.0, 1.0]
    secret = tmp_path / "secret.txt"  # outside the runs folder: e.g. another session's upload
    secret.write_text("do not serve me")
    run.student_path.unlink()
    os.symlink(secret, run.student_path)
    for read in (run.student_weights, run.student_file):
        with pytest.raises(RunStoreError, match="out of the runs folder"):
            read()
    run.student_path.unlink()
    run.student_path.write_text("plain text, not weights")
    with pytest.raises(RunStoreError, match="not a safetensors file"):
        run.student_weights()
    run.student_path.unlink()
    os.mkfifo(run.student_path)
    kind, value = _within(5, run.student_weights)
    assert kind == "raised" and "FIFO" in str(value)


# --------------------------------------------------------------------------- property: any damage
_FILES = ("status.json", "config.json", "metrics.jsonl", "teacher_probe.npz", "snapshots/000001.npz",
          "checkpoint.pt", "student.safetensors")


def _readers(run: RunDir) -> dict:
    return {"config": run.config, "metrics": run.metrics, "metrics_skipped": run.metrics_skipped,
            "snapshot_indices": run.snapshot_indices, "snapshot 0": lambda: run.load_snapshot(0),
            "snapshot 1": lambda: run.load_snapshot(1), "teacher_probe": run.teacher_probe,
            "read_checkpoint": run.read_checkpoint, "student_weights": run.student_weights,
            "student_file": run.student_file}


def _damage(run: RunDir, name: str, kind: str, payload) -> None:
    path = run.path / name
    original = path.read_bytes()
    if kind in ("fifo", "dir", "link-out", "link-zero"):
        path.unlink()
        {"fifo": os.mkfifo, "dir": os.mkdir}.get(kind, lambda p: None)(path)
        if kind.startswith("link"):
            os.symlink("/dev/zero" if kind == "link-zero" else run.path.parent.parent / "outside", path)
    elif kind == "junk":
        path.write_bytes(payload)
    elif kind == "truncate":
        path.write_bytes(original[: int(payload * len(original))])
    elif kind == "flip":
        data = bytearray(original)
        i = int(payload * (len(data) - 1))
        data[i] ^= 0xFF
        path.write_bytes(bytes(data))
    elif kind == "json":
        path.write_text(json.dumps(payload) + ("\n" if name == "metrics.jsonl" else ""))
    elif kind == "arrays":
        path.write_bytes(_npz(**payload))


@pytest.mark.slow
def test_any_damage_gives_run_store_errors_never_other_exceptions_or_hangs(tmp_path):
    """Property: for generated damage to any one file of a valid run — junk, truncation, a flipped
    byte, random JSON, random arrays, a FIFO, a folder, a link out of the runs folder or to
    /dev/zero — every reader returns or raises RunStoreError within seconds; status(), problem(),
    signature() and list_runs() never raise."""
    import tempfile

    import torch
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import array_shapes, arrays, scalar_dtypes

    from perco_viz.safe_io import save_safetensors

    scalars = st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False) | st.text(max_size=8)
    json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                               | st.dictionaries(st.sampled_from(["state", "epoch", "step", "pc", "snapshot",
                                                                 "heartbeat", "pid", "error", "name", "x"]),
                                                 inner, max_size=5), max_leaves=8)
    array_dicts = st.dictionaries(st.sampled_from(["student", "coherence", "epoch", "step", "index", "features",
                                                   "indices", "labels"]),
                                  arrays(scalar_dtypes(), array_shapes(min_dims=0, max_dims=3, max_side=6)),
                                  max_size=6)
    kinds = st.sampled_from(["fifo", "dir", "link-out", "link-zero", "junk", "truncate", "flip", "json", "arrays"])

    @settings(max_examples=60, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(name=st.sampled_from(_FILES), kind=kinds, junk=st.binary(max_size=300),
           fraction=st.floats(0, 1), value=json_values, arrays_=array_dicts)
    def check(name, kind, junk, fraction, value, arrays_):
        with tempfile.TemporaryDirectory(dir=tmp_path) as scratch:
            root = os.path.join(scratch, "runs")
            run = _run(root)
            save_safetensors({"w": torch.ones(2)}, run.student_path)
            buf = io.BytesIO()
            torch.save({"student": {}, "loss": {}, "optimizer": {}, "scheduler": {}, "head": None, "epoch": 1,
                        "step": 10, "snapshot_index": 2, "wall_s": 1.0, "last_loss": 0.5}, buf)
            run.checkpoint_path.write_bytes(buf.getvalue())
            payload = {"junk": junk, "truncate": fraction, "flip": fraction, "json": value,
                       "arrays": arrays_}.get(kind)
            _damage(run, name, kind, payload)
            for label, read in _readers(run).items():
                kind_, result = _within(10, read)
                assert kind_ == "ok" or isinstance(result, RunStoreError), (name, kind, label, repr(result))
            for never_raises in (run.status, run.problem, run.signature, lambda: list_runs(root)):
                kind_, result = _within(10, never_raises)
                assert kind_ == "ok", (name, kind, repr(result))
            assert run.status()["state"] in runs_mod.READ_STATES
            assert [r.name for r in list_runs(root)] == ["r"] or name == "config.json"

    check()
