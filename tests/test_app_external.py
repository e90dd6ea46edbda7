"""Runs written by someone's own training (``perco_viz.open_run``) open in every page (issue 14,
item 1): a finished one, one without labels whose records are partly numbers only, one with
numbers only, a failed one and a stale one (its process killed) — with no exception, their
widgets and figures, and nothing the app cannot know (no dataset, no model, no resume)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import perco_viz as pv
from perco_viz.runs import RunDir, RunStoreError
from tests.conftest import ROOT

TIMEOUT = 90
PAGES = ROOT / "pages"
N = 48  # probe rows
DONE, NOLABELS, NUMBERS, FAILED, STALE, CLI = "ext-done", "ext-nolabels", "ext-numbers", "ext-failed", "ext-stale", "cli"
WITH_SNAPSHOTS = (DONE, NOLABELS, FAILED, STALE)
EXTERNAL = (*WITH_SNAPSHOTS, NUMBERS)
CLASS_NAMES = ["cat", "dog", "eel"]

# a child process that opens a run, logs one snapshot per line it reads on stdin, says "ok" after
# each (flushed to disk) and waits: the test kills it mid-run (a run the app shows stale)
CHILD = """
import sys, numpy as np, perco_viz as pv
t = np.random.default_rng(0).normal(size=({n}, 6)).astype(np.float32)
run = pv.open_run(sys.argv[1], name=sys.argv[2], teacher_features=t, epochs=4, config={{"who": "child"}})
epoch = 0
for line in sys.stdin:
    epoch += 1
    run.log(t[:, :3] * epoch, epoch=epoch, train_loss=1.0 / epoch, lr=0.1)
    run.flush()
    print("ok", epoch, flush=True)
"""


class Child:
    """A training in another process, logging to ``root/name`` when told (:data:`CHILD`)."""

    def __init__(self, root: Path, name: str):
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD.format(n=N), str(root), name], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def log(self) -> str:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)


def _features(rng, t: np.ndarray, noise: float) -> np.ndarray:
    return (t[:, :4] + noise * rng.normal(size=(len(t), 4))).astype(np.float32)


@pytest.fixture(scope="module")
def ext_root(tmp_path_factory, finished_run) -> Path:
    """A runs folder: the engine's finished run (``cli``) and five runs of the writer."""
    root = tmp_path_factory.mktemp("external-runs")
    shutil.copytree(finished_run.path, root / CLI)
    rng = np.random.default_rng(0)
    t = rng.normal(size=(N, 6)).astype(np.float32)
    y = np.arange(N) % 3
    with pv.open_run(root, name=DONE, teacher_features=t, labels=y, class_names=CLASS_NAMES,
                     config={"lr": 0.1, "model": {"depth": 2}}, epochs=3) as run:
        for epoch in range(1, 4):
            run.log(_features(rng, t, 1.0 / epoch), epoch=epoch, step=10 * epoch, train_loss=1.0 / epoch,
                    lr=0.1, val_acc=0.5 + epoch / 10)
            run.flush()  # every snapshot measured (none dropped)
    with pv.open_run(root, name=NOLABELS, teacher_features=t, epochs=4) as run:
        for epoch in range(1, 5):  # numbers every epoch, features every other one; no train_loss, no lr
            run.log(_features(rng, t, 0.5) if epoch % 2 == 0 else None, epoch=epoch, val_acc=epoch / 10)
            run.flush()
    with pv.open_run(root, name=NUMBERS, teacher_features=t, labels=y, epochs=3) as run:
        for epoch in range(1, 4):
            run.log(epoch=epoch, train_loss=1.0 / epoch)
    with pytest.raises(RuntimeError, match="loss exploded"), \
            pv.open_run(root, name=FAILED, teacher_features=t, labels=y, epochs=5) as run:
        run.log(_features(rng, t, 1.0), epoch=1, train_loss=2.0)
        raise RuntimeError("loss exploded")
    child = Child(root, STALE)
    assert child.log() == "ok 1"
    child.kill()
    assert RunDir(root / STALE).status()["state"] == "stale"
    return root


@pytest.fixture
def env(app_env, ext_root, monkeypatch) -> Path:
    monkeypatch.setenv("PERCO_VIZ_RUNS", str(ext_root))
    return ext_root


def _page(name: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / name), default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    return at


def _pick(at: AppTest, key: str, run: str) -> AppTest:
    box = at.selectbox(key=key)
    box.set_value(next(o for o in box.options if o.startswith(f"{run} "))).run()
    assert not at.exception, (run, at.exception)
    return at


