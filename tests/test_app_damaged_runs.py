"""Damaged run directories never break a page (issue 10, items 4 and 6).

A small valid run is written once through the :class:`~perco_viz.runs.RunDir` API (random
probe features, three snapshots, their metrics, a finished status). Hypothesis damages a copy
of it — junk, truncated, flipped or wrongly shaped/typed/NaN arrays in a snapshot or in
``teacher_probe.npz``; ``status.json`` as a list or with fields of the wrong type; a FIFO, a
directory, a link to ``/dev/zero`` or out of the runs folder in place of any file; metrics
lines of the wrong types, a huge ``metrics.jsonl``; an invalid ``config.json``; a missing file
or a gap in the snapshot indices — and renders a run page through AppTest with the damaged run
selected, next to a healthy one in the same runs folder. Every page must finish in time with
no exception; a damage to a file the page needs is said in an error or warning in place of
the figures; the healthy run stays listed, and a page never opens on a run it can tell is
damaged. Plain tests cover a FIFO ``status.json`` and a ``metrics.jsonl`` linked to
``/dev/zero`` on every page, and a runs folder holding many damaged runs at once.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from perco_viz.coherence import per_sample_coherence
from perco_viz.config import RunConfig
from perco_viz.runs import RunDir, Snapshot, check_metrics_record
from ui.common import DAMAGED

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30  # seconds one page run may take (a hang fails the test instead of blocking it)
N, D_T, D_S, SNAPSHOTS = 40, 12, 4, 3  # probe points, teacher dim, student dim, snapshots 0..2
HEALTHY = "healthy"
LAST = f"snapshots/{SNAPSHOTS - 1:06d}.npz"
MIDDLE = "snapshots/000001.npz"


@dataclass(frozen=True)
class Page:
    """A page: its script, the key of its run picker (None: the page shows no run), whether the
    picker is a multiselect (Compare), session state to set first (Diagnose: source = a run), the
    run files whose damage it must report, and whether it notes left-out metrics lines."""

    script: str
    key: str | None = None
    multi: bool = False
    state: tuple[tuple[str, Any], ...] = ()
    reads: frozenset[str] = frozenset()  # the run files whose damage the page must report
    notes_skipped_lines: bool = False  # says when metrics lines are left out


RUN_FILES = frozenset({"config.json", "status.json", "teacher_probe.npz", LAST, "snapshots"})
RUN_PAGES = (
    Page("pages/2_Distill.py", "distill-run", reads=RUN_FILES | {"metrics.jsonl"}, notes_skipped_lines=True),
    Page("pages/3_Embeddings.py", "emb-run", reads=RUN_FILES | {"metrics.jsonl", MIDDLE}, notes_skipped_lines=True),
    Page("pages/4_Rank_agreement.py", "rank-run", reads=RUN_FILES | {"metrics.jsonl"}, notes_skipped_lines=True),
    Page("pages/5_Per_sample_coherence.py", "psc-run", reads=RUN_FILES | {"metrics.jsonl", MIDDLE},
         notes_skipped_lines=True),
    Page("pages/6_Diagnose.py", "diag-run", state=(("diag-source", "run"),), reads=RUN_FILES),
    Page("pages/7_Compare.py", "compare-runs", multi=True, reads=RUN_FILES | {"metrics.jsonl"}),
)
OTHER_PAGES = (Page("app.py"), Page("pages/8_Teaching_view.py"), Page("pages/9_Runs.py"))


# --------------------------------------------------------------------------- the valid run
def write_run(root: Path, name: str, seed: int = 0) -> RunDir:
    """A finished run of N probe points and SNAPSHOTS snapshots, written through the RunDir API."""
    run = RunDir.create(root, run_config(name), name)
    rng = np.random.default_rng(seed)
    teacher = rng.normal(size=(N, D_T)).astype(np.float32)
    run.save_teacher_probe(teacher, np.arange(N) % 10, np.arange(N) * 3)
    for i in range(SNAPSHOTS):
        student = teacher[:, :D_S] + rng.normal(scale=2.0 / (i + 1), size=(N, D_S))
        c = per_sample_coherence(student, teacher)
        record = {"epoch": float(i), "step": 5 * i, "train_loss": None if i == 0 else 1.0 / i, "pc": float(c.mean()),
                  "coherence_p10": float(np.quantile(c, 0.1)), "knn_acc": 0.5 + 0.1 * i, "wall_s": 0.5 * i}
        run.save_snapshot(Snapshot(i, float(i), 5 * i, student, c, record))
    run.write_status("finished", epoch=float(SNAPSHOTS - 1), step=5 * (SNAPSHOTS - 1))
    return run


@dataclass
class Env:
    """The module's runs folder (healthy run inside), the pristine run to copy, a folder outside."""

    root: Path
    template: Path
    outside: Path
    counter: itertools.count = field(default_factory=itertools.count)


