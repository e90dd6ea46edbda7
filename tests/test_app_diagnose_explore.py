"""AppTest of the Diagnose page's exploration: metadata, search and tags, the worst inputs'
thumbnails and link to Rank agreement, the real upload limit, the shared panel cache, the lazy report."""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from perco_viz.analysis import diagnose
from perco_viz.figures import diagnose as diagnose_figures

ROOT = Path(__file__).resolve().parent.parent
DIAGNOSE = str(ROOT / "pages" / "6_Diagnose.py")


def _app(path: str = DIAGNOSE) -> AppTest:
    return AppTest.from_file(path, default_timeout=60)


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _upload(at: AppTest, key: str, name: str, data: bytes, mime: str = "application/octet-stream") -> None:
    at.file_uploader(key=key).set_value((name, data, mime))


@pytest.fixture
def files(rng):
    """(teacher .npz, student .npz) bytes of 120 labelled inputs."""
    y = np.arange(120) % 3
    x = rng.normal(size=(120, 5)) + 3.0 * np.eye(5)[y]
    return _npz(X=x, y=y), _npz(X=x[:, :2] + rng.normal(size=(120, 2)))


def _with_files(files) -> AppTest:
    at = _app().run()
    _upload(at, "diag-teacher-file", "teacher.npz", files[0])
    _upload(at, "diag-student-file", "student.npz", files[1])
    return at.run()


def _points_table(at: AppTest) -> pd.DataFrame:
    """The table of every input (the one with a tags column; the worst inputs' table has none)."""
    return next(df.value for df in at.dataframe if "tags" in df.value.columns)


def test_upload_widgets_say_the_real_limit(app_env, monkeypatch):
    monkeypatch.setenv("PERCO_VIZ_MAX_FILE_MB", "50")  # below the server's: the files are refused above it
    at = _app().run()
    assert not at.exception
    limits = {u.key: u.proto.max_upload_size_mb for u in at.file_uploader}
    assert limits["diag-teacher-file"] == limits["diag-student-file"] == limits["diag-labels-file"] == 50
    monkeypatch.setenv("PERCO_VIZ_MAX_FILE_MB", "100000")  # above the server's: the server's is the real one
    at = _app().run()
    assert at.file_uploader(key="diag-teacher-file").proto.max_upload_size_mb == st.get_option("server.maxUploadSize")


def test_the_panel_is_computed_once_for_all_sessions(app_env, files, monkeypatch):
    calls, real = [], diagnose.compute_panel
    monkeypatch.setattr(diagnose, "compute_panel", lambda *a, **k: calls.append(1) or real(*a, **k))
    st.cache_data.clear()
    first = _with_files(files)
    second = _with_files(files)  # another session, the same files
    assert not first.exception and not second.exception and first.metric
    assert [m.value for m in first.metric] == [m.value for m in second.metric]
    assert len(calls) == 1


def test_the_report_is_made_only_when_downloaded(app_env, files, monkeypatch):
    calls = []
    monkeypatch.setattr(diagnose_figures, "html_report", lambda *a, **k: calls.append(1) or "<html></html>")
    at = _with_files(files)
    assert not at.exception and any("report" in b.proto.label for b in at.get("download_button"))
    assert calls == []  # not built (nor sent to the browser) on every rerun


def test_metadata_colours_and_filters_the_points(app_env, files):
    at = _with_files(files)
    sites = np.where(np.arange(120) < 30, "paris", "oslo")
    meta = pd.DataFrame({"row": np.arange(120)[::-1], "site": sites[::-1], "age": np.linspace(0, 50, 120)[::-1]})
    _upload(at, "diag-meta-file", "meta.csv", meta.to_csv(index=False).encode(), "text/csv")
    at.run()
    assert not at.exception and not at.error
    assert any("matched by its 'row' column: 120 of 120 rows" in c.value for c in at.caption)
    options = at.selectbox(key="diag-color").options
    assert "metadata: site" in options and "metadata: age" in options
    at.selectbox(key="diag-color").set_value("meta:site").run()
    emb = at.get("plotly_chart")[0]
    assert '"name":"paris"' in emb.proto.spec.replace(" ", "") and "site" in emb.proto.spec
    at.text_input(key="diag-search").input("site:paris").run()
    assert not at.exception
    shown = _points_table(at)
    assert len(shown) == 30 and set(shown["site"]) == {"paris"} and sorted(shown["row"]) == list(range(30))
    assert shown["c_i"].is_monotonic_increasing  # sorted by c_i, lowest first
    assert any("30 of 120 points match" in c.value for c in at.caption)