def _texts(at: AppTest) -> str:
    return " ".join(str(e.value) for kind in ("error", "warning", "info", "caption", "markdown", "success")
                    for e in at.get(kind))


def _charts(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


def _chart(at: AppTest, title: str) -> dict:
    """The figure whose title contains ``title``."""
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return next(s for s in specs if title in json.dumps(s.get("layout", {}).get("title", "")))


def _keys(at: AppTest, kind: str) -> set[str]:
    return {w.key for w in at.get(kind)}


# --------------------------------------------------------------------------- Distill
def test_distill_shows_an_external_run_truthfully_without_resume(env):
    at = _page("2_Distill.py")
    for name in EXTERNAL:
        _pick(at, "distill-run", name)
        text = _texts(at)
        assert "your own training (**open_run**)" in text and f"probe **{N} rows**" in text, name
        assert "digits" not in text.split("Start will use")[0] and "teacher **builtin**" not in text.split(
            "Start will use")[0], name
        assert "distill-resume" not in _keys(at, "button"), name
        assert _charts(at) >= 1, name  # the curves at least (numbers only: no embeddings)
    _pick(at, "distill-run", DONE)
    assert "student features **4-d**" in _texts(at)
    assert _charts(at) == 4  # embeddings, curves, and the user's own numbers: lr, val_acc
    own = _chart(at, "val acc")
    assert own["data"][0]["y"] == pytest.approx([0.6, 0.7, 0.8])  # as logged
    assert at.get("json")[0].value and json.loads(at.get("json")[0].value) == {"lr": 0.1, "model": {"depth": 2}}
    _pick(at, "distill-run", NUMBERS)
    text = _texts(at)
    assert "No student features logged yet" in text and "no student features logged yet" in text
    curves = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [tr["y"] for tr in curves["data"] if tr.get("y")][0] == pytest.approx([1.0, 0.5, 1 / 3])
    _pick(at, "distill-run", STALE)
    text = _texts(at)
    assert "stopped answering" in text and "cannot be resumed here" in text and "resume it to continue" not in text
    _pick(at, "distill-run", CLI)  # the engine's run keeps its description and its Resume
    assert "teacher **builtin**" in _texts(at) and "distill-resume" in _keys(at, "button")


def test_distill_follows_a_run_another_process_is_writing(env, tmp_path, monkeypatch):
    root = tmp_path / "live"
    monkeypatch.setenv("PERCO_VIZ_RUNS", str(root))
    child = Child(root, "live")
    try:
        assert child.log() == "ok 1"
        at = _page("2_Distill.py")
        bar = at.get("progress")
        assert bar and "epoch 1 of 4" in str(bar[0].proto.text)
        assert at.metric[0].value == "1"
        assert child.log() == "ok 2"
        at.run()
        assert not at.exception
        assert "epoch 2 of 4" in str(at.get("progress")[0].proto.text) and at.metric[0].value == "2"
    finally:
        child.kill()
    at.run()
    assert not at.get("progress") and "stopped answering" in _texts(at)


# --------------------------------------------------------------------------- the pages of one snapshot
@pytest.mark.parametrize(("page", "key", "widget"), [
    ("3_Embeddings.py", "emb-run", "emb-color"),
    ("4_Rank_agreement.py", "rank-run", None),
    ("5_Per_sample_coherence.py", "psc-run", None),
])
def test_snapshot_pages_open_every_external_run(env, page, key, widget):
    at = _page(page)
    for name in EXTERNAL:
        _pick(at, key, name)
        if name == NUMBERS:
            assert "no snapshot yet" in _texts(at) and _charts(at) == 0
            continue
        assert _charts(at) >= 2, (page, name)
        if widget:
            assert widget in _keys(at, "selectbox")
    _pick(at, key, DONE)  # the writer's class names, never the defaults' digits
    if page == "3_Embeddings.py":  # no weights: the training keeps them (never "not saved yet")
        assert "your own training keeps them" in _texts(at) and "emb-dl-weights" not in _keys(at, "download_button")
    assert "dog" in json.dumps([json.loads(c.proto.spec) for c in at.get("plotly_chart")]) or \
        "dog" in _texts(at) + " ".join(str(d.value) for d in at.dataframe)


def test_an_external_run_has_no_dataset_and_its_own_class_names(env):
    from ui import common

    run = RunDir(env / DONE)
    assert run.config().data.name == "digits"  # a default that means nothing ...
    assert common.dataset_of(run) is None  # ... so no dataset (and no thumbnails) is loaded for it
    assert common.class_names_of(run, np.array([0, 1, 2])) == CLASS_NAMES
    assert common.class_names_of(RunDir(env / NOLABELS), None) is None


def test_per_sample_table_names_the_writers_classes(env):
    at = _pick(_page("5_Per_sample_coherence.py"), "psc-run", DONE)
    table = at.dataframe[0].value
    assert set(table["class"]) <= set(CLASS_NAMES) and len(table)


# --------------------------------------------------------------------------- Diagnose, Compare, Runs, Teaching
def test_diagnose_reads_every_external_run(env):
    at = _page("6_Diagnose.py")
    at.radio(key="diag-source").set_value("run").run()
    for name in EXTERNAL:
        _pick(at, "diag-run", name)
        if name == NUMBERS:
            assert "no snapshot yet" in _texts(at)
        else:
            assert _charts(at) >= 3, name
            assert f"run {name}" in _texts(at)


def test_compare_says_what_an_external_run_lacks_and_never_offers_to_retrain_it(env):
    at = _page("7_Compare.py")
    box = at.multiselect(key="compare-runs")
    box.set_value([o for o in box.options if o.split(" ")[0] in (*EXTERNAL, CLI)]).run()
    assert not at.exception, at.exception
    assert "no model or dataset of them to score on a held-out split" in _texts(at)
    table = at.dataframe[0].value.set_index("run")
    assert table.loc[DONE, "dataset"] == "own training" and table.loc[CLI, "dataset"] == "digits"
    assert table.loc[DONE, "pc"] == pytest.approx(RunDir(env / DONE).metrics()[-1]["pc"])
    assert at.tabs and any("val acc" in t.label for t in at.tabs)  # the user's own numbers get a curve
    diff = at.dataframe[1].value
    assert "your config.lr" in diff.index and "made by" in diff.index
    assert at.selectbox(key="compare-baseline-run").options == [o for o in box.value if o.startswith(f"{CLI} ")]
    box.set_value([o for o in box.options if o.startswith(f"{DONE} ")]).run()
    assert not at.exception and "compare-baseline-run" not in _keys(at, "selectbox")
    assert "written by your own training" in _texts(at)
    box.set_value([o for o in box.options if o.startswith(f"{CLI} ")]).run()  # the engine's numbers get no tab
    assert [t.label for t in at.tabs] == ["PC (probe set)", "k-NN accuracy (probe set)", "Training loss"]


def test_evaluating_an_external_run_on_held_out_data_is_refused_in_words(env):
    from perco_viz.analysis import compare

    with pytest.raises(ValueError, match="no model or dataset of it"):
        compare.evaluate_student(env / DONE)


def test_runs_page_lists_external_runs_with_their_errors_writer_and_config(env):
    at = _page("9_Runs.py")
    table = at.dataframe[0].value.set_index("title")
    assert set(EXTERNAL) | {CLI} <= set(table.index)
    assert (table.loc[list(EXTERNAL), "loss"] == "own training").all() and table.loc[CLI, "loss"] == "coherence"
    assert table.loc[DONE, "student"] == "own training · 4-d"
    assert table.loc[NUMBERS, "student"] == "own training · no features yet"
    assert "loss exploded" in table.loc[FAILED, "why"] and "stopped answering" in table.loc[STALE, "why"]
    at.selectbox(key="runs-pick").set_value(f"shared/{DONE}").run()
    assert not at.exception
    assert "Written by **open_run**" in _texts(at)
    assert json.loads(at.get("json")[0].value) == {"lr": 0.1, "model": {"depth": 2}}
    at.selectbox(key="runs-pick").set_value(f"shared/{FAILED}").run()
    assert "Its training failed: RuntimeError: loss exploded" in " ".join(str(e.value) for e in at.error)


def test_teaching_view_opens_beside_external_runs(env):
    at = _page("8_Teaching_view.py")
    assert _charts(at) >= 1


def test_the_app_never_resumes_an_external_run(env, tmp_path):
    from perco_viz.live import start_training

    target = tmp_path / "runs" / DONE
    shutil.copytree(env / DONE, target)
    before = {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()}
    with pytest.raises(RunStoreError, match="cannot be resumed here"):
        start_training(None, runs_root=target.parent, resume_dir=target)
    assert {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()} == before