@pytest.fixture(scope="module", autouse=True)
def memory_cap():
    """Cap this process's data memory while the module runs (4 GiB above what it uses now), so
    that a regression that reads ``/dev/zero`` to the end fails here with a MemoryError instead
    of exhausting the machine."""
    resource = pytest.importorskip("resource")
    try:
        with open("/proc/self/status") as fh:
            used = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmData:"))
    except (OSError, StopIteration):
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    cap = used + (4 << 30)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    base = tmp_path_factory.mktemp("damaged-runs")
    root, outside = base / "runs", base / "outside"
    outside.mkdir()
    healthy = write_run(root, HEALTHY)
    past = time.time() - 3600
    os.utime(healthy.path, (past, past))  # older than every damaged run: newest is the damaged one
    template = write_run(base / "template", "template", seed=1).path
    old = os.environ.get("PERCO_VIZ_RUNS")
    os.environ["PERCO_VIZ_RUNS"] = str(root)
    yield Env(root, template, outside)
    if old is None:
        os.environ.pop("PERCO_VIZ_RUNS", None)
    else:
        os.environ["PERCO_VIZ_RUNS"] = old


# --------------------------------------------------------------------------- damages
@dataclass(frozen=True)
class Damage:
    """One damage of one run file: ``apply(file, env)`` does it; ``says`` whether every page
    that reads the file must report it (False: the page may as well show the run normally)."""

    target: str
    what: str
    apply: Callable[[Path, Env], None] = field(compare=False, repr=False)
    says: bool = True
    skips_lines: bool = False  # metrics lines the reader leaves out: the analysis pages note it


