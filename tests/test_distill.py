"""The engine on tiny data: a full run, resume == uninterrupted, cancel, NaN guard, DDP."""

from __future__ import annotations

import os
import socket
import threading

import numpy as np
import pytest
import torch

from perco_viz.config import RunConfig
from perco_viz.distill import (
    Callbacks,
    TrainingError,
    distill,
    gather_with_grad,
    resolve_device,
    resume,
)
from perco_viz.runs import RunDir


def tiny(**overrides) -> RunConfig:
    base = {"data.name": "blobs", "data.n_samples": 300, "data.probe_size": 60, "teacher.kind": "identity",
            "student.dim": 2, "student.hidden": 32, "train.epochs": 3, "train.batch_size": 64,
            "train.device": "cpu", "train.lr": 1e-2}
    return RunConfig().override(**{**base, **overrides})


def test_full_run_writes_everything_and_learns(tmp_path):
    seen = []
    result = distill(tiny(), out=tmp_path, name="t", callbacks=Callbacks(on_snapshot=seen.append))
    assert result.status == "finished", result.error
    run = result.run_dir
    for name in ("config.json", "metrics.jsonl", "teacher_probe.npz", "student.safetensors", "status.json",
                 "checkpoint.pt"):
        assert (run.path / name).is_file(), name
    records = run.metrics()
    assert [r["epoch"] for r in records] == [0.0, 1.0, 2.0, 3.0]
    for key in ("epoch", "step", "train_loss", "pc", "knn_acc", "wall_s"):
        assert key in records[-1]
    assert run.snapshot_indices() == [0, 1, 2, 3] and len(seen) == 4
    assert seen[-1].student.shape == (60, 2) and seen[-1].coherence.shape == (60,)
    assert records[-1]["pc"] > records[0]["pc"] + 0.05
    assert run.status()["state"] == "finished"
    assert run.config() == tiny()


def test_snapshot_every_k_steps(tmp_path):
    result = distill(tiny(**{"train.epochs": 1, "train.snapshot_every": 1}), out=tmp_path)
    epochs = [r["epoch"] for r in result.run_dir.metrics()]
    assert len(epochs) == 5 and epochs == sorted(epochs) and 0 < epochs[1] < 1


def test_resume_equals_uninterrupted(tmp_path):
    straight = distill(tiny(**{"train.epochs": 4}), out=tmp_path, name="straight")
    stop = threading.Event()

    def stop_mid_third_epoch(p):
        if p["phase"] == "train" and p["step"] == 12:  # 4 steps per epoch
            stop.set()

    cut = distill(tiny(**{"train.epochs": 4}), out=tmp_path, name="cut",
                  callbacks=Callbacks(on_progress=stop_mid_third_epoch), cancel=stop)
    assert cut.status == "cancelled"
    resumed = resume(cut.run_dir)
    assert resumed.status == "finished", resumed.error
    a, b = straight.run_dir.metrics(), resumed.run_dir.metrics()
    assert [r["step"] for r in a] == [r["step"] for r in b]
    np.testing.assert_allclose([r["pc"] for r in a], [r["pc"] for r in b], atol=1e-6)
    np.testing.assert_allclose(straight.run_dir.load_snapshot(4).student, resumed.run_dir.load_snapshot(4).student,
                               atol=1e-5)


def test_cancel_stops_within_a_batch(tmp_path):
    stop = threading.Event()
    steps = []

    def progress(p):
        if p["phase"] == "train":
            steps.append(p["step"])
            if p["step"] == 3:
                stop.set()

    result = distill(tiny(**{"train.epochs": 50}), out=tmp_path, callbacks=Callbacks(on_progress=progress), cancel=stop)
    assert result.status == "cancelled" and max(steps) == 3
    assert result.run_dir.status()["state"] == "cancelled"
    assert result.run_dir.student_path.is_file()


def test_nan_loss_stops_with_clear_error(tmp_path, monkeypatch):
    from perco_viz import losses

    class NanLoss(torch.nn.Module):
        def __init__(self, *a, **k):
            super().__init__()

        def forward(self, s, t):
            return s.sum() * float("nan")

    monkeypatch.setitem(losses.LOSSES, "coherence", NanLoss)
    result = distill(tiny(), out=tmp_path)
    assert result.status == "failed" and "loss became nan" in result.error
    status = result.run_dir.status()
    assert status["state"] == "failed" and "learning rate" in status["error"]
    assert result.run_dir.snapshot_indices() == [0]  # the completed snapshot is kept


def test_setup_errors_are_recorded(tmp_path):
    result = distill(tiny(**{"data.name": "nope"}), out=tmp_path)
    assert result.status == "failed" and "nope" in result.error
    assert result.run_dir.status()["state"] == "failed"


@pytest.mark.parametrize("loss", ["fitnet", "rkd", "pkt", "sp", "cc", "cka"])
def test_every_baseline_trains(tmp_path, loss):
    result = distill(tiny(**{"loss.name": loss, "train.epochs": 1}), out=None)
    assert result.status == "finished", result.error


def test_cross_entropy_and_kd_terms(tmp_path):
    result = distill(tiny(**{"loss.ce_weight": 0.5, "train.epochs": 1}), out=tmp_path)
    assert result.status == "finished", result.error
    assert "loss_ce" in result.run_dir.metrics()[-1]
    bad = distill(tiny(**{"loss.kd_weight": 1.0, "train.epochs": 1}), out=None)
    assert bad.status == "failed" and "classification head" in bad.error


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(TrainingError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(TrainingError, match="no CUDA"):
            resolve_device("cuda")


# ----------------------------------------------------------------------------- DDP (gloo, CPU)
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, x: torch.Tensor, t: torch.Tensor, out: dict) -> None:
    import torch.distributed as dist

    from perco_viz.coherence import coherence_loss
    from perco_viz.distill import _Dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(x.shape[1], 3))
    local = x.chunk(world)[rank]
    feats = gather_with_grad(model(local), _Dist(rank, world))
    loss = coherence_loss(feats, t)
    loss.backward()
    out[rank] = (loss.item(), model.module.weight.grad.clone())
    dist.destroy_process_group()


def test_ddp_two_processes_match_one_process_on_the_global_batch():
    import torch.multiprocessing as mp

    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(40, 6, generator=g), torch.randn(40, 10, generator=g)
    torch.manual_seed(0)
    single = torch.nn.Linear(6, 3)
    from perco_viz.coherence import coherence_loss

    loss = coherence_loss(single(x), t)
    loss.backward()
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_ddp_worker, args=(2, _free_port(), x, t, out), nprocs=2, join=True)
    for rank in (0, 1):
        rank_loss, grad = out[rank]
        assert rank_loss == pytest.approx(loss.item(), rel=1e-6)
        torch.testing.assert_close(grad, single.weight.grad, rtol=1e-5, atol=1e-7)


def test_run_dir_roundtrip_of_real_run(tmp_path):
    result = distill(tiny(**{"train.epochs": 1}), out=tmp_path)
    run = RunDir(result.run_dir.path)
    probe = run.teacher_probe()
    assert probe["features"].shape[0] == 60 and probe["labels"].shape == (60,)
