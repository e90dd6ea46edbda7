"""Teachers and students: built-in architectures, safe loading, feature extraction.

The engine only ever sees a :class:`FeatureModel`: ``forward(x)`` gives (n, d) features taken
at one named layer (by default the ``embed`` layer of a built-in model, the input of a
classifier head, or the model's output), and ``logits(x)`` gives class scores when the model
has a head. Every file goes through :mod:`perco_viz.safe_io`; nothing downloads.

>>> import torch
>>> from perco_viz.config import DataConfig, TeacherConfig
>>> from perco_viz.data import load_dataset
>>> ds = load_dataset(DataConfig(name="circles", n_samples=100))
>>> teacher = load_teacher(TeacherConfig(kind="identity"), ds)
>>> tuple(teacher(ds.X_test[:4]).shape), teacher.feature_dim
((4, 2), 2)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from perco_viz import paths
from perco_viz.config import StudentConfig, TeacherConfig
from perco_viz.data import Dataset
from perco_viz.safe_io import (
    InputFileError,
    check_file,
    import_class,
    is_torchscript_archive,
    load_state_dict,
    load_torchscript,
    read_safetensors_metadata,
    require,
    save_safetensors,
)

EMBED_DIM = 128
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_HEAD_NAMES = ("head", "fc", "classifier", "heads", "last_linear")
POOLINGS = ("flatten", "cls", "mean")  # how a layer's output becomes one (d,) row per input: pool_tokens

Progress = Callable[[int, int, float], None]


# ----------------------------------------------------------------------------- architectures


def _conv(c_in: int, c_out: int, bn: bool = True) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), *([nn.BatchNorm2d(c_out)] if bn else []), nn.ReLU()]


def _check_image_shape(in_shape: tuple[int, ...], arch: str) -> tuple[int, int, int]:
    if len(in_shape) != 3:
        raise ValueError(
            f"{arch} needs image inputs of shape (C, H, W), got input shape {tuple(in_shape)}; "
            "use an MLP for vector data"
        )
    return tuple(int(s) for s in in_shape)  # type: ignore[return-value]


class TeacherCNN(nn.Module):
    """Built-in image teacher: three conv layers, a 128-d ``embed`` layer, a linear ``head``.

    Args:
        in_shape: (C, H, W) of one image.
        n_classes: number of classes of the head.
        width: channels of the first conv layer.

    Shapes: (n, C, H, W) -> logits (n, n_classes); ``embed`` outputs (n, 128).
    """

    def __init__(self, in_shape: tuple[int, ...], n_classes: int, width: int = 32):
        super().__init__()
        c, h, w = _check_image_shape(in_shape, "TeacherCNN")
        self.config = {"in_shape": [c, h, w], "n_classes": n_classes, "width": width}
        pool = nn.MaxPool2d(2) if min(h, w) >= 4 else nn.Identity()
        self.features = nn.Sequential(
            *_conv(c, width), *_conv(width, 2 * width), pool, *_conv(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(4),
        )
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 16, EMBED_DIM), nn.ReLU())
        self.head = nn.Linear(EMBED_DIM, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, C, H, W) images -> (n, n_classes) logits."""
        return self.head(self.embed(self.features(x)))


class TeacherMLP(nn.Module):
    """Built-in vector teacher: two hidden layers, a 128-d ``embed`` layer, a linear ``head``.

    Shapes: (n, *in_shape) -> logits (n, n_classes); ``embed`` outputs (n, 128).
    """

    def __init__(self, in_shape: tuple[int, ...], n_classes: int, hidden: int = 256):
        super().__init__()
        self.config = {"in_shape": list(in_shape), "n_classes": n_classes, "hidden": hidden}
        d = math.prod(in_shape)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.embed = nn.Sequential(nn.Linear(hidden, EMBED_DIM), nn.ReLU())
        self.head = nn.Linear(EMBED_DIM, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, *in_shape) inputs -> (n, n_classes) logits."""
        return self.head(self.embed(self.body(x)))


class StudentMLP(nn.Module):
    """Built-in student for any input: flatten, two hidden layers, a linear ``embed`` to ``dim``.

    Shapes: (n, *in_shape) -> (n, dim) features.
    """

    def __init__(self, in_shape: tuple[int, ...], dim: int = 8, hidden: int = 256):
        super().__init__()
        self.config = {"in_shape": list(in_shape), "dim": dim, "hidden": hidden}
        d = math.prod(in_shape)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.embed = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, *in_shape) inputs -> (n, dim) features."""
        return self.embed(self.body(x))


