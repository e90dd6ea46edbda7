"""Benchmarks (commands, not tests): ``perco-viz bench loss``.

Each prints a markdown table and can write JSON; the numbers we measured live in
``docs/benchmarks.md`` with the machine they were measured on.
"""

from __future__ import annotations

import gc
import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
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
import sys

def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
exec(sys.argv[1])  # set-up: makes the inputs and loads kernels and caches on a small case
open('/proc/self/clear_refs', 'w').write('5')  # reset the peak resident set (VmHWM)
base = status('VmRSS:')
exec(sys.argv[2])  # the measured step
print(status('VmHWM:') - base)
"""


def _peak_rss_mib(setup: str, step: str) -> float | None:
    """Peak resident memory of ``step`` beyond what ``setup`` left (inputs included), in MiB.

    A fresh Python process runs ``setup`` (fixed code strings of this module: make the inputs,
    warm kernels up on a small case), resets its peak resident set (``/proc/self/clear_refs``,
    Linux), runs ``step`` and reports the peak minus the resident set before it. ``None`` when
    the measurement is unavailable (not Linux, or the process failed).
    """
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, setup, step], capture_output=True, text=True,
                         timeout=1800)
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def _peak_mib(n: int, student_dim: int, teacher_dim: int, kernel: str, device: torch.device) -> float | None:
    """Peak memory of one forward+backward beyond the inputs (MiB).

    CUDA: the allocator's peak. CPU (Linux): :func:`_peak_rss_mib` in a fresh process.
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
    setup = (f"import torch\nfrom perco_viz.losses.coherence import coherence_loss\n"
             f"g = torch.Generator().manual_seed({n})\n"
             f"s = torch.randn({n}, {student_dim}, generator=g).requires_grad_(True)\n"
             f"t = torch.randn({n}, {teacher_dim}, generator=g)\n"
             f"coherence_loss(s[:8], t[:8], kernel={kernel!r}).backward()\n")
    return _peak_rss_mib(setup, f"coherence_loss(s, t, kernel={kernel!r}).backward()")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _loss_floor(s: torch.Tensor, t: torch.Tensor) -> Callable[[], None]:
    """The floor of any rank-based loss on these inputs: both n × n distance matrices by matrix
    product (:func:`~perco_viz.coherence.pairwise_dissimilarity`, the inputs' dtype) and every
    row of both argsorted (numpy's sort on the CPU — faster there than torch's — torch's on a
    GPU)."""
    from perco_viz.coherence import pairwise_dissimilarity

    def run() -> None:
        for x in (s.detach(), t):
            d = pairwise_dissimilarity(x)
            if d.device.type == "cpu":
                np.argsort(d.numpy(), axis=1)
            else:
                d.sort(dim=1)
            del d

    return run


def _time_interleaved(fn: Callable[[], None], floor: Callable[[], None], device: torch.device,
                      repeats: int) -> tuple[float, float]:
    """Best seconds of ``fn`` and of ``floor``, run alternately ``repeats`` times after a warm-up
    of each: on a shared machine both see the same load, and the best run is the least
    disturbed."""
    fn()
    floor()
    best = [math.inf, math.inf]
    for _ in range(repeats):
        for k, f in enumerate((fn, floor)):
            _sync(device)
            t0 = time.perf_counter()
            f()
            _sync(device)
            best[k] = min(best[k], time.perf_counter() - t0)
    return best[0], best[1]


