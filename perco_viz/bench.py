"""Benchmarks (commands, not tests): ``perco-viz bench loss``.

Each prints a markdown table and can write JSON; the numbers we measured live in
``docs/benchmarks.md`` with the machine they were measured on.
"""

from __future__ import annotations

import gc
import json
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from perco_viz.losses.coherence import coherence_loss


def machine_description() -> str:
    """One line naming the machine (CPU model and cores, or the GPU)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    desc = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if torch.cuda.is_available():
        desc += f"; GPU {torch.cuda.get_device_name(0)}"
    return desc


def _time(fn: Callable[[], None], device: torch.device, repeats: int) -> float:
    """Median seconds of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


_PEAK_SCRIPT = """
import sys, torch
from perco_viz.losses.coherence import coherence_loss

def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
n, ds, dt, kernel = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
g = torch.Generator().manual_seed(n)
s = torch.randn(n, ds, generator=g).requires_grad_(True)
t = torch.randn(n, dt, generator=g)
coherence_loss(s[:8], t[:8], kernel=kernel).backward()  # load kernels and caches first
open('/proc/self/clear_refs', 'w').write('5')  # reset the peak resident set (VmHWM)
base = status('VmRSS:')
coherence_loss(s, t, kernel=kernel).backward()
print(status('VmHWM:') - base)
"""


def _peak_mib(n: int, student_dim: int, teacher_dim: int, kernel: str, device: torch.device) -> float | None:
    """Peak memory of one forward+backward beyond the inputs (MiB).

    CUDA: the allocator's peak. CPU (Linux): a fresh process runs one step after resetting its
    peak resident set (``/proc/self/clear_refs``); the peak minus the resident set before.
    """
    if device.type == "cuda":
        g = torch.Generator().manual_seed(n)
        s = torch.randn(n, student_dim, generator=g).to(device).requires_grad_(True)
        t = torch.randn(n, teacher_dim, generator=g).to(device)
        gc.collect()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        coherence_loss(s, t, kernel=kernel).backward()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(n), str(student_dim), str(teacher_dim), kernel],
                         capture_output=True, text=True, timeout=600)
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def bench_loss(sizes: list[int] | None = None, *, kernel: str = "ramp", student_dim: int = 64,
               teacher_dim: int = 512, device: str = "auto", repeats: int = 3,
               reference_max: int | None = None) -> list[dict[str, Any]]:
    """Forward+backward time of the coherence loss, ``fast`` vs ``reference``.

    Args:
        sizes: batch sizes n (default 128 … 2048, and 4096 on CUDA).
        kernel: soft-step kernel.
        student_dim, teacher_dim: feature widths.
        device: ``auto``, ``cpu`` or ``cuda``.
        repeats: timed repetitions (median reported).
        reference_max: largest n the O(n³) reference is run at (default: 1024 for the ramp,
            512 for the sigmoid, whose reference needs ~20 GiB at n = 1024).

    Returns:
        One dict per n: ``n``, ``fast_ms``, ``reference_ms`` (or None), ``speedup``, ``peak_mib``.
    """
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       "cpu" if device == "auto" else device)
    sizes = sizes or ([128, 256, 512, 1024, 2048] + ([4096] if dev.type == "cuda" else []))
    if reference_max is None:
        reference_max = 1024 if kernel == "ramp" else 512
    rows = []
    for n in sizes:
        g = torch.Generator().manual_seed(n)
        s = torch.randn(n, student_dim, generator=g).to(dev).requires_grad_(True)
        t = torch.randn(n, teacher_dim, generator=g).to(dev)

        def step(impl: str, s: torch.Tensor = s, t: torch.Tensor = t) -> None:
            s.grad = None
            coherence_loss(s, t, kernel=kernel, impl=impl).backward()

        fast = _time(lambda: step("fast"), dev, repeats)
        ref = _time(lambda: step("reference"), dev, 1) if n <= reference_max else None
        rows.append({"n": n, "fast_ms": 1e3 * fast, "reference_ms": None if ref is None else 1e3 * ref,
                     "speedup": None if ref is None else ref / fast,
                     "peak_mib": _peak_mib(n, student_dim, teacher_dim, kernel, dev), "device": str(dev), "kernel": kernel})
    return rows


