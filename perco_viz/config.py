"""One configuration for every entry point: the CLI, the app and the tests.

A :class:`RunConfig` is plain data (nested dataclasses of str/int/float/bool/None, plus the
chosen loss's own options in ``loss.options``). It serializes to ``config.json`` in the run
directory, loads back from JSON or YAML, and takes ``section.field=value`` overrides, so a run
made anywhere can be reproduced anywhere.

The dataclasses are the single source of every field: its type (the annotation), its default,
its help text and its choices (``dataclasses.field(metadata={"help": ..., "choices": ...})``,
read through :func:`field_help`, :func:`field_choices` and :func:`config_fields`). The CLI's
flags (:mod:`perco_viz.cli`) and the Setup page's widgets (``ui/setup.py``) are derived from
them; the choices are the owning modules' registries (``DATASET_NAMES``, ``LOSS_NAMES``, ...),
named in the metadata, never copied. ``loss.options`` is checked against the options the chosen
loss declares (:func:`check_loss_options`): an unknown option or a value of another type than
its default is refused with the dotted name ``loss.options.<option>``.

Configs are data, validated. Every way in — :meth:`RunConfig.from_dict`, :meth:`~RunConfig.from_text`,
:meth:`~RunConfig.load` (the CLI's ``--config``, the Setup upload, a run's ``config.json``) and
:meth:`~RunConfig.override` (the CLI's flags and ``--set section.field=value``) — checks

* the text: at most :data:`MAX_CONFIG_BYTES`; YAML anchors/aliases (``&a`` / ``*a``) and explicit
  tags (``!!python/...``, ``!foo``, even ``!!str``) are refused before anything is built, so an
  alias bomb costs microseconds; JSON goes through the same (YAML) parser;
* every field's type against its annotation (the message names the dotted field):

  - ``str``: text only (``name: 123`` is refused; quote it: ``name: "123"``);
  - ``int``: an integer; a float with no fractional part (``3.0``) is taken as ``3``; booleans and
    text (``"3"``) are refused;
  - ``float``: an int or a float, finite (NaN and infinities are refused); booleans and text are
    refused (YAML's ``1e-3`` without a dot is read as a number here, as JSON writes it);
  - ``bool``: ``true``/``false`` (YAML's ``yes``/``no``/``on``/``off`` are booleans already) or
    the integers ``1``/``0``; anything else (``maybe``, ``2``) is refused;
  - ``X | None``: ``null`` as well;

  Text is turned into a value in one place only: :func:`parse_value`, behind
  :meth:`RunConfig.override` and :func:`apply_overrides`, the entrances of the command line
  (which has nothing but text: flags, ``--set FIELD=VALUE``). There an ``int`` field takes
  ``"3"``, a ``float`` field ``"1e-3"``, a ``bool`` field ``true/false/yes/no/on/off/1/0``
  (any case; ``maybe`` is refused) and an optional field ``none``/``null``/empty text;
* every field's range (:meth:`RunConfig.validate`, the table :func:`field_rules`), with one-line
  messages naming the field and what is allowed. What depends on the data (``batch_size`` at
  most the training set, enough held-out points for the probe set, an available device) is
  checked by the engine once the data are loaded.

>>> cfg = RunConfig()
>>> cfg.loss.name, cfg.student.dim
('coherence', 8)
>>> RunConfig.from_dict(cfg.to_dict()) == cfg
True
>>> RunConfig.from_text("name: 123")
Traceback (most recent call last):
...
perco_viz.config.ConfigError: name must be a string (text), got 123
>>> RunConfig().override(**{"train.amp": "off", "train.epochs": "5"}).train.amp
False
"""

from __future__ import annotations

import math
import os
import re
import stat
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

MAX_CONFIG_BYTES = 1 << 20  # a config is a few hundred bytes; anything near 1 MiB is not one
MAX_POINTS = 1_000_000  # data.n_samples (points generated, or a cap on a torchvision set), loss.anchors
MAX_PROBE = 100_000  # data.probe_size: every snapshot ranks all pairs of the probe set
MAX_BATCH = 65_536  # train.batch_size: the coherence loss holds a batch² matrix
MAX_SEED = 2**32 - 1
MAX_STUDENT_DIM = 4096  # student.dim: a module/huggingface student's own feature width must fit too
MAX_DEPTH = 8  # a config nests two levels (section, field); deeper YAML is refused while parsing
MAX_NODES = 2000  # a full config is under 100 YAML nodes; parsing stops at the first node past this
DEVICE_RE = re.compile(r"auto|cpu|mps|cuda(:[0-9]{1,3})?")
Scalar = str | int | float | bool | None  # the value of a loss option (a scalar)
BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


class ConfigError(ValueError):
    """A configuration value or file is invalid; the message says what to change."""


