"""perco_viz.integrations.lightning with the real Lightning (CPU, a tiny module, a few steps)."""

from __future__ import annotations

import importlib
import sys

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from perco_viz.integrations.lightning import PercoVizCallback
from perco_viz.runs import RunDir, list_runs
from perco_viz.safe_io import OptionalDependencyError

N, BATCH = 32, 8  # 4 steps an epoch


class Distill(pl.LightningModule):
    """A student MLP pulled toward a frozen teacher's features; ``raise_at``: fail at that step."""

    def __init__(self, raise_at: int | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.teacher = nn.Sequential(nn.Linear(6, 10), nn.Tanh()).requires_grad_(False)
        self.student = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 10))
        self.raise_at = raise_at
        self.hooks_seen: list[int] = []  # hooks on the student's layer during training steps
        self.teacher_modes: list[bool] = []  # the teacher's train flag during training steps

    def on_train_epoch_start(self):
        self.teacher.eval()  # frozen: a measurement in between must leave it so

    def forward(self, x):
        return self.student(x)

    def training_step(self, batch, batch_idx):
        if self.raise_at is not None and self.global_step == self.raise_at:
            raise RuntimeError(f"boom at step {self.global_step}")
        self.hooks_seen.append(len(self.student[1]._forward_hooks))
        self.teacher_modes.append(self.teacher.training)
        x, _ = batch
        loss = (self(x) - self.teacher(x)).pow(2).mean()
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.student.parameters(), lr=0.05)


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(1)
    X, y = torch.randn(N, 6, generator=g), torch.arange(N) % 3
    return X, y


def _fit(module, cb, X, y, epochs=2):
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", enable_progress_bar=False, logger=False,
                         enable_checkpointing=False, enable_model_summary=False, callbacks=[cb])
    trainer.fit(module, DataLoader(TensorDataset(X, y), batch_size=BATCH))
    return trainer


@pytest.mark.parametrize("interval, epochs, steps", [
    ({"every_n_steps": 3}, 2, [0, 3, 6, 8]),  # 8 steps: before training, every 3rd, the last
    ({"every_n_epochs": 1}, 2, [0, 4, 8]),
    ({"every_n_epochs": 2}, 3, [0, 8, 12]),  # epoch 3 is not on the interval: logged at fit end
])
def test_a_fit_writes_a_snapshot_per_interval(tmp_path, data, interval, epochs, steps):
    X, y = data
    module = Distill()
    cb = PercoVizCallback(DataLoader(TensorDataset(X, y), batch_size=10), teacher=module.teacher,
                          student_layer="student.1", root=tmp_path, name="pl", config={"lr": 0.05}, **interval)
    _fit(module, cb, X, y, epochs)
    run = RunDir(tmp_path / "pl")
    assert run.status()["state"] == "finished" and cb.run is None
    assert run.external()["writer"] == "lightning" and run.external()["config"] == {"lr": 0.05}
    records = run.metrics()
    assert [r["step"] for r in records] == steps and run.snapshot_indices() == list(range(len(steps)))
    assert all(0 <= r["pc"] <= 1 and r["knn_acc"] is not None and r["lr"] == 0.05 for r in records)
    assert "train_loss" not in records[0] and all(r["train_loss"] > 0 for r in records[1:])
    assert records[-1]["epoch"] == epochs and run.config().train.epochs == epochs
    assert run.config().data.probe_size == N and run.load_snapshot(0).student.shape == (N, 8)
    # the hook lives only while the probe set is measured
    assert module.hooks_seen and set(module.hooks_seen) == {0}
    assert len(module.student[1]._forward_hooks) == 0
    assert set(module.teacher_modes) == {False} and module.student.training  # every module's mode kept


def test_only_global_rank_zero_writes(tmp_path, data, monkeypatch):
    X, y = data
    monkeypatch.setattr(pl.Trainer, "is_global_zero", property(lambda self: False))
    module = Distill()
    cb = PercoVizCallback((X, y), teacher=module.teacher, student_layer="student.1", every_n_steps=1,
                          root=tmp_path / "runs")
    _fit(module, cb, X, y, epochs=1)
    assert not (tmp_path / "runs").exists() and cb.run is None and cb.recorder.probe is None


def test_a_fit_that_raises_leaves_a_failed_run_with_the_message(tmp_path, data):
    X, y = data
    module = Distill(raise_at=5)
    cb = PercoVizCallback((X, y), teacher=module.teacher, student_layer="student.1", every_n_steps=2,
                          root=tmp_path, name="boom")
    with pytest.raises(RuntimeError, match="boom at step 5"):
        _fit(module, cb, X, y)
    run = RunDir(tmp_path / "boom")
    status = run.status()
    assert status["state"] == "failed" and status["error"] == "RuntimeError: boom at step 5"
    assert [r["step"] for r in run.metrics()] == [0, 2, 4]  # what was logged is kept


def test_a_wrong_layer_name_stops_the_fit_before_training(tmp_path, data):
    X, y = data
    module = Distill()
    cb = PercoVizCallback((X, y), teacher=module.teacher, student_layer="student.embed", root=tmp_path)
    with pytest.raises(ValueError, match=r"'student.embed' is not a module .*student\.1"):
        _fit(module, cb, X, y)
    assert module.hooks_seen == [] and list_runs(tmp_path) == []


def test_precomputed_teacher_features_and_a_step_interval(tmp_path, data):
    X, y = data
    module = Distill()
    t = module.teacher(X).detach().numpy()
    cb = PercoVizCallback(X, teacher_features=t, labels=y, student_layer="student", every_n_steps=4,
                          log_first=False, root=tmp_path, name="given")
    _fit(module, cb, X, y)
    run = RunDir(tmp_path / "given")
    assert [r["step"] for r in run.metrics()] == [4, 8]
    assert run.teacher_probe()["features"].shape == (N, 10)


def test_without_lightning_the_message_names_the_extra(monkeypatch):
    for name in ("lightning.pytorch", "pytorch_lightning"):
        monkeypatch.setitem(sys.modules, name, None)  # import of these now fails
    monkeypatch.delitem(sys.modules, "perco_viz.integrations.lightning")
    with pytest.raises(OptionalDependencyError, match=r"pip install perco_viz\[lightning\]"):
        importlib.import_module("perco_viz.integrations.lightning")