def _replace(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _write(data: bytes) -> Callable[[Path, Env], None]:
    def apply(path: Path, env: Env) -> None:
        _replace(path)
        path.write_bytes(data)
    return apply


def _fifo(path: Path, env: Env) -> None:
    _replace(path)
    os.mkfifo(path)


def _dev_zero(path: Path, env: Env) -> None:
    _replace(path)
    path.symlink_to("/dev/zero")


def _directory(path: Path, env: Env) -> None:
    _replace(path)
    path.mkdir()


def _missing(path: Path, env: Env) -> None:
    _replace(path)


def _outside(path: Path, env: Env) -> None:
    """A link to a copy of the file's (or folder's) own valid content, out of the runs folder."""
    target = env.outside / f"{next(env.counter)}-{path.name}"
    if path.is_dir():
        shutil.copytree(path, target)
    else:
        shutil.copyfile(path, target)
    _replace(path)
    path.symlink_to(target)


def _huge(path: Path, env: Env) -> None:
    """A sparse file of 4 GiB (no disk used): a reader without a size cap never finishes."""
    _replace(path)
    with open(path, "wb") as fh:
        fh.truncate(4 << 30)


def _has_text(data: bytes) -> bool:
    """Whether ``data`` holds a non-blank line (one the metrics reader would count as skipped)."""
    return any(line.decode("utf-8", "replace").strip() for line in data.split(b"\n"))


@st.composite
def file_damage(draw, target: str) -> Damage:
    """A damage of the file as a whole: what any run file can suffer."""
    kinds = ["missing", "junk", "truncated", "flipped", "fifo", "dev_zero", "directory", "outside"]
    if target == "metrics.jsonl":
        kinds.append("huge")
    kind = draw(st.sampled_from(kinds))
    if kind == "junk":
        junk = draw(st.binary(max_size=300))
        if target == "metrics.jsonl":  # junk lines are left out (and noted); the snapshots still show
            return Damage(target, "junk", _write(junk), says=False, skips_lines=_has_text(junk))
        return Damage(target, "junk", _write(junk))
    if kind in ("truncated", "flipped"):
        cut = draw(st.floats(0.0, 0.999))
        bit = draw(st.integers(0, 7))

        def apply(path: Path, env: Env, kind=kind, cut=cut, bit=bit) -> None:
            data = bytearray(path.read_bytes())
            at = int(cut * len(data))
            if kind == "truncated":
                del data[at:]
            elif data:
                data[at] ^= 1 << bit
            path.write_bytes(bytes(data))

        # a torn metrics line is skipped; a flipped bit may land in padding or a digit
        return Damage(target, f"{kind} at {cut:.3f}", apply,
                      says=kind == "truncated" and target != "metrics.jsonl")
    if kind == "missing":
        # no status yet: a run being set up; no metrics yet: before its first snapshot; a missing
        # snapshot file: the run is shown with the snapshots it has
        return Damage(target, "missing", _missing, says=target in ("config.json", "teacher_probe.npz"))
    if kind == "outside":
        return Damage(target, "link out of the runs folder", _outside)
    return Damage(target, kind, {"fifo": _fifo, "dev_zero": _dev_zero, "directory": _directory,
                                 "huge": _huge}[kind])


# wrong dtypes: (dtype, whether it is an acceptable real number type for a float field, for an int field)
DTYPES = [("<U3", False, False), ("|S2", False, False), ("complex64", False, False), ("bool", False, False),
          ("datetime64[s]", False, False), ("timedelta64[s]", False, False), ("V8", False, False),
          ("float16", True, False), ("int8", True, True), ("uint64", True, True), ("float64", True, False)]
INT_KEYS = {"indices", "labels", "step", "index"}


@st.composite
def array_damage(draw, target: str) -> Damage:
    """A damage of one array of a snapshot or of the teacher probe (the file stays a valid .npz)."""
    keys = ["features", "indices", "labels"] if target == "teacher_probe.npz" else \
        ["student", "coherence", "epoch", "step", "index"]
    key = draw(st.sampled_from(keys))
    kind = draw(st.sampled_from(["drop", "ndim", "rows", "empty", "dtype", "nonfinite", "object", "huge",
                                 "compressed", "extra"]))
    rows = draw(st.sampled_from([0, 1, 2, N - 1, N + 1, 2 * N]))
    dtype, ok_float, ok_int = draw(st.sampled_from(DTYPES))
    special = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    where = draw(st.floats(0.0, 0.999))
    ok_dtype = ok_int if key in INT_KEYS else ok_float
    # 1e300 passes the finiteness checks: features are refused as too large to compare, coherence
    # as outside [0, 1], integer arrays as floats; an epoch of 1e300 is only shown (no range checked)
    says = {"drop": key != "labels", "ndim": True, "rows": True, "empty": True, "dtype": not ok_dtype,
            "nonfinite": True, "object": True, "huge": key != "epoch", "compressed": False,
            "extra": False}[kind]
    if kind in ("rows", "empty") and key in ("epoch", "step", "index"):
        kind, says = "ndim", True  # a scalar has no rows: make it an array instead

    def apply(path: Path, env: Env) -> None:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        a = arrays[key]
        if kind == "drop":
            del arrays[key]
        elif kind == "ndim":
            arrays[key] = a.reshape(-1) if a.ndim >= 2 else (a[:, None, None] if a.ndim == 1 else np.stack([a, a]))
        elif kind == "rows":
            arrays[key] = np.resize(a, (rows, *a.shape[1:]))
        elif kind == "empty":
            arrays[key] = np.zeros((0, *a.shape[1:]), a.dtype)
        elif kind == "dtype":
            arrays[key] = np.zeros(a.shape, dtype=dtype)
        elif kind == "nonfinite":
            b = a.astype(np.float64)
            b.reshape(-1)[int(where * b.size)] = special
            arrays[key] = b
        elif kind == "object":
            arrays[key] = np.array([{"x": 1}] * max(1, a.size), dtype=object)
        elif kind == "huge":
            arrays[key] = a.astype(np.float64) * 1e300
        elif kind == "extra":
            arrays["unexpected"] = np.arange(3)
        buf = io.BytesIO()
        if kind == "compressed":
            np.savez_compressed(buf, **arrays)
        else:
            np.savez(buf, **arrays)  # allow_pickle on writing: an object array is stored as a pickle
        path.write_bytes(buf.getvalue())

    return Damage(target, f"{key}: {kind}" + (f" {dtype}" if kind == "dtype" else ""), apply, says=says)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.floats() |
                           st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                       max_size=3),
                           max_leaves=6)