def test_metadata_that_does_not_fit_says_what_to_change(app_env, files):
    at = _with_files(files)
    _upload(at, "diag-meta-file", "meta.csv", b"site\n" + b"paris\n" * 100, "text/csv")
    at.run()
    assert not at.exception
    assert any("100 lines but the features have 120 rows" in e.value for e in at.error)
    assert at.metric  # the diagnosis goes on without it


def test_tag_the_matches_and_export_them(app_env, files):
    at = _with_files(files)
    at.text_input(key="diag-search").input("c_i<0.8").run()
    matched = _points_table(at)
    assert 0 < len(matched) < 120
    at.button(key="diag-tags-add").click().run()
    assert not at.exception
    at.text_input(key="diag-search").input("tags=suspect").run()
    tagged = _points_table(at)
    assert sorted(tagged["row"]) == sorted(matched["row"]) and set(tagged["tags"]) == {"suspect"}
    export = next(b for b in at.get("download_button") if "Tagged list" in b.proto.label)
    assert f"({len(matched)})" in export.proto.label and not export.proto.disabled


def test_presentation_mode_hides_downloads_and_tagging(app_env, files):
    at = _app()
    at.query_params["present"] = "1"
    at.run()
    _upload(at, "diag-teacher-file", "teacher.npz", files[0])
    _upload(at, "diag-student-file", "student.npz", files[1])
    at.run()
    assert not at.exception and at.metric and len(at.get("plotly_chart")) == 4
    assert not at.get("download_button")
    assert not [b for b in at.button if b.key and b.key.startswith("diag-tags")]


def test_a_run_shows_thumbnails_of_its_worst_inputs_and_links_them_to_rank_agreement(app_env, finished_run):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("pages/6_Diagnose.py").run()
    at.radio(key="diag-source").set_value("run").run()
    at.number_input(key="diag-max-points").set_value(50).run()  # a subsample: positions are not rows
    assert not at.exception and not at.error
    panel = diagnose.compute_panel(diagnose.pair_from_run(finished_run), max_points=50)
    assert panel.subsampled
    worst = int(panel.indices[np.argmin(panel.coherence)])
    assert worst != int(np.argmin(panel.coherence))  # the test can tell a row from a position
    html = " ".join(h.proto.body for h in at.get("html"))
    assert f"#{worst} ·" in html and "<img" in html  # digits are images: the worst inputs' thumbnails
    link = next(p for p in at.get("page_link") if "Rank agreement" in p.proto.label and "anchor" in p.proto.label)
    assert link.proto.page.endswith("4_Rank_agreement.py") or "Rank" in link.proto.page
    query = parse_qs(link.proto.query_string)
    assert query["anchor"] == [str(worst)] and query["run"] == [f"shared/{finished_run.name}"]
    assert query["snap"] == [str(finished_run.snapshot_indices()[-1])]


def test_embedding_files_get_no_thumbnails_nor_link(app_env, files):
    at = _with_files(files)
    assert not at.exception and at.metric
    assert not [h for h in at.get("html") if "<img" in h.proto.body]
    assert not [p for p in at.get("page_link") if "anchor" in p.proto.label]


def test_a_student_on_an_image_dataset_shows_thumbnails_of_its_worst_inputs(app_env, finished_run):
    at = _app().run()
    at.radio(key="diag-source").set_value("models").run()
    _upload(at, "diag-student-model", "student.safetensors", finished_run.student_path.read_bytes())
    at.run()
    at.button(key="diag-models-go").click().run()
    assert not at.exception and not at.error and at.metric
    strips = [h.proto.body for h in at.get("html") if "<img" in h.proto.body]
    assert len(strips) == 1 and strips[0].count("<img") == 10  # the 10 worst inputs of the digits test split
    assert not [p for p in at.get("page_link") if "anchor" in p.proto.label]  # no run: no Rank agreement link
