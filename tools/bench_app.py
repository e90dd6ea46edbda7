"""App benchmark in a real browser: cold start, the demo's first live figure, snapshot latency.

Starts ``streamlit run app.py`` on a free localhost port (a fresh runs folder; the teacher
cache as configured, so run ``perco-viz teacher train`` first to measure "teacher cached"),
drives Debian's chromium with Playwright, and measures what a person waits for:

- ``cold_start_s``: from launching the server to the home page's "Run the demo" button
  being visible and enabled in the browser;
- ``first_figure_s``: from the click to the first live embedding figure on the Distill page;
- ``demo_total_s``: from the click to the run's ``status.json`` saying ``finished``;
- ``snapshot_latency_s``: per snapshot, from its line appearing in ``metrics.jsonl`` to the
  page's "Epoch" card showing it (polled every 50 ms on both sides).

With ``--screenshots DIR`` it then visits every page on the finished demo run with a tall
viewport and saves one PNG per page for a person to look at.

    python tools/bench_app.py --json docs/bench_app.json --screenshots screenshots
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

# the app's own reader; imported here, not in the timed loop
from perco_viz.runs import RunDir, list_runs

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
PAGES = ["Setup", "Distill", "Embeddings", "Rank_agreement", "Per_sample_coherence", "Diagnose", "Compare",
         "Teaching_view"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_health(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"streamlit did not answer on {url} within {timeout_s:.0f} s")


def _session_run(runs: Path) -> RunDir | None:
    """The first run of any app session under ``runs`` (``RunDir``: the layout is its business), or None."""
    sessions = runs / "app-sessions"
    for folder in sorted(sessions.iterdir()) if sessions.is_dir() else []:
        found = list_runs(folder)
        if found:
            return found[0]
    return None


def _snapshot_lines(run: RunDir) -> list[float]:
    """The epoch of each complete snapshot record of the run's metrics, read now."""
    return [float(r["epoch"]) for r in run.metrics() if r.get("snapshot") is not None]


def _epoch_on_page(page) -> float | None:
    cards = page.locator('[data-testid="stMetric"]')
    for i in range(cards.count()):
        card = cards.nth(i)
        try:
            if card.locator('[data-testid="stMetricLabel"]').inner_text(timeout=200).strip() == "Epoch":
                return float(card.locator('[data-testid="stMetricValue"]').inner_text(timeout=200))
        except Exception:  # noqa: BLE001 — re-rendered between the two reads
            return None
    return None


def settle(page, timeout_ms: int = 90_000) -> None:
    """Wait until the page's script has finished and no spinner is left on it."""
    page.wait_for_timeout(500)
    deadline = time.time() + timeout_ms / 1000
    while time.time() < deadline:
        idle = page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').count()
        busy = page.locator('[data-testid="stSpinner"]').count()
        if idle and not busy:
            break
        page.wait_for_timeout(200)
    page.wait_for_timeout(1000)  # let plotly draw


def run(args: argparse.Namespace) -> dict:
    from playwright.sync_api import sync_playwright

    runs = Path(tempfile.mkdtemp(prefix="perco-viz-bench-app-"))
    env = {**os.environ, "PERCO_VIZ_RUNS": str(runs)}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    report: dict = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        t0 = time.perf_counter()
        proc = start_server(port, env)
        try:
            wait_health(url)
            report["server_up_s"] = time.perf_counter() - t0
            page.goto(url)
            button = page.get_by_role("button", name="Run the demo")
            button.wait_for(timeout=60_000)
            while not button.is_enabled():
                page.wait_for_timeout(20)
            report["cold_start_s"] = time.perf_counter() - t0
            page.wait_for_timeout(1000 * args.click_after)  # a person reads the page first
            report["clicked_after_s"] = args.click_after

            button.click()
            clicked = time.perf_counter()
            page.wait_for_url("**/Distill**", timeout=30_000)
            chart = page.locator('[data-testid="stPlotlyChart"]').first
            deadline = time.time() + 120
            while not chart.is_visible() and time.time() < deadline:  # when does the snapshot land?
                found = _session_run(runs)
                if "first_snapshot_written_s" not in report and found is not None and _snapshot_lines(found):
                    report["first_snapshot_written_s"] = time.perf_counter() - clicked
                page.wait_for_timeout(50)
            chart.wait_for(timeout=1_000)
            report["first_figure_s"] = time.perf_counter() - clicked

            run = _session_run(runs)
            seen_file: dict[float, float] = {}
            seen_page: dict[float, float] = {}
            deadline = time.time() + args.timeout
            status = {}
            while time.time() < deadline:
                now = time.perf_counter()
                run = run or _session_run(runs)
                if run is not None:
                    for epoch in _snapshot_lines(run):
                        seen_file.setdefault(epoch, now)
                    status = run.status()
                epoch = _epoch_on_page(page)
                if epoch is not None:
                    seen_page.setdefault(epoch, time.perf_counter())
                if status.get("state") in ("finished", "failed", "cancelled") and epoch is not None \
                        and epoch >= max(seen_file, default=0):
                    break
                page.wait_for_timeout(50)
            report["demo_state"] = status.get("state")
            report["demo_total_s"] = time.perf_counter() - clicked
            records = run.metrics() if run is not None else []
            if records:
                last = records[-1]
                report["demo_final"] = {k: last.get(k) for k in ("epoch", "pc", "knn_acc", "wall_s")}
                report["engine_first_snapshot_wall_s"] = records[0].get("wall_s")  # the child's own clock
            lat = [seen_page[e] - seen_file[e] for e in seen_file if e in seen_page and e > 0]
            report["snapshots_timed"] = len(lat)
            if lat:
                report["snapshot_latency_s"] = {"median": statistics.median(lat), "max": max(lat)}
            # the same page again, the run finished and the machine quiet: the page's own cost
            query = page.url.partition("?")[2]
            t1 = time.perf_counter()
            page.goto(f"{url}/Distill?{query}")
            page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=60_000)
            report["distill_page_reload_s"] = time.perf_counter() - t1
            if args.screenshots:
                out = Path(args.screenshots)
                out.mkdir(parents=True, exist_ok=True)
                page.set_viewport_size({"width": 1440, "height": args.height})
                page.goto(f"{url}/?{query}")
                settle(page)
                page.screenshot(path=str(out / "Home.png"))
                for name in PAGES:
                    page.goto(f"{url}/{name}?{query}")
                    settle(page)
                    page.screenshot(path=str(out / f"{name}.png"))
                    errors = page.locator('[data-testid="stException"]').count()
                    report.setdefault("exceptions", {})[name] = errors
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            browser.close()
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", default=None, help="also write the report here")
    parser.add_argument("--screenshots", default=None, help="folder for one PNG per page after the demo")
    parser.add_argument("--height", type=int, default=2400, help="viewport height of the screenshots")
    parser.add_argument("--timeout", type=float, default=600.0, help="longest wait for the demo to finish (s)")
    parser.add_argument("--click-after", type=float, default=0.0,
                        help="seconds between the home page being ready and the click (default: at once)")
    args = parser.parse_args()
    if not os.path.exists(CHROMIUM):
        print(f"error: {CHROMIUM} not found; install Debian's chromium (make browser-deps)", file=sys.stderr)
        return 1
    report = run(args)
    from perco_viz.bench import machine_description

    report["machine"] = machine_description()
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report.get("demo_state") == "finished" else 1


if __name__ == "__main__":
    raise SystemExit(main())
