"""``perco-viz``: headless runs and benchmarks, on the same config as the app.

    perco-viz distill --dataset digits --epochs 5 --student-dim 8 --out runs
    perco-viz resume runs/digits-coherence-d8-...
    perco-viz teacher train --dataset digits
    perco-viz bench loss
    perco-viz bench methods --dataset digits --student-dim 8 --seeds 3 --epochs 20
    perco-viz bench engine | analysis | projection

Errors are one line on stderr and a non-zero exit status, never a traceback. A bad argument
or config value (wrong type, out of range: :mod:`perco_viz.config`) is refused with exit status
1 and one ``error:`` line before anything is written.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

# flag -> config field; the one place the CLI maps onto RunConfig
DISTILL_FLAGS: dict[str, tuple[str, type]] = {
    "dataset": ("data.name", str),
    "data_path": ("data.path", str),
    "label_column": ("data.label_column", str),
    "n_samples": ("data.n_samples", int),
    "probe_size": ("data.probe_size", int),
    "teacher": ("teacher.kind", str),
    "teacher_arch": ("teacher.arch", str),
    "teacher_path": ("teacher.path", str),
    "teacher_layer": ("teacher.layer", str),
    "student": ("student.arch", str),
    "student_dim": ("student.dim", int),
    "student_path": ("student.path", str),
    "loss": ("loss.name", str),
    "tau": ("loss.tau", float),
    "kernel": ("loss.kernel", str),
    "metric": ("loss.metric", str),
    "anchors": ("loss.anchors", int),
    "ce_weight": ("loss.ce_weight", float),
    "kd_weight": ("loss.kd_weight", float),
    "epochs": ("train.epochs", int),
    "batch_size": ("train.batch_size", int),
    "lr": ("train.lr", float),
    "device": ("train.device", str),
    "seed": ("train.seed", int),
    "snapshot_every": ("train.snapshot_every", int),
    "name": ("name", str),
}


def _add_distill_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML or JSON config file; flags override it")
    for flag, (field, typ) in DISTILL_FLAGS.items():
        p.add_argument(f"--{flag.replace('_', '-')}", dest=flag, type=typ, default=None, help=f"sets {field}")
    p.add_argument("--out", default="runs", help="directory under which the run directory is made (default: runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_trust_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trust-code", action="store_true",
        help="load a TorchScript teacher/student file. DANGER: loading TorchScript runs the code the file "
             "carries (it can write any file you can); use it only for files you made yourself. Without it "
             "TorchScript is refused: bring a .safetensors state_dict plus an architecture name instead",
    )


def config_from_args(args: argparse.Namespace):
    """RunConfig from ``--config`` (if any) overridden by the flags given."""
    from perco_viz.config import RunConfig

    cfg = RunConfig.load(args.config) if getattr(args, "config", None) else RunConfig()
    return cfg.override(**{field: getattr(args, flag) for flag, (field, _) in DISTILL_FLAGS.items()})


class _ProgressBar:
    """A one-line progress bar on stderr (no dependency)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet or not sys.stderr.isatty()
        self.last = 0.0
        self.last_phase = None

    def __call__(self, p: dict[str, Any]) -> None:
        if self.quiet:
            if p["phase"] != self.last_phase and p["phase"] != "train":
                print(f"[perco-viz] {p['phase']}…", file=sys.stderr, flush=True)
            self.last_phase = p["phase"]
            return
        now = time.perf_counter()
        if now - self.last < 0.1 and p["step"] != p["total_steps"]:
            return
        self.last = now
        if p["phase"] != "train":
            sys.stderr.write(f"\r[perco-viz] {p['phase']}…" + " " * 40)
        else:
            total = max(1, p["total_steps"])
            frac = p["step"] / total
            bar = "█" * int(30 * frac) + "·" * (30 - int(30 * frac))
            eta = f" eta {p['eta_s']:.0f}s" if p.get("eta_s") is not None else ""
            sys.stderr.write(f"\r{bar} {p['step']}/{total} epoch {p['epoch'] + 1} loss {p.get('loss', 0):.4f}{eta}   ")
        sys.stderr.flush()

    def close(self) -> None:
        if not self.quiet:
            sys.stderr.write("\n")


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
    bar = _ProgressBar(args.quiet)
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

    if args.epochs is not None:
        check_field("train.epochs", args.epochs)  # ConfigError before the run is touched
    bar = _ProgressBar(args.quiet)
    try:
        result = resume(args.run_dir, epochs=args.epochs, callbacks=Callbacks(on_progress=bar),
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
    from perco_viz import models
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

    cache = args.cache_dir or models.default_cache_dir()
    teacher = models.load_teacher(TeacherConfig(kind="builtin"), data, cache_dir=cache, device=args.device,
                                  progress=progress)
    acc = models.teacher_accuracy(teacher, data) if hasattr(models, "teacher_accuracy") else None
    acc_text = f" test_acc={acc:.4f}" if acc is not None else ""
    print(f"teacher ready: dataset={args.dataset}{acc_text} time={time.perf_counter() - t0:.1f}s cache={cache}")
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
        f"teacher {'cached' if r['teacher_cached'] else 'trained first'} ({r['teacher_load_or_train_s']:.1f} s)",
        "| end to end (s) | set-up to first snapshot (s) | training + snapshots (s) | per epoch (s) | PC untrained → final | k-NN acc |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {r['total_s']:.1f} | {r['first_snapshot_s']:.1f} | {r['train_s']:.1f} | {r['epoch_s'] or 0:.2f} | "
        f"{r['pc_untrained']:.3f} → {r['pc']:.3f} | {r['knn_acc']:.3f} |"])
    _emit(r, table, args.json)
    return 0


