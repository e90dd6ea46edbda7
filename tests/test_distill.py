"""The engine on tiny data: a full run, resume == uninterrupted, cancel, NaN guard, DDP."""

from __future__ import annotations

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


@pytest.mark.slow
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
        defaults = losses.loss_defaults("coherence")  # every registered loss declares its options

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
    result = distill(tiny(**{"data.name": "npz", "data.path": str(tmp_path / "nope.npz")}), out=tmp_path)
    assert result.status == "failed" and "nope.npz" in result.error
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


@pytest.mark.cuda
def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(TrainingError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        for name in ("cuda", "cuda:0"):
            with pytest.raises(TrainingError, match=f"device '{name}' is not available on this machine; "
                                                    "available: cpu"):
                resolve_device(name)
    else:
        assert resolve_device("cuda:0").type == "cuda"
        with pytest.raises(TrainingError, match="'cuda:999' is not available"):
            resolve_device("cuda:999")


# ----------------------------------------------------------------------------- DDP (gloo, CPU)
def _ddp_worker(rank: int, world: int, store: str, x: torch.Tensor, t: torch.Tensor, out: dict) -> None:
    import torch.distributed as dist

    from perco_viz.distill import _Dist
    from perco_viz.losses.coherence import coherence_loss

    # a file store, not a TCP port chosen beforehand: another process of the suite may take the port
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(x.shape[1], 3))
    local = x.chunk(world)[rank]
    feats = gather_with_grad(model(local), _Dist(rank, world))
    loss = coherence_loss(feats, t)
    loss.backward()
    out[rank] = (loss.item(), model.module.weight.grad.clone())
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_processes_match_one_process_on_the_global_batch(tmp_path, monkeypatch):
    import sys
    import types

    import torch.multiprocessing as mp

    # Streamlit's AppTest leaves the last page script it ran as sys.modules["__main__"], and spawned
    # children run the parent's __main__ again: give them a main module with nothing to run.
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))

    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(40, 6, generator=g), torch.randn(40, 10, generator=g)
    torch.manual_seed(0)
    single = torch.nn.Linear(6, 3)
    from perco_viz.losses.coherence import coherence_loss

    loss = coherence_loss(single(x), t)
    loss.backward()
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "store"), x, t, out), nprocs=2, join=True)
    for rank in (0, 1):
        rank_loss, grad = out[rank]
        assert rank_loss == pytest.approx(loss.item(), rel=1e-6)
        torch.testing.assert_close(grad, single.weight.grad, rtol=1e-5, atol=1e-7)


def test_run_dir_roundtrip_of_real_run(tmp_path):
    result = distill(tiny(**{"train.epochs": 1}), out=tmp_path)
    run = RunDir(result.run_dir.path)
    probe = run.teacher_probe()
    assert probe["features"].shape[0] == 60 and probe["labels"].shape == (60,)


# --------------------------------------------------------------------------- nonsense arguments
def test_steps_per_epoch_never_counts_a_batch_too_small_to_rank():
    from perco_viz.distill import steps_per_epoch

    assert [steps_per_epoch(n, 64) for n in (64, 65, 66, 67, 128, 225)] == [1, 1, 1, 2, 2, 4]
    assert steps_per_epoch(3, 3) == 1


