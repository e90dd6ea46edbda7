"""The distillation engine: one student, one frozen teacher, one transfer loss.

The engine knows nothing of any UI. It reports through :class:`Callbacks` and through the
run directory (:mod:`perco_viz.runs`), which is also how a run made by the CLI on a GPU server
is opened, live, in the app.

>>> from perco_viz.config import RunConfig
>>> cfg = RunConfig().override(**{"train.epochs": 1, "data.name": "blobs", "teacher.kind": "identity"})
>>> result = distill(cfg, out=None)          # doctest: +SKIP
>>> result.status, round(result.final["pc"], 2)   # doctest: +SKIP
('finished', 0.9)

Distributed: under ``torchrun`` (``WORLD_SIZE > 1``) every process takes a slice of each
global batch; the features are all-gathered *with* their gradient, so every process minimizes
the loss of the whole global batch — the same objective as one process with that batch.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from perco_viz.config import RunConfig
from perco_viz.runs import HEARTBEAT_S, RunDir, RunStoreError, Snapshot


class TrainingError(RuntimeError):
    """The run cannot go on (NaN loss, bad configuration); the message says what to change."""


@dataclass
class Callbacks:
    """Optional hooks; each is called from the training thread.

    Attributes:
        on_snapshot: receives every :class:`~perco_viz.runs.Snapshot`.
        on_progress: receives a dict ``{"step", "total_steps", "epoch", "loss", "elapsed_s",
            "eta_s", "phase"}`` after every step and during set-up (phase ``"teacher"``...).
        on_status: receives ``(state, error_or_None)`` when the run ends.
    """

    on_snapshot: Callable[[Snapshot], None] | None = None
    on_progress: Callable[[dict[str, Any]], None] | None = None
    on_status: Callable[[str, str | None], None] | None = None


@dataclass
class RunResult:
    """What :func:`distill` returns."""

    status: str
    run_dir: RunDir | None
    final: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def resolve_device(name: str) -> torch.device:
    """``auto`` → cuda > mps > cpu; otherwise the named device, checked to exist here.

    Raises:
        TrainingError: an unknown device name, or one this machine does not have
            (``device 'cuda' is not available on this machine; available: cpu``).
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    from perco_viz.config import DEVICE_RE

    if not isinstance(name, str) or DEVICE_RE.fullmatch(name) is None:
        raise TrainingError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    usable = available_devices(indexed=True)
    if name not in usable:
        here = ", ".join(d for d in usable if d != "auto")
        raise TrainingError(f"device {name!r} is not available on this machine; available: {here} "
                            "(or auto, the best of them)")
    return torch.device(name)


def amp_enabled(config: RunConfig, device: torch.device) -> bool:
    """Whether ``train.amp`` (bf16 autocast) takes effect: on CUDA only."""
    return bool(config.train.amp) and device.type == "cuda"


def effective_settings(config: RunConfig, n_train: int, n_test: int) -> dict[str, tuple[Any, str]]:
    """The fields of ``config`` whose value is not what a run of it uses here, and why.

    The data fields as :func:`perco_viz.data.effective_data_settings` says, and ``train.amp``
    when the device it resolves to here is not CUDA (or is not here at all).

    Args:
        config: the run's configuration.
        n_train: points in the training split of its dataset.
        n_test: points in the held-out split.

    Returns:
        dotted field -> (the value used, or ``None`` when the field is not used; why), e.g.
        ``{"train.amp": (False, "bf16 autocast runs on CUDA only; this machine trains on cpu")}``.
    """
    from perco_viz.data import effective_data_settings

    out = effective_data_settings(config.data, n_train, n_test)
    if config.train.amp:
        try:
            device = resolve_device(config.train.device)
        except TrainingError:
            device = None
        if device is None or not amp_enabled(config, device):
            where = f"this machine trains on {device.type}" if device is not None else "that device is not here"
            out["train.amp"] = (False, f"bf16 autocast runs on CUDA only; {where}")
    return out


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def available_devices(*, indexed: bool = False) -> list[str]:
    """Devices usable here, for a UI's select box (``indexed``: also ``cuda:0``, ``cuda:1``...)."""
    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
        if indexed:
            devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        devices.append("mps")
    return devices


# --------------------------------------------------------------------------- distributed
@dataclass
class _Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: torch.device) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size())