class StudentCNN(nn.Module):
    """Built-in image student: two small conv layers, a hidden layer, a linear ``embed`` to ``dim``.

    Shapes: (n, C, H, W) -> (n, dim) features.
    """

    def __init__(self, in_shape: tuple[int, ...], dim: int = 8, width: int = 16, hidden: int = 64):
        super().__init__()
        c, h, w = _check_image_shape(in_shape, "StudentCNN")
        self.config = {"in_shape": [c, h, w], "dim": dim, "width": width, "hidden": hidden}
        pool = nn.MaxPool2d(2) if min(h, w) >= 4 else nn.Identity()
        self.body = nn.Sequential(
            *_conv(c, width, bn=False), pool, *_conv(width, 2 * width, bn=False), nn.AdaptiveAvgPool2d(2),
            nn.Flatten(), nn.Linear(2 * width * 4, hidden), nn.ReLU(),
        )
        self.embed = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, C, H, W) images -> (n, dim) features."""
        return self.embed(self.body(x))


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "TeacherCNN": TeacherCNN,
    "TeacherMLP": TeacherMLP,
    "StudentMLP": StudentMLP,
    "StudentCNN": StudentCNN,
}


def build_architecture(arch: str, config: dict[str, Any]) -> nn.Module:
    """A fresh built-in model from its class name and constructor arguments (``model.config``)."""
    if arch not in ARCHITECTURES:
        raise InputFileError(f"unknown built-in architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}")
    try:
        kwargs = dict(config)
        kwargs["in_shape"] = tuple(int(s) for s in kwargs["in_shape"])
        return ARCHITECTURES[arch](**kwargs)
    except (TypeError, ValueError, KeyError, RuntimeError, OverflowError) as exc:
        raise InputFileError(f"the stored configuration of {arch} does not fit it ({exc!r:.200})") from None


def teacher_architecture(dataset: Dataset) -> nn.Module:
    """The built-in teacher for ``dataset``: :class:`TeacherCNN` for images, else :class:`TeacherMLP`."""
    _require_labels(dataset)
    if dataset.is_image:
        return TeacherCNN(dataset.input_shape, dataset.n_classes)
    return TeacherMLP(dataset.input_shape, dataset.n_classes)


def _require_labels(dataset: Dataset) -> None:
    if dataset.y_train is None or not dataset.n_classes:
        raise ValueError(
            f"dataset {dataset.name!r} has no labels, so a built-in teacher cannot be trained; "
            "use teacher kind 'identity' (the raw inputs are the features) or bring a teacher file"
        )


def list_modules(model: nn.Module) -> list[str]:
    """Names of the sub-modules a UI can offer as the feature layer (in forward order).

    A :class:`FeatureModel` is looked through to the model it wraps.
    """
    inner = model.model if isinstance(model, FeatureModel) else model
    return [name for name, _ in inner.named_modules() if name]


# ----------------------------------------------------------------------------- feature model


def _find_head(model: nn.Module) -> str | None:
    """Name of the final classifier ``nn.Linear`` (``fc``, ``head``, ``classifier.6``...), if any."""
    modules = dict(model.named_modules())
    for name in _HEAD_NAMES:
        module = modules.get(name)
        while isinstance(module, (nn.Sequential, nn.ModuleList)) and len(module):
            child, module = list(module.named_children())[-1]
            name = f"{name}.{child}"
        if isinstance(module, nn.Linear):
            return name
        if module is not None and isinstance(modules.get(f"{name}.fc"), nn.Linear):
            return f"{name}.fc"  # timm-style heads: head.fc
    return None


def first_tensor(out: Any) -> torch.Tensor:
    """The tensor in a module's output: itself, the first item of a tuple/list, a dict's (a
    Hugging Face ModelOutput's) ``logits`` else its first value.

    Raises:
        ValueError: the output holds no tensor there.
    """
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        return first_tensor(out["logits"] if "logits" in out else next(iter(out.values()), None))
    if isinstance(out, (tuple, list)) and out:
        return first_tensor(out[0])
    raise ValueError(f"the model produced a {type(out).__name__}, not a tensor; choose a layer whose output "
                     "is a tensor")


def pool_tokens(x: torch.Tensor, pooling: str = "flatten") -> torch.Tensor:
    """One feature row per input from a layer's output.

    Args:
        x: (n, ...) a layer's output; for a transformer (n, tokens, hidden).
        pooling: ``flatten`` — every value of the output in one row, (n, prod(...)); ``cls`` —
            the first token, (n, hidden) (BERT's [CLS], ViT's class token); ``mean`` — the
            average over tokens, (n, hidden) (every token counts, padding included: give
            inputs without padding, or pool yourself).

    Returns:
        (n, d) features.

    Raises:
        ValueError: an unknown pooling, or ``cls``/``mean`` on an output that is not (n, tokens, hidden).
    """
    if pooling == "flatten":
        return x.flatten(1)
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    if x.dim() != 3:
        raise ValueError(
            f"pooling {pooling!r} takes a (inputs, tokens, hidden) output, but this layer gives shape "
            f"{tuple(x.shape)}; use pooling 'flatten', or choose a layer that outputs tokens"
        )
    return x[:, 0] if pooling == "cls" else x.mean(dim=1)


def find_layer(model: nn.Module, layer: str) -> nn.Module:
    """The sub-module of ``model`` named ``layer`` (one of :func:`list_modules`).

    Raises:
        ValueError: no such module; the message lists close names.
    """
    modules = dict(model.named_modules())
    if not isinstance(layer, str) or not layer or layer not in modules:
        raise _unknown_layer(model, str(layer))
    return modules[layer]


def _unknown_layer(model: nn.Module, layer: str) -> ValueError:
    names = list_modules(model)
    close = [n for n in names if layer.split(".")[-1] in n][:5] or names[-10:]
    return ValueError(
        f"layer {layer!r} is not a module of this {type(model).__name__}; valid names include "
        f"{close} (see list_modules(model) for all {len(names)})"
    )


class FeatureModel(nn.Module):
    """Features (n, d) from any model, read at one named layer with a forward hook.

    The default layer is the ``embed`` module of a built-in model; else the *input* of the
    classifier head (``fc``/``head``/``classifier``: the penultimate features); else the
    model's own output. TorchScript models give their output (their forward is compiled, so
    no hook can see inside).

    Args:
        model: the wrapped network.
        layer: name of the module whose output are the features (see :func:`list_modules`).
        preprocess: applied to inputs first (e.g. resize + ImageNet normalisation).
        input_shape: shape of one input, used to infer :attr:`feature_dim`.
        frozen: freeze the parameters and keep the model in eval mode (teachers).
        pooling: how the layer's output becomes one row per input (:func:`pool_tokens`):
            ``flatten`` (the default), ``cls`` or ``mean`` over a transformer's tokens.

    Shapes: ``forward`` (n, *input_shape) -> (n, d); ``logits`` -> (n, n_classes) or ``None``.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: str | None = None,
        *,
        preprocess: nn.Module | None = None,
        input_shape: tuple[int, ...] | None = None,
        frozen: bool = True,
        pooling: str = "flatten",
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
        self.model = model
        self.pooling = pooling
        self.preprocess = preprocess if preprocess is not None else nn.Identity()
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.frozen = frozen
        self.info: dict[str, Any] = {}
        self._captured: torch.Tensor | None = None
        self._feature_dim: int | None = None
        scripted = isinstance(model, torch.jit.ScriptModule)
        self.head_name = None if scripted else _find_head(model)
        self.layer, tap_input = self._resolve(layer, scripted)
        if self.layer is not None:
            module = model.get_submodule(self.layer)
            if tap_input:
                module.register_forward_pre_hook(self._capture_input)
            else:
                module.register_forward_hook(self._capture_output)
        if frozen:
            self.freeze()

    def _resolve(self, layer: str | None, scripted: bool) -> tuple[str | None, bool]:
        """(module name to hook, whether to take its input rather than its output)."""
        if layer is not None:
            if scripted:
                raise ValueError(
                    "a TorchScript model's forward is compiled, so perco_viz cannot read layer "
                    f"{layer!r} inside it; export a model whose output are the features, and leave layer empty"
                )
            if layer not in dict(self.model.named_modules()) or not layer:
                raise _unknown_layer(self.model, layer)
            return layer, False
        if isinstance(getattr(self.model, "embed", None), nn.Module) and not scripted:
            return "embed", False
        if self.head_name is not None:
            return self.head_name, True
        return None, False

    def _capture_output(self, module: nn.Module, args: Any, out: Any) -> None:
        self._captured = first_tensor(out)

    def _capture_input(self, module: nn.Module, args: Any) -> None:
        self._captured = first_tensor(args)

    def freeze(self) -> FeatureModel:
        """No gradients, eval mode (batch-norm statistics and dropout fixed)."""
        self.frozen = True
        self.requires_grad_(False)
        return self.train(False)

    def train(self, mode: bool = True) -> FeatureModel:
        """Set the mode; a frozen model stays in eval mode."""
        super().train(mode and not self.frozen)
        return self

    @property
    def has_head(self) -> bool:
        """Whether :meth:`logits` gives class scores."""
        return self.head_name is not None

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._captured = None
        out = first_tensor(self.model(self.preprocess(x)))
        feats = out if self.layer is None else self._captured
        self._captured = None
        if feats is None:
            raise RuntimeError(f"layer {self.layer!r} was not run by the model's forward; choose another layer")
        return pool_tokens(feats, self.pooling), out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, *input_shape) inputs -> (n, d) features."""
        return self._run(x)[0]

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features (n, d) and logits (n, n_classes) or ``None``, from one forward pass."""
        feats, out = self._run(x)
        return feats, out if self.has_head else None

    def logits(self, x: torch.Tensor) -> torch.Tensor | None:
        """(n, n_classes) class scores when the model has a classifier head, else ``None``."""
        return self.features_and_logits(x)[1]

    @property
    def feature_dim(self) -> int:
        """d, the width of the features (inferred once with a dummy forward pass)."""
        if self._feature_dim is None:
            if self.input_shape is None:
                raise ValueError("feature_dim needs input_shape; pass it to FeatureModel(...)")
            was_training = self.training
            self.train(False)
            with torch.no_grad():
                x = torch.zeros((2, *self.input_shape), device=device_of(self))
                self._feature_dim = int(self(x).shape[1])
            self.train(was_training)
        return self._feature_dim


