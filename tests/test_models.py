"""Built-in architectures, FeatureModel, safe loading, the cached built-in teacher."""

from __future__ import annotations

import importlib.util
import os
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from perco_viz.config import DataConfig, StudentConfig, TeacherConfig
from perco_viz.data import load_dataset
from perco_viz.models import (
    TEACHER_KINDS,
    FeatureModel,
    ImageAdapter,
    StudentCNN,
    StudentMLP,
    TeacherCNN,
    TeacherMLP,
    build_student,
    evaluate_accuracy,
    extract_features,
    list_modules,
    load_model_safetensors,
    load_teacher,
    save_model_safetensors,
    teacher_accuracy,
    teacher_cache_path,
    train_teacher,
)
from perco_viz.safe_io import (
    InputFileError,
    OptionalDependencyError,
    load_state_dict,
    save_safetensors,
)


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig(name="digits"))


@pytest.fixture(scope="module")
def blobs():
    return load_dataset(DataConfig(name="blobs", n_samples=200))


class Evil:
    """Unpickling this would create ``marker`` (a stand-in for arbitrary code)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


class WithFc(nn.Module):
    """A torchvision-like classifier: ``fc`` head on pooled features."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(10, 6), nn.ReLU())
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(self.trunk(x))


# ----------------------------------------------------------------------------- architectures


def test_builtin_shapes(digits):
    x = digits.X_train[:5]
    assert TeacherCNN((1, 8, 8), 10)(x).shape == (5, 10)
    assert TeacherMLP((1, 8, 8), 10)(x).shape == (5, 10)
    assert StudentMLP((1, 8, 8), dim=4)(x).shape == (5, 4)
    assert StudentCNN((1, 8, 8), dim=3)(x).shape == (5, 3)
    assert TeacherCNN((3, 32, 32), 7)(torch.rand(2, 3, 32, 32)).shape == (2, 7)
    assert TeacherCNN((1, 3, 3), 2)(torch.rand(2, 1, 3, 3)).shape == (2, 2)
    with pytest.raises(ValueError, match="image inputs"):
        StudentCNN((10,), dim=3)


def test_list_modules():
    names = list_modules(TeacherCNN((1, 8, 8), 10))
    assert {"features", "features.0", "embed", "embed.1", "head"} <= set(names)
    assert "" not in names and names.index("features") < names.index("head")
    assert list_modules(FeatureModel(TeacherMLP((4,), 2))) == list_modules(TeacherMLP((4,), 2))


# ----------------------------------------------------------------------------- FeatureModel


def test_feature_model_defaults_to_embed_of_builtins(digits):
    model = TeacherCNN((1, 8, 8), 10)
    fm = FeatureModel(model, input_shape=(1, 8, 8))
    x = digits.X_test[:6]
    assert fm.layer == "embed" and fm.feature_dim == 128
    with torch.no_grad():
        expected = model.embed(model.features(x))
        assert torch.allclose(fm(x), expected)
        assert torch.allclose(fm.logits(x), model(x))
    feats, logits = fm.features_and_logits(x)
    assert feats.shape == (6, 128) and logits.shape == (6, 10)


def test_feature_model_layer_hook_flattens(digits):
    model = TeacherCNN((1, 8, 8), 10)
    fm = FeatureModel(model, "features.2", input_shape=(1, 8, 8))  # ReLU after conv 1
    x = digits.X_test[:3]
    with torch.no_grad():
        expected = model.features[:3](x).flatten(1)
    assert torch.allclose(fm(x), expected) and fm.feature_dim == 32 * 8 * 8


def test_feature_model_penultimate_and_plain_output():
    fm = FeatureModel(WithFc(), input_shape=(10,))
    x = torch.randn(4, 10)
    assert fm.head_name == "fc" and fm.has_head and fm.feature_dim == 6
    with torch.no_grad():
        assert torch.allclose(fm(x), fm.model.trunk(x)) and fm.logits(x).shape == (4, 3)
    seq = nn.Sequential(nn.Linear(10, 5), nn.Tanh())
    plain = FeatureModel(seq, input_shape=(10,))
    assert plain.layer is None and not plain.has_head and plain.logits(x) is None
    assert plain.feature_dim == 5
    vgg_like = nn.Sequential()
    vgg_like.add_module("classifier", nn.Sequential(nn.Flatten(), nn.Dropout(), nn.Linear(10, 2)))
    assert FeatureModel(vgg_like).head_name == "classifier.2"
    vit_like = nn.Sequential()
    vit_like.add_module("heads", nn.Sequential(OrderedDict(head=nn.Linear(10, 2))))
    assert FeatureModel(vit_like).head_name == "heads.head"


