"""The methods benchmark: ``perco-viz bench methods``.

It trains one student per transfer loss on the same teacher, data, initialisation and budget,
then scores every student on the dataset's held-out *test split* (not only the probe set) with
:func:`perco_viz.analysis.compare.score_features`: k-NN and linear-probe accuracy are fitted on
the student's features of the train split and scored on the test split. Two reference rows frame
the students: ``untrained`` (the student at its initialisation, same seed) and ``teacher`` (the
teacher's own features, PC = 1 by definition).

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
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from perco_viz.analysis.compare import (
    BENCH_FILE,
    MAX_TEST_POINTS,
    METRICS,
    HeldOut,
    held_out,
    score_features,
    student_features,
    summary_table,
)
from perco_viz.config import RunConfig, split_override
from perco_viz.runs import RunDir


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
    """``["loss.kernel=sigmoid", ...]`` → ``{"loss.kernel": "sigmoid"}`` (values typed by the config).

    Raises:
        ConfigError: an item without ``=`` (:func:`perco_viz.config.split_override`).
    """
    return dict(split_override(item) for item in items)


def protocol(config: RunConfig, seeds: int, methods: Iterable[str]) -> str:
    """One paragraph stating what is shared and what differs between the benchmarked students."""
    from perco_viz.losses import loss_defaults

    t, c = config.train, config
    defaults = "; ".join(f"{m}: {loss_defaults(m)}" for m in methods if m != "coherence" and loss_defaults(m))
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
    test, train = student_features(engine.student, held)
    row = _row(config.loss.name, config.train.seed, score_features(test, train, held), train_s)
    if run_dir is not None:
        run_dir.save_heldout(row)
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
        test, train = student_features(untrained, held)
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



def write_bench(path: str | Path, rows: list[dict[str, Any]], protocol_text: str, machine: str | None = None) -> Path:
    """Write ``{"machine", "protocol", "rows"}`` as JSON (NaN becomes null)."""
    from perco_viz.bench import machine_description

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()} for r in rows]
    doc = {"machine": machine or machine_description(), "protocol": protocol_text, "rows": clean}
    path.write_text(json.dumps(doc, indent=1, allow_nan=False))
    return path



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