def _field(default: Any = MISSING, doc: str = "", *, choices: str | None = None,
           factory: Any = MISSING) -> Any:
    """A config field with its help text and (optionally) its choices, declared once.

    ``choices`` names the owning module's tuple as ``"module:NAME"`` (resolved lazily by
    :func:`field_choices`, so this module imports no registry at import time).
    """
    metadata = {"help": doc, **({"choices": choices} if choices else {})}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class DataConfig:
    """Which inputs to use (each field's help: :func:`field_help`)."""

    name: str = _field("digits", "The inputs the teacher and the student both see: built in, synthetic, your own "
                       "file or folder, or a torchvision dataset read from a folder.",
                       choices="perco_viz.data:DATASET_NAMES")
    path: str | None = _field(None, "File or folder of your own data (npz, csv, image_folder) or the folder of a "
                              "torchvision dataset (its own layout).")
    label_column: str | None = _field(None, "Which column (CSV) or array (NPZ) holds the labels. Empty: one named "
                                      "label or y, if any; otherwise the data are unlabeled.")
    n_samples: int = _field(2000, "Synthetic sets: how many points to generate. Torchvision sets: a cap on the "
                            "training points (a stratified sample; the test split is cut in proportion).")
    noise: float = _field(0.05, "Standard deviation of the Gaussian noise added to every coordinate of a "
                          "synthetic set.")
    test_fraction: float = _field(0.25, "Share of the data kept out of training; the probe set is drawn from it.")
    probe_size: int = _field(500, "Held-out points every snapshot is measured on (PC, c_i, embeddings).")
    download: bool = _field(False, "Torchvision datasets only. Off: only files already in the folder are read. On: "
                            "torchvision may download the dataset into the folder (needs torchvision and a network).")
    seed: int = _field(0, "Fixes the train/held-out split and the synthetic points.")


@dataclass
class TeacherConfig:
    """The teacher encoder, frozen (each field's help: :func:`field_help`)."""

    kind: str = _field("builtin", "The frozen network whose perception the student learns: builtin is trained "
                       "here and cached; identity takes the raw inputs as its features; huggingface is a Hugging Face model "
                       "folder; module is your own nn.Module class with its weights.",
                       choices="perco_viz.models:TEACHER_KINDS")
    arch: str | None = _field(None, "Architecture name of a torchvision or timm teacher (e.g. resnet18); for kind "
                              "module your class as package.module:Class (e.g. mypkg.nets:ResNet8); for kind "
                              "huggingface a transformers class (empty: AutoModel).")
    path: str | None = _field(None, "The teacher's file: its weights (.safetensors), or a TorchScript file; for kind "
                              "huggingface the folder written by save_pretrained (safetensors weights).")
    layer: str | None = _field(None, "Which module's output are the teacher's features. The default is the built-in "
                               "teacher's embed layer, else the input of a classifier head (penultimate layer), "
                               "else the model's output.")
    pooling: str = _field("flatten", "How the layer's output becomes one feature row per input: flatten keeps every "
                          "value; cls takes the first token and mean averages the tokens of a transformer's "
                          "(inputs, tokens, hidden) output.", choices="perco_viz.models:POOLINGS")


@dataclass
class StudentConfig:
    """The student encoder, trained (each field's help: :func:`field_help`)."""

    arch: str = _field("mlp", "The small network that is trained: a built-in one (cnn for image data only), file "
                       "to load your own, module for your own nn.Module class, or huggingface for a Hugging Face "
                       "model folder.", choices="perco_viz.models:STUDENT_ARCHS")
    dim: int = _field(8, "Width of the student's features: small widths show the relaxation best — the student "
                      "cannot copy the teacher's geometry, only its ranking. Arch module or huggingface: set by the "
                      "run to the model's own width.")
    hidden: int = _field(256, "Width of the built-in student's hidden layers.")
    path: str | None = _field(None, "The student's file when arch is file: a .safetensors of a built-in student "
                              "(or, where allowed, a TorchScript file); for arch module its weights (.safetensors, "
                              "empty: freshly initialised); for arch huggingface the folder written by "
                              "save_pretrained.")
    model_class: str | None = _field(None, "Arch module: your nn.Module class as package.module:Class (e.g. "
                                     "mypkg.nets:ResNet8). Arch huggingface: a transformers class (empty: AutoModel).")
    layer: str | None = _field(None, "Arch module or huggingface: which module's output are the student's features "
                               "(empty: an embed layer, else the input of a classifier head, else the model's "
                               "output).")
    pooling: str = _field("flatten", "Arch module or huggingface: how the layer's output becomes one feature row per "
                          "input (flatten, or cls / mean over a transformer's tokens).",
                          choices="perco_viz.models:POOLINGS")


