"""Background warm-up at server start, so the first click is fast: the modules the first live
figure needs, the process server that trainings fork from (torch imported once), the demo's
teacher (trained and cached on first use), and UMAP's numba kernels (compiled in the
projection worker process, never in this one).

Runs once per server process and never blocks a page.
"""

from __future__ import annotations

import os
import threading
import time

_STATE = {"imports": "pending", "trainings": "pending", "teacher": "pending", "numba": "pending"}


def _imports() -> None:
    """What the first live figure needs in this process (~2.5 s of imports on 2 cores)."""
    import importlib

    t0 = time.perf_counter()
    for module in ("perco_viz.figures", "perco_viz.analysis.projection", "sklearn.decomposition", "scipy.stats", "torch"):
        importlib.import_module(module)
    _STATE["imports"] = f"ready in {time.perf_counter() - t0:.1f} s"


def _warm(busy) -> None:
    from perco_viz import live, process

    t0 = time.perf_counter()
    try:
        process.prestart()
        _STATE["trainings"] = f"ready in {time.perf_counter() - t0:.1f} s"
    except Exception as exc:  # noqa: BLE001 — warm-up is an optimisation only
        _STATE["trainings"] = f"failed: {exc}"
    _imports()  # after the process server is up: the two do not compete for the CPU
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
            _STARTED.append(threading.Thread(target=_warm, args=(busy,), name="perco-viz-warmup", daemon=True))
            _STARTED[0].start()


def status() -> dict[str, str]:
    return dict(_STATE)
