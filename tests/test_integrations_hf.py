"""perco_viz.integrations.hf with the real transformers Trainer (CPU, a tiny random BERT, offline)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments  # noqa: E402

from perco_viz.integrations.hf import PercoVizTrainerCallback  # noqa: E402
from perco_viz.runs import RunDir, list_runs  # noqa: E402
from perco_viz.safe_io import OptionalDependencyError  # noqa: E402

N, LEN, BATCH = 24, 6, 8  # 3 steps an epoch


class Tokens(torch.utils.data.Dataset):
    def __init__(self, ids, labels):
        self.ids, self.labels = ids, labels

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(LEN, dtype=torch.long), "labels": self.labels[i]}


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    return torch.randint(1, 40, (N, LEN), generator=g), torch.arange(N) % 3


def _model(raise_at: int | None = None):
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=LEN, num_labels=3)
    model = BertForSequenceClassification(cfg)
    model.seen = []  # (grad enabled, hooks on bert.encoder) at every forward

    def spy(module, args, kwargs):
        model.seen.append((torch.is_grad_enabled(), len(module.bert.encoder._forward_hooks)))
        if raise_at is not None and len([s for s in model.seen if s[0]]) > raise_at:
            raise RuntimeError(f"boom after {raise_at} steps")

    model.register_forward_pre_hook(spy, with_kwargs=True)
    return model


def _train(tmp_path, model, cb, ids, y, epochs=2, logging_steps=1):
    args = TrainingArguments(output_dir=str(tmp_path / "out"), num_train_epochs=epochs, per_device_train_batch_size=BATCH,
                             logging_steps=logging_steps, report_to=[], save_strategy="no", use_cpu=True,
                             disable_tqdm=True, learning_rate=1e-3, seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=Tokens(ids, y), callbacks=[cb])
    with cb:
        trainer.train()
    return trainer


class BagTeacher(torch.nn.Module):
    """A frozen bag-of-embeddings teacher: (n, LEN) token ids -> (n, 5)."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(40, 5)

    def forward(self, input_ids, attention_mask=None):
        return self.embed(input_ids).mean(1)


def _probe(ids, y):
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": y}


@pytest.mark.parametrize("interval, steps", [({"every_n_steps": 2}, [0, 2, 4, 6]), ({"every_n_epochs": 1}, [0, 3, 6])])
def test_a_trainer_writes_a_snapshot_per_interval_with_its_own_steps_loss(tmp_path, data, interval, steps):
    ids, y = data
    model = _model()
    teacher = BagTeacher()
    cb = PercoVizTrainerCallback(_probe(ids, y), teacher=teacher, student_layer="bert.encoder", pooling="cls",
                                 root=tmp_path, name="hf", **interval)
    trainer = _train(tmp_path, model, cb, ids, y)
    run = RunDir(tmp_path / "hf")
    assert run.status()["state"] == "finished" and run.external()["writer"] == "hf"
    records = run.metrics()
    assert [r["step"] for r in records] == steps and run.snapshot_indices() == list(range(len(steps)))
    logged = {e["step"]: e for e in trainer.state.log_history if "loss" in e}
    for r in records[1:]:  # the Trainer's loss and learning rate of that very step
        assert r["train_loss"] == pytest.approx(logged[r["step"]]["loss"])
        assert r["lr"] == pytest.approx(logged[r["step"]]["learning_rate"])
    assert all(0 <= r["pc"] <= 1 and r["knn_acc"] is not None for r in records)
    assert run.load_snapshot(0).student.shape == (N, 16) and run.config().train.epochs == 2
    # measured without gradients through a hook that exists only then; training forwards see none
    assert {h for grad, h in model.seen if grad} == {0} and {h for grad, h in model.seen if not grad} == {1}
    assert len(model.bert.encoder._forward_hooks) == 0 and model.training


def test_only_the_main_process_writes(tmp_path, data, monkeypatch):
    ids, y = data
    monkeypatch.setattr(Trainer, "is_world_process_zero", lambda self: False)
    cb = PercoVizTrainerCallback(_probe(ids, y), teacher_features=torch.randn(N, 4), student_layer="bert.encoder",
                                 pooling="mean", every_n_steps=1, root=tmp_path / "runs")
    _train(tmp_path, _model(), cb, ids, y, epochs=1)
    assert not (tmp_path / "runs").exists() and cb.run is None


def test_a_trainer_that_raises_leaves_a_failed_run_with_the_message(tmp_path, data):
    ids, y = data
    cb = PercoVizTrainerCallback(_probe(ids, y), teacher_features=torch.randn(N, 4), student_layer="bert.encoder",
                                 pooling="cls", every_n_steps=1, root=tmp_path, name="boom")
    with pytest.raises(RuntimeError, match="boom after 4 steps"):
        _train(tmp_path, _model(raise_at=4), cb, ids, y)
    run = RunDir(tmp_path / "boom")
    status = run.status()
    assert status["state"] == "failed" and status["error"] == "RuntimeError: boom after 4 steps"
    assert [r["step"] for r in run.metrics()] == [0, 1, 2, 3, 4] and cb.run is None


def test_a_wrong_layer_name_stops_training_before_the_first_step(tmp_path, data):
    ids, y = data
    model = _model()
    cb = PercoVizTrainerCallback(_probe(ids, y), teacher_features=torch.randn(N, 4), student_layer="encoder",
                                 root=tmp_path)
    with pytest.raises(ValueError, match=r"'encoder' is not a module .*bert\.encoder"):
        _train(tmp_path, model, cb, ids, y)
    assert model.seen == [] and list_runs(tmp_path) == []


def test_without_transformers_the_message_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    monkeypatch.delitem(sys.modules, "perco_viz.integrations.hf")
    with pytest.raises(OptionalDependencyError, match=r"pip install perco_viz\[hf\]"):
        importlib.import_module("perco_viz.integrations.hf")


@pytest.mark.slow
def test_without_the_with_block_an_uncaught_failure_still_fails_the_run(tmp_path):
    """The fallback the docs name: the writer's exit hook marks the run failed with the message."""
    code = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_integrations_hf import Tokens, _model, _probe, N
        from transformers import Trainer, TrainingArguments
        from perco_viz.integrations.hf import PercoVizTrainerCallback
        ids, y = torch.randint(1, 40, (N, 6)), torch.arange(N) % 3
        cb = PercoVizTrainerCallback(_probe(ids, y), teacher_features=torch.randn(N, 4), student_layer="bert.encoder",
                                     pooling="cls", every_n_steps=1, root={str(tmp_path)!r}, name="crash")
        args = TrainingArguments(output_dir={str(tmp_path / "out")!r}, num_train_epochs=1, per_device_train_batch_size=8,
                                 report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True)
        Trainer(model=_model(raise_at=2), args=args, train_dataset=Tokens(ids, y), callbacks=[cb]).train()
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 1 and "boom after 2 steps" in proc.stderr
    status = RunDir(tmp_path / "crash").status()
    assert status["state"] == "failed" and status["error"] == "RuntimeError: boom after 2 steps"
