"""AppTest: the home page and the live Distill page, on a fresh session and on finished runs."""

from __future__ import annotations

import time

import pytest
from conftest import ROOT
from streamlit.testing.v1 import AppTest

TIMEOUT = 90


def _poll_until(at: AppTest, done, limit_s: float = 120.0) -> None:
    """Re-run the script (AppTest does not re-run fragments by itself) until ``done(at)``."""
    deadline = time.time() + limit_s
    while time.time() < deadline:
        at.run()
        assert not at.exception, at.exception
        if done(at):
            return
        time.sleep(0.5)
    raise AssertionError("the condition was not reached in time")


def test_home_renders_on_a_fresh_session(app_env):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert at.title[0].value == "perco_viz"
    assert any(b.label == "Run the demo" for b in at.button)
    assert "perception" in " ".join(m.value for m in at.markdown).lower()


def test_distill_page_shows_a_finished_cli_run(app_env, finished_run):
    at = AppTest.from_file(str(ROOT / "pages" / "2_Distill.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert at.selectbox(key="distill-run").value.startswith(finished_run.name)
    charts = at.get("plotly_chart")
    assert len(charts) >= 2
    pc_card = next(m for m in at.metric if m.label.startswith("PC"))
    assert pc_card.value == f"{finished_run.metrics()[-1]['pc']:.3f}"


def test_demo_button_starts_a_run_and_figures_appear_then_stop(app_env, monkeypatch):
    from ui import common

    # a long demo so that stop has something to stop; small probe for speed
    cfg = common.demo_config().override(**{"train.epochs": 200, "data.probe_size": 100})
    monkeypatch.setattr(common, "demo_config", lambda: cfg)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    at.button(key="home-demo").click().run()
    assert not at.exception
    sid = at.session_state["sid"]
    run = common.registry().latest(sid)
    assert run is not None
    at.switch_page("pages/2_Distill.py").run()
    _poll_until(at, lambda a: len(a.get("plotly_chart")) >= 2)
    assert any(m.label.startswith("PC") for m in at.metric)
    at.button(key="distill-stop").click().run()
    run.stop(wait=30)
    assert not run.alive
    assert run.run_dir.status()["state"] == "cancelled"


def test_one_training_per_session(app_env):
    from perco_viz.live import RegistryFull, RunRegistry
    from ui import common

    reg = RunRegistry(max_concurrent=1)
    cfg = common.demo_config().override(**{"train.epochs": 100, "data.probe_size": 50})
    run = reg.start("a", cfg, app_env / "app-sessions" / "a")
    try:
        with pytest.raises(RegistryFull, match="already running"):
            reg.start("a", cfg, app_env / "app-sessions" / "a")
        with pytest.raises(RegistryFull, match="limit of 1"):
            reg.start("b", cfg, app_env / "app-sessions" / "b")
    finally:
        run.stop(wait=60)


def test_sessions_never_list_each_others_runs(app_env, monkeypatch):
    """A's demo lives under A's session folder; B's pickers offer only B's runs and the shared ones."""
    from ui import common

    cfg = common.demo_config().override(**{"train.epochs": 1, "data.probe_size": 50, "name": "only-mine"})
    monkeypatch.setattr(common, "demo_config", lambda: cfg)
    a = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    a.button(key="home-demo").click().run()
    run = common.registry().latest(a.session_state["sid"])
    run.stop(wait=0)
    deadline = time.time() + 120
    while run.alive and time.time() < deadline:
        time.sleep(0.2)
    assert a.session_state["sid"] in str(run.run_dir.path)
    b = AppTest.from_file(str(ROOT / "pages" / "2_Distill.py"), default_timeout=TIMEOUT).run()
    assert not b.exception and b.session_state["sid"] != a.session_state["sid"]
    options = b.selectbox(key="distill-run").options
    assert options and all(label.endswith("shared") for label in options)
    assert not any("only-mine" in label for label in options)
    a.switch_page("pages/2_Distill.py").run()
    assert any("only-mine" in label and label.endswith("yours") for label in a.selectbox(key="distill-run").options)


def test_server_config_keeps_the_live_view_cheap():
    """No source watcher (with torch loaded it re-walks thousands of module paths after every
    fragment poll: most of a core while a run is shown), no usage statistics, our own sidebar."""
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["fileWatcherType"] == "none"
    assert config["browser"]["gatherUsageStats"] is False
    assert config["client"]["showSidebarNavigation"] is False


def test_warm_up_order_and_numba_gives_way_to_trainings(monkeypatch):
    """The warm-up starts the process server, then prepares the teacher, and compiles numba only
    once no training runs (it is ~25 s of CPU); a failing step is reported, not raised."""
    from concurrent.futures import Future

    from perco_viz import live, process
    from perco_viz.analysis import projection
    from ui import warmup

    events: list[str] = []

    def teacher():
        events.append("teacher")

    def numba():
        events.append("numba")
        raise RuntimeError("no compiler")

    class Pool:  # the worker process, run inline
        def submit(self, fn):
            future = Future()
            try:
                future.set_result(fn())
            except Exception as exc:  # noqa: BLE001
                future.set_exception(exc)
            return future

    answers = iter([True, True, False])

    def busy():
        answer = next(answers, False)
        events.append(f"busy={answer}")
        return answer

    monkeypatch.setattr(process, "prestart", lambda: events.append("prestart"))
    monkeypatch.setattr(live, "prepare_demo_teacher", teacher)
    monkeypatch.setattr(process, "shared_worker", Pool)
    monkeypatch.setattr(projection, "warm_up_numba", numba)
    monkeypatch.setattr(warmup.time, "sleep", lambda s: None)
    monkeypatch.setattr(warmup, "_STATE", dict(warmup._STATE))
    warmup._warm(busy)
    assert events == ["prestart", "teacher", "busy=True", "busy=True", "busy=False", "numba"]
    status = warmup.status()
    assert status["trainings"].startswith("ready") and status["teacher"].startswith("ready")
    assert status["imports"].startswith("ready")
    assert status["numba"] == "failed: no compiler"