NOT_A_DICT = JSON_VALUES.filter(lambda v: not isinstance(v, dict))


def _json_text(value: Any) -> bytes:
    return json.dumps(value).encode()  # NaN and Infinity are written as the bare tokens json accepts


@st.composite
def status_damage(draw) -> Damage:
    kind = draw(st.sampled_from(["not a dict", "field"]))
    if kind == "not a dict":
        return Damage("status.json", "not a dict", _write(_json_text(draw(NOT_A_DICT))))
    name = draw(st.sampled_from(["state", "heartbeat", "pid", "host", "error", "started", "epoch", "step"]))
    value = draw(JSON_VALUES)
    state = draw(st.sampled_from(["running", "finished", "failed"]))

    def apply(path: Path, env: Env) -> None:
        status = {"state": state, "heartbeat": time.time(), "pid": os.getpid(), "host": os.uname().nodename,
                  "error": None, "epoch": 2.0, "step": 10}
        status[name] = value
        path.write_bytes(_json_text(status))

    return Damage("status.json", f"{name}={value!r} ({state})", apply, says=False)


def run_config(name: str) -> RunConfig:
    return RunConfig().override(**{"name": name, "student.dim": D_S, "train.epochs": SNAPSHOTS - 1,
                                   "train.device": "cpu", "data.probe_size": N})


@st.composite
def config_damage(draw) -> Damage:
    kind = draw(st.sampled_from(["not a dict", "not json", "field", "unknown field", "section"]))
    if kind == "not a dict":
        return Damage("config.json", kind, _write(_json_text(draw(NOT_A_DICT))))
    if kind == "not json":
        return Damage("config.json", kind, _write(b"{name: run"))
    dotted = draw(st.sampled_from(["name", "data.name", "data.probe_size", "student.dim", "student.arch",
                                   "loss.name", "loss.metric", "train.epochs", "train.lr", "teacher.kind"]))
    value = draw(JSON_VALUES)
    cfg = run_config("template").to_dict()
    section, _, leaf = dotted.rpartition(".")
    node = cfg[section] if section else cfg
    if kind == "field":
        node[leaf] = value
    elif kind == "unknown field":
        node["no_such_field"] = value
    else:
        cfg[section or "data"] = value  # a whole section of the wrong type
    try:  # the page must say so when the library refuses the config (a valid value may be drawn)
        RunConfig.from_dict(json.loads(_json_text(cfg)))
        says = False
    except ValueError:
        says = True
    return Damage("config.json", f"{kind} {dotted}={value!r}", _write(_json_text(cfg)), says=says)


@st.composite
def metrics_damage(draw) -> Damage:
    """Lines of the wrong shape or types among (or instead of) the valid ones: skipped or shown,
    never fatal."""
    fields = ["epoch", "step", "pc", "knn_acc", "train_loss", "wall_s", "snapshot", "coherence_p10"]
    edits = draw(st.lists(st.tuples(st.integers(0, SNAPSHOTS - 1), st.sampled_from(fields), JSON_VALUES),
                          max_size=4))
    extra = draw(st.lists(NOT_A_DICT.map(_json_text) | st.binary(max_size=40), max_size=3))

    def apply(path: Path, env: Env) -> None:
        records = [json.loads(line) for line in path.read_text().splitlines()]
        for i, name, value in edits:
            records[i][name] = value
        lines = [_json_text(r) for r in records] + extra
        path.write_bytes(b"\n".join(lines) + b"\n")

    records = [{"epoch": float(i), "step": 5 * i, "snapshot": i} for i in range(SNAPSHOTS)]
    for i, name, value in edits:
        records[i][name] = value
    skips = any(check_metrics_record(json.loads(_json_text(r))) is not None for r in records) or any(
        _has_text(line) for line in extra)
    return Damage("metrics.jsonl", f"edits {edits!r} + {len(extra)} lines", apply, says=False, skips_lines=skips)


def _weights_outside(path: Path, env: Env) -> None:
    """student.safetensors linked to a file outside the runs folder (another session's upload)."""
    target = env.outside / f"{next(env.counter)}-secret.txt"
    target.write_text("another session's upload")
    path.symlink_to(target)