def device_of(module: nn.Module) -> torch.device:
    """Where the module's first parameter (or buffer) lives; the CPU for a module without any."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


class ImageAdapter(nn.Module):
    """Make [0, 1] images fit an ImageNet model: 3 channels, ``size`` pixels, normalised.

    Shapes: (n, C, H, W) with C in {1, 3} -> (n, 3, size, size).
    """

    def __init__(self, size: int = 224, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD):
        super().__init__()
        self.size = size
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, C, H, W) in [0, 1] -> (n, 3, size, size) normalised."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (self.size, self.size):
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std


@torch.no_grad()
def extract_features(
    model: nn.Module, X: torch.Tensor, *, batch_size: int = 1024, device: str | torch.device | None = None
) -> torch.Tensor:
    """Features of all inputs, in batches, without gradients (compute teacher features once).

    Args:
        model: a :class:`FeatureModel` or any module returning (n, d) (a student); its
            train/eval mode is restored afterwards.
        X: (n, *input_shape) inputs (on any device).
        batch_size: inputs per forward pass.
        device: where to compute; the model is moved there (``None``: where the model is).

    Returns:
        (n, d) float32 features on the CPU.
    """
    device = device_of(model) if device is None else torch.device(device)
    model.to(device)
    was_training = model.training
    model.eval()
    try:
        parts = [model(X[i:i + batch_size].to(device)).flatten(1).float().cpu() for i in range(0, len(X), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts) if parts else torch.empty(0, 0)


# ----------------------------------------------------------------------------- saving


def save_model_safetensors(model: nn.Module, path: str | os.PathLike, *, metadata: dict[str, str] | None = None) -> Path:
    """Write a model's ``state_dict`` atomically; built-ins also store how to rebuild them.

    Args:
        model: any module (a :class:`FeatureModel` is unwrapped).
        path: destination ``*.safetensors``.
        metadata: extra string entries (e.g. ``{"test_accuracy": "0.98"}``).
    """
    inner = model.model if isinstance(model, FeatureModel) else model
    meta = dict(metadata or {})
    if type(inner).__name__ in ARCHITECTURES:
        meta["perco_viz.arch"] = type(inner).__name__
        meta["perco_viz.config"] = json.dumps(inner.config)
    return save_safetensors(inner.state_dict(), path, metadata=meta)


def load_model_safetensors(path: str | os.PathLike) -> nn.Module:
    """A fresh built-in model with the weights saved by :func:`save_model_safetensors` (eval mode)."""
    meta = read_safetensors_metadata(path)
    if "perco_viz.arch" not in meta:
        raise InputFileError(
            f"{Path(path).name!r} does not say which built-in architecture it holds (no perco_viz "
            "metadata); save it with perco_viz.models.save_model_safetensors"
        )
    try:
        config = json.loads(meta.get("perco_viz.config", ""))
    except ValueError:
        config = None
    if not isinstance(config, dict):
        raise InputFileError(
            f"{Path(path).name!r}: its perco_viz.config metadata is not a JSON object; save the model "
            "again with perco_viz.models.save_model_safetensors"
        )
    state = load_state_dict(path)
    with torch.device("meta"):  # shapes only: a forged config must not allocate a huge model
        shapes = {k: tuple(v.shape) for k, v in build_architecture(meta["perco_viz.arch"], config).state_dict().items()}
    if shapes != {k: tuple(v.shape) for k, v in state.items()}:
        raise InputFileError(
            f"{Path(path).name!r}: the weights do not match the architecture its metadata names "
            f"({meta['perco_viz.arch']}); the file is damaged or was edited, save it again"
        )
    model = build_architecture(meta["perco_viz.arch"], config)
    _check_finite_weights(state, path)
    _load_strict(model, state, path)
    return model.eval()


def _check_finite_weights(state: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Built-in weights are finite: NaN/inf means a damaged file (it would poison every feature)."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise InputFileError(
            f"{Path(path).name!r}: weights {bad[:3]} hold NaN/inf; the file is damaged or the model "
            "diverged: save or train it again"
        )


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()][1:4]
        raise InputFileError(
            f"the weights in {Path(path).name!r} do not fit {type(model).__name__}: {' '.join(lines)[:400]}; "
            "check the architecture / dataset they were trained for"
        ) from None


def load_builtin_weights(path: str | os.PathLike, candidates: list[nn.Module]) -> nn.Module:
    """Weights of a built-in architecture: rebuilt from perco_viz metadata, or the first fitting candidate.

    Args:
        path: ``.safetensors`` (or a ``.pt``/``.pth`` state_dict read with ``weights_only``).
        candidates: fresh models to try when the file has no perco_viz metadata.
    """
    if Path(path).suffix.lower() == ".safetensors" and "perco_viz.arch" in read_safetensors_metadata(path):
        return load_model_safetensors(path)
    state = load_state_dict(path)
    _check_finite_weights(state, path)
    errors = []
    for model in candidates:
        try:
            _load_strict(model, state, path)
            return model.eval()
        except InputFileError as exc:
            errors.append(str(exc))
    raise InputFileError(" / ".join(errors) or f"no built-in architecture to load {Path(path).name!r} into")


# ----------------------------------------------------------------------------- your own models

HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")  # what save_pretrained writes (one file, or shards)
HF_PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")
HF_CONFIG_MAX_BYTES = 16 << 20


def load_hf_model(path: str | os.PathLike, *, model_class: str | None = None) -> nn.Module:
    """A Hugging Face ``transformers`` model from a local folder, safely (eval mode, on the CPU).

    The folder is what ``model.save_pretrained(folder)`` writes: ``config.json`` and safetensors
    weights (``model.safetensors``, or shards with ``model.safetensors.index.json``). It is read
    with ``from_pretrained(folder, local_files_only=True, trust_remote_code=False,
    use_safetensors=True)``: nothing is downloaded, no code from the folder runs, and pickled
    weights (``pytorch_model.bin``) are refused.

    The model is later called with the input batch as its first positional argument: a vision
    model (``ViTModel``: ``pixel_values`` (n, C, H, W)) fits image data as it is; a text model
    needs token ids, which perco_viz's datasets do not hold.

    Args:
        path: the folder.
        model_class: a class of ``transformers`` (``AutoModel`` when empty, the architecture named
            in ``config.json``; ``ViTForImageClassification`` keeps the classifier head).

    Raises:
        OptionalDependencyError: ``transformers`` is not installed (``pip install perco_viz[hf]``).
        InputFileError: not a folder, no ``config.json``, no safetensors weights, or unreadable.
        ValueError: ``model_class`` is not a model class of ``transformers``.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise InputFileError(
            f"{str(folder)!r} is not a folder; a Hugging Face model is the folder written by "
            "model.save_pretrained(folder) (config.json and model.safetensors)"
        )
    check_file(folder / "config.json", max_bytes=HF_CONFIG_MAX_BYTES, what="Hugging Face config")
    if not any((folder / name).is_file() for name in HF_WEIGHTS):
        pickles = [name for name in HF_PICKLES if (folder / name).is_file()]
        found = f" it holds only {', '.join(pickles)}, which perco_viz never loads (a pickle can run code);" \
            if pickles else ""
        raise InputFileError(
            f"the folder {folder.name!r} has no safetensors weights (model.safetensors);{found} save the model "
            "with model.save_pretrained(folder, safe_serialization=True), or convert the weights to safetensors"
        )
    for shard in folder.glob("*.safetensors"):
        check_file(shard, what="Hugging Face weights")
    transformers = require("transformers", install="transformers", purpose="a Hugging Face model (the [hf] extra)")
    name = (model_class or "AutoModel").strip()
    cls = getattr(transformers, name, None) if name.isidentifier() else None
    if not isinstance(cls, type) or not hasattr(cls, "from_pretrained"):
        raise ValueError(
            f"{name!r} is not a model class of transformers; use AutoModel (the architecture config.json "
            "names), or a class such as ViTModel or ViTForImageClassification"
        )
    try:
        model = cls.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False,
                                    use_safetensors=True)
    except Exception as exc:  # a config transformers cannot read, weights that do not fit, ...
        first = " ".join(str(exc).split())[:300]
        raise InputFileError(
            f"the Hugging Face model in {folder.name!r} could not be loaded as {name} "
            f"({type(exc).__name__}: {first}); check that config.json and the weights belong together"
        ) from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"{name} gave a {type(model).__name__}, not a PyTorch model; use a PyTorch class")
    return model.eval()


