"""What the Lightning and Hugging Face callbacks share: the probe set, the teacher's probe
features, the student's features at a named module, and a recorder that writes the run.

The probe set (:func:`make_probe`) is taken once, on the CPU, from what the user gives:

* a tensor or NumPy array of inputs, (n, ...);
* a tuple or list ``(inputs,)`` or ``(inputs, labels)``;
* a dict (or a Hugging Face ``BatchEncoding``/``BatchFeature``) holding ``pixel_values`` or
  ``input_ids``, optionally ``labels`` (or ``label``); every other entry must be a tensor with
  the same rows (``attention_mask``, ``token_type_ids``...) and is passed to the model as a
  keyword argument;
* a ``torch.utils.data.DataLoader`` whose batches are any of the above (its first batches,
  concatenated: token batches must then be padded to one length).

Anything else is refused with a ``ValueError`` saying what is accepted. At most ``max_rows``
rows are kept (default :data:`DEFAULT_PROBE_ROWS`; at most :data:`perco_viz.config.MAX_PROBE`:
every snapshot ranks all pairs of the probe set). Labels are used for k-NN accuracy when they
are one integer class per row; labels given with ``labels=`` must be, labels found in the
batches that are not (token labels, regression targets) are left out with a warning.

The model is called as ``model(inputs)`` for a tensor and ``model(**inputs)`` for a dict.
Features are read at a module chosen by name (:func:`probe_features`) with a forward hook that
exists only while the probe set is measured (:func:`tap_layer`):
:class:`perco_viz.models.FeatureModel` registers its hook for good (it is meant to own a
frozen teacher), so wrapping a model that is being trained with it would keep a hook — and the
last training batch's activations — alive for the whole training. The layer's output becomes
one row per input as in ``FeatureModel``: the tensor, or the first tensor of a tuple, or a
ModelOutput's ``logits`` else its first entry (``last_hidden_state``), pooled with
:func:`perco_viz.models.pool_tokens` (``flatten``, ``cls`` or ``mean``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

from perco_viz.config import MAX_PROBE
from perco_viz.models import (
    POOLINGS,
    FeatureModel,
    device_of,
    extract_features,
    find_layer,
    first_tensor,
    pool_tokens,
)
from perco_viz.writer import Run, open_run

DEFAULT_PROBE_ROWS = 1000  # rows of the probe set unless max_rows says otherwise
DEFAULT_BATCH = 256  # probe inputs per forward pass
INPUT_KEYS = ("pixel_values", "input_ids")  # a dict batch holds one of these
LABEL_KEYS = ("labels", "label")
ACCEPTED = ("a tensor or NumPy array of inputs (n, ...), a tuple (inputs, labels), a dict with "
            "'pixel_values' or 'input_ids' (and optionally 'labels'), or a torch DataLoader "
            "yielding any of these")

Inputs = torch.Tensor | dict[str, torch.Tensor]


# ----------------------------------------------------------------------------- probe set


@dataclass
class Probe:
    """The probe set, on the CPU.

    Attributes:
        inputs: (n, ...) tensor, or a dict of (n, ...) tensors passed as keyword arguments.
        labels: (n,) int64 class indices, or ``None``.
        capped: whether more rows were available than were kept.
    """

    inputs: Inputs
    labels: np.ndarray | None
    capped: bool = False

    @property
    def n(self) -> int:
        """Number of rows."""
        return _rows(self.inputs)

    def batches(self, batch_size: int = DEFAULT_BATCH) -> Iterator[Inputs]:
        """The inputs in slices of ``batch_size`` rows, in order."""
        for i in range(0, self.n, batch_size):
            if isinstance(self.inputs, dict):
                yield {k: v[i:i + batch_size] for k, v in self.inputs.items()}
            else:
                yield self.inputs[i:i + batch_size]


def _rows(inputs: Inputs) -> int:
    return len(next(iter(inputs.values()))) if isinstance(inputs, dict) else len(inputs)


def _tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise ValueError(f"{what} is a NumPy array of Python objects; give numbers")
        return torch.from_numpy(np.ascontiguousarray(value))
    raise ValueError(f"{what} must be a tensor or a NumPy array, got {type(value).__name__}")


def _split(batch: Any, where: str) -> tuple[Inputs, Any]:
    """(inputs, raw labels or None) of one batch / of the probe given directly."""
    if isinstance(batch, torch.Tensor | np.ndarray):
        return _tensor(batch, f"{where} inputs"), None
    if isinstance(batch, tuple | list):
        if len(batch) not in (1, 2):
            raise ValueError(f"{where} is a {type(batch).__name__} of {len(batch)} items; expected "
                             f"(inputs,) or (inputs, labels). Accepted: {ACCEPTED}")
        return _tensor(batch[0], f"{where} inputs"), (batch[1] if len(batch) == 2 else None)
    if isinstance(batch, Mapping):
        keys = [k for k in INPUT_KEYS if k in batch]
        if not keys:
            raise ValueError(f"{where} is a dict with keys {sorted(map(str, batch))[:8]}, but none of "
                             f"{', '.join(INPUT_KEYS)}. Accepted: {ACCEPTED}")
        raw_labels = next((batch[k] for k in LABEL_KEYS if k in batch), None)
        inputs = {}
        for key, value in batch.items():
            if key in LABEL_KEYS:
                continue
            if not isinstance(value, torch.Tensor | np.ndarray):
                raise ValueError(f"{where}[{key!r}] is a {type(value).__name__}; every entry of a probe dict "
                                 "must be a tensor (remove text columns, e.g. dataset.remove_columns)")
            inputs[str(key)] = _tensor(value, f"{where}[{key!r}]")
        n = len(inputs[keys[0]])
        bad = {k: len(v) for k, v in inputs.items() if v.dim() == 0 or len(v) != n}
        if bad:
            raise ValueError(f"{where}: every entry needs {n} rows like {keys[0]!r}, but {bad} differ")
        return inputs, raw_labels
    raise ValueError(f"the probe set cannot be a {type(batch).__name__}. Accepted: {ACCEPTED}")


def _class_labels(raw: Any, n: int | None, where: str, strict: bool) -> np.ndarray | None:
    """(n,) int64 class indices (any length when ``n`` is None), or None (with a warning unless
    ``strict``, which raises)."""
    if raw is None:
        return None
    why = None
    try:
        y = _tensor(raw, where).numpy()
    except ValueError as exc:
        y, why = None, str(exc)
    if y is not None:
        if y.ndim != 1 or (n is not None and len(y) != n):
            why = f"{where} has shape {tuple(y.shape)}, not one entry per input ({n or 'n'},)"
        elif not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
            why = f"{where} are {y.dtype}, not integer class indices"
        elif len(y) and int(y.min()) < 0:
            why = f"{where} hold negative values ({int(y.min())}), not class indices"
    if why is None:
        return y.astype(np.int64)
    if strict:
        raise ValueError(f"{why}; give (n,) integer class labels or none")
    warnings.warn(f"{why}: the probe set is used without labels (no k-NN accuracy)", stacklevel=4)
    return None


def _concat(parts: list[Inputs]) -> Inputs:
    def cat(tensors: list[torch.Tensor], what: str) -> torch.Tensor:
        shapes = {tuple(t.shape[1:]) for t in tensors}
        if len(shapes) > 1:
            raise ValueError(f"the probe batches' {what} have different shapes {sorted(shapes)[:3]}; give batches "
                             "of one shape (for tokens: padding='max_length' with a fixed max_length)")
        return torch.cat(tensors)

    if isinstance(parts[0], dict):
        keys = set(parts[0])
        if any(set(p) != keys for p in parts):
            raise ValueError("the probe batches hold different keys; give batches with the same entries")
        return {k: cat([p[k] for p in parts], repr(k)) for k in parts[0]}
    return cat(parts, "inputs")


def _take(inputs: Inputs, n: int) -> Inputs:
    return {k: v[:n] for k, v in inputs.items()} if isinstance(inputs, dict) else inputs[:n]


def check_max_rows(max_rows: int) -> int:
    """``max_rows`` if it is a whole number in [3, MAX_PROBE], else ``ValueError``."""
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or not 3 <= max_rows <= MAX_PROBE:
        raise ValueError(f"max_rows must be a whole number between 3 and {MAX_PROBE:,} (every snapshot ranks "
                         f"all pairs of the probe set), got {max_rows!r}")
    return max_rows


def make_probe(probe: Any, labels: Any = None, *, max_rows: int = DEFAULT_PROBE_ROWS) -> Probe:
    """The probe set: at most ``max_rows`` rows of ``probe``, on the CPU (formats: module docstring).

    Args:
        probe: inputs, ``(inputs, labels)``, a dict of tensors, or a ``DataLoader`` of those.
        labels: (n,) integer class labels; they replace labels found in ``probe``.
        max_rows: rows kept (the first ones, in the DataLoader's order).

    Returns:
        A :class:`Probe` with at least 3 rows.

    Raises:
        ValueError: an unsupported format, batches of different shapes, fewer than 3 rows,
            labels that are not one integer class per row.
    """
    check_max_rows(max_rows)
    if isinstance(probe, DataLoader):
        parts, raw, rows, capped = [], [], 0, False
        batches = iter(probe)
        for i, batch in enumerate(batches):
            inputs, y = _split(batch, f"the probe DataLoader's batch {i}")
            parts.append(inputs)
            raw.append(y)
            rows += _rows(inputs)
            if rows >= max_rows:
                capped = rows > max_rows or next(batches, None) is not None
                break
        if not parts:
            raise ValueError("the probe DataLoader yielded no batches; give it at least 3 inputs")
        inputs = _concat(parts)
        if any(y is None for y in raw):
            raw_labels = None
        else:
            try:
                raw_labels = torch.cat([_tensor(y, "labels").reshape(len(y), -1).squeeze(1) for y in raw])
            except (RuntimeError, ValueError):
                raw_labels = raw[0]  # shapes differ: let _class_labels say why they are left out
    else:
        inputs, raw_labels = _split(probe, "the probe set")
        capped = _rows(inputs) > max_rows
    n_all = _rows(inputs)
    if n_all < 3:
        raise ValueError(f"the probe set has {n_all} rows; it needs at least 3 (coherence ranks pairs of other points)")
    n, capped = min(n_all, max_rows), capped or n_all > max_rows
    if labels is not None:
        y = _class_labels(labels, None, "labels", strict=True)
        if len(y) != n_all and not (capped and len(y) >= n):
            raise ValueError(f"labels has {len(y)} entries for a probe set of {n_all} rows; give one label per input")
    else:
        y = _class_labels(raw_labels, n_all, "the probe set's labels", strict=False)
    return Probe(_take(inputs, n), None if y is None else y[:n], capped)


# ----------------------------------------------------------------------------- features


class LayerTap:
    """Holds what one module output during a forward pass (see :func:`tap_layer`).

    Attributes:
        layer: the module's name.
        output: the module's latest output (the first tensor of it), or ``None``.
    """

    def __init__(self, layer: str) -> None:
        self.layer = layer
        self.output: torch.Tensor | None = None

    def __call__(self, module: nn.Module, args: Any, out: Any) -> None:
        self.output = first_tensor(out)

    def take(self) -> torch.Tensor | None:
        """The captured output, and forget it."""
        out, self.output = self.output, None
        return out


@contextmanager
def tap_layer(model: nn.Module, layer: str) -> Iterator[LayerTap]:
    """A forward hook on ``model``'s module ``layer`` for the duration of the ``with`` block.

    The hook is removed on leaving the block, exception or not: the model's ``_forward_hooks``
    are as they were. If the module runs several times in one forward, the last output is kept.

    >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    >>> with tap_layer(net, "0") as tap:
    ...     _ = net(torch.zeros(2, 4))
    >>> tuple(tap.output.shape), len(net[0]._forward_hooks)
    ((2, 3), 0)
    """
    tap = LayerTap(layer)
    handle = find_layer(model, layer).register_forward_hook(tap)
    try:
        yield tap
    finally:
        handle.remove()


def _float_dtype(model: nn.Module) -> torch.dtype | None:
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


def _to(batch: Inputs, device: torch.device, dtype: torch.dtype | None) -> Inputs:
    def move(t: torch.Tensor) -> torch.Tensor:
        return t.to(device=device, dtype=dtype if dtype is not None and t.is_floating_point() else None)

    return {k: move(v) for k, v in batch.items()} if isinstance(batch, dict) else move(batch)


def probe_features(
    model: nn.Module,
    probe: Probe,
    layer: str | None = None,
    *,
    pooling: str = "flatten",
    batch_size: int = DEFAULT_BATCH,
) -> torch.Tensor:
    """The model's features on the probe set, read at module ``layer`` (``None``: its output).

    In eval mode, without gradients, in batches, on the model's device (float inputs in the
    dtype of its parameters); afterwards every sub-module is back in the train/eval mode it
    was in and the hook is gone. The model's parameters are not touched.

    Args:
        model: the network; called as ``model(x)``, or ``model(**x)`` for dict inputs.
        probe: from :func:`make_probe`.
        layer: a module name (:func:`perco_viz.models.list_modules`), or ``None``.
        pooling: one of :data:`perco_viz.models.POOLINGS` (:func:`perco_viz.models.pool_tokens`).
        batch_size: probe rows per forward pass.

    Returns:
        (n, d) float32 features on the model's device.

    Raises:
        ValueError: unknown layer or pooling; the layer not run by the forward; its output
            not one row per input.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    device, dtype = device_of(model), _float_dtype(model)
    modes = [(m, m.training) for m in model.modules()]
    parts = []
    model.eval()
    try:
        with torch.no_grad(), (tap_layer(model, layer) if layer is not None else nullcontext()) as tap:
            for batch in probe.batches(batch_size):
                batch = _to(batch, device, dtype)
                out = model(**batch) if isinstance(batch, dict) else model(batch)
                feats = first_tensor(out) if tap is None else tap.take()
                if feats is None:
                    raise ValueError(f"module {layer!r} was not run by {type(model).__name__}'s forward on the probe "
                                     "inputs; choose a module the forward pass uses")
                rows = _rows(batch)
                if feats.dim() == 0 or len(feats) != rows:
                    raise ValueError(f"module {layer!r} gave shape {tuple(feats.shape)} for {rows} inputs; choose a "
                                     "module whose output has one row per input")
                parts.append(pool_tokens(feats, pooling).float())
    finally:
        for module, mode in modes:  # exactly as before (model.train(True) would also wake a frozen teacher inside)
            module.training = mode
    return torch.cat(parts)


