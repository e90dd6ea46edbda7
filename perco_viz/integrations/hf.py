"""A Hugging Face ``TrainerCallback`` that streams a training into perco_viz (``pip install perco_viz[hf]``).

>>> from perco_viz.integrations.hf import PercoVizTrainerCallback         # doctest: +SKIP
>>> cb = PercoVizTrainerCallback(probe, teacher=teacher, student_layer="bert.encoder",
...                              pooling="cls", every_n_steps=50, root="runs")  # doctest: +SKIP
>>> trainer = Trainer(model=student, args=args, train_dataset=ds, callbacks=[cb])  # doctest: +SKIP
>>> with cb:                                     # a raising train() leaves a failed run  # doctest: +SKIP
...     trainer.train()

``on_train_begin`` checks ``student_layer`` (a module name inside the model the Trainer trains;
a wrong name is a ``ValueError`` before the first step), takes the probe set, computes the
teacher's probe features once and opens the run (only where ``state.is_world_process_zero``).
A snapshot is logged before the first step, then every ``every_n_steps`` steps or every
``every_n_epochs`` epochs, and at the end if the last step was not logged: the model is called
on the probe inputs (``model(x)``, or ``model(**x)`` for dict inputs such as ``input_ids`` and
``attention_mask``), in eval mode, without gradients, with a hook removed right after.

The training loss: ``on_step_end`` only marks a snapshot due; it is measured at the next
``on_log`` that carries the Trainer's ``loss`` for that step (so with an interval that is a
multiple of ``logging_steps`` every snapshot has the loss of its own step), else at the next step,
epoch end or train end — the model has not changed in between — with the latest ``loss`` of
``state.log_history``. ``lr`` is the ``learning_rate`` logged at that step, else the
optimizer's first parameter group's.

Failures: a ``TrainerCallback`` is never told that ``train()`` raised. Use the callback as a
context manager around ``trainer.train()`` (above): leaving the block by an exception closes
the run failed with the message (cancelled for Ctrl+C), and the exception goes on. Without the
``with``, the writer still marks the run failed when the exception ends the program (its
uncaught-exception hook), and a killed process leaves a run the app shows as stale.
"""

from __future__ import annotations

import math
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

transformers = require("transformers", install="perco_viz[hf]",
                       purpose="the Hugging Face integration (perco_viz.integrations.hf)")