def save_module_safetensors(model: nn.Module, path: str | os.PathLike, *, init_kwargs: dict[str, Any] | None = None,
                            metadata: dict[str, str] | None = None) -> Path:
    """Write your own ``nn.Module``'s weights for :func:`load_module_model` (atomically).

    The file holds the ``state_dict``, the keyword arguments of the class's constructor as JSON
    (``perco_viz.init_kwargs``) and, for information, the class (``perco_viz.class``).

    Args:
        model: the module (a :class:`FeatureModel` is unwrapped).
        path: destination ``*.safetensors``.
        init_kwargs: what ``type(model)(**init_kwargs)`` needs (JSON: numbers, text, lists, dicts).
        metadata: extra string entries.

    Raises:
        ValueError: ``init_kwargs`` is not a JSON object.
    """
    inner = model.model if isinstance(model, FeatureModel) else model
    try:
        kwargs = json.dumps(dict(init_kwargs or {}))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"init_kwargs must be JSON (numbers, text, lists, dicts): {exc}") from None
    meta = {**(metadata or {}), "perco_viz.init_kwargs": kwargs,
            "perco_viz.class": f"{type(inner).__module__}:{type(inner).__qualname__}"}
    return save_safetensors(inner.state_dict(), path, metadata=meta)


def _init_kwargs(path: str | os.PathLike) -> dict[str, Any]:
    raw = read_safetensors_metadata(path).get("perco_viz.init_kwargs", "{}")
    try:
        kwargs = json.loads(raw)
    except ValueError:
        kwargs = None
    if not isinstance(kwargs, dict):
        raise InputFileError(
            f"{Path(path).name!r}: its perco_viz.init_kwargs metadata is not a JSON object; save the model "
            "again with perco_viz.models.save_module_safetensors(model, path, init_kwargs={...})"
        )
    return kwargs