def bench_loss(sizes: list[int] | None = None, *, kernel: str = "ramp", student_dim: int = 64,
               teacher_dim: int = 512, device: str = "auto", repeats: int = 3,
               reference_max: int | None = None) -> list[dict[str, Any]]:
    """Forward+backward time of the coherence loss, ``fast`` vs ``reference``, and against the
    floor of any rank-based loss (:func:`_loss_floor`: both distance matrices by matrix
    product and every row of both sorted).

    Args:
        sizes: batch sizes n (default 128 … 4096).
        kernel: soft-step kernel.
        student_dim, teacher_dim: feature widths.
        device: ``auto``, ``cpu`` or ``cuda``.
        repeats: timed repetitions, alternating with the floor (the best of each reported).
        reference_max: largest n the O(n³) reference is run at (default: 1024 for the ramp,
            512 for the sigmoid, whose reference needs ~20 GiB at n = 1024).

    Returns:
        One dict per n: ``n``, ``fast_ms``, ``floor_ms``, ``floor_ratio`` (fast / floor),
        ``reference_ms`` (or None), ``speedup``, ``peak_mib``.
    """
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       "cpu" if device == "auto" else device)
    sizes = sizes or [128, 256, 512, 1024, 2048, 4096]
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

        fast, floor = _time_interleaved(lambda: step("fast"), _loss_floor(s, t), dev, repeats)
        ref = _time(lambda: step("reference"), dev, 1) if n <= reference_max else None
        rows.append({"n": n, "fast_ms": 1e3 * fast, "floor_ms": 1e3 * floor, "floor_ratio": fast / floor,
                     "reference_ms": None if ref is None else 1e3 * ref,
                     "speedup": None if ref is None else ref / fast,
                     "peak_mib": _peak_mib(n, student_dim, teacher_dim, kernel, dev), "device": str(dev), "kernel": kernel})
    return rows


def loss_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`bench_loss` rows."""
    def fmt(v: float | None, spec: str) -> str:
        return "—" if v is None else format(v, spec)

    lines = ["| n | fast fwd+bwd (ms) | floor (ms) | fast / floor | reference fwd+bwd (ms) | speed-up | "
             "peak memory, fast (MiB) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['n']} | {fmt(r['fast_ms'], '.1f')} | {fmt(r.get('floor_ms'), '.1f')} | "
                     f"{fmt(r.get('floor_ratio'), '.1f')}× | {fmt(r['reference_ms'], '.1f')} | "
                     f"{fmt(r['speedup'], '.0f')}{'×' if r['speedup'] else ''} | {fmt(r['peak_mib'], '.0f')} |")
    lines.append("floor: both n × n distance matrices by matrix product and every row of both argsorted "
                 "(the least any rank-based loss computes)")
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


def _analysis_data(n: int, teacher_dim: int, student_dim: int, seed: int) -> tuple[Any, Any, Any]:
    """Synthetic clustered probe set: ``(student (n, student_dim), teacher (n, teacher_dim),
    labels (n,))``, float64 numpy (a noisy monotone-ish, not linear, student)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n)
    centres = rng.normal(size=(10, teacher_dim)) * 3
    teacher = centres[labels] + rng.normal(size=(n, teacher_dim))
    student = teacher @ rng.normal(size=(teacher_dim, student_dim)) / teacher_dim**0.5
    student = np.tanh(student) + 0.1 * rng.normal(size=(n, student_dim))
    return student, teacher, labels