def gather_with_grad(x: torch.Tensor, dist_info: _Dist) -> torch.Tensor:
    """All-gather rows from every process, keeping the gradient to the local rows."""
    if dist_info.world == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), 0)


# --------------------------------------------------------------------------- the engine
class Distiller:
    """Set up once, then :meth:`run`. Holds data, teacher features, student and optimizer.

    Args:
        config: the run's configuration.
        run_dir: where to record the run (``None``: keep nothing on disk).
        callbacks: hooks for a UI or a progress bar.
        cancel: set this event to stop within one batch (status ``cancelled``).
        cache_dir: where built-in teachers are cached (default: ``paths.default_cache_dir()``).
        trust_code: allow a TorchScript teacher/student (loading it runs the code it carries);
            the caller's decision (CLI ``--trust-code``), never a config field.
    """

    def __init__(self, config: RunConfig, run_dir: RunDir | None = None, callbacks: Callbacks | None = None,
                 cancel: threading.Event | None = None, cache_dir: str | Path | None = None,
                 trust_code: bool = False) -> None:
        self.config = config
        self.trust_code = bool(trust_code)
        self.run_dir = run_dir
        self.cb = callbacks or Callbacks()
        self.cancel = cancel or threading.Event()
        self.cache_dir = cache_dir
        config.validate()  # a config built directly (not from data) is checked here, before any work
        self.device = resolve_device(config.train.device)
        self.dist = _init_distributed(self.device)
        self.epoch = 0
        self.step = 0
        self.snapshot_index = 0
        self.t0 = time.perf_counter()
        self.wall_offset = 0.0
        self.last_loss = math.nan
        self.resume_state: dict[str, Any] | None = None  # a checkpoint read (and checked) by resume()

    # ------------------------------------------------------------------ set-up
    def setup(self) -> None:
        """Load data and teacher (training the built-in one if needed), build the student."""
        from perco_viz import data as data_mod
        from perco_viz import models, paths
        from perco_viz.losses import make_loss

        cfg = self.config
        self._progress(phase="data")
        self.dataset = data_mod.load_dataset(cfg.data)
        check_against_data(cfg, self.dataset.n_train, self.dataset.n_test)
        self._progress(phase="teacher")
        teacher = models.load_teacher(
            cfg.teacher, self.dataset, cache_dir=self.cache_dir or paths.default_cache_dir(),
            device=self.device, progress=lambda e, t, a: self._progress(phase="teacher", epoch=e, total=t, acc=a),
            trust_code=self.trust_code,
        )
        self._progress(phase="features")
        self.t_train = models.extract_features(teacher, self.dataset.X_train, device=self.device)
        probe = self.dataset.probe(cfg.data.probe_size, seed=cfg.data.seed)
        self.probe_idx = probe.cpu().numpy()
        self.x_probe = self.dataset.X_test[probe]
        self.y_probe = None if self.dataset.y_test is None else self.dataset.y_test[probe].cpu().numpy()
        self.t_probe = models.extract_features(teacher, self.x_probe, device=self.device).cpu().numpy()
        self.teacher_logits = self._teacher_logits(teacher) if cfg.loss.kd_weight > 0 else None

        torch.manual_seed(cfg.train.seed)
        self.student = models.build_student(cfg.student, self.dataset, trust_code=self.trust_code).to(self.device)
        cfg = self._record_student_dim()
        self.head = self._make_head()
        self.loss_fn = make_loss(cfg.loss.name, student_dim=cfg.student.dim, teacher_dim=self.t_train.shape[1],
                                 **_loss_options(cfg)).to(self.device)
        params = [p for m in (self.student, self.head, self.loss_fn) if m is not None for p in m.parameters()]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        self.steps_per_epoch = steps_per_epoch(self.dataset.n_train, cfg.train.batch_size)
        total = max(1, cfg.train.epochs * self.steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total)))
        if self.dist.world > 1:
            self.student = nn.parallel.DistributedDataParallel(self.student)

    def _record_student_dim(self) -> RunConfig:
        """A module/huggingface student's width is its own: written into the config (``student.dim``) the run
        records, before any snapshot is validated against it. Returns the config to go on with.

        Raises:
            TrainingError: the width is over the limit of ``student.dim``, or a resumed run's model
                no longer gives the width it recorded.
        """
        import copy

        from perco_viz import models
        from perco_viz.config import MAX_STUDENT_DIM

        cfg = self.config
        if cfg.student.arch not in models.SELF_SIZED_ARCHS:
            return cfg
        width = int(self.student.feature_dim)
        s = cfg.student
        if width > MAX_STUDENT_DIM:
            raise TrainingError(
                f"the student's features are {width:,} wide (layer {s.layer or 'default'}, pooling {s.pooling}), "
                f"over the {MAX_STUDENT_DIM:,} a run records; choose student.pooling cls or mean, or a narrower "
                "student.layer")
        if width == s.dim:
            return cfg
        if self.resume_state is not None:
            raise TrainingError(
                f"the student now gives {width:,}-wide features but this run recorded student.dim = {s.dim}; its "
                "model changed since the run started: start a new run")
        self.config = copy.deepcopy(cfg)
        self.config.student.dim = width
        if self.run_dir is not None and self.dist.main:
            self.run_dir.write_config(self.config)
        return self.config

    def _teacher_logits(self, teacher) -> torch.Tensor | None:
        with torch.no_grad():
            out = teacher.logits(self.dataset.X_train[:2].to(self.device))
        if out is None:
            raise TrainingError("kd_weight > 0 needs a teacher with a classification head; set loss.kd_weight to 0")
        chunks = [teacher.logits(self.dataset.X_train[i:i + 1024].to(self.device)).detach()
                  for i in range(0, self.dataset.n_train, 1024)]
        return torch.cat(chunks)

    def _make_head(self) -> nn.Module | None:
        cfg = self.config.loss
        if cfg.ce_weight <= 0 and cfg.kd_weight <= 0:
            return None
        if self.dataset.n_classes is None or self.dataset.y_train is None:
            raise TrainingError("ce_weight/kd_weight need a labelled dataset; set them to 0 for this data")
        return nn.Linear(self.config.student.dim, self.dataset.n_classes).to(self.device)

    # ------------------------------------------------------------------ training
    def run(self) -> RunResult:
        """Train to the configured number of epochs; never raises for training failures.

        Holds the run directory's writer lock throughout (re-entrant: :func:`distill` and
        :func:`resume` hold it already); a run that another process is writing is refused
        (status ``failed``, the run directory untouched).
        """
        if self.run_dir is None or not self.dist.main:
            return self._train()
        try:
            with self.run_dir.lock():
                return self._train()
        except RunStoreError as exc:  # RunLockedError: another writer; raised only on entry
            return self._refuse(str(exc))

    def _train(self) -> RunResult:
        state, error = "finished", None
        self.train_t0, self.train_step0 = time.perf_counter(), self.step  # the ETA's start: this process's steps
        try:
            if self.run_dir is not None and self.dist.main:  # nothing is written before this point
                self.run_dir.save_teacher_probe(self.t_probe, self.y_probe, self.probe_idx)
                self.run_dir.write_status("running", error=None, epoch=self.epoch, step=self.step)
            self._progress(phase="train")  # set-up is over: live views leave their "preparing" line
            if self.step == 0 and self.snapshot_index == 0:
                self.snapshot()
            while self.epoch < self.config.train.epochs and not self.cancel.is_set():
                self._train_epoch()
                if self.cancel.is_set():
                    break
                self.epoch += 1
                self.snapshot()
                self.checkpoint()
            if self.cancel.is_set():
                state = "cancelled"
        except TrainingError as exc:
            state, error = "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 — recorded in the run directory, never lost
            state, error = "failed", f"{type(exc).__name__}: {exc}"
        return self._finish(state, error)

    def _train_epoch(self) -> None:
        cfg = self.config.train
        n = self.dataset.n_train
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + self.epoch)  # same batches on resume
        order = torch.randperm(n, generator=gen)
        self.student.train()
        for b in range(self.steps_per_epoch):
            if self.cancel.is_set():
                return
            batch = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            if len(batch) < MIN_BATCH:  # never: steps_per_epoch leaves out a tail this short
                continue
            self._train_step(batch)
            every = cfg.snapshot_every
            if every and self.step % every == 0 and b + 1 < self.steps_per_epoch:
                self.snapshot(epoch=self.epoch + (b + 1) / self.steps_per_epoch)

    def _train_step(self, batch: torch.Tensor) -> None:
        local = batch.chunk(self.dist.world)[self.dist.rank] if self.dist.world > 1 else batch
        x = self.dataset.X_train[local].to(self.device, non_blocking=True)
        amp = amp_enabled(self.config, self.device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            feats = self.student(x)
        feats_all = gather_with_grad(feats.float(), self.dist)
        terms = {"transfer": self.loss_fn(feats_all, self.t_train[batch].to(self.device))}
        terms.update(self._class_terms(feats_all, batch))
        loss = sum(terms.values())
        if not torch.isfinite(loss):
            raise TrainingError(
                f"the loss became {loss.item()} at epoch {self.epoch + 1}, step {self.step + 1}; "
                "lower the learning rate (train.lr) or check the inputs for extreme values")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self.last_loss = float(loss.detach())
        self.last_terms = {k: float(v.detach()) for k, v in terms.items()}
        self._progress(phase="train", loss=self.last_loss)
        self._heartbeat()

    def _heartbeat(self) -> None:
        """Keep status.json fresh during long epochs, so readers can tell a live run from a dead one."""
        now = time.monotonic()
        if self.run_dir is None or not self.dist.main or now - getattr(self, "_beat", 0.0) < HEARTBEAT_S:
            return
        self._beat = now
        self.run_dir.write_status("running", epoch=self.epoch, step=self.step, error=None)

    def _class_terms(self, feats: torch.Tensor, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.head is None:
            return {}
        from perco_viz.losses.kd import hinton_kd_loss

        cfg = self.config.loss
        logits = self.head(feats)
        terms = {}
        if cfg.ce_weight > 0:
            terms["ce"] = cfg.ce_weight * nn.functional.cross_entropy(logits, self.dataset.y_train[batch].to(self.device))
        if cfg.kd_weight > 0:
            t_logits = self.teacher_logits[batch].to(self.device)
            terms["kd"] = cfg.kd_weight * hinton_kd_loss(logits, t_logits, temperature=cfg.kd_temperature)
        return terms

    # ------------------------------------------------------------------ measurement
    def probe_features(self) -> np.ndarray:
        """(n_probe, d_s) student features on the probe set."""
        student = self.student.module if isinstance(self.student, nn.parallel.DistributedDataParallel) else self.student
        was_training = student.training
        student.eval()
        with torch.no_grad():
            out = torch.cat([student(self.x_probe[i:i + 1024].to(self.device)).float().cpu()
                             for i in range(0, len(self.x_probe), 1024)])
        student.train(was_training)
        return out.numpy()

    def snapshot(self, epoch: float | None = None) -> Snapshot | None:
        """Measure the student on the probe set, record it, and tell the callbacks."""
        if not self.dist.main:
            return None
        from perco_viz.metrics import probe_record

        feats = self.probe_features()
        if not np.isfinite(feats).all():
            raise TrainingError("the student produced NaN/inf features; lower the learning rate (train.lr)")
        c, numbers = probe_record(feats, self.t_probe, self.y_probe, metric=self.config.loss.metric,
                                  teacher_metric=self.config.loss.teacher_metric)
        record = {
            "epoch": float(self.epoch if epoch is None else epoch),
            "step": self.step,
            "train_loss": None if self.step == 0 else self.last_loss,
            **numbers,
            "lr": float(self.optimizer.param_groups[0]["lr"]),
            "wall_s": self.elapsed(),
            **{f"loss_{k}": v for k, v in getattr(self, "last_terms", {}).items()},
        }
        snap = Snapshot(self.snapshot_index, record["epoch"], self.step, feats, c, record)
        if self.run_dir is not None:
            self.run_dir.save_snapshot(snap)
            self.run_dir.write_status("running", epoch=self.epoch, step=self.step, error=None)
        self.snapshot_index += 1
        if self.cb.on_snapshot:
            self.cb.on_snapshot(snap)
        return snap

    def elapsed(self) -> float:
        return self.wall_offset + time.perf_counter() - self.t0

    def _progress(self, phase: str, **extra: Any) -> None:
        if not self.cb.on_progress or not self.dist.main:
            return
        total = getattr(self, "steps_per_epoch", 0) * self.config.train.epochs
        elapsed = self.elapsed()
        eta = None
        if phase == "train" and getattr(self, "train_t0", None) is not None:
            eta = eta_seconds(total, self.step, self.train_step0, time.perf_counter() - self.train_t0)
        self.cb.on_progress({"phase": phase, "step": self.step, "total_steps": total, "epoch": self.epoch,
                             "elapsed_s": elapsed, "eta_s": eta, **extra})

    # ------------------------------------------------------------------ persistence
    def _core_student(self) -> nn.Module:
        s = self.student
        return s.module if isinstance(s, nn.parallel.DistributedDataParallel) else s

    def checkpoint(self) -> None:
        """Write student weights and everything resume needs (atomic)."""
        if self.run_dir is None or not self.dist.main:
            return
        from perco_viz.runs import atomic_write_bytes
        from perco_viz.safe_io import save_safetensors

        save_safetensors(self._core_student().state_dict(), self.run_dir.student_path)
        state = {
            "student": self._core_student().state_dict(),
            "head": None if self.head is None else self.head.state_dict(),
            "loss": self.loss_fn.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch, "step": self.step, "snapshot_index": self.snapshot_index,
            "wall_s": self.elapsed(), "last_loss": self.last_loss,
        }
        import io

        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.run_dir.checkpoint_path, buf.getvalue())

    def restore(self) -> None:
        """Load the last checkpoint of ``run_dir`` (call after :meth:`setup`): the one
        :func:`resume` read and checked (``resume_state``), else read now through
        :meth:`RunDir.read_checkpoint` (weights_only, unpack-limited, its fields checked).
        The run's later metrics and snapshots are removed only once it has loaded."""
        state = self.resume_state if self.resume_state is not None else self.run_dir.read_checkpoint()
        if state is None:  # nothing finished yet: start over in the same directory
            self.run_dir.truncate_metrics(-1)
            self.run_dir.remove_snapshots_after(-1)
            return
        self._core_student().load_state_dict(state["student"])
        if self.head is not None and state["head"] is not None:
            self.head.load_state_dict(state["head"])
        self.loss_fn.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.snapshot_index = int(state["snapshot_index"])
        self.wall_offset, self.last_loss = float(state["wall_s"]), float(state["last_loss"])
        self.t0 = time.perf_counter()
        self.run_dir.truncate_metrics(self.step)
        self.run_dir.remove_snapshots_after(self.snapshot_index - 1)

    def _finish(self, state: str, error: str | None) -> RunResult:
        try:
            records = self.run_dir.metrics() if self.run_dir is not None else []
        except RunStoreError:  # a damaged metrics.jsonl must not hide how the run ended
            records = []
        final = records[-1] if records else {}
        if self.run_dir is not None and self.dist.main:
            try:
                if state == "cancelled":
                    self.checkpoint_partial()
                self.run_dir.write_status(state, error=error, epoch=self.epoch, step=self.step)
            except Exception as exc:  # noqa: BLE001 — a full disk must not hide the first error
                error = error or f"could not record the final status: {exc}"
        if self.cb.on_status:
            self.cb.on_status(state, error)
        return RunResult(state, self.run_dir, final, error)

    def _refuse(self, error: str) -> RunResult:
        """End without writing to the run directory: a resume that failed before training, or a
        run that another process holds the lock of. The run stays as it was."""
        if self.cb.on_status:
            self.cb.on_status("failed", error)
        return RunResult("failed", self.run_dir, {}, error)

    def checkpoint_partial(self) -> None:
        """On cancel, keep the student weights (the resumable checkpoint stays at the last epoch)."""
        from perco_viz.safe_io import save_safetensors

        save_safetensors(self._core_student().state_dict(), self.run_dir.student_path)


def eta_seconds(total_steps: int, step: int, start_step: int, seconds: float) -> float | None:
    """Seconds left to ``total_steps``, at the pace of the steps done in this process.

    Args:
        total_steps: the run's steps in all.
        step: the steps done so far (a resumed run counts those before the resume too).
        start_step: the step this process started training at (0, or the checkpoint's on resume).
        seconds: seconds this process has trained since ``start_step`` (not the run's whole wall
            time: a resumed run's earlier time, and the set-up, say nothing of the pace now).

    Returns:
        The estimate, or ``None`` before this process has done a step.

    >>> eta_seconds(100, 60, 50, 5.0)  # 10 steps in 5 s since the resume: 40 steps left
    20.0
    >>> eta_seconds(100, 50, 50, 3.0) is None
    True
    """
    done_here = step - start_step
    if done_here <= 0 or seconds < 0:
        return None
    return max(0, total_steps - step) * seconds / done_here


MIN_BATCH = 3  # a loss ranks pairs of *other* points of the batch: fewer is skipped (see _train_epoch)


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimizer steps per epoch: the full batches, plus the last partial one if it has ≥ 3 points.

    >>> steps_per_epoch(1347, 256), steps_per_epoch(258, 256), steps_per_epoch(259, 256)
    (6, 1, 2)
    """
    full, rest = divmod(n_train, batch_size)
    return full + (rest >= MIN_BATCH)


def check_against_data(cfg: RunConfig, n_train: int, n_test: int) -> None:
    """The dataset-dependent checks of a config (its ranges are ``cfg.validate()``).

    Args:
        cfg: the run's configuration.
        n_train: points in the training split (batches are cut from it).
        n_test: points in the held-out split (the probe set is ``min(probe_size, n_test)`` of them).

    Raises:
        ConfigError: one line naming the field and the largest (or smallest) value that works.
    """
    from perco_viz.config import ConfigError

    if cfg.train.batch_size > n_train:
        raise ConfigError(f"train.batch_size {cfg.train.batch_size:,} is larger than the training set "
                          f"({n_train:,} points); use at most {n_train:,}")
    if steps_per_epoch(n_train, cfg.train.batch_size) < 1:  # pragma: no cover — batch_size >= 3 and <= n_train
        raise ConfigError(f"train.batch_size {cfg.train.batch_size} gives no training step on {n_train} points")
    if min(cfg.data.probe_size, n_test) < MIN_BATCH:
        raise ConfigError(f"the held-out split has {n_test} point(s) and the probe set needs at least {MIN_BATCH}; "
                          "raise data.test_fraction or use more data")


def _loss_options(cfg: RunConfig) -> dict[str, Any]:
    """The chosen loss's own options: the loss-section fields it declares (the coherence loss's
    tau, kernel, metric, teacher_metric, anchors), then ``loss.options`` (e.g. cc's gamma)."""
    return cfg.loss.loss_kwargs()


# --------------------------------------------------------------------------- entry points
def distill(config: RunConfig, *, out: str | Path | None = "runs", name: str | None = None,
            callbacks: Callbacks | None = None, cancel: threading.Event | None = None,
            cache_dir: str | Path | None = None, trust_code: bool = False) -> RunResult:
    """Run a distillation from scratch.

    Args:
        config: the run's configuration.
        out: root directory under which the run directory is made (``None``: nothing saved).
        name: run name (default: derived from the config and the time).
        callbacks: hooks for live views.
        cancel: event that stops the run within one batch.
        cache_dir: teacher cache.
        trust_code: allow a TorchScript teacher/student, whose loading runs the code it carries
            (the CLI's ``--trust-code``); never read from the config.

    Returns:
        :class:`RunResult` with the status, the run directory and the last metrics record.
    """
    preflight(config)
    run_dir = None
    if out is not None and int(os.environ.get("RANK", "0")) == 0:
        run_dir = RunDir.create(out, config, name)
    engine = Distiller(config, run_dir, callbacks, cancel, cache_dir, trust_code=trust_code)
    return run_engine(engine)


def resume(run_dir: str | Path | RunDir, *, epochs: int | None = None, config: RunConfig | None = None,
           callbacks: Callbacks | None = None, cancel: threading.Event | None = None,
           cache_dir: str | Path | None = None, trust_code: bool = False) -> RunResult:
    """Continue a run from its last checkpoint (optionally to more ``epochs``).

    The run's writer lock is held from the first read to the final status. Everything that can
    be checked is checked before anything is written (the lock, the saved config, the new
    epochs, the device, the checkpoint), and a resume that fails before training starts — its
    set-up included — leaves ``status.json`` and ``config.json`` as they were.

    Args:
        run_dir: the run directory.
        epochs: train to this many epochs in all (``None``: the saved config's).
        config: the configuration to go on with (the app passes the one it shows); only its
            ``train.epochs``, ``train.device`` and ``name`` may differ from the saved one.
        callbacks: hooks for live views.
        cancel: event that stops the run within one batch.
        cache_dir: teacher cache.
        trust_code: allow a TorchScript teacher/student (the CLI's ``--trust-code``); a run's
            saved config can never grant it.

    Raises:
        RunLockedError: another process is writing the run (nothing was touched).
        RunStoreError: not a run directory, a run your own training wrote (:func:`perco_viz.open_run`),
            or its config or checkpoint is damaged.
        ConfigError: bad ``epochs`` or ``config``, a device this machine lacks, or a finished run
            asked for no more epochs than it has.
    """
    from perco_viz.config import ConfigError

    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if not run.exists():  # before the lock: no .lock file is left in a folder that is not a run
        run.config()  # raises RunStoreError: "... is not a run directory (no config.json)"
    if run.is_external():
        raise RunStoreError(f"run {run.name!r} was written by your own training ({run.external()['writer']}), "
                            "not by perco_viz's engine, so it cannot be continued here: go on in your own loop "
                            "and log to a new run")
    with run.lock():
        saved = run.config()
        new = saved if config is None else config
        if epochs is not None:
            new = new.override(**{"train.epochs": epochs})
        _check_same_run(saved, new)
        preflight(new)
        state = run.read_checkpoint()
        if state is not None and state["epoch"] >= new.train.epochs and run.status().get("state") == "finished":
            raise ConfigError(f"run {run.name!r} finished after {state['epoch']} epoch(s); to train it further "
                              f"give more epochs in all (train.epochs > {state['epoch']}, e.g. --epochs "
                              f"{state['epoch'] + 5})")
        engine = Distiller(new, run, callbacks, cancel, cache_dir, trust_code=trust_code)
        engine.resume_state = state
        save_config = None if new == saved else (lambda: run.write_config(new))
        return run_engine(engine, restore=True, before_training=save_config)


_RESUME_MAY_CHANGE = ("train.epochs", "train.device", "name")


def _check_same_run(saved: RunConfig, new: RunConfig) -> None:
    """A resume goes on with the same run: only :data:`_RESUME_MAY_CHANGE` may differ."""
    from perco_viz.config import ConfigError

    a, b = saved.to_dict(), new.to_dict()
    for section, values in a.items():
        for key, value in (values.items() if isinstance(values, dict) else [(None, values)]):
            dotted = section if key is None else f"{section}.{key}"
            other = b[section] if key is None else b[section].get(key)
            if dotted not in _RESUME_MAY_CHANGE and other != value:
                raise ConfigError(f"a resume goes on with the same run: {dotted} is {value!r} in the run and "
                                  f"{other!r} here; only {', '.join(_RESUME_MAY_CHANGE)} may change "
                                  "(start a new run for the rest)")


def preflight(config: RunConfig) -> None:
    """What can be checked before anything is written: the config's ranges and the device.

    Raises:
        ConfigError: a field out of range, or a device this machine does not have.
    """
    from perco_viz.config import ConfigError

    config.validate()
    try:
        resolve_device(config.train.device)
    except TrainingError as exc:
        raise ConfigError(f"train.device: {exc}") from None


def run_engine(engine: Distiller, restore: bool = False,
                   before_training: Callable[[], None] | None = None) -> RunResult:
    """Set up (and restore), then train, holding the run's writer lock throughout.

    A fresh run's set-up error is recorded in its status; a resume's is not (``restore``: the
    run stays as it was), nor a refusal because another process holds the lock.

    Args:
        engine: the engine, not set up yet.
        restore: go on from the run directory's checkpoint.
        before_training: called once set-up and restore succeeded, before training writes
            anything (:func:`resume` saves the new config there).
    """
    run = engine.run_dir if engine.dist.main else None
    with contextlib.ExitStack() as held:
        if run is not None:
            try:
                held.enter_context(run.lock())
            except RunStoreError as exc:
                return engine._refuse(str(exc))
        try:
            engine.setup()
            if restore:
                engine.restore()
            if before_training is not None:
                before_training()
        except Exception as exc:  # noqa: BLE001 — set-up errors are recorded like training errors
            message = str(exc) if isinstance(exc, (TrainingError, RunStoreError, ValueError, ImportError, OSError)) \
                else f"{type(exc).__name__}: {exc}"
            return engine._refuse(message) if restore else engine._finish("failed", message)
        return engine.run()
