"""Compare students: held-out evaluation, benchmark tables and run tables for the app.

A student is scored on its dataset's held-out *test split* (not only the probe set) with
:func:`perco_viz.metrics.student_report`: k-NN and linear-probe accuracy are fitted on the
student's features of the train split and scored on the test split (:func:`held_out`,
:func:`score_features`, :func:`evaluate_student`). The benchmark that trains one student per
loss (``perco-viz bench methods``) lives in :mod:`perco_viz.methods`; this module reads its
results (:func:`load_bench`, :func:`find_benches`, :func:`summarize`, :func:`summary_table`).

>>> evaluate_student("runs/digits-coherence-d8")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from perco_viz.config import RunConfig
from perco_viz.runs import RunDir, RunStoreError

METRICS: tuple[str, ...] = ("pc", "coherence_mean", "coherence_p10", "knn_acc", "linear_acc",
                            "trustworthiness", "knn_overlap", "cka")
ROW_KEYS: tuple[str, ...] = ("method", "seed", *METRICS, "train_s")
REFERENCE_ROWS: tuple[str, ...] = ("teacher", "untrained")
MAX_TEST_POINTS = 2000  # held-out points scored (PC is O(n² log n) in time, O(n²) in memory)
MAX_TRAIN_POINTS = 10000  # train points the k-NN and linear probes are fitted on
BENCH_FILE = "bench_methods.json"  # a whole benchmark, in the --out folder
OWN_TRAINING = "own training"  # what a run list says of an external run's dataset, teacher and loss
NO_HELD_OUT = ("run {name!r} was written by your own training (perco_viz.open_run or a callback): perco_viz has no "
               "model or dataset of it to score on a held-out split; compare it on its probe set (its snapshots' "
               "PC, c_i and k-NN accuracy), or score your student with `perco-viz diagnose` on your own features")

# Column headers of the markdown table and the app (coherence_mean equals pc: not repeated).
TABLE_COLUMNS: dict[str, str] = {
    "pc": "PC", "coherence_p10": "c_i p10", "knn_acc": "k-NN acc", "linear_acc": "linear acc",
    "trustworthiness": "trust@10", "knn_overlap": "k-NN overlap", "cka": "CKA", "train_s": "train s",
}


# --------------------------------------------------------------------------- held-out data
@dataclass
class HeldOut:
    """Everything a student is scored against: the teacher's features of both splits.

    Attributes:
        dataset: the :class:`~perco_viz.data.Dataset`.
        test_idx: (m,) rows of the test split that are scored (all of them up to 2,000).
        train_idx: (p,) rows of the train split the probes are fitted on.
        teacher_test: (m, d_t) teacher features of the scored test rows.
        teacher_train: (p, d_t) teacher features of the probe-fitting train rows.
        y_test: (m,) labels or ``None``.
        y_train: (p,) labels or ``None``.
        metric: dissimilarity of PC and c_i (the run's ``loss.metric``).
        device: where features are computed.
    """

    dataset: Any
    test_idx: np.ndarray
    train_idx: np.ndarray
    teacher_test: np.ndarray
    teacher_train: np.ndarray
    y_test: np.ndarray | None
    y_train: np.ndarray | None
    metric: str
    device: torch.device


def _subset(y: torch.Tensor | None, n: int, cap: int) -> np.ndarray:
    """All rows when n <= cap, else a seeded, label-stratified choice of ``cap`` rows."""
    from perco_viz.data import stratified_choice

    if n <= cap:
        return np.arange(n)
    return stratified_choice(None if y is None else y.numpy(), cap, np.random.default_rng(0), n=n)


def _labels(y: torch.Tensor | None, idx: np.ndarray) -> np.ndarray | None:
    return None if y is None else y.numpy()[idx]


def held_out(config: RunConfig, *, device: str | torch.device = "cpu", cache_dir: str | Path | None = None,
             max_test: int = MAX_TEST_POINTS, max_train: int = MAX_TRAIN_POINTS) -> HeldOut:
    """Load the run's dataset and teacher (from the cache) and compute the teacher's features.

    Args:
        config: the run's configuration (its data, teacher and ``loss.metric`` are used).
        device: where to compute (``auto`` resolves as in the engine).
        cache_dir: teacher cache (default: ``paths.default_cache_dir()``).
        max_test: at most this many test rows are scored (seeded, stratified choice).
        max_train: at most this many train rows fit the probes.
    """
    from perco_viz import data as data_mod
    from perco_viz import models, paths
    from perco_viz.distill import resolve_device

    dev = resolve_device(str(device)) if not isinstance(device, torch.device) else device
    dataset = data_mod.load_dataset(config.data)
    teacher = models.load_teacher(config.teacher, dataset, cache_dir=cache_dir or paths.default_cache_dir(),
                                  device=dev)
    test_idx = _subset(dataset.y_test, dataset.n_test, max_test)
    train_idx = _subset(dataset.y_train, dataset.n_train, max_train)
    return HeldOut(
        dataset, test_idx, train_idx,
        models.extract_features(teacher, dataset.X_test[test_idx], device=dev).numpy(),  # (m, d_t)
        models.extract_features(teacher, dataset.X_train[train_idx], device=dev).numpy(),  # (p, d_t)
        _labels(dataset.y_test, test_idx), _labels(dataset.y_train, train_idx), config.loss.metric, dev,
    )


def score_features(student_test: np.ndarray, student_train: np.ndarray | None, held: HeldOut) -> dict[str, Any]:
    """The quality panel of held-out features (keys of :data:`METRICS`; accuracies None unlabelled).

    Args:
        student_test: (m, d_s) features of ``held``'s test rows.
        student_train: (p, d_s) features of ``held``'s train rows (fit the probes), or ``None``
            to score the probes on the test rows alone (cross-validated).
        held: the teacher's side, from :func:`held_out`.
    """
    from perco_viz.metrics import student_report

    labelled = held.y_test is not None and held.y_train is not None
    report = student_report(
        student_test, held.teacher_test, held.y_test if labelled else None,
        train_student=student_train if labelled else None,
        train_labels=held.y_train if labelled and student_train is not None else None,
        metric=held.metric,
    )
    return {key: report.get(key) for key in METRICS}


def student_features(student: nn.Module, held: HeldOut) -> tuple[np.ndarray, np.ndarray]:
    """The student's features of ``held``'s test rows (m, d_s) and train rows (p, d_s)."""
    from perco_viz import models

    ds = held.dataset
    test = models.extract_features(student, ds.X_test[held.test_idx], device=held.device).numpy()
    train = models.extract_features(student, ds.X_train[held.train_idx], device=held.device).numpy()
    return test, train


def _load_student(run: RunDir, dataset) -> nn.Module:
    from perco_viz import models
    from perco_viz.safe_io import load_state_dict

    path = run.student_file()  # through the run store's entrance (no link out of the runs folder)
    if path is None:
        raise ValueError(f"run {run.name!r} has no student weights yet (student.safetensors); "
                         "wait for its first epoch to finish")
    student = models.build_student(run.config().student, dataset)
    student.load_state_dict(load_state_dict(path))
    return student


def _train_seconds(run: RunDir) -> float | None:
    """Wall time of the training loop: last snapshot's ``wall_s`` minus the first's."""
    records = [r for r in run.metrics() if r.get("wall_s") is not None]
    return float(records[-1]["wall_s"] - records[0]["wall_s"]) if len(records) > 1 else None


def evaluate_student(source: RunDir | str | Path | nn.Module, *, held: HeldOut | None = None,
                     device: str = "cpu", cache_dir: str | Path | None = None,
                     train_s: float | None = None) -> dict[str, Any]:
    """Score a trained student on the held-out test split.

    Args:
        source: a run directory (its ``student.safetensors`` and config are read) or a student
            module already trained.
        held: the teacher's side (:func:`held_out`); required with a module, built from the run's
            config otherwise (pass it to reuse it across students of the same config).
        device: where to compute when ``held`` is built here.
        cache_dir: teacher cache when ``held`` is built here.
        train_s: training wall time to report (a run's own is read from its metrics).

    Returns:
        ``{metric: value}`` for :data:`METRICS` plus ``train_s`` and ``n_test`` (rows scored).

    >>> evaluate_student("runs/digits-coherence-d8")  # doctest: +SKIP
    {'pc': 0.93, 'coherence_mean': 0.93, ..., 'train_s': 1.4, 'n_test': 449}
    """
    if isinstance(source, nn.Module):
        if held is None:
            raise ValueError("a student module needs held=held_out(config): the teacher side to score against")
        student = source
    else:
        run = source if isinstance(source, RunDir) else RunDir(source)
        if run.is_external():
            raise ValueError(NO_HELD_OUT.format(name=run.name))
        held = held or held_out(run.config(), device=device, cache_dir=cache_dir)
        student = _load_student(run, held.dataset)
        train_s = _train_seconds(run) if train_s is None else train_s
    test, train = student_features(student, held)
    return {**score_features(test, train, held), "train_s": train_s, "n_test": len(held.test_idx)}


# --------------------------------------------------------------------------- tables & files
def _order(rows: list[dict[str, Any]]) -> list[str]:
    from perco_viz.losses import LOSS_NAMES

    present = list(dict.fromkeys(r["method"] for r in rows))
    known = [m for m in (*REFERENCE_ROWS, *LOSS_NAMES) if m in present]
    return known + [m for m in present if m not in known]


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per method: ``method``, ``n`` (runs that finished), ``failed``, and ``<metric>_mean`` /
    ``<metric>_std`` (sample std over seeds; ``None`` with one seed) for every table column."""
    out = []
    for method in _order(rows):
        mine = [r for r in rows if r["method"] == method]
        ok = [r for r in mine if not r.get("error")]
        entry: dict[str, Any] = {"method": method, "n": len(ok), "failed": len(mine) - len(ok)}
        for key in TABLE_COLUMNS:
            values = [float(r[key]) for r in ok if r.get(key) is not None and math.isfinite(float(r[key]))]
            entry[f"{key}_mean"] = statistics.fmean(values) if values else None
            entry[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else None
        out.append(entry)
    return out


def _cell(mean: float | None, std: float | None, key: str) -> str:
    if mean is None:
        return "—"
    digits = 1 if key == "train_s" else 3
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _summary_cells(rows: list[dict[str, Any]]) -> list[tuple[str, str, list[tuple[str, bool]]]]:
    """Per method: (method, seeds text, [(cell text, is best student) per table column])."""
    summary = summarize(rows)
    students = [s for s in summary if s["method"] not in REFERENCE_ROWS]
    best = {}
    for key in TABLE_COLUMNS:
        means = [s[f"{key}_mean"] for s in students if s[f"{key}_mean"] is not None]
        best[key] = max(means) if means and key != "train_s" else None
    out = []
    for s in summary:
        is_student = s["method"] not in REFERENCE_ROWS
        cells = [(_cell(s[f"{k}_mean"], s[f"{k}_std"], k),
                  is_student and best[k] is not None and s[f"{k}_mean"] is not None
                  and round(s[f"{k}_mean"], 3) == round(best[k], 3))
                 for k in TABLE_COLUMNS]
        out.append((s["method"], f"{s['n']}" + (f" ({s['failed']} failed)" if s["failed"] else ""), cells))
    return out


def summary_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per method, mean ± std over seeds for every metric.

    The best student mean of each quality column is bold (``teacher`` and ``untrained`` are
    references, not candidates; ``train s`` is not ranked). Mean c_i is not repeated: it equals PC.
    """
    lines = ["| method | seeds | " + " | ".join(TABLE_COLUMNS.values()) + " |",
             "|" + "---|" * (len(TABLE_COLUMNS) + 2)]
    for method, seeds, cells in _summary_cells(rows):
        texts = [f"**{text}**" if best else text for text, best in cells]
        lines.append(f"| {method} | {seeds} | " + " | ".join(texts) + " |")
    return "\n".join(lines)


def summary_frame(rows: list[dict[str, Any]]):
    """The same table as :func:`summary_table` as a pandas Styler (best student cells bold)."""
    table = _summary_cells(rows)
    columns = ["method", "seeds", *TABLE_COLUMNS.values()]
    frame = pd.DataFrame([[m, n, *(t for t, _ in cells)] for m, n, cells in table], columns=columns)
    bold = pd.DataFrame([[False, False, *(b for _, b in cells)] for _, _, cells in table], columns=columns)
    return frame.style.apply(lambda _: np.where(bold, "font-weight: bold", ""), axis=None)


def load_bench(path: str | Path) -> dict[str, Any]:
    """Read a benchmark JSON (``{"machine", "protocol", "rows"}``); ValueError if it is not one."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{str(path)!r} is not a readable benchmark JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        raise ValueError(f"{str(path)!r} has no 'rows' list: not a `perco-viz bench methods` result")
    return doc


def find_benches(root: str | Path) -> list[Path]:
    """``bench_methods.json`` files in ``root`` and its direct sub-folders, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in (root / BENCH_FILE, *root.glob(f"*/{BENCH_FILE}")) if p.is_file()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


# --------------------------------------------------------------------------- runs for the app
def _label(run: RunDir, taken: set[str]) -> str:
    name, i = run.name, 2
    while name in taken:
        name, i = f"{run.name} ({i})", i + 1
    taken.add(name)
    return name


def last_records(records: list[dict[str, Any]] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(last record, last snapshot's record)`` of a run's metrics (``{}`` for either that is
    missing). An engine run's are the same; a run of someone's own training may log numbers
    (a loss, ``val_acc``) after its last snapshot, whose record alone holds PC and k-NN accuracy.

    >>> last_records([{"epoch": 1, "snapshot": 0, "pc": 0.8}, {"epoch": 1.5, "snapshot": None}])
    ({'epoch': 1.5, 'snapshot': None}, {'epoch': 1, 'snapshot': 0, 'pc': 0.8})
    """
    records = records or []
    snapshots = [r for r in records if r.get("snapshot") is not None]
    return (records[-1] if records else {}), (snapshots[-1] if snapshots else {})


def _config_facts(run: RunDir) -> dict[str, Any]:
    """What a run list shows of a run's config: ``dataset``, ``loss``, ``student_arch``,
    ``student_dim``, ``epochs``, ``seed`` (None where unreadable). An external run's dataset,
    loss and student are :data:`OWN_TRAINING` (its config's are defaults that mean nothing) and
    its seed is unknown; its width is None until it logged features."""
    try:
        cfg = run.config()
    except Exception:  # noqa: BLE001 — an unreadable run is listed, not fatal
        return dict.fromkeys(("dataset", "loss", "student_arch", "student_dim", "epochs", "seed"))
    if run.is_external():
        try:
            logged = bool(run.snapshot_indices())
        except Exception:  # noqa: BLE001 — a damaged snapshots folder: the width is unknown
            logged = False
        return {"dataset": OWN_TRAINING, "loss": OWN_TRAINING, "student_arch": OWN_TRAINING,
                "student_dim": cfg.student.dim if logged else None, "epochs": cfg.train.epochs, "seed": None}
    return {"dataset": cfg.data.name, "loss": cfg.loss.name, "student_arch": cfg.student.arch,
            "student_dim": cfg.student.dim, "epochs": cfg.train.epochs, "seed": cfg.train.seed}


def run_table(run_dirs: Iterable[RunDir | str | Path]) -> pd.DataFrame:
    """One row per run: its config (dataset, loss, student dim, epochs, seed; ``own training`` for
    a run of someone's own training), state, the last record's epoch, train loss and wall time,
    and the last snapshot's probe-set metrics (pc, coherence_p10, knn_acc)."""
    rows, taken = [], set()
    for item in run_dirs:
        run = item if isinstance(item, RunDir) else RunDir(item)
        facts = _config_facts(run)
        last, snap = last_records(_metrics_or_none(run))
        rows.append({
            "run": _label(run, taken),
            "dataset": facts["dataset"],
            "loss": facts["loss"],
            "student_dim": facts["student_dim"],
            "epochs": facts["epochs"],
            "seed": facts["seed"],
            "state": run.status().get("state"),
            "epoch": last.get("epoch"),
            "pc": snap.get("pc"),
            "coherence_p10": snap.get("coherence_p10"),
            "knn_acc": snap.get("knn_acc"),
            "train_loss": last.get("train_loss", snap.get("train_loss")),
            "wall_s": last.get("wall_s"),
        })
    return pd.DataFrame(rows)


def curves(run_dirs: Iterable[RunDir | str | Path]) -> dict[str, list[dict[str, Any]]]:
    """Run name → its metrics records (one per snapshot), names made unique, input order kept."""
    out, taken = {}, set()
    for item in run_dirs:
        run = item if isinstance(item, RunDir) else RunDir(item)
        out[_label(run, taken)] = _metrics_or_none(run) or []
    return out


def _metrics_or_none(run: RunDir) -> list[dict[str, Any]] | None:
    """The run's metrics records, or None when its metrics.jsonl is damaged (``RunStoreError``)."""
    try:
        return run.metrics()
    except RunStoreError:
        return None


# --------------------------------------------------------------------------- the run list
NOTE_CHARS = 60  # the note's start shown in a run list


def short_note(note: str, limit: int = NOTE_CHARS) -> str:
    """The first line of ``note``, cut at ``limit`` characters with an ellipsis.

    >>> short_note("first line\\nsecond"), short_note("x" * 70, 10)
    ('first line …', 'xxxxxxxxx…')
    """
    lines = note.strip().splitlines()
    first = lines[0].strip() if lines else ""
    if len(first) > limit:
        return first[: limit - 1] + "…"
    return first + (" …" if len(lines) > 1 else "")


def run_row(run: RunDir) -> dict[str, Any]:
    """What a run list shows of one run (never raises; a damaged part reads as None):

    ``title`` (the person's title, else the folder name), ``folder``, ``loss``, ``student``
    (``"mlp · 8-d"``; ``"own training · 8-d"`` and loss ``own training`` for a run of someone's
    own training), ``epochs`` (asked for), ``epoch`` (reached), ``pc`` and ``knn_acc`` (last
    snapshot, probe set), ``created`` and ``last_active`` (``pd.Timestamp`` from the status, UTC),
    ``tags`` (comma-separated), ``note`` (its start, :func:`short_note`), ``problem`` (why
    the run, or its meta.json, cannot be read; None), ``error`` (why its training failed or went
    stale; None) and ``writer`` (who wrote an external run: ``open_run``, ``lightning``, ``hf``; None).
    """
    meta = run.meta()
    problem = run.problem()
    facts = _config_facts(run)
    status = run.status()
    last, snap = last_records(_metrics_or_none(run))
    external = run.external()
    if facts["student_arch"] is None:
        student = None
    else:
        width = f"{facts['student_dim']}-d" if facts["student_dim"] is not None else "no features yet"
        student = f"{facts['student_arch']} · {width}"

    def when(key: str):
        value = status.get(key)
        return pd.Timestamp(value, unit="s", tz="UTC") if isinstance(value, (int, float)) else None

    return {
        "title": meta.title or run.name,
        "folder": run.name,
        "loss": facts["loss"],
        "student": student,
        "epochs": facts["epochs"],
        "epoch": last.get("epoch"),
        "pc": snap.get("pc"),
        "knn_acc": snap.get("knn_acc"),
        "created": when("started"),
        "last_active": when("heartbeat"),
        "tags": ", ".join(meta.tags),
        "note": short_note(meta.note),
        "problem": problem or meta.problem,
        "error": status.get("error") if status.get("state") in ("failed", "stale", "damaged") else None,
        "writer": None if external is None else external.get("writer"),
    }


# --------------------------------------------------------------------------- config diff
NOT_SET = "(not set)"  # a loss option one run gives and another leaves at the loss's default


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def flat_config(config: RunConfig) -> dict[str, Any]:
    """A config as ``{dotted field: value}`` (``"train.epochs": 20``, ``"loss.options.gamma": 0.3``),
    sections in their order; the run's ``name`` is left out (it names the run, not how it ran)."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            out[prefix] = value

    doc = config.to_dict()
    doc.pop("name", None)
    walk("", doc)
    return out


def run_settings(run: RunDir) -> dict[str, Any]:
    """A run's settings as ``{dotted field: value}``, for :func:`config_diff`.

    A run of the engine: :func:`flat_config` of its config. A run of someone's own training
    (``RunDir.is_external``): only what its config means — ``made by`` (the writer),
    ``data.probe_size``, ``student.dim`` (once features are logged), ``train.epochs``,
    ``loss.metric``, ``loss.teacher_metric`` — then the user's own config as ``your config.<key>``.

    Raises:
        RunStoreError: the run's config cannot be read.
    """
    cfg = run.config()
    external = run.external()
    if external is None:
        return flat_config(cfg)
    facts = _config_facts(run)
    out: dict[str, Any] = {"made by": f"{OWN_TRAINING} ({external.get('writer')})",
                           "data.probe_size": cfg.data.probe_size}
    if facts["student_dim"] is not None:
        out["student.dim"] = facts["student_dim"]
    out.update({"train.epochs": cfg.train.epochs, "loss.metric": cfg.loss.metric,
                "loss.teacher_metric": cfg.loss.teacher_metric})

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(f"{prefix}.{key}", item)
        else:
            out[prefix] = value if isinstance(value, (str, int, float, bool)) or value is None else json.dumps(value)

    walk("your config", external.get("config") or {})
    if out.get("your config") == "{}":
        del out["your config"]
    return out


def config_diff(configs: Mapping[str, RunConfig | Mapping[str, Any]]) -> pd.DataFrame:
    """The configuration fields on which runs differ.

    Args:
        configs: run label → its config (a :class:`RunConfig`, or settings already flat such as
            :func:`run_settings` gives), in the column order wanted.

    Returns:
        One row per dotted field (``loss.name``, ``train.epochs``, ``loss.options.gamma``; the
        index, named ``field``) whose value is not the same in every run, one column per run,
        the values as text (``none`` for an empty field, :data:`NOT_SET` for a loss option a run
        does not give). Empty (no rows) when all agree or fewer than two runs are given. The runs'
        ``name`` is not compared.

    >>> a, b = RunConfig(), RunConfig().override(**{"train.epochs": 5, "loss.name": "rkd"})
    >>> config_diff({"a": a, "b": b}).to_dict("index")
    {'loss.name': {'a': 'coherence', 'b': 'rkd'}, 'train.epochs': {'a': '20', 'b': '5'}}
    """
    labels = list(configs)
    flat = {label: flat_config(configs[label]) if isinstance(configs[label], RunConfig) else dict(configs[label])
            for label in labels}
    fields = list(dict.fromkeys(key for label in labels for key in flat[label]))
    rows = {}
    if len(labels) > 1:
        for key in fields:
            values = [flat[label].get(key, NOT_SET) for label in labels]
            if any(v != values[0] for v in values[1:]):
                rows[key] = [v if v is NOT_SET else _shown(v) for v in values]
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=labels, dtype=object)
    frame.index.name = "field"
    return frame