WEIGHTS = "student.safetensors"
WEIGHT_DAMAGES = st.sampled_from([Damage(WEIGHTS, "link out of the runs folder", _weights_outside, says=False),
                                  Damage(WEIGHTS, "fifo", _fifo, says=False),
                                  Damage(WEIGHTS, "dev_zero", _dev_zero, says=False)])


def _gap(path: Path, env: Env) -> None:
    """A gap in the snapshot indices and a stray snapshot the metrics do not list."""
    path.unlink()
    shutil.copyfile(path.parent / "000000.npz", path.parent / "000009.npz")


TARGETS = ["config.json", "status.json", "metrics.jsonl", "teacher_probe.npz", LAST, MIDDLE]
DAMAGES = st.one_of(
    st.sampled_from(TARGETS).flatmap(file_damage),
    st.sampled_from(["teacher_probe.npz", LAST, MIDDLE]).flatmap(array_damage),
    status_damage(), config_damage(), metrics_damage(),
    st.just(Damage(MIDDLE, "index gap", _gap, says=False)),
    st.just(Damage("snapshots", "link out of the runs folder", _outside)),
    WEIGHT_DAMAGES,
)


def make_damaged(env: Env, damages: list[Damage]) -> RunDir:
    """A fresh copy of the template run under the runs folder (the newest), with ``damages`` done."""
    path = env.root / f"damaged-{next(env.counter)}"
    shutil.copytree(env.template, path)
    for damage in damages:
        damage.apply(path / damage.target, env)
    now = time.time()
    os.utime(path, (now, now))
    return RunDir(path)


