"""The Setup page: its sections, widget state <-> :class:`RunConfig`, uploads, and cached look-ups.

Every widget of the form has the key ``setup-<section>-<field>`` of the RunConfig field it
sets (``setup-name`` for the run name; ``setup-loss-options-<loss>-<option>`` for one option of
a loss), so the form and the config cannot drift apart: the config is read back from the
widget state by :func:`config_from_values`, and a config (the demo, an uploaded file, the one in
``st.session_state["setup_config"]``) fills the widgets through :func:`apply_config`, the one
place that initialises them. A field's help text and its choices come from the config
(:func:`perco_viz.config.field_help`, :func:`perco_viz.config.field_choices`): the same text
as the CLI's ``--help``.

The plain functions here (mapping, file names, upload checks) never touch Streamlit, so
tests call them directly; the callbacks, cached look-ups and sections below them do. The page
(``pages/1_Setup.py``) only lays the sections out.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from perco_viz.config import (
    ConfigError,
    RunConfig,
    TeacherConfig,
    config_fields,
    field_choices,
    field_help,
    loss_option_defaults,
    option_help,
)
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
                 ("teacher", "layer"), ("student", "path"), ("student", "model_class"), ("student", "layer"),
                 ("loss", "teacher_metric"), ("", "name")}
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
    "module": "Your own nn.Module class (package.module:Class, an installed package) with its .safetensors weights "
              "(perco_viz.models.save_module_safetensors). The server imports only the packages its operator allows "
              "(PERCO_VIZ_TRUSTED_MODULES).",
    "huggingface": "A Hugging Face model folder on this machine (save_pretrained: config.json, model.safetensors), read "
                   "offline; called with the input batch as its first argument (pixel_values for a vision model).",
}
OWN_MODELS = frozenset({"module", "huggingface"})  # teacher kinds / student archs: your own model, layer + pooling
CLASS_INPUT = {  # the class field of your own models: (label, placeholder)
    "module": ("Class (package.module:Class)", "mypkg.nets:ResNet8"),
    "huggingface": ("transformers class (optional)", "AutoModel"),
}
POOLING_LABELS = {"flatten": "flatten (every value)", "cls": "first token (CLS)", "mean": "mean over tokens"}
WEIGHT_TYPES = [s.lstrip(".") for s in STATE_DICT_SUFFIXES]  # uploader types of a weights file
TORCHSCRIPT_TYPES = ["pt", "pth", "zip", "torchscript"]
TEACHER_FILE_TYPES = {"torchscript": TORCHSCRIPT_TYPES, "module": ["safetensors"]}  # other kinds take WEIGHT_TYPES
STUDENT_FILE_TYPES = sorted({*TORCHSCRIPT_TYPES, *WEIGHT_TYPES})  # when the server trusts TorchScript

IMAGE_ONLY_STUDENTS = frozenset({"cnn"})
STUDENT_HELP = {
    "mlp": "Built-in multilayer perceptron: works on any input.",
    "cnn": "Built-in small convolutional network: image data only.",
    "file": "Your own student: a .safetensors of a built-in student (or, where the server allows it, a "
            "TorchScript file).",
    "module": "Your own nn.Module class (package.module:Class, an installed package the operator allows), freshly "
              "initialised or with its .safetensors weights; its features are as wide as the chosen layer gives.",
    "huggingface": "A Hugging Face model folder on this machine (save_pretrained, safetensors weights), fine-tuned "
                   "as the student; its features are as wide as the chosen layer and pooling give.",
}

POINT_CHOICES = (100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10_000, 15_000, 20_000,
                 30_000, 50_000, 70_000)
TAU_CHOICES = (0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
BATCH_CHOICES = (32, 64, 128, 256, 512, 1024, 2048)


# --------------------------------------------------------------------------- keys and mapping
def key(section: str, name: str) -> str:
    """Widget key of a RunConfig field: ``key("loss", "tau") == "setup-loss-tau"``; ``section=""`` for ``name``."""
    return f"{PREFIX}-{section}-{name}" if section else f"{PREFIX}-{name}"


def option_key(loss: str, option: str) -> str:
    """Widget key of one loss option: ``option_key("cc", "gamma") == "setup-loss-options-cc-gamma"``."""
    return f"{PREFIX}-loss-options-{loss}-{option}"


def editable_options(loss: str) -> dict[str, Any]:
    """The options of ``loss`` the form edits (numbers and switches), with their defaults."""
    return {k: v for k, v in loss_option_defaults(loss).items() if isinstance(v, (int, float))}  # bool is an int


def _fields(cfg: RunConfig):
    """(section, field, value) for every field of the config but ``loss.options``, ``section=""``
    for top-level scalars (the fields as :func:`perco_viz.config.config_fields` declares them)."""
    for info in config_fields():
        if (info.section, info.name) == ("loss", "options"):
            continue
        owner = getattr(cfg, info.section) if info.section else cfg
        yield info.section, info.name, getattr(owner, info.name)


def widget_values(cfg: RunConfig) -> dict[str, Any]:
    """Widget key -> widget value for every field of ``cfg`` (and every option of its loss)."""
    out = {}
    for section, name, value in _fields(cfg):
        if value is None and (section, name) in EMPTY_IS_NONE:
            value = ""
        elif value is None and (section, name) in ZERO_IS_NONE:
            value = 0
        out[key(section, name)] = value
    for option, default in editable_options(cfg.loss.name).items():
        out[option_key(cfg.loss.name, option)] = cfg.loss.options.get(option, default)
    return out


def config_from_values(values: Mapping[str, Any], base: RunConfig | None = None) -> RunConfig:
    """The RunConfig the widgets describe; a field without a widget value keeps ``base``'s.

    ``loss.options`` holds the chosen loss's options whose widgets differ from the loss's
    defaults; an option without a widget (e.g. the coherence loss's ``impl``) keeps its value in
    ``base``, or without ``base`` in the config last loaded into the form, when that has the
    same loss.

    Raises:
        ConfigError: a value of the wrong type (the message names the field).
    """
    if base is not None:
        earlier = {"name": base.loss.name, "options": base.loss.options}
    else:
        applied_loss = (values.get(APPLIED) or {}).get("loss") if isinstance(values.get(APPLIED), dict) else None
        earlier = applied_loss if isinstance(applied_loss, dict) else {}
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
    loss = data["loss"]["name"]
    kept = earlier.get("options") if earlier.get("name") == loss else None
    options = dict(kept) if isinstance(kept, dict) else {}
    if isinstance(loss, str) and loss in (field_choices("loss", "name") or ()):
        for option, default in editable_options(loss).items():
            value = values.get(option_key(loss, option), options.get(option, default))
            if value == default and type(value) is type(default):
                options.pop(option, None)
            else:
                options[option] = value
    data["loss"]["options"] = options
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
            "safetensors": "built-in architecture, your weights", "module": "your nn.Module class + weights",
            "huggingface": "a Hugging Face model folder"}
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
    return [k for k in field_choices("teacher", "kind") if k != "torchscript" or trusted or k == current]


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


# --------------------------------------------------------------------------- the page's sections
KEEP = "session"  # widget values survive hiding (e.g. tau while another loss is chosen) and page switches


@dataclass
class Context:
    """What the sections of one rerun of the page share.

    Attributes:
        upload_mb: the upload size limit, in MB.
        paths_on: the operator allows paths on the server (``PERCO_VIZ_DATA_ROOTS``).
        trusted: the operator trusts TorchScript uploads (``PERCO_VIZ_TRUST_TORCHSCRIPT=1``).
        problems: what stops the configuration from starting (said above the Start button).
        dataset: the loaded dataset (set by :func:`data_section`), or None.
    """

    upload_mb: int
    paths_on: bool
    trusted: bool
    problems: list[str] = dataclasses.field(default_factory=list)
    dataset: Any = None


def open_form() -> Context:
    """Fill the widgets on the first visit (the demo, or the stored config); read the server's settings."""
    from ui import common

    init_state(st.session_state, common.demo_config())
    return Context(common.upload_mb(), common.server_paths_on(), common.trusts_torchscript())


def applied(section: str, name: str):
    """The field's value in the config last loaded into the form (keeps slider ranges stable)."""
    return st.session_state.get(APPLIED, {}).get(section, {}).get(name)


def bounds(section: str, name: str, lo, hi):
    """Slider range widened to hold the loaded config's value."""
    value = applied(section, name)
    return (lo, hi) if value is None else (min(lo, value), max(hi, value))


def choices(section: str, name: str, base) -> list:
    """Select-slider choices plus the loaded config's value."""
    value = applied(section, name)
    return sorted(set(base) | ({value} if value is not None else set()))


def number(where, section: str, name: str, **kwargs):
    """A number input for one RunConfig field (labelled from :data:`LABELS`), with no bounds of its
    own in the browser: a value out
    of the field's range reaches the page, which names it under the input (:func:`field_error`)
    and keeps it from starting (:func:`form_errors`). Bounds in the browser would turn the field
    red while the page went on with the old value."""
    kwargs.setdefault("step", 1)  # the widget's type (int or float) follows its step: whole numbers unless given
    value = where.number_input(LABELS[f"{section}.{name}"], min_value=None, max_value=None, key=key(section, name), persist_state=KEEP,
                               help=field_help(section, name), **kwargs)
    if field_error(section, name, value):  # in words under the field; the whole message is above Start
        where.caption(f":red[:material/error: {field_rule(section, name)}]")
    return value


# The form's label of a field: the number inputs' labels, and how messages name a field as the
# person sees it.
LABELS: dict[str, str] = {
    "data.n_samples": "Points", "data.noise": "Noise", "data.test_fraction": "Held-out share",
    "data.probe_size": "Probe set size", "data.seed": "Split seed", "student.dim": "Feature width (dim)",
    "student.hidden": "Hidden width", "loss.tau": "τ (tau)", "loss.anchors": "Anchors per batch (0 = all)",
    "loss.ce_weight": "Cross-entropy weight", "loss.kd_weight": "KD weight", "loss.kd_temperature": "KD temperature",
    "train.epochs": "Epochs", "train.batch_size": "Batch size", "train.lr": "Learning rate",
    "train.weight_decay": "Weight decay", "train.seed": "Seed", "train.snapshot_every": "Snapshot every … steps",
    "train.amp": "bf16 autocast on CUDA", "name": "Run name"}


def field_label(dotted: str) -> str:
    """``Epochs (train.epochs)``: the form's label of a field and its name in config files."""
    label = LABELS.get(dotted)
    return f"{label} ({dotted})" if label else dotted


def field_error(section: str, name: str, value) -> str | None:
    """What is wrong with ``value`` in the field ``section.name``, in words naming the field and
    what to change (``None``: nothing). The rules are the config's (:func:`perco_viz.config.check_field`)."""
    from perco_viz.config import check_field

    dotted = f"{section}.{name}" if section else name
    if value == 0 and (section, name) in ZERO_IS_NONE:
        value = None
    if isinstance(value, str) and (section, name) in EMPTY_IS_NONE:
        value = value.strip() or None
    try:
        check_field(dotted, value)
    except ConfigError as exc:
        text = str(exc)
        if text.startswith(dotted + " "):
            text = text[len(dotted) + 1:]
        return f"{field_label(dotted)} {text}."
    return None


def draft_config(state: Mapping[str, Any]) -> RunConfig:
    """The form's configuration with every invalid field at its default: what the sections use
    to load the data, the teacher and the student while a field elsewhere is being corrected
    (:func:`form_errors` keeps that configuration from starting)."""
    valid = dict(state)
    for section, name, _ in _fields(RunConfig()):
        widget = key(section, name)
        if widget in valid and field_error(section, name, valid[widget]):
            del valid[widget]
    try:
        return config_from_values(valid)
    except ConfigError:  # a loss option of the wrong type: the rest of the form still loads
        return config_from_values({k: v for k, v in valid.items() if not k.startswith(f"{PREFIX}-loss-options-")})


def field_rule(section: str, name: str) -> str:
    """What a number field takes, in a few words for under the field: ``must be between 1 and 1,000,000``."""
    from perco_viz.config import field_rules

    return "must be " + field_rules().get(f"{section}.{name}", (None, "a valid value"))[1].removeprefix("null or ")


def form_errors(state: Mapping[str, Any]) -> list[str]:
    """Every field of the Setup form whose value a run cannot take (one message each, naming the
    field and what to change); empty when the form makes a valid configuration. Fields without a
    widget value are not checked (they keep the config's valid defaults)."""
    errors = []
    for section, name, _ in _fields(RunConfig()):
        widget = key(section, name)
        if widget in state:
            problem = field_error(section, name, state[widget])
            if problem:
                errors.append(problem)
    if not errors:
        try:
            config_from_values(state)
        except ConfigError as exc:  # e.g. a loss option of the wrong type
            errors.append(f"{exc}.")
    return errors


def path_field(ctx: Context, where, label: str, section: str, name: str, placeholder: str, **kwargs) -> None:
    """A text input for a path on the server where the operator allows them; else the file's name."""
    from perco_viz.sessions import is_within
    from ui import common

    if ctx.paths_on:
        where.text_input(label, key=key(section, name), persist_state=KEEP, placeholder=placeholder,
                         help=field_help(section, name), **kwargs)
        return
    value = (st.session_state.get(key(section, name)) or "").strip()
    if value:
        own = is_within(Path(value), common.session_space().uploads)
        where.caption(f"{label}: `{Path(value).name if own else value}`" + (" (uploaded)" if own else ""))


def path_allowed(ctx: Context, section: str, name: str, where) -> bool:
    """Whether the path in the field may be read by this session; else the message in ``where``."""
    from perco_viz.sessions import SessionError
    from ui import common

    value = (st.session_state.get(key(section, name)) or "").strip()
    if not value:
        return True
    try:
        common.check_path(value, f"{section}.{name}")
    except SessionError as exc:
        where.error(f"This path cannot be used: {exc}")
        ctx.problems.append(f"the {section}'s path")
        return False
    return True


def data_section(ctx: Context):
    """Dataset widgets; returns the loaded Dataset or None."""
    from perco_viz.paths import dataset_cache_dir
    from ui import common

    S = st.session_state
    st.subheader("1 · Data")
    name = st.selectbox("Dataset", field_choices("data", "name"), key=key("data", "name"), format_func=dataset_label,
                        on_change=on_dataset_change, persist_state=KEEP, help=field_help("data", "name"))
    st.caption(DATA_HELP.get(name, ""))
    kind = dataset_kind(name)
    if kind == "synthetic":
        c1, c2 = st.columns(2)
        c1.select_slider("Points", choices("data", "n_samples", POINT_CHOICES), key=key("data", "n_samples"),
                         format_func=lambda v: f"{v:,}", persist_state=KEEP, help=field_help("data", "n_samples"))
        c2.slider("Noise", *bounds("data", "noise", 0.0, 1.0), step=0.01, key=key("data", "noise"),
                  persist_state=KEEP, help=field_help("data", "noise"))
    elif kind == "file":
        upload_key = f"setup-data-upload-{name}"
        st.file_uploader(f"Upload a .{name} file", type=[name], key=upload_key, on_change=on_data_upload,
                         args=(upload_key,), max_upload_size=ctx.upload_mb,
                         help=f"Checked, then kept in this session's own folder (at most {ctx.upload_mb:,} MB).")
        show_message("data")
        c1, c2 = st.columns([3, 1]) if ctx.paths_on else (st, st.columns([1, 2])[0])
        path_field(ctx, c1, "File", "data", "path", "filled in by the upload, or a path on this machine")
        c2.text_input("Label column", key=key("data", "label_column"), persist_state=KEEP, placeholder="label or y",
                      help=field_help("data", "label_column"))
    elif kind == "folder":
        path_field(ctx, st, "Image folder", "data", "path", "/path/to/images — one sub-folder per class")
    elif kind == "root":
        path_field(ctx, st, "Dataset folder", "data", "path", f"empty: {dataset_cache_dir()}")
        if not ctx.paths_on:
            st.caption("Read from the server's own dataset folder.")
        st.checkbox("Download allowed", key=key("data", "download"), persist_state=KEEP,
                    help=field_help("data", "download"))
        st.select_slider("Training points (cap)", choices("data", "n_samples", POINT_CHOICES),
                         key=key("data", "n_samples"), format_func=lambda v: f"{v:,}", persist_state=KEEP,
                         help=field_help("data", "n_samples"))
    if kind not in ("builtin", "synthetic") and not ctx.paths_on:
        st.caption(common.SERVER_PATHS_OFF)
    summary = st.empty()  # filled once the dataset loads, above the advanced options
    with st.expander("More data options"):
        c1, c2, c3 = st.columns(3)
        c1.slider("Held-out share", *bounds("data", "test_fraction", 0.05, 0.5), step=0.05,
                  key=key("data", "test_fraction"), persist_state=KEEP, help=field_help("data", "test_fraction"))
        number(c2, "data", "probe_size", step=50)
        number(c3, "data", "seed")

    cfg = draft_config(S)
    if kind in ("file", "folder") and not cfg.data.path:
        if kind == "file":
            summary.info("Upload a file to continue." if not ctx.paths_on else
                         "Upload a file or give a path to continue.")
        else:
            summary.info("Give a folder to continue." if ctx.paths_on else
                         "This dataset is a folder on the server, and this server reads only uploads: choose "
                         "another dataset.")
        ctx.problems.append("the data")
        return None
    if not path_allowed(ctx, "data", "path", summary):
        return None
    try:
        ds = load_dataset(cfg)
    except Exception as exc:  # noqa: BLE001 — any loader error is shown, never a traceback
        summary.error(f"The dataset could not be loaded: {exc}")
        ctx.problems.append("the dataset")
        return None
    summary.success(describe_dataset(ds), icon=":material/check_circle:")
    ctx.dataset = ds
    return ds


def teacher_section(ctx: Context, ds):
    """Teacher widgets; returns the teacher's feature width or None."""
    from ui import common

    S = st.session_state
    st.subheader("2 · Teacher")
    kinds = teacher_kinds(ctx.trusted, S.get(key("teacher", "kind")))
    kind = st.selectbox("Teacher", kinds, key=key("teacher", "kind"), format_func=teacher_label,
                        on_change=on_teacher_change, persist_state=KEEP, help=field_help("teacher", "kind"))
    st.caption(TEACHER_HELP.get(kind, ""))
    if kind == "torchscript" and not ctx.trusted:
        st.error(common.TORCHSCRIPT_OFF)
        ctx.problems.append("the teacher")
        return None
    if kind == "torchscript":
        st.warning(common.TORCHSCRIPT_WARNING, icon=":material/warning:")
    if kind in TEACHER_NEEDS_ARCH:
        st.text_input("Architecture", key=key("teacher", "arch"), persist_state=KEEP, placeholder="resnet18",
                      on_change=on_teacher_change, help=field_help("teacher", "arch"))
    elif kind in CLASS_INPUT:
        label, placeholder = CLASS_INPUT[kind]
        st.text_input(label, key=key("teacher", "arch"), persist_state=KEEP, placeholder=placeholder,
                      on_change=on_teacher_change, help=field_help("teacher", "arch"))
    if kind == "huggingface":
        path_field(ctx, st, "Model folder", "teacher", "path", "/models/my-vit (written by save_pretrained)",
                   on_change=on_teacher_change)
        if not ctx.paths_on:
            st.error("A Hugging Face model is a folder on this machine, and this server reads only uploads. "
                     + common.SERVER_PATHS_OFF)
            ctx.problems.append("the teacher")
            return None
    elif kind not in TEACHER_NO_FILE:
        upload_key = f"setup-teacher-upload-{kind}"
        st.file_uploader("Upload the weights file" if kind != "torchscript" else "Upload the TorchScript file",
                         type=TEACHER_FILE_TYPES.get(kind, WEIGHT_TYPES), key=upload_key,
                         on_change=on_teacher_upload, args=(upload_key,), max_upload_size=ctx.upload_mb,
                         help="Kept in this session's own folder. Pickles with Python objects are refused.")
        show_message("teacher")
        path_field(ctx, st, "File", "teacher", "path", "filled in by the upload, or a path on this machine",
                   on_change=on_teacher_change)
        if not ctx.paths_on:
            st.caption(common.SERVER_PATHS_OFF)
    if ds is None:
        st.selectbox("Feature layer", [""], key=key("teacher", "layer"), format_func=layer_label,
                     persist_state=KEEP, disabled=True, help="Available once the dataset loads.")
        return None

    cfg = draft_config(S)
    data_key, t = data_json(cfg), cfg.teacher
    if kind == "module" and not t.arch:
        st.info("Give your model's class (package.module:Class) to continue.")
        ctx.problems.append("the teacher's class")
        return None
    if kind not in TEACHER_NO_FILE and not t.path:
        st.info("Give the model's folder to continue." if kind == "huggingface" else
                "Upload the teacher's file (or give its path) to continue.")
        ctx.problems.append("the teacher's file")
        return None
    if not path_allowed(ctx, "teacher", "path", st):
        return None
    stamp = file_stamp(t.path)
    try:
        with st.spinner("Loading the teacher to list its layers…"):
            layers = teacher_layers(data_key, t.kind, t.arch, t.path, stamp, ctx.trusted)
            default = teacher_shape(data_key, section_json(dataclasses.replace(t, layer=None)), stamp, ctx.trusted)
    except Exception as exc:  # noqa: BLE001
        common.show_error(exc, "The teacher could not be loaded")
        ctx.problems.append("the teacher")
        return None
    extra = applied("teacher", "layer")
    options = ["", *layers, *([extra] if extra and extra not in layers else [])]
    default_name = describe_default_layer(default)
    layer_col, pool_col = st.columns([2, 1]) if kind not in ("builtin", "identity", "safetensors") else (st, None)
    layer = layer_col.selectbox("Feature layer", options, key=key("teacher", "layer"), persist_state=KEEP,
                                format_func=lambda v: layer_label(v, default_name), disabled=len(options) == 1,
                                help=field_help("teacher", "layer"))
    if pool_col is not None:
        pool_col.selectbox("Pooling", field_choices("teacher", "pooling"), key=key("teacher", "pooling"),
                           format_func=POOLING_LABELS.get, persist_state=KEEP, help=field_help("teacher", "pooling"))
    t = draft_config(S).teacher
    try:
        shape = teacher_shape(data_key, section_json(t), stamp, ctx.trusted)
    except Exception as exc:  # noqa: BLE001
        common.show_error(exc, f"Layer {layer!r} does not give features")
        ctx.problems.append("the teacher's layer")
        return None
    params = f" · {shape['params']:,} parameters" if shape["params"] else " (the raw inputs)"
    status = f" · {builtin_teacher_status(ds)}" if kind == "builtin" else ""
    st.caption(f"Teacher features: **{shape['dim']:,}-d**{params}{status}")
    return shape["dim"]


def student_section(ctx: Context, ds, teacher_dim):
    """Student widgets."""
    from ui import common

    S = st.session_state
    st.subheader("3 · Student")
    archs = [a for a in field_choices("student", "arch") if ds is None or ds.is_image or a not in IMAGE_ONLY_STUDENTS]
    if S.get(key("student", "arch")) not in archs:
        S[key("student", "arch")] = archs[0]
    c1, c2 = st.columns([1, 2])
    arch = c1.selectbox("Student", archs, key=key("student", "arch"), persist_state=KEEP,
                        help=field_help("student", "arch"))
    c2.slider("Feature width (dim)", *bounds("student", "dim", 2, 64), key=key("student", "dim"), persist_state=KEEP,
              help=field_help("student", "dim"), disabled=arch in OWN_MODELS)
    st.caption(STUDENT_HELP.get(arch, ""))
    if arch in OWN_MODELS and not own_student_widgets(ctx, arch):
        return
    if arch == "file":
        upload_key = "setup-student-upload"
        st.file_uploader("Upload the student file", type=student_file_types(ctx.trusted), key=upload_key,
                         on_change=on_student_upload, args=(upload_key,), max_upload_size=ctx.upload_mb,
                         help="Kept in this session's own folder. Pickles with Python objects are refused.")
        if ctx.trusted:
            st.warning(common.TORCHSCRIPT_WARNING, icon=":material/warning:")
        else:
            st.caption(common.TORCHSCRIPT_OFF)
        show_message("student")
        path_field(ctx, st, "File", "student", "path", "filled in by the upload, or a path on this machine")
    with st.expander("More student options"):
        number(st, "student", "hidden", step=32)
    if ds is None:
        return
    s = draft_config(S).student
    if arch == "file" and not s.path:
        st.info("Upload the student's file (or give its path) to continue.")
        ctx.problems.append("the student's file")
        return
    if (arch == "module" and not s.model_class) or (arch == "huggingface" and not s.path):
        st.info("Give your model's class to continue." if arch == "module" else
                "Give the model's folder to continue.")
        ctx.problems.append("the student's model")
        return
    if not path_allowed(ctx, "student", "path", st):
        return
    try:
        with st.spinner("Building the student to measure its features…"):
            shape = student_shape(data_json(draft_config(S)), section_json(s), file_stamp(s.path), ctx.trusted)
    except Exception as exc:  # noqa: BLE001
        common.show_error(exc, "The student could not be built")
        ctx.problems.append("the student")
        return
    ratio = f" (the teacher's are {teacher_dim:,}-d)" if teacher_dim else ""
    own = " · the run records this width" if arch in OWN_MODELS else ""
    st.caption(f"Student features: **{shape['dim']:,}-d**{ratio} · {shape['params']:,} parameters{own}")


def own_student_widgets(ctx: Context, arch: str) -> bool:
    """The class, file or folder, layer and pooling of a ``module`` / ``huggingface`` student; False
    when it cannot be used here (the reason is shown)."""
    from ui import common

    label, placeholder = CLASS_INPUT[arch]
    c1, c2 = st.columns(2)
    c1.text_input(label, key=key("student", "model_class"), persist_state=KEEP, placeholder=placeholder,
                  help=field_help("student", "model_class"))
    if arch == "module":
        upload_key = "setup-student-upload-module"
        c2.file_uploader("Upload its weights (optional)", type=["safetensors"], key=upload_key,
                         on_change=on_student_upload, args=(upload_key,), max_upload_size=ctx.upload_mb,
                         help="Saved by perco_viz.models.save_module_safetensors; without weights the class is "
                              "built with no arguments, freshly initialised.")
        show_message("student")
        path_field(ctx, st, "File", "student", "path", "filled in by the upload, or a path on this machine")
    else:
        path_field(ctx, c2, "Model folder", "student", "path", "/models/my-vit (written by save_pretrained)")
        if not ctx.paths_on:
            st.error("A Hugging Face model is a folder on this machine, and this server reads only uploads. "
                     + common.SERVER_PATHS_OFF)
            ctx.problems.append("the student")
            return False
    l1, l2 = st.columns([2, 1])
    l1.text_input("Feature layer", key=key("student", "layer"), persist_state=KEEP, placeholder="default",
                  help=field_help("student", "layer"))
    l2.selectbox("Pooling", field_choices("student", "pooling"), key=key("student", "pooling"),
                 format_func=POOLING_LABELS.get, persist_state=KEEP, help=field_help("student", "pooling"))
    return True


def loss_options_editor(loss: str) -> None:
    """One input per option the chosen loss declares, three to a row (default: the loss's own;
    help: the option's line in the loss's docstring, else the loss's summary)."""
    columns = st.columns(3)
    for i, (option, default) in enumerate(editable_options(loss).items()):
        where, widget_key, help_text = columns[i % 3], option_key(loss, option), option_help(loss, option)
        st.session_state.setdefault(widget_key, default)
        if isinstance(default, bool):
            where.checkbox(option, key=widget_key, persist_state=KEEP, help=help_text)
        elif isinstance(default, int):
            where.number_input(option, step=1, key=widget_key, persist_state=KEEP, help=help_text)
        else:
            where.number_input(option, format="%.6g", key=widget_key, persist_state=KEEP, help=help_text)


def loss_section():
    """Loss widgets: the coherence options when the chosen loss takes them, the loss's own options."""
    from perco_viz.losses import LOSSES, loss_defaults

    st.subheader("4 · Loss")
    name = st.selectbox("Transfer loss", field_choices("loss", "name"), key=key("loss", "name"), persist_state=KEEP,
                        help=field_help("loss", "name"))
    st.caption(LOSSES[name].summary)
    takes = loss_defaults(name)
    cols = iter(st.columns(3))  # filled from the left: only the options this loss takes
    if "tau" in takes:
        next(cols).select_slider("τ (tau)", choices("loss", "tau", TAU_CHOICES), key=key("loss", "tau"),
                                 persist_state=KEEP, help=field_help("loss", "tau"))
    if "kernel" in takes:
        next(cols).selectbox("Kernel", field_choices("loss", "kernel"), key=key("loss", "kernel"), persist_state=KEEP,
                             help=field_help("loss", "kernel"))
    metrics = field_choices("loss", "metric")
    next(cols).selectbox("Metric", metrics, key=key("loss", "metric"), persist_state=KEEP,
                         help=field_help("loss", "metric"))
    if editable_options(name):
        st.caption(f"Options of {name} (its paper's defaults unless changed):")
        loss_options_editor(name)
    with st.expander("Advanced loss options"):
        a1, a2 = st.columns(2)
        if "anchors" in takes:
            number(a1, "loss", "anchors", step=16)
        (a2 if "anchors" in takes else a1).selectbox(
            "Teacher metric", ["", *field_choices("loss", "teacher_metric")], key=key("loss", "teacher_metric"),
            persist_state=KEEP, format_func=lambda m: m or "same as the student's",
            help=field_help("loss", "teacher_metric"))
        b1, b2, b3 = st.columns(3)
        number(b1, "loss", "ce_weight", step=0.1)
        number(b2, "loss", "kd_weight", step=0.1)
        number(b3, "loss", "kd_temperature", step=0.5)


def training_section(ctx: Context):
    """Optimizer and device widgets."""
    from perco_viz.distill import available_devices

    S = st.session_state
    st.subheader("5 · Training")
    c1, c2, c3 = st.columns(3)
    number(c1, "train", "epochs")
    c2.select_slider("Batch size", choices("train", "batch_size", BATCH_CHOICES), key=key("train", "batch_size"),
                     persist_state=KEEP, help=field_help("train", "batch_size"))
    number(c3, "train", "lr", step=1e-4, format="%.4g")
    d1, d2, d3 = st.columns(3)
    number(d1, "train", "weight_decay", step=1e-4, format="%.4g")
    number(d2, "train", "seed")
    devices = available_devices()
    if S.get(key("train", "device")) not in devices:
        devices = [*devices, S.get(key("train", "device"))]
    device = d3.selectbox("Device", devices, key=key("train", "device"), persist_state=KEEP,
                          help=field_help("train", "device"))
    here = [d for d in available_devices() if d not in ("auto", "cpu")]
    st.caption("Devices here: CPU" + (f" and {', '.join(d.upper() for d in here)}" if here else " only (no GPU "
               "found). For a GPU server, download the configuration and run it there with `perco-viz distill`."))
    if device not in available_devices():
        st.warning(f"Device {device!r} is not available here: choose auto or cpu to train on this machine.")
        ctx.problems.append("the device")
    batch_problem = batch_error(S, ctx.dataset)
    if batch_problem:
        st.error(batch_problem, icon=":material/error:")
        ctx.problems.append("the batch size")
    with st.expander("More training options"):
        e1, e2 = st.columns(2)
        number(e1, "train", "snapshot_every")
        cuda = any(d.startswith("cuda") for d in available_devices())
        e2.checkbox(LABELS["train.amp"], key=key("train", "amp"), persist_state=KEEP, disabled=not cuda,
                    help=field_help("train", "amp"))
        if not cuda:
            e2.caption("Off here: this machine has no CUDA GPU. The setting is kept in the configuration for a "
                       "GPU server.")


def used_value(value) -> str:
    """How the config panel writes a value a run uses: ``not used``, ``off``/``on``, ``1,347``."""
    if value is None:
        return "not used"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:,}" if isinstance(value, int) else str(value)