def state_mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> str:
    """What keeps ``state`` from loading into ``model`` (missing, unexpected, wrong shape), or ``""``."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} (file {tuple(state[k].shape)}, model {tuple(v.shape)})" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    parts = [f"{what} {items[:5]}{' …' if len(items) > 5 else ''}"
             for what, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", shapes))
             if items]
    return "; ".join(parts)


def _unwrapped_state(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` without the ``model.`` prefix a :class:`FeatureModel` adds (a run's student.safetensors),
    when that is what makes it fit ``model``."""
    own = set(model.state_dict())
    if set(state) != own and state and all(k.startswith("model.") for k in state):
        stripped = {k[len("model."):]: v for k, v in state.items()}
        if set(stripped) == own:
            return stripped
    return state


def load_module_model(spec: str, path: str | os.PathLike | None = None, *, trust_code: bool = False) -> nn.Module:
    """Your own ``torch.nn.Module`` class, given as ``"package.module:Class"``, with its weights.

    The safe replacement for a TorchScript file: the code is an installed package you chose, the
    weights a safetensors ``state_dict``. The class is built with no arguments, or with the
    keyword arguments stored in the file by :func:`save_module_safetensors`; the weights must fit
    it exactly (a run's ``student.safetensors``, whose keys carry the ``model.`` prefix of the
    :class:`FeatureModel` that trained it, fits too).

    Importing the module runs its code: it is imported only when allowed — ``trust_code`` (the
    CLI's ``--trust-code``) or ``$PERCO_VIZ_TRUSTED_MODULES`` (the app operator's list; see
    :func:`perco_viz.safe_io.import_class`). Nothing is imported from the file's folder.

    Args:
        spec: ``package.module:Class``.
        path: the weights (``.safetensors``); ``None``: a fresh model, built with no arguments.
        trust_code: import any installed module.

    Returns:
        The model (eval mode when weights were loaded).

    Raises:
        ValueError: a refused or missing module, not an ``nn.Module`` class, a failing constructor.
        InputFileError: the weights are not safetensors, damaged, or do not fit (names the keys).
    """
    cls = import_class(spec, trust=trust_code)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"{spec!r} is a {type(cls).__name__}, not a torch.nn.Module class; name your network's class")
    kwargs: dict[str, Any] = {}
    state = None
    if path is not None:
        if Path(path).suffix.lower() != ".safetensors":
            raise InputFileError(
                f"{Path(path).name!r}: the weights of a module:Class model are a .safetensors state_dict; save "
                "them with perco_viz.models.save_module_safetensors(model, path)"
            )
        kwargs = _init_kwargs(path)
        state = load_state_dict(path)
        _check_finite_weights(state, path)
    try:
        if state is not None:  # a forged init_kwargs must not allocate a huge model: shapes first, on "meta"
            try:
                with torch.device("meta"):
                    shell = cls(**kwargs)
            except Exception:  # noqa: BLE001 — a constructor that cannot run on "meta": checked after building
                shell = None
            if shell is not None:
                state = _unwrapped_state(shell, state)
            problem = state_mismatch(shell, state) if shell is not None else ""
            if problem:
                raise InputFileError(f"the weights in {Path(path).name!r} do not fit {spec}: {problem}; check the "
                                     "class and the init_kwargs they were saved with")
        model = cls(**kwargs)
    except InputFileError:
        raise
    except Exception as exc:  # noqa: BLE001 — the user's constructor
        raise ValueError(
            f"{spec}(**{kwargs!r:.200}) failed ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); its "
            "constructor must take no arguments, or the keyword arguments saved with "
            "save_module_safetensors(model, path, init_kwargs={...})"
        ) from None
    if state is None:
        return model
    state = _unwrapped_state(model, state)
    problem = state_mismatch(model, state)
    if problem:
        raise InputFileError(f"the weights in {Path(path).name!r} do not fit {spec}: {problem}; check the class and "
                             "the init_kwargs they were saved with")
    _load_strict(model, state, path)
    return model.eval()