def teacher_probe_features(
    probe: Probe,
    *,
    teacher: nn.Module | None = None,
    teacher_features: Any = None,
    layer: str | None = None,
    pooling: str = "flatten",
    batch_size: int = DEFAULT_BATCH,
) -> torch.Tensor:
    """The teacher's (n, d_t) probe features, computed once (float32, CPU).

    Args:
        probe: from :func:`make_probe`.
        teacher: a frozen teacher. A :class:`~perco_viz.models.FeatureModel` (e.g. from
            :func:`perco_viz.models.load_teacher`) gives its features through
            :func:`~perco_viz.models.extract_features`; any other module its output, or the
            output of module ``layer``, pooled with ``pooling`` (:func:`probe_features`).
        teacher_features: precomputed (N, d_t) features, one row per probe row in the order
            given; when the probe set was capped to n < N rows, the first n are used.
        layer: the teacher's module to read (not with a FeatureModel, which has its own).
        pooling: how that module's output becomes rows.
        batch_size: probe rows per forward pass.

    Raises:
        ValueError: both or neither of ``teacher``/``teacher_features``; rows that do not match.
    """
    if (teacher is None) == (teacher_features is None):
        raise ValueError("give either teacher (a frozen module, evaluated once on the probe set) or "
                         "teacher_features (its precomputed probe features), not both or neither")
    if teacher_features is not None:
        feats = _tensor(teacher_features, "teacher_features").float()
        if feats.dim() != 2:
            raise ValueError(f"teacher_features must be (n_probe, d), got shape {tuple(feats.shape)}")
        if len(feats) != probe.n and not (probe.capped and len(feats) > probe.n):
            raise ValueError(f"teacher_features has {len(feats)} rows but the probe set has {probe.n}; give one "
                             "teacher row per probe input, in the same order")
        return feats[:probe.n]
    if not isinstance(teacher, nn.Module):
        raise ValueError(f"teacher must be a torch.nn.Module, got {type(teacher).__name__}")
    if isinstance(teacher, FeatureModel) and layer is None and isinstance(probe.inputs, torch.Tensor):
        return extract_features(teacher, probe.inputs, batch_size=batch_size, device=device_of(teacher))
    return probe_features(teacher, probe, layer, pooling=pooling, batch_size=batch_size).cpu()


