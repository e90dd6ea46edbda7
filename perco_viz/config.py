"""One configuration for every entry point: the CLI, the app and the tests.

A :class:`RunConfig` is plain data (nested dataclasses of str/int/float/bool/None). It
serializes to ``config.json`` in the run directory, loads back from JSON or YAML, and takes
``section.field=value`` overrides, so a run made anywhere can be reproduced anywhere.

>>> cfg = RunConfig()
>>> cfg.loss.name, cfg.student.dim
('coherence', 8)
>>> RunConfig.from_dict(cfg.to_dict()) == cfg
True
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


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
        """Build from a nested dict; unknown keys raise :class:`ConfigError`."""
        if not isinstance(data, dict):
            raise ConfigError("a config must be a mapping of sections (data, teacher, ...)")
        kwargs: dict[str, Any] = {}
        sections = {f.name: f for f in fields(cls)}
        for key, value in data.items():
            if key not in sections:
                raise ConfigError(f"unknown config section {key!r}; expected one of {sorted(sections)}")
            sub = _section_type(key)
            if sub is None:
                kwargs[key] = value
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"config section {key!r} must be a mapping")
            known = {f.name for f in fields(sub)}
            unknown = set(value) - known
            if unknown:
                raise ConfigError(f"unknown key(s) {sorted(unknown)} in section {key!r}; expected {sorted(known)}")
            kwargs[key] = sub(**{k: _coerce(sub, k, v) for k, v in value.items()})
        return cls(**kwargs)

    def to_json(self) -> str:
        """Pretty JSON text."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def to_yaml(self) -> str:
        """YAML text (what the app shows and offers to download)."""
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_text(cls, text: str) -> RunConfig:
        """Parse JSON or YAML text (YAML is a superset of JSON)."""
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"the config is not valid YAML/JSON: {exc}") from None
        return cls.from_dict(data or {})

    def save(self, path: str | Path) -> None:
        """Write ``config.json`` (or YAML when the suffix is .yaml/.yml)."""
        path = Path(path)
        text = self.to_yaml() if path.suffix in {".yaml", ".yml"} else self.to_json()
        path.write_text(text)

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        """Read a JSON or YAML config file."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        return cls.from_text(path.read_text())

    def override(self, **dotted: Any) -> RunConfig:
        """Return a copy with ``section.field=value`` overrides (``None`` values are skipped).

        >>> RunConfig().override(**{"loss.tau": 0.05}).loss.tau
        0.05
        """
        data = self.to_dict()
        for key, value in dotted.items():
            if value is None:
                continue
            section, _, name = key.partition(".")
            if not name:
                data[section] = value
                continue
            if section not in data or not isinstance(data[section], dict) or name not in data[section]:
                raise ConfigError(f"unknown config field {key!r}")
            data[section][name] = value
        return RunConfig.from_dict(data)


def _section_type(name: str) -> type | None:
    hints = {"data": DataConfig, "teacher": TeacherConfig, "student": StudentConfig,
             "loss": LossConfig, "train": TrainConfig}
    return hints.get(name)


def _coerce(section: type, key: str, value: Any) -> Any:
    """Coerce YAML/CLI scalars to the field's declared type (e.g. "0.1" -> 0.1)."""
    if value is None:
        return None
    ftype = {f.name: f.type for f in dataclasses.fields(section)}[key]
    ftype = str(ftype)
    try:
        if ftype.startswith("bool"):
            if isinstance(value, str):
                return value.strip().lower() in {"1", "true", "yes", "on"}
            return bool(value)
        if ftype.startswith("int"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if ftype.startswith("float"):
            return float(value)
        if ftype.startswith("str"):
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{section.__name__[:-6].lower()}.{key} must be {ftype}, got {value!r}") from None
    return value