def cmd_bench_analysis(args: argparse.Namespace) -> int:
    from perco_viz.bench import bench_analysis

    r = bench_analysis(args.n)
    lines = [f"n = {r['n']} (teacher width {r['teacher_dim']}, student width {r['student_dim']})",
             "| step | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in r["steps_s"].items()]
    lines += [f"| **Rank agreement page** | **{r['rank_page_s']:.2f}** |",
              f"| **Per-sample coherence page** | **{r['per_sample_page_s']:.2f}** |"]
    _emit(r, "\n".join(lines), args.json)
    return 0


def cmd_bench_projection(args: argparse.Namespace) -> int:
    from perco_viz.bench import bench_projection

    rows = bench_projection(args.n, snapshots=args.snapshots)
    lines = ["| projection | n | seconds |", "|---|---:|---:|"]
    lines += [f"| {r['projection']} | {r['n']} | {r['seconds']:.2f} |" for r in rows]
    _emit(rows, "\n".join(lines), args.json)
    return 0


def cmd_bench_methods(args: argparse.Namespace) -> int:
    from perco_viz.analysis import compare

    return compare.main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perco-viz", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("distill", help="train a student against a teacher, recording a run directory")
    _add_distill_flags(p)
    _add_trust_flag(p)
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("resume", help="continue a run from its last checkpoint")
    p.add_argument("run_dir")
    p.add_argument("--epochs", type=int, default=None, help="train to this many epochs in all")
    p.add_argument("--quiet", action="store_true")
    _add_trust_flag(p)
    p.set_defaults(func=cmd_resume)

    teacher = sub.add_parser("teacher", help="built-in teachers").add_subparsers(dest="teacher_cmd", required=True)
    p = teacher.add_parser("train", help="train (or load from cache) the built-in teacher for a dataset")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-path", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache-dir", default=None)
    p.set_defaults(func=cmd_teacher_train)

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench_cmd", required=True)
    p = bench.add_parser("loss", help="forward+backward time of the coherence loss, fast vs reference")
    p.add_argument("--sizes", default=None, help="comma-separated n (default 128..2048, 4096 on CUDA)")
    p.add_argument("--kernel", default="ramp", choices=["ramp", "sigmoid"])
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

    p = bench.add_parser("engine", help="end-to-end time of perco-viz distill, with its breakdown")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--student-dim", type=int, default=8)
    p.add_argument("--loss", default="coherence")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None)
    p.set_defaults(func=cmd_bench_engine)

    p = bench.add_parser("analysis", help="what the rank-agreement and per-sample pages compute, timed")
    p.add_argument("--n", type=int, default=2000, help="probe-set size")
    p.add_argument("--json", default=None)
    p.set_defaults(func=cmd_bench_analysis)

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