@dataclass
class LossConfig:
    """The transfer loss and its options (each field's help: :func:`field_help`).

    ``tau`` ... ``anchors`` are the coherence loss's options (also handed to any other loss that
    declares an option of the same name); ``options`` holds the chosen loss's other options,
    checked against the options the loss declares (:func:`loss_option_defaults`).
    """

    name: str = _field("coherence", "What the student minimizes: perception coherence, or a class-unaware "
                       "baseline to compare with.", choices="perco_viz.losses:LOSS_NAMES")
    tau: float = _field(0.1, "Soft-rank temperature: smaller is closer to the hard ranks, larger gives smoother "
                        "gradients. Distances are normalized per anchor, so τ is scale-free.")
    kernel: str = _field("ramp", "The soft step that replaces 1[a < b]. ramp (the default) is exact and fast: "
                         "O(n² log n) by sorting; sigmoid is smooth everywhere but slower.",
                         choices="perco_viz.coherence:KERNELS")
    metric: str = _field("euclidean", "Dissimilarity δ between features: used by the coherence loss, and to "
                         "measure PC and c_i on every snapshot.", choices="perco_viz.coherence:METRICS")
    teacher_metric: str | None = _field(None, "Dissimilarity for the teacher's features, if different from the "
                                        "student's (empty: the same).", choices="perco_viz.coherence:METRICS")
    anchors: int | None = _field(None, "Rank over this many random anchors per batch, for very large batches. "
                                 "Empty (0 in the app): every point of the batch is an anchor.")
    ce_weight: float = _field(0.0, "Adds cross-entropy on the labels through a linear head on the student "
                              "(0 = off; needs labels).")
    kd_weight: float = _field(0.0, "Adds Hinton KD on logits (0 = off; needs labels and a teacher with a head).")
    kd_temperature: float = _field(4.0, "Temperature of the KD term.")
    options: dict[str, Scalar] = _field(doc="The chosen loss's own options (e.g. cc's gamma, rkd's "
                                        "distance_weight), checked against the options the loss declares; an "
                                        "option not given keeps the loss's default.", factory=dict)

    def loss_kwargs(self) -> dict[str, Any]:
        """The keyword options of ``make_loss(self.name, ...)``.

        Every option the loss declares that is also a field of this section (the coherence
        loss's ``tau``, ``kernel``, ``metric``, ``teacher_metric``, ``anchors``) comes from that
        field, then ``options`` are added.

        >>> LossConfig(name="cc", options={"gamma": 0.3}).loss_kwargs()
        {'gamma': 0.3}
        """
        declared = _declared_options(self.name)
        own = {k: getattr(self, k) for k in declared if k in _LOSS_FIELDS}
        return {**own, **self.options}


@dataclass
class TrainConfig:
    """Optimization and bookkeeping (each field's help: :func:`field_help`)."""

    epochs: int = _field(20, "Passes over the training split; a snapshot is taken after each.")
    batch_size: int = _field(256, "Points per step. The coherence loss ranks within a batch, so larger batches "
                             "see more of the perception at once.")
    lr: float = _field(3e-3, "AdamW's learning rate, with a cosine schedule to 0.")
    weight_decay: float = _field(1e-4, "AdamW's weight decay.")
    device: str = _field("auto", "Where to train: auto picks a CUDA GPU, then Apple's MPS, then the CPU; or cpu, "
                         "cuda, cuda:N, mps.")
    seed: int = _field(0, "Fixes the student's initialisation and the batches.")
    snapshot_every: int = _field(0, "Also measure the student every this many steps: smoother live curves, a "
                                 "little slower. 0: once per epoch only.")
    amp: bool = _field(True, "bf16 autocast on CUDA: faster on recent GPUs; ignored on the CPU.")


