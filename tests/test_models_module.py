"""Your own ``torch.nn.Module`` classes as ``module:Class`` plus a safetensors state_dict: the gate
that decides which modules are imported, the constructor's keyword arguments, refusals, the engine.

The classes live in tests/fixture_nets.py (imported as ``fixture_nets``: pytest puts tests/ on the
import path; perco_viz itself never changes it).
"""

from __future__ import annotations

import json
import sys

import fixture_nets
import numpy as np
import pytest
import torch

from perco_viz import models
from perco_viz.config import DataConfig, RunConfig, StudentConfig, TeacherConfig
from perco_viz.data import load_dataset
from perco_viz.safe_io import TRUSTED_MODULES_ENV, InputFileError, import_class, module_allowed

TINY = "fixture_nets:TinyNet"


@pytest.fixture
def allowed(monkeypatch):
    """The operator allows the test's module (as an app server would)."""
    monkeypatch.setenv(TRUSTED_MODULES_ENV, "some.other, fixture_nets")


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig(name="digits"))


@pytest.fixture
def tiny_weights(tmp_path):
    """TinyNet(dim=6)'s weights with its init_kwargs, and the model."""
    torch.manual_seed(1)
    model = fixture_nets.TinyNet(dim=6).eval()
    return models.save_module_safetensors(model, tmp_path / "tiny.safetensors", init_kwargs={"dim": 6}), model


def test_only_allowed_modules_are_imported(monkeypatch):
    monkeypatch.delenv(TRUSTED_MODULES_ENV, raising=False)
    with pytest.raises(ValueError, match=f"--trust-code.*{TRUSTED_MODULES_ENV}=fixture_nets"):
        import_class(TINY)
    assert import_class(TINY, trust=True) is fixture_nets.TinyNet  # the CLI's --trust-code / trust_code=True
    monkeypatch.setenv(TRUSTED_MODULES_ENV, "fixture")  # a prefix of the name, not of a dotted part
    assert not module_allowed("fixture_nets")
    monkeypatch.setenv(TRUSTED_MODULES_ENV, "mypkg, fixture_nets")
    assert module_allowed("fixture_nets") and module_allowed("mypkg.nets.deep") and not module_allowed("mypkg2")
    assert import_class(TINY) is fixture_nets.TinyNet


def test_a_module_is_imported_by_name_only_never_from_a_folder(tmp_path, monkeypatch):
    (tmp_path / "planted.py").write_text("import torch\nclass Net(torch.nn.Module):\n    pass\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(TRUSTED_MODULES_ENV, "planted")
    before = list(sys.path)
    assert "" not in before and str(tmp_path) not in before  # the file sits in the working folder only
    with pytest.raises(ValueError, match="'planted' could not be imported.*never adds folders to the import path"):
        import_class("planted:Net")
    assert sys.path == before and "planted" not in sys.modules
    for spec in ("fixture_nets.TinyNet", "../x:Net", "fixture_nets:Tiny Net", ".fixture_nets:TinyNet"):
        with pytest.raises(ValueError, match="package.module:Class"):
            import_class(spec, trust=True)


def test_a_module_teacher_is_refused_in_the_app_without_the_operators_list(tiny_weights, digits, monkeypatch):
    monkeypatch.delenv(TRUSTED_MODULES_ENV, raising=False)
    path, _ = tiny_weights
    cfg = TeacherConfig(kind="module", arch=TINY, path=str(path))
    with pytest.raises(ValueError, match=f"does not import 'fixture_nets'.*{TRUSTED_MODULES_ENV}=fixture_nets"):
        models.load_teacher(cfg, digits)  # the app passes trust_code=False unless its operator trusts code
    assert models.load_teacher(cfg, digits, trust_code=True).feature_dim == 6


def test_the_weights_and_init_kwargs_round_trip(tiny_weights, digits, allowed):
    path, model = tiny_weights
    loaded = models.load_module_model(TINY, path)
    assert isinstance(loaded, fixture_nets.TinyNet) and loaded.embed.out_features == 6 and not loaded.training
    x = digits.X_test[:5]
    torch.testing.assert_close(loaded(x), model(x))
    teacher = models.load_teacher(TeacherConfig(kind="module", arch=TINY, path=str(path)), digits)
    assert teacher.layer == "embed" and teacher.has_head  # the defaults of any model: embed, a head
    with torch.no_grad():
        torch.testing.assert_close(teacher(x), model.embed(model.body(x)))
    fresh = models.load_module_model("fixture_nets:NoArgs")  # no weights: built with no arguments
    assert fresh.proj.out_features == 12


def test_refusals_say_what_to_change(tiny_weights, tmp_path, allowed):
    path, model = tiny_weights
    for spec in ("fixture_nets:NOT_A_MODULE", "fixture_nets:not_a_class"):
        with pytest.raises(ValueError, match="not a torch.nn.Module class"):
            models.load_module_model(spec, path)
    with pytest.raises(ValueError, match="fixture_nets.*has no 'Nope'"):
        models.load_module_model("fixture_nets:Nope")
    other = models.save_module_safetensors(fixture_nets.NoArgs(), tmp_path / "other.safetensors")
    with pytest.raises(InputFileError, match=r"do not fit fixture_nets:TinyNet: missing keys \['body.1.weight'.*"
                                             r"unexpected keys \['proj.bias', 'proj.weight'\]"):
        models.load_module_model(TINY, other)
    forged = models.save_module_safetensors(model, tmp_path / "forged.safetensors", init_kwargs={"dim": 7})
    with pytest.raises(InputFileError, match=r"wrong shapes \['embed.weight \(file \(6, 32\), model \(7, 32\)\)"):
        models.load_module_model(TINY, forged)
    bad = models.save_module_safetensors(model, tmp_path / "bad.safetensors", init_kwargs={"width": 3})
    with pytest.raises(ValueError, match=r"TinyNet\(\*\*\{'width': 3\}\) failed.*init_kwargs"):
        models.load_module_model(TINY, bad)
    torch.save(model.state_dict(), tmp_path / "tiny.pt")
    with pytest.raises(InputFileError, match="a .safetensors state_dict"):
        models.load_module_model(TINY, tmp_path / "tiny.pt")
    with pytest.raises(ValueError, match="init_kwargs must be JSON"):
        models.save_module_safetensors(model, tmp_path / "x.safetensors", init_kwargs={"f": object()})
    with pytest.raises(ValueError, match="student.model_class is required"):
        models.build_student(StudentConfig(arch="module"), load_dataset(DataConfig(name="blobs")))


def test_module_teacher_and_module_student_distill(tiny_weights, tmp_path, allowed):
    from perco_viz.distill import distill, resume

    path, _ = tiny_weights
    cfg = RunConfig().override(**{
        "teacher.kind": "module", "teacher.arch": TINY, "teacher.path": str(path),
        "student.arch": "module", "student.model_class": "fixture_nets:NoArgs", "student.layer": "proj",
        "train.epochs": 1, "data.probe_size": 100, "train.device": "cpu"})
    result = distill(cfg, out=tmp_path)
    assert result.status == "finished", result.error
    run = result.run_dir
    saved = json.loads((run.path / "config.json").read_text())
    assert saved["student"]["dim"] == 12 and saved["student"]["model_class"] == "fixture_nets:NoArgs"
    assert run.load_snapshot(run.snapshot_indices()[-1]).student.shape == (100, 12)
    assert run.config().teacher.kind == "module"
    again = resume(run, epochs=2)  # the checkpoint's student (FeatureModel keys) goes on; the width holds
    assert again.status == "finished", again.error
    assert run.config().student.dim == 12 and len(run.snapshot_indices()) == 3


def test_a_resume_whose_model_changed_width_is_refused_and_leaves_the_run(tmp_path, allowed, monkeypatch):
    from perco_viz.distill import distill, resume

    cfg = RunConfig().override(**{"teacher.kind": "identity", "student.arch": "module",
                                  "student.model_class": "fixture_nets:NoArgs", "train.epochs": 1,
                                  "data.probe_size": 100, "train.device": "cpu"})
    run = distill(cfg, out=tmp_path).run_dir
    before = (run.path / "config.json").read_bytes()

    class Narrower(torch.nn.Module):  # the class changed since the run started: 5 features, not 12
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 5))

        def forward(self, x):
            return self.proj(x)

    monkeypatch.setattr(fixture_nets, "NoArgs", Narrower)
    result = resume(run, epochs=2)
    assert "now gives 5-wide features but this run recorded student.dim = 12" in result.error
    assert (run.path / "config.json").read_bytes() == before and len(run.snapshot_indices()) == 2


