"""The Setup page (AppTest) and its helpers (ui/setup.py, called directly)."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from perco_viz.config import ConfigError, RunConfig
from perco_viz.safe_io import InputFileError
from perco_viz.sessions import check_array_upload
from ui import setup as form
from ui.setup import key as K

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


def test_values_outside_the_widget_ranges_show_without_error(app_env):
    page = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    odd = {"data.name": "blobs", "data.n_samples": 150, "data.noise": 3.0, "data.test_fraction": 0.9,
           "data.probe_size": 3, "teacher.kind": "identity", "student.hidden": 8192, "loss.tau": 0.07,
           "loss.anchors": 5, "loss.ce_weight": 500.0, "loss.kd_temperature": 0.01, "train.epochs": 1,
           "train.lr": 5.0, "train.batch_size": 3, "train.device": "cuda:3", "train.snapshot_every": 10**9}
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
    X = np.random.default_rng(0).normal(size=(400, 4))
    at.file_uploader(key="setup-data-upload-npz").set_value(("my points.npz", _npz_bytes(X), "application/octet-stream"))
    at.run()
    assert not at.exception and not at.error
    path = at.session_state[K("data", "path")]  # no path field: filled by the upload
    assert path.startswith(str(app_env / "app-sessions" / at.session_state["sid"] / "uploads"))
    assert path.endswith("my_points.npz")
    assert "400 points" in at.success[0].value
    assert at.selectbox(key="setup-teacher-kind").value == "identity"
    # a CSV with a NaN: the message says which row, and the path is left as it was
    at.selectbox(key="setup-data-name").select("csv").run()
    bad = b"a,b,label\n1,2,x\nnan,3,y\n4,5,x\n"
    at.file_uploader(key="setup-data-upload-csv").set_value(("bad.csv", bad, "text/csv")).run()
    assert any("NaN" in e.value and "bad.csv" in e.value for e in at.error)
    assert at.session_state[K("data", "path")] == ""


def test_a_teacher_weights_upload_lists_its_layers(at, tmp_path):
    from perco_viz.models import TeacherCNN, save_model_safetensors

    weights = save_model_safetensors(TeacherCNN((1, 8, 8), 10), tmp_path / "teacher.safetensors").read_bytes()
    at.selectbox(key="setup-teacher-kind").select("safetensors").run()
    assert any("Upload the teacher" in i.value for i in at.info)
    at.file_uploader(key="setup-teacher-upload-safetensors").set_value(("t.safetensors", weights, "application/octet-stream"))
    at.run()
    assert not at.exception and not at.error
    assert at.session_state[K("teacher", "path")].endswith("t.safetensors")
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


def test_upload_check_validates(tmp_path):
    X = np.arange(12, dtype=float).reshape(6, 2)
    assert check_array_upload(_npz_bytes(X, y=np.array([0, 1] * 3)), "a.npz") == (6, 2, 2)
    assert check_array_upload(_npz_bytes(X), "a.npz") == (6, 2, None)
    with pytest.raises(InputFileError, match="NaN"):
        check_array_upload(b"a,b\n1,2\nnan,3\n4,5\n", "bad.csv")
    with pytest.raises(InputFileError, match="unknown array format"):
        check_array_upload(b"123", "a.txt")


def test_parse_config_upload():
    assert form.parse_config_upload(b'{"loss": {"tau": 0.2}}').loss.tau == 0.2
    with pytest.raises(ConfigError, match="unknown config section"):
        form.parse_config_upload(b"optimizer: {lr: 1}\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        form.parse_config_upload(b"\xff\xfe\x00")
    with pytest.raises(ConfigError):
        form.parse_config_upload(b"data: [unclosed\n")
    with pytest.raises(ConfigError, match="loss.name must be one of coherence, .*got 'nope'"):
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


# --------------------------------------------------------------------------- a shared server
def _keys(elements) -> set[str]:
    return {e.key for e in elements}


def _texts(at: AppTest) -> str:
    return " ".join(str(e.value) for kind in ("error", "warning", "info", "caption", "success", "markdown")
                    for e in getattr(at, kind))


def test_off_by_default_no_server_paths_and_no_torchscript(at, monkeypatch):
    monkeypatch.delenv("PERCO_VIZ_TRUST_TORCHSCRIPT", raising=False)
    at.selectbox(key="setup-data-name").select("csv").run()
    assert not at.exception
    assert K("data", "path") not in _keys(at.text_input)  # uploads only
    assert "PERCO_VIZ_DATA_ROOTS" in _texts(at)
    assert not [o for o in at.selectbox(key="setup-teacher-kind").options if o.startswith("torchscript")]
    at.selectbox(key="setup-data-name").select("image_folder").run()
    assert K("data", "path") not in _keys(at.text_input) and "choose another dataset" in _texts(at)
    at.selectbox(key="setup-data-name").select("digits").run()
    at.selectbox(key="setup-teacher-kind").select("safetensors").run()
    assert K("teacher", "path") not in _keys(at.text_input)
    at.selectbox(key="setup-student-arch").select("file").run()
    assert not at.exception and K("student", "path") not in _keys(at.text_input)
    assert "TorchScript files are not accepted on this server" in _texts(at)
    assert not [w for w in at.warning if "runs the code" in w.value]
    # a config that chose a TorchScript teacher (an upload, another page): said why, and it cannot start
    at.session_state["setup_config"] = RunConfig(name="ts").override(**{"teacher.kind": "torchscript"})
    at.run()
    assert not at.exception and at.selectbox(key="setup-teacher-kind").value == "torchscript"
    assert any("TorchScript files are not accepted" in e.value for e in at.error)
    assert at.button(key="setup-start").disabled


def test_trusted_torchscript_is_offered_with_a_warning(app_env, monkeypatch):
    monkeypatch.setenv("PERCO_VIZ_TRUST_TORCHSCRIPT", "1")
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert [o for o in at.selectbox(key="setup-teacher-kind").options if o.startswith("torchscript")]
    at.selectbox(key="setup-teacher-kind").select("torchscript").run()
    assert not at.exception
    assert any("runs the code inside it on this server" in w.value for w in at.warning)
    at.selectbox(key="setup-student-arch").select("file").run()
    assert len([w for w in at.warning if "runs the code" in w.value]) == 2


def test_server_paths_on_are_kept_inside_the_data_roots(app_env, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "points.csv").write_text("a,b,label\n" + "\n".join(f"{i},{i % 7},{i % 3}" for i in range(400)))
    (tmp_path / "secret.csv").write_text("TOPSECRETHEADER,b\n1,2\n")
    (data / "escape.csv").symlink_to(tmp_path / "secret.csv")
    other = app_env / "app-sessions" / ("f" * 32) / "uploads" / "0123"
    other.mkdir(parents=True, exist_ok=True)
    (other / "theirs.csv").write_text("THEIRHEADER,b\n1,2\n3,4\n")
    # the runs root (which holds every session's folder) is itself a data root: still no way in
    monkeypatch.setenv("PERCO_VIZ_DATA_ROOTS", f"{data}{os.pathsep}{app_env}")
    try:
        at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
        at.selectbox(key="setup-data-name").select("csv").run()
        field = at.text_input(key=K("data", "path"))
        for path, why in ((tmp_path / "secret.csv", "outside the data folders"),
                          (data / "escape.csv", "outside the data folders"),
                          (other / "theirs.csv", "another session"),
                          (f"{data}/../secret.csv", "outside the data folders")):
            field.set_value(str(path)).run()
            assert not at.exception
            assert any(why in e.value for e in at.error), (path, [e.value for e in at.error])
            assert "TOPSECRETHEADER" not in _texts(at) and "THEIRHEADER" not in _texts(at)
            assert at.button(key="setup-start").disabled
        field.set_value(str(data / "points.csv")).run()
        assert not at.error, [e.value for e in at.error]
        assert "400 points" in at.success[0].value
    finally:
        shutil.rmtree(app_env / "app-sessions" / ("f" * 32), ignore_errors=True)


def test_a_config_naming_another_sessions_file_is_refused_at_start(app_env):
    """The check runs again when a training starts (a config may come from an upload or a run)."""
    theirs = app_env / "app-sessions" / ("e" * 32) / "uploads" / "0123" / "theirs.npz"
    at = AppTest.from_file(str(Path(PAGE).parent / "2_Distill.py"), default_timeout=TIMEOUT)
    at.session_state["setup_config"] = RunConfig(name="sneaky").override(
        **{"data.name": "npz", "data.path": str(theirs)})
    at.run()
    at.button(key="distill-start").click().run()
    assert not at.exception
    assert any("not started" in e.value and "another session" in e.value for e in at.error)
    mine = app_env / "app-sessions" / at.session_state["sid"]
    assert not mine.exists() or not [p for p in mine.iterdir() if p.name != "uploads"]


def test_an_upload_past_the_session_quota_is_refused_and_uploads_can_be_deleted(at, app_env, monkeypatch):
    monkeypatch.setenv("PERCO_VIZ_SESSION_QUOTA_MB", "0.004")  # 4 KiB
    at.selectbox(key="setup-data-name").select("npz").run()
    rng = np.random.default_rng(0)
    at.file_uploader(key="setup-data-upload-npz").set_value(
        ("small.npz", _npz_bytes(rng.normal(size=(20, 4))), "application/octet-stream")).run()
    assert not [e.value for e in at.error if "batch_size" not in e.value]  # 15 training points: a batch error only
    assert "20 points" in at.success[0].value
    at.file_uploader(key="setup-data-upload-npz").set_value(
        ("big.npz", _npz_bytes(rng.normal(size=(200, 4))), "application/octet-stream")).run()
    assert not at.exception
    refused = [e.value for e in at.error if "does not fit" in e.value]
    assert refused and "0.9 KB of its 4.1 KB are used" in refused[0] and "Delete my uploads" in refused[0]
    uploads = app_env / "app-sessions" / at.session_state["sid"] / "uploads"
    assert [p.name for p in uploads.rglob("*.npz")] == ["small.npz"]
    at.button(key="setup-delete-uploads").click().run()
    assert not at.exception and not uploads.exists()
    assert "Deleted your uploads" in _texts(at)
    assert "Upload a file to continue" in _texts(at)  # the form no longer points at the deleted file


# --------------------------------------------------------------------------- config uploads are data, validated
def _upload_config(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader(key="setup-config-upload").set_value((name, data, "text/yaml"))
    return at.run()


BAD_CONFIGS = [
    ("number.yaml", b"name: 123\n", "name must be a string (text), got 123"),
    ("list.yaml", b"name: [1, 2]\n", "name must be a string (text), got [1, 2]"),
    ("bomb.yaml", b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                  b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n", "anchor"),
    ("tag.yaml", b"name: !!python/object/apply:os.system ['true']\n", "explicit YAML tag"),
    ("range.json", b'{"train": {"batch_size": 0, "epochs": 3}}', "train.batch_size must be between 3 and 65,536"),
    ("nan.yaml", b"loss: {ce_weight: .nan}\n", "loss.ce_weight must be a finite number"),
    ("bool.yaml", b"train: {amp: maybe}\n", "train.amp must be true or false"),
]


@pytest.mark.parametrize(("name", "data", "message"), BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_a_bad_config_upload_is_one_error_and_the_page_keeps_working(at, name, data, message):
    _upload_config(at, name, data)
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith(f"{name} is not a usable configuration: ") and message in errors[0]
    assert at.selectbox(key="setup-data-name").value == "digits" and at.text_input(key=K("", "name")).value == "demo"
    at.run()  # later reruns: no traceback, the form and the reset button are still there
    assert not at.exception and at.button(key="setup-reset") is not None
    assert RunConfig.from_text(at.code[0].value) == RunConfig(name="demo")
    good = RunConfig(name="after").override(**{"train.epochs": 4}).to_yaml().encode()
    _upload_config(at, "good.yaml", good)
    assert not at.exception and not at.error and at.number_input(key="setup-train-epochs").value == 4


def test_the_reset_button_is_drawn_even_when_the_form_cannot_be_read(at):
    at.session_state[form.APPLIED] = {"student": {"dim": "wide"}, "loss": {"tau": [1]}}  # a broken form state
    at.run()
    assert at.exception  # the form cannot be drawn...
    assert at.button(key="setup-reset") is not None  # ...but the way out is, drawn before anything that could fail
    at.button(key="setup-reset").click().run()
    assert not at.exception and not at.error
    assert at.number_input(key="setup-train-epochs").value == RunConfig().train.epochs
    assert RunConfig.from_text(at.code[0].value) == RunConfig(name="demo")


def test_a_config_with_every_field_at_its_edge_fills_the_form(at):
    edges = {"data.n_samples": 1_000_000, "data.noise": 50.0, "data.test_fraction": 0.95,
             "data.probe_size": 100_000, "student.dim": 4096, "student.hidden": 16,
             "loss.tau": 1e-6, "loss.anchors": 1, "loss.kd_temperature": 1e-3, "train.epochs": 1_000_000,
             "train.batch_size": 65_536, "train.lr": 1e-9, "train.weight_decay": 100.0, "train.seed": 2**32 - 1,
             "train.snapshot_every": 10**9, "data.seed": 2**32 - 1}
    cfg = RunConfig(name="edges").override(**edges)
    data = cfg.to_json().encode()
    _upload_config(at, "edges.json", data)
    assert not at.exception
    assert not [e.value for e in at.error if "configuration" in e.value]
    assert at.number_input(key="setup-train-epochs").value == 1_000_000
    assert at.slider(key="setup-student-dim").value == 4096


# --------------------------------------------------------------------------- one source: the config's help and options
def test_every_field_widget_shows_the_configs_help_the_same_as_the_cli(at):
    from perco_viz.cli import build_parser, flag_names
    from perco_viz.config import config_fields, field_help

    distill = next(a for a in build_parser()._actions if a.dest == "command").choices["distill"]
    by_flag = {opt: action.help for action in distill._actions for opt in action.option_strings}
    widgets = {w.key: w for kind in ("selectbox", "slider", "select_slider", "number_input", "text_input", "checkbox")
               for w in getattr(at, kind) if w.key}
    at.selectbox(key="setup-data-name").select("mnist").run()  # the fields of a dataset folder
    widgets |= {w.key: w for kind in ("select_slider", "checkbox") for w in getattr(at, kind) if w.key}
    shown = 0
    for info in config_fields():
        widget = widgets.get(K(info.section, info.name))
        if widget is None or widget.disabled:
            continue
        text = field_help(info.section, info.name)
        assert widget.help == text, info.dotted
        assert by_flag[flag_names(info.dotted)[0]].startswith(text.replace("%", "%%")), info.dotted
        shown += 1
    assert shown >= 25


def test_the_options_of_a_baseline_are_edited_and_stored(at):
    at.selectbox(key="setup-loss-name").select("cc").run()
    gamma = at.number_input(key=form.option_key("cc", "gamma"))
    assert gamma.value == 0.4 and gamma.help.startswith("gamma of cc (default 0.4)")
    gamma.set_value(0.25).run()
    at.button(key="setup-use").click().run()
    assert not at.exception
    assert at.session_state["setup_config"].loss.options == {"gamma": 0.25}
    assert RunConfig.from_text(at.code[0].value).loss.options == {"gamma": 0.25}
    at.selectbox(key="setup-loss-name").select("rkd").run()  # another loss: its own options, at their defaults
    assert at.number_input(key=form.option_key("rkd", "angle_weight")).value == 50.0
    assert RunConfig.from_text(at.code[0].value).loss.options == {}
    at.selectbox(key="setup-loss-name").select("cc").run()  # cc's value is kept while another loss is shown
    assert RunConfig.from_text(at.code[0].value).loss.options == {"gamma": 0.25}
    uploaded = RunConfig(name="up").override(**{"loss.name": "rkd", "loss.options.angle_weight": "0"})
    _upload_config(at, "rkd.yaml", uploaded.to_yaml().encode())
    assert at.number_input(key=form.option_key("rkd", "angle_weight")).value == 0.0
    assert RunConfig.from_text(at.code[0].value) == uploaded


def test_options_round_trip_through_the_widget_values():
    cfg = RunConfig().override(**{"loss.name": "cc", "loss.options.gamma": 0.3})
    values = form.widget_values(cfg)
    assert values[form.option_key("cc", "gamma")] == 0.3
    assert form.config_from_values(values) == cfg
    assert form.config_from_values({**values, K("loss", "name"): "sp"}).loss.options == {}
    assert form.config_from_values(form.widget_values(RunConfig())) == RunConfig()


def test_an_option_without_a_widget_is_kept_from_the_loaded_config(at):
    uploaded = RunConfig(name="ref").override(**{"loss.options.impl": "reference"})
    _upload_config(at, "ref.yaml", uploaded.to_yaml().encode())
    assert not at.exception and RunConfig.from_text(at.code[0].value) == uploaded
    at.button(key="setup-use").click().run()
    assert at.session_state["setup_config"].loss.options == {"impl": "reference"}