@dataclass
class RunConfig:
    """Everything needed to reproduce a run."""

    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    name: str | None = _field(None, "Names the run's folder and labels it in the run pickers (empty: made from "
                              "the dataset, the loss, the width and the time).")

    # ------------------------------------------------------------------ serialization
    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON/YAML-ready)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Build from a nested dict of data, type- and range-checked.

        Raises:
            ConfigError: an unknown section or key, a value of the wrong type (see the module
                docstring for the rules) or out of range; the message names the dotted field.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a mapping of sections (data, teacher, ...), got {_show(data)}")
        kwargs: dict[str, Any] = {}
        sections = {f.name: f for f in fields(cls)}
        hints = _hints(cls)
        for key, value in data.items():
            if key not in sections:
                raise ConfigError(f"unknown config section {_show(key)}; expected one of {sorted(sections)}")
            sub = _section_type(key)
            if sub is None:
                kwargs[key] = check_type(key, hints[key], value)
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"config section {key!r} must be a mapping of its fields, got {_show(value)}")
            sub_hints = _hints(sub)
            unknown = [k for k in value if k not in sub_hints]
            if unknown:
                shown = sorted(_show(k) for k in unknown)
                raise ConfigError(f"unknown key(s) [{', '.join(shown)}] in section {key!r}; expected {sorted(sub_hints)}")
            kwargs[key] = sub(**{k: check_type(f"{key}.{k}", sub_hints[k], v) for k, v in value.items()})
        return cls(**kwargs).validate()

    def to_json(self) -> str:
        """Pretty JSON text."""
        import json

        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def to_yaml(self) -> str:
        """YAML text (what the app shows and offers to download)."""
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_text(cls, text: str | bytes) -> RunConfig:
        """Parse JSON or YAML text (YAML is a superset of JSON), then :meth:`from_dict`.

        Raises:
            ConfigError: over :data:`MAX_CONFIG_BYTES`, not UTF-8, not YAML/JSON, YAML anchors,
                aliases or explicit tags, nesting deeper than :data:`MAX_DEPTH`, or any
                :meth:`from_dict` error.
        """
        return cls.from_dict(parse_config_text(text))

    def save(self, path: str | Path) -> None:
        """Write ``config.json`` (or YAML when the suffix is .yaml/.yml)."""
        path = Path(path)
        text = self.to_yaml() if path.suffix in {".yaml", ".yml"} else self.to_json()
        path.write_text(text)

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        """Read a JSON or YAML config file (a regular file of at most :data:`MAX_CONFIG_BYTES`).

        Raises:
            ConfigError: missing, not a regular file (a FIFO, a device, a folder), too big, or
                any :meth:`from_text` error; the message names the file.
        """
        path = Path(path).expanduser()
        where = f"config file {str(path)!r}"
        try:
            # O_NONBLOCK: a FIFO swapped in after any check cannot block the open; fstat decides on what was opened
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            raise ConfigError(f"{where} does not exist; check the path") from None
        except OSError as exc:
            raise ConfigError(f"{where} cannot be read: {exc.strerror or exc}") from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise ConfigError(f"{where} is not a file (a folder, FIFO or device); give a config.yaml or config.json")
        with os.fdopen(fd, "rb") as fh:
            if info.st_size > MAX_CONFIG_BYTES:
                raise ConfigError(f"{where} is {info.st_size / 1024:,.0f} KiB, over the {MAX_CONFIG_BYTES // 1024:,} KiB "
                                  "limit of a config (a config is a few hundred bytes)")
            try:
                raw = fh.read(MAX_CONFIG_BYTES + 1)  # bounded even if the file grew since the check
            except OSError as exc:
                raise ConfigError(f"{where} cannot be read: {exc.strerror or exc}") from None
        try:
            return cls.from_text(raw)
        except ConfigError as exc:
            raise ConfigError(f"{path.name}: {exc}") from None

    def override(self, **dotted: Any) -> RunConfig:
        """Return a copy with ``section.field=value`` overrides (``None`` values are skipped).

        This is the command line's entrance: a text value for a number or boolean field is
        parsed from its text (``"5"``, ``"1e-3"``, ``"off"``; :func:`parse_value`). A loss option
        is ``loss.options.<option>`` (typed by the chosen loss's default), or ``loss.options``
        with a whole mapping. When ``loss.name`` changes and ``loss.options`` is not given, the
        options the new loss does not declare are dropped (they belonged to the other loss).
        The result is type- and range-checked like :meth:`from_dict`.

        >>> RunConfig().override(**{"loss.tau": 0.05}).loss.tau
        0.05
        >>> RunConfig().override(**{"loss.name": "cc", "loss.options.gamma": "0.3"}).loss.options
        {'gamma': 0.3}
        >>> RunConfig().override(**{"train.batch_size": "0"})
        Traceback (most recent call last):
        ...
        perco_viz.config.ConfigError: train.batch_size must be between 3 and 65,536 (the losses rank pairs of other points within a batch), got 0
        """
        data = self.to_dict()
        options: dict[str, Any] = {}
        for key, value in dotted.items():
            if value is None:
                continue
            if key.startswith(OPTIONS_PREFIX):
                options[key[len(OPTIONS_PREFIX):]] = value
                continue
            annotation = field_annotation(key)  # ConfigError for an unknown field
            if isinstance(value, str):
                value = parse_text(key, annotation, value)
            section, _, name = key.partition(".")
            if name:
                data[section][name] = value
            else:
                data[section] = value
        loss = data["loss"]
        if loss.get("name") != self.loss.name and "loss.options" not in dotted and isinstance(loss.get("name"), str):
            declared = loss_option_defaults(loss["name"]) if loss["name"] in _loss_names() else {}
            loss["options"] = {k: v for k, v in self.loss.options.items() if k in declared}
        if options:
            loss["options"] = dict(loss.get("options") or {})
            for option, value in options.items():
                if isinstance(value, str):
                    value = parse_value(OPTIONS_PREFIX + option, value, loss=loss.get("name"))
                loss["options"][option] = value
        return RunConfig.from_dict(data)

    # ------------------------------------------------------------------ ranges
    def validate(self) -> RunConfig:
        """Check the type and range of every field; return ``self`` (for chaining).

        Runs on every construction from data (:meth:`from_dict`, :meth:`from_text`,
        :meth:`load`, :meth:`override`) and in the engine before anything is written; call it
        on a config built directly from the dataclasses. The rules are :func:`field_rules`.

        Raises:
            ConfigError: one line naming the first bad field, its value and what is allowed.
        """
        hints = _hints(RunConfig)
        for top in fields(self):
            value = getattr(self, top.name)
            sub = _section_type(top.name)
            if sub is None:
                check_type(top.name, hints[top.name], value)
                continue
            if not isinstance(value, sub):
                raise ConfigError(f"config section {top.name!r} must be a {sub.__name__}, got {_show(value)}")
            for name, annotation in _hints(sub).items():
                check_type(f"{top.name}.{name}", annotation, getattr(value, name))
        for dotted, (rule, allowed) in field_rules().items():
            value = _get(self, dotted)
            if not rule(value):
                raise ConfigError(f"{dotted} must be {allowed}, got {_show(value)}")
        self.loss.options = check_loss_options(self.loss.name, self.loss.options)  # typed as the defaults
        return self


