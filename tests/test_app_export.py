"""Results out in the app (issue 14, item 4): the Runs page offers the picked run's metrics (CSV,
Parquet) and its latest snapshot for TensorBoard's Embedding Projector (zip); the Embeddings page
offers the snapshot on screen as a projector zip. Each file is made on the click, once per
version of the run, parses (TensorBoard's own parser for the projector), and none is offered in
presentation mode."""

from __future__ import annotations

import io
import shutil
import zipfile

import pandas as pd
import pytest
from streamlit.delta_generator import DeltaGenerator
from streamlit.testing.v1 import AppTest

from perco_viz import export
from perco_viz.runs import RunDir
from tests.conftest import ROOT

RUNS_PAGE = str(ROOT / "pages" / "9_Runs.py")
EMB_PAGE = str(ROOT / "pages" / "3_Embeddings.py")


@pytest.fixture
def offered(monkeypatch):
    """What the pages offer for download: key -> the data (a callable when made on click)."""
    got = {}
    original = DeltaGenerator.download_button

    def recording(self, label, data, *args, **kwargs):
        got[kwargs.get("key")] = data
        return original(self, label, data, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "download_button", recording)
    return got


@pytest.fixture
def shared(app_env, finished_run, tmp_path, monkeypatch) -> RunDir:
    """A runs folder of its own holding a copy of the finished digits run (a fresh cache key)."""
    root = tmp_path / "runs"
    shutil.copytree(finished_run.path, root / "shared-run")
    monkeypatch.setenv("PERCO_VIZ_RUNS", str(root))
    return RunDir(root / "shared-run")


def _projector_from_zip(data: bytes, tmp_path):
    from google.protobuf import text_format
    from tensorboard.plugins.projector import projector_config_pb2

    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        (top,) = {name.split("/")[0] for name in zf.namelist()}
        zf.extractall(tmp_path / "unzipped")
    folder = tmp_path / "unzipped" / top
    config = projector_config_pb2.ProjectorConfig()
    text_format.Parse((folder / "projector_config.pbtxt").read_text(), config)
    meta = pd.read_csv(folder / "metadata.tsv", sep="\t", keep_default_na=False, dtype=str)
    return top, config, meta


def test_runs_page_offers_metrics_and_the_projector_made_on_click(shared, offered, monkeypatch, tmp_path):
    calls = []
    real_zip, real_metrics = export.projector_zip, export.metrics_bytes
    monkeypatch.setattr(export, "projector_zip", lambda *a, **k: calls.append("zip") or real_zip(*a, **k))
    monkeypatch.setattr(export, "metrics_bytes", lambda *a, **k: calls.append("metrics") or real_metrics(*a, **k))
    at = AppTest.from_file(RUNS_PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    assert {"runs-dl-csv", "runs-dl-parquet", "runs-dl-projector"} <= set(offered)
    labels = {b.proto.label for b in at.get("download_button")}
    assert {"Metrics (CSV)", "Metrics (Parquet)", "TensorBoard projector (zip)"} <= labels
    assert calls == []  # nothing is made before a click
    records = shared.metrics()
    csv = pd.read_csv(io.BytesIO(offered["runs-dl-csv"]()))
    parquet = pd.read_parquet(io.BytesIO(offered["runs-dl-parquet"]()))
    for table in (csv, parquet):
        assert list(table.columns[:3]) == ["epoch", "step", "snapshot"] and len(table) == len(records)
        assert list(table["pc"]) == [r.get("pc") for r in records]
    data = offered["runs-dl-projector"]()
    assert offered["runs-dl-projector"]() == data and calls.count("zip") == 1  # made once per snapshot
    latest = shared.snapshot_indices()[-1]
    top, config, meta = _projector_from_zip(data, tmp_path)
    assert top == f"shared-run-projector-snapshot{latest}"
    assert [list(e.tensor_shape) for e in config.embeddings] == [
        list(shared.load_snapshot(latest).student.shape), list(shared.teacher_probe()["features"].shape)]
    assert list(meta["label"]) == [str(v) for v in shared.teacher_probe()["labels"]]  # digits' names "0".."9"
    assert meta["c_i"].astype(float).tolist() == shared.load_snapshot(latest).coherence.tolist()


def test_runs_page_has_no_downloads_when_presenting(shared, offered):
    at = AppTest.from_file(RUNS_PAGE, default_timeout=60)
    at.query_params["present"] = "1"
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="runs-pick").value  # the run is picked and shown...
    assert not {k for k in offered if str(k).startswith("runs-dl")}  # ...without downloads


def test_embeddings_page_offers_the_snapshot_on_screen(shared, offered, tmp_path):
    at = AppTest.from_file(EMB_PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    at.select_slider(key="emb-epoch").set_value(0).run()
    assert not at.exception, at.exception
    button = next(b for b in at.get("download_button") if b.proto.id and "emb-dl-projector" in b.proto.id)
    assert button.proto.label == "Projector"
    first = shared.snapshot_indices()[0]
    top, config, meta = _projector_from_zip(offered["emb-dl-projector"](), tmp_path)
    assert top == f"shared-run-projector-snapshot{first}"
    assert meta["c_i"].astype(float).tolist() == shared.load_snapshot(first).coherence.tolist()
    assert any("**Projector**" in c.value for c in at.caption)


def test_only_small_files_are_kept_for_the_next_click(monkeypatch):
    from ui import runs as runs_ui

    made = []
    monkeypatch.setattr(runs_ui, "DOWNLOAD_CACHE_MAX_BYTES", 4)
    monkeypatch.setattr(export, "metrics_bytes", lambda run, fmt: made.append(fmt) or {"csv": b"1234"}.get(fmt, b"12345"))
    for _ in range(2):
        assert runs_ui.metrics_download("/nowhere/small", ("sig",), "csv") == b"1234"
        assert runs_ui.metrics_download("/nowhere/large", ("sig",), "parquet") == b"12345"
    assert made == ["csv", "parquet", "parquet"]  # the small file made once; the large one on every click


def test_a_run_without_snapshots_offers_its_metrics_only(shared, offered):
    for index in shared.snapshot_indices():
        shared.snapshot_path(index).unlink()
    at = AppTest.from_file(RUNS_PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    assert "runs-dl-csv" in offered and "runs-dl-projector" not in offered
    assert any("needs a snapshot: this run has none yet" in c.value for c in at.caption)
