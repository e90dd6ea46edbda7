"""Benchmarks (commands, not tests): ``perco-viz bench loss``.

Each prints a markdown table and can write JSON; the numbers we measured live in
``docs/benchmarks.md`` with the machine they were measured on.
"""

from __future__ import annotations

import gc
import json
import platform
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from perco_viz.coherence import coherence_loss


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
from perco_viz.coherence import coherence_loss

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
               reference_max: int = 1024) -> list[dict[str, Any]]:
    """Forward+backward time of the coherence loss, ``fast`` vs ``reference``.

    Args:
        sizes: batch sizes n (default 128 … 2048, and 4096 on CUDA).
        kernel: soft-step kernel.
        student_dim, teacher_dim: feature widths.
        device: ``auto``, ``cpu`` or ``cuda``.
        repeats: timed repetitions (median reported).
        reference_max: largest n the O(n³) reference is run at.

    Returns:
        One dict per n: ``n``, ``fast_ms``, ``reference_ms`` (or None), ``speedup``, ``peak_mib``.
    """
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       "cpu" if device == "auto" else device)
    sizes = sizes or ([128, 256, 512, 1024, 2048] + ([4096] if dev.type == "cuda" else []))
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


def max_rss_mib() -> float:
    """The process's peak resident memory so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
