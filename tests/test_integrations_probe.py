"""perco_viz.integrations.probe: the probe set, the teacher's features, the student's features at a
named module with a hook that does not outlive the measurement."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from perco_viz.integrations.probe import (
    ProbeRecorder,
    check_interval,
    make_probe,
    probe_features,
    tap_layer,
    teacher_probe_features,
)
from perco_viz.models import FeatureModel


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def test_a_dataloader_of_tuples_is_capped_and_keeps_its_labels():
    X, y = torch.randn(50, 6), torch.arange(50) % 4
    probe = make_probe(DataLoader(TensorDataset(X, y), batch_size=16), max_rows=20)
    assert probe.n == 20 and probe.capped
    torch.testing.assert_close(probe.inputs, X[:20])
    np.testing.assert_array_equal(probe.labels, (np.arange(20) % 4))
    whole = make_probe(DataLoader(TensorDataset(X, y), batch_size=16))  # default cap 1,000
    assert whole.n == 50 and not whole.capped


def test_dict_batches_and_bare_tensors_are_accepted():
    ids, mask = torch.randint(0, 9, (12, 5)), torch.ones(12, 5, dtype=torch.long)
    rows = [{"input_ids": ids[i], "attention_mask": mask[i], "labels": i % 3} for i in range(12)]
    probe = make_probe(DataLoader(rows, batch_size=5))
    assert set(probe.inputs) == {"input_ids", "attention_mask"} and probe.n == 12
    np.testing.assert_array_equal(probe.labels, np.arange(12) % 3)
    bare = make_probe(np.zeros((7, 2), np.float32))
    assert bare.n == 7 and bare.labels is None


@pytest.mark.parametrize("probe, message", [
    ([torch.zeros(4, 2), torch.zeros(4), torch.zeros(4)], "3 items"),
    ({"text": torch.zeros(4, 2)}, "pixel_values"),
    ({"input_ids": torch.zeros(4, 2), "text": ["a"] * 4}, "must be a tensor"),
    ({"input_ids": torch.zeros(4, 2), "attention_mask": torch.zeros(3, 2)}, "rows"),
    ("some text", "cannot be a str"),
    (torch.zeros(2, 3), "at least 3"),
    (DataLoader([torch.zeros(3)] * 2 + [torch.zeros(4)] * 2, batch_size=2), "different shapes"),
])
def test_other_probe_formats_are_refused_clearly(probe, message):
    with pytest.raises(ValueError, match=message):
        make_probe(probe)


def test_labels_that_are_not_classes_are_left_out_with_a_warning_or_refused_when_given():
    X = torch.randn(10, 3)
    with pytest.warns(UserWarning, match="without labels"):
        assert make_probe((X, torch.randn(10))).labels is None
    with pytest.raises(ValueError, match="integer class"):
        make_probe(X, labels=np.linspace(0, 1, 10))
    with pytest.raises(ValueError, match="max_rows"):
        make_probe(X, max_rows=2)


def test_tap_layer_removes_its_hook_even_when_the_forward_raises():
    net = _net()
    with pytest.raises(RuntimeError):
        with tap_layer(net, "1"):
            assert len(net[1]._forward_hooks) == 1
            net(torch.zeros(2, 7))  # wrong width
    assert len(net[1]._forward_hooks) == 0
    with pytest.raises(ValueError, match="not a module.*valid names include"):
        with tap_layer(net, "embed"):
            pass


def test_probe_features_restore_every_module_mode_and_read_the_layer():
    net = _net()
    net.train()
    net[0].eval()  # e.g. a frozen teacher inside the trained module stays in eval mode
    probe = make_probe(torch.randn(9, 6))
    feats = probe_features(net, probe, "1", batch_size=4)
    torch.testing.assert_close(feats, torch.relu(net[0](probe.inputs)).detach())
    assert feats.dtype == torch.float32 and not feats.requires_grad
    assert [m.training for m in net] == [False, True, True] and net.training
    assert all(len(m._forward_hooks) == 0 for m in net.modules())


def test_tokens_are_pooled_as_asked():
    emb = nn.Sequential(nn.Embedding(10, 4))
    probe = make_probe({"input_ids": torch.randint(0, 10, (5, 3))})

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = emb

        def forward(self, input_ids):
            return self.inner(input_ids)

    model = Wrap()
    tokens = emb(probe.inputs["input_ids"]).detach()
    torch.testing.assert_close(probe_features(model, probe, "inner", pooling="cls"), tokens[:, 0])
    torch.testing.assert_close(probe_features(model, probe, "inner", pooling="mean"), tokens.mean(1))
    assert probe_features(model, probe, "inner").shape == (5, 12)


class _Skips(nn.Module):
    def __init__(self):
        super().__init__()
        self.used, self.unused = nn.Linear(3, 2), nn.Linear(3, 2)

    def forward(self, x):
        return self.used(x)


def test_a_layer_the_forward_does_not_run_is_named():
    with pytest.raises(ValueError, match="'unused' was not run by _Skips's forward"):
        probe_features(_Skips(), make_probe(torch.zeros(4, 3)), "unused")


def test_teacher_features_come_from_a_module_a_featuremodel_or_are_given():
    probe = make_probe(torch.randn(8, 6))
    net = _net()
    out = teacher_probe_features(probe, teacher=net)
    torch.testing.assert_close(out, net(probe.inputs).detach())
    fm = FeatureModel(_net(), layer="1")
    torch.testing.assert_close(teacher_probe_features(probe, teacher=fm), fm(probe.inputs).detach())
    given = np.ones((8, 2), np.float32)
    assert teacher_probe_features(probe, teacher_features=given).shape == (8, 2)
    with pytest.raises(ValueError, match="7 rows but the probe set has 8"):
        teacher_probe_features(probe, teacher_features=given[:7])
    with pytest.raises(ValueError, match="not both"):
        teacher_probe_features(probe, teacher=net, teacher_features=given)


def test_a_capped_probe_takes_the_first_teacher_rows_and_a_shuffled_one_is_refused():
    X = torch.randn(30, 6)
    t = torch.randn(30, 4)
    probe = make_probe(X, max_rows=10)
    torch.testing.assert_close(teacher_probe_features(probe, teacher_features=t), t[:10])
    with pytest.raises(ValueError, match="shuffle"):
        ProbeRecorder(DataLoader(TensorDataset(X), shuffle=True), student_layer="0", teacher_features=t)


@pytest.mark.parametrize("steps, epochs, message", [
    (1, 1, "not both"), (0, None, "every_n_steps"), (None, 1.5, "every_n_epochs")])
def test_bad_intervals_are_refused(steps, epochs, message):
    with pytest.raises(ValueError, match=message):
        check_interval(steps, epochs)
    assert check_interval(None, None) == (None, 1)


def test_the_recorder_checks_its_arguments_before_anything_runs(tmp_path):
    X = torch.randn(10, 6)
    with pytest.raises(ValueError, match="pooling"):
        ProbeRecorder(X, student_layer="0", teacher=_net(), pooling="max")
    with pytest.raises(ValueError, match="student_layer"):
        ProbeRecorder(X, student_layer="", teacher=_net())
    rec = ProbeRecorder(X, student_layer="nope", teacher=_net(), root=tmp_path)
    with pytest.raises(ValueError, match="'nope' is not a module"):
        rec.start(_net())
    assert list(tmp_path.iterdir()) == []


def test_a_half_precision_student_gets_inputs_in_its_dtype_and_gives_float32():
    net = _net().to(torch.bfloat16)
    feats = probe_features(net, make_probe(torch.randn(6, 6)), "2")
    assert feats.dtype == torch.float32 and feats.shape == (6, 3)


def test_the_writers_own_rank_check_leaves_the_recorder_inactive(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    rec = ProbeRecorder(torch.randn(10, 6), student_layer="1", teacher=_net(), root=tmp_path / "runs")
    rec.start(_net())
    rec.record(_net(), epoch=0, step=0)
    assert not rec.active and rec.path is None and not (tmp_path / "runs").exists()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_student_on_the_gpu_is_measured_there_and_logged(tmp_path):
    from perco_viz.runs import RunDir

    net = _net().cuda()
    X = torch.randn(20, 6)
    feats = probe_features(net, make_probe(X), "1")
    assert feats.is_cuda
    torch.testing.assert_close(feats.cpu(), torch.relu(net[0](X.cuda())).detach().cpu())
    rec = ProbeRecorder(X, student_layer="1", teacher=_net(), root=tmp_path, name="gpu")
    rec.start(net)
    rec.record(net, epoch=1, step=1, train_loss=0.5)
    rec.finish()
    assert RunDir(tmp_path / "gpu").load_snapshot(0).student.shape == (20, 5)


@pytest.mark.parametrize("error, state, message", [
    (None, "finished", None),
    (RuntimeError("out of memory"), "failed", "RuntimeError: out of memory"),
    (KeyboardInterrupt(), "cancelled", "stopped by the user (Ctrl-C)"),
])
def test_the_recorder_writes_snapshots_and_ends_the_run_as_the_training_did(tmp_path, error, state, message):
    from perco_viz.runs import RunDir

    net = _net()
    rec = ProbeRecorder(torch.randn(12, 6), labels=torch.arange(12) % 2, student_layer="1", teacher=_net(),
                        root=tmp_path, name="r")
    rec.start(net, epochs=3)
    for step in (0, 5):
        rec.record(net, epoch=step / 5, step=step, train_loss=None if step == 0 else 0.5, lr=0.1)
    rec.finish(error)
    run = RunDir(tmp_path / "r")
    assert (run.status()["state"], run.status()["error"]) == (state, message)
    assert [(m["step"], m.get("train_loss")) for m in run.metrics()] == [(0, None), (5, 0.5)]
    assert rec.path == run.path and not rec.active and run.config().train.epochs == 3


def test_a_second_start_closes_a_run_left_open_as_failed(tmp_path):
    from perco_viz.runs import RunDir

    rec = ProbeRecorder(torch.randn(10, 6), student_layer="1", teacher=_net(), root=tmp_path, name="again")
    rec.start(_net())
    first = rec.path
    rec.start(_net())
    assert rec.path != first and rec.active
    rec.finish()
    assert "a new training started" in RunDir(first).status()["error"]
    assert RunDir(rec.path).status()["state"] == "finished"