def test_unknown_layer_lists_valid_names():
    with pytest.raises(ValueError, match=r"layer 'embedding' is not a module.*embed") as err:
        FeatureModel(TeacherMLP((4,), 2), "embedding")
    assert "list_modules" in str(err.value)


def test_teacher_is_frozen_and_stays_in_eval():
    model = TeacherCNN((1, 8, 8), 10).train()
    fm = FeatureModel(model, input_shape=(1, 8, 8))
    assert not any(p.requires_grad for p in fm.parameters())
    assert not model.training and not fm.training
    fm.train()
    assert not model.training and not model.features[1].training  # batch norm fixed
    student = FeatureModel(StudentMLP((4,), 2), frozen=False)
    student.train()
    assert student.model.training and all(p.requires_grad for p in student.parameters())


def test_extract_features_batches_and_restores_mode(digits):
    student = StudentMLP((1, 8, 8), dim=5).train()
    X = digits.X_test[:50]
    feats = extract_features(student, X, batch_size=7)
    assert feats.shape == (50, 5) and not feats.requires_grad and student.training
    with torch.no_grad():
        assert torch.allclose(feats, student(X), atol=1e-6)


def test_image_adapter():
    out = ImageAdapter(16)(torch.rand(2, 1, 8, 8))
    assert out.shape == (2, 3, 16, 16)


# ----------------------------------------------------------------------------- built-in teacher


@pytest.mark.slow
def test_builtin_teacher_trains_on_digits_and_is_cached(digits, tmp_path):
    calls = []
    cfg = TeacherConfig(kind="builtin")
    teacher = load_teacher(cfg, digits, cache_dir=tmp_path, progress=lambda *a: calls.append(a))
    acc = evaluate_accuracy(teacher.model, digits.X_test, digits.y_test)
    assert teacher_accuracy(teacher, digits) == pytest.approx(acc)
    assert acc >= 0.97, f"built-in teacher reached {acc:.3f} test accuracy on digits"
    assert calls and calls[-1][0] == calls[-1][1] and len(calls) == calls[-1][1]
    assert teacher.info["cached"] is False and teacher.info["test_accuracy"] == pytest.approx(acc)
    assert Path(teacher.info["cache_path"]) == teacher_cache_path(digits, tmp_path)
    assert teacher.feature_dim == 128 and teacher.has_head

    again = load_teacher(cfg, digits, cache_dir=tmp_path, progress=lambda *a: calls.append(("again", *a)))
    assert again.info["cached"] is True and calls[-1][0] != "again"  # loaded, not trained again
    assert again.info["test_accuracy"] == teacher.info["test_accuracy"]
    for (k, a), (_, b) in zip(teacher.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert torch.equal(extract_features(teacher, digits.X_test), extract_features(again, digits.X_test))


def test_cache_key_depends_on_data_and_seed(tmp_path):
    a = load_dataset(DataConfig(name="blobs", n_samples=100, seed=0))
    b = load_dataset(DataConfig(name="blobs", n_samples=100, seed=1))
    c = load_dataset(DataConfig(name="blobs", n_samples=120, seed=0))
    paths = {teacher_cache_path(d, tmp_path) for d in (a, b, c)}
    assert len(paths) == 3 and all(p.parent == tmp_path / "teachers" for p in paths)


@pytest.mark.slow
def test_builtin_teacher_on_vectors_and_corrupt_cache(blobs, tmp_path):
    path = teacher_cache_path(blobs, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="retraining"):
        teacher = load_teacher(TeacherConfig(), blobs, cache_dir=tmp_path)
    assert isinstance(teacher.model, TeacherMLP) and teacher.info["test_accuracy"] > 0.9
    assert load_model_safetensors(path).config == teacher.model.config


def test_unlabeled_data_suggests_identity(tmp_path):
    np.savez(tmp_path / "u.npz", X=np.random.default_rng(0).normal(size=(30, 3)))
    ds = load_dataset(DataConfig(name="npz", path=str(tmp_path / "u.npz")))
    with pytest.raises(ValueError, match="identity"):
        train_teacher(ds)
    with pytest.raises(ValueError, match="identity"):
        load_teacher(TeacherConfig(kind="builtin"), ds, cache_dir=tmp_path)
    teacher = load_teacher(TeacherConfig(kind="identity"), ds)
    assert torch.equal(teacher(ds.X_test), ds.X_test) and teacher.logits(ds.X_test) is None
    assert teacher_accuracy(teacher, ds) is None


def test_identity_teacher_flattens_images(digits):
    teacher = load_teacher(TeacherConfig(kind="identity"), digits)
    assert teacher.feature_dim == 64 and teacher(digits.X_test[:2]).shape == (2, 64)


def test_teacher_kind_errors(blobs):
    assert set(TEACHER_KINDS) == {"builtin", "torchvision", "timm", "torchscript", "safetensors", "identity",
                                  "huggingface", "module"}
    with pytest.raises(ValueError, match="unknown teacher kind 'hf'"):
        load_teacher(TeacherConfig(kind="hf"), blobs)
    with pytest.raises(ValueError, match="teacher.path is required"):
        load_teacher(TeacherConfig(kind="torchscript"), blobs)


# ----------------------------------------------------------------------------- files


def test_safetensors_round_trip(digits, tmp_path):
    model = TeacherCNN((1, 8, 8), 10).eval()
    path = save_model_safetensors(FeatureModel(model), tmp_path / "t.safetensors", metadata={"note": "x"})
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]  # no temporary file left
    back = load_model_safetensors(path)
    assert isinstance(back, TeacherCNN) and not back.training
    x = digits.X_test[:8]
    with torch.no_grad():
        assert torch.equal(back(x), model(x))
    teacher = load_teacher(TeacherConfig(kind="safetensors", path=str(path)), digits)
    assert torch.equal(teacher(x), FeatureModel(model)(x))


