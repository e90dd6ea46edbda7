"""The Embeddings page (AppTest) and its background projection worker."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "3_Embeddings.py")


def _app() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def _specs(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _values(v) -> np.ndarray:
    """A plotly JSON array: a list, or plotly's typed array ``{"dtype", "bdata"}``."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
        return a.reshape([int(d) for d in str(v["shape"]).split(",")]) if "shape" in v else a
    return np.asarray(v)


def _metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_page_widgets_and_figures(app_env, finished_run):
    at = _app()
    assert at.selectbox(key="emb-run") is not None
    assert at.radio(key="emb-method").options == ["PCA", "UMAP", "t-SNE"]
    assert at.radio(key="emb-dim").value == 2
    assert at.selectbox(key="emb-color").value == "label"
    slider = at.select_slider(key="emb-epoch")
    assert slider.value == finished_run.snapshot_indices().index(finished_run.snapshot_indices()[-1])
    assert at.toggle(key="emb-play") is not None
    specs = _specs(at)
    assert len(specs) == 2
    teacher, student = specs
    assert {t["type"] for t in teacher["data"]} == {"scatter"}  # SVG below figures.WEBGL_ABOVE points
    assert teacher["layout"]["xaxis"]["title"]["text"] == "PC 1"
    assert "Teacher" in teacher["layout"]["title"]["text"] and "Student" in student["layout"]["title"]["text"]
    n_probe = len(finished_run.teacher_probe()["indices"])
    assert sum(len(_values(t["x"])) for t in student["data"]) == n_probe
    assert not at.error


def test_numbers_equal_the_library(app_env, finished_run):
    from perco_viz.coherence import per_sample_coherence

    at = _app()
    last = finished_run.snapshot_indices()[-1]
    snap = finished_run.load_snapshot(last)
    teacher = finished_run.teacher_probe()["features"]
    metric = finished_run.config().loss.metric
    c = per_sample_coherence(snap.student, teacher, metric=metric,
                             teacher_metric=finished_run.config().loss.teacher_metric)
    assert _metric(at, "PC at this snapshot") == f"{c.mean():.3f}"
    assert _metric(at, "c_i, 10th percentile") == f"{np.quantile(c, 0.1):.3f}"
    assert _metric(at, "k-NN accuracy") == f"{snap.metrics['knn_acc']:.1%}"
    # an earlier snapshot: the numbers follow the slider
    at.select_slider(key="emb-epoch").set_value(0).run()
    first = finished_run.load_snapshot(finished_run.snapshot_indices()[0])
    assert _metric(at, "PC at this snapshot") == f"{first.coherence.mean():.3f}"
    assert "epoch 0" in _specs(at)[1]["layout"]["title"]["text"]


def test_3d_and_coherence_colour(app_env):
    at = _app()
    at.radio(key="emb-dim").set_value(3).run()
    assert not at.exception
    specs = _specs(at)
    assert specs and all(t["type"] == "scatter3d" for s in specs for t in s["data"])
    assert specs[0]["layout"]["scene"]["xaxis"]["title"]["text"] == "PC 1"
    at.selectbox(key="emb-color").set_value("coherence").run()
    assert not at.exception
    axis = _specs(at)[1]["layout"]["coloraxis"]
    assert axis["colorbar"]["title"]["text"] == "c_i" and (axis["cmin"], axis["cmax"]) == (0, 1)


def test_linked_selection_highlights_both(app_env):
    at = _app()
    at.session_state["emb-selection"] = {"rows": [0, 1, 2, 5], "seen": {}}
    at.run()
    assert not at.exception
    assert _metric(at, "Selected inputs") == "4"
    for spec in _specs(at):  # the same rows are highlighted in teacher and student
        ids = [_values(t["customdata"]).reshape(-1) for t in spec["data"]]
        faded = sorted(int(i[j]) for t, i in zip(spec["data"], ids) for j in _values(t.get("selectedpoints", [])))
        ringed = sorted(int(j) for t, i in zip(spec["data"], ids) if t.get("name") == "selected" for j in i)
        assert faded == ringed == [0, 1, 2, 5]
    assert at.get("html"), "thumbnails of the selected digits"
    at.button(key="emb-clear").click().run()
    assert _metric(at, "Selected inputs") == "0"