# ----------------------------------------------------------------------------- recorder


def finite_number(value: Any) -> float | None:
    """A finite float from a number or a one-element tensor (a framework's logged loss, an
    optimizer's lr), else None: a callback records a gap rather than stop the training."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return None
        value = value.detach().float().item()
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def check_interval(every_n_steps: int | None, every_n_epochs: int | None) -> tuple[int | None, int | None]:
    """(steps, epochs): one of them a positive whole number; neither given means every epoch."""
    if every_n_steps is not None and every_n_epochs is not None:
        raise ValueError("give every_n_steps or every_n_epochs, not both")
    if every_n_steps is None and every_n_epochs is None:
        every_n_epochs = 1
    for name, value in (("every_n_steps", every_n_steps), ("every_n_epochs", every_n_epochs)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return every_n_steps, every_n_epochs


class ProbeRecorder:
    """The framework-free half of a callback: open the run, log snapshots, close it.

    Args:
        probe: the probe set (formats: module docstring).
        student_layer: name of the student's module whose output are its features, inside
            the model given to :meth:`start` (e.g. ``"student.embed"`` in a LightningModule).
        teacher / teacher_features / teacher_layer / teacher_pooling: see
            :func:`teacher_probe_features` (``teacher_pooling``: default ``flatten``).
        pooling: how the student's module output becomes rows (:data:`perco_viz.models.POOLINGS`).
        labels: (n,) integer class labels of the probe set (else those found in it, if any).
        max_rows: probe rows kept (:func:`make_probe`).
        batch_size: probe rows per forward pass.
        root, name, config, title, metric, teacher_metric, class_names: passed to
            :func:`perco_viz.open_run`.
        writer: what wrote the run (one of :data:`perco_viz.writer.WRITERS`, kept in ``external.json``).

    The probe set and the teacher's features are made on the first :meth:`start` and kept.
    """

    def __init__(
        self,
        probe: Any,
        *,
        student_layer: str,
        teacher: nn.Module | None = None,
        teacher_features: Any = None,
        teacher_layer: str | None = None,
        pooling: str = "flatten",
        teacher_pooling: str = "flatten",
        labels: Any = None,
        max_rows: int = DEFAULT_PROBE_ROWS,
        batch_size: int = DEFAULT_BATCH,
        root: str | Path = "runs",
        name: str | None = None,
        config: dict[str, Any] | None = None,
        title: str = "",
        metric: str = "euclidean",
        teacher_metric: str | None = None,
        class_names: list[str] | None = None,
        writer: str = "open_run",
    ) -> None:
        if not isinstance(student_layer, str) or not student_layer:
            raise ValueError(f"student_layer must name a module of the student (e.g. 'student.embed'), "
                             f"got {student_layer!r}")
        for what, value in (("pooling", pooling), ("teacher_pooling", teacher_pooling)):
            if value not in POOLINGS:
                raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(POOLINGS)}")
        if (teacher is None) == (teacher_features is None):
            raise ValueError("give either teacher (a frozen module, evaluated once on the probe set) or "
                             "teacher_features (its precomputed probe features), not both or neither")
        if isinstance(probe, DataLoader) and teacher_features is not None and isinstance(probe.sampler, RandomSampler):
            raise ValueError("the probe DataLoader shuffles, so its rows would not line up with teacher_features; "
                             "build it with shuffle=False, or give the teacher module instead")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
        check_max_rows(max_rows)
        self.probe_source, self.labels = probe, labels
        self.student_layer, self.pooling = student_layer, pooling
        self.teacher, self.teacher_features, self.teacher_layer = teacher, teacher_features, teacher_layer
        self.teacher_pooling = teacher_pooling
        self.max_rows, self.batch_size = max_rows, batch_size
        self.open_args = {"root": root, "name": name, "config": config, "title": title, "metric": metric,
                          "teacher_metric": teacher_metric, "class_names": class_names, "writer": writer}
        self.probe: Probe | None = None
        self.teacher_probe: torch.Tensor | None = None
        self.run: Run | None = None
        self.path: Path | None = None  # the directory of the last run opened (kept after it closes)
        self.last_step: int | None = None

    @property
    def active(self) -> bool:
        """Whether a run is open (this process writes)."""
        return self.run is not None

    def prepare(self) -> None:
        """Make the probe set and the teacher's probe features (once)."""
        if self.probe is None:
            self.probe = make_probe(self.probe_source, self.labels, max_rows=self.max_rows)
        if self.teacher_probe is None:
            self.teacher_probe = teacher_probe_features(
                self.probe, teacher=self.teacher, teacher_features=self.teacher_features,
                layer=self.teacher_layer, pooling=self.teacher_pooling, batch_size=self.batch_size)

    def start(self, student: nn.Module, *, epochs: int | None = None, write: bool = True) -> None:
        """Check the student's layer; when ``write``, open the run (rank 0 only).

        Raises:
            ValueError: the layer is not a module of ``student``; bad probe or teacher.
        """
        find_layer(student, self.student_layer)
        if self.run is not None:  # a training that ended without telling (e.g. raised outside `with`)
            self.run.close("a new training started with the same callback before this run was closed")
            self.run = None
        self.last_step = None
        if not write:
            return
        self.prepare()
        labels = self.probe.labels
        self.run = open_run(**self.open_args, teacher_features=self.teacher_probe, labels=labels,
                            epochs=epochs if epochs and epochs > 0 else None)
        if not self.run.active:  # the writer's own rank check (torch.distributed, RANK) said no
            self.run = None
            return
        self.path = self.run.path

    def record(self, student: nn.Module, *, epoch: float, step: int, **scalars: Any) -> None:
        """Measure the student on the probe set and log it with ``scalars`` (``None`` ones left out)."""
        if self.run is None:
            return
        feats = probe_features(student, self.probe, self.student_layer, pooling=self.pooling,
                               batch_size=self.batch_size)
        self.run.log(feats, epoch=max(0.0, float(epoch)), step=int(step),
                     **{k: v for k, v in scalars.items() if v is not None})
        self.last_step = int(step)

    def finish(self, error: BaseException | None = None) -> None:
        """Close the run: finished, or failed (cancelled for Ctrl+C) with ``error``'s message."""
        run, self.run = self.run, None
        if run is None:
            return
        if error is None:
            run.close()
        else:
            run.__exit__(type(error), error, error.__traceback__)
