"""100,000 points on screen: the Embeddings page in a real browser, timed.

Writes a synthetic run whose probe set has ``--n`` points (default 100,000) with the library's
own writer (:class:`perco_viz.runs.RunDir`: teacher features (n, 64) in 10 Gaussian classes,
``--snapshots`` student snapshots (n, 16) drifting towards a projection of the teacher; their
c_i values are synthetic, not computed: this is a drawing benchmark), plus a small run of 1,000
points, in a temporary runs folder. Starts ``streamlit run app.py`` on ``--port`` (8613) with
``PERCO_VIZ_RUNS`` pointing there and the start-up warm-up off, drives Debian's chromium
(headless, no GPU: WebGL through SwiftShader, on the CPU) with Playwright, and times:

- ``open_s``: ``page.goto(Embeddings?run=<the big run>)`` → both plots drawn (a plotly plot with
  its WebGL canvas in each), the script finished and no spinner left (the first visit: it reads
  the run, computes the PCA of the teacher and every snapshot, draws);
- ``switch_s``: on the page showing the small run, picking the big run in the run box → drawn
  again (the PCA now cached by the server: what a second look costs);
- ``pan_s``: one pan (the modebar's pan tool, a 200 px drag in 10 steps on the teacher's plot;
  plotly redraws the WebGL plot at each step) → plotly's ``plotly_relayout`` event and two
  animation frames, from the mouse press; ``pan_moved``: the axes' ranges changed;
- ``zoom_s``: a double-click on the plot (autoscale back) → the same;
- ``open3d_s`` / ``orbit_s``: the 3-D radio → both Scatter3d plots drawn; one 120 px orbit drag;
- ``hover_ok``: a tooltip appears over a point;
- ``select_s``: a box selection on the teacher's plot → the page reran and both plots show the
  selection (linked selection), with the count of selected inputs.

Prints a table, writes ``--json`` (default docs/bench_points.json) and, with ``--screenshot``,
a PNG of the page with the big run drawn.

    python tools/bench_points.py --run [--n 100000] [--json docs/bench_points.json] [--screenshot out.png]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT))

BIG, SMALL = "points-big", "points-small"
TEACHER_DIM, STUDENT_DIM, CLASSES = 64, 16, 10
CANVAS_PLOT = '[data-testid="stPlotlyChart"] .js-plotly-plot'

_DRAWN_JS = """([count, busy]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (document.querySelector('[data-testid="stSpinner"]')) return false;
  const plots = [...document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')]
    .filter(p => p.getClientRects().length > 0 && p.querySelector('.main-svg') && (p.querySelector('canvas') || p.querySelector('.scatterlayer .trace')));
  if (plots.length < count) return false;
  if (busy && !document.body.textContent.includes(busy)) return false;
  return true;
}"""



# --------------------------------------------------------------------------- the runs (pure: tested)
def write_points_run(root: Path, name: str, n: int, *, snapshots: int = 3, seed: int = 0):
    """A finished run of ``n`` probe points written through :class:`perco_viz.runs.RunDir`.

    Teacher (n, 64) in 10 Gaussian classes; student (n, 16) at each snapshot: a fixed projection
    of the teacher plus noise that shrinks over the snapshots; c_i synthetic in [0.5, 1] (higher
    where the noise is smaller). Returns the RunDir.
    """
    from perco_viz.config import RunConfig
    from perco_viz.runs import RunDir, Snapshot

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    centres = rng.normal(scale=4.0, size=(CLASSES, TEACHER_DIM))
    teacher = (centres[labels] + rng.normal(size=(n, TEACHER_DIM))).astype(np.float32)
    cfg = RunConfig().override(**{"data.probe_size": n, "student.dim": STUDENT_DIM, "train.epochs": snapshots - 1})
    run = RunDir.create(root, cfg, name)
    run.save_teacher_probe(teacher, labels, np.arange(n))
    basis = np.linalg.qr(rng.normal(size=(TEACHER_DIM, STUDENT_DIM)))[0].astype(np.float32)
    for i in range(snapshots):
        scale = 3.0 / (i + 1)
        noise = rng.normal(scale=scale, size=(n, STUDENT_DIM)).astype(np.float32)
        student = teacher @ basis + noise
        c = np.clip(1.0 - 0.1 * scale * np.abs(rng.normal(size=n)), 0.5, 1.0)
        record = {"epoch": float(i), "step": 10 * i, "train_loss": None if i == 0 else 1.0 / i, "pc": float(c.mean()),
                  "coherence_p10": float(np.quantile(c, 0.1)), "knn_acc": 0.5 + 0.1 * i, "wall_s": float(i)}
        run.save_snapshot(Snapshot(i, float(i), 10 * i, student, c, record))
    run.write_status("finished", epoch=float(snapshots - 1), step=10 * (snapshots - 1))
    return run


def table(result: dict) -> str:
    """The measured numbers as an aligned text table (one line per measurement)."""
    rows = [("points drawn", f"{result['n']:,}"), ("snapshots", str(result["snapshots"]))]
    for key, what in (("open_s", "open the page on the big run → both plots drawn"),
                      ("switch_s", "pick the big run in the run box → drawn (PCA cached)"),
                      ("pan_s", "pan (200 px drag) → redrawn"), ("zoom_s", "double-click (autoscale) → redrawn"),
                      ("select_s", "box-select → page rerun, selection in both plots"),
                      ("open3d_s", "switch to 3-D (Scatter3d) → drawn"), ("orbit_s", "3-D orbit (120 px drag) → redrawn")):
        value = result.get(key)
        rows.append((what, "—" if value is None else f"{value:.2f} s"))
    rows.append(("tooltip over a point", {True: "yes", False: "no", None: "—"}[result.get("hover_ok")]))
    if result.get("selected") is not None:
        rows.append(("inputs selected by the box", f"{result['selected']:,}"))
    width = max(len(a) for a, _ in rows)
    return "\n".join(f"{a:<{width}}  {b}" for a, b in rows)


# --------------------------------------------------------------------------- the browser
STABLE_S = 0.6  # "drawn" must hold this long (a selection can trigger a second rerun)


def _wait_drawn(page, t0: float, timeout_s: float, count: int = 2, text: str | None = None) -> float | None:
    """Seconds from ``t0`` until the page is drawn (:data:`_DRAWN_JS`) and stays so for
    :data:`STABLE_S` (the time returned is when it became drawn for good), None on timeout."""
    deadline = time.perf_counter() + timeout_s
    since = None
    while time.perf_counter() < deadline:
        try:
            drawn = page.evaluate(f"({_DRAWN_JS})", [count, text or ""])
        except Exception:  # noqa: BLE001 — a navigation in progress
            drawn = False
        now = time.perf_counter()
        if drawn:
            since = now if since is None else since
            if now - since >= STABLE_S:
                return since - t0
        else:
            since = None
        page.wait_for_timeout(50)
    return None


def _plot_box(page, index: int = 0) -> dict:
    return page.locator(CANVAS_PLOT).nth(index).locator(".nsewdrag").first.bounding_box()


_RANGE_JS = """() => { const gd = document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')[0];
  return JSON.stringify(gd._fullLayout.scene ? gd._fullLayout.scene.camera : [gd._fullLayout.xaxis.range, gd._fullLayout.yaxis.range]); }"""


_CLUSTER_JS = """() => { const gd = document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')[0];
  const t = gd._fullData[0], fl = gd._fullLayout, box = gd.getBoundingClientRect();
  let sx = 0, sy = 0; for (let i = 0; i < t.x.length; i++) { sx += t.x[i]; sy += t.y[i]; }
  return [box.left + fl.xaxis._offset + fl.xaxis.l2p(sx / t.x.length),
          box.top + fl.yaxis._offset + fl.yaxis.l2p(sy / t.y.length)]; }"""


def _interaction(page, action) -> tuple[float | None, bool]:
    """``(seconds, moved)``: from the start of ``action`` (mouse pressed; plotly redraws the WebGL
    plot during the drag) to the plot's ``plotly_relayout`` + 2 animation frames, and whether the
    axes (or the 3-D camera) changed."""
    before = page.evaluate(_RANGE_JS)
    page.evaluate("() => { window.__redrawn = null; }")
    page.evaluate("""() => { const gd = document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')[0];
      gd.once('plotly_relayout', () => requestAnimationFrame(() => requestAnimationFrame(() => {
        window.__redrawn = performance.now(); }))); }""")
    started = page.evaluate("() => performance.now()")
    action()
    try:
        page.wait_for_function("() => window.__redrawn !== null", polling=10, timeout=60_000)
    except Exception:  # noqa: BLE001
        return None, False
    return (page.evaluate("() => window.__redrawn") - started) / 1000, page.evaluate(_RANGE_JS) != before


def _drag(page, x: float, y: float, dx: float, dy: float, steps: int = 10) -> None:
    page.mouse.move(x, y)
    page.mouse.down()
    for k in range(1, steps + 1):
        page.mouse.move(x + dx * k / steps, y + dy * k / steps)
    page.mouse.up()


def measure(url: str, n: int, timeout_s: float, screenshot: Path | None, three_d: bool = True) -> dict:
    from bench_app import ARGS, CHROMIUM
    from playwright.sync_api import sync_playwright

    out: dict = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        t0 = time.perf_counter()
        page.goto(f"{url}/Embeddings?run=shared/{BIG}", timeout=timeout_s * 1000)
        out["open_s"] = _wait_drawn(page, t0, timeout_s, text=f"{n:,} probe inputs")
        page.wait_for_timeout(1500)
        page.evaluate("""() => { const el = document.querySelector('[data-testid="stPlotlyChart"]');
          window.scrollTo(0, 0); el.scrollIntoView({block: 'start'}); }""")
        page.mouse.wheel(0, -250)
        page.wait_for_timeout(800)
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=False)
        # pan with the modebar's pan tool, then a double-click (autoscale)
        page.locator(CANVAS_PLOT).nth(0).hover()
        page.locator(CANVAS_PLOT).nth(0).locator('[data-attr="dragmode"][data-val="pan"]').click()
        box = _plot_box(page)
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

        out["pan_s"], out["pan_moved"] = _interaction(page, lambda: _drag(page, cx, cy, 200, 80))
        out["zoom_s"], out["zoom_moved"] = _interaction(page, lambda: page.mouse.dblclick(cx, cy))
        # a tooltip over a point: sweep until plotly shows one
        out["hover_ok"] = False
        for dx in range(-60, 61, 6):
            page.mouse.move(cx + dx, cy + dx / 3)
            page.wait_for_timeout(120)
            if page.locator(".hoverlayer .hovertext").count():
                out["hover_ok"] = True
                out["hover_text"] = page.locator(".hoverlayer .hovertext").first.text_content()
                break
        # a box selection → rerun, the selection shown in both plots
        page.locator(CANVAS_PLOT).nth(0).locator('[data-attr="dragmode"][data-val="select"]').click()
        sx, sy = page.evaluate(_CLUSTER_JS)  # the middle of the first class's points, on screen
        t1 = time.perf_counter()
        _drag(page, sx - 25, sy - 25, 50, 50, steps=6)
        out["select_s"] = _wait_drawn(page, t1, timeout_s, text="The selected inputs")
        out["selected"] = _selected_count(page)
        out["selection_in_both"] = page.evaluate("""() => [...document.querySelectorAll(
          '[data-testid="stPlotlyChart"] .js-plotly-plot')].slice(0, 2).every(gd =>
          gd._fullData.some(t => t.name === 'selected' && t.x && t.x.length > 0))""")
        if screenshot is not None:
            page.wait_for_timeout(1000)
            page.screenshot(path=str(screenshot.with_name(screenshot.stem + "_selected.png")), full_page=False)
        if three_d:  # the 3-D view (Scatter3d, WebGL) of the same points, and one orbit
            t3 = time.perf_counter()
            page.get_by_text("3-D", exact=True).click()
            out["open3d_s"] = _wait_drawn(page, t3, timeout_s, text=f"{n:,} probe inputs")
            page.wait_for_timeout(1000)
            b3 = page.locator(CANVAS_PLOT).nth(0).bounding_box()
            out["orbit_s"], out["orbit_moved"] = _interaction(
                page, lambda: _drag(page, b3["x"] + b3["width"] / 2, b3["y"] + b3["height"] / 2, 120, 40))
            if screenshot is not None:
                page.screenshot(path=str(screenshot.with_name(screenshot.stem + "_3d.png")), full_page=False)
        # the small run, then pick the big one in the run box
        page.goto(f"{url}/Embeddings?run=shared/{SMALL}", timeout=timeout_s * 1000)
        _wait_drawn(page, time.perf_counter(), timeout_s, text="1,000 probe inputs")
        page.locator('[data-testid="stSelectbox"]').first.click()
        t2 = time.perf_counter()
        page.get_by_role("option").filter(has_text=BIG).first.click()
        out["switch_s"] = _wait_drawn(page, t2, timeout_s, text=f"{n:,} probe inputs")
        out["exceptions"] = page.locator('[data-testid="stException"]').count()
        browser.close()
    return out


def _selected_count(page) -> int | None:
    cards = page.locator('[data-testid="stMetric"]')
    for i in range(cards.count()):
        card = cards.nth(i)
        if card.locator('[data-testid="stMetricLabel"]').inner_text().strip() == "Selected inputs":
            return int(card.locator('[data-testid="stMetricValue"]').inner_text().replace(",", ""))
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", action="store_true", help="run the benchmark (starts a server and chromium)")
    ap.add_argument("--n", type=int, default=100_000, help="probe points of the big run")
    ap.add_argument("--snapshots", type=int, default=3)
    ap.add_argument("--port", type=int, default=8613)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds allowed for each wait")
    ap.add_argument("--json", type=Path, default=ROOT / "docs" / "bench_points.json")
    ap.add_argument("--screenshot", type=Path, default=None, help="PNG of the page with the big run drawn")
    args = ap.parse_args(argv)
    if not args.run:
        ap.print_help()
        return 0
    from bench_app import start_server, wait_health

    runs = Path(tempfile.mkdtemp(prefix="perco_viz-points-"))
    proc = None
    try:
        t = time.perf_counter()
        write_points_run(runs, BIG, args.n, snapshots=args.snapshots)
        write_points_run(runs, SMALL, 1000, snapshots=args.snapshots, seed=1)
        written = time.perf_counter() - t
        env = {**os.environ, "PERCO_VIZ_RUNS": str(runs), "PERCO_VIZ_WARMUP": "0"}
        proc = start_server(args.port, env)
        url = f"http://127.0.0.1:{args.port}"
        wait_health(url)
        result = {"n": args.n, "snapshots": args.snapshots, "write_runs_s": round(written, 2),
                  **measure(url, args.n, args.timeout, args.screenshot)}
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(runs, ignore_errors=True)
    result = {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
    result["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                         "browser": "Debian chromium, headless, --disable-gpu (WebGL on the CPU)",
                         "python": platform.python_version()}
    print(table(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0 if result.get("open_s") is not None and not result.get("exceptions") else 1


if __name__ == "__main__":
    sys.exit(main())
