"""UI helpers of the Embeddings page: loading a run's snapshots, the background projection
worker (UMAP and t-SNE never run on the script thread) and the cached PCA."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import streamlit as st

from ui import common

MAX_JOBS = 24  # finished projections kept per server (each is k × n × dim floats)


# --------------------------------------------------------------------------- data of a run
@st.cache_data(max_entries=16, show_spinner=False)
def load_sequence(path: str, signature: tuple) -> dict[str, Any]:
    """All snapshots of a run: indices, epochs, students (k, n, d_s), coherence (k, n), metrics.

    ``signature`` (:func:`common.run_signature`) is only the cache key: a new snapshot reloads.
    """
    from perco_viz.runs import RunDir

    run = RunDir(path)
    indices = run.snapshot_indices()
    snaps = [common.load_snapshot(path, i) for i in indices]
    return {
        "indices": indices,
        "epochs": [float(s["epoch"]) for s in snaps],
        "students": np.stack([s["student"] for s in snaps]) if snaps else np.zeros((0, 0, 0)),
        "coherence": np.stack([s["coherence"] for s in snaps]) if snaps else np.zeros((0, 0)),
        "metrics": [s["metrics"] for s in snaps],
    }


@st.cache_data(max_entries=32, show_spinner="Projecting with PCA…")
def pca_projections(path: str, signature: tuple, dim: int, rows_key: tuple) -> Any:
    """PCA of the teacher and every snapshot (milliseconds): computed on the script thread."""
    return compute(path, signature, "pca", dim, rows_key)


def compute(path: str, signature: tuple, method: str, dim: int, rows_key: tuple,
            progress=None) -> Any:
    """The aligned projections of a run's displayed rows (``signature`` only keys caches)."""
    from perco_viz.analysis.embeddings import run_projections

    return run_projections(path, method, dim, rows_key, progress=progress)


# --------------------------------------------------------------------------- background worker
@dataclass
class Job:
    """One projection computed in the background."""

    future: Future
    method: str
    started: float = field(default_factory=time.perf_counter)
    progress: tuple[int, int] = (0, 1)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


class ProjectionWorker:
    """UMAP/t-SNE projections computed in a worker process, with their results kept.

    The worker is a process of its own (:class:`perco_viz.background.WorkerProcess`): UMAP's
    numba compilation and the projections never hold this server's GIL, so every page of every
    session stays responsive meanwhile. Keyed by ``(run path, run signature, method, dim,
    rows_key)``: a finished projection is computed once per server and shared by every session
    looking at that run.
    """

    def __init__(self, max_jobs: int = MAX_JOBS) -> None:
        from perco_viz.background import shared_worker

        self.pool = shared_worker()
        self.jobs: OrderedDict[tuple, Job] = OrderedDict()
        self.max_jobs = max_jobs
        self.lock = threading.Lock()

    def submit(self, key: tuple, fn, *args) -> Job:
        """The job for ``key``, started (``fn(*args, progress=...)`` in the worker process; ``fn``
        a module-level function of plain arguments) if it is not known yet."""
        with self.lock:
            job = self.jobs.get(key)
            if job is not None:  # running, finished or failed: failed jobs stay until forgotten
                self.jobs.move_to_end(key)
                return job
            job = Job(Future(), method=str(key[3]) if len(key) > 3 else "")

            def progress(done: int, total: int, job=job) -> None:
                job.progress = (done, total)

            job.future = self.pool.submit(fn, *args, progress=progress)
            self.jobs[key] = job
            while len(self.jobs) > self.max_jobs:
                old_key, old = next(iter(self.jobs.items()))
                if not old.future.done():
                    break
                del self.jobs[old_key]
            return job

    def forget(self, key: tuple) -> None:
        """Drop a finished (or failed) job so the next submit computes it again."""
        with self.lock:
            job = self.jobs.get(key)
            if job is not None and job.future.done():
                del self.jobs[key]

    def get(self, key: tuple) -> Job | None:
        with self.lock:
            return self.jobs.get(key)

    def queued(self) -> int:
        """Jobs not finished yet."""
        with self.lock:
            return sum(not j.future.done() for j in self.jobs.values())


@st.cache_resource
def worker() -> ProjectionWorker:
    """The server's one projection worker."""
    return ProjectionWorker()


def job_key(path: str, signature: tuple, method: str, dim: int, rows_key: tuple) -> tuple:
    """The worker's key of one projection."""
    return (path, signature, method, dim, rows_key)


def projections(path: str, signature: tuple, method: str, dim: int, rows_key: tuple) -> tuple[Any, Job | None]:
    """``(result, job)``: PCA at once; UMAP/t-SNE from the worker (``result`` None until ready).

    Raises the worker's exception when the background computation failed (and forgets it,
    so the next attempt computes it again).
    """
    if method == "pca":
        return pca_projections(path, signature, dim, rows_key), None
    key = job_key(path, signature, method, dim, rows_key)
    from perco_viz.analysis.embeddings import run_projections

    job = worker().submit(key, run_projections, path, method, dim, rows_key)
    if job.future.done():
        if job.future.exception() is not None:
            worker().forget(key)
            raise job.future.exception()
        return job.future.result(), job
    return None, job


def wait_status(job: Job, method_label: str, n_points: int, n_snapshots: int) -> None:
    """A status line that polls every second until the job is done, then reruns the page."""

    @st.fragment(run_every=1.0)
    def _poll() -> None:
        if job.future.done():  # ready (or failed): the whole page draws it (or says why)
            st.rerun()
        from ui import warmup

        done, total = job.progress
        total = max(total, n_snapshots + 1)  # teacher + every snapshot
        compiling = method_label == "UMAP" and not warmup.status().get("numba", "").startswith("ready")
        hint = " The first UMAP in a server also compiles its kernels (about 15 s)." if compiling else ""
        st.progress(min(1.0, done / total),
                    text=f"Computing {method_label} in the background: {done} of {total} projections "
                         f"({n_points:,} points each), {job.elapsed:.0f} s.{hint} Showing PCA meanwhile.")

    _poll()
