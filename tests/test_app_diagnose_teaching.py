"""AppTest of the Diagnose and Teaching view pages: fresh sessions, uploads, a run, a training step."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from perco_viz.analysis import diagnose, teaching

ROOT = Path(__file__).resolve().parent.parent
DIAGNOSE = str(ROOT / "pages" / "6_Diagnose.py")
TEACHING = str(ROOT / "pages" / "8_Teaching_view.py")


def _app(path: str) -> AppTest:
    return AppTest.from_file(path, default_timeout=60)


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _cards(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _upload(at: AppTest, key: str, name: str, data: bytes) -> None:
    at.file_uploader(key=key).set_value((name, data, "application/octet-stream"))


# --------------------------------------------------------------------------- Diagnose
def test_diagnose_fresh_session_asks_for_files(app_env):
    at = _app(DIAGNOSE).run()
    assert not at.exception
    assert at.radio(key="diag-source").value == "files"
    assert {u.key for u in at.file_uploader} >= {"diag-teacher-file", "diag-student-file"}
    assert not at.error and not at.get("plotly_chart")


def test_diagnose_uploaded_rotated_teacher_has_pc_one(app_env, rng):
    y = np.arange(150) % 3
    x = rng.normal(size=(150, 5)) + 3.0 * np.eye(5)[y]
    rotation = np.linalg.qr(rng.normal(size=(5, 5)))[0]
    at = _app(DIAGNOSE).run()
    _upload(at, "diag-teacher-file", "teacher.npz", _npz(X=x, y=y))
    _upload(at, "diag-student-file", "student.npz", _npz(X=4.0 * x @ rotation - 2.0))
    at.run()
    assert not at.exception and not at.error
    cards = _cards(at)
    assert cards[diagnose.METRIC_INFO["pc"].label] == "1.000"
    expected = diagnose.compute_panel(diagnose.EmbeddingPair(x.astype(np.float32), (4.0 * x @ rotation - 2.0)
                                                             .astype(np.float32), y)).report
    for key, value in expected.items():
        if key in diagnose.CARD_ORDER:
            assert cards[diagnose.METRIC_INFO[key].label] == diagnose.format_value(key, value)
    assert len(at.get("plotly_chart")) == 4
    assert any("Download report" in b.proto.label for b in at.get("download_button"))


def test_diagnose_mismatched_uploads_show_an_error(app_env, rng):
    at = _app(DIAGNOSE).run()
    _upload(at, "diag-teacher-file", "teacher.npz", _npz(X=rng.normal(size=(50, 3))))
    _upload(at, "diag-student-file", "student.npz", _npz(X=rng.normal(size=(40, 3))))
    at.run()
    assert not at.exception
    assert at.error and "50 rows" in at.error[0].value and "40" in at.error[0].value
    bad = rng.normal(size=(50, 3))
    bad[3, 1] = np.nan
    _upload(at, "diag-student-file", "student.npz", _npz(X=bad))
    at.run()
    assert not at.exception and "NaN" in at.error[0].value


def test_diagnose_a_few_thousand_rows_shows_the_interval_and_the_scope(app_env, rng):
    n = diagnose.EXACT_MAX_ROWS + 500  # above the exact limit: PC is estimated on all rows
    y = np.arange(n) % 4
    x = (rng.normal(size=(n, 8)) + 3.0 * np.eye(8)[y]).astype(np.float32)
    s = (x[:, :3] + 0.5 * rng.normal(size=(n, 3))).astype(np.float32)
    at = AppTest.from_file(DIAGNOSE, default_timeout=240).run()
    _upload(at, "diag-teacher-file", "teacher.npz", _npz(X=x, y=y))
    _upload(at, "diag-student-file", "student.npy", _npy(s))
    at.run()
    assert not at.exception and not at.error
    panel = diagnose.compute_panel(diagnose.EmbeddingPair(x, s, y))  # the library's (and the CLI's) numbers
    assert panel.estimated
    cards = {m.label: m for m in at.metric}
    pc = cards[diagnose.METRIC_INFO["pc"].label]
    assert pc.value == diagnose.value_text(panel, "pc") and " ± " in pc.value
    assert f"estimated on all {n:,} rows" in pc.proto.help
    assert cards[diagnose.METRIC_INFO["knn_acc"].label].proto.help.endswith("on a sample of 2,000 rows, stratified by "
                                                                            "label.")
    info = " ".join(i.value for i in at.info)
    assert f"estimated on all {n:,} rows" in info and f"2,000 of the {n:,} rows" in info
    assert any(panel.pc.text() in c.value for c in at.caption)  # "0.8xx ± 0.00x (95% CI, 10⁶ triplets)"
    scopes = next(df.value for df in at.dataframe if "computed on" in df.value.columns)
    assert set(scopes["computed on"]) == set(panel.scopes.values())


def test_diagnose_a_run_shows_the_librarys_numbers(app_env, finished_run):
    at = _app(DIAGNOSE).run()
    at.radio(key="diag-source").set_value("run").run()
    assert not at.exception and not at.error
    label = at.selectbox(key="diag-run").value
    assert finished_run.name in label
    panel = diagnose.compute_panel(diagnose.pair_from_run(finished_run))
    cards = _cards(at)
    for key in diagnose.CARD_ORDER:
        assert cards[diagnose.METRIC_INFO[key].label] == diagnose.format_value(key, panel.report[key])
    last = finished_run.load_snapshot(finished_run.snapshot_indices()[-1])
    assert cards[diagnose.METRIC_INFO["pc"].label] == f"{last.metrics['pc']:.3f}"
    assert len(at.get("plotly_chart")) == 4
    at.selectbox(key="diag-snapshot").set_value(0).run()  # the untrained student
    assert not at.exception
    first = finished_run.load_snapshot(0)
    assert _cards(at)[diagnose.METRIC_INFO["pc"].label] == f"{first.metrics['pc']:.3f}"


def test_diagnose_a_student_checkpoint_on_a_dataset(app_env, finished_run):
    from perco_viz import models, paths
    from perco_viz.config import StudentConfig, TeacherConfig
    from perco_viz.data import load_dataset

    at = _app(DIAGNOSE).run()
    at.radio(key="diag-source").set_value("models").run()
    assert not at.exception
    assert at.selectbox(key="diag-dataset").value == "digits"
    assert at.button(key="diag-models-go").disabled  # no checkpoint yet
    _upload(at, "diag-student-model", "student.safetensors", finished_run.student_path.read_bytes())
    at.run()
    at.button(key="diag-models-go").click().run()
    assert not at.exception and not at.error
    uploads = list((app_env / "app-sessions" / at.session_state["sid"]).glob("uploads/*/student.safetensors"))
    assert len(uploads) == 1  # kept in this session's own folder (the one saver of every page)
    ds = load_dataset(finished_run.config().data)
    teacher = models.load_teacher(TeacherConfig(kind="builtin"), ds, cache_dir=paths.default_cache_dir())
    student = models.build_student(StudentConfig(arch="file", path=str(finished_run.student_path)), ds)
    panel = diagnose.compute_panel(diagnose.pair_from_models(teacher, student, ds.X_test, ds.y_test))
    assert _cards(at)[diagnose.METRIC_INFO["pc"].label] == diagnose.format_value("pc", panel.report["pc"])
    _upload(at, "diag-student-model", "broken.safetensors", b"not weights")
    at.run()
    at.button(key="diag-models-go").click().run()
    assert not at.exception and at.error and "broken.safetensors" in at.error[0].value


@pytest.mark.parametrize("trusted", [False, True])
def test_diagnose_offers_torchscript_only_on_a_trusting_server(app_env, monkeypatch, trusted):
    if trusted:
        monkeypatch.setenv("PERCO_VIZ_TRUST_TORCHSCRIPT", "1")
    else:
        monkeypatch.delenv("PERCO_VIZ_TRUST_TORCHSCRIPT", raising=False)
    at = _app(DIAGNOSE).run()
    at.radio(key="diag-source").set_value("models").run()
    assert not at.exception
    kinds = at.selectbox(key="diag-teacher-kind").options
    assert any("TorchScript" in k for k in kinds) == trusted
    warned = [w.value for w in at.warning if "runs the code inside it on this server" in w.value]
    refused = [c.value for c in at.caption if "TorchScript files are not accepted" in c.value]
    assert (len(warned), len(refused)) == ((1, 0) if trusted else (0, 1))


def test_diagnose_embedding_files_are_read_in_the_worker_within_the_time_limit(app_env, rng, monkeypatch):
    import time

    from perco_viz import sessions

    calls, real = [], sessions.run_limited

    def limited(fn, *args, **kwargs):  # the first read hangs (as a hostile file would): stopped after 1 s
        calls.append(fn)
        if len(calls) == 1:
            return real(time.sleep, 60, timeout_s=1.0, what=kwargs.get("what", "the file"))
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(sessions, "run_limited", limited)
    at = _app(DIAGNOSE).run()
    X = rng.normal(size=(50, 4))
    _upload(at, "diag-teacher-file", "t.npz", _npz(X=X))
    _upload(at, "diag-student-file", "s.npz", _npz(X=X[:, :2]))
    at.run()  # AppTest's default_timeout fails a page that waits for the 60 s sleep
    assert not at.exception
    assert any("took longer than 1 s" in e.value and "PERCO_VIZ_PARSE_TIMEOUT_S" in e.value for e in at.error)
    assert getattr(calls[0], "func", None) is diagnose.load_pair  # the page parses through the worker
    _upload(at, "diag-student-file", "s2.npz", _npz(X=X[:, :3]))  # a fresh worker reads the next files
    at.run()
    assert not at.exception and not at.error and at.metric


# --------------------------------------------------------------------------- Teaching view
def test_teaching_view_fresh_session_has_its_widgets(app_env):
    at = _app(TEACHING).run()
    assert not at.exception
    for key in ("teach-toy", "teach-arch", "teach-opt", "teach-anchor"):
        assert at.selectbox(key=key) is not None
    assert at.slider(key="teach-n").value == 20
    assert at.select_slider(key="teach-tau").value == 0.1
    assert at.radio(key="teach-kernel").value == "ramp"
    for key in ("teach-step", "teach-step10", "teach-reset"):
        assert at.button(key=key) is not None
    assert len(at.get("plotly_chart")) == 5
    assert _cards(at)["Steps"] == "0"


def _shown_loss(at: AppTest) -> str:
    return _cards(at)["Batch loss"]


def test_teaching_view_step_changes_the_loss_as_the_library_does(app_env):
    at = _app(TEACHING).run()
    state0 = at.session_state["teach-state"]
    before = _shown_loss(at)
    assert before == f"{state0.history[-1]:.3f}"
    at.button(key="teach-step").click().run()
    assert not at.exception
    assert _cards(at)["Steps"] == "1"
    expected = teaching.train_step(state0, lr=0.01, tau=0.1, kernel="ramp")
    assert _shown_loss(at) == f"{expected.history[-1]:.3f}" != before
    assert len(at.get("plotly_chart")) == 6  # the loss history appears
    at.button(key="teach-step10").click().run()
    assert _cards(at)["Steps"] == "11"
    at.button(key="teach-reset").click().run()
    assert _cards(at)["Steps"] == "0" and _shown_loss(at) == before


def test_teaching_view_first_state_is_made_once_for_every_session(app_env, monkeypatch):
    """The untrained student is the same for every session with the same choices: a second session
    (another browser) reuses the server's, its numbers unchanged (the issue: 26 s blank per visit)."""
    import streamlit as st

    made = []
    make_state = teaching.make_state
    monkeypatch.setattr(teaching, "make_state", lambda *a, **k: made.append(1) or make_state(*a, **k))
    st.cache_resource.clear()
    first = _app(TEACHING).run()
    second = _app(TEACHING).run()
    assert not first.exception and not second.exception
    assert len(made) == 1
    assert _cards(first) == _cards(second)
    second.button(key="teach-step").click().run()  # a step of one session leaves the shared state as it was
    assert _cards(second)["Steps"] == "1" and _cards(_app(TEACHING).run())["Steps"] == "0"
    assert first.session_state["teach-state"].step == 0 and len(made) == 1


@pytest.mark.parametrize("changes", [{"teach-tau": 0.001}, {"teach-kernel": "sigmoid"}, {"teach-dim": 3},
                                     {"teach-arch": "points"}, {"teach-anchor": 7}])
def test_teaching_view_controls_rerun_cleanly(app_env, changes):
    at = _app(TEACHING).run()
    for key, value in changes.items():
        _set(at, key, value)
    at.run()
    assert not at.exception
    view = teaching.anchor_view(at.session_state["teach-state"].student_points(),
                                at.session_state["teach-state"].teacher, at.selectbox(key="teach-anchor").value,
                                at.select_slider(key="teach-tau").value, at.radio(key="teach-kernel").value)
    assert _cards(at)["Anchor loss"] == f"{view['loss']:.3f}"


def _widget_type(key: str) -> str:
    return {"teach-tau": "select_slider", "teach-kernel": "radio", "teach-dim": "radio"}.get(key, "selectbox")


def _set(at: AppTest, key: str, value) -> None:
    getattr(at, _widget_type(key))(key=key).set_value(value)
