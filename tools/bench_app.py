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

With ``--pages`` it then times **every page** of the app on the finished demo run
(:data:`PAGE_SPECS`): for each page a fresh server, the page's *first visit* after the server
start (a new browser context: empty cache), then a *warm* visit (another tab: a new Streamlit
session, same server) — from ``page.goto`` (the demo session's ``?sid=``) to the page
interactive: its figures or main content drawn, no spinner, the script finished. Diagnose also
times its report on the demo run (the "A run of this app" source). ``--load N`` keeps N demo
trainings running in the background meanwhile (``perco-viz distill``, niced as the app's own).
Chromium runs with the flags of :data:`ARGS` (headless, no sandbox, no GPU).

    python tools/bench_app.py --json docs/bench_app.json --screenshots screenshots
    python tools/bench_app.py --pages --pages-json docs/bench_pages.json [--load 4]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
sys.path.insert(0, str(ROOT / "tools"))  # load_test's process-tree CPU reader
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
PAGES = ["Setup", "Distill", "Embeddings", "Rank_agreement", "Per_sample_coherence", "Diagnose", "Compare", "Runs",
         "Teaching_view"]


PORTS: list[int] = []  # --port: the ports to use, in turn (default: any free one)


def free_port() -> int:
    if PORTS:
        PORTS.append(PORTS.pop(0))
        return PORTS[-1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, env: dict[str, str], root: Path = ROOT) -> subprocess.Popen:
    """``streamlit run app.py`` of the app in ``root`` (default: this checkout)."""
    return subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


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


EPOCH_CARD = "Snapshot at epoch"  # ui.distill.EPOCH_CARD (tests/test_bench_app.py keeps them equal)


def _epoch_on_page(page) -> float | None:
    """The epoch on the Distill page's card (``ui.distill.EPOCH_CARD``), or None when not drawn."""
    cards = page.locator('[data-testid="stMetric"]')
    for i in range(cards.count()):
        card = cards.nth(i)
        try:
            if card.locator('[data-testid="stMetricLabel"]').inner_text(timeout=200).strip() == EPOCH_CARD:
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


# --------------------------------------------------------------------------- every page, first visit and warm
# One row per page of the app (ui.common.PAGES, in its order): the label in the sidebar, the URL path,
# and what marks the page "interactive" on the finished demo run: at least ``count`` elements matching
# ``selector`` drawn (a plotly chart counts once its plot container is there), no spinner left, the
# script finished. Only shown elements count (a figure in a hidden tab does not).
# tests/test_bench_app.py checks the labels against ui.common.PAGES.
PLOT = '[data-testid="stPlotlyChart"] .plot-container'
PAGE_SPECS: list[tuple[str, str, str, int]] = [
    ("Home", "", PLOT, 1),
    ("Setup", "Setup", '[data-testid="stCode"]', 1),
    ("Distill", "Distill", PLOT, 2),
    ("Embeddings", "Embeddings", PLOT, 2),
    ("Rank agreement", "Rank_agreement", PLOT, 3),  # A, R_T (R_S: behind the switch), the anchor's neighbours
    ("Per-sample coherence", "Per_sample_coherence", PLOT, 4),
    ("Diagnose", "Diagnose", '[data-testid="stRadio"]', 1),
    ("Compare", "Compare", PLOT, 2),  # the first curve's tab, the final embeddings
    ("Runs", "Runs", '[data-testid="stDataFrame"]', 1),
    ("Teaching view", "Teaching_view", PLOT, 5),
]

_DONE_JS = """([selector, count]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (document.querySelector('[data-testid="stSpinner"]')) return false;
  const shown = [...document.querySelectorAll(selector)].filter(e => e.getClientRects().length > 0);
  return shown.length >= count;
}"""


def wait_interactive(page, selector: str, count: int, t0: float, timeout_s: float) -> float | None:
    """Seconds from ``t0`` until the page is interactive (see :data:`PAGE_SPECS`), None on timeout."""
    try:
        page.wait_for_function(_DONE_JS, arg=[selector, count], polling=50, timeout=timeout_s * 1000)
    except Exception:  # noqa: BLE001 — playwright's TimeoutError: reported as None
        return None
    return time.perf_counter() - t0


def _content(page) -> dict:
    """What the page shows once interactive: counts, for the JSON (a check that it drew the run)."""
    return {"plots": page.locator(PLOT).count(),
            "tables": page.locator('[data-testid="stDataFrame"]').count(),
            "exceptions": page.locator('[data-testid="stException"]').count(),
            "errors": page.locator('[data-testid="stAlertContentError"]').count()}


def visit(context, url: str, spec: tuple[str, str, str, int], query: str, timeout_s: float) -> dict:
    """One visit of one page in a new tab of ``context`` (a new Streamlit session):
    ``page.goto`` with the demo session's ``?sid=`` → interactive."""
    label, path, selector, count = spec
    page = context.new_page()
    try:
        t0 = time.perf_counter()
        page.goto(f"{url}/{path}?{query}", timeout=timeout_s * 1000)
        seconds = wait_interactive(page, selector, count, t0, timeout_s)
        out = {"s": None if seconds is None else round(seconds, 2), **_content(page)}
        if label == "Diagnose":  # its report on the demo run: the radio's third source, then the cards
            t1 = time.perf_counter()
            page.get_by_text("A run of this app", exact=True).click()
            page.wait_for_timeout(300)
            report = wait_interactive(page, '[data-testid="stMetric"]', 3, t1, timeout_s)
            out["report_s"] = None if report is None else round(report, 2)
        return out
    finally:
        page.close()


class BackgroundDemos:
    """``n`` demo trainings (``perco-viz distill``, the demo's config) kept running in the background,
    each restarted when it ends, at niceness 5 as the app's own trainings: the load of ``n`` people
    running the demo on the same server (tools/load_test.py drives 4)."""

    def __init__(self, n: int, env: dict[str, str]) -> None:
        self.n, self.env = n, env
        self.out = Path(tempfile.mkdtemp(prefix="perco-viz-bench-load-"))
        self.procs: list[subprocess.Popen | None] = [None] * n
        self.started = 0
        self._stop = False
        self._thread = None

    def _spawn(self) -> subprocess.Popen:
        self.started += 1
        return subprocess.Popen(
            ["nice", "-n", "5", sys.executable, "-m", "perco_viz", "distill", "--quiet", "--out", str(self.out),
             "--name", f"load-{self.started}"],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _loop(self) -> None:
        while not self._stop:
            for i, proc in enumerate(self.procs):
                if proc is None or proc.poll() is not None:
                    self.procs[i] = self._spawn()
            time.sleep(0.2)

    def __enter__(self):
        import threading

        if self.n > 0:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
            time.sleep(5.0)  # the trainings past their imports: the load is on
        return self

    def __exit__(self, *exc) -> None:
        self._stop = True
        if self._thread is not None:
            self._thread.join()
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(self.out, ignore_errors=True)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def wait_idle(pid: int, limit_s: float = 60.0, below: float = 0.15) -> float:
    """Wait until the process tree of ``pid`` uses under ``below`` of a core over 2 s (its
    warm-up done), at most ``limit_s``; returns the seconds waited."""
    from load_test import tree_cpu_s

    t0 = time.perf_counter()
    last = tree_cpu_s(pid)
    while time.perf_counter() - t0 < limit_s:
        time.sleep(2.0)
        now = tree_cpu_s(pid)
        if now - last < 2.0 * below:
            break
        last = now
    return time.perf_counter() - t0


def bench_pages(browser, env: dict[str, str], query: str, *, load: int, timeout_s: float,
                pages: list[str] | None = None, trees: dict[str, Path] | None = None) -> dict:
    """Every page of the app on the finished demo run (``query`` holds its session's ``sid``).

    **First visit**: for each page a fresh server (same runs folder) and a fresh browser context
    (empty cache), then the page's first visit after the server start. **Warm**: one more
    server, its warm-up let finish (the home page opened, then its process tree idle, at most
    60 s), each page opened once, then timed in another tab (a new Streamlit session, the
    browser's cache warm). Each visit: ``page.goto`` → the page's mark of done
    (:data:`PAGE_SPECS`). With ``load`` > 0, ``load`` demo trainings run in the background the
    whole time. ``trees`` (name → checkout, default this one): each page is measured in each
    checkout in turn, so that versions are compared under the same load.
    """
    trees = trees or {"this": ROOT}
    specs = [spec for spec in PAGE_SPECS if not pages or spec[0] in pages]
    rows: dict[str, dict[str, dict]] = {name: {} for name in trees}
    load_avg, warm_up_s = [], {}
    with BackgroundDemos(load, env) as demos:
        for spec in specs:
            for name, root in trees.items():
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                proc = start_server(port, env, root)
                try:
                    wait_health(url)
                    context = browser.new_context(viewport={"width": 1440, "height": 1000})  # an empty cache
                    try:
                        rows[name][spec[0]] = {"first_visit": visit(context, url, spec, query, timeout_s)}
                    finally:
                        context.close()
                    load_avg.append(os.getloadavg()[0])
                finally:
                    _stop(proc)
                print(f"{name}: {spec[0]:>22}: first visit {rows[name][spec[0]]['first_visit']['s']} s", file=sys.stderr)
        servers = {}
        try:
            for name, root in trees.items():
                port = free_port()
                servers[name] = (f"http://127.0.0.1:{port}", start_server(port, env, root))
            contexts = {name: browser.new_context(viewport={"width": 1440, "height": 1000}) for name in trees}
            for name, (url, _proc) in servers.items():
                wait_health(url)
                visit(contexts[name], url, PAGE_SPECS[0], query, timeout_s)  # the home page starts the warm-up
            for name, (_url, proc) in servers.items():
                warm_up_s[name] = round(wait_idle(proc.pid), 1)
            for spec in specs:
                for name, (url, _) in servers.items():
                    visit(contexts[name], url, spec, query, timeout_s)  # the page's own first visit: its caches
                    rows[name][spec[0]]["warm"] = visit(contexts[name], url, spec, query, timeout_s)
                    load_avg.append(os.getloadavg()[0])
                    print(f"{name}: {spec[0]:>22}: warm {rows[name][spec[0]]['warm']['s']} s", file=sys.stderr)
            for context in contexts.values():
                context.close()
        finally:
            for _, proc in servers.values():
                _stop(proc)
        trainings = demos.started
    out = {"load_demos": load, "background_trainings_started": trainings, "warm_up_wait_s": warm_up_s,
           "load_average_1min": [round(x, 1) for x in load_avg]}
    if list(trees) == ["this"]:
        return {**out, "pages": rows["this"]}
    return {**out, "trees": {name: str(root) for name, root in trees.items()}, "pages_by_tree": rows}


def pages_table(report: dict) -> str:
    """A markdown table of :func:`bench_pages`' report (for docs/benchmarks.md)."""
    lines = ["| page | first visit (s) | warm (s) |", "|---|---:|---:|"]
    for label, row in report["pages"].items():
        def cell(v):
            return "timeout" if v is None else f"{v:.1f}"
        first, warm = row["first_visit"], row["warm"]
        lines.append(f"| {label} | {cell(first['s'])} | {cell(warm['s'])} |")
        if "report_s" in first:
            lines.append(f"| {label}: the report of the demo run | {cell(first['report_s'])} | {cell(warm['report_s'])} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    from playwright.sync_api import sync_playwright

    runs = Path(args.runs) if args.runs else Path(tempfile.mkdtemp(prefix="perco-viz-bench-app-"))
    runs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PERCO_VIZ_RUNS": str(runs)}
    report: dict = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        done = _session_run(runs)
        if done is not None and done.status().get("state") == "finished":  # --runs with a finished demo
            report["demo_state"] = "finished"
            query = f"sid={done.path.parent.name}"
        else:
            query = _bench_demo(browser, runs, env, args, report)
        if args.pages:
            trees = {"this": ROOT, **{Path(t).name: Path(t) for t in args.also_tree or []}}
            report["pages_bench"] = bench_pages(browser, env, query, load=args.load, timeout_s=args.page_timeout,
                                                pages=args.only, trees=trees)
        browser.close()
    return report


def _bench_demo(browser, runs: Path, env: dict[str, str], args: argparse.Namespace, report: dict) -> str:
    """The demo, clicked on a cold server: fills ``report``; returns the demo session's URL query."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
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
        page.close()
    return query


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", default=None, help="also write the report here")
    parser.add_argument("--screenshots", default=None, help="folder for one PNG per page after the demo")
    parser.add_argument("--height", type=int, default=2400, help="viewport height of the screenshots")
    parser.add_argument("--timeout", type=float, default=600.0, help="longest wait for the demo to finish (s)")
    parser.add_argument("--port", type=int, default=None,
                        help="servers on this port and the 9 after it, in turn (default: any free port)")
    parser.add_argument("--pages", action="store_true",
                        help="then every page on the finished demo: first visit after a server start, and warm")
    parser.add_argument("--load", type=int, default=0,
                        help="with --pages: N demo trainings running in the background while measuring")
    parser.add_argument("--only", action="append", default=None, help="with --pages: this page only (repeatable)")
    parser.add_argument("--also-tree", action="append", default=None,
                        help="with --pages: also measure the app of this checkout (e.g. the previous version), "
                             "page by page in turn with this one, under the same load (repeatable)")
    parser.add_argument("--page-timeout", type=float, default=180.0, help="longest wait for one page (s)")
    parser.add_argument("--runs", default=None,
                        help="runs folder (default: a fresh one); when it holds a finished demo, the demo is not rerun")
    parser.add_argument("--pages-json", default=None, help="with --pages: write the pages' report here")
    parser.add_argument("--click-after", type=float, default=0.0,
                        help="seconds between the home page being ready and the click (default: at once)")
    args = parser.parse_args()
    if not os.path.exists(CHROMIUM):
        print(f"error: {CHROMIUM} not found; install Debian's chromium (make browser-deps)", file=sys.stderr)
        return 1
    if args.port:
        PORTS[:] = range(args.port, args.port + 10)
    report = run(args)
    from perco_viz.bench import machine_description

    report["machine"] = machine_description()
    print(json.dumps(report, indent=2))
    if args.pages and "pages" in report["pages_bench"]:
        print(pages_table(report["pages_bench"]))
    elif args.pages:
        for name, rows in report["pages_bench"]["pages_by_tree"].items():
            print(f"{name}:\n{pages_table({'pages': rows})}")
        if args.pages_json:  # one entry per load, kept across runs: {"load 0": ..., "load 4": ...}
            out = Path(args.pages_json)
            doc = json.loads(out.read_text()) if out.is_file() else {}
            doc[f"load {args.load}"] = {"machine": report["machine"], "date": time.strftime("%Y-%m-%d %H:%M"),
                                        **report["pages_bench"]}
            out.write_text(json.dumps(doc, indent=2) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report.get("demo_state") == "finished" else 1


if __name__ == "__main__":
    raise SystemExit(main())