# --------------------------------------------------------------------------- fields: help and choices
SECTIONS: tuple[str, ...] = ("data", "teacher", "student", "loss", "train")  # RunConfig's sections, in order
OPTIONS_PREFIX = "loss.options."  # dotted name of one loss option: loss.options.<option>


@dataclass(frozen=True)
class FieldInfo:
    """One field of a :class:`RunConfig`, as declared (see :func:`config_fields`).

    Attributes:
        section: ``data`` ... ``train``, or ``""`` for a top-level field (``name``).
        name: the field's name in its section.
        annotation: its type, resolved with ``typing.get_type_hints``.
        default: its default value (``{}`` for ``loss.options``).
        help: its help text (:func:`field_help`).
    """

    section: str
    name: str
    annotation: Any
    default: Any
    help: str

    @property
    def dotted(self) -> str:
        """``section.name`` (just ``name`` at the top level)."""
        return f"{self.section}.{self.name}" if self.section else self.name

    @property
    def choices(self) -> tuple | None:
        """The allowed values (:func:`field_choices`), or ``None``."""
        return field_choices(self.section, self.name)


def _declared(section: str, name: str):
    """The ``dataclasses.Field`` of ``section.name`` (``section=""``: top level), or ConfigError."""
    cls = RunConfig if not section else _section_type(section)
    found = {f.name: f for f in fields(cls)} if cls is not None else {}
    if name not in found or (not section and _section_type(name) is not None):
        raise ConfigError(f"unknown config field {(f'{section}.{name}' if section else name)!r}")
    return found[name], _hints(cls)[name]


def config_fields() -> list[FieldInfo]:
    """Every field of a :class:`RunConfig`, section by section, then the top-level ``name``."""
    out = []
    for section in (*SECTIONS, ""):
        cls = _section_type(section) if section else RunConfig
        hints = _hints(cls)
        for f in fields(cls):
            if not section and f.name in SECTIONS:
                continue
            default = f.default_factory() if f.default is MISSING else f.default
            out.append(FieldInfo(section, f.name, hints[f.name], default, f.metadata.get("help", "")))
    return out


def field_help(section: str, name: str) -> str:
    """The help text of a field (``section=""`` for ``name``): the one text the CLI and the app show.

    >>> field_help("train", "epochs")
    'Passes over the training split; a snapshot is taken after each.'
    """
    declared, _ = _declared(section, name)
    return declared.metadata.get("help", "")


def section_help(section: str) -> str:
    """One line on a section of the config (``data`` ... ``train``): its dataclass's summary.

    >>> section_help("train")
    'Optimization and bookkeeping'
    """
    cls = _section_type(section)
    if cls is None:
        raise ConfigError(f"unknown config section {section!r}; expected one of {', '.join(SECTIONS)}")
    return (cls.__doc__ or "").split("\n")[0].split(" (")[0].rstrip(".")


def field_choices(section: str, name: str) -> tuple | None:
    """The values a field allows, from the owning module's registry, or ``None`` (no list).

    >>> field_choices("loss", "kernel")
    ('ramp', 'sigmoid')
    """
    import importlib

    declared, _ = _declared(section, name)
    where = declared.metadata.get("choices")
    if where is None:
        return None
    module, _, attr = where.partition(":")
    return tuple(getattr(importlib.import_module(module), attr))


# --------------------------------------------------------------------------- loss options
_LOSS_FIELDS = frozenset(f.name for f in fields(LossConfig)) - {"name", "options"}


def _loss_names() -> tuple[str, ...]:
    return field_choices("loss", "name") or ()


def _declared_options(loss: str) -> dict[str, Any]:
    """Every option the loss declares with its default (``perco_viz.losses.loss_defaults``)."""
    from perco_viz.losses import LOSS_NAMES, loss_defaults

    if loss not in LOSS_NAMES:
        raise ConfigError(f"loss.name must be one of {', '.join(LOSS_NAMES)}, got {_show(loss)}")
    return loss_defaults(loss)


def loss_option_defaults(loss: str) -> dict[str, Any]:
    """The options of ``loss`` that ``loss.options`` may set, with their defaults.

    These are the options the loss declares, less those that are fields of the loss section
    (the coherence loss's ``tau``, ``kernel``, ...: set those fields).

    >>> loss_option_defaults("cc")
    {'gamma': 0.4}
    """
    return {k: v for k, v in _declared_options(loss).items() if k not in _LOSS_FIELDS}


def option_help(loss: str, option: str) -> str:
    """Help of one loss option: its line in the ``Args:`` of the loss class or of its function
    (``loss_fn``), else the loss's summary; after the option's name, loss and default.

    >>> option_help("cc", "gamma")
    'gamma of cc (default 0.4): kernel bandwidth (> 0).'
    """
    import inspect

    from perco_viz.losses import LOSSES

    cls = LOSSES[loss]
    default = loss_option_defaults(loss).get(option)
    pattern = re.compile(rf"^\s+{re.escape(option)}(?: \([^)]*\))?: (.+(?:\n\s{{8,}}\S.*)*)", re.MULTILINE)
    for doc in (inspect.getdoc(cls), inspect.getdoc(getattr(cls, "loss_fn", None))):
        match = pattern.search(doc or "")
        if match:
            return f"{option} of {loss} (default {default!r}): {' '.join(match.group(1).split())}"
    return f"{option} of {loss} (default {default!r}). {cls.summary}".strip()