class PercoVizTrainerCallback(transformers.TrainerCallback):
    """Log the student's probe features to a perco_viz run while a ``transformers.Trainer`` trains.

    Args:
        probe: the probe set: a ``DataLoader`` or tensors, e.g. a dict with ``input_ids`` /
            ``attention_mask`` / ``labels`` or ``pixel_values`` (formats:
            :mod:`perco_viz.integrations.probe`); at most ``max_rows`` rows are kept.
        student_layer: name of the student's feature module inside the trained model
            (:func:`perco_viz.models.list_modules` lists them).
        teacher: a frozen teacher module, evaluated once on the probe set (its output, or
            module ``teacher_layer``'s). Or ``teacher_features``: its precomputed (n_probe, d_t)
            probe features.
        pooling: how the student's module output becomes one row per input: ``flatten``,
            ``cls`` or ``mean`` (:func:`perco_viz.models.pool_tokens`); ``teacher_pooling``
            likewise for the teacher's (default ``flatten``: its output as it is).
        every_n_steps, every_n_epochs: the interval (one of them; neither: every epoch).
        log_first: also log a snapshot before the first step.
        labels, max_rows, batch_size: the probe's class labels, rows kept, rows per forward pass.
        root, name, config, title, metric, teacher_metric, class_names: the run
            (:func:`perco_viz.open_run`).

    Attributes:
        run: the open :class:`perco_viz.writer.Run` while training on the main process, else ``None``.
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
        self.every_n_steps, self.every_n_epochs = check_interval(every_n_steps, every_n_epochs)
        self.log_first = bool(log_first)
        self.recorder = ProbeRecorder(
            probe, student_layer=student_layer, teacher=teacher, teacher_features=teacher_features,
            teacher_layer=teacher_layer, pooling=pooling, teacher_pooling=teacher_pooling, labels=labels,
            max_rows=max_rows, batch_size=batch_size, root=root, name=name, config=config, title=title,
            metric=metric, teacher_metric=teacher_metric, class_names=class_names, writer="hf")
        self._due: tuple[int, float] | None = None  # (step, epoch) of a snapshot not yet measured

    @property
    def path(self) -> Path | None:
        """The directory of the last run this callback wrote (kept after it closes), else ``None``."""
        return self.recorder.path

    @property
    def run(self):
        """The open run (main process, while training), else ``None``."""
        return self.recorder.run

    # ------------------------------------------------------------------ failures

    def __enter__(self) -> PercoVizTrainerCallback:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        """Leaving by an exception: the run (if still open) is failed with its message."""
        if exc is not None:
            self._due = None
            self.recorder.finish(exc)
        return False

    # ------------------------------------------------------------------ snapshots

    @staticmethod
    def _last_log(state: Any, step: int) -> dict:
        """The Trainer's latest log of the training loss at or before ``step`` ({} if none)."""
        for entry in reversed(state.log_history):
            if "loss" in entry and entry.get("step", 0) <= step:
                return entry
        return {}

    @staticmethod
    def _lr(optimizer: Any) -> float | None:
        if optimizer is not None and getattr(optimizer, "param_groups", None):
            return finite_number(optimizer.param_groups[0].get("lr"))
        return None

    def _measure(self, state: Any, model: nn.Module, optimizer: Any, logs: dict | None = None) -> None:
        """Log the due snapshot (if any); ``logs``: the Trainer's log of that step."""
        if self._due is None or model is None:
            return
        (step, epoch), self._due = self._due, None
        logs = logs or self._last_log(state, step)
        loss = finite_number(logs.get("loss"))
        same_step = logs.get("step", step) == step and "learning_rate" in logs
        lr = finite_number(logs["learning_rate"]) if same_step else self._lr(optimizer)
        self.recorder.record(model, epoch=epoch, step=step, train_loss=loss, lr=lr)

    def _mark(self, state: Any) -> None:
        if self.recorder.active and self.recorder.last_step != state.global_step:
            self._due = (state.global_step, float(state.epoch or 0.0))

    # ------------------------------------------------------------------ Trainer events

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        """Check the layer, open the run (main process), log the first snapshot."""
        if model is None:
            raise ValueError("the Trainer gave the callback no model; PercoVizTrainerCallback needs the trained model")
        epochs = math.ceil(state.num_train_epochs) if (state.num_train_epochs or 0) > 0 else None
        self._due = None
        self.recorder.start(model, epochs=epochs, write=state.is_world_process_zero)
        if self.log_first:
            self._mark(state)
            self._measure(state, model, optimizer)

    def on_step_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        """A snapshot still due from the last step is measured before this step changes the model."""
        self._measure(state, model, optimizer)

    def on_step_end(self, args, state, control, **kwargs):
        """Every ``every_n_steps`` steps a snapshot is due (measured once the loss is logged)."""
        if self.every_n_steps and state.global_step % self.every_n_steps == 0:
            self._mark(state)

    def on_log(self, args, state, control, logs=None, model=None, optimizer=None, **kwargs):
        """The Trainer logged the training loss of the due step: measure the snapshot with it."""
        if self._due is not None and logs and "loss" in logs and state.global_step == self._due[0]:
            self._measure(state, model, optimizer, logs)

    def on_epoch_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        """Every ``every_n_epochs`` epochs a snapshot is due; one due from a step is measured."""
        self._measure(state, model, optimizer)
        epoch = round(state.epoch or 0.0)
        if self.every_n_epochs and epoch > 0 and epoch % self.every_n_epochs == 0:
            self._mark(state)

    def on_epoch_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        """A snapshot still due from the last epoch is measured before this epoch starts."""
        self._measure(state, model, optimizer)

    def on_train_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        """The due snapshot, a last one if the last step was not logged; the run is finished."""
        try:
            self._measure(state, model, optimizer)
            self._mark(state)
            self._measure(state, model, optimizer)
        except BaseException as exc:
            self.recorder.finish(exc)
            raise
        self.recorder.finish()