def test_student_file_from_safetensors_and_pt(digits, tmp_path):
    student = StudentMLP((1, 8, 8), dim=4, hidden=16)
    x = digits.X_test[:5]
    path = save_model_safetensors(student, tmp_path / "s.safetensors")
    loaded = build_student(StudentConfig(arch="file", path=str(path)), digits)
    assert loaded.training and all(p.requires_grad for p in loaded.parameters())
    with torch.no_grad():
        assert torch.equal(loaded(x), student(x))
    # a plain state dict in a checkpoint container, read with weights_only
    torch.save({"state_dict": student.state_dict(), "epoch": 3}, tmp_path / "s.pt")
    cfg = StudentConfig(arch="file", path=str(tmp_path / "s.pt"), dim=4, hidden=16)
    with torch.no_grad():
        assert torch.equal(build_student(cfg, digits)(x), student(x))
    with pytest.raises(InputFileError, match="do not fit StudentMLP"):
        build_student(StudentConfig(arch="file", path=str(tmp_path / "s.pt"), dim=5, hidden=16), digits)


def test_pt_state_dict_unwrapping(tmp_path):
    sd = TeacherMLP((4,), 2).state_dict()
    for key in ("model", "state_dict"):
        torch.save({key: {f"module.{k}": v for k, v in sd.items()}, "step": 1}, tmp_path / "w.pth")
        loaded = load_state_dict(tmp_path / "w.pth")
        assert loaded.keys() == sd.keys() and all(torch.equal(loaded[k], sd[k]) for k in sd)
    torch.save({"w": torch.ones(2), "lr": 0.1}, tmp_path / "mixed.bin")
    with pytest.raises(InputFileError, match="not tensors"):
        load_state_dict(tmp_path / "mixed.bin")
    torch.save([torch.ones(2)], tmp_path / "list.pt")
    with pytest.raises(InputFileError, match="not a state_dict"):
        load_state_dict(tmp_path / "list.pt")


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_round_trip(digits, tmp_path):
    student = StudentCNN((1, 8, 8), dim=3).eval()
    path = tmp_path / "s.pt"
    torch.jit.script(student).save(str(path))
    x = digits.X_test[:4]
    with pytest.raises(InputFileError, match="runs the code it carries.*safetensors"):  # not trusted: refused
        build_student(StudentConfig(arch="file", path=str(path)), digits)
    with pytest.raises(InputFileError, match="runs the code it carries.*--trust-code"):
        load_teacher(TeacherConfig(kind="torchscript", path=str(path)), digits)
    loaded = build_student(StudentConfig(arch="file", path=str(path)), digits, trust_code=True)
    with torch.no_grad():
        assert torch.allclose(loaded(x), student(x), atol=1e-6)
    teacher = load_teacher(TeacherConfig(kind="torchscript", path=str(path)), digits, trust_code=True)
    assert teacher.feature_dim == 3 and not teacher.has_head
    with pytest.raises(ValueError, match="TorchScript"):
        load_teacher(TeacherConfig(kind="torchscript", path=str(path), layer="body"), digits, trust_code=True)
    with pytest.raises(InputFileError, match="TorchScript archive"):
        load_state_dict(path)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(InputFileError, match="not a loadable TorchScript"):
        load_teacher(TeacherConfig(kind="torchscript", path=str(tmp_path / "junk.pt")), digits, trust_code=True)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_pickle_is_refused_and_never_run(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"weight": torch.ones(2), "x": Evil(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    with pytest.raises(InputFileError, match="refuses to unpickle"):
        load_state_dict(path)
    with pytest.raises(InputFileError, match="refuses to unpickle"):
        build_student(StudentConfig(arch="file", path=str(path)), load_dataset(DataConfig(name="circles", n_samples=20)))
    assert not marker.exists()


def test_corrupt_missing_and_oversized_weights(tmp_path, monkeypatch):
    path = save_safetensors({"w": torch.ones(1000)}, tmp_path / "w.safetensors")
    assert torch.equal(load_state_dict(path)["w"], torch.ones(1000))
    (tmp_path / "cut.safetensors").write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputFileError, match="truncated or corrupt"):
        load_state_dict(tmp_path / "cut.safetensors")
    torch.save({"w": torch.ones(3)}, tmp_path / "w.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "w.pt").read_bytes()[:100])
    with pytest.raises(InputFileError, match="truncated or corrupt"):
        load_state_dict(tmp_path / "cut.pt")
    with pytest.raises(InputFileError, match="does not exist"):
        load_state_dict(tmp_path / "none.safetensors")
    with pytest.raises(InputFileError, match="unknown weights format '.onnx'"):
        (tmp_path / "m.onnx").write_bytes(b"x")
        load_state_dict(tmp_path / "m.onnx")
    with pytest.raises(InputFileError, match="limit"):
        load_state_dict(path, max_bytes=100)
    monkeypatch.setenv("PERCO_VIZ_MAX_FILE_MB", "0.001")
    with pytest.raises(InputFileError, match="PERCO_VIZ_MAX_FILE_MB"):
        load_state_dict(path)


def test_safetensors_without_metadata_needs_a_fitting_builtin(digits, tmp_path):
    sd = TeacherCNN((1, 8, 8), 10).state_dict()
    save_safetensors(sd, tmp_path / "plain.safetensors")
    teacher = load_teacher(TeacherConfig(kind="safetensors", path=str(tmp_path / "plain.safetensors")), digits)
    assert isinstance(teacher.model, TeacherCNN)
    with pytest.raises(InputFileError, match="perco_viz metadata"):
        load_model_safetensors(tmp_path / "plain.safetensors")
    save_safetensors({"x": torch.ones(2)}, tmp_path / "other.safetensors")
    with pytest.raises(InputFileError, match="do not fit"):
        load_teacher(TeacherConfig(kind="safetensors", path=str(tmp_path / "other.safetensors")), digits)


# ----------------------------------------------------------------------------- students


def test_build_student(digits, blobs):
    assert build_student(StudentConfig(arch="mlp", dim=8), blobs)(blobs.X_test[:3]).shape == (3, 8)
    assert build_student(StudentConfig(arch="cnn", dim=2), digits)(digits.X_test[:3]).shape == (3, 2)
    with pytest.raises(ValueError, match="needs images"):
        build_student(StudentConfig(arch="cnn"), blobs)
    with pytest.raises(ValueError, match="unknown student arch 'vit'"):
        build_student(StudentConfig(arch="vit"), blobs)
    with pytest.raises(ValueError, match="student.path is required"):
        build_student(StudentConfig(arch="file"), blobs)
    with pytest.raises(ValueError, match="dim"):
        build_student(StudentConfig(dim=0), blobs)


# ----------------------------------------------------------------------------- optional libraries


@pytest.mark.parametrize("kind", ["torchvision", "timm"])
def test_missing_optional_library_gives_install_hint(kind, digits, tmp_path):
    if importlib.util.find_spec(kind) is not None:
        pytest.skip(f"{kind} is installed")
    cfg = TeacherConfig(kind=kind, arch="resnet18", path=str(tmp_path / "w.safetensors"))
    with pytest.raises(OptionalDependencyError, match=f"pip install {kind}") as err:
        load_teacher(cfg, digits)
    assert isinstance(err.value, ImportError)


def test_torchvision_teacher_from_local_weights(digits, tmp_path):
    tv = pytest.importorskip("torchvision")
    model = tv.models.get_model("resnet18", weights=None, num_classes=10)
    save_safetensors(model.state_dict(), tmp_path / "r18.safetensors")
    cfg = TeacherConfig(kind="torchvision", arch="resnet18", path=str(tmp_path / "r18.safetensors"))
    teacher = load_teacher(cfg, digits)
    assert teacher.head_name == "fc" and teacher(digits.X_test[:2]).shape == (2, 512)
    assert teacher.logits(digits.X_test[:2]).shape == (2, 10)
    with pytest.raises(ValueError, match="teacher.path is required"):
        load_teacher(TeacherConfig(kind="torchvision", arch="resnet18"), digits)


def test_timm_teacher_from_local_weights(digits, tmp_path):
    timm = pytest.importorskip("timm")
    model = timm.create_model("resnet18", pretrained=False, num_classes=10)
    save_safetensors(model.state_dict(), tmp_path / "t.safetensors")
    teacher = load_teacher(TeacherConfig(kind="timm", arch="resnet18", path=str(tmp_path / "t.safetensors")), digits)
    assert teacher(digits.X_test[:2]).shape == (2, 512)


# ----------------------------------------------------------------------------- torchvision / timm glue
class _TinyResNet(nn.Module):
    """What torchvision's and timm's ResNets look like from outside: ``fc`` head after pooling."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=4)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape))
        return self.fc(torch.flatten(self.avgpool(torch.relu(self.conv1(x))), 1))


def _fake_package(monkeypatch, name: str):
    """A stand-in for torchvision/timm (not installed in CI: their real tests skip), so that
    perco_viz's own glue — safe weight loading, strict state dicts, the head, the input
    adapter, error messages — is tested everywhere."""
    import types

    made: list[_TinyResNet] = []

    def build(arch, num_classes=1000, **_):
        if arch != "resnet18":
            raise (RuntimeError if name == "timm" else ValueError)(f"Unknown model {arch}")
        made.append(_TinyResNet(num_classes))
        if name == "timm":
            made[-1].pretrained_cfg = {"input_size": (3, 64, 64), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
        return made[-1]

    pkg = types.ModuleType(name)
    if name == "torchvision":
        pkg.models = types.SimpleNamespace(get_model=lambda arch, weights=None, num_classes=1000: build(arch, num_classes))
    else:
        pkg.create_model = lambda arch, pretrained=False, num_classes=1000: build(arch, num_classes)
    monkeypatch.setitem(__import__("sys").modules, name, pkg)
    return made


@pytest.mark.parametrize("kind, size", [("torchvision", 224), ("timm", 64)])
def test_pretrained_teacher_glue_with_a_stand_in_package(monkeypatch, digits, tmp_path, kind, size):
    made = _fake_package(monkeypatch, kind)
    weights = _TinyResNet(num_classes=10)
    save_safetensors(weights.state_dict(), tmp_path / "w.safetensors")
    teacher = load_teacher(TeacherConfig(kind=kind, arch="resnet18", path=str(tmp_path / "w.safetensors")), digits)
    model = made[-1]
    assert model.fc.out_features == 10  # the class count read from the weights
    torch.testing.assert_close(model.conv1.weight, weights.conv1.weight)  # the file's weights, strictly
    feats = teacher(digits.X_test[:3])
    assert feats.shape == (3, 16) and teacher.head_name == "fc"  # penultimate layer: before the head
    assert model.seen[-1] == (3, 3, size, size)  # 1×8×8 digits made 3 channels at the model's size
    assert teacher.logits(digits.X_test[:3]).shape == (3, 10)
    with pytest.raises(ValueError, match="resnet99"):
        load_teacher(TeacherConfig(kind=kind, arch="resnet99", path=str(tmp_path / "w.safetensors")), digits)
    wrong = _TinyResNet(num_classes=10)
    wrong.conv1 = nn.Conv2d(3, 8, 3)
    save_safetensors(wrong.state_dict(), tmp_path / "wrong.safetensors")
    with pytest.raises(InputFileError):
        load_teacher(TeacherConfig(kind=kind, arch="resnet18", path=str(tmp_path / "wrong.safetensors")), digits)