@pytest.mark.parametrize(("field", "value", "match"), [
    ("batch_size", 0, "train.batch_size must be between 3 and 65,536"),
    ("batch_size", 2, "train.batch_size must be between 3 and 65,536"),
    ("epochs", -1, "train.epochs must be between 1"),
    ("snapshot_every", -1, "train.snapshot_every must be between 0"),
    ("lr", float("nan"), "train.lr must be a finite number"),
])
def test_a_directly_built_bad_config_is_refused_before_anything_is_written(tmp_path, field, value, match):
    from perco_viz.config import ConfigError

    cfg = tiny()
    setattr(cfg.train, field, value)  # a dataclass built in code bypasses from_dict: distill checks again
    with pytest.raises(ConfigError, match=match):
        distill(cfg, out=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_absent_device_is_refused_before_anything_is_written(tmp_path):
    from perco_viz.config import ConfigError

    with pytest.raises(ConfigError, match="device 'cuda' is not available on this machine; available: cpu"):
        distill(tiny(**{"train.device": "cuda"}), out=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_a_batch_larger_than_the_training_set_fails_with_the_largest_that_works(tmp_path):
    result = distill(tiny(**{"train.batch_size": 4096}), out=tmp_path)  # blobs 300: 225 for training
    assert result.status == "failed"
    assert result.error == "train.batch_size 4,096 is larger than the training set (225 points); use at most 225"
    assert result.run_dir.status()["state"] == "failed"
    assert result.run_dir.metrics() == []  # nothing was trained or measured


def test_the_smallest_batch_trains_every_epoch(tmp_path):
    steps = []
    cfg = tiny(**{"train.batch_size": 3, "train.epochs": 1, "data.n_samples": 40, "data.probe_size": 10})
    result = distill(cfg, out=None, callbacks=Callbacks(on_progress=lambda p: steps.append(p["step"])))
    assert result.status == "finished", result.error
    assert max(steps) == 10 and result.final == {}  # 30 training points / 3


def test_too_few_held_out_points_for_the_probe_set_is_refused(tmp_path):
    cfg = tiny(**{"data.n_samples": 10, "data.test_fraction": 0.1, "train.batch_size": 3})
    result = distill(cfg, out=None)
    assert result.status == "failed" and "probe set needs at least 3" in result.error
    assert "data.test_fraction" in result.error


def test_eta_counts_only_the_steps_of_this_process():
    from perco_viz.distill import eta_seconds

    assert eta_seconds(100, 60, 50, 5.0) == 20.0  # 10 steps in 5 s since the resume, 40 left
    assert eta_seconds(100, 10, 0, 5.0) == 45.0  # a fresh run: 2 steps a second, 90 left
    assert eta_seconds(100, 50, 50, 3.0) is None  # no step yet in this process: no pace to go by
    assert eta_seconds(100, 100, 50, 9.0) == 0.0


def test_eta_after_resume_ignores_the_time_before_it(tmp_path, monkeypatch):
    """Issue 12: after Resume the ETA said ~1745 s for a run that ended in 37 s — it divided the
    run's whole wall time (before the resume too) by the steps done since the resume."""
    from perco_viz.distill import Distiller

    first = distill(tiny(**{"train.epochs": 1}), out=tmp_path, name="r")
    assert first.status == "finished", first.error
    restore = Distiller.restore

    def restore_after_a_long_first_part(self):
        restore(self)
        self.wall_offset = 1e6  # the first part of the run took "a million seconds"

    monkeypatch.setattr(Distiller, "restore", restore_after_a_long_first_part)
    etas = []
    result = resume(first.run_dir, epochs=4, callbacks=Callbacks(
        on_progress=lambda p: etas.append(p["eta_s"]) if p["phase"] == "train" else None))
    assert result.status == "finished", result.error
    known = [e for e in etas if e is not None]
    assert known, etas
    assert max(known) < 1e4  # the pace of this process (ms per step), not a million seconds spread over its steps
    assert result.final["wall_s"] >= 1e6  # the run's own wall time still counts the first part


def test_effective_settings_turn_amp_off_off_cuda():
    """Issue 12: Setup showed ``amp: true`` on a CPU; amp (bf16 autocast) works on CUDA only."""
    from perco_viz.distill import amp_enabled, effective_settings

    on_cpu = tiny(**{"train.amp": True, "train.device": "cpu"})
    assert not amp_enabled(on_cpu, torch.device("cpu"))
    assert amp_enabled(on_cpu, torch.device("cuda"))
    used = effective_settings(on_cpu, 225, 75)
    assert used["train.amp"][0] is False and "CUDA only" in used["train.amp"][1]
    assert "train.amp" not in effective_settings(tiny(**{"train.amp": False}), 225, 75)