def test_a_module_student_trained_by_a_run_is_diagnosed_from_its_weights(tiny_weights, tmp_path, digits, allowed):
    from perco_viz.analysis import diagnose
    from perco_viz.distill import distill

    cfg = RunConfig().override(**{"teacher.kind": "identity", "student.arch": "module", "student.model_class": TINY,
                                  "train.epochs": 1, "data.probe_size": 100, "train.device": "cpu"})
    result = distill(cfg, out=tmp_path)
    assert result.status == "finished", result.error
    run = result.run_dir
    assert run.config().student.dim == 6  # TinyNet's embed layer (default dim=6)
    student = StudentConfig(arch="module", model_class=TINY, path=str(run.student_path))  # keys "model.*": fit
    pair = diagnose.pair_from_model_configs(digits, TeacherConfig(kind="identity"), student)
    last = run.load_snapshot(run.snapshot_indices()[-1])
    rows = run.teacher_probe()["indices"]  # the probe set's rows of the test split
    assert pair.student.shape == (digits.n_test, 6)
    np.testing.assert_allclose(pair.student[rows], last.student, rtol=1e-4, atol=1e-5)  # the trained weights


def test_the_setup_page_sizes_a_module_student_by_its_layer(app_env, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from ui.setup import key

    monkeypatch.setenv(TRUSTED_MODULES_ENV, "fixture_nets")
    page = str(Path(__file__).resolve().parent.parent / "pages" / "1_Setup.py")
    at = AppTest.from_file(page, default_timeout=60).run()
    at.selectbox(key=key("student", "arch")).select("module").run()
    assert at.slider(key=key("student", "dim")).disabled  # the model's own width is used
    at.text_input(key=key("student", "model_class")).input("fixture_nets:NoArgs").run()
    assert not at.exception
    assert any("Student features: **12-d**" in c.value and "the run records this width" in c.value
               for c in at.caption)
    at.text_input(key=key("student", "layer")).input("nope").run()
    assert any("'nope' is not a module of this NoArgs" in e.value for e in at.error)


def test_the_cli_imports_a_module_student_with_trust_code_only(tmp_path, monkeypatch, capsys):
    from perco_viz.cli import main

    monkeypatch.delenv(TRUSTED_MODULES_ENV, raising=False)
    args = ["distill", "--teacher.kind", "identity", "--student.arch", "module", "--student.model_class", TINY,
            "--train.epochs", "1", "--data.probe_size", "100", "--train.device", "cpu", "--out", str(tmp_path), "--quiet"]
    assert main(args) == 1
    assert "--trust-code" in capsys.readouterr().err
    assert main([*args, "--trust-code"]) == 0