def check_loss_options(loss: str, options: Any) -> dict[str, Any]:
    """``options`` checked against what ``loss`` declares: each key one of its options, each value of
    the type of that option's default (an int is accepted for a float). Returns the typed options.

    Raises:
        ConfigError: an unknown option (the message lists the allowed ones) or a value of the
            wrong type; the message names ``loss.options.<option>``.
    """
    options = check_type("loss.options", dict[str, Scalar], options)
    allowed = loss_option_defaults(loss)
    out = {}
    for option, value in options.items():
        dotted = OPTIONS_PREFIX + option
        if option in _LOSS_FIELDS:
            raise ConfigError(f"{dotted} is a field of its own: set loss.{option} instead")
        if option not in allowed:
            listed = ", ".join(allowed) if allowed else "none (it takes no options)"
            raise ConfigError(f"{dotted} is not an option of the {loss} loss; its options: {listed}")
        default = allowed[option]
        out[option] = value if default is None else check_type(dotted, type(default), value)
    return out


# --------------------------------------------------------------------------- ranges
def _choice(names) -> tuple[Any, str]:
    names = tuple(names)
    return (lambda v: v in names), "one of " + ", ".join(n for n in names if n is not None)


def _between(lo, hi, unit: str = "") -> tuple[Any, str]:
    return (lambda v: lo <= v <= hi), f"between {lo:,} and {hi:,}{unit}"


def _optional(rule: tuple[Any, str]) -> tuple[Any, str]:
    check, text = rule
    return (lambda v: v is None or check(v)), f"null or {text}"


def field_rules() -> dict[str, tuple[Any, str]]:
    """Dotted field -> (predicate on the typed value, what is allowed in words): the ranges.

    A field with choices (:func:`field_choices`: ``DATASET_NAMES``, ``TEACHER_KINDS``,
    ``STUDENT_ARCHS``, ``LOSS_NAMES``, ``KERNELS``, ``METRICS``, imported from their modules,
    never copied) must be one of them. Fields without a rule (paths, the teacher's architecture
    and layer, ``amp``) are checked for their type only; their loaders check them against the
    files. ``loss.options`` is checked by :func:`check_loss_options`.
    """
    positive = (lambda v: v > 0), "greater than 0"
    nonneg = (lambda v: v >= 0), "0 or more"
    seed = _between(0, MAX_SEED)
    rules = {}
    for info in config_fields():
        if info.choices is not None:
            rule = _choice(info.choices)
            rules[info.dotted] = _optional(rule) if _split_optional(info.annotation)[1] else rule
    rules.update({
        "data.n_samples": _between(2, MAX_POINTS),
        "data.noise": nonneg,
        "data.test_fraction": ((lambda v: 0 < v < 1), "strictly between 0 and 1"),
        "data.probe_size": (_between(3, MAX_PROBE)[0],
                            f"between 3 and {MAX_PROBE:,} (coherence ranks pairs of other points)"),
        "data.seed": seed,
        "student.dim": _between(1, MAX_STUDENT_DIM),
        "student.hidden": _between(1, 8192),
        "loss.tau": positive,
        "loss.anchors": _optional(_between(1, MAX_POINTS)),
        "loss.ce_weight": nonneg,
        "loss.kd_weight": nonneg,
        "loss.kd_temperature": positive,
        "train.epochs": _between(1, 1_000_000),
        "train.batch_size": (_between(3, MAX_BATCH)[0], f"between 3 and {MAX_BATCH:,} (the losses rank pairs "
                             "of other points within a batch)"),
        "train.lr": positive,
        "train.weight_decay": nonneg,
        "train.device": ((lambda v: DEVICE_RE.fullmatch(v) is not None), "auto, cpu, cuda, cuda:N or mps"),
        "train.seed": seed,
        "train.snapshot_every": _between(0, 10**9, " steps (0: once per epoch)"),
    })
    return rules


def check_field(dotted: str, value: Any) -> Any:
    """Type- and range-check one value for the field ``dotted`` (e.g. ``"train.epochs"``).

    A text value is parsed as on the command line. Returns the typed value.

    >>> check_field("train.epochs", "7")
    7
    """
    cfg = RunConfig().override(**{dotted: value})
    return _get(cfg, dotted)


# --------------------------------------------------------------------------- types
def _hints(cls: type) -> dict[str, Any]:
    """Field name -> evaluated annotation of a config dataclass."""
    return typing.get_type_hints(cls)


def _section_type(name: str) -> type | None:
    hints = {"data": DataConfig, "teacher": TeacherConfig, "student": StudentConfig,
             "loss": LossConfig, "train": TrainConfig}
    return hints.get(name)


