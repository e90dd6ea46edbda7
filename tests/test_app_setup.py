"""The Setup page (AppTest) and its form helpers (ui/setup_form.py, called directly)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from perco_viz.config import ConfigError, RunConfig
from perco_viz.safe_io import InputFileError
from ui import setup_form as form
from ui.setup_form import key as K

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "1_Setup.py")
TIMEOUT = 60


@pytest.fixture
def at(app_env) -> AppTest:
    """The Setup page, rendered once on a fresh session."""
    page = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not page.exception, page.exception
    return page


def _npz_bytes(X, **arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, X=X, **arrays)
    return buf.getvalue()


# --------------------------------------------------------------------------- the page
def test_renders_the_demo_with_every_section(at):
    assert at.title[0].value == "Setup"
    assert not at.error
    for name in ("data-name", "teacher-kind", "teacher-layer", "student-arch", "loss-name", "loss-kernel",
                 "loss-metric", "train-device"):
        assert at.selectbox(key=f"setup-{name}") is not None
    assert at.slider(key="setup-student-dim").value == 8
    assert at.selectbox(key="setup-data-name").value == "digits"
    assert at.selectbox(key="setup-teacher-kind").value == "builtin"
    assert at.selectbox(key="setup-train-device").options[:2] == ["auto", "cpu"]
    assert "1,797 points" in at.success[0].value and "10 classes" in at.success[0].value
    assert RunConfig.from_text(at.code[0].value) == RunConfig(name="demo")


def test_rkd_hides_the_coherence_options(at):
    assert at.select_slider(key="setup-loss-tau").value == 0.1
    at.selectbox(key="setup-loss-name").select("rkd").run()
    assert not at.exception
    keys = {w.key for w in (*at.select_slider, *at.selectbox, *at.number_input)}
    assert not keys & {"setup-loss-tau", "setup-loss-kernel", "setup-loss-anchors"}
    assert "setup-loss-metric" in keys  # PC is still measured with a metric
    assert "RKD" in " ".join(c.value for c in at.caption)
    at.selectbox(key="setup-loss-name").select("coherence").run()
    assert at.select_slider(key="setup-loss-tau").value == 0.1  # kept while hidden


def test_a_synthetic_dataset_selects_the_identity_teacher(at):
    at.selectbox(key="setup-data-name").select("swiss_roll").run()
    assert not at.exception and not at.error
    assert at.selectbox(key="setup-teacher-kind").value == "identity"
    assert "cnn" not in at.selectbox(key="setup-student-arch").options  # vectors: no CNN student
    assert "3 dims" in at.success[0].value
    at.selectbox(key="setup-data-name").select("digits").run()
    assert at.selectbox(key="setup-teacher-kind").value == "builtin"


def test_use_this_configuration_stores_the_widget_values(at):
    at.slider(key="setup-student-dim").set_value(16)
    at.select_slider(key="setup-loss-tau").set_value(0.05)
    at.selectbox(key="setup-loss-kernel").select("sigmoid")
    at.selectbox(key="setup-loss-metric").select("cosine")
    at.number_input(key="setup-train-epochs").set_value(5)
    at.selectbox(key="setup-train-device").select("cpu")
    at.text_input(key="setup-name").input("my-run")
    at.run()
    at.button(key="setup-use").click().run()
    assert not at.exception
    cfg = at.session_state["setup_config"]
    assert isinstance(cfg, RunConfig)
    assert (cfg.student.dim, cfg.loss.tau, cfg.loss.kernel, cfg.loss.metric) == (16, 0.05, "sigmoid", "cosine")
    assert (cfg.train.epochs, cfg.train.device, cfg.name) == (5, "cpu", "my-run")
    widgets = {w.key: w.value for w in (*at.selectbox, *at.slider, *at.select_slider, *at.number_input,
                                        *at.text_input, *at.checkbox) if w.key and w.key.startswith("setup-")}
    expected = form.widget_values(cfg)
    assert widgets and all(expected[k] == v for k, v in widgets.items() if k in expected)
    # the YAML shown is the stored config
    assert RunConfig.from_text(at.code[0].value) == cfg


def test_out_of_range_values_show_without_error(app_env):
    page = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    odd = {"data.name": "blobs", "data.n_samples": 150, "data.noise": 3.0, "data.test_fraction": 0.9,
           "data.probe_size": 1, "teacher.kind": "identity", "student.hidden": 20000, "loss.tau": 0.07,
           "loss.anchors": 5, "loss.ce_weight": 500.0, "loss.kd_temperature": 0.01, "train.epochs": 0,
           "train.lr": 5.0, "train.batch_size": 3, "train.device": "cuda:3", "train.snapshot_every": -1}
    stored = RunConfig(name="odd").override(**odd)
    page.session_state["setup_config"] = stored
    page.run()
    assert not page.exception
    assert any("cuda:3" in w.value for w in page.warning)  # not a device here: said, and Start is disabled
    assert page.button(key="setup-start").disabled
    assert RunConfig.from_text(page.code[0].value) == stored


def test_a_stored_config_prefills_the_widgets(app_env):
    page = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    stored = RunConfig(name="stored").override(**{"data.name": "circles", "data.n_samples": 300,
                                                  "teacher.kind": "identity", "loss.name": "sp",
                                                  "student.dim": 100, "train.batch_size": 100})
    page.session_state["setup_config"] = stored
    page.run()
    assert not page.exception and not page.error
    assert page.selectbox(key="setup-data-name").value == "circles"
    assert page.select_slider(key="setup-data-n_samples").value == 300
    assert page.slider(key="setup-student-dim").value == 100  # the slider widens to hold it
    assert page.select_slider(key="setup-train-batch_size").value == 100
    assert RunConfig.from_text(page.code[0].value) == stored


def test_uploads_through_the_page(at, app_env):
    # an invalid config: an error, the form unchanged
    at.file_uploader(key="setup-config-upload").set_value(("bad.yaml", b"data: {nme: digits}\n", "text/yaml"))
    at.run()
    assert any("not a usable configuration" in e.value and "nme" in e.value for e in at.error)
    assert at.selectbox(key="setup-data-name").value == "digits"
    # a valid one fills the form
    good = RunConfig(name="up").override(**{"loss.name": "pkt", "train.epochs": 3}).to_yaml().encode()
    at.file_uploader(key="setup-config-upload").set_value(("good.yaml", good, "text/yaml"))
    at.run()
    assert at.selectbox(key="setup-loss-name").value == "pkt"
    assert at.number_input(key="setup-train-epochs").value == 3
    # a data file: written to this session's own folder, summary shown, unlabeled -> identity teacher
    at.selectbox(key="setup-data-name").select("npz").run()
    assert any("Upload a file" in i.value for i in at.info)
    X = np.random.default_rng(0).normal(size=(60, 4))
    at.file_uploader(key="setup-data-upload-npz").set_value(("my points.npz", _npz_bytes(X), "application/octet-stream"))
    at.run()
    assert not at.exception and not at.error
    path = at.text_input(key=K("data", "path")).value
    assert path.startswith(str(app_env / "app-sessions" / at.session_state["sid"] / "uploads"))
    assert path.endswith("my_points.npz")
    assert "60 points" in at.success[0].value
    assert at.selectbox(key="setup-teacher-kind").value == "identity"
    # a CSV with a NaN: the message says which row, and the path is left as it was
    at.selectbox(key="setup-data-name").select("csv").run()
    bad = b"a,b,label\n1,2,x\nnan,3,y\n4,5,x\n"
    at.file_uploader(key="setup-data-upload-csv").set_value(("bad.csv", bad, "text/csv")).run()
    assert any("NaN" in e.value and "bad.csv" in e.value for e in at.error)
    assert at.text_input(key=K("data", "path")).value == ""


def test_a_teacher_weights_upload_lists_its_layers(at, tmp_path):
    from perco_viz.models import TeacherCNN, save_model_safetensors

    weights = save_model_safetensors(TeacherCNN((1, 8, 8), 10), tmp_path / "teacher.safetensors").read_bytes()
    at.selectbox(key="setup-teacher-kind").select("safetensors").run()
    assert any("Upload the teacher" in i.value for i in at.info)
    at.file_uploader(key="setup-teacher-upload-safetensors").set_value(("t.safetensors", weights, "application/octet-stream"))
    at.run()
    assert not at.exception and not at.error
    assert at.text_input(key=K("teacher", "path")).value.endswith("t.safetensors")
    assert {"embed", "head", "features"} <= set(at.selectbox(key="setup-teacher-layer").options)
    assert "128-d" in " ".join(c.value for c in at.caption)
    at.file_uploader(key="setup-teacher-upload-safetensors").set_value(("t.safetensors", b"junk", "x/y")).run()
    assert not at.exception and any("could not be loaded" in e.value for e in at.error)


# --------------------------------------------------------------------------- the helpers
def test_config_and_widget_values_round_trip():
    cfg = RunConfig(name=None).override(**{"loss.anchors": 64, "teacher.layer": "embed", "data.path": "x.csv"})
    values = form.widget_values(cfg)
    assert values[K("", "name")] == "" and values[K("loss", "teacher_metric")] == ""
    assert form.config_from_values(values) == cfg
    assert form.config_from_values({**values, K("loss", "anchors"): 0}).loss.anchors is None
    assert form.config_from_values({**values, K("data", "path"): "  "}).data.path is None


def test_upload_helpers_validate_and_sanitize(tmp_path):
    X = np.arange(12, dtype=float).reshape(6, 2)
    assert form.check_array_upload(_npz_bytes(X, y=np.array([0, 1] * 3)), "a.npz") == (6, 2, 2)
    assert form.check_array_upload(_npz_bytes(X), "a.npz") == (6, 2, None)
    with pytest.raises(InputFileError, match="NaN"):
        form.check_array_upload(b"a,b\n1,2\nnan,3\n4,5\n", "bad.csv")
    with pytest.raises(InputFileError, match="unknown array format"):
        form.check_array_upload(b"123", "a.txt")
    path = form.save_upload(b"abc", "../../etc/pass wd.npz", tmp_path)
    assert path.parent.parent == tmp_path and path.name == "pass_wd.npz" and path.read_bytes() == b"abc"
    assert form.sanitize_filename(".hidden") == "hidden" and form.sanitize_filename("") == "upload"


def test_upload_size_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("PERCO_VIZ_MAX_FILE_MB", "0.000001")
    with pytest.raises(InputFileError, match="limit"):
        form.save_upload(b"x" * 100, "big.npz", tmp_path)
    assert not any(tmp_path.iterdir())


def test_parse_config_upload():
    assert form.parse_config_upload(b'{"loss": {"tau": 0.2}}').loss.tau == 0.2
    with pytest.raises(ConfigError, match="unknown config section"):
        form.parse_config_upload(b"optimizer: {lr: 1}\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        form.parse_config_upload(b"\xff\xfe\x00")
    with pytest.raises(ConfigError):
        form.parse_config_upload(b"data: [unclosed\n")
    with pytest.raises(ConfigError, match="loss.name is 'nope'; choose one of coherence"):
        form.parse_config_upload(b"loss: {name: nope}\n")


def test_every_registered_name_has_a_way_in():
    from perco_viz.data import DATASET_NAMES
    from perco_viz.models import TEACHER_KINDS

    assert {form.dataset_kind(n) for n in DATASET_NAMES} <= {"builtin", "synthetic", "file", "folder", "root"}
    assert all(form.dataset_label(n).startswith(n) for n in DATASET_NAMES)
    assert all(form.teacher_label(k).startswith(k) for k in TEACHER_KINDS)
    assert form.suggested_teacher("blobs") == "identity" and form.suggested_teacher("digits") == "builtin"


def test_start_training_hands_the_config_to_the_engine(at, monkeypatch):
    from ui import common

    started = []
    monkeypatch.setattr(common, "start_run", lambda cfg, **_: started.append(cfg) or False)
    at.selectbox(key="setup-teacher-layer").select("features").run()
    assert "1,024-d" in " ".join(c.value for c in at.caption)  # the width of the chosen layer
    at.button(key="setup-start").click().run()
    assert not at.exception
    assert len(started) == 1 and started[0].teacher.layer == "features"
    assert at.session_state["setup_config"] == started[0]