def batch_error(state: Mapping[str, Any], ds) -> str | None:
    """Why the form's batch size (or probe set) cannot train on ``ds`` (the engine's own check,
    ``perco_viz.distill.check_against_data``), in words saying what to change; None when it can
    or the dataset is not loaded."""
    from perco_viz.distill import check_against_data

    if ds is None:
        return None
    try:
        check_against_data(draft_config(state), ds.n_train, ds.n_test)
    except ConfigError as exc:
        return f"{exc}."
    return None


def config_panel(ctx: Context):
    """The resolved config: YAML (and the values a run uses where they differ), download, use,
    start; when a field is invalid, the fields to change instead (nothing can start)."""
    from perco_viz.distill import effective_settings
    from ui import common

    S = st.session_state
    st.subheader("Configuration")
    st.text_input("Run name", key=key("", "name"), persist_state=KEEP, placeholder="optional",
                  help=field_help("", "name"))
    errors = form_errors(S)
    if errors:
        st.error("Nothing can start until you change this (no configuration is shown: none would run):\n\n"
                 + "\n".join(f"- {e}" for e in errors), icon=":material/error:")
        return
    cfg = config_from_values(S)
    if ctx.problems:
        st.warning(f"Fix {', '.join(ctx.problems)} first: see the messages on the left.")
    b1, b2 = st.columns(2)
    if b1.button("Use on Distill", key="setup-use", disabled=bool(ctx.problems), width="stretch",
                 help="The Distill page's Start button will use it."):
        store_config(S, cfg)
        st.toast("Configuration stored: Distill will use it.", icon=":material/check_circle:")
    if b2.button("▶ Start training", key="setup-start", type="primary", disabled=bool(ctx.problems), width="stretch",
                 help="Store this configuration, start the run and watch it live."):
        store_config(S, cfg)
        if common.start_run(cfg):
            st.switch_page("pages/2_Distill.py")
    stored = S.get("setup_config")
    if stored is not None and stored == cfg:
        st.caption(":material/check_circle: This is the configuration Distill will use.")
    elif stored is not None:
        st.caption("Distill still uses the configuration stored earlier: press **Use on Distill** to "
                   "store this one.")
    if ctx.dataset is not None:  # before the YAML: its values are the config's, these the run's
        used = effective_settings(cfg, ctx.dataset.n_train, ctx.dataset.n_test)
        if used:
            st.caption("What a run of it uses here:\n" + "\n".join(
                f"- `{dotted}`: **{used_value(value)}** ({why})" for dotted, (value, why) in used.items()))
    st.code(cfg.to_yaml(), language="yaml", wrap_lines=True)
    st.download_button("Download config.yaml", cfg.to_yaml(), file_name="config.yaml", mime="application/x-yaml",
                       key="setup-download", icon=":material/download:",
                       help="Run it anywhere: perco-viz distill --config config.yaml")


