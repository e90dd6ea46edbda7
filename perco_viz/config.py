"""One configuration for every entry point: the CLI, the app and the tests.

A :class:`RunConfig` is plain data (nested dataclasses of str/int/float/bool/None). It
serializes to ``config.json`` in the run directory, loads back from JSON or YAML, and takes
``section.field=value`` overrides, so a run made anywhere can be reproduced anywhere.

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

  Text is turned into a number or a boolean in one place only: :meth:`RunConfig.override`,
  the entrance of the command line (which has nothing but text). There an ``int`` field takes
  ``"3"``, a ``float`` field ``"1e-3"``, a ``bool`` field ``true/false/yes/no/on/off/1/0``
  (any case) and an optional number ``none``/``null``;
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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

MAX_CONFIG_BYTES = 1 << 20  # a config is a few hundred bytes; anything near 1 MiB is not one
MAX_POINTS = 1_000_000  # data.n_samples (points generated, or a cap on a torchvision set), loss.anchors
MAX_PROBE = 100_000  # data.probe_size: every snapshot ranks all pairs of the probe set
MAX_BATCH = 65_536  # train.batch_size: the coherence loss holds a batch² matrix
MAX_SEED = 2**32 - 1
MAX_DEPTH = 8  # a config nests two levels (section, field); deeper YAML is refused while parsing
MAX_NODES = 2000  # a full config is under 100 YAML nodes; parsing stops at the first node past this
DEVICE_RE = re.compile(r"auto|cpu|mps|cuda(:[0-9]{1,3})?")
BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


class ConfigError(ValueError):
    """A configuration value or file is invalid; the message says what to change."""


@dataclass
class DataConfig:
    """Which inputs to use.

    Attributes:
        name: ``digits`` (built in), ``swiss_roll``, ``blobs``, ``circles``, ``spheres``,
            ``npz``, ``csv``, ``image_folder``, ``mnist``, ``fashion_mnist``, ``cifar10``,
            ``cifar100``.
        path: file or folder for user data (``npz``/``csv``/``image_folder``/torchvision root).
        label_column: CSV column holding labels (``None``: a column named ``label``/``y``
            if present, else unlabeled).
        n_samples: size of a synthetic set.
        noise: noise level of a synthetic set.
        test_fraction: share of the data held out (the probe set is drawn from it).
        probe_size: number of held-out points every snapshot is measured on.
        download: torchvision datasets only: allow downloading into ``path``.
        seed: seed of the split and of synthetic generation.
    """

    name: str = "digits"
    path: str | None = None
    label_column: str | None = None
    n_samples: int = 2000
    noise: float = 0.05
    test_fraction: float = 0.25
    probe_size: int = 500
    download: bool = False
    seed: int = 0


@dataclass
class TeacherConfig:
    """The teacher encoder (frozen).

    Attributes:
        kind: ``builtin`` (trained here and cached), ``torchvision``, ``timm``,
            ``torchscript``, ``safetensors`` (a built-in architecture's weights) or
            ``identity`` (the raw inputs are the teacher's features).
        arch: architecture name for ``torchvision``/``timm`` (e.g. ``resnet18``).
        path: weights / TorchScript file.
        layer: module name whose output are the features (``None``: penultimate layer).
    """

    kind: str = "builtin"
    arch: str | None = None
    path: str | None = None
    layer: str | None = None


@dataclass
class StudentConfig:
    """The student encoder (trained).

    Attributes:
        arch: ``mlp`` or ``cnn`` (built in), or ``file`` (load ``path``).
        dim: embedding width.
        hidden: hidden width of the built-in architectures.
        path: TorchScript or safetensors file when ``arch == "file"``.
    """

    arch: str = "mlp"
    dim: int = 8
    hidden: int = 256
    path: str | None = None


@dataclass
class LossConfig:
    """The transfer loss and its options.

    Attributes:
        name: one of ``perco_viz.LOSS_NAMES``.
        tau: soft-rank temperature of the coherence loss.
        kernel: soft step of the coherence loss, ``ramp`` (default) or ``sigmoid``.
        metric: dissimilarity for the student (and the teacher unless ``teacher_metric``).
        teacher_metric: dissimilarity for the teacher, ``None`` = same as ``metric``.
        anchors: rank over this many random anchors per batch (``None``: all points).
        ce_weight: weight of cross-entropy on labels through a student head (0 = off).
        kd_weight: weight of Hinton KD on logits when both models have heads (0 = off).
        kd_temperature: temperature of Hinton KD.
    """

    name: str = "coherence"
    tau: float = 0.1
    kernel: str = "ramp"
    metric: str = "euclidean"
    teacher_metric: str | None = None
    anchors: int | None = None
    ce_weight: float = 0.0
    kd_weight: float = 0.0
    kd_temperature: float = 4.0


@dataclass
class TrainConfig:
    """Optimization and bookkeeping.

    Attributes:
        epochs: passes over the training split.
        batch_size: points per step (the coherence loss ranks within a batch).
        lr: AdamW learning rate (cosine schedule to 0).
        weight_decay: AdamW weight decay.
        device: ``auto`` (cuda > mps > cpu), ``cuda``, ``mps`` or ``cpu``.
        seed: seed of initialisation and batching.
        snapshot_every: also snapshot every this many steps (0: once per epoch).
        amp: bf16 autocast on CUDA.
    """

    epochs: int = 20
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    device: str = "auto"
    seed: int = 0
    snapshot_every: int = 0
    amp: bool = True


@dataclass
class RunConfig:
    """Everything needed to reproduce a run."""

    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    name: str | None = None

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
        parsed from its text (``"5"``, ``"1e-3"``, ``"off"``; see the module docstring). The
        result is type- and range-checked like :meth:`from_dict`.

        >>> RunConfig().override(**{"loss.tau": 0.05}).loss.tau
        0.05
        >>> RunConfig().override(**{"train.batch_size": "0"})
        Traceback (most recent call last):
        ...
        perco_viz.config.ConfigError: train.batch_size must be between 3 and 65,536 (the losses rank pairs of other points within a batch), got 0
        """
        data = self.to_dict()
        for key, value in dotted.items():
            if value is None:
                continue
            annotation = field_annotation(key)
            if isinstance(value, str):
                value = parse_text(key, annotation, value)
            section, _, name = key.partition(".")
            if name:
                data[section][name] = value
            else:
                data[section] = value
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
        return self


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

    The name lists are the registries themselves (``DATASET_NAMES``, ``TEACHER_KINDS``,
    ``STUDENT_ARCHS``, ``LOSS_NAMES``, ``KERNELS``, ``METRICS``), imported, never copied.
    Fields without a rule (paths, the teacher's architecture and layer, ``amp``) are checked
    for their type only; their loaders check them against the files.
    """
    from perco_viz.coherence import KERNELS, METRICS
    from perco_viz.data import DATASET_NAMES
    from perco_viz.losses import LOSS_NAMES
    from perco_viz.models import STUDENT_ARCHS, TEACHER_KINDS

    positive = (lambda v: v > 0), "greater than 0"
    nonneg = (lambda v: v >= 0), "0 or more"
    seed = _between(0, MAX_SEED)
    return {
        "data.name": _choice(DATASET_NAMES),
        "data.n_samples": _between(2, MAX_POINTS),
        "data.noise": nonneg,
        "data.test_fraction": ((lambda v: 0 < v < 1), "strictly between 0 and 1"),
        "data.probe_size": (_between(3, MAX_PROBE)[0],
                            f"between 3 and {MAX_PROBE:,} (coherence ranks pairs of other points)"),
        "data.seed": seed,
        "teacher.kind": _choice(TEACHER_KINDS),
        "student.arch": _choice(STUDENT_ARCHS),
        "student.dim": _between(1, 4096),
        "student.hidden": _between(1, 8192),
        "loss.name": _choice(LOSS_NAMES),
        "loss.tau": positive,
        "loss.kernel": _choice(KERNELS),
        "loss.metric": _choice(METRICS),
        "loss.teacher_metric": _optional(_choice(METRICS)),
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
    }


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
    sub = _section_type(section)
    hints = _hints(RunConfig) if not name else (_hints(sub) if sub is not None else {})
    key = name or section
    if key not in hints or (not name and sub is not None):
        raise ConfigError(f"unknown config field {dotted!r}")
    return hints[key]


def _get(cfg: RunConfig, dotted: str) -> Any:
    section, _, name = dotted.partition(".")
    return getattr(getattr(cfg, section), name) if name else getattr(cfg, section)


def _split_optional(annotation: Any) -> tuple[type, bool]:
    """(the base type, whether ``None`` is allowed) of ``T`` or ``T | None``."""
    args = typing.get_args(annotation)
    if args and type(None) in args:
        (base,) = [a for a in args if a is not type(None)]
        return base, True
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


def _describe(base: type) -> str:
    return {bool: " (true or false)", int: " (a whole number)", float: " (a number)", str: " (text)"}.get(base, "")


def parse_text(dotted: str, annotation: Any, text: str) -> Any:
    """A command-line text value as the field's type (the one place text becomes a number).

    >>> parse_text("train.lr", float, "1e-3")
    0.001
    >>> parse_text("loss.anchors", int | None, "none") is None
    True
    """
    base, optional = _split_optional(annotation)
    if base is str:
        return text
    word = text.strip()
    if optional and word.lower() in ("", "none", "null"):
        return None
    if base is bool:
        if word.lower() in BOOL_WORDS:
            return BOOL_WORDS[word.lower()]
        raise ConfigError(f"{dotted} must be true or false (true/false, yes/no, on/off, 1/0), got {_show(text)}")
    try:
        return int(word) if base is int else float(word)
    except ValueError:
        kind = "a whole number (integer)" if base is int else "a number"
        raise ConfigError(f"{dotted} must be {kind}, got {_show(text)}") from None


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
