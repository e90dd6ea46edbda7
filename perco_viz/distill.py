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
from perco_viz.runs import HEARTBEAT_S, RunDir, Snapshot


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
    """``auto`` → cuda > mps > cpu; otherwise the named device, checked to exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device 'cuda' was asked for but no CUDA GPU is available here; use --device auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise TrainingError("device 'mps' was asked for but Apple's MPS is not available here; use --device auto or cpu")
    if name not in ("cpu", "cuda", "mps") and not name.startswith("cuda:"):
        raise TrainingError(f"unknown device {name!r}; use auto, cpu, cuda or mps")
    return torch.device(name)


def available_devices() -> list[str]:
    """Devices usable here, for a UI's select box."""
    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
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
        cache_dir: where built-in teachers are cached (default: ``models.default_cache_dir()``).
    """

    def __init__(self, config: RunConfig, run_dir: RunDir | None = None, callbacks: Callbacks | None = None,
                 cancel: threading.Event | None = None, cache_dir: str | Path | None = None) -> None:
        self.config = config
        self.run_dir = run_dir
        self.cb = callbacks or Callbacks()
        self.cancel = cancel or threading.Event()
        self.cache_dir = cache_dir
        self.device = resolve_device(config.train.device)
        self.dist = _init_distributed(self.device)
        self.epoch = 0
        self.step = 0
        self.snapshot_index = 0
        self.t0 = time.perf_counter()
        self.wall_offset = 0.0
        self.last_loss = math.nan

    # ------------------------------------------------------------------ set-up
    def setup(self) -> None:
        """Load data and teacher (training the built-in one if needed), build the student."""
        from perco_viz import data as data_mod
        from perco_viz import models
        from perco_viz.losses import make_loss

        cfg = self.config
        self._progress(phase="data")
        self.dataset = data_mod.load_dataset(cfg.data)
        self._progress(phase="teacher")
        teacher = models.load_teacher(
            cfg.teacher, self.dataset, cache_dir=self.cache_dir or models.default_cache_dir(),
            device=self.device, progress=lambda e, t, a: self._progress(phase="teacher", epoch=e, total=t, acc=a),
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
        self.student = models.build_student(cfg.student, self.dataset).to(self.device)
        self.head = self._make_head()
        self.loss_fn = make_loss(cfg.loss.name, student_dim=cfg.student.dim, teacher_dim=self.t_train.shape[1],
                                 **_loss_options(cfg)).to(self.device)
        params = [p for m in (self.student, self.head, self.loss_fn) if m is not None for p in m.parameters()]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        self.steps_per_epoch = max(1, math.ceil(self.dataset.n_train / cfg.train.batch_size))
        total = max(1, cfg.train.epochs * self.steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total)))
        if self.dist.world > 1:
            self.student = nn.parallel.DistributedDataParallel(self.student)
        if self.run_dir is not None and self.dist.main:
            self.run_dir.save_teacher_probe(self.t_probe, self.y_probe, self.probe_idx)

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
        """Train to the configured number of epochs; never raises for training failures."""
        state, error = "finished", None
        try:
            if self.run_dir is not None and self.dist.main:
                self.run_dir.write_status("running", error=None, epoch=self.epoch, step=self.step)
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
            if len(batch) < 3:
                continue
            self._train_step(batch)
            every = cfg.snapshot_every
            if every and self.step % every == 0 and b + 1 < self.steps_per_epoch:
                self.snapshot(epoch=self.epoch + (b + 1) / self.steps_per_epoch)

    def _train_step(self, batch: torch.Tensor) -> None:
        local = batch.chunk(self.dist.world)[self.dist.rank] if self.dist.world > 1 else batch
        x = self.dataset.X_train[local].to(self.device, non_blocking=True)
        amp = self.config.train.amp and self.device.type == "cuda"
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
        from perco_viz.baselines import hinton_kd_loss

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
        from perco_viz.coherence import per_sample_coherence
        from perco_viz.metrics import knn_accuracy

        feats = self.probe_features()
        if not np.isfinite(feats).all():
            raise TrainingError("the student produced NaN/inf features; lower the learning rate (train.lr)")
        metric, t_metric = self.config.loss.metric, self.config.loss.teacher_metric
        c = per_sample_coherence(feats, self.t_probe, metric=metric, teacher_metric=t_metric)
        record = {
            "epoch": float(self.epoch if epoch is None else epoch),
            "step": self.step,
            "train_loss": None if self.step == 0 else self.last_loss,
            "pc": float(c.mean()),
            "coherence_p10": float(np.quantile(c, 0.1)),
            "knn_acc": None if self.y_probe is None else knn_accuracy(feats, self.y_probe, k=5),
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
        done_here = self.step - getattr(self, "start_step", 0)
        eta = (total - self.step) * elapsed / done_here if done_here > 0 and phase == "train" else None
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
        """Load the last checkpoint of ``run_dir`` (call after :meth:`setup`)."""
        path = self.run_dir.checkpoint_path
        if not path.is_file():  # nothing finished yet: start over in the same directory
            self.run_dir.truncate_metrics(-1)
            self.run_dir.remove_snapshots_after(-1)
            return
        state = torch.load(path, map_location=self.device, weights_only=True)
        self._core_student().load_state_dict(state["student"])
        if self.head is not None and state["head"] is not None:
            self.head.load_state_dict(state["head"])
        self.loss_fn.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.snapshot_index = int(state["snapshot_index"])
        self.wall_offset, self.last_loss = float(state["wall_s"]), float(state["last_loss"])
        self.start_step = self.step
        self.t0 = time.perf_counter()
        self.run_dir.truncate_metrics(self.step)
        self.run_dir.remove_snapshots_after(self.snapshot_index - 1)

    def _finish(self, state: str, error: str | None) -> RunResult:
        final = self.run_dir.metrics()[-1] if self.run_dir is not None and self.run_dir.metrics() else {}
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

    def checkpoint_partial(self) -> None:
        """On cancel, keep the student weights (the resumable checkpoint stays at the last epoch)."""
        from perco_viz.safe_io import save_safetensors

        save_safetensors(self._core_student().state_dict(), self.run_dir.student_path)


def _loss_options(cfg: RunConfig) -> dict[str, Any]:
    """Map the config's loss section onto the chosen loss's own options."""
    if cfg.loss.name != "coherence":
        return {}
    return {"tau": cfg.loss.tau, "kernel": cfg.loss.kernel, "metric": cfg.loss.metric,
            "teacher_metric": cfg.loss.teacher_metric, "anchors": cfg.loss.anchors}


# --------------------------------------------------------------------------- entry points
def distill(config: RunConfig, *, out: str | Path | None = "runs", name: str | None = None,
            callbacks: Callbacks | None = None, cancel: threading.Event | None = None,
            cache_dir: str | Path | None = None) -> RunResult:
    """Run a distillation from scratch.

    Args:
        config: the run's configuration.
        out: root directory under which the run directory is made (``None``: nothing saved).
        name: run name (default: derived from the config and the time).
        callbacks: hooks for live views.
        cancel: event that stops the run within one batch.
        cache_dir: teacher cache.

    Returns:
        :class:`RunResult` with the status, the run directory and the last metrics record.
    """
    run_dir = None
    if out is not None and int(os.environ.get("RANK", "0")) == 0:
        run_dir = RunDir.create(out, config, name)
    engine = Distiller(config, run_dir, callbacks, cancel, cache_dir)
    return _setup_and_run(engine)


def resume(run_dir: str | Path | RunDir, *, epochs: int | None = None, callbacks: Callbacks | None = None,
           cancel: threading.Event | None = None, cache_dir: str | Path | None = None) -> RunResult:
    """Continue a run from its last checkpoint (optionally to more ``epochs``)."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    config = run.config()
    if epochs is not None:
        config = config.override(**{"train.epochs": epochs})
        run.write_config(config)
    engine = Distiller(config, run, callbacks, cancel, cache_dir)
    return _setup_and_run(engine, restore=True)


def _setup_and_run(engine: Distiller, restore: bool = False) -> RunResult:
    try:
        engine.setup()
        if restore:
            engine.restore()
    except Exception as exc:  # noqa: BLE001 — set-up errors are recorded like training errors
        message = str(exc) if isinstance(exc, (TrainingError, ValueError, ImportError, OSError)) else \
            f"{type(exc).__name__}: {exc}"
        return engine._finish("failed", message)
    return engine.run()
