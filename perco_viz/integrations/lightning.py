"""A Lightning ``Callback`` that streams a distillation into perco_viz (``pip install perco_viz[lightning]``).

>>> from perco_viz.integrations.lightning import PercoVizCallback       # doctest: +SKIP
>>> cb = PercoVizCallback(probe_loader, teacher=teacher, student_layer="student.embed",
...                       every_n_epochs=1, root="runs", name="my-distill")  # doctest: +SKIP
>>> Trainer(callbacks=[cb]).fit(module, train_loader)                    # doctest: +SKIP

At fit start the callback checks ``student_layer`` (a module name inside the LightningModule;
a wrong name is a ``ValueError`` before any training), takes the probe set, computes the
teacher's probe features once and opens the run (:func:`perco_viz.open_run`; only the process
with ``trainer.is_global_zero`` writes). It logs one snapshot before training, then every
``every_n_steps`` optimizer steps or every ``every_n_epochs`` epochs, and one at the end if the
last step was not logged: the LightningModule is called on the probe inputs (``module(x)``, or
``module(**x)`` for dict inputs; its forward must run the student's layer), in eval mode without
gradients, with a hook that is removed right after. Each snapshot carries ``train_loss`` (from
``trainer.callback_metrics``: ``loss_key``, else the first of :data:`LOSS_KEYS` logged, else the
loss ``training_step`` returned) and ``lr`` (the first optimizer's first parameter group). The
run is closed finished at fit end, and failed with the exception's message (cancelled for
Ctrl+C) when the fit raises (``on_exception``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from perco_viz.integrations.probe import (
    DEFAULT_BATCH,
    DEFAULT_PROBE_ROWS,
    ProbeRecorder,
    check_interval,
    finite_number,
)
from perco_viz.safe_io import require

try:
    import lightning.pytorch as pl
except ImportError:  # the older stand-alone package has the same Callback API
    pl = require("pytorch_lightning", install="perco_viz[lightning]",
                 purpose="the Lightning integration (perco_viz.integrations.lightning)")

LOSS_KEYS = ("train_loss", "train_loss_step", "loss", "train/loss", "train_loss_epoch")


class PercoVizCallback(pl.Callback):
    """Log the student's probe features to a perco_viz run while a LightningModule trains.

    Args:
        probe: the probe set: a ``DataLoader`` or tensors (formats:
            :mod:`perco_viz.integrations.probe`); at most ``max_rows`` rows are kept.
        student_layer: name of the student's feature module inside the LightningModule
            (e.g. ``"student.embed"``; :func:`perco_viz.models.list_modules` lists them).
        teacher: a frozen teacher module, evaluated once on the probe set (its output, or
            module ``teacher_layer``'s; a :class:`~perco_viz.models.FeatureModel` gives its own
            features). Or ``teacher_features``: its precomputed (n_probe, d_t) probe features.
        pooling: how the student's module output becomes one row per input: ``flatten``,
            ``cls`` or ``mean`` (:func:`perco_viz.models.pool_tokens`); ``teacher_pooling``
            likewise for the teacher's (default ``flatten``: its output as it is).
        every_n_steps, every_n_epochs: the interval (one of them; neither: every epoch).
        log_first: also log a snapshot before the first step.
        loss_key: the ``callback_metrics`` key of the training loss (default: :data:`LOSS_KEYS`).
        labels, max_rows, batch_size: the probe's class labels, rows kept, rows per forward pass.
        root, name, config, title, metric, teacher_metric, class_names: the run
            (:func:`perco_viz.open_run`): runs folder, run name, your JSON-serialisable config...

    Attributes:
        run: the open :class:`perco_viz.writer.Run` while fitting on rank 0, else ``None``.
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
        every_n_steps: int | None = None,
        every_n_epochs: int | None = None,
        log_first: bool = True,
        loss_key: str | None = None,
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
    ) -> None:
        super().__init__()
        self.every_n_steps, self.every_n_epochs = check_interval(every_n_steps, every_n_epochs)
        self.log_first, self.loss_key = bool(log_first), loss_key
        self.recorder = ProbeRecorder(
            probe, student_layer=student_layer, teacher=teacher, teacher_features=teacher_features,
            teacher_layer=teacher_layer, pooling=pooling, teacher_pooling=teacher_pooling, labels=labels,
            max_rows=max_rows, batch_size=batch_size, root=root, name=name, config=config, title=title,
            metric=metric, teacher_metric=teacher_metric, class_names=class_names, writer="lightning")

    @property
    def path(self) -> Path | None:
        """The directory of the last run this callback wrote (kept after it closes), else ``None``."""
        return self.recorder.path

    @property
    def run(self):
        """The open run (rank 0, while fitting), else ``None``."""
        return self.recorder.run

    # ------------------------------------------------------------------ what a snapshot carries

    def _train_loss(self, trainer: pl.Trainer, outputs: Any = None) -> float | None:
        metrics = trainer.callback_metrics
        for key in (self.loss_key,) if self.loss_key else LOSS_KEYS:
            if key in metrics and (value := finite_number(metrics[key])) is not None:
                return value
        if self.loss_key is None and outputs is not None:
            return finite_number(outputs.get("loss") if isinstance(outputs, dict) else outputs)
        return None

    @staticmethod
    def _lr(trainer: pl.Trainer) -> float | None:
        optimizers = trainer.optimizers
        if optimizers and optimizers[0].param_groups:
            return finite_number(optimizers[0].param_groups[0].get("lr"))
        return None

    def _log(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: float, outputs: Any = None) -> None:
        self.recorder.record(pl_module, epoch=epoch, step=trainer.global_step,
                             train_loss=self._train_loss(trainer, outputs), lr=self._lr(trainer))

    def _due(self, trainer: pl.Trainer) -> bool:
        return self.recorder.active and self.recorder.last_step != trainer.global_step

    # ------------------------------------------------------------------ Lightning hooks

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Check the layer, open the run (rank 0), log the first snapshot."""
        epochs = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs > 0 else None
        self.recorder.start(pl_module, epochs=epochs, write=trainer.is_global_zero)
        if self.log_first and self.recorder.active:
            self._log(trainer, pl_module, epoch=float(trainer.current_epoch))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        """Every ``every_n_steps`` optimizer steps: a snapshot."""
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0 and self._due(trainer):
            per_epoch = trainer.num_training_batches
            frac = (batch_idx + 1) / per_epoch if isinstance(per_epoch, int) and per_epoch > 0 else 0.0
            self._log(trainer, pl_module, epoch=trainer.current_epoch + min(frac, 1.0), outputs=outputs)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Every ``every_n_epochs`` epochs: a snapshot."""
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0 and self._due(trainer):
            self._log(trainer, pl_module, epoch=float(trainer.current_epoch + 1))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A last snapshot if the last step was not logged; the run is finished."""
        if self._due(trainer):  # (should this raise, on_exception closes the run failed)
            self._log(trainer, pl_module, epoch=float(trainer.current_epoch))
        self.recorder.finish()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """The fit raised: the run is failed with the message (cancelled for Ctrl+C)."""
        self.recorder.finish(exception)
