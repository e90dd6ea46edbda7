"""Load test of the app: N concurrent sessions load the home page, K of them run the demo.

Each session is a ``streamlit.testing.v1.AppTest`` (its own session state, its own session
id), all in one process that shares the server-wide run registry, as one Streamlit server
would (each training is a child process of it, as on a server). Reports sessions held, page
latency (p50/p95/max), peak memory (this process, and the whole process tree with the
trainings) and whether every demo session got its own, correct run.

A measurement, not a test: AppTest's runtime is global to its process, so concurrent AppTest
sessions can race on it; ``tools/load_test_browser.py`` (and ``tests/test_load.py``) load one real
server from real browser sessions instead.

    python tools/load_test.py --sessions 20 --demos 4 --epochs 20 --json docs/load.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _tree_stats(root: int) -> list[list[str]]:
    """The /proc/<pid>/stat fields (after the command name) of ``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        stats[int(entry)] = fields
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            out.append(stats[pid])
        todo.extend(children.get(pid, []))
    return out


def tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system, with those of reaped children) of ``root``'s process tree."""
    tick = os.sysconf("SC_CLK_TCK")
    return sum(sum(int(v) for v in f[11:15]) for f in _tree_stats(root)) / tick  # utime stime cutime cstime


def _tree_rss_mib(root: int) -> float:
    """Resident memory of process ``root`` and all its descendants (MiB), from /proc."""
    return sum(int(f[21]) for f in _tree_stats(root)) * os.sysconf("SC_PAGE_SIZE") / 2**20


class MemorySampler:
    """Samples the resident memory of process ``root``'s whole tree (default: this process, whose
    trainings and worker are its children) every ``every_s``; ``peak`` in MiB."""

    def __init__(self, every_s: float = 0.5, root: int | None = None) -> None:
        import threading

        self.peak, self.every_s, self.root = 0.0, every_s, root or os.getpid()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss_mib(self.root))
            self._stop.wait(self.every_s)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_load(sessions: int, demos: int, epochs: int, timeout_s: float = 600.0) -> dict:
    """Drive ``sessions`` AppTest sessions; ``demos`` of them click "Run the demo"."""
    from streamlit.testing.v1 import AppTest

    from ui import common

    os.chdir(ROOT)
    latencies: list[float] = []
    cfg = common.demo_config().override(**{"train.epochs": epochs})
    common.demo_config = lambda: cfg  # the same demo, with the epochs asked for

    def session(i: int) -> dict:
        t0 = time.perf_counter()
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout_s).run()
        latencies.append(time.perf_counter() - t0)
        out = {"i": i, "sid": at.session_state["sid"], "exception": bool(at.exception)}
        if i < demos:
            t1 = time.perf_counter()
            at.button(key="home-demo").click().run()
            latencies.append(time.perf_counter() - t1)
            out["exception"] |= bool(at.exception)
        for _ in range(2):  # reload the page twice, as a person would
            t2 = time.perf_counter()
            at.run()
            latencies.append(time.perf_counter() - t2)
            out["exception"] |= bool(at.exception)
        return out

    t_start = time.perf_counter()
    memory = MemorySampler() if os.path.isdir("/proc") else None
    with ThreadPoolExecutor(sessions) as pool:
        results = list(pool.map(session, range(sessions)))
    reg = common.registry()
    runs = {r["sid"]: reg.latest(r["sid"]) for r in results[:demos]}
    deadline = time.time() + timeout_s
    while time.time() < deadline and any(run is not None and run.alive for run in runs.values()):
        time.sleep(0.5)
    own_and_correct = 0
    for sid, run in runs.items():
        if run is None or run.run_dir is None:
            continue
        metrics = run.run_dir.metrics()
        ok = (run.info().get("state") == "finished" and sid in str(run.run_dir.path)
              and len(metrics) == epochs + 1 and metrics[-1]["pc"] > 0.8)
        own_and_correct += ok
    return {
        "sessions": sessions, "demo_sessions": demos, "epochs": epochs,
        "sessions_without_exception": sum(not r["exception"] for r in results),
        "distinct_session_ids": len({r["sid"] for r in results}),
        "demo_runs_own_and_correct": own_and_correct,
        "page_runs": len(latencies),
        "latency_p50_s": statistics.median(latencies), "latency_p95_s": percentile(latencies, 0.95),
        "latency_max_s": max(latencies),
        "wall_s": time.perf_counter() - t_start,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_rss_all_processes_mib": memory.stop() if memory is not None else None,
        "demo_wall_s": [round(run.run_dir.metrics()[-1]["wall_s"], 1) for run in runs.values()
                        if run is not None and run.run_dir is not None and run.run_dir.metrics()],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--demos", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    os.environ.setdefault("PERCO_VIZ_RUNS", tempfile.mkdtemp(prefix="perco-viz-load-"))
    os.environ.setdefault("PERCO_VIZ_MAX_TRAININGS", str(max(args.demos, 1)))
    report = run_load(args.sessions, args.demos, args.epochs)
    from perco_viz.bench import machine_description

    report["machine"] = machine_description()
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    ok = (report["sessions_without_exception"] == args.sessions
          and report["demo_runs_own_and_correct"] == args.demos)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