# ----------------------------------------------------------------------------- training


def default_epochs(dataset: Dataset) -> int:
    """Epochs for about 20,000 example presentations, between 3 and 30 (digits: 15)."""
    return int(min(30, max(3, round(20_000 / max(dataset.n_train, 1)))))


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024) -> float:
    """Top-1 accuracy of a classifier's logits (model in eval mode; mode restored)."""
    device = device_of(model)
    was_training = model.training
    model.eval()
    correct = sum(
        int((model(X[i:i + batch_size].to(device)).argmax(1).cpu() == y[i:i + batch_size]).sum())
        for i in range(0, len(X), batch_size)
    )
    model.train(was_training)
    return correct / max(len(X), 1)


@torch.no_grad()
def teacher_accuracy(teacher: FeatureModel, dataset: Dataset, *, batch_size: int = 1024) -> float | None:
    """Test accuracy of a teacher's own head on ``dataset``.

    Returns:
        The top-1 accuracy, or ``None`` when there are no labels, no head, or the head has a
        different number of classes (e.g. an ImageNet head on digits).
    """
    if dataset.y_test is None or not teacher.has_head:
        return None
    device = device_of(teacher)
    logits = torch.cat([teacher.logits(dataset.X_test[i:i + batch_size].to(device)).cpu()
                        for i in range(0, dataset.n_test, batch_size)])  # (n_test, n_classes)
    if logits.shape[1] != dataset.n_classes:
        return None
    return float((logits.argmax(1) == dataset.y_test).float().mean())


