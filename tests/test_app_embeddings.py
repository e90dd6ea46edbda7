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


def _ids(v) -> np.ndarray:
    """The point ids of a trace's customdata: its first column (the others are the tooltip's numbers)."""
    a = _values(v)
    return (a[:, 0] if a.ndim == 2 else a).astype(np.int64)


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


def test_tooltips_are_numbers_and_one_template_not_a_string_per_point(app_env, finished_run):
    """The tooltip's test index and c_i travel as customdata columns shown by one hovertemplate
    (100,000 points: no 100,000 strings built and sent)."""
    at = _app()
    probe = finished_run.teacher_probe()
    coherence = finished_run.load_snapshot(finished_run.snapshot_indices()[-1]).coherence
    for spec in _specs(at):
        for t in spec["data"]:
            if t.get("name") in ("selected", "inspected input"):
                continue
            custom = _values(t["customdata"]).reshape(len(_values(t["x"])), -1)  # (m, 1 + fields)
            rows = custom[:, 0].astype(np.int64)
            assert "test #%{customdata[1]:d}" in t["hovertemplate"] and "c_i %{customdata[2]:.3f}" in t["hovertemplate"]
            np.testing.assert_array_equal(custom[:, 1], probe["indices"][rows])
            np.testing.assert_allclose(custom[:, 2], coherence[rows], rtol=1e-6)
            assert "text" not in t  # coloured by class: the class is the trace's name, no per-point text


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
        ids = [_ids(t["customdata"]) for t in spec["data"]]
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


def test_downloads_present_with_short_labels(app_env):
    """The download buttons read at 1024×768: short labels in one row ("Parq…" was cut), a caption
    says what each file is."""
    at = _app()
    labels = [b.proto.label for b in at.get("download_button") if b.proto.id and "emb-dl" in b.proto.id]
    assert {"CSV", "Parquet", "Weights", "Animation"} <= set(labels)
    assert all(len(label) <= 10 for label in labels), labels
    assert any("**Parquet**" in c.value for c in at.caption)


def test_presentation_mode_hides_downloads_and_tagging(app_env):
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["present"] = "1"
    at.run()
    assert not at.exception
    assert not at.get("download_button") and not at.main.expander
    assert not [b for b in at.button if b.key and b.key.startswith("emb-tag")]
    assert len(_specs(at)) == 2


def _page_with(**params) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def test_a_link_reopens_the_same_view(app_env, finished_run):
    """proj, dim, color, snap, row and q of a shared link become the widgets' values."""
    indices = finished_run.snapshot_indices()
    at = _page_with(proj="tsne", dim="3", color="coherence", snap=str(indices[1]), row="5", q="class=3")
    assert at.radio(key="emb-method").value == "tsne"
    assert at.radio(key="emb-dim").value == 3
    assert at.selectbox(key="emb-color").value == "coherence"
    assert at.select_slider(key="emb-epoch").value == 1
    assert at.number_input(key="emb-row").value == 5
    assert at.text_input(key="emb-search").value == "class=3"
    assert (at.query_params["snap"], at.query_params["row"], at.query_params["dim"]) == (str(indices[1]), "5", "3")


def test_a_link_with_values_that_do_not_fit_is_ignored(app_env):
    at = _page_with(proj="pcx", dim="7", color="nope", snap="99999", row="-3")
    assert at.radio(key="emb-method").value == "pca" and at.radio(key="emb-dim").value == 2
    assert at.selectbox(key="emb-color").value == "label" and at.number_input(key="emb-row").value is None
    assert not at.error


def test_the_url_follows_the_widgets(app_env, finished_run):
    indices = finished_run.snapshot_indices()
    at = _app()
    assert at.query_params["proj"] == "pca" and at.query_params["snap"] == str(indices[-1])
    assert "row" not in at.query_params
    at.radio(key="emb-dim").set_value(3).run()
    at.selectbox(key="emb-color").set_value("coherence").run()
    at.select_slider(key="emb-epoch").set_value(0).run()
    at.number_input(key="emb-row").set_value(7).run()
    assert not at.exception
    assert (at.query_params["dim"], at.query_params["color"]) == ("3", "coherence")
    assert (at.query_params["snap"], at.query_params["row"]) == (str(indices[0]), "7")


def _drawn(spec: dict) -> tuple[list[int], list[int]]:
    """(ids drawn in colour, ids drawn grey) of one figure spec."""
    coloured, grey = [], []
    for t in spec["data"]:
        if t.get("name") == "selected":
            continue
        ids = [int(i) for i in _ids(t.get("customdata", []))]
        (grey if t.get("name") == "not matching" else coloured).extend(ids)
    return sorted(coloured), sorted(grey)


def test_search_greys_or_hides_the_others_in_both_plots_and_tags(app_env, finished_run):
    labels = finished_run.teacher_probe()["labels"]
    threes = sorted(np.flatnonzero(labels == 3).tolist())
    at = _app()
    at.text_input(key="emb-search").input("class=3").run()
    assert not at.exception and at.query_params["q"] == "class=3"
    for spec in _specs(at):
        coloured, grey = _drawn(spec)
        assert coloured == threes and len(grey) == len(labels) - len(threes)
    at.toggle(key="emb-hide").set_value(True).run()
    for spec in _specs(at):
        assert _drawn(spec) == (threes, [])
    # tag what the search found, then find the tagged inputs again
    at.button(key="emb-tag-add").click().run()
    at.text_input(key="emb-search").input("tags=suspect").run()
    assert not at.exception
    assert all(_drawn(spec)[0] == threes for spec in _specs(at))
    at.text_input(key="emb-search").input("#12").run()
    assert _drawn(_specs(at)[0])[0] == [12]