def config_io():
    """Upload a configuration, or reset to the demo: drawn before anything else can fail, so a bad
    configuration (or a bad value left in a widget) never takes the way out with it."""
    st.file_uploader("Load a configuration (YAML or JSON)", type=["yaml", "yml", "json"], key="setup-config-upload",
                     on_change=on_config_upload, max_upload_size=1,
                     help="A config.yaml downloaded here, or the config.json of any run: it fills the form.")
    show_message("config")
    st.button("Reset to the demo", key="setup-reset", on_click=reset_to_demo,
              help="Back to the built-in demo's settings.")


def files_panel():
    """This session's folder: how full it is, and a way to free it."""
    from perco_viz.sessions import SessionError, format_bytes, ttl_seconds
    from ui import common

    space = common.session_space()
    with st.expander("This session's files"):
        try:
            used, limit, ttl_h = space.usage(), space.limit(), ttl_seconds() / 3600
        except SessionError as exc:
            common.show_error(exc, "The session limits are misconfigured")
            return
        f = format_bytes
        st.progress(min(1.0, used["total"] / limit), text=f"{f(used['total'])} of {f(limit)} used: uploads "
                    f"{f(used['uploads'])}, runs {f(used['runs'])}")
        st.caption(f"Your uploads and runs are kept in this session's own folder, which no other session can read. "
                   f"It is deleted {ttl_h:g} hours after your last visit.")
        st.button("Delete my uploads", key="setup-delete-uploads", on_click=delete_uploads,
                  disabled=used["uploads"] == 0, icon=":material/delete:",
                  help="Frees their space; the fields that used them are emptied. Runs are kept.")
        show_message("files")

