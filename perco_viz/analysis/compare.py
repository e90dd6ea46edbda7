"""Compare students: held-out evaluation, the methods benchmark and run tables for the app.

``perco-viz bench methods`` trains one student per transfer loss on the same teacher, data,
initialisation and budget, then scores every student on the dataset's held-out *test split*
(not only the probe set) with :func:`perco_viz.metrics.student_report`: k-NN and linear-probe
accuracy are fitted on the student's features of the train split and scored on the test split.
Two reference rows frame the students: ``untrained`` (the student at its initialisation, same
seed) and ``teacher`` (the teacher's own features, PC = 1 by definition).

Protocol (the same for every method): the student is initialised with ``train.seed`` (the same
weights for every loss at a given seed) and sees the same batches; AdamW with the same learning
rate, weight decay, cosine schedule, batch size and number of epochs; the data split is fixed
(``data.seed = 0``) so the built-in teacher is trained once and read from the cache after.
Training is class-unaware: ``ce_weight = kd_weight = 0`` for every method, labels are only used
to score. Each baseline runs with its paper's default weights (the loss classes' ``defaults``);
none was tuned here, and neither was the coherence loss (``tau``, ``kernel`` at their defaults).

>>> rows = bench_methods("digits", 8, seeds=1, epochs=1, methods=["coherence"])  # doctest: +SKIP
>>> print(summary_table(rows))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Iterable
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
HELDOUT_FILE = "heldout.json"  # a bench run's held-out row, beside its metrics.jsonl
BENCH_FILE = "bench_methods.json"  # a whole benchmark, in the --out folder

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
        cache_dir: teacher cache (default: ``models.default_cache_dir()``).
        max_test: at most this many test rows are scored (seeded, stratified choice).
        max_train: at most this many train rows fit the probes.
    """
    from perco_viz import data as data_mod
    from perco_viz import models
    from perco_viz.distill import resolve_device

    dev = resolve_device(str(device)) if not isinstance(device, torch.device) else device
    dataset = data_mod.load_dataset(config.data)
    teacher = models.load_teacher(config.teacher, dataset, cache_dir=cache_dir or models.default_cache_dir(),
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


def _student_features(student: nn.Module, held: HeldOut) -> tuple[np.ndarray, np.ndarray]:
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
        held = held or held_out(run.config(), device=device, cache_dir=cache_dir)
        student = _load_student(run, held.dataset)
        train_s = _train_seconds(run) if train_s is None else train_s
    test, train = _student_features(student, held)
    return {**score_features(test, train, held), "train_s": train_s, "n_test": len(held.test_idx)}


# --------------------------------------------------------------------------- the benchmark
def bench_config(dataset: str, student_dim: int, epochs: int, *, device: str = "auto",
                 overrides: dict[str, Any] | None = None) -> RunConfig:
    """The shared configuration of every benchmarked student (class-unaware; seed set per run).

    ``overrides`` (``{"loss.kernel": "sigmoid"}``) change it for every method alike; the
    class-unaware weights stay 0.
    """
    extra = dict(overrides or {})
    for key in ("loss.ce_weight", "loss.kd_weight", "loss.name", "train.seed"):
        if key in extra:
            raise ValueError(f"{key} is set by the benchmark itself; remove it from the overrides")
    return RunConfig().override(**{
        "data.name": dataset, "data.seed": 0, "student.dim": student_dim, "train.epochs": epochs,
        "train.device": device, "loss.ce_weight": 0.0, "loss.kd_weight": 0.0, **extra,
    })


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """``["loss.kernel=sigmoid", ...]`` → ``{"loss.kernel": "sigmoid"}`` (values typed by the config)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set takes FIELD=VALUE (e.g. loss.kernel=sigmoid), got {item!r}")
        out[key.strip()] = value.strip()
    return out


def protocol(config: RunConfig, seeds: int, methods: Iterable[str]) -> str:
    """One paragraph stating what is shared and what differs between the benchmarked students."""
    from perco_viz.losses import LOSSES

    t, c = config.train, config
    defaults = "; ".join(f"{m}: {LOSSES[m].defaults}" for m in methods
                         if m != "coherence" and getattr(LOSSES[m], "defaults", None))
    return (
        f"{c.data.name} (split seed {c.data.seed}), teacher {c.teacher.kind}, student {c.student.arch} "
        f"width {c.student.dim}. Same for every method: initialisation and batch order (train.seed = "
        f"0..{seeds - 1}), AdamW lr {t.lr:g}, weight decay {t.weight_decay:g}, cosine schedule, batch "
        f"{t.batch_size}, {t.epochs} epochs. Class-unaware: ce_weight = kd_weight = 0. Baseline "
        f"hyper-parameters = each paper's defaults ({defaults or 'no options'}); coherence tau "
        f"{c.loss.tau:g}, kernel {c.loss.kernel}, metric {c.loss.metric}; nothing tuned. Scored on the "
        f"held-out test split (up to {MAX_TEST_POINTS} points); k-NN (k = 5) and linear probe fitted "
        "on the train split's features. train_s = wall time of the training loop."
    )


def _row(method: str, seed: int | None, scores: dict[str, Any], train_s: float | None,
         error: str | None = None) -> dict[str, Any]:
    row = {"method": method, "seed": seed, **{k: scores.get(k) for k in METRICS}, "train_s": train_s}
    if error:
        row["error"] = error
    return row


def _train_one(config: RunConfig, held: HeldOut, out: str | Path | None,
               cache_dir: str | Path | None) -> tuple[dict[str, Any], RunDir | None]:
    """Train one student with the engine and score it: (row, run directory or None)."""
    from perco_viz.distill import Distiller

    run_dir = RunDir.create(out, config, config.name) if out is not None else None
    engine = Distiller(config, run_dir, cache_dir=cache_dir)
    engine.setup()  # the teacher comes from the cache; its train features are recomputed
    t0 = time.perf_counter()
    result = engine.run()
    train_s = time.perf_counter() - t0
    if result.status != "finished":
        return _row(config.loss.name, config.train.seed, {}, train_s, result.error or result.status), run_dir
    test, train = _student_features(engine.student, held)
    row = _row(config.loss.name, config.train.seed, score_features(test, train, held), train_s)
    if run_dir is not None:
        (run_dir.path / HELDOUT_FILE).write_text(json.dumps(row, indent=1))
    return row, run_dir


def bench_methods(dataset: str, student_dim: int, seeds: int, epochs: int, methods: Iterable[str] | None = None,
                  device: str = "auto", out: str | Path | None = None,
                  progress: Callable[[str], None] | None = None,
                  cache_dir: str | Path | None = None,
                  overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Train one student per transfer loss and seed on the same pair; score all on held-out data.

    Args:
        dataset: a data name (``digits``, ``blobs``, ...).
        student_dim: student width.
        seeds: seeds ``0..seeds-1`` (each fixes the initialisation and the batch order).
        epochs: training budget of every student.
        methods: subset of :data:`perco_viz.losses.LOSS_NAMES` (default: all, in registry order).
        device: ``auto``, ``cpu``, ``cuda``...
        out: keep each run's directory (and ``heldout.json`` in it) under this folder, and the
            whole benchmark as ``bench_methods.json`` there (``None``: keep nothing).
        progress: receives one line per finished student.
        cache_dir: teacher cache.
        overrides: config fields changed for every method alike (see :func:`bench_config`).

    Returns:
        Rows with the keys of :data:`ROW_KEYS` (``error`` too when a run failed): one
        ``teacher`` row (seed ``None``), then per seed one ``untrained`` row and one per method.
    """
    from perco_viz import models
    from perco_viz.losses import LOSS_NAMES

    methods = list(LOSS_NAMES if methods is None else methods)
    unknown = [m for m in methods if m not in LOSS_NAMES]
    if unknown or not methods:
        raise ValueError(f"unknown method(s) {unknown or methods}; choose among {', '.join(LOSS_NAMES)}")
    if seeds < 1 or epochs < 1:
        raise ValueError(f"seeds and epochs must be >= 1, got {seeds} and {epochs}")
    say = progress or (lambda _line: None)
    base = bench_config(dataset, student_dim, epochs, device=device, overrides=overrides)
    held = held_out(base, device=device, cache_dir=cache_dir)
    rows = [_row("teacher", None, score_features(held.teacher_test, held.teacher_train, held), None)]
    for seed in range(seeds):
        cfg = base.override(**{"train.seed": seed})
        torch.manual_seed(seed)  # exactly how the engine initialises its student
        untrained = models.build_student(cfg.student, held.dataset).to(held.device)
        test, train = _student_features(untrained, held)
        rows.append(_row("untrained", seed, score_features(test, train, held), 0.0))
        for method in methods:
            run_cfg = cfg.override(**{"loss.name": method, "name": f"{dataset}-d{student_dim}-s{seed}-{method}"})
            row, _ = _train_one(run_cfg, held, out, cache_dir)
            rows.append(row)
            say(_progress_line(row, seed, seeds))
    if out is not None:
        write_bench(Path(out) / BENCH_FILE, rows, protocol(base, seeds, methods))
    return rows


def _progress_line(row: dict[str, Any], seed: int, seeds: int) -> str:
    head = f"seed {seed + 1}/{seeds} {row['method']:>9}:"
    if row.get("error"):
        return f"{head} FAILED ({row['error']})"
    knn = row.get("knn_acc")
    knn_text = f" k-NN {knn:.3f}" if knn is not None else ""
    return f"{head} PC {row['pc']:.4f}{knn_text} ({row['train_s']:.1f} s)"


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


def write_bench(path: str | Path, rows: list[dict[str, Any]], protocol_text: str, machine: str | None = None) -> Path:
    """Write ``{"machine", "protocol", "rows"}`` as JSON (NaN becomes null)."""
    from perco_viz.bench import machine_description

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()} for r in rows]
    doc = {"machine": machine or machine_description(), "protocol": protocol_text, "rows": clean}
    path.write_text(json.dumps(doc, indent=1, allow_nan=False))
    return path


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