def field_annotation(dotted: str) -> Any:
    """The annotation of ``section.field`` (or a top-level field such as ``name``).

    Raises:
        ConfigError: no such field.
    """
    section, _, name = dotted.partition(".")
    if not name:
        return _declared("", section)[1]
    if _section_type(section) is None:
        raise ConfigError(f"unknown config field {dotted!r}")
    return _declared(section, name)[1]


def _get(cfg: RunConfig, dotted: str) -> Any:
    section, _, name = dotted.partition(".")
    return getattr(getattr(cfg, section), name) if name else getattr(cfg, section)


def _split_optional(annotation: Any) -> tuple[Any, bool]:
    """(the base type, whether ``None`` is allowed) of ``T`` or ``T | None``."""
    args = typing.get_args(annotation)
    if args and type(None) in args and typing.get_origin(annotation) is not dict:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True  # noqa: UP007
    return annotation, False


def _show(value: Any, limit: int = 60) -> str:
    """``repr`` of a value, cut to one short line (a message must stay one line)."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_type(dotted: str, annotation: Any, value: Any) -> Any:
    """``value`` as the field's type (see the rules in the module docstring), or ConfigError.

    >>> check_type("train.epochs", int, 3.0)
    3
    >>> check_type("train.amp", bool, "maybe")
    Traceback (most recent call last):
    ...
    perco_viz.config.ConfigError: train.amp must be true or false, got 'maybe'
    """
    base, optional = _split_optional(annotation)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{dotted} must not be null; give a value{_describe(base)}")
    if typing.get_origin(base) is dict:
        return _check_mapping(dotted, value)
    if base is bool:
        if isinstance(value, bool):
            return value
        if type(value) is int and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{dotted} must be true or false, got {_show(value)}")
    if base is int:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        if type(value) is not int:
            raise ConfigError(f"{dotted} must be a whole number (integer), got {_show(value)}")
        return value
    if base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{dotted} must be a number, got {_show(value)}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"{dotted} must be a finite number, got {_show(value)}")
        return number
    if base is str:
        if not isinstance(value, str):
            raise ConfigError(f"{dotted} must be a string (text), got {_show(value)}")
        return value
    raise ConfigError(f"{dotted} has an unsupported type {annotation!r}")  # pragma: no cover — a new field type


def _check_mapping(dotted: str, value: Any) -> dict[str, Any]:
    """A mapping of option names to scalars (finite numbers, text, booleans or null)."""
    if not isinstance(value, dict):
        raise ConfigError(f"{dotted} must be a mapping of option names to values, got {_show(value)}")
    out = {}
    for key, item in value.items():
        where = f"{dotted}.{key}"
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{dotted} has the option name {_show(key)}; option names are text")
        if isinstance(item, float):
            item = check_type(where, float, item)
        elif item is not None and not isinstance(item, (str, int)):  # bool is an int
            raise ConfigError(f"{where} must be a number, text, true/false or null, got {_show(item)}")
        out[key] = item
    return out


def _describe(base: type) -> str:
    return {bool: " (true or false)", int: " (a whole number)", float: " (a number)", str: " (text)"}.get(base, "")


def parse_text(dotted: str, annotation: Any, text: str) -> Any:
    """A command-line text value as the type ``annotation`` (the one place text becomes a value).

    ``bool``: ``true/false/yes/no/on/off/1/0`` (any case); ``int``/``float``: Python's number
    syntax; an optional field (``T | None``): ``none``, ``null`` or empty text is ``None``.

    >>> parse_text("train.lr", float, "1e-3")
    0.001
    >>> parse_text("loss.anchors", int | None, "none") is None
    True
    """
    base, optional = _split_optional(annotation)
    word = text.strip()
    if optional and word.lower() in ("", "none", "null"):
        return None
    if base is str:
        return text
    if typing.get_origin(base) is dict:
        raise ConfigError(f"{dotted} takes one option at a time: {dotted}.OPTION=VALUE (e.g. loss.options.gamma=0.3)")
    if base is bool:
        if word.lower() in BOOL_WORDS:
            return BOOL_WORDS[word.lower()]
        raise ConfigError(f"{dotted} must be true or false (true/false, yes/no, on/off, 1/0), got {_show(text)}")
    try:
        return int(word) if base is int else float(word)
    except ValueError:
        kind = "a whole number (integer)" if base is int else "a number"
        raise ConfigError(f"{dotted} must be {kind}, got {_show(text)}") from None


def _option_type(option: str, loss: str | None) -> Any:
    """The annotation a loss option's text is parsed as: its default's type (``Scalar`` if unknown)."""
    losses = (loss,) if loss in _loss_names() else _loss_names()
    kinds = {type(d[option]) for d in map(loss_option_defaults, losses) if option in d and d[option] is not None}
    if len(kinds) != 1:
        return Scalar
    (kind,) = kinds
    return kind


def parse_value(dotted: str, text: str, *, loss: str | None = None) -> Any:
    """Text (a command-line value, ``--set`` or a form field) as the type of the field ``dotted``.

    ``loss.options.<option>`` is parsed as the type of that option's default in ``loss`` (or in
    the losses that declare it); an option no loss declares is read as a number, a boolean,
    ``none`` or text, and refused later by :func:`check_loss_options`.

    Raises:
        ConfigError: an unknown field, or text that is not of the field's type (names the field).

    >>> parse_value("train.amp", "No")
    False
    >>> parse_value("loss.options.gamma", "0.3", loss="cc")
    0.3
    >>> parse_value("train.amp", "maybe")
    Traceback (most recent call last):
    ...
    perco_viz.config.ConfigError: train.amp must be true or false (true/false, yes/no, on/off, 1/0), got 'maybe'
    """
    if dotted.startswith(OPTIONS_PREFIX):
        option = dotted[len(OPTIONS_PREFIX):]
        annotation = _option_type(option, loss)
        if annotation is not Scalar:
            return parse_text(dotted, annotation, text)
        word = text.strip()
        if word.lower() in ("", "none", "null"):
            return None
        for kind in (int, float):
            try:
                return check_type(dotted, kind, kind(word))
            except ValueError:
                pass
        return BOOL_WORDS.get(word.lower(), text) if word.lower() in ("true", "false") else text
    return parse_text(dotted, field_annotation(dotted), text)


def split_override(item: str) -> tuple[str, str]:
    """``"loss.tau=0.2"`` → ``("loss.tau", "0.2")``; ConfigError without ``=`` or a field name."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"an override is FIELD=VALUE (e.g. loss.kernel=sigmoid), got {_show(item)}")
    return key.strip(), value.strip()