def test_a_point_lists_its_neighbours_by_teacher_and_student(app_env, finished_run):
    from perco_viz.analysis import embeddings as ev

    at = _app()
    at.number_input(key="emb-row").set_value(5).run()
    assert not at.exception
    last = finished_run.load_snapshot(finished_run.snapshot_indices()[-1])
    metric, teacher_metric = finished_run.coherence_metrics()
    lists = ev.nearest_neighbours(finished_run.teacher_probe()["features"], last.student, 5, 8, metric=metric,
                                  teacher_metric=teacher_metric)
    both = int(lists["teacher"]["shared"].sum())
    assert any(f"{both} of its 8" in m.value for m in at.markdown)
    html = " ".join(str(h.proto) for h in at.get("html"))
    assert html.count("<img") >= 1 + 16  # the point and its two lists of 8 (digits are images)
    link = [m.value for m in at.markdown if "Rank agreement" in m.value] + \
        [str(p.proto) for p in at.get("page_link")]
    assert link and any("anchor=5" in v or '"anchor"' in v for v in link)
    for spec in _specs(at):  # the point is ringed in both plots, and nothing fades
        ring = [t for t in spec["data"] if t.get("name") == "inspected input"]
        assert ring and [int(i) for i in _ids(ring[0]["customdata"])] == [5]
        assert not any("selectedpoints" in t for t in spec["data"])


# The text of the main area that the browser cuts (an ellipsis, or text wider than its box), and
# each figure's legend that is not outside (below) its plot area.
_CUT_JS = """() => {
  const main = document.querySelector('[data-testid="stMain"]') || document.body;
  const cut = [];
  for (const el of main.querySelectorAll('*')) {
    if (el.closest('.js-plotly-plot') || el.closest('[data-testid="stDataFrame"]') || !el.textContent.trim()) continue;
    const style = getComputedStyle(el);
    if (style.overflowX === 'visible' && style.textOverflow !== 'ellipsis') continue;
    if (el.scrollWidth > el.clientWidth + 1) cut.push(el.textContent.trim().slice(0, 60));
  }
  const overlaps = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  const legends = [];
  for (const plot of main.querySelectorAll('.js-plotly-plot')) {
    const legend = plot.querySelector('.legend');
    if (!legend) continue;
    const box = legend.getBoundingClientRect();
    for (const other of plot.querySelectorAll('.nsewdrag, .gtitle, .gtitle-subtitle, .colorbar'))
      if (overlaps(box, other.getBoundingClientRect())) legends.push(legend.textContent.trim());
  }
  return {cut, legends};
}"""


@pytest.mark.browser
@pytest.mark.parametrize("present", ["0", "1"])
def test_nothing_is_cut_at_1024x768(server, finished_run, present):
    """In Chromium at 1024×768 (and in presentation mode): no cut label, metric or button (the
    "Parq…" button, "PC at this sn…"), and the legends lie outside the plots (under them)."""
    from bench_app import ARGS, CHROMIUM  # tools/ is on the path (the server fixture put it there)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1024, "height": 768})
        page.goto(f"{server}/Embeddings?run=shared/{finished_run.path.name}&row=5&color=coherence&present={present}")
        page.locator(".js-plotly-plot .legend").first.wait_for(timeout=120_000)
        page.get_by_text("nearest neighbours are the same").wait_for(timeout=60_000)
        page.wait_for_timeout(1500)
        found = page.evaluate(_CUT_JS)
        browser.close()
    assert found["cut"] == [], found["cut"]
    assert found["legends"] == [], found["legends"]


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
    assert not at.exception and not any("<img" in str(h.proto) for h in at.get("html"))
    assert sorted(at.dataframe[0].value["probe row"]) == [3, 4]
    at.text_input(key="emb-search").input("position>0.5").run()  # metadata are searchable
    assert not at.exception and "match" in " ".join(c.value for c in at.caption)
    at.number_input(key="emb-row").set_value(3).run()  # vectors: the neighbours as two tables
    assert not at.exception
    tables = [d.value for d in at.dataframe if "in both lists" in d.value.columns]
    assert len(tables) == 2 and all(len(t) == 8 for t in tables)
    assert list(tables[0]["rank"]) == list(range(1, 9))


def test_selected_rows_of_a_selection_event():
    """The page's shared selection: the probe rows in ``customdata[0]`` of the selected points."""
    from ui import embeddings

    event = {"selection": {"points": [{"customdata": [5]}, {"customdata": {"0": 3}}, {"customdata": 7}, {"x": 1}],
                           "box": [], "lasso": []}}
    assert embeddings.selected_rows(event) == [3, 5, 7]
    assert embeddings.selected_rows(None) == [] and embeddings.selected_rows({"selection": {"points": []}}) == []


def _click_script():
    import streamlit as st

    from ui import embeddings

    st.session_state.setdefault("emb-selection", {"rows": [], "seen": {}})
    st.session_state["emb-fig-teacher"] = st.session_state.get("event")
    st.write(embeddings.update_selection(), st.session_state.get("emb-row"))


def test_a_click_on_one_point_picks_it_for_the_neighbours():
    """A click (a selection of one point) in either plot makes it the inspected input; a box of
    several selects them and leaves the inspected input as it was."""
    at = AppTest.from_function(_click_script)
    at.session_state["event"] = {"selection": {"points": [{"customdata": [9]}]}}
    at.run()
    assert at.session_state["emb-row"] == 9 and at.session_state["emb-selection"]["rows"] == [9]
    at.session_state["event"] = {"selection": {"points": [{"customdata": [3]}, {"customdata": [4]}]}}
    at.run()
    assert at.session_state["emb-row"] == 9 and at.session_state["emb-selection"]["rows"] == [3, 4]