def _train_epoch(model, X, y, opt, sched, batch_size: int, gen: torch.Generator, device) -> None:
    model.train()
    order = torch.randperm(len(X), generator=gen)
    for i in range(0, len(X), batch_size):
        idx = order[i:i + batch_size]
        if len(idx) < 2:  # batch norm needs two points
            continue
        loss = nn.functional.cross_entropy(model(X[idx].to(device)), y[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()


def train_teacher(
    dataset: Dataset,
    *,
    epochs: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
    batch_size: int = 64,
    lr: float = 3e-3,
) -> nn.Module:
    """Train the built-in teacher on the labels with cross-entropy (AdamW, one-cycle schedule).

    Args:
        dataset: a labeled dataset.
        epochs: passes over the training split (``None``: :func:`default_epochs`).
        seed: seed of initialisation and batching.
        device: where to train.
        progress: called as ``progress(epoch, total, test_accuracy)`` after every epoch.
        batch_size: examples per step.
        lr: peak learning rate.

    Returns:
        The trained model, in eval mode, on ``device``.

    Raises:
        ValueError: the dataset has no labels (use teacher kind ``identity``).
    """
    torch.manual_seed(seed)
    model = teacher_architecture(dataset).to(device)
    epochs = epochs or default_epochs(dataset)
    steps = epochs * math.ceil(dataset.n_train / batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    gen = torch.Generator().manual_seed(seed)
    X_eval, y_eval = dataset.X_test[:2000], dataset.y_test[:2000]
    for epoch in range(1, epochs + 1):
        _train_epoch(model, dataset.X_train, dataset.y_train, opt, sched, batch_size, gen, device)
        if progress is not None:
            progress(epoch, epochs, evaluate_accuracy(model, X_eval, y_eval))
    return model.eval()


# ----------------------------------------------------------------------------- teachers


def _need(value: str | None, field: str, what: str) -> str:
    if not value:
        raise ValueError(f"{field} is required here: set it to {what}")
    return value


def _need_images(dataset: Dataset, kind: str) -> None:
    if not dataset.is_image:
        raise ValueError(
            f"a {kind} teacher needs image inputs, but dataset {dataset.name!r} holds vectors of "
            f"shape {dataset.input_shape}; use teacher kind 'builtin' or 'identity'"
        )


def teacher_cache_path(dataset: Dataset, cache_dir: str | os.PathLike | None = None) -> Path:
    """Cache file of the built-in teacher: keyed by dataset name, architecture, seed and a data hash."""
    arch = teacher_architecture(dataset)
    digest = hashlib.sha256(json.dumps(arch.config, sort_keys=True).encode())
    digest.update(dataset.X_train.numpy().tobytes())
    digest.update(dataset.y_train.numpy().tobytes())
    key = f"{dataset.name}-{type(arch).__name__}-seed{dataset.seed}-{digest.hexdigest()[:12]}"
    return Path(cache_dir or paths.default_cache_dir()) / "teachers" / f"{key}.safetensors"


_CACHE_LOCKS: dict[str, threading.Lock] = {}
_CACHE_LOCKS_GUARD = threading.Lock()


def _cache_lock(path: Path) -> threading.Lock:
    """One lock per cache file: threads of one process (app sessions) train a teacher once."""
    with _CACHE_LOCKS_GUARD:
        return _CACHE_LOCKS.setdefault(str(path), threading.Lock())


def _builtin_teacher(cfg: TeacherConfig, dataset: Dataset, *, cache_dir, device, progress, **_) -> tuple:
    path = teacher_cache_path(dataset, cache_dir)
    with _cache_lock(path):
        return _builtin_teacher_locked(path, dataset, device=device, progress=progress)


def _builtin_teacher_locked(path: Path, dataset: Dataset, *, device, progress) -> tuple:
    if path.is_file():
        try:
            model = load_model_safetensors(path)
            info = json.loads(read_safetensors_metadata(path).get("perco_viz.info", "{}"))
            return model, None, {**info, "cache_path": str(path), "cached": True}
        except (InputFileError, ValueError) as exc:
            warnings.warn(f"ignoring the unreadable teacher cache {path} ({exc}); retraining", stacklevel=3)
    start = time.perf_counter()
    model = train_teacher(dataset, seed=dataset.seed, device=device, progress=progress)
    info = {"test_accuracy": evaluate_accuracy(model, dataset.X_test, dataset.y_test),
            "train_seconds": round(time.perf_counter() - start, 2), "dataset": dataset.name}
    save_model_safetensors(model, path, metadata={"perco_viz.info": json.dumps(info)})
    return model, None, {**info, "cache_path": str(path), "cached": False}


def _classes_in(state: dict[str, torch.Tensor]) -> int | None:
    """Rows of the last 2-D weight: the number of classes of a classifier's state_dict."""
    mats = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
    return int(mats[-1].shape[0]) if mats else None


def _torchvision_teacher(cfg: TeacherConfig, dataset: Dataset, **_) -> tuple:
    tv = require("torchvision", install="torchvision", purpose="a torchvision teacher")
    _need_images(dataset, "torchvision")
    arch = _need(cfg.arch, "teacher.arch", "a torchvision.models name such as 'resnet18'")
    path = _need(cfg.path, "teacher.path", "a weights file (.safetensors/.pth); perco_viz never downloads weights")
    state = load_state_dict(path)
    try:
        model = tv.models.get_model(arch, weights=None, num_classes=_classes_in(state) or 1000)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"torchvision has no usable model {arch!r} ({exc}); see torchvision.models.list_models()") from None
    _load_strict(model, state, path)
    return model, ImageAdapter(224), {"arch": arch}


def _timm_teacher(cfg: TeacherConfig, dataset: Dataset, **_) -> tuple:
    timm = require("timm", install="timm", purpose="a timm teacher")
    _need_images(dataset, "timm")
    arch = _need(cfg.arch, "teacher.arch", "a timm model name such as 'resnet18'")
    path = _need(cfg.path, "teacher.path", "a weights file (.safetensors/.pth); perco_viz never downloads weights")
    state = load_state_dict(path)
    try:
        model = timm.create_model(arch, pretrained=False, num_classes=_classes_in(state) or 1000)
    except RuntimeError as exc:
        raise ValueError(f"timm has no model {arch!r} ({exc}); see timm.list_models()") from None
    _load_strict(model, state, path)
    pcfg = getattr(model, "pretrained_cfg", None) or {}
    size = int(pcfg.get("input_size", (3, 224, 224))[-1])
    adapter = ImageAdapter(size, tuple(pcfg.get("mean", IMAGENET_MEAN)), tuple(pcfg.get("std", IMAGENET_STD)))
    return model, adapter, {"arch": arch}


def _torchscript_teacher(cfg: TeacherConfig, dataset: Dataset, *, trust_code: bool = False, **_) -> tuple:
    path = _need(cfg.path, "teacher.path", "a TorchScript file (torch.jit.save)")
    return load_torchscript(path, trust=trust_code), None, {}


def _safetensors_teacher(cfg: TeacherConfig, dataset: Dataset, **_) -> tuple:
    path = _need(cfg.path, "teacher.path", "a .safetensors file of a built-in teacher")
    candidates = [teacher_architecture(dataset)] if dataset.n_classes else []
    return load_builtin_weights(path, candidates), None, {}


def _identity_teacher(cfg: TeacherConfig, dataset: Dataset, **_) -> tuple:
    return nn.Flatten(), None, {}


def _hf_teacher(cfg: TeacherConfig, dataset: Dataset, **_) -> tuple:
    path = _need(cfg.path, "teacher.path", "the folder of a Hugging Face model (model.save_pretrained(folder))")
    model = load_hf_model(path, model_class=cfg.arch)
    return model, None, {"path": str(path), "class": type(model).__name__}


def _module_teacher(cfg: TeacherConfig, dataset: Dataset, *, trust_code: bool = False, **_) -> tuple:
    spec = _need(cfg.arch, "teacher.arch", "your nn.Module class as package.module:Class (e.g. mypkg.nets:ResNet8)")
    path = _need(cfg.path, "teacher.path", "the teacher's weights as .safetensors (save_module_safetensors)")
    return load_module_model(spec, path, trust_code=trust_code), None, {"class": spec}


TEACHER_LOADERS: dict[str, Callable[..., tuple]] = {
    "builtin": _builtin_teacher,
    "torchvision": _torchvision_teacher,
    "timm": _timm_teacher,
    "torchscript": _torchscript_teacher,
    "safetensors": _safetensors_teacher,
    "identity": _identity_teacher,
    "huggingface": _hf_teacher,
    "module": _module_teacher,
}
TEACHER_KINDS: tuple[str, ...] = tuple(TEACHER_LOADERS)


def load_teacher(
    cfg: TeacherConfig,
    dataset: Dataset,
    *,
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
    trust_code: bool = False,
) -> FeatureModel:
    """The frozen teacher of ``cfg.kind`` for ``dataset``, wrapped as a :class:`FeatureModel`.

    ``builtin`` trains on first use (``progress(epoch, total, acc)`` reports it) and caches the
    weights in ``cache_dir/teachers``; later calls load the cache. ``teacher.info`` says what
    was loaded (cache path, test accuracy, ...).

    ``trust_code``: allow kind ``torchscript``, whose loading runs the code the file carries
    (the CLI's ``--trust-code``, the app operator's ``PERCO_VIZ_TRUST_TORCHSCRIPT``); without it
    a TorchScript teacher is refused with a message saying how to bring the model safely. The
    same switch lets kind ``module`` import any installed module; without it only the modules
    in ``$PERCO_VIZ_TRUSTED_MODULES`` (:func:`perco_viz.safe_io.import_class`).

    Kind ``huggingface`` (:func:`load_hf_model`) and ``module`` (:func:`load_module_model`) models are
    called with the input batch as their first positional argument, (n, *input_shape) float:
    ``pixel_values`` for a vision model such as ``ViTModel``. ``cfg.layer`` picks the module whose
    output are the features and ``cfg.pooling`` how a (n, tokens, hidden) output becomes (n, d).

    Raises:
        ValueError: unknown kind, missing ``arch``/``path``, or a kind that does not fit the data.
        InputFileError: an unreadable or refused file.
        OptionalDependencyError: torchvision/timm missing.
    """
    if cfg.kind not in TEACHER_LOADERS:
        raise ValueError(f"unknown teacher kind {cfg.kind!r}; choose one of {', '.join(TEACHER_KINDS)}")
    model, preprocess, info = TEACHER_LOADERS[cfg.kind](
        cfg, dataset, cache_dir=cache_dir, device=device, progress=progress, trust_code=trust_code
    )
    teacher = FeatureModel(model, cfg.layer, preprocess=preprocess, input_shape=dataset.input_shape,
                           pooling=cfg.pooling)
    teacher.info = {"kind": cfg.kind, **info}
    return teacher.to(device)


# ----------------------------------------------------------------------------- students


def _check_student(cfg: StudentConfig) -> None:
    if cfg.dim < 1 or cfg.hidden < 1:
        raise ValueError(f"student.dim and student.hidden must be >= 1, got {cfg.dim} and {cfg.hidden}")


def _student_mlp(cfg: StudentConfig, dataset: Dataset, **_: Any) -> nn.Module:
    return StudentMLP(dataset.input_shape, cfg.dim, cfg.hidden)


def _student_cnn(cfg: StudentConfig, dataset: Dataset, **_: Any) -> nn.Module:
    if not dataset.is_image:
        raise ValueError(f"student arch 'cnn' needs images; dataset {dataset.name!r} holds vectors: use 'mlp'")
    return StudentCNN(dataset.input_shape, cfg.dim, hidden=cfg.hidden)


def _student_file(cfg: StudentConfig, dataset: Dataset, *, trust_code: bool = False) -> nn.Module:
    path = _need(cfg.path, "student.path", "a TorchScript file or a .safetensors of a built-in student")
    if Path(path).suffix.lower() != ".safetensors" and is_torchscript_archive(path):
        return load_torchscript(path, trust=trust_code)
    candidates = [_student_mlp(cfg, dataset)] + ([_student_cnn(cfg, dataset)] if dataset.is_image else [])
    return load_builtin_weights(path, candidates)


def _student_hf(cfg: StudentConfig, dataset: Dataset, **_: Any) -> nn.Module:
    path = _need(cfg.path, "student.path", "the folder of a Hugging Face model (model.save_pretrained(folder))")
    model = load_hf_model(path, model_class=cfg.model_class)
    return FeatureModel(model, cfg.layer, input_shape=dataset.input_shape, frozen=False, pooling=cfg.pooling)


def _student_module(cfg: StudentConfig, dataset: Dataset, *, trust_code: bool = False) -> nn.Module:
    spec = _need(cfg.model_class, "student.model_class",
                 "your nn.Module class as package.module:Class (e.g. mypkg.nets:ResNet8)")
    model = load_module_model(spec, cfg.path, trust_code=trust_code)
    return FeatureModel(model, cfg.layer, input_shape=dataset.input_shape, frozen=False, pooling=cfg.pooling)


STUDENT_BUILDERS: dict[str, Callable[..., nn.Module]] = {  # (cfg, dataset, *, trust_code)
    "mlp": _student_mlp,
    "cnn": _student_cnn,
    "file": _student_file,
    "module": _student_module,
    "huggingface": _student_hf,
}
SELF_SIZED_ARCHS = frozenset({"module", "huggingface"})  # students whose feature width is the model's own, not cfg.dim
STUDENT_ARCHS: tuple[str, ...] = tuple(STUDENT_BUILDERS)


def build_student(cfg: StudentConfig, dataset: Dataset, *, trust_code: bool = False) -> nn.Module:
    """A trainable student whose ``forward`` maps (n, *input_shape) to (n, cfg.dim) features.

    ``trust_code``: allow a TorchScript ``file`` student, whose loading runs the code the file
    carries; without it such a file is refused with a message saying how to bring it safely. For
    arch ``module`` it lets any installed module be imported; without it only the modules in
    ``$PERCO_VIZ_TRUSTED_MODULES``.

    Arch ``module`` and ``huggingface`` give a :class:`FeatureModel` (not frozen) read at ``cfg.layer``
    with ``cfg.pooling``; its width is the model's own (``feature_dim``), whatever ``cfg.dim``
    says (the engine records the real width in the run's config).

    Raises:
        ValueError: unknown arch, bad sizes, ``cnn`` on vector data, ``file`` without a path.
        InputFileError: an unreadable or refused file.
    """
    if cfg.arch not in STUDENT_BUILDERS:
        raise ValueError(f"unknown student arch {cfg.arch!r}; choose one of {', '.join(STUDENT_ARCHS)}")
    _check_student(cfg)
    model = STUDENT_BUILDERS[cfg.arch](cfg, dataset, trust_code=trust_code)
    for p in model.parameters():  # (ScriptModules have no requires_grad_)
        p.requires_grad_(True)
    return model.train()
