"""The Setup page's form: widget state <-> :class:`RunConfig`, uploads, and cached look-ups.

Every widget of the form has the key ``setup-<section>-<field>`` of the RunConfig field it
sets (``setup-name`` for the run name), so the form and the config cannot drift apart: the
config is read back from the widget state by :func:`config_from_values`, and a config (the
demo, an uploaded file, the one in ``st.session_state["setup_config"]``) fills the widgets
through :func:`apply_config`, the one place that initialises them.

The plain functions here (mapping, file names, upload checks) never touch Streamlit, so
tests call them directly; the callbacks and cached look-ups below them do.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import streamlit as st

from perco_viz.config import ConfigError, RunConfig, TeacherConfig
from perco_viz.data import NEEDS_PATH, SYNTHETIC
from perco_viz.safe_io import ARRAY_SUFFIXES, STATE_DICT_SUFFIXES

PREFIX = "setup"
FLAG = "setup-initialised"  # the form's widgets have been filled once in this session
APPLIED = "setup-applied"  # the config last written into the widgets (as a dict): slider ranges
SEEN = "setup-stored-seen"  # the st.session_state["setup_config"] the form last took in or stored
PREV_DATA = "setup-data-prev"  # the dataset chosen before the current one
PATHS = "setup-data-paths"  # dataset name -> the path last used with it
MESSAGES = "setup-messages"  # upload slot -> ("ok" | "error", text), shown beside the uploader

# Text inputs and "default" choices show None as ""; the anchors number input shows None ("all points") as 0.
EMPTY_IS_NONE = {("data", "path"), ("data", "label_column"), ("teacher", "arch"), ("teacher", "path"),
                 ("teacher", "layer"), ("student", "path"), ("loss", "teacher_metric"), ("", "name")}
ZERO_IS_NONE = {("loss", "anchors")}

# How each source of data is asked for (the names come from perco_viz.data's registry).
BUILTIN_DATA = frozenset({"digits"})
DATA_HELP = {
    "digits": "1,797 real 8×8 handwritten digits from scikit-learn, shipped offline: the demo.",
    "swiss_roll": "Synthetic: a 3-D swiss roll; colours are 6 bins of the position along the roll.",
    "blobs": "Synthetic: 5 Gaussian blobs in 10-D, labelled.",
    "circles": "Synthetic: two concentric circles in 2-D, labelled.",
    "spheres": "Synthetic: three concentric spheres in 3-D, labelled by shell.",
    "npz": "Your own .npz: features under `X` (or `features`/`embeddings`), labels under `y` (optional).",
    "csv": "Your own .csv with a header row: numeric columns are features; a `label`/`y` column holds labels.",
    "image_folder": "A folder on this machine with one sub-folder of images per class (resized to at most 32×32).",
    "mnist": "MNIST from its IDX files in a folder on this machine (70,000 greyscale 28×28 digits).",
    "fashion_mnist": "Fashion-MNIST from its IDX files in a folder on this machine (clothes, 28×28).",
    "cifar10": "CIFAR-10 read by torchvision from a folder on this machine (RGB 32×32, 10 classes).",
    "cifar100": "CIFAR-100 read by torchvision from a folder on this machine (RGB 32×32, 100 classes).",
}

# Teachers: which kinds need an architecture name and which need a file (from models' registry).
TEACHER_NEEDS_ARCH = frozenset({"torchvision", "timm"})
TEACHER_NO_FILE = frozenset({"builtin", "identity"})
TEACHER_HELP = {
    "builtin": "A small network trained here on the dataset's labels (seconds for digits), then cached.",
    "identity": "The raw inputs are the teacher's features: natural for synthetic and unlabeled data.",
    "torchvision": "A torchvision architecture by name with your weights file (nothing is downloaded). Images only.",
    "timm": "A timm architecture by name with your weights file (nothing is downloaded). Images only.",
    "torchscript": "A TorchScript file (torch.jit.save); its output are the features. Loading it runs its code.",
    "safetensors": "Weights of the built-in teacher architecture for this dataset (.safetensors or .pt).",
}
WEIGHT_TYPES = [s.lstrip(".") for s in STATE_DICT_SUFFIXES]  # uploader types of a weights file
TORCHSCRIPT_TYPES = ["pt", "pth", "zip", "torchscript"]
TEACHER_FILE_TYPES = {"torchscript": TORCHSCRIPT_TYPES}  # other kinds take WEIGHT_TYPES
STUDENT_FILE_TYPES = sorted({*TORCHSCRIPT_TYPES, *WEIGHT_TYPES})  # when the server trusts TorchScript

IMAGE_ONLY_STUDENTS = frozenset({"cnn"})
STUDENT_HELP = {
    "mlp": "Built-in multilayer perceptron: works on any input.",
    "cnn": "Built-in small convolutional network: image data only.",
    "file": "Your own student: a .safetensors of a built-in student (or, where the server allows it, a "
            "TorchScript file).",
}

POINT_CHOICES = (100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10_000, 15_000, 20_000,
                 30_000, 50_000, 70_000)
TAU_CHOICES = (0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
BATCH_CHOICES = (32, 64, 128, 256, 512, 1024, 2048)


# --------------------------------------------------------------------------- keys and mapping
def key(section: str, name: str) -> str:
    """Widget key of a RunConfig field: ``key("loss", "tau") == "setup-loss-tau"``; ``section=""`` for ``name``."""
    return f"{PREFIX}-{section}-{name}" if section else f"{PREFIX}-{name}"


def _fields(cfg: RunConfig):
    """(section, field, value) for every field of the config, ``section=""`` for top-level scalars."""
    for top in dataclasses.fields(cfg):
        value = getattr(cfg, top.name)
        if dataclasses.is_dataclass(value):
            for sub in dataclasses.fields(value):
                yield top.name, sub.name, getattr(value, sub.name)
        else:
            yield "", top.name, value


def widget_values(cfg: RunConfig) -> dict[str, Any]:
    """Widget key -> widget value for every field of ``cfg``."""
    out = {}
    for section, name, value in _fields(cfg):
        if value is None and (section, name) in EMPTY_IS_NONE:
            value = ""
        elif value is None and (section, name) in ZERO_IS_NONE:
            value = 0
        out[key(section, name)] = value
    return out


def config_from_values(values: Mapping[str, Any], base: RunConfig | None = None) -> RunConfig:
    """The RunConfig the widgets describe; a field without a widget value keeps ``base``'s.

    Raises:
        ConfigError: a value of the wrong type (the message names the field).
    """
    base = base or RunConfig()
    data: dict[str, Any] = {}
    for section, name, default in _fields(base):
        value = values.get(key(section, name), default)
        if isinstance(value, str) and (section, name) in EMPTY_IS_NONE:
            value = value.strip() or None
        if value == 0 and (section, name) in ZERO_IS_NONE:
            value = None
        if section:
            data.setdefault(section, {})[name] = value
        else:
            data[name] = value
    return RunConfig.from_dict(data)


def apply_config(state: MutableMapping[str, Any], cfg: RunConfig) -> None:
    """Fill the widgets from ``cfg`` (the one place that writes config values into them)."""
    state.update(widget_values(cfg))
    state[APPLIED] = cfg.to_dict()
    state[PREV_DATA] = cfg.data.name
    state[PATHS] = {cfg.data.name: cfg.data.path or ""}
    state[MESSAGES] = {}


def init_state(state: MutableMapping[str, Any], fallback: RunConfig) -> None:
    """First visit: the config in ``state["setup_config"]``, else ``fallback`` (the demo).

    Later visits keep the widgets as the person left them, unless another page stored a
    different config in ``state["setup_config"]`` since: then that one fills them.
    """
    stored = state.get("setup_config")
    if FLAG not in state:
        apply_config(state, stored or fallback)
        state[FLAG] = True
    elif stored is not None and stored.to_dict() != state.get(SEEN):
        apply_config(state, stored)
    if stored is not None:
        state[SEEN] = stored.to_dict()


def store_config(state: MutableMapping[str, Any], cfg: RunConfig) -> None:
    """Make ``cfg`` the configuration the Distill page uses."""
    state["setup_config"] = cfg
    state[SEEN] = cfg.to_dict()


# --------------------------------------------------------------------------- data helpers
def dataset_kind(name: str) -> str:
    """How a dataset is asked for: ``builtin``, ``synthetic``, ``file`` (upload), ``folder`` or ``root``."""
    if name in BUILTIN_DATA:
        return "builtin"
    if name in SYNTHETIC:
        return "synthetic"
    if name in NEEDS_PATH:
        return "file" if f".{name}" in ARRAY_SUFFIXES else "folder"
    return "root"  # a dataset folder on this machine (torchvision-style), may download


def dataset_label(name: str) -> str:
    """Select-box label of a dataset name."""
    tags = {"builtin": "built in", "synthetic": "synthetic", "file": "upload a file",
            "folder": "local image folder", "root": "local dataset folder"}
    return f"{name}  ·  {tags[dataset_kind(name)]}"


def teacher_label(kind: str) -> str:
    """Select-box label of a teacher kind."""
    tags = {"builtin": "built in, trained here", "identity": "the raw inputs", "torchvision": "name + weights file",
            "timm": "name + weights file", "torchscript": "TorchScript file",
            "safetensors": "built-in architecture, your weights"}
    return f"{kind}  ·  {tags[kind]}" if kind in tags else kind


def layer_label(layer: str, default: str = "penultimate") -> str:
    """Select-box label of a feature layer (``""``: the teacher's default, described by ``default``)."""
    return layer or f"default ({default})"


def describe_default_layer(shape: Mapping[str, Any]) -> str:
    """What the teacher's default layer is, from :func:`teacher_shape` of ``layer=None``."""
    if shape.get("layer") is None:
        return "the model's output" if shape.get("params") else "the raw inputs"
    if shape.get("layer") == shape.get("head"):
        return f"penultimate: the input of {shape['head']}"
    return f"{shape['layer']} layer"


def suggested_teacher(data_name: str, labeled: bool | None = None) -> str:
    """``identity`` for synthetic or unlabeled data (the raw inputs), else ``builtin``."""
    return "identity" if data_name in SYNTHETIC or labeled is False else "builtin"


def describe_dataset(ds) -> str:
    """One line: points, dimensions, classes, split."""
    n = ds.n_train + ds.n_test
    d = math.prod(ds.input_shape)
    dims = f"{d:,} dims ({'×'.join(map(str, ds.image_shape))} images)" if ds.is_image else f"{d:,} dims"
    classes = f"{ds.n_classes} classes" if ds.n_classes else "unlabeled"
    return f"**{n:,} points** · {dims} · {classes} · {ds.n_train:,} for training, {ds.n_test:,} held out"


def data_json(cfg: RunConfig) -> str:
    """The data section as canonical JSON (the cache key, the same as ``common.dataset_of`` uses)."""
    return json.dumps(dataclasses.asdict(cfg.data), sort_keys=True)


def file_stamp(path: str | None) -> float:
    """Modification time of a file or folder (0 when absent): part of cache keys."""
    try:
        return os.stat(Path(path).expanduser()).st_mtime if path else 0.0
    except OSError:
        return 0.0


# --------------------------------------------------------------------------- uploads
def parse_config_upload(data: bytes) -> RunConfig:
    """A RunConfig from an uploaded YAML/JSON file, through ``RunConfig.from_text``: size, YAML
    anchors/aliases/tags, every field's type and range and every name against its registry
    (else a select box would silently pick another).

    Raises:
        ConfigError: not UTF-8 text, not YAML/JSON, or a field unknown, mistyped or out of range.
    """
    return RunConfig.from_text(data)


# --------------------------------------------------------------------------- callbacks
def _message(slot: str, kind: str, text: str) -> None:
    st.session_state.setdefault(MESSAGES, {})[slot] = (kind, text)


def show_message(slot: str) -> None:
    """The result of the last upload into ``slot`` (a success line or an error)."""
    kind, text = st.session_state.get(MESSAGES, {}).get(slot, (None, ""))
    if kind == "error":
        st.error(text)
    elif kind == "ok":
        st.caption(f":material/check_circle: {text}")


def on_dataset_change() -> None:
    """A new dataset: its own remembered path, a fitting teacher, and the default layer."""
    s = st.session_state
    new, old = s[key("data", "name")], s.get(PREV_DATA)
    paths = s.setdefault(PATHS, {})
    if old is not None:
        paths[old] = s.get(key("data", "path"), "")
    s[key("data", "path")] = paths.get(new, "")
    s[PREV_DATA] = new
    if s.get(key("teacher", "kind")) in ("builtin", "identity"):
        s[key("teacher", "kind")] = suggested_teacher(new)
        s[key("teacher", "layer")] = ""
    s.get(MESSAGES, {}).pop("data", None)


def on_teacher_change() -> None:
    """Layer names belong to one teacher: back to its default layer."""
    st.session_state[key("teacher", "layer")] = ""


def teacher_kinds(trusted: bool, current: str | None = None) -> list[str]:
    """The teacher kinds offered: TorchScript only on a server that trusts it (or when a loaded
    config already chose it, so the page can say why it cannot be used)."""
    from perco_viz.models import TEACHER_KINDS

    return [k for k in TEACHER_KINDS if k != "torchscript" or trusted or k == current]


def student_file_types(trusted: bool) -> list[str]:
    """Uploader types of a student file: weights always, TorchScript only on a trusting server."""
    return STUDENT_FILE_TYPES if trusted else WEIGHT_TYPES


def _upload_errors() -> tuple[type[BaseException], ...]:
    """What an upload may fail with: a bad file, a full session folder, the time limit, the disk."""
    from perco_viz.safe_io import InputFileError
    from perco_viz.sessions import SessionError

    return InputFileError, SessionError, OSError


def on_data_upload(upload_key: str) -> None:
    """Validate the ``.npz``/``.csv`` in the uploader ``upload_key`` (parsed in the worker process,
    within the time limit); keep it in this session's folder, within its quota."""
    from perco_viz import sessions
    from ui import common

    s = st.session_state
    upload = s.get(upload_key)
    if upload is None:
        return
    data = upload.getvalue()
    try:
        n, d, classes = sessions.run_limited(sessions.check_array_upload, data, upload.name,
                                             s.get(key("data", "label_column")) or None, what=repr(upload.name))
        path = common.save_session_upload(data, upload.name)
    except _upload_errors() as exc:
        _message("data", "error", f"This file cannot be used: {exc}")
        return
    s[key("data", "path")] = str(path)
    if classes is None and s.get(key("teacher", "kind")) == "builtin":
        s[key("teacher", "kind")] = "identity"
        s[key("teacher", "layer")] = ""
    note = "" if classes else " It has no labels: the teacher is set to identity."
    _message("data", "ok", f"{upload.name} is kept in this session's own folder ({n:,} × {d:,}).{note}")


def _on_model_upload(upload_key: str, slot: str, field: tuple[str, str]) -> None:
    from ui import common

    upload = st.session_state.get(upload_key)
    if upload is None:
        return
    try:
        path = common.save_session_upload(upload.getvalue(), upload.name)
    except _upload_errors() as exc:
        _message(slot, "error", f"This file cannot be used: {exc}")
        return
    st.session_state[key(*field)] = str(path)
    if slot == "teacher":
        st.session_state[key("teacher", "layer")] = ""
    _message(slot, "ok", f"{upload.name} uploaded ({len(upload.getvalue()) / 2**20:.1f} MB)")


def on_teacher_upload(upload_key: str) -> None:
    """Keep the teacher file in uploader ``upload_key`` in this session's folder; point teacher.path at it."""
    _on_model_upload(upload_key, "teacher", ("teacher", "path"))


def on_student_upload(upload_key: str) -> None:
    """Keep the student file in uploader ``upload_key`` in this session's folder; point student.path at it."""
    _on_model_upload(upload_key, "student", ("student", "path"))


def on_config_upload() -> None:
    """Fill the widgets from an uploaded config; a bad file leaves them and says why."""
    upload = st.session_state.get("setup-config-upload")
    if upload is None:
        return
    try:
        cfg = parse_config_upload(upload.getvalue())
    except ConfigError as exc:
        _message("config", "error", f"{upload.name} is not a usable configuration: {exc}")
        return
    except Exception as exc:  # noqa: BLE001 — a callback's exception would break every rerun of the page
        _message("config", "error", f"{upload.name} could not be read: {type(exc).__name__}: {exc}")
        return
    apply_config(st.session_state, cfg)
    _message("config", "ok", f"Loaded {upload.name}: the form now shows it.")


def delete_uploads() -> None:
    """Delete this session's uploads; the fields that pointed at them are emptied."""
    from ui import common

    space = common.session_space()
    freed = space.delete_uploads()
    uploads = str(space.uploads)
    for section, name in (("data", "path"), ("teacher", "path"), ("student", "path")):
        value = st.session_state.get(key(section, name)) or ""
        if value.startswith(uploads):
            st.session_state[key(section, name)] = ""
    paths = st.session_state.get(PATHS) or {}
    for name, value in list(paths.items()):
        if (value or "").startswith(uploads):
            paths[name] = ""
    st.session_state[MESSAGES] = {"files": ("ok", f"Deleted your uploads ({freed / 2**20:,.1f} MB).")}


def reset_to_demo() -> None:
    """Back to the built-in demo configuration."""
    from ui import common

    apply_config(st.session_state, common.demo_config())


# --------------------------------------------------------------------------- cached look-ups
def load_dataset(cfg: RunConfig):
    """The dataset of ``cfg`` (cached across pages and sessions by its data section)."""
    from ui import common

    return common.load_dataset_cached(data_json(cfg))


def _teacher_model(cfg: TeacherConfig, ds, trusted: bool):
    """The teacher as a FeatureModel; the built-in one untrained (same layers, no waiting).
    ``trusted``: the server trusts TorchScript (``common.trusts_torchscript()``)."""
    from perco_viz import models

    if cfg.kind == "builtin":
        return models.FeatureModel(models.teacher_architecture(ds), cfg.layer, input_shape=ds.input_shape)
    return models.load_teacher(cfg, ds, trust_code=trusted)


@st.cache_data(max_entries=32, show_spinner=False)
def teacher_layers(data_key: str, kind: str, arch: str | None, path: str | None, stamp: float,
                   trusted: bool = False) -> list[str]:
    """Module names of the teacher (``models.list_modules``), offered as the feature layer."""
    from perco_viz import models

    ds = _dataset_from_key(data_key)
    return models.list_modules(_teacher_model(TeacherConfig(kind=kind, arch=arch, path=path), ds, trusted))


@st.cache_data(max_entries=64, show_spinner=False)
def teacher_shape(data_key: str, teacher_key: str, stamp: float, trusted: bool = False) -> dict[str, Any]:
    """Feature width, parameter count, resolved layer and head name of the teacher at its chosen layer."""
    ds = _dataset_from_key(data_key)
    model = _teacher_model(TeacherConfig(**json.loads(teacher_key)), ds, trusted)
    return {"dim": int(model.feature_dim), "params": sum(p.numel() for p in model.parameters()),
            "layer": model.layer, "head": model.head_name}


@st.cache_data(max_entries=64, show_spinner=False)
def student_shape(data_key: str, student_key: str, stamp: float, trusted: bool = False) -> dict[str, int]:
    """Feature width and parameter count of the student (built, not trained)."""
    import torch

    from perco_viz import models
    from perco_viz.config import StudentConfig

    ds = _dataset_from_key(data_key)
    model = models.build_student(StudentConfig(**json.loads(student_key)), ds, trust_code=trusted).eval()
    with torch.no_grad():
        out = model(torch.zeros((2, *ds.input_shape)))
    return {"dim": int(out.flatten(1).shape[1]), "params": sum(p.numel() for p in model.parameters())}


def _dataset_from_key(data_key: str):
    from ui import common

    return common.load_dataset_cached(data_key)


def builtin_teacher_status(ds) -> str:
    """Whether the built-in teacher for ``ds`` is trained and cached already."""
    from perco_viz import models
    from perco_viz.safe_io import read_safetensors_metadata

    try:
        path = models.teacher_cache_path(ds)
    except ValueError:
        return ""
    if not path.is_file():
        return "trained on the first start (seconds to a minute), then cached"
    try:
        info = json.loads(read_safetensors_metadata(path).get("perco_viz.info", "{}"))
        return f"trained and cached, test accuracy {float(info['test_accuracy']):.1%}"
    except Exception:  # noqa: BLE001 — only an informative line
        return "trained and cached"


def section_json(section) -> str:
    """A config section as canonical JSON (a cache key)."""
    return json.dumps(dataclasses.asdict(section), sort_keys=True)