def test_play_advances_the_slider(app_env):
    at = _app()
    at.select_slider(key="emb-epoch").set_value(0).run()
    at.toggle(key="emb-play").set_value(True).run()
    assert not at.exception
    assert at.select_slider(key="emb-epoch").value == 1  # one step per (fragment) run


def test_downloads_present(app_env):
    at = _app()
    labels = [b.proto.label for b in at.get("download_button")]
    assert {"Embeddings CSV", "Embeddings Parquet", "Student weights", "HTML"} <= set(labels)


@pytest.mark.slow
def test_tsne_in_the_background(app_env):
    """t-SNE is computed off the script thread: a status first, the figure once ready."""
    at = _app()
    at.radio(key="emb-method").set_value("tsne").run()
    assert not at.exception
    title = lambda: _specs(at)[0]["layout"]["xaxis"]["title"]["text"]  # noqa: E731
    if title() != "t-SNE 1":  # not ready at once (the worker may be that fast): a status, PCA meanwhile
        assert at.get("progress") and title() == "PC 1"
    deadline = time.time() + 90
    while title() != "t-SNE 1" and time.time() < deadline:  # the polling fragment reruns the page
        time.sleep(1.0)
        at.run()
    assert title() == "t-SNE 1", "t-SNE did not finish"
    assert not at.get("progress") and not at.exception


def test_worker_process_runs_projections_with_progress(finished_run):
    """The worker's function, called here and in the worker process (progress relayed back)."""
    from perco_viz.analysis.embeddings import run_projections
    from ui import embeddings

    seen = []
    result = run_projections(str(finished_run.path), "pca", 2, (200, 100_000, 0),
                             progress=lambda d, t: seen.append((d, t)))
    k = len(finished_run.snapshot_indices())
    assert result.students.shape == (k, 200, 2) and seen[-1][0] == seen[-1][1]
    worker = embeddings.ProjectionWorker()
    job = worker.submit(("key",), run_projections, str(finished_run.path), "pca", 3, (200, 100_000, 0))
    assert worker.submit(("key",), run_projections) is job  # one job per key
    assert job.future.result(timeout=60).students.shape == (k, 200, 3)
    deadline = time.time() + 5
    while job.progress[0] != job.progress[1] and time.time() < deadline:  # the relay thread
        time.sleep(0.05)
    assert job.progress == (k + 1, k + 1)


def test_vector_data_with_metadata(tmp_path, monkeypatch):
    """A swiss roll (vectors, a continuous 'position' column) with a 2-d student: metadata colour,
    3-D from 2-d features, and a table (not thumbnails) for the selection."""
    from perco_viz.config import RunConfig
    from perco_viz.distill import distill

    cfg = RunConfig().override(**{"data.name": "swiss_roll", "data.n_samples": 300, "data.probe_size": 60,
                                  "teacher.kind": "identity", "student.dim": 2, "train.epochs": 1,
                                  "train.batch_size": 64, "train.device": "cpu"})
    assert distill(cfg, out=tmp_path, name="roll").status == "finished"
    monkeypatch.setenv("PERCO_VIZ_RUNS", str(tmp_path))
    monkeypatch.chdir(Path(PAGE).parent.parent)
    at = _app()
    assert "metadata: position" in at.selectbox(key="emb-color").options
    at.selectbox(key="emb-color").set_value("meta:position").run()
    assert not at.exception
    assert _specs(at)[0]["layout"]["coloraxis"]["colorbar"]["title"]["text"] == "position"
    at.radio(key="emb-dim").set_value(3).run()
    assert not at.exception and _specs(at)[1]["data"][0]["type"] == "scatter3d"
    at.session_state["emb-selection"] = {"rows": [3, 4], "seen": {}}
    at.run()
    assert not at.exception and not at.get("html")
    assert sorted(at.dataframe[0].value["probe row"]) == [3, 4]


def test_selected_rows_of_a_selection_event():
    """The page's shared selection: the probe rows in ``customdata[0]`` of the selected points."""
    from ui import embeddings

    event = {"selection": {"points": [{"customdata": [5]}, {"customdata": {"0": 3}}, {"customdata": 7}, {"x": 1}],
                           "box": [], "lasso": []}}
    assert embeddings.selected_rows(event) == [3, 5, 7]
    assert embeddings.selected_rows(None) == [] and embeddings.selected_rows({"selection": {"points": []}}) == []
