"""The app benchmark's page list (tools/bench_app.py) and the server warm-up it measures (ui/warmup.py);
the library benchmarks' columns (`perco-viz bench loss`, `bench analysis`).

Behaviour only: no timing is asserted here (docs/benchmarks.md has the numbers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))


def test_bench_measures_every_page_of_the_app():
    """`make bench-app` times every page of the sidebar, in its order, at the URL Streamlit gives it."""
    import bench_app

    from ui import common

    labels = [label for _, label, _, _ in common.PAGES]
    assert [spec[0] for spec in bench_app.PAGE_SPECS] == labels
    for (script, _, _, _), (_, path, _, count) in zip(common.PAGES, bench_app.PAGE_SPECS, strict=True):
        expected = "" if script == "app.py" else Path(script).stem.split("_", 1)[1]
        assert path == expected and count >= 1


def test_bench_reads_the_live_epoch_from_the_distill_pages_card():
    """The tool waits for the Distill page's epoch card to show the last snapshot: its label must be
    the page's (a renamed card made the demo wait run to its time-out)."""
    import bench_app

    from ui import distill

    assert bench_app.EPOCH_CARD == distill.EPOCH_CARD


def test_pages_table_lists_every_measured_page():
    import bench_app

    report = {"pages": {"Home": {"first_visit": {"s": 3.21}, "warm": {"s": None}},
                        "Diagnose": {"first_visit": {"s": 1.0, "report_s": 2.0}, "warm": {"s": 0.5, "report_s": 1.5}}}}
    table = bench_app.pages_table(report).splitlines()
    assert table[2] == "| Home | 3.2 | timeout |"
    assert table[3] == "| Diagnose | 1.0 | 0.5 |" and table[4].startswith("| Diagnose: the report")


def test_warm_up_first_uses_run():
    """The warm-up's first uses (numba kernels, torch's optimizer set-up, the Teaching view's first
    state and figure) still match the library: the warm-up swallows errors, so a drift would pass
    silently and the pages would pay again."""
    from ui import warmup

    warmup._first_uses()


def test_server_threads_limited_to_one():
    """In the server process the warm-up leaves one BLAS and one torch thread (a fresh process: the
    limit is process-wide)."""
    code = ("import numpy, scipy.linalg, torch\n"
            "from threadpoolctl import threadpool_info, threadpool_limits\n"
            "threadpool_limits(2, user_api='blas'); torch.set_num_threads(2)\n"
            "from ui import warmup\n"
            "print(warmup.limit_threads())\n"
            "print(max(i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'), torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "1 1"


# --------------------------------------------------------------------------- bench loss / analysis (issue 13)
def test_bench_loss_reports_the_floor_and_the_ratio():
    """`perco-viz bench loss` prints each n's time against the floor of any rank-based loss."""
    from perco_viz.bench import bench_loss, loss_table

    (row,) = bench_loss([24], repeats=1, reference_max=0)
    assert row["floor_ms"] > 0 and row["floor_ratio"] == row["fast_ms"] / row["floor_ms"]
    table = loss_table([row])
    assert "| floor (ms) | fast / floor |" in table and f"| {row['floor_ratio']:.1f}× |" in table


@pytest.mark.slow
def test_bench_analysis_measures_time_floor_ratio_and_peak_memory(capsys):
    """Each exact metric: its time, the floor, their ratio and its peak memory above the inputs,
    measured in a fresh process — at least the (n, n) float64 matrix normalized_ranks returns."""
    from perco_viz.bench import bench_exact_metrics

    n = 5000  # the (n, n) result (191 MiB) well above the process's fixed costs
    r = bench_exact_metrics(n, repeats=1)
    rows = {m["name"]: m for m in r["metrics"]}
    assert set(rows) == {"perception_coherence", "per_sample_coherence", "normalized_ranks (teacher)", "rank_agreement"}
    for m in rows.values():
        assert m["ratio"] == pytest.approx(m["seconds"] / r["floor_s"])
    result_mib = n * n * 8 / 2**20
    assert rows["normalized_ranks (teacher)"]["peak_mib"] >= 0.9 * result_mib
    assert rows["per_sample_coherence"]["peak_mib"] < result_mib  # c_i never holds an n × n matrix


def test_bench_analysis_command_prints_the_exact_metrics_table(capsys):
    from perco_viz.cli import main

    assert main(["bench", "analysis", "--n", "30", "--no-memory"]) == 0
    out = capsys.readouterr().out
    assert "| metric | seconds | floor (s) | time / floor | peak memory above the inputs (MiB) |" in out
    assert "| rank_agreement |" in out and "Rank agreement page" in out