def loss_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`bench_loss` rows."""
    def fmt(v: float | None, spec: str) -> str:
        return "—" if v is None else format(v, spec)

    lines = ["| n | fast fwd+bwd (ms) | reference fwd+bwd (ms) | speed-up | peak memory, fast (MiB) |",
             "|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['n']} | {fmt(r['fast_ms'], '.1f')} | {fmt(r['reference_ms'], '.1f')} | "
                     f"{fmt(r['speedup'], '.0f')}{'×' if r['speedup'] else ''} | {fmt(r['peak_mib'], '.0f')} |")
    return "\n".join(lines)


def write_json(rows: Any, path: str) -> None:
    with open(path, "w") as fh:
        json.dump({"machine": machine_description(), "rows": rows}, fh, indent=2)


# --------------------------------------------------------------------------- the engine
def bench_engine(*, dataset: str = "digits", epochs: int = 20, student_dim: int = 8, loss: str = "coherence",
                 device: str = "auto", out: str | None = None) -> dict[str, Any]:
    """End-to-end time of ``perco-viz distill`` (a fresh process: imports, data, the cached
    teacher, its features, training, a snapshot per epoch, checkpoints), then its breakdown.

    The built-in teacher is trained first if it is not cached yet (reported as
    ``teacher_cached: False`` with its training time), so the timed run finds it cached.

    Returns:
        ``teacher_load_or_train_s`` and ``teacher_cached_load_s`` (a load from the cache),
        ``total_s`` (the CLI process, wall clock), ``first_snapshot_s`` (start → the untrained
        snapshot, i.e. set-up), ``train_s`` (first → last snapshot), ``epoch_s`` (median
        epoch including its snapshot), the final ``pc`` / ``knn_acc`` and the run directory.
    """
    import subprocess
    import sys
    import tempfile

    from perco_viz import models, paths
    from perco_viz.config import RunConfig
    from perco_viz.data import load_dataset
    from perco_viz.runs import list_runs

    cfg = RunConfig().override(**{"data.name": dataset})
    cache = paths.default_cache_dir()
    data = load_dataset(cfg.data)
    t0 = time.perf_counter()
    had = models.teacher_cache_path(data, cache).is_file()
    models.load_teacher(cfg.teacher, data, cache_dir=cache)
    teacher_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    models.load_teacher(cfg.teacher, data, cache_dir=cache)  # from the cache now
    cached_s = time.perf_counter() - t0
    out = out or tempfile.mkdtemp(prefix="perco-viz-bench-engine-")
    cmd = [sys.executable, "-m", "perco_viz", "distill", "--dataset", dataset, "--epochs", str(epochs),
           "--student-dim", str(student_dim), "--loss", loss, "--device", device, "--out", out, "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    total = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"distill failed: {proc.stderr.strip().splitlines()[-1:]}")
    run = list_runs(out)[0]  # newest first: the run just made
    snaps = [r for r in run.metrics() if r.get("snapshot") is not None]
    walls = [r["wall_s"] for r in snaps]
    return {
        "command": "perco-viz " + " ".join(cmd[3:]), "teacher_cached": had, "teacher_load_or_train_s": teacher_s,
        "teacher_cached_load_s": cached_s,
        "total_s": total, "first_snapshot_s": walls[0], "train_s": walls[-1] - walls[0],
        "epoch_s": statistics.median(b - a for a, b in zip(walls, walls[1:])) if len(walls) > 1 else None,
        "pc": snaps[-1]["pc"], "pc_untrained": snaps[0]["pc"], "knn_acc": snaps[-1]["knn_acc"],
        "run_dir": str(run.path),
    }


# --------------------------------------------------------------------------- the analysis pages
def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def bench_analysis(n: int = 2000, *, teacher_dim: int = 128, student_dim: int = 8, seed: int = 0) -> dict[str, Any]:
    """What the Rank agreement, Per-sample coherence and Diagnose pages compute for an n-point
    probe set, timed step by step (seconds), on synthetic clustered features.

    ``rank_page_s`` sums what the Rank agreement page needs on first view of a new student (R_T,
    R_S, A, the ordering by class, the three heatmaps drawn block-averaged, the Shepard pairs,
    Spearman's ρ, the Shepard figure and c_i, whose mean is PC); ``per_sample_page_s`` what the
    Per-sample coherence page needs (c_i, its histogram and per-class figures). Each step runs
    once after a warm-up on a small set (numba's kernels and scipy.stats loaded, as the app's
    warm-up does).
    """
    import numpy as np

    from perco_viz import figures
    from perco_viz.analysis import rank_agreement as analysis
    from perco_viz.coherence import per_sample_coherence, perception_coherence

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n)
    centres = rng.normal(size=(10, teacher_dim)) * 3
    teacher = centres[labels] + rng.normal(size=(n, teacher_dim))
    student = teacher @ rng.normal(size=(teacher_dim, student_dim)) / teacher_dim**0.5
    student = np.tanh(student) + 0.1 * rng.normal(size=(n, student_dim))  # monotone-ish, not linear
    per_sample_coherence(student[:50], teacher[:50])  # load the numba kernels and scipy.stats,
    analysis.rank_matrices(student[:50], teacher[:50])  # as the app's warm-up does
    analysis.spearman(np.arange(5.0), np.arange(5.0))

    t: dict[str, float] = {}
    (r_t, r_s, agreement), t["rank_matrices"] = _timed(lambda: analysis.rank_matrices(student, teacher))
    order, t["order_by_class"] = _timed(lambda: analysis.order_points(teacher, by="label", labels=labels))
    _, t["order_by_teacher_clusters"] = _timed(lambda: analysis.order_points(teacher, by="cluster"))
    _, t["heatmaps_3"] = _timed(lambda: [
        figures.rank_agreement_heatmap(agreement, order=order, labels=labels),
        figures.ranks_heatmap(r_t, which="teacher", order=order, labels=labels),
        figures.ranks_heatmap(r_s, which="student", order=order, labels=labels)])
    (d_t, d_s), t["shepard_pairs"] = _timed(lambda: analysis.shepard_pairs(student, teacher))
    rho, t["spearman"] = _timed(lambda: analysis.spearman(d_t, d_s))
    pc, t["perception_coherence"] = _timed(lambda: perception_coherence(student, teacher))
    _, t["shepard_figure"] = _timed(lambda: figures.shepard_figure(d_t, d_s, pc=pc, spearman=rho))
    c, t["per_sample_coherence"] = _timed(lambda: per_sample_coherence(student, teacher))
    _, t["coherence_figures"] = _timed(lambda: [figures.coherence_histogram(c),
                                                figures.per_class_coherence(c, labels)])
    rank_keys = ("rank_matrices", "order_by_class", "heatmaps_3", "shepard_pairs", "spearman",
                 "shepard_figure", "per_sample_coherence")  # PC = mean of c_i: no pass of its own
    return {"n": n, "teacher_dim": teacher_dim, "student_dim": student_dim, "steps_s": t,
            "rank_page_s": sum(t[k] for k in rank_keys),
            "per_sample_page_s": t["per_sample_coherence"] + t["coherence_figures"], "pc": pc}


# --------------------------------------------------------------------------- projections
def bench_projection(n: int | None = None, *, snapshots: int = 3) -> list[dict[str, Any]]:
    """Projection times (seconds) on scikit-learn's digits (1,797 × 64; ``n`` rows if given):
    PCA, UMAP (first call in this process, then again), t-SNE, the aligned sequences over
    ``snapshots`` noisy copies (:func:`~perco_viz.analysis.projection.project_sequence`, the code
    the Embeddings page runs: PCA + Procrustes, UMAP and t-SNE from the previous layout), and the
    whole of what the page computes (:func:`~perco_viz.analysis.embeddings.aligned_projections`:
    the teacher plus each snapshot).

    Run it in a fresh process to see the first UMAP's numba cost; with a warm on-disk numba
    cache (``NUMBA_CACHE_DIR``, which the app sets and warms) that cost is mostly gone.
    """
    import numpy as np
    from sklearn.datasets import load_digits

    from perco_viz.analysis.embeddings import aligned_projections
    from perco_viz.analysis.projection import project, project_sequence

    X = load_digits().data.astype(np.float64)[:n]
    rng = np.random.default_rng(0)
    seq = [X + 0.5 * k * rng.normal(size=X.shape) for k in range(snapshots)]
    rows = []
    for label, fn in [
        ("pca", lambda: project(X, "pca")),
        ("umap (first in process)", lambda: project(X, "umap")),
        ("umap (again)", lambda: project(X, "umap")),
        ("tsne", lambda: project(X, "tsne")),
        (f"pca aligned × {snapshots}", lambda: project_sequence(seq, "pca")),
        (f"umap aligned × {snapshots}", lambda: project_sequence(seq, "umap")),
        (f"tsne aligned × {snapshots}", lambda: project_sequence(seq, "tsne")),
        (f"Embeddings page, UMAP: teacher + {snapshots} snapshots", lambda: aligned_projections(X, seq, "umap")),
        (f"Embeddings page, t-SNE: teacher + {snapshots} snapshots", lambda: aligned_projections(X, seq, "tsne")),
    ]:
        _, s = _timed(fn)
        rows.append({"projection": label, "n": len(X), "seconds": s})
    return rows