def release(run: RunDir) -> None:
    """Wake any reader still blocked on a FIFO of ``run`` (a failed test must not leave a stuck
    thread behind), then remove the run."""
    for p in [run.path, *run.path.rglob("*")]:
        if p.is_fifo():
            try:
                os.close(os.open(p, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
    shutil.rmtree(run.path, ignore_errors=True)


# --------------------------------------------------------------------------- rendering
def render(page: Page) -> AppTest:
    at = AppTest.from_file(str(ROOT / page.script), default_timeout=TIMEOUT)
    for key, value in page.state:
        at.session_state[key] = value
    at.run()  # over TIMEOUT, AppTest raises: a hang fails the test
    assert not at.exception, [e.value for e in at.exception]
    return at


def picker(at: AppTest, page: Page):
    return at.multiselect(key=page.key) if page.multi else at.selectbox(key=page.key)


def label_of(options: list[str], name: str) -> str | None:
    return next((o for o in options if o.split()[0] == name), None)


def messages(at: AppTest) -> list[str]:
    return [e.value for e in at.error] + [w.value for w in at.warning]


def check_page(page: Page, env: Env, run: RunDir, damages: list[Damage]) -> None:
    """Render ``page`` on its default run, then with the damaged ``run`` selected."""
    at = render(page)
    box = picker(at, page)
    options = box.options
    assert label_of(options, HEALTHY) is not None, options  # the healthy run is still listed
    label = label_of(options, run.name)
    config_gone = any(d.target == "config.json" and d.what in ("missing", "fifo", "dev_zero", "directory")
                      for d in damages)
    if label is None:
        assert config_gone, f"{run.name} not listed: {options}"  # no config.json: not a run directory
        return
    # a run the picker can tell is damaged (config or status unreadable) is never the default
    if run.problem() is not None:
        chosen = box.value if page.multi else [box.value]
        assert all(label_of([c], run.name) is None for c in chosen), (chosen, run.problem())
    healthy_label = label_of(options, HEALTHY)
    box.set_value([label, healthy_label] if page.multi else label)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    if any(d.says and d.target in page.reads for d in damages):
        assert messages(at), f"{page.script}: nothing says that {run.name} is damaged ({damages})"
    if page.key == "emb-run" and any(d.target == WEIGHTS for d in damages) and not at.error:
        # the weights are checked before a download is offered: a link out is never served
        assert any("student weights cannot be offered" in c.value for c in at.caption), [c.value for c in at.caption]
    if page.notes_skipped_lines and any(d.skips_lines for d in damages) and not at.error:
        assert any("left out" in c.value for c in at.caption), f"{page.script}: skipped metrics lines unsaid"
    if page.multi:  # the healthy run is still compared
        assert healthy_label in picker(at, page).value


# --------------------------------------------------------------------------- the property test
@settings(max_examples=80, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(page=st.sampled_from(RUN_PAGES), damages=st.lists(DAMAGES, min_size=1, max_size=2,
                                                         unique_by=lambda d: d.target))
def test_every_page_survives_a_damaged_run(env, page, damages):
    run = make_damaged(env, damages)
    try:
        check_page(page, env, run, damages)
    finally:
        release(run)


# --------------------------------------------------------------------------- plain tests
@pytest.mark.parametrize("page", RUN_PAGES, ids=lambda p: Path(p.script).stem)
@pytest.mark.parametrize("damage", [Damage("status.json", "fifo", _fifo),
                                    Damage("metrics.jsonl", "dev_zero", _dev_zero)], ids=lambda d: d.what)
def test_special_files_are_reported_not_read(env, page, damage):
    """A FIFO status.json (an open() that blocks for ever) and a metrics.jsonl linked to
    /dev/zero (a read that never ends) are said on the page, in bounded time."""
    run = make_damaged(env, [damage])
    try:
        check_page(page, env, run, [damage])  # each page run is bounded by TIMEOUT (render)
    finally:
        release(run)


def _edit(key: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path, Env], None]:
    """Replace array ``key`` of an .npz by ``fn(array)`` (the file stays a valid .npz)."""
    def apply(path: Path, env: Env) -> None:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        arrays[key] = fn(arrays[key])
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        path.write_bytes(buf.getvalue())
    return apply


def _with_nan(a: np.ndarray) -> np.ndarray:
    b = a.astype(np.float64)
    b.flat[0] = np.nan
    return b


ZOO = [Damage("status.json", "fifo", _fifo), Damage("status.json", "list", _write(b"[1, 2]")),
       Damage("config.json", "not json", _write(b"{")), Damage("config.json", "dev_zero", _dev_zero),
       Damage("config.json", "outside", _outside), Damage("metrics.jsonl", "dev_zero", _dev_zero),
       Damage("metrics.jsonl", "huge", _huge), Damage("teacher_probe.npz", "junk", _write(b"PK\x03\x04junk")),
       Damage(LAST, "fifo", _fifo), Damage(LAST, "dev_zero", _dev_zero),
       Damage("snapshots", "outside", _outside),
       Damage(LAST, "student 1e300", _edit("student", lambda a: a.astype(np.float64) * 1e300)),
       Damage("teacher_probe.npz", "features 1e300", _edit("features", lambda a: a.astype(np.float64) * 1e300)),
       Damage(LAST, "student NaN", _edit("student", _with_nan)),
       Damage("teacher_probe.npz", "labels too short", _edit("labels", lambda a: a[:-1]))]


@pytest.fixture
def zoo(env):
    """Many damaged runs at once, all newer than the healthy one: (run, its damage)."""
    runs = [(make_damaged(env, [d]), d) for d in ZOO]
    yield runs
    for run, _ in runs:
        release(run)


@pytest.mark.parametrize("page", RUN_PAGES + OTHER_PAGES, ids=lambda p: Path(p.script).stem)
def test_every_damage_on_every_page_among_many_damaged_runs(env, zoo, page):
    """Among many damaged runs, each page lists them all (marked when the picker can tell),
    opens on a run it can read, reports each damaged run it is switched to with no exception,
    and then shows the healthy run's figures with no error."""
    at = render(page)
    if page.key is None:
        return
    box = picker(at, page)
    assert [o for o in box.options if DAMAGED in o], box.options  # damaged runs are marked as such
    healthy_label = label_of(box.options, HEALTHY)
    default = box.value if page.multi else [box.value]
    for run, damage in zoo:
        label = label_of(box.options, run.name)
        if label is None:  # a config.json that is not a file: not a run directory
            assert damage.target == "config.json" and damage.what in ("dev_zero", "fifo"), damage
            continue
        if run.problem() is not None:  # marked, and never opened by default
            assert DAMAGED in label and label not in default, (label, default)
        box.set_value([label, healthy_label] if page.multi else label)
        at.run()
        assert not at.exception, (damage, [e.value for e in at.exception])
        if damage.says and damage.target in page.reads:
            assert messages(at), f"{page.script}: nothing says that {run.name} is damaged ({damage})"
        box = picker(at, page)
    box.set_value([healthy_label] if page.multi else healthy_label)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, messages(at)
    assert at.get("plotly_chart") or at.metric, f"{page.script} drew nothing for the healthy run"
