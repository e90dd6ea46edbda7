"""Issue 12's defects of the Distill page (AppTest), and the live view's helpers (ui/distill.py,
called directly)."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

from conftest import ROOT
from streamlit.testing.v1 import AppTest

DISTILL = str(ROOT / "pages" / "2_Distill.py")
TIMEOUT = 90


def _wait(predicate, limit_s: float = 120.0) -> None:
    deadline = time.time() + limit_s
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


def _texts(at: AppTest, kind: str) -> list[str]:
    return [e.value for e in getattr(at, kind)]


def _long_demo(common, monkeypatch, name: str):
    cfg = common.demo_config().override(**{"train.epochs": 200, "data.probe_size": 100, "name": name})
    monkeypatch.setattr(common, "demo_config", lambda: cfg)
    return cfg


def test_start_watches_the_new_run_stop_acts_on_it_and_cancelled_is_no_success(app_env, finished_run, monkeypatch):
    """▶ Start kept showing the previous run (Stop cancelled a run you could not see), and
    "Cancelled" was a green success."""
    from ui import common

    _long_demo(common, monkeypatch, "fresh-start")
    at = AppTest.from_file(DISTILL, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    finished_label = at.selectbox(key="distill-run").value
    assert finished_label.startswith(finished_run.name)
    assert at.button(key="distill-stop").disabled  # nothing of this session trains
    at.button(key="distill-start").click().run()
    assert not at.exception, at.exception
    run = common.registry().latest(at.session_state["sid"])
    try:
        picked = at.selectbox(key="distill-run").value
        assert picked.startswith(run.run_dir.name) and "yours" in picked  # the new run is watched
        assert not at.button(key="distill-stop").disabled
        at.selectbox(key="distill-run").select(finished_label).run()  # watch another run
        assert at.button(key="distill-stop").disabled  # Stop never acts on a run out of sight
        assert any(run.run_dir.name in c for c in _texts(at, "caption"))  # ...and says which run trains
        at.selectbox(key="distill-run").select(picked).run()
        at.button(key="distill-stop").click().run()
    finally:
        run.stop(wait=60)
    _wait(lambda: not run.alive)
    at.run()
    assert not at.exception, at.exception
    assert any(t.startswith("Cancelled") for t in _texts(at, "info")), _texts(at, "info")
    assert not any("Cancelled" in t for t in _texts(at, "success"))


def test_the_configuration_line_describes_the_watched_run(app_env, finished_run):
    """It described the Setup form (a FitNet form while a coherence run was shown)."""
    from ui import common

    fitnet = common.demo_config().override(**{"loss.name": "fitnet", "train.epochs": 7})
    at = AppTest.from_file(DISTILL, default_timeout=TIMEOUT)
    at.session_state["setup_config"] = fitnet
    at.run()
    assert not at.exception, at.exception
    captions = " ".join(_texts(at, "caption"))
    watched = finished_run.config()
    assert f"This run: **{watched.data.name}**" in captions and f"loss **{watched.loss.name}**" in captions
    assert f"{watched.train.epochs} epochs." in captions
    assert "Start will use:" in captions and "loss **fitnet**" in captions and "7 epochs" in captions


def test_an_invalid_setup_field_blocks_start_and_names_it(app_env):
    """Epochs 0 on Setup: Start trained 20 epochs without a word."""
    at = AppTest.from_file(DISTILL, default_timeout=TIMEOUT)
    at.session_state["setup-initialised"] = True  # the Setup form was filled in this session
    at.session_state["setup-train-epochs"] = 0
    at.run()
    assert not at.exception, at.exception
    assert at.button(key="distill-start").disabled
    message = " ".join(_texts(at, "error"))
    assert "Epochs (train.epochs)" in message and "got 0" in message and "Setup" in message


def test_header_and_figures_name_their_epochs_apart(app_env, finished_run):
    """The header said epoch 2 (the epoch being trained) while the plot said epoch 1 (the last
    snapshot): the bar says "training epoch k of N", the cards and figure "snapshot at epoch j"."""
    from ui import distill

    text = distill.progress_text({"step": 12, "total_steps": 120, "epoch": 1, "eta_s": 9.4}, 20)
    assert text == "step 12/120 · training epoch 2 of 20 · about 9 s left"
    at = AppTest.from_file(DISTILL, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    card = next(m for m in at.metric if m.label == "Snapshot at epoch")
    spec = json.dumps(json.loads(at.get("plotly_chart")[0].proto.spec))
    assert f"snapshot at epoch {card.value}" in spec


def test_the_phase_line_follows_the_latest_state(app_env, finished_run, monkeypatch):
    """"Computing the teacher's features…" stayed up after the metrics appeared."""
    from ui import common

    live = SimpleNamespace(alive=True, run_dir=finished_run, stop=lambda: None,
                           info=lambda: {"state": "running", "phase": "features", "snapshots": 2,
                                         "progress": {"phase": "features", "step": 0, "total_steps": 18, "epoch": 0}})
    monkeypatch.setattr(common, "live_run", lambda: live)
    at = AppTest.from_file(DISTILL, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    assert at.selectbox(key="distill-run").value.startswith(finished_run.name)
    assert not any("teacher's features" in t for t in _texts(at, "info"))
    assert any(m.label.startswith("PC") for m in at.metric)
