"""Background warm-up at server start, so the first click and every page's first visit are fast:
the process server that trainings fork from (torch imported once), the modules, numba kernels
and lazy imports every page needs (compiled or loaded from numba's on-disk cache here, in the
server's process, where the pages use them), the demo's teacher (trained and cached on first
use), and UMAP's numba kernels (compiled in the projection worker process, never in this one,
into the on-disk cache of :func:`perco_viz.analysis.projection.warm_up_numba`).

It also keeps the server's own linear algebra on one thread (:func:`limit_threads`): the server
answers many sessions at once on a machine that trainings keep busy, where a BLAS pool of two
spinning threads made a 1,797 × 128 SVD take 2–3 s instead of 0.07 s.

Runs once per server process and never blocks a page.
"""

from __future__ import annotations

import os
import sys
import threading
import time

_STATE = {"imports": "pending", "trainings": "pending", "pages": "pending", "teacher": "pending", "numba": "pending"}

# What the pages import, in the order the first live figure needs them (~2.5 s on 2 cores), then the rest.
MODULES = ("perco_viz.figures", "perco_viz.analysis.projection", "sklearn.decomposition", "scipy.stats", "torch",
           "pandas", "perco_viz.analysis.rank_agreement", "perco_viz.analysis.per_sample",
           "perco_viz.analysis.diagnose", "perco_viz.analysis.compare", "perco_viz.analysis.teaching",
           "perco_viz.analysis.explore", "perco_viz.figures.teaching", "perco_viz.figures.rank_agreement")


def limit_threads() -> dict[str, int]:
    """One BLAS thread and one torch thread for the calling (server) process; returns what was set.

    The server's computations are small (probe sets of hundreds to thousands of rows) and many
    sessions share the cores with trainings: a threaded BLAS or OpenMP pool then spins against
    them (measured on 2 busy cores: SVD of 1,797 × 128 2.1–3.0 s with two threads, 0.07–0.10 s
    with one; of 449 × 128 0.2–0.7 s against 0.02 s). Trainings run in their own processes and
    keep their own settings. Libraries loaded later (scipy's own OpenBLAS) are limited when
    called again: the warm-up calls it after its imports.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")  # kept: not used as a context manager
    out = {"blas": 1}
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
        out["torch"] = 1
    return out


def _imports(server: bool = False) -> None:
    """What the pages need in this process: modules, then the lazy first uses (~6 s of CPU on 2
    cores); in a ``server``, then one thread for its linear algebra (:func:`limit_threads`)."""
    import importlib

    t0 = time.perf_counter()
    for module in MODULES:
        importlib.import_module(module)
    if server:
        limit_threads()
    _STATE["imports"] = f"ready in {time.perf_counter() - t0:.1f} s"
    _first_uses()
    _STATE["pages"] = f"ready in {time.perf_counter() - t0:.1f} s"


def _first_uses() -> None:
    """Each page's first call of something slow the first time in a process, on a tiny input:
    numba's kernels of the coherence measures (loaded from their on-disk cache, or compiled into
    it), torch's optimizer set-up (imports torch._dynamo, ~2 s: the Teaching view's first
    student), scikit-learn's PCA, plotly's figure validators, the Teaching view's first state."""
    import numpy as np
    import torch

    from perco_viz.analysis import projection, rank_agreement, teaching
    from perco_viz.coherence import per_sample_coherence, perception_coherence

    x = np.random.default_rng(0).normal(size=(24, 4))
    per_sample_coherence(x[:, :2], x)
    perception_coherence(x[:, :2], x)
    rank_agreement.rank_matrices(x, x[:, :2])
    projection.project(x, "pca", dim=2)
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    from perco_viz import figures

    points, labels = teaching.toy_points(teaching.TOY_SETS[0], 20, 0, 2)
    state = teaching.make_state(points, labels)
    view = teaching.anchor_view(state.student_points(), points, 0, 0.1)
    figures.teaching_points_figure(points, 0, view["teacher_position"], view["student_position"]).to_plotly_json()


def _warm(busy, server: bool = False) -> None:
    from perco_viz import live, process

    t0 = time.perf_counter()
    try:
        process.prestart()
        _STATE["trainings"] = f"ready in {time.perf_counter() - t0:.1f} s"
    except Exception as exc:  # noqa: BLE001 — warm-up is an optimisation only
        _STATE["trainings"] = f"failed: {exc}"
    try:
        _imports(server)  # after the process server is up: the two do not compete for the CPU
    except Exception as exc:  # noqa: BLE001 — warm-up is an optimisation only
        _STATE["pages"] = f"failed: {exc}"
    from perco_viz.analysis.projection import warm_up_numba

    pool = process.shared_worker()
    for key, fn in (("teacher", live.prepare_demo_teacher), ("numba", warm_up_numba)):
        if key == "numba":  # ~25 s of CPU: not while a first demo is setting up
            _wait_while(busy)
        try:
            pool.submit(fn).result()
            _STATE[key] = f"ready in {time.perf_counter() - t0:.1f} s"
        except Exception as exc:  # noqa: BLE001
            _STATE[key] = f"failed: {exc}"


def _wait_while(busy, limit_s: float = 120.0) -> None:
    """While ``busy()`` (trainings run) or until ``limit_s``: the warm-up gives way to people."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and busy():
        time.sleep(1.0)


_STARTED: list[threading.Thread] = []  # module state: once per server process, whatever the sessions
_LOCK = threading.Lock()


def _trainings_running() -> bool:
    from ui import common  # looked up when asked: the page does not wait for the registry's imports

    return common.registry().active_count() > 0


def start(busy=_trainings_running) -> None:
    """Start the warm-up once per server process (``PERCO_VIZ_WARMUP=0`` turns it off).

    ``busy()`` is true while trainings run: the numba compilation waits for it to be false.
    """
    if os.environ.get("PERCO_VIZ_WARMUP", "1") == "0":
        return
    with _LOCK:
        if not _STARTED:
            try:
                limit_threads()  # the libraries loaded so far; the warm-up again after its imports
            except Exception:  # noqa: BLE001 — an optimisation only
                pass
            _STARTED.append(threading.Thread(target=_warm, args=(busy, True), name="perco-viz-warmup",
                                             daemon=True))
            _STARTED[0].start()


def status() -> dict[str, str]:
    return dict(_STATE)
