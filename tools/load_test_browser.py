"""Load test in real browsers: N sessions on one `streamlit run` server, K of them run the demo.

One server on a free localhost port (its own runs folder), one headless chromium (Debian's),
N isolated browser contexts (each its own session, as N people would be) opened at once with
Playwright's async API. Each session loads the home page; the first K click "Run the demo"
and follow it on the Distill page; every session then opens two more pages while the K
trainings run. Measured: the latency of each page load (navigation to its script finished),
whether any page shows an exception, whether each demo session got its own finished run with
PC > 0.8, and the peak resident memory of the server's process tree (server, trainings,
worker) and of the whole machine's used memory. Traffic goes to 127.0.0.1 only; every wait is
bounded.

    python tools/load_test_browser.py --sessions 20 --demos 4 --json docs/load_browser.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from bench_app import ARGS, CHROMIUM, free_port, start_server, wait_health  # noqa: E402
from load_test import MemorySampler, percentile, tree_cpu_s  # noqa: E402

from perco_viz.runs import list_runs  # noqa: E402

IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


async def _load(page, url: str, timeout_s: float) -> float:
    """Open ``url`` and wait until its script has run to the end; seconds."""
    t0 = time.perf_counter()
    await page.goto(url, timeout=timeout_s * 1000)
    await page.wait_for_timeout(300)  # the script starts after the page connects
    await page.locator(IDLE).first.wait_for(timeout=timeout_s * 1000)
    return time.perf_counter() - t0


async def _session(i: int, browser, url: str, demo: bool, runs: Path, timeout_s: float) -> dict:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    out = {"i": i, "latencies": [], "exceptions": 0, "demo": demo}
    try:
        out["latencies"].append(await _load(page, url, timeout_s))
        if demo:
            t0 = time.perf_counter()
            await page.get_by_role("button", name="Run the demo").click(timeout=timeout_s * 1000)
            await page.wait_for_url("**/Distill**", timeout=timeout_s * 1000)
            await page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=timeout_s * 1000)
            out["first_figure_s"] = time.perf_counter() - t0
        query = page.url.partition("?")[2]
        out["sid"] = dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("sid")
        for name in ("Embeddings", "Per_sample_coherence"):
            out["latencies"].append(await _load(page, f"{url}/{name}?{query}", timeout_s))
            out["exceptions"] += await page.locator('[data-testid="stException"]').count()
    except Exception as exc:  # noqa: BLE001 — reported in the result, the others go on
        out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    finally:
        await context.close()
    return out


def _check_run(runs: Path, sid: str | None, epochs: int) -> bool:
    """The session's own run directory finished with all its snapshots and PC > 0.8."""
    if not sid:
        return False
    found = list_runs(runs / "app-sessions" / sid)
    if len(found) != 1:
        return False
    records = found[0].metrics()
    return found[0].status()["state"] == "finished" and len(records) == epochs + 1 and records[-1]["pc"] > 0.8


def _used_memory_mib() -> float:
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    kib = lambda key: int(info[key].split()[0])  # noqa: E731
    return (kib("MemTotal") - kib("MemAvailable")) / 1024


async def run(sessions: int, demos: int, timeout_s: float) -> dict:
    from playwright.async_api import async_playwright

    runs = Path(tempfile.mkdtemp(prefix="perco-viz-load-"))
    env = {**os.environ, "PERCO_VIZ_RUNS": str(runs), "PERCO_VIZ_MAX_TRAININGS": str(max(demos, 1))}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    base_used = _used_memory_mib()
    proc = start_server(port, env)
    memory = MemorySampler(root=proc.pid)
    peak_used = [base_used]

    async def watch_machine() -> None:
        while True:
            peak_used[0] = max(peak_used[0], _used_memory_mib())
            await asyncio.sleep(0.5)

    watcher = asyncio.create_task(watch_machine())
    try:
        wait_health(url)
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            t0 = time.perf_counter()
            results = await asyncio.gather(*[_session(i, browser, url, i < demos, runs, timeout_s)
                                             for i in range(sessions)])
            held_s = time.perf_counter() - t0
            cpu = {"server_tree": tree_cpu_s(proc.pid),  # the server, its trainings and worker
                   "browser": tree_cpu_s(os.getpid()) - tree_cpu_s(proc.pid)}  # (and this script)
            await browser.close()
        deadline = time.time() + timeout_s  # the trainings finish on their own
        while time.time() < deadline and not all(_check_run(runs, r.get("sid"), 20) for r in results[:demos]):
            await asyncio.sleep(0.5)
    finally:
        watcher.cancel()
        tree_peak = memory.stop()  # this process's tree: the server, its trainings and worker
        proc.terminate()
        proc.wait(10)
    latencies = [s for r in results for s in r["latencies"]]
    figures = [r["first_figure_s"] for r in results if "first_figure_s" in r]
    return {
        "sessions": sessions, "demo_sessions": demos,
        "sessions_completed": sum("error" not in r for r in results),
        "errors": [r["error"] for r in results if "error" in r],
        "pages_with_an_exception": sum(r["exceptions"] for r in results),
        "distinct_session_ids": len({r.get("sid") for r in results if r.get("sid")}),
        "demo_runs_own_and_correct": sum(_check_run(runs, r.get("sid"), 20) for r in results[:demos]),
        "page_loads": len(latencies),
        "latency_p50_s": statistics.median(latencies) if latencies else None,
        "latency_p95_s": percentile(latencies, 0.95) if latencies else None,
        "latency_max_s": max(latencies) if latencies else None,
        "demo_first_figure_s": figures,
        "all_sessions_done_s": held_s,
        "cpu_s_while_sessions_ran": cpu,
        "peak_rss_server_tree_mib": tree_peak,
        "peak_machine_memory_used_mib": peak_used[0], "machine_memory_used_before_mib": base_used,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--demos", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=300.0, help="longest wait for any one step (s)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not os.path.exists(CHROMIUM):
        print(f"error: {CHROMIUM} not found; install Debian's chromium (make browser-deps)", file=sys.stderr)
        return 1
    report = asyncio.run(run(args.sessions, args.demos, args.timeout))
    sys.path.insert(0, str(ROOT))
    from perco_viz.bench import machine_description

    report["machine"] = machine_description()
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    ok = (report["sessions_completed"] == args.sessions and report["pages_with_an_exception"] == 0
          and report["demo_runs_own_and_correct"] == args.demos)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
