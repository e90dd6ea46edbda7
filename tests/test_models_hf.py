"""Hugging Face models from a local folder as teacher or student: the engine, Diagnose, refusals.

The model is a tiny randomly initialised ``ViTModel`` saved by the test (digits are (1, 8, 8)
images: 8-pixel images, 4-pixel patches, one channel: 4 patch tokens + the CLS token, 32 wide).
Nothing is downloaded (``HF_HUB_OFFLINE=1``, ``local_files_only=True``).
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
import transformers  # noqa: F401 — the [hf] extra, installed by `make setup`: missing is a failure, not a skip

from perco_viz import models
from perco_viz.analysis import diagnose
from perco_viz.config import DataConfig, RunConfig, StudentConfig, TeacherConfig
from perco_viz.data import load_dataset
from perco_viz.safe_io import InputFileError, OptionalDependencyError

HIDDEN, TOKENS = 32, 5


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    """A folder written by ``ViTModel.save_pretrained``: config.json and model.safetensors."""
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    model = ViTModel(ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=HIDDEN, num_hidden_layers=2,
                               num_attention_heads=2, intermediate_size=64))
    folder = tmp_path_factory.mktemp("vit")
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig(name="digits"))


def _small(**overrides) -> RunConfig:
    return RunConfig().override(**{"train.epochs": 1, "data.probe_size": 100, "train.batch_size": 256,
                                   "train.device": "cpu", **overrides})


def test_hf_teacher_features_at_a_named_layer_with_the_stated_pooling(vit_dir, digits):
    from transformers import ViTModel

    x = digits.X_test[:6]
    reference = ViTModel.from_pretrained(str(vit_dir), local_files_only=True).eval()
    with torch.no_grad():
        hidden = reference(x).last_hidden_state  # (6, 5, 32)
    feats = {}
    for pooling in ("flatten", "cls", "mean"):
        teacher = models.load_teacher(TeacherConfig(kind="huggingface", path=str(vit_dir), pooling=pooling), digits)
        with torch.no_grad():
            feats[pooling] = teacher(x)
        assert teacher.info["class"] == "ViTModel"
    assert feats["flatten"].shape == (6, TOKENS * HIDDEN)
    torch.testing.assert_close(feats["cls"], hidden[:, 0])
    torch.testing.assert_close(feats["mean"], hidden.mean(1))
    first_block = next(n for n in models.list_modules(reference) if n.endswith(("layer.0", "layers.0")))
    inner = models.load_teacher(TeacherConfig(kind="huggingface", path=str(vit_dir), layer=first_block, pooling="cls"), digits)
    assert inner.feature_dim == HIDDEN and not torch.allclose(inner(x), feats["cls"])


def test_an_unknown_layer_and_cls_pooling_of_a_2d_output_are_refused(vit_dir, digits):
    with pytest.raises(ValueError, match="layer 'blocks.nope' is not a module of this ViTModel; valid names"):
        models.load_teacher(TeacherConfig(kind="huggingface", path=str(vit_dir), layer="blocks.nope"), digits)
    teacher = models.load_teacher(TeacherConfig(kind="huggingface", path=str(vit_dir), layer="pooler.dense", pooling="cls"),
                                  digits)  # pooler.dense gives (n, 32): no tokens to pool
    with pytest.raises(ValueError, match=r"pooling 'cls' takes a \(inputs, tokens, hidden\) output.*\(2, 32\)"):
        _ = teacher.feature_dim


def test_a_folder_without_safetensors_weights_is_refused_and_nothing_is_unpickled(tmp_path, vit_dir, digits,
                                                                                     monkeypatch):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_bytes((vit_dir / "config.json").read_bytes())
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04 not to be loaded")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("a pickle was loaded"))
    with pytest.raises(InputFileError, match="no safetensors weights.*only pytorch_model.bin.*save_pretrained"):
        models.load_teacher(TeacherConfig(kind="huggingface", path=str(folder)), digits)
    with pytest.raises(InputFileError, match="is not a folder"):
        models.load_hf_model(vit_dir / "config.json")
    with pytest.raises(ValueError, match="teacher.path is required"):
        models.load_teacher(TeacherConfig(kind="huggingface"), digits)
    with pytest.raises(ValueError, match="'Path' is not a model class of transformers"):
        models.load_hf_model(vit_dir, model_class="Path")


def test_a_missing_transformers_is_named(vit_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    with pytest.raises(OptionalDependencyError, match="'transformers'.*pip install transformers"):
        models.load_hf_model(vit_dir)


def test_the_config_takes_the_hf_kinds_and_poolings():
    cfg = RunConfig().override(**{"teacher.kind": "huggingface", "teacher.pooling": "cls", "student.arch": "huggingface",
                                  "student.pooling": "mean", "student.layer": "layernorm"})
    assert RunConfig.from_text(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="teacher.pooling must be one of flatten, cls, mean"):
        RunConfig().override(**{"teacher.pooling": "max"})


def test_hf_teacher_and_builtin_student_distill(vit_dir, tmp_path):
    from perco_viz.distill import distill

    cfg = _small(**{"teacher.kind": "huggingface", "teacher.path": str(vit_dir), "teacher.pooling": "cls"})
    result = distill(cfg, out=tmp_path)
    assert result.status == "finished", result.error
    run = result.run_dir
    assert run.config().teacher.kind == "huggingface" and run.config().student.dim == 8
    probe = run.load_snapshot(run.snapshot_indices()[-1])
    assert probe.student.shape == (100, 8)


def test_hf_student_records_its_own_width_in_the_run(vit_dir, tmp_path):
    from perco_viz.distill import distill

    cfg = _small(**{"teacher.kind": "identity", "student.arch": "huggingface", "student.path": str(vit_dir),
                    "student.pooling": "mean"})
    assert cfg.student.dim == 8  # what the config said; the model's features are 32 wide
    result = distill(cfg, out=tmp_path)
    assert result.status == "finished", result.error
    run = result.run_dir
    assert json.loads((run.path / "config.json").read_text())["student"]["dim"] == HIDDEN
    last = run.load_snapshot(run.snapshot_indices()[-1])
    first = run.load_snapshot(0)
    assert last.student.shape == (100, HIDDEN) and not (last.student == first.student).all()  # it trained


def test_an_hf_student_wider_than_a_run_records_is_refused_before_training(vit_dir, tmp_path, monkeypatch):
    from perco_viz import config
    from perco_viz.distill import distill

    monkeypatch.setattr(config, "MAX_STUDENT_DIM", 100)  # flatten gives 5 tokens x 32 = 160
    cfg = _small(**{"teacher.kind": "identity", "student.arch": "huggingface", "student.path": str(vit_dir)})
    result = distill(cfg, out=tmp_path)
    assert result.status == "failed"
    assert "160 wide (layer default, pooling flatten), over the 100" in result.error
    assert "student.pooling cls or mean" in result.error and not result.run_dir.snapshot_indices()


def test_diagnose_pair_from_an_hf_teacher_and_a_module_student(vit_dir, digits, tmp_path, monkeypatch):
    import fixture_nets

    monkeypatch.setenv("PERCO_VIZ_TRUSTED_MODULES", "fixture_nets")
    path = models.save_module_safetensors(fixture_nets.TinyNet(dim=6), tmp_path / "s.safetensors",
                                          init_kwargs={"dim": 6})
    pair = diagnose.pair_from_model_configs(
        digits, TeacherConfig(kind="huggingface", path=str(vit_dir), pooling="cls"),
        StudentConfig(arch="module", model_class="fixture_nets:TinyNet", path=str(path)), source="test")
    assert pair.teacher.shape == (digits.n_test, HIDDEN) and pair.student.shape == (digits.n_test, 6)
    panel = diagnose.compute_panel(pair)
    assert 0.0 <= panel.report["pc"] <= 1.0 and panel.report["knn_acc"] is not None


def test_the_diagnose_page_runs_an_hf_teacher_and_a_module_student(app_env, vit_dir, tmp_path, monkeypatch):
    from pathlib import Path

    import fixture_nets
    from streamlit.testing.v1 import AppTest

    page = str(Path(__file__).resolve().parent.parent / "pages" / "6_Diagnose.py")
    monkeypatch.setenv("PERCO_VIZ_DATA_ROOTS", str(vit_dir.parent))  # the operator allows the models' folder
    monkeypatch.delenv("PERCO_VIZ_TRUSTED_MODULES", raising=False)
    weights = models.save_module_safetensors(fixture_nets.TinyNet(dim=6), tmp_path / "s.safetensors",
                                             init_kwargs={"dim": 6}).read_bytes()
    at = AppTest.from_file(page, default_timeout=60).run()
    at.radio(key="diag-source").set_value("models").run()
    at.selectbox(key="diag-teacher-kind").select("huggingface").run()
    at.selectbox(key="diag-student-kind").select("module").run()
    assert at.button(key="diag-models-go").disabled  # no folder, class nor checkpoint yet
    at.text_input(key="diag-teacher-folder").input(str(vit_dir))
    at.text_input(key="diag-student-class").input("fixture_nets:TinyNet")
    at.file_uploader(key="diag-student-model").set_value(("s.safetensors", weights, "application/octet-stream"))
    at.selectbox(key="diag-teacher-pooling").select("cls").run()
    at.button(key="diag-models-go").click().run()
    assert not at.exception
    assert at.error and "PERCO_VIZ_TRUSTED_MODULES=fixture_nets" in at.error[0].value  # not allowed: said how to
    monkeypatch.setenv("PERCO_VIZ_TRUSTED_MODULES", "fixture_nets")
    at.button(key="diag-models-go").click().run()
    assert not at.exception and not at.error and at.metric