def apply_overrides(cfg: RunConfig, items: typing.Iterable[str]) -> RunConfig:
    """``cfg`` with ``["loss.tau=0.2", "loss.options.gamma=0.3", ...]`` applied (later items win).

    The text values are typed by :func:`parse_value`; the result is checked as a whole.

    >>> apply_overrides(RunConfig(), ["loss.name=cc", "loss.options.gamma=0.3"]).loss.options
    {'gamma': 0.3}
    """
    return cfg.override(**dict(split_override(item) for item in items))


# --------------------------------------------------------------------------- YAML / JSON text
_FLOAT_RE = re.compile(r"""^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$""")


def _strict_loader() -> type:
    """A ``yaml.SafeLoader`` subclass that refuses anchors, aliases, explicit tags and deep nesting.

    It also reads ``1e-3`` (no dot, as JSON and Python write it) as a float, like YAML 1.2.
    """
    import yaml

    class StrictLoader(yaml.SafeLoader):
        depth = 0
        nodes = 0

        def compose_node(self, parent, index):  # noqa: ANN001 — PyYAML's signature
            event = self.peek_event()
            line = event.start_mark.line + 1 if event.start_mark is not None else "?"
            if isinstance(event, yaml.AliasEvent):
                raise ConfigError(f"the config uses the YAML alias *{event.anchor} (line {line}); anchors and "
                                  "aliases are not accepted: write every value out in full")
            if getattr(event, "anchor", None) is not None:
                raise ConfigError(f"the config defines the YAML anchor &{event.anchor} (line {line}); anchors "
                                  "and aliases are not accepted: write every value out in full")
            if getattr(event, "tag", None) is not None:
                raise ConfigError(f"the config uses the explicit YAML tag {event.tag!r} (line {line}); tags are "
                                  "not accepted: write plain values (quote text)")
            self.nodes += 1
            if self.nodes > MAX_NODES:
                raise ConfigError(f"the config has more than {MAX_NODES:,} values (line {line}); a config is a "
                                  "few dozen fields")
            self.depth += 1
            try:
                if self.depth > MAX_DEPTH:
                    raise ConfigError(f"the config nests deeper than {MAX_DEPTH} levels (line {line}); a config is "
                                      "sections of fields")
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))
    return StrictLoader


def parse_config_text(text: str | bytes) -> Any:
    """YAML/JSON text -> plain data (``{}`` for an empty document), without building any object.

    Raises:
        ConfigError: too big, not UTF-8, not YAML/JSON, anchors/aliases/tags, too deep.
    """
    import yaml

    if isinstance(text, bytes):
        if len(text) > MAX_CONFIG_BYTES:
            raise ConfigError(f"the config is over {MAX_CONFIG_BYTES // 1024} KiB; a config is a few hundred bytes")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError("the config is not UTF-8 text; give the config.yaml or config.json of a run") from None
    if not isinstance(text, str):
        raise ConfigError(f"a config is text, got {type(text).__name__}")
    if len(text) > MAX_CONFIG_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_CONFIG_BYTES:
        raise ConfigError(f"the config is over {MAX_CONFIG_BYTES // 1024} KiB; a config is a few hundred bytes")
    try:
        data = yaml.load(text, Loader=_strict_loader())  # noqa: S506 — a SafeLoader subclass, stricter still
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())
        raise ConfigError(f"the config is not valid YAML/JSON: {first[:200]}") from None
    except ConfigError:
        raise
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise ConfigError(f"the config has a value that cannot be read: {_show(str(exc), 120)}") from None
    except RecursionError:
        raise ConfigError(f"the config nests deeper than {MAX_DEPTH} levels; a config is sections of fields") from None
    return {} if data is None else data
