"""``perco-viz``: headless runs and benchmarks, on the same config as the app.

    perco-viz distill --dataset digits --epochs 5 --student-dim 8 --out runs
    perco-viz resume runs/digits-coherence-d8-...
    perco-viz teacher train --dataset digits
    perco-viz bench loss
    perco-viz bench methods --dataset digits --student-dim 8 --seeds 3 --epochs 20
    perco-viz bench engine | analysis | projection | estimate | epoch | log | export
    perco-viz diagnose --teacher t.npy --student s.npy [--labels y.npy] [--html r.html] [--json o.json]
    perco-viz export runs/digits-coherence-d8-... --format tensorboard|csv|parquet --out DIR [--snapshot N]

``distill`` has one flag per config field, derived from the dataclasses of :mod:`perco_viz.config`
(``--section.field``, its help and choices from the field's metadata; the older short spellings
such as ``--dataset`` and ``--epochs`` are aliases), ``--loss.options OPTION=VALUE`` for the chosen
loss's own options and ``--set FIELD=VALUE`` for any field: ``perco-viz distill --help`` lists them
by section. Every value is text typed by :func:`perco_viz.config.parse_value`.

Errors are one line on stderr and a non-zero exit status, never a traceback. A bad argument
or config value (wrong type, out of range: :mod:`perco_viz.config`) is refused with exit status
1 and one ``error:`` line before anything is written.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

# The flags of `distill` are derived from the config's dataclasses (perco_viz.config): one flag
# --section.field per field, its help and choices from the field's metadata. These are the
# spellings the flags had before, kept as aliases so existing commands still run.
ALIASES: dict[str, tuple[str, ...]] = {
    "data.name": ("--dataset",), "data.path": ("--data-path",), "data.label_column": ("--label-column",),
    "data.n_samples": ("--n-samples",), "data.probe_size": ("--probe-size",),
    "teacher.kind": ("--teacher",), "teacher.arch": ("--teacher-arch",), "teacher.path": ("--teacher-path",),
    "teacher.layer": ("--teacher-layer",),
    "student.arch": ("--student",), "student.dim": ("--student-dim",), "student.path": ("--student-path",),
    "loss.name": ("--loss",), "loss.tau": ("--tau",), "loss.kernel": ("--kernel",), "loss.metric": ("--metric",),
    "loss.anchors": ("--anchors",), "loss.ce_weight": ("--ce-weight",), "loss.kd_weight": ("--kd-weight",),
    "train.epochs": ("--epochs",), "train.batch_size": ("--batch-size",), "train.lr": ("--lr",),
    "train.device": ("--device",), "train.seed": ("--seed",), "train.snapshot_every": ("--snapshot-every",),
}
OPTIONS_FIELD = "loss.options"  # the one field that is a mapping: --loss.options OPTION=VALUE, repeatable
METAVARS = {bool: "BOOL", int: "INT", float: "FLOAT", str: "TEXT"}


def flag_names(dotted: str) -> tuple[str, ...]:
    """The flags that set the config field ``dotted``: ``--section.field`` first, then its aliases."""
    return (f"--{dotted}", *ALIASES.get(dotted, ()))


def flag_help(info) -> str:
    """A flag's help: the field's help (:func:`perco_viz.config.field_help`), then its choices and default.

    Args:
        info: a :class:`perco_viz.config.FieldInfo`.
    """
    from perco_viz.config import field_choices, loss_option_defaults

    text = info.help
    if info.dotted == OPTIONS_FIELD:
        per_loss = "; ".join(f"{name}: " + ", ".join(f"{k}={v!r}" for k, v in loss_option_defaults(name).items())
                             for name in field_choices("loss", "name") if loss_option_defaults(name))
        return f"{text} Repeatable, one OPTION=VALUE each. Options and defaults: {per_loss}.".replace("%", "%%")
    if info.choices is not None:
        text += f" One of: {', '.join(info.choices)}."
    elif info.annotation is bool:
        text += " true or false."
    default = {None: "none", True: "true", False: "false"}.get(info.default, info.default) \
        if isinstance(info.default, (bool, type(None))) else info.default
    text += f" Default: {default}."
    return text.replace("%", "%%")  # argparse formats help strings with %


def _metavar(info) -> str:
    for kind, name in METAVARS.items():
        if info.annotation in (kind, kind | None):
            return name
    return "VALUE"


def _add_distill_flags(p: argparse.ArgumentParser) -> None:
    """``--config``, ``--out``, ``--quiet``, ``--set`` and one flag per config field, grouped by section."""
    from perco_viz.config import config_fields, section_help

    run = p.add_argument_group("run")
    run.add_argument("--config", help="YAML or JSON config file; the flags below override it")
    run.add_argument("--out", default="runs", help="directory under which the run directory is made (default: runs)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                     help="set a config field by its dotted name, e.g. --set loss.kernel=sigmoid or --set "
                          "loss.options.gamma=0.3 (repeatable; applied after the other flags)")
    groups: dict[str, Any] = {"": run}
    for info in config_fields():
        if info.section not in groups:
            groups[info.section] = p.add_argument_group(info.section, section_help(info.section))
        group = groups[info.section]
        if info.dotted == OPTIONS_FIELD:
            group.add_argument(*flag_names(info.dotted), dest=info.dotted, action="append", default=[],
                               metavar="OPTION=VALUE", help=flag_help(info))
        else:
            group.add_argument(*flag_names(info.dotted), dest=info.dotted, default=None, metavar=_metavar(info),
                               help=flag_help(info))


def _add_trust_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trust-code", action="store_true",
        help="load a TorchScript teacher/student file. DANGER: loading TorchScript runs the code the file "
             "carries (it can write any file you can); use it only for files you made yourself. Without it "
             "TorchScript is refused: bring a .safetensors state_dict plus an architecture name instead. It also "
             "lets a module:Class teacher/student import any installed module (without it: only the modules "
             "listed in $PERCO_VIZ_TRUSTED_MODULES)",
    )


def config_from_args(args: argparse.Namespace):
    """RunConfig from ``--config`` (if any), overridden by the field flags given, then by ``--set``.

    Every value is text, typed by :func:`perco_viz.config.parse_value`; a bad one is a
    ``ConfigError`` naming the dotted field.
    """
    from perco_viz.config import (
        OPTIONS_PREFIX,
        RunConfig,
        apply_overrides,
        config_fields,
        split_override,
    )

    cfg = RunConfig.load(args.config) if getattr(args, "config", None) else RunConfig()
    values = {info.dotted: getattr(args, info.dotted, None) for info in config_fields()
              if info.dotted != OPTIONS_FIELD}
    for item in getattr(args, OPTIONS_FIELD, None) or []:
        option, value = split_override(item)
        values[OPTIONS_PREFIX + option] = value
    return apply_overrides(cfg.override(**values), getattr(args, "set", None) or [])


class ProgressBar:
    """The CLI's progress on stderr: a ``tqdm`` bar over the training steps on a terminal;
    one line per set-up phase when ``quiet`` or when stderr is not a terminal (a log file)."""

    def __init__(self, quiet: bool) -> None:
        self.lines = quiet or not sys.stderr.isatty()
        self.bar = None
        self.last_phase = None

    def __call__(self, p: dict[str, Any]) -> None:
        phase = p["phase"]
        if self.lines:
            if phase != self.last_phase and phase != "train":
                print(f"[perco-viz] {phase}…", file=sys.stderr, flush=True)
            self.last_phase = phase
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=max(1, p.get("total_steps") or 1), file=sys.stderr, unit="step",
                            dynamic_ncols=True)
        if phase != "train":
            self.bar.set_description_str(f"[perco-viz] {phase}…")
            return
        self.bar.total = max(1, p["total_steps"])
        self.bar.set_description_str(f"epoch {p['epoch'] + 1}", refresh=False)
        self.bar.set_postfix_str(f"loss {p.get('loss', 0):.4f}", refresh=False)
        self.bar.update(p["step"] - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _summary(result) -> str:
    f = result.final
    parts = [f"status={result.status}"]
    for key in ("epoch", "pc", "knn_acc", "train_loss", "wall_s"):
        if f.get(key) is not None:
            parts.append(f"{key}={f[key]:.4g}" if isinstance(f[key], float) else f"{key}={f[key]}")
    if result.run_dir is not None:
        parts.append(f"run={result.run_dir.path}")
    return " ".join(parts)


def cmd_distill(args: argparse.Namespace) -> int:
    from perco_viz.distill import Callbacks, distill

    cfg = config_from_args(args)
    bar = ProgressBar(args.quiet)
    result = distill(cfg, out=args.out, callbacks=Callbacks(on_progress=bar), trust_code=args.trust_code)
    bar.close()
    if result.run_dir is not None or result.status != "finished":
        print(_summary(result))
    if result.status != "finished":
        print(f"error: {result.error}", file=sys.stderr)
        return 1
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from perco_viz.config import check_field
    from perco_viz.distill import Callbacks, resume
    from perco_viz.runs import RunStoreError

    epochs = None if args.epochs is None else check_field("train.epochs", args.epochs)  # before the run is touched
    bar = ProgressBar(args.quiet)
    try:
        result = resume(args.run_dir, epochs=epochs, callbacks=Callbacks(on_progress=bar),
                        trust_code=args.trust_code)
    except RunStoreError as exc:  # locked by another writer, not a run, a damaged config/checkpoint: untouched
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    bar.close()
    print(_summary(result))
    if result.status != "finished":
        print(f"error: {result.error}", file=sys.stderr)
        return 1
    return 0


def cmd_teacher_train(args: argparse.Namespace) -> int:
    from perco_viz import models, paths
    from perco_viz.config import ConfigError, DataConfig, RunConfig, TeacherConfig
    from perco_viz.data import load_dataset
    from perco_viz.distill import TrainingError, resolve_device

    RunConfig().override(**{"data.name": args.dataset, "data.seed": args.seed, "train.device": args.device})
    try:
        resolve_device(args.device)
    except TrainingError as exc:
        raise ConfigError(f"--device: {exc}") from None
    data = load_dataset(DataConfig(name=args.dataset, path=args.data_path, seed=args.seed))
    t0 = time.perf_counter()

    def progress(epoch: int, total: int, acc: float) -> None:
        print(f"[teacher] epoch {epoch}/{total} test accuracy {acc:.3f}", file=sys.stderr, flush=True)

    cache = args.cache_dir or paths.default_cache_dir()
    teacher = models.load_teacher(TeacherConfig(kind="builtin"), data, cache_dir=cache, device=args.device,
                                  progress=progress)
    acc = models.teacher_accuracy(teacher, data) if hasattr(models, "teacher_accuracy") else None
    acc_text = f" test_acc={acc:.4f}" if acc is not None else ""
    print(f"teacher ready: dataset={args.dataset}{acc_text} time={time.perf_counter() - t0:.1f}s cache={cache}")
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    """``perco-viz diagnose``: the Diagnose page's panel of two feature files, headless."""
    import json
    from pathlib import Path

    from perco_viz.analysis import diagnose

    if args.triplets < 1:
        raise ValueError(f"--triplets must be at least 1, got {args.triplets}")
    pair = diagnose.load_pair(args.teacher, args.student, labels_from="file" if args.labels else "auto",
                              labels=args.labels)
    panel = diagnose.compute_panel(pair, seed=args.seed, n_triplets=args.triplets, max_points=args.sample,
                                   neighbour_points=args.neighbours)
    print(f"diagnosis of {pair.n:,} rows · teacher {panel.teacher_dim}-d · student {panel.student_dim}-d · "
          f"{'labelled' if panel.labels is not None else 'no labels'} · seed {args.seed}")
    print("\n".join(diagnose.panel_lines(panel)))
    if args.json:
        Path(args.json).write_text(json.dumps(diagnose.panel_json(panel), indent=2, ensure_ascii=False) + "\n",
                                   encoding="utf-8")
        print(f"wrote {args.json}")
    if args.html:
        from perco_viz.figures import diagnose as diagnose_figures

        doc = diagnose_figures.html_report(panel, diagnose_figures.panel_figures(panel), title="Diagnosis of a student")
        Path(args.html).write_text(doc, encoding="utf-8")
        print(f"wrote {args.html}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``perco-viz export``: a snapshot for TensorBoard's projector, or the metrics as CSV/Parquet."""
    from perco_viz import export

    names = export.class_names_for(args.run) if args.format == "tensorboard" else None
    written = export.export(args.run, args.out, args.format, snapshot=args.snapshot, class_names=names,
                            force=args.force)
    for path in written:
        print(f"wrote {path}")
    if args.format == "tensorboard":
        import shlex

        print(f"open it with: tensorboard --logdir {shlex.quote(str(args.out))}  (tab Projector)")
    return 0


def cmd_bench_loss(args: argparse.Namespace) -> int:
    from perco_viz.bench import bench_loss, loss_table, machine_description, write_json

    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else None
    rows = bench_loss(sizes, kernel=args.kernel, student_dim=args.student_dim, teacher_dim=args.teacher_dim,
                      device=args.device, repeats=args.repeats, reference_max=args.reference_max)
    print(f"machine: {machine_description()}\nkernel: {args.kernel}, student width {args.student_dim}, "
          f"teacher width {args.teacher_dim}\n")
    print(loss_table(rows))
    if args.json:
        write_json(rows, args.json)
    return 0


def _emit(report: Any, table: str, path: str | None) -> None:
    from perco_viz.bench import machine_description

    print(f"machine: {machine_description()}\n\n{table}")
    if path:
        from perco_viz.bench import write_json

        write_json(report, path)


def cmd_bench_engine(args: argparse.Namespace) -> int:
    from perco_viz.bench import bench_engine

    r = bench_engine(dataset=args.dataset, epochs=args.epochs, student_dim=args.student_dim, loss=args.loss,
                     device=args.device)
    table = "\n".join([
        r["command"],
        f"teacher {'cached' if r['teacher_cached'] else 'trained first'} ({r['teacher_load_or_train_s']:.1f} s; "
        f"from the cache {r['teacher_cached_load_s']:.2f} s)",
        "| end to end (s) | set-up to first snapshot (s) | training + snapshots (s) | per epoch (s) | PC untrained → final | k-NN acc |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {r['total_s']:.1f} | {r['first_snapshot_s']:.1f} | {r['train_s']:.1f} | {r['epoch_s'] or 0:.2f} | "
        f"{r['pc_untrained']:.3f} → {r['pc']:.3f} | {r['knn_acc']:.3f} |"])
    _emit(r, table, args.json)
    return 0


def cmd_bench_epoch(args: argparse.Namespace) -> int:
    from perco_viz.bench import bench_epoch

    if args.n < 30 or args.batch_size < 3:
        raise ValueError(f"--n must be at least 30 and --batch-size at least 3, got {args.n} and {args.batch_size}")
    r = bench_epoch(args.n, device=args.device, batch_size=args.batch_size, student_dim=args.student_dim,
                    loss=args.loss)
    gpu = "—" if r["peak_gpu_mib"] is None else f"{r['peak_gpu_mib']:.0f}"
    table = "\n".join([
        f"one engine epoch: {r['n']:,} synthetic 3×32×32 images, TeacherCNN (random weights) → StudentCNN "
        f"(dim {r['student_dim']}), loss {r['loss']}, batch {r['batch_size']}, {r['steps']} steps, "
        f"device {r['device']}, bf16 autocast {'on' if r['amp'] else 'off'}",
        "| writing the images (s) | engine set-up (s) | epoch (s) | ms / step | images / s | snapshot (s) | "
        "peak GPU memory (MiB) | PC untrained → after |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {r['write_images_s']:.1f} | {r['setup_s']:.1f} | {r['epoch_s']:.2f} | {r['ms_per_step']:.1f} | "
        f"{r['images_per_s']:,.0f} | {r['snapshot_s']:.2f} | {gpu} | {r['pc_untrained']:.3f} → {r['pc']:.3f} |"])
    _emit(r, table, args.json)
    return 0


def cmd_bench_analysis(args: argparse.Namespace) -> int:
    from perco_viz.bench import bench_analysis, bench_exact_metrics, exact_metrics_table

    if args.n < 3:
        raise ValueError(f"--n must be at least 3, got {args.n}")
    exact = bench_exact_metrics(args.n, memory=not args.no_memory)
    r = bench_analysis(args.n)
    lines = [exact_metrics_table(exact), "",
             f"pages at n = {r['n']} (teacher width {r['teacher_dim']}, student width {r['student_dim']}; "
             f"R_T, R_S, A on the page's {r['page_points']:,}-point subsample)",
             "| step | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in r["steps_s"].items()]
    lines += [f"| **Rank agreement page** | **{r['rank_page_s']:.2f}** |",
              f"| **Per-sample coherence page** | **{r['per_sample_page_s']:.2f}** |"]
    _emit({**r, "exact_metrics": exact}, "\n".join(lines), args.json)
    return 0


def cmd_bench_projection(args: argparse.Namespace) -> int:
    from perco_viz.bench import bench_projection

    rows = bench_projection(args.n, snapshots=args.snapshots)
    lines = ["| projection | n | seconds |", "|---|---:|---:|"]
    lines += [f"| {r['projection']} | {r['n']} | {r['seconds']:.2f} |" for r in rows]
    _emit(rows, "\n".join(lines), args.json)
    return 0


def cmd_bench_methods(args: argparse.Namespace) -> int:
    from perco_viz import methods

    return methods.main(args)


def cmd_bench_estimate(args: argparse.Namespace) -> int:
    from perco_viz.bench import bench_estimate

    if args.rows < 3 or args.triplets < 1 or args.student_dim < 1 or args.teacher_dim < 1:
        raise ValueError("--rows must be at least 3, and --triplets, --student-dim, --teacher-dim at least 1")
    r = bench_estimate(args.rows, student_dim=args.student_dim, teacher_dim=args.teacher_dim,
                       triplets=args.triplets, device=args.device)
    table = "\n".join([
        "PC estimated from sampled triplets (95% Wilson interval), synthetic float32 features "
        f"(clustered teacher, noisy nonlinear student; made in {r['data_s']:.1f} s)",
        "| rows | student dim | teacher dim | triplets | value | low | high | seconds | triplets / s | device |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| {r['rows']:,} | {r['student_dim']} | {r['teacher_dim']} | {r['triplets']:,} | {r['value']:.4f} | "
        f"{r['low']:.4f} | {r['high']:.4f} | {r['seconds']:.2f} | {r['triplets_per_s']:,.0f} | {r['device']} |"])
    _emit(r, table, args.json)
    return 0


def cmd_bench_log(args: argparse.Namespace) -> int:
    from perco_viz.bench import bench_log

    if args.rows < 3 or args.logs < 1 or args.every_s < 0 or args.student_dim < 1 or args.teacher_dim < 1:
        raise ValueError("--rows must be at least 3, --logs at least 1, --every-s 0 or more")
    rows = [bench_log(n, student_dim=args.student_dim, teacher_dim=args.teacher_dim, logs=args.logs,
                      every_s=args.every_s, device=args.device) for n in args.rows_list or [args.rows]]
    lines = ["How long run.log keeps a training loop (perco_viz.open_run), and the background measurement",
             "| probe rows | student dim | log ms (median) | p99 | max | numbers-only log ms | one snapshot measured "
             "+ written, s | loop work between logs, s | dropped | device |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {r['rows']:,} | {r['student_dim']} | {r['log_ms_median']:.2f} | {r['log_ms_p99']:.2f} | "
              f"{r['log_ms_max']:.2f} | {r['numbers_ms_median']:.3f} | {r['measure_s']:.2f} | {r['every_s']:g} | "
              f"{r['dropped']} of {r['logs']} | {r['device']} |" for r in rows]
    _emit(rows, "\n".join(lines), args.json)
    return 0


def cmd_bench_export(args: argparse.Namespace) -> int:
    from perco_viz.bench import bench_export

    if min(args.n_list or [args.n]) < 3:
        raise ValueError("--n must be at least 3")
    rows = [bench_export(n) for n in args.n_list or [args.n]]
    lines = ["perco-viz export of one snapshot (synthetic: student 64-d, teacher 512-d)",
             "| probe points | projector folder, s | folder, MiB | zip in memory (app download), s | zip, MiB | "
             "metrics CSV, s |", "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['n']:,} | {r['folder_s']:.2f} | {r['folder_mib']:,.0f} | {r['zip_s']:.2f} | {r['zip_mib']:,.0f} | "
              f"{r['csv_s']:.3f} |" for r in rows]
    _emit(rows, "\n".join(lines), args.json)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from perco_viz.config import field_choices, field_help

    parser = argparse.ArgumentParser(prog="perco-viz", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("distill", help="train a student against a teacher, recording a run directory")
    _add_distill_flags(p)
    _add_trust_flag(p)
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("resume", help="continue a run from its last checkpoint")
    p.add_argument("run_dir")
    p.add_argument("--epochs", "--train.epochs", default=None, metavar="INT",
                   help="train to this many epochs in all (train.epochs)")
    p.add_argument("--quiet", action="store_true")
    _add_trust_flag(p)
    p.set_defaults(func=cmd_resume)

    teacher = sub.add_parser("teacher", help="built-in teachers").add_subparsers(dest="teacher_cmd", required=True)
    p = teacher.add_parser("train", help="train (or load from cache) the built-in teacher for a dataset")
    p.add_argument("--dataset", default="digits", help=field_help("data", "name"))
    p.add_argument("--data-path", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache-dir", default=None)
    p.set_defaults(func=cmd_teacher_train)

    p = sub.add_parser("diagnose", help="the Diagnose page's panel of a teacher/student pair of feature files")
    p.add_argument("--teacher", required=True, metavar="T",
                   help="teacher features: .npy (memory-mapped), .npz (X, optional y), .parquet or .csv")
    p.add_argument("--student", required=True, metavar="S", help="student features of the same rows, in order")
    p.add_argument("--labels", default=None, metavar="L",
                   help="labels file (.npy, .npz with y, .csv with a label column); default: the files' y/label")
    p.add_argument("--html", default=None, help="write the self-contained HTML report here")
    p.add_argument("--json", default=None, help="write every number, its interval and its scope as JSON here")
    p.add_argument("--seed", type=int, default=0, help="seed of the samples of rows, triplets and pairs")
    p.add_argument("--triplets", type=int, default=1_000_000, help="triplets of the PC estimate (large sets)")
    p.add_argument("--sample", type=int, default=2000, help="rows whose c_i is estimated (its 10th percentile)")
    p.add_argument("--neighbours", type=int, default=None,
                   help="rows of the neighbourhood metrics (default: min(--sample, 2000); at most 10,000)")
    p.set_defaults(func=cmd_diagnose)

    p = sub.add_parser("export", help="a run's snapshot for TensorBoard's Embedding Projector, or its metrics as "
                                      "CSV or Parquet")
    p.add_argument("run", metavar="RUN", help="the run directory")
    p.add_argument("--format", required=True, choices=("tensorboard", "csv", "parquet"),
                   help="tensorboard: tensors.tsv, teacher_tensors.tsv, metadata.tsv (label, c_i) and "
                        "projector_config.pbtxt of one snapshot; csv / parquet: every metrics record")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder to write into: new, empty, or a previous export of the same kind")
    p.add_argument("--snapshot", type=int, default=None, metavar="N",
                   help="the snapshot to export (tensorboard; default: the latest)")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty folder that is not a previous export (files of the same names "
                        "are replaced)")
    p.set_defaults(func=cmd_export)

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench_cmd", required=True)
    p = bench.add_parser("loss", help="forward+backward time of the coherence loss, fast vs reference")
    p.add_argument("--sizes", default=None, help="comma-separated n (default 128..4096)")
    p.add_argument("--kernel", default="ramp", choices=field_choices("loss", "kernel"),
                   help=field_help("loss", "kernel"))
    p.add_argument("--student-dim", type=int, default=64)
    p.add_argument("--teacher-dim", type=int, default=512)
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--reference-max", type=int, default=None,
                   help="largest n for the O(n³) reference (default 1024 ramp, 512 sigmoid)")
    p.add_argument("--json", default=None, help="also write the rows as JSON here")
    p.set_defaults(func=cmd_bench_loss)

    p = bench.add_parser("methods", help="train every loss on the same pair and compare on held-out data")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--student-dim", type=int, default=8)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--methods", default=None, help="comma-separated subset of the loss names")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="also keep each run's directory under here")
    p.add_argument("--json", default=None, help="write the rows as JSON here")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a field of the shared config, e.g. --set loss.kernel=sigmoid (repeatable)")
    p.set_defaults(func=cmd_bench_methods)

    p = bench.add_parser("estimate", help="PC with a confidence interval from sampled triplets, at a million rows")
    p.add_argument("--rows", type=int, default=1_000_000, help="points (default 1,000,000)")
    p.add_argument("--student-dim", type=int, default=64)
    p.add_argument("--teacher-dim", type=int, default=512)
    p.add_argument("--triplets", type=int, default=1_000_000, help="triplets sampled (default 1,000,000)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--json", default=None, help="also write the figures as JSON here")
    p.set_defaults(func=cmd_bench_estimate)

    p = bench.add_parser("engine", help="end-to-end time of perco-viz distill, with its breakdown")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--student-dim", type=int, default=8)
    p.add_argument("--loss", default="coherence")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None)
    p.set_defaults(func=cmd_bench_engine)

    p = bench.add_parser("epoch", help="one engine epoch on a CIFAR-sized synthetic set (CNN teacher and student)")
    p.add_argument("--n", type=int, default=50_000, help="training images, 3×32×32 (default 50,000)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--student-dim", type=int, default=8)
    p.add_argument("--loss", default="coherence")
    p.add_argument("--json", default=None, help="also write the figures as JSON here")
    p.set_defaults(func=cmd_bench_epoch)

    p = bench.add_parser("analysis", help="the exact metrics against their floor (time, memory) and what the "
                                          "rank-agreement and per-sample pages compute, timed")
    p.add_argument("--n", type=int, default=2000, help="probe-set size")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs (a fresh process each)")
    p.add_argument("--json", default=None)
    p.set_defaults(func=cmd_bench_analysis)

    p = bench.add_parser("log", help="how long perco_viz.open_run's run.log keeps your training loop, and the "
                                     "background measurement of each snapshot")
    p.add_argument("--rows", type=int, default=1000, help="probe rows (default 1,000)")
    p.add_argument("--rows-list", type=int, nargs="*", default=None, help="several probe sizes, one row each")
    p.add_argument("--student-dim", type=int, default=64)
    p.add_argument("--teacher-dim", type=int, default=512)
    p.add_argument("--logs", type=int, default=20, help="snapshots logged (each followed by a numbers-only log)")
    p.add_argument("--every-s", type=float, default=0.5, help="seconds of busy work between logs (the training)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None)
    p.set_defaults(func=cmd_bench_log)

    p = bench.add_parser("export", help="perco-viz export timed: a snapshot for TensorBoard's projector, the metrics")
    p.add_argument("--n", type=int, default=10_000, help="probe points (default 10,000)")
    p.add_argument("--n-list", type=int, nargs="*", default=None, help="several sizes, one row each")
    p.add_argument("--json", default=None)
    p.set_defaults(func=cmd_bench_export)

    p = bench.add_parser("projection", help="PCA / UMAP / t-SNE and their aligned sequences on digits")
    p.add_argument("--n", type=int, default=None, help="rows of digits to project (default all 1,797)")
    p.add_argument("--snapshots", type=int, default=3)
    p.add_argument("--json", default=None)
    p.set_defaults(func=cmd_bench_projection)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``perco-viz`` and ``python -m perco_viz``."""
    from perco_viz.config import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, ImportError, OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