def main(args) -> int:
    """``perco-viz bench methods``: train, score, print the machine, protocol and table.

    Returns 0, or 1 when a student's training failed (its row says why).
    """
    import sys

    from perco_viz.bench import machine_description
    from perco_viz.losses import LOSS_NAMES

    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    overrides = parse_overrides(getattr(args, "set", None) or [])
    base = bench_config(args.dataset, args.student_dim, args.epochs, device=args.device, overrides=overrides)
    rows = bench_methods(args.dataset, args.student_dim, args.seeds, args.epochs, methods, device=args.device,
                         out=args.out, progress=lambda line: print(line, file=sys.stderr, flush=True),
                         overrides=overrides)
    text = protocol(base, args.seeds, methods or LOSS_NAMES)
    print(f"machine: {machine_description()}\nprotocol: {text}\n")
    print(summary_table(rows))
    if args.json:
        write_bench(args.json, rows, text)
        print(f"\nwrote {args.json}")
    return 1 if any(r.get("error") for r in rows) else 0


# --------------------------------------------------------------------------- runs for the app
def _label(run: RunDir, taken: set[str]) -> str:
    name, i = run.name, 2
    while name in taken:
        name, i = f"{run.name} ({i})", i + 1
    taken.add(name)
    return name


def run_table(run_dirs: Iterable[RunDir | str | Path]) -> pd.DataFrame:
    """One row per run: its config (dataset, loss, student dim, epochs, seed), state and the last
    snapshot's probe-set metrics (pc, coherence_p10, knn_acc, train_loss, wall_s)."""
    rows, taken = [], set()
    for item in run_dirs:
        run = item if isinstance(item, RunDir) else RunDir(item)
        try:
            cfg = run.config()
        except Exception:  # noqa: BLE001 — an unreadable run is listed, not fatal
            cfg = None
        last = (_metrics_or_none(run) or [{}])[-1]
        rows.append({
            "run": _label(run, taken),
            "dataset": cfg.data.name if cfg else None,
            "loss": cfg.loss.name if cfg else None,
            "student_dim": cfg.student.dim if cfg else None,
            "epochs": cfg.train.epochs if cfg else None,
            "seed": cfg.train.seed if cfg else None,
            "state": run.status().get("state"),
            "epoch": last.get("epoch"),
            "pc": last.get("pc"),
            "coherence_p10": last.get("coherence_p10"),
            "knn_acc": last.get("knn_acc"),
            "train_loss": last.get("train_loss"),
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


# --------------------------------------------------------------------------- figures for the app
def aligned_embedding(student: np.ndarray, teacher_xy: np.ndarray) -> np.ndarray:
    """(n, 2) PCA of (n, d_s) student features, turned into the teacher's orientation (Procrustes).

    Args:
        student: (n, d_s) student features of the probe set.
        teacher_xy: (n, 2) PCA of the teacher's probe features (the reference frame).
    """
    from perco_viz.analysis.projection import align_procrustes, project

    coords = project(student, "pca", dim=2) if student.shape[1] > 2 else student[:, :2]
    if coords.shape[1] < 2:  # a 1-d student: a line
        coords = np.column_stack([coords[:, 0], np.zeros(len(coords))])
    return align_procrustes(coords, teacher_xy)


def embeddings_figure(panels: dict[str, np.ndarray], labels: np.ndarray | None = None,
                      coherence: dict[str, np.ndarray] | None = None,
                      class_names: list[str] | None = None, columns: int = 3):
    """Embedding plots side by side, every panel coloured the same way.

    Args:
        panels: title → (n, 2) coordinates of the same n probe inputs.
        labels: (n,) class codes: one colour per class in every panel (legend toggles all).
        coherence: title → (n,) c_i, used for the colour when there are no labels.
        class_names: names of the class codes.
        columns: panels per row.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from perco_viz.figures import COHERENCE_SCALE, PALETTE, TEMPLATE

    titles = list(panels)
    cols = max(1, min(columns, len(titles)))
    nrows = math.ceil(len(titles) / cols)
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=titles, horizontal_spacing=0.06,
                        vertical_spacing=0.12 if nrows > 1 else 0.08)
    for i, title in enumerate(titles):
        xy, row, col = panels[title], i // cols + 1, i % cols + 1
        if labels is not None:
            for code in np.unique(labels):
                mask = labels == code
                name = class_names[int(code)] if class_names and int(code) < len(class_names) else str(code)
                fig.add_trace(go.Scattergl(
                    x=xy[mask, 0], y=xy[mask, 1], mode="markers", name=name, legendgroup=name,
                    showlegend=i == 0, marker={"size": 5, "color": PALETTE[int(code) % len(PALETTE)]},
                    hovertemplate=f"{title}<br>class {name}<extra></extra>"), row=row, col=col)
        else:
            c = (coherence or {}).get(title)
            fig.add_trace(go.Scattergl(
                x=xy[:, 0], y=xy[:, 1], mode="markers", showlegend=False,
                marker={"size": 5, "color": c, "colorscale": COHERENCE_SCALE, "cmin": 0.5, "cmax": 1.0,
                        "colorbar": {"title": "c_i"} if i == 0 and c is not None else None}), row=row, col=col)
        fig.update_xaxes(title_text="PC 1 (teacher's orientation)", row=row, col=col)
        fig.update_yaxes(title_text="PC 2", row=row, col=col)
    fig.update_layout(template=TEMPLATE, title="Final embeddings of the probe set (PCA, aligned to the teacher)",
                      height=400 * nrows + 90, margin={"t": 90, "b": 100},
                      legend={"title": "class", "orientation": "h", "yanchor": "top", "y": -0.2, "x": 0})
    return fig