def _analysis_floor_s(student: Any, teacher: Any, repeats: int = 2) -> float:
    """The floor of the exact metrics (seconds, the best of ``repeats`` runs): both n × n
    squared-distance matrices by float64 matrix product (norms computed once, no square root)
    and every row of both argsorted (numpy), in blocks of rows of the exact metrics' size
    (2¹⁹ entries: the fastest here) over all cores. Whole matrices would need 3.2 GB at
    n = 10,000."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    prepared = []
    for x in (student, teacher):
        y = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
        y = y - y.mean(0, keepdim=True)
        prepared.append((y, (y * y).sum(1)))
    n = len(student)
    rows = max(8, 2**19 // n)

    def block(lo: int) -> None:
        for y, sq in prepared:
            d2 = torch.addmm(sq[None, :], y[lo:lo + rows], y.T, alpha=-2.0).add_(sq[lo:lo + rows, None])
            np.argsort(d2.numpy(), axis=1)

    def run() -> None:
        with ThreadPoolExecutor(max(1, min(len(os.sched_getaffinity(0)), -(-n // rows)))) as pool:
            list(pool.map(block, range(0, n, rows)))

    return min(_timed(run)[1] for _ in range(repeats))


def _exact_metrics() -> dict[str, Callable[[Any, Any], Any]]:
    """The exact metrics that `bench analysis` times against the floor and measures the peak
    memory of (in a fresh process, :func:`_peak_rss_mib`): name → call on (student, teacher)."""
    from perco_viz import coherence

    return {
        "perception_coherence": coherence.perception_coherence,
        "per_sample_coherence": coherence.per_sample_coherence,
        "normalized_ranks (teacher)": lambda s, t: coherence.normalized_ranks(t),
        "rank_agreement": coherence.rank_agreement,
    }


def bench_exact_metrics(n: int = 10_000, *, teacher_dim: int = 128, student_dim: int = 8, seed: int = 0,
                        memory: bool = True, repeats: int = 2) -> dict[str, Any]:
    """The exact metrics at n points against their floor (:func:`_analysis_floor_s`): time
    (seconds, the best of ``repeats`` runs after a warm-up on 50 points; the floor likewise),
    ``ratio`` = time / floor, and the peak
    memory beyond the inputs (MiB, a fresh process each; ``memory=False`` skips it).

    Returns:
        ``n``, ``floor_s`` and ``metrics``: one dict per metric (``name``, ``seconds``,
        ``ratio``, ``peak_mib``).
    """
    student, teacher, _ = _analysis_data(n, teacher_dim, student_dim, seed)
    metrics = _exact_metrics()
    for fn in metrics.values():  # numba kernels loaded
        fn(student[:50], teacher[:50])
    floor = _analysis_floor_s(student, teacher, repeats)
    setup = (f"from perco_viz import bench\n"
             f"student, teacher, _ = bench._analysis_data({n}, {teacher_dim}, {student_dim}, {seed})\n"
             f"metrics = bench._exact_metrics()\n"
             f"for fn in metrics.values():\n    fn(student[:50], teacher[:50])\n")
    rows = []
    for name, fn in metrics.items():
        gc.collect()
        seconds = min(_timed(lambda fn=fn: fn(student, teacher))[1] for _ in range(repeats))
        peak = _peak_rss_mib(setup, f"metrics[{name!r}](student, teacher)") if memory else None
        rows.append({"name": name, "seconds": seconds, "ratio": seconds / floor, "peak_mib": peak})
    return {"n": n, "teacher_dim": teacher_dim, "student_dim": student_dim, "floor_s": floor, "metrics": rows}


def exact_metrics_table(r: dict[str, Any]) -> str:
    """Markdown table of :func:`bench_exact_metrics`."""
    lines = [f"exact metrics at n = {r['n']:,} (teacher width {r['teacher_dim']}, student width {r['student_dim']}); "
             f"floor {r['floor_s']:.2f} s = both n × n distance matrices by matrix product, every row argsorted",
             "| metric | seconds | floor (s) | time / floor | peak memory above the inputs (MiB) |",
             "|---|---:|---:|---:|---:|"]
    for m in r["metrics"]:
        peak = "—" if m["peak_mib"] is None else f"{m['peak_mib']:.0f}"
        lines.append(f"| {m['name']} | {m['seconds']:.2f} | {r['floor_s']:.2f} | {m['ratio']:.1f}× | {peak} |")
    return "\n".join(lines)


def bench_analysis(n: int = 2000, *, teacher_dim: int = 128, student_dim: int = 8, seed: int = 0,
                   page_points: int = 2500) -> dict[str, Any]:
    """What the Rank agreement, Per-sample coherence and Diagnose pages compute for an n-point
    probe set, timed step by step (seconds), on synthetic clustered features.

    ``rank_page_s`` sums what the Rank agreement page needs on first view of a new student (R_T,
    R_S, A in float32 on at most ``page_points`` rows — the page's subsample, MAX_RANK_POINTS
    in ui/rank_agreement.py — the ordering by class, the three heatmaps drawn block-averaged,
    the Shepard pairs, Spearman's ρ, the Shepard figure and c_i, whose mean is PC);
    ``per_sample_page_s`` what the Per-sample coherence page needs (c_i on all n, its histogram
    and per-class figures). Each step runs once after a warm-up on a small set (numba's kernels
    and scipy.stats loaded, as the app's warm-up does). The exact metrics against their floor:
    :func:`bench_exact_metrics`.
    """
    from perco_viz import figures
    from perco_viz.analysis import rank_agreement as analysis
    from perco_viz.coherence import per_sample_coherence, perception_coherence

    student, teacher, labels = _analysis_data(n, teacher_dim, student_dim, seed)
    m = min(n, page_points)
    per_sample_coherence(student[:50], teacher[:50])  # load the numba kernels and scipy.stats,
    analysis.rank_matrices(student[:50], teacher[:50])  # as the app's warm-up does
    analysis.spearman(np.arange(5.0), np.arange(5.0))

    t: dict[str, float] = {}
    (r_t, r_s, agreement), t["rank_matrices"] = _timed(
        lambda: analysis.rank_matrices(student[:m], teacher[:m], dtype=np.float32))
    order, t["order_by_class"] = _timed(lambda: analysis.order_points(teacher[:m], by="label", labels=labels[:m]))
    _, t["order_by_teacher_clusters"] = _timed(lambda: analysis.order_points(teacher[:m], by="cluster"))
    _, t["heatmaps_3"] = _timed(lambda: [
        figures.rank_agreement_heatmap(agreement, order=order, labels=labels[:m]),
        figures.ranks_heatmap(r_t, which="teacher", order=order, labels=labels[:m]),
        figures.ranks_heatmap(r_s, which="student", order=order, labels=labels[:m])])
    (d_t, d_s), t["shepard_pairs"] = _timed(lambda: analysis.shepard_pairs(student, teacher))
    rho, t["spearman"] = _timed(lambda: analysis.spearman(d_t, d_s))
    pc, t["perception_coherence"] = _timed(lambda: perception_coherence(student, teacher))
    _, t["shepard_figure"] = _timed(lambda: figures.shepard_figure(d_t, d_s, pc=pc, spearman=rho))
    c, t["per_sample_coherence"] = _timed(lambda: per_sample_coherence(student, teacher))
    _, t["coherence_figures"] = _timed(lambda: [figures.coherence_histogram(c),
                                                figures.per_class_coherence(c, labels)])
    rank_keys = ("rank_matrices", "order_by_class", "heatmaps_3", "shepard_pairs", "spearman",
                 "shepard_figure", "per_sample_coherence")  # PC = mean of c_i: no pass of its own
    return {"n": n, "page_points": m, "teacher_dim": teacher_dim, "student_dim": student_dim, "steps_s": t,
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


# --------------------------------------------------------------------------- one engine epoch, CIFAR-sized
def _write_synthetic_images(root: Any, n: int, *, classes: int = 10, side: int = 32, seed: int = 0) -> None:
    """``n`` synthetic RGB ``side`` × ``side`` images as an image folder (one sub-folder per class,
    uncompressed ``.bmp``): a coarse 4 × 4 colour pattern per class, upsampled, plus pixel noise."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    templates = rng.random((classes, 4, 4, 3)).repeat(side // 4, 1).repeat(side // 4, 2)  # (classes, side, side, 3)
    labels = rng.permutation(np.arange(n) % classes)
    for c in range(classes):
        (root / f"class_{c}").mkdir(parents=True, exist_ok=True)
    for start in range(0, n, 4096):
        y = labels[start:start + 4096]
        x = templates[y] + 0.15 * rng.standard_normal((len(y), side, side, 3))
        x = (np.clip(x, 0, 1) * 255).round().astype(np.uint8)  # (chunk, side, side, 3)
        for i, (img, c) in enumerate(zip(x, y)):
            Image.fromarray(img).save(root / f"class_{c}" / f"{start + i:06d}.bmp")


def bench_epoch(n: int = 50_000, *, device: str = "auto", batch_size: int = 512, student_dim: int = 8,
                loss: str = "coherence", probe_size: int = 500, seed: int = 0,
                workdir: str | None = None) -> dict[str, Any]:
    """One epoch of the engine (:func:`perco_viz.distill.distill`, its own training step) on a
    CIFAR-sized synthetic teacher/student pair: ``n`` training images of 3 × 32 × 32 in 10
    classes, the built-in :class:`~perco_viz.models.TeacherCNN` (randomly initialised, seeded: no
    teacher training is timed) and :class:`~perco_viz.models.StudentCNN`.

    The engine reads data only through its registry, which has no synthetic image set; the
    images are written as an ``image_folder`` (uncompressed ``.bmp``; ``n`` training images plus a
    held-out split of ``max(10, min(1000, n // 10))``) and the teacher as a ``safetensors`` file,
    two data sources the engine already accepts. Nothing is written under ``runs`` (``out=None``).

    Args:
        n: training images (50,000: CIFAR-10's training split).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        batch_size: points per step.
        student_dim: width of the student's features.
        loss: the transfer loss.
        probe_size: held-out points each snapshot is measured on.
        seed: seeds the images, the teacher's weights and the run.
        workdir: where the images and the teacher file go (default: a temporary folder, removed).

    Returns:
        ``n``, ``steps``, ``device``, ``amp``, seconds: ``write_images_s`` (making the folder, not
        the engine's), ``setup_s`` (the engine's data loading, teacher, teacher features and
        student: start → training), ``first_snapshot_s`` (measuring the untrained student), ``epoch_s`` (the epoch's training steps, first → last),
        ``snapshot_s`` (measuring the student on the probe set after the epoch), ``total_s``;
        ``images_per_s`` and ``ms_per_step`` of the epoch, ``peak_gpu_mib`` (CUDA, else None),
        ``pc_untrained`` → ``pc`` and the last ``train_loss``.

    Raises:
        RuntimeError: the run did not finish (its error in the message), or ``device`` is not
            here (:class:`~perco_viz.distill.TrainingError`).
        ValueError: ``n`` below 30 or a batch larger than ``n``.
    """
    import shutil
    import tempfile
    from pathlib import Path

    from perco_viz import models
    from perco_viz.config import RunConfig
    from perco_viz.distill import Callbacks, amp_enabled, distill, resolve_device

    if n < 30:
        raise ValueError(f"n must be at least 30 images, got {n}")
    if not 3 <= batch_size <= n:
        raise ValueError(f"batch_size must be between 3 and n = {n}, got {batch_size}")
    dev = resolve_device(device)  # an absent device is refused before anything is written
    n_test = max(10, min(1000, n // 10))
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="perco-viz-bench-epoch-"))
    try:
        t0 = time.perf_counter()
        _write_synthetic_images(root / "images", n + n_test, seed=seed)
        write_s = time.perf_counter() - t0
        torch.manual_seed(seed)
        teacher = models.TeacherCNN((3, 32, 32), 10)
        models.save_model_safetensors(teacher, root / "teacher.safetensors")
        cfg = RunConfig().override(**{
            "data.name": "image_folder", "data.path": str(root / "images"),
            "data.test_fraction": n_test / (n + n_test), "data.probe_size": min(probe_size, n_test),
            "data.seed": seed, "teacher.kind": "safetensors", "teacher.path": str(root / "teacher.safetensors"),
            "student.arch": "cnn", "student.dim": student_dim, "loss.name": loss, "train.epochs": 1,
            "train.batch_size": batch_size, "train.device": device, "train.seed": seed})
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        marks: dict[str, float] = {}
        snaps: list[dict[str, Any]] = []
        steps = {"total": 0}

        def on_progress(p: dict[str, Any]) -> None:
            marks.setdefault(p["phase"], time.perf_counter())
            if p["phase"] == "train" and p["step"] and p["step"] == p["total_steps"]:
                marks["last_step"] = time.perf_counter()
                steps["total"] = p["total_steps"]

        def on_snapshot(s: Any) -> None:
            marks[f"snapshot_{len(snaps)}"] = time.perf_counter()
            snaps.append(s.metrics)

        start = time.perf_counter()
        result = distill(cfg, out=None, callbacks=Callbacks(on_progress=on_progress, on_snapshot=on_snapshot))
        end = time.perf_counter()
        if result.status != "finished" or len(snaps) < 2 or "last_step" not in marks:
            raise RuntimeError(f"the engine's epoch did not finish: {result.status} ({result.error})")
        epoch_s = marks["last_step"] - marks["snapshot_0"]
        return {
            "n": n, "n_test": n_test, "image_shape": [3, 32, 32], "batch_size": batch_size,
            "steps": steps["total"], "device": str(dev), "amp": amp_enabled(cfg, dev), "loss": loss,
            "student_dim": student_dim, "write_images_s": write_s, "setup_s": marks["train"] - start,
            "first_snapshot_s": marks["snapshot_0"] - marks["train"], "epoch_s": epoch_s, "snapshot_s": marks["snapshot_1"] - marks["last_step"], "total_s": end - start,
            "images_per_s": n / epoch_s, "ms_per_step": 1e3 * epoch_s / steps["total"],
            "peak_gpu_mib": torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None,
            "pc_untrained": snaps[0]["pc"], "pc": snaps[-1]["pc"], "train_loss": snaps[-1]["train_loss"],
        }
    finally:
        if not workdir:
            shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------- the PC estimator
def _estimate_data(rows: int, student_dim: int, teacher_dim: int, device: torch.device, seed: int = 0,
                   clusters: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic float32 (rows, teacher_dim) teacher, clustered, and (rows, student_dim) student,
    a noisy nonlinear map of it; made in blocks of 65,536 rows (10⁶ × 512 is 2 GB, no more)."""
    g = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.randn(clusters, teacher_dim, generator=g)
    w = torch.randn(teacher_dim, student_dim, generator=g) / teacher_dim**0.5
    teacher = torch.empty(rows, teacher_dim, dtype=torch.float32, device=device)
    student = torch.empty(rows, student_dim, dtype=torch.float32, device=device)
    for lo in range(0, rows, 1 << 16):
        m = min(1 << 16, rows - lo)
        t = centres[torch.randint(0, clusters, (m,), generator=g)] + torch.randn(m, teacher_dim, generator=g)
        s = torch.tanh(t @ w) + 0.3 * torch.randn(m, student_dim, generator=g)
        teacher[lo : lo + m], student[lo : lo + m] = t, s
    return student, teacher


def bench_estimate(rows: int = 1_000_000, *, student_dim: int = 64, teacher_dim: int = 512,
                   triplets: int = 1_000_000, device: str = "auto", seed: int = 0) -> dict[str, Any]:
    """Time :func:`~perco_viz.estimate.estimate_perception_coherence` on synthetic float32
    features (clustered teacher, noisy nonlinear student; see :func:`_estimate_data`).

    The time is one whole call: the NaN/inf scan of both arrays plus ``triplets`` sampled
    triplets (after a small warm-up call).

    Returns:
        ``rows``, ``student_dim``, ``teacher_dim``, ``triplets``, ``value``, ``low``, ``high``
        (95% Wilson interval), ``seconds``, ``triplets_per_s``, ``data_s`` (making the data),
        ``device``.
    """
    from perco_viz.distill import resolve_device
    from perco_viz.estimate import estimate_perception_coherence

    dev = torch.device("cpu") if device == "auto" and not torch.cuda.is_available() else resolve_device(device)
    (student, teacher), data_s = _timed(lambda: _estimate_data(rows, student_dim, teacher_dim, dev, seed))
    estimate_perception_coherence(student[:1000], teacher[:1000], n_triplets=1000, seed=seed)  # warm-up
    e, seconds = _timed(lambda: estimate_perception_coherence(student, teacher, n_triplets=triplets, seed=seed))
    return {"rows": rows, "student_dim": student_dim, "teacher_dim": teacher_dim, "triplets": triplets,
            "value": e.value, "low": e.low, "high": e.high, "seconds": seconds,
            "triplets_per_s": triplets / seconds, "data_s": data_s, "device": str(dev)}


def bench_log(rows: int = 1000, *, student_dim: int = 64, teacher_dim: int = 512, logs: int = 20,
              every_s: float = 0.0, device: str = "auto", seed: int = 0) -> dict[str, Any]:
    """Time :meth:`perco_viz.writer.Run.log` as a training loop sees it.

    A loop logs ``logs`` snapshots of (rows, student_dim) float32 features (on ``device``),
    each after ``every_s`` seconds of busy work (a matrix product on the same device, standing
    in for training steps), and ``logs`` numbers-only records in between. Measured: how long
    each ``log`` call keeps the loop (median, 99th percentile, max), how long one snapshot
    takes to be measured and written on the background thread, and the snapshots dropped
    because the loop logged faster than they were measured.

    Returns:
        ``rows``, ``student_dim``, ``teacher_dim``, ``logs``, ``every_s``, ``log_ms_median``,
        ``log_ms_p99``, ``log_ms_max``, ``numbers_ms_median``, ``measure_s`` (per snapshot,
        flush time of one snapshot logged alone), ``dropped``, ``device``.
    """
    import tempfile

    from perco_viz.distill import resolve_device
    from perco_viz.writer import open_run

    dev = torch.device("cpu") if device == "auto" and not torch.cuda.is_available() else resolve_device(device)
    gen = torch.Generator().manual_seed(seed)
    teacher = torch.randn(rows, teacher_dim, generator=gen)
    proj = torch.randn(teacher_dim, student_dim, generator=gen) / teacher_dim ** 0.5
    work = torch.randn(512, 512, device=dev)
    labels = torch.randint(0, 10, (rows,), generator=gen)
    snap_ms, num_ms = [], []
    with tempfile.TemporaryDirectory() as root, open_run(root, name="bench", teacher_features=teacher,
                                                         labels=labels, max_pending=8) as run:
        feats = (teacher @ proj).to(dev)
        _, measure_s = _timed(lambda: (run.log(feats, epoch=0, step=0), run.flush()))
        for i in range(1, logs + 1):
            t_end = time.perf_counter() + every_s
            while time.perf_counter() < t_end:
                work = torch.tanh(work @ work / 512)
            _sync(dev)
            noisy = feats + 0.01 * i * torch.randn(feats.shape, device=dev)
            _sync(dev)
            t0 = time.perf_counter()
            run.log(noisy, epoch=float(i), step=i, train_loss=1.0 / i)
            snap_ms.append(1000 * (time.perf_counter() - t0))
            t0 = time.perf_counter()
            run.log(epoch=float(i), step=i, lr=0.1)
            num_ms.append(1000 * (time.perf_counter() - t0))
        run.flush()
        dropped = run.dropped
    q = np.quantile(snap_ms, [0.5, 0.99])
    return {"rows": rows, "student_dim": student_dim, "teacher_dim": teacher_dim, "logs": logs, "every_s": every_s,
            "log_ms_median": float(q[0]), "log_ms_p99": float(q[1]), "log_ms_max": float(max(snap_ms)),
            "numbers_ms_median": float(np.median(num_ms)), "measure_s": measure_s, "dropped": dropped,
            "device": str(dev)}


def bench_export(n: int = 10_000, *, student_dim: int = 64, teacher_dim: int = 512, seed: int = 0) -> dict[str, Any]:
    """Time :mod:`perco_viz.export` on a synthetic run of ``n`` probe points and one snapshot.

    Returns:
        ``n``, ``student_dim``, ``teacher_dim``, ``folder_s`` (write the projector folder),
        ``folder_mib``, ``zip_s`` (the same zipped in memory, as the app's download),
        ``zip_mib``, ``csv_s`` (the metrics as CSV).
    """
    import tempfile
    from pathlib import Path

    from perco_viz import export
    from perco_viz.config import RunConfig
    from perco_viz.runs import RunDir, Snapshot

    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as root:
        cfg = RunConfig().override(**{"data.probe_size": n, "student.dim": student_dim})
        run = RunDir.create(root, cfg, name="bench")
        run.save_teacher_probe(rng.normal(size=(n, teacher_dim)).astype(np.float32), rng.integers(0, 10, n),
                               np.arange(n))
        run.save_snapshot(Snapshot(0, 0.0, 0, rng.normal(size=(n, student_dim)).astype(np.float32), rng.random(n),
                                   {"epoch": 0.0, "step": 0, "pc": 0.5}))
        paths, folder_s = _timed(lambda: export.write_projector(run, Path(root) / "tb"))
        data, zip_s = _timed(lambda: export.projector_zip(run))
        _, csv_s = _timed(lambda: export.metrics_bytes(run, "csv"))
        folder_mib = sum(Path(p).stat().st_size for p in paths) / 2**20
    return {"n": n, "student_dim": student_dim, "teacher_dim": teacher_dim, "folder_s": folder_s,
            "folder_mib": folder_mib, "zip_s": zip_s, "zip_mib": len(data) / 2**20, "csv_s": csv_s}
