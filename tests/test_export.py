"""Results out (issue 14, item 4): a snapshot in TensorBoard's Embedding Projector format, read
back by TensorBoard's own parser and served by its own projector plugin; the metrics as CSV and
Parquet equal to ``RunDir.metrics()``; ``perco-viz export`` (exit status, one error line, no
overwriting of a folder that is not an export)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perco_viz import export
from perco_viz.cli import main
from perco_viz.config import RunConfig
from perco_viz.runs import RunDir, Snapshot

N, D_S, D_T = 37, 5, 7
NAMES = ["cat", "dog", "owl\twith a tab"]


def _make_run(root: Path, name: str = "hand", *, labels: bool = True, snapshots: int = 2) -> RunDir:
    """A small run in the engine's format, written through RunDir (no training): N probe points."""
    cfg = RunConfig().override(**{"data.probe_size": N, "student.dim": D_S})
    run = RunDir.create(root, cfg, name=name)
    rng = np.random.default_rng(1)
    run.save_teacher_probe(rng.normal(size=(N, D_T)).astype(np.float32),
                           rng.integers(0, 3, N) if labels else None, np.arange(N) * 3)
    for i in range(snapshots):
        student = (rng.normal(size=(N, D_S)) * 10 ** rng.uniform(-6, 6, size=(N, D_S))).astype(np.float32)
        run.save_snapshot(Snapshot(i, i * 0.5, i * 7, student, rng.random(N),
                                   {"epoch": i * 0.5, "step": i * 7, "pc": 0.5 + i / 10,
                                    "train_loss": None if i == 0 else 1.25, "note": "warm-up" if i == 0 else None}))
    return run


@pytest.fixture
def run(tmp_path) -> RunDir:
    return _make_run(tmp_path / "runs")


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _parse_config(folder: Path):
    from google.protobuf import text_format
    from tensorboard.plugins.projector import projector_config_pb2

    config = projector_config_pb2.ProjectorConfig()
    text_format.Parse((folder / "projector_config.pbtxt").read_text(encoding="utf-8"), config)
    return config


def _check_projector(folder: Path, run: RunDir, index: int, class_names=None) -> pd.DataFrame:
    """The folder against TensorBoard's parser and the run; returns metadata.tsv as a table."""
    config = _parse_config(folder)
    snap, probe = run.load_snapshot(index), run.teacher_probe()
    by_path = {e.tensor_path: e for e in config.embeddings}
    assert set(by_path) == {"tensors.tsv", "teacher_tensors.tsv"}
    for path, expected in (("tensors.tsv", snap.student), ("teacher_tensors.tsv", probe["features"])):
        emb = by_path[path]
        assert not os.path.isabs(emb.tensor_path) and (folder / emb.tensor_path).is_file()
        assert emb.metadata_path == "metadata.tsv" and (folder / emb.metadata_path).is_file()
        values = np.loadtxt(folder / path, delimiter="\t", dtype=np.float64, ndmin=2)
        assert list(emb.tensor_shape) == list(values.shape) == list(expected.shape)
        np.testing.assert_array_equal(values.astype(np.float32), expected)  # %.9g: float32 round-trips
    assert f"snapshot {index}" in by_path["tensors.tsv"].tensor_name
    lines = (folder / "metadata.tsv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(snap.student) + 1  # the header, then one row per point
    meta = pd.read_csv(folder / "metadata.tsv", sep="\t", keep_default_na=False, dtype=str)
    assert list(meta.columns) == list(export.METADATA_COLUMNS)
    assert np.array_equal(meta["c_i"].astype(float).to_numpy(), snap.coherence)  # exactly c_i of the snapshot
    assert np.array_equal(meta["index"].astype(int), np.arange(len(snap.student)))
    assert np.array_equal(meta["test_index"].astype(int), probe["indices"])
    low = meta["c_i"].astype(float)[meta["c_i_decile"].astype(int) == 1]
    assert low.max() <= np.quantile(snap.coherence, 0.1) + 1e-12
    labels = probe.get("labels")
    if labels is None:
        assert (meta["label"] == "").all()
    elif class_names is None:
        assert list(meta["label"]) == [str(v) for v in labels]
    else:
        assert list(meta["label"]) == [class_names[v].replace("\t", " ") for v in labels]
    return meta


def test_projector_folder_reads_back_with_tensorboards_parser(run, tmp_path):
    written = export.write_projector(run, tmp_path / "tb", class_names=NAMES)
    assert {p.name for p in written} == {*export.PROJECTOR_FILES, export.MARKER}
    assert all(p.parent == tmp_path / "tb" and p.is_file() for p in written)
    _check_projector(tmp_path / "tb", run, run.snapshot_indices()[-1], NAMES)  # the latest by default
    # integers without names; an older snapshot by its index
    export.write_projector(run, tmp_path / "tb0", snapshot=0)
    _check_projector(tmp_path / "tb0", run, 0)


def test_tensorboards_projector_plugin_serves_the_export(run, tmp_path):
    """TensorBoard's own projector plugin, pointed at the folder (``--logdir``), lists both tensors
    with their shapes and serves their values and the metadata."""
    from tensorboard.backend.event_processing import plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.projector.projector_plugin import ProjectorPlugin
    from werkzeug import test as wtest
    from werkzeug import wrappers

    export.write_projector(run, tmp_path / "tb", class_names=NAMES)
    context = base_plugin.TBContext(logdir=str(tmp_path / "tb"),
                                    multiplexer=plugin_event_multiplexer.EventMultiplexer())
    apps = ProjectorPlugin(context).get_plugin_apps()

    def get(route: str, **query) -> bytes:
        response = wtest.Client(apps[route], wrappers.Response).get(route, query_string=query)
        assert response.status_code == 200, response.get_data()
        return response.get_data()

    assert json.loads(get("/runs")) == ["."]
    info = json.loads(get("/info", run="."))
    shapes = {e["tensorPath"]: e["tensorShape"] for e in info["embeddings"]}
    assert shapes == {"tensors.tsv": [N, D_S], "teacher_tensors.tsv": [N, D_T]}
    teacher = np.frombuffer(get("/tensor", run=".", name="teacher"), dtype=np.float32).reshape(N, D_T)
    np.testing.assert_array_equal(teacher, run.teacher_probe()["features"])
    assert get("/metadata", run=".", name="teacher").decode().startswith("index\tlabel\tc_i")


def test_an_unlabeled_run_has_empty_labels(tmp_path):
    run = _make_run(tmp_path / "runs", labels=False, snapshots=1)
    export.write_projector(run, tmp_path / "tb")
    _check_projector(tmp_path / "tb", run, 0)


def test_the_zip_holds_the_same_folder(run, tmp_path):
    data = export.projector_zip(run, snapshot=1, class_names=NAMES)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        top = {name.split("/")[0] for name in zf.namelist()}
        assert top == {"hand-projector-snapshot1"}
        zf.extractall(tmp_path / "unzipped")
    _check_projector(tmp_path / "unzipped" / "hand-projector-snapshot1", run, 1, NAMES)


def test_tsv_is_written_in_chunks():
    X = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    pieces = list(export.tsv_chunks(X, chunk_rows=4))
    assert len(pieces) == 3 and "".join(pieces) == "".join(export.tsv_chunks(X, chunk_rows=100))
    assert np.array_equal(np.loadtxt(io.StringIO("".join(pieces)), delimiter="\t").astype(np.float32), X)


def _metrics_equal(table: pd.DataFrame, records: list[dict]) -> None:
    assert list(table.columns[:3]) == ["epoch", "step", "snapshot"]
    assert list(table.columns[3:]) == sorted(table.columns[3:])
    assert set(table.columns) == {k for r in records for k in r} and len(table) == len(records)
    for i, record in enumerate(records):
        for column in table.columns:
            value, expected = table[column].iloc[i], record.get(column)
            if expected is None:
                assert pd.isna(value), (column, value)
            else:
                assert value == expected, (column, value, expected)


def test_metrics_as_csv_and_parquet_equal_the_runs_records(run, tmp_path):
    run.append_metrics({"epoch": 1.0, "step": 9, "snapshot": None, "lr": 0.01, "val_acc": 0.75, "flag": True})
    records = run.metrics()
    assert len(records) == 3
    for fmt, read in (("csv", pd.read_csv), ("parquet", pd.read_parquet)):
        written = export.write_metrics(run, tmp_path / "metrics", fmt)
        assert written[0].name == f"metrics.{fmt}"
        _metrics_equal(read(written[0]), records)
    csv = export.metrics_bytes(run, "csv").decode()
    assert csv.splitlines()[0].startswith("epoch,step,snapshot,") and ",," in csv  # None: an empty cell
    _metrics_equal(pd.read_parquet(io.BytesIO(export.metrics_bytes(run, "parquet"))), records)
    assert sorted(json.loads((tmp_path / "metrics" / export.MARKER).read_text())["files"]) == \
        ["metrics.csv", "metrics.parquet"]  # both formats in one folder: a previous export of the same kind


def test_a_run_without_snapshots_or_with_a_damaged_one_says_what_to_do(tmp_path):
    empty = _make_run(tmp_path / "runs", "empty", snapshots=0)
    with pytest.raises(ValueError, match="'empty' has no snapshot yet"):
        export.write_projector(empty, tmp_path / "a")
    run = _make_run(tmp_path / "runs", "torn", snapshots=2)
    run.snapshot_path(1).write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"snapshot 1 of run 'torn' .*--snapshot N; it also has snapshot 0"):
        export.write_projector(run, tmp_path / "b")
    with pytest.raises(ValueError, match="has no snapshot 5: it has snapshots 0–1"):
        export.write_projector(run, tmp_path / "c", snapshot=5)
    (run.path / "teacher_probe.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="teacher_probe.npz of run 'torn' .*this run cannot be: re-run the training"):
        export.write_projector(run, tmp_path / "e", snapshot=0)
    with pytest.raises(ValueError, match="is not a run directory"):
        export.write_projector(tmp_path / "nowhere", tmp_path / "d")
    assert not any((tmp_path / x).exists() for x in "abcde")  # nothing made


def test_cli_exports_and_refuses_to_overwrite(run, tmp_path):
    out = tmp_path / "tb"
    code, stdout, _ = _cli("export", str(run.path), "--format", "tensorboard", "--out", str(out))
    assert code == 0 and "projector_config.pbtxt" in stdout and "tensorboard --logdir" in stdout
    _check_projector(out, run, 1)
    # a previous export of the same kind is rewritten without --force
    code, _, _ = _cli("export", str(run.path), "--format", "tensorboard", "--out", str(out), "--snapshot", "0")
    assert code == 0
    _check_projector(out, run, 0)
    # a folder of something else: refused (exit 2, one error line), untouched; --force writes into it
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    code, stdout, stderr = _cli("export", str(run.path), "--format", "tensorboard", "--out", str(other))
    assert code == 2 and stderr.count("\n") == 1 and stderr.startswith("error: ") and "--force" in stderr
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    code, _, _ = _cli("export", str(run.path), "--format", "tensorboard", "--out", str(other), "--force")
    assert code == 0 and (other / "notes.txt").read_text() == "keep me"
    _check_projector(other, run, 1)
    # a metrics export into a projector folder is another kind: refused
    code, _, stderr = _cli("export", str(run.path), "--format", "csv", "--out", str(out))
    assert code == 2 and "not a previous metrics export" in stderr
    code, _, _ = _cli("export", str(run.path), "--format", "parquet", "--out", str(tmp_path / "m"))
    assert code == 0
    _metrics_equal(pd.read_parquet(tmp_path / "m" / "metrics.parquet"), run.metrics())


@pytest.mark.parametrize("argv, message", [
    (["--format", "tensorboard", "--snapshot", "9"], "has no snapshot 9"),
    (["--format", "csv", "--snapshot", "0"], "--snapshot chooses the snapshot of --format tensorboard"),
])
def test_cli_bad_input_is_one_error_line(run, tmp_path, argv, message):
    code, _, stderr = _cli("export", str(run.path), *argv, "--out", str(tmp_path / "x"))
    assert code == 2 and stderr.count("\n") == 1 and stderr.startswith("error: ") and message in stderr
    assert not (tmp_path / "x").exists()


def test_cli_not_a_run(tmp_path):
    code, _, stderr = _cli("export", str(tmp_path), "--format", "csv", "--out", str(tmp_path / "x"))
    assert code == 2 and stderr.startswith("error: ") and "is not a run directory" in stderr


def test_links_are_never_followed(run, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    out = tmp_path / "tb"
    export.write_projector(run, out)
    (out / "tensors.tsv").unlink()
    (out / "tensors.tsv").symlink_to(outside)  # a link planted in a previous export
    export.write_projector(run, out)
    assert outside.read_text() == "precious" and not (out / "tensors.tsv").is_symlink()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "real", target_is_directory=True)
    with pytest.raises(ValueError, match="is a symbolic link"):
        export.write_projector(run, link)
    assert not (tmp_path / "real").exists()


def test_a_real_run_exports_with_its_class_names(finished_run, tmp_path):
    """The engine's digits run: ``perco-viz export`` names the labels by the dataset's classes."""
    assert export.class_names_for(finished_run) == [str(i) for i in range(10)]
    code, _, stderr = _cli("export", str(finished_run.path), "--format", "tensorboard", "--out", str(tmp_path / "tb"))
    assert code == 0, stderr
    _check_projector(tmp_path / "tb", finished_run, finished_run.snapshot_indices()[-1], [str(i) for i in range(10)])
    code, _, _ = _cli("export", str(finished_run.path), "--format", "csv", "--out", str(tmp_path / "m"))
    assert code == 0
    _metrics_equal(pd.read_csv(tmp_path / "m" / "metrics.csv"), finished_run.metrics())


def test_a_run_of_someones_own_training_exports_with_integer_labels(tmp_path):
    """A run written by the user's loop (``pv.open_run``) names no dataset: no names are looked up
    (its config's dataset is a placeholder), labels are integers; its metrics come out whole."""
    import perco_viz as pv

    rng = np.random.default_rng(0)
    with pv.open_run(tmp_path / "runs", name="own", teacher_features=rng.normal(size=(N, D_T)).astype(np.float32),
                     labels=rng.integers(0, 3, N), config={"lr": 0.1}) as writer:
        for epoch in range(2):
            writer.log(rng.normal(size=(N, D_S)).astype(np.float32), epoch=epoch, step=5 * epoch, lr=0.1, val_acc=0.5)
    run = writer.run_dir
    assert run.is_external() and export.class_names_for(run) is None
    code, _, stderr = _cli("export", str(run.path), "--format", "tensorboard", "--out", str(tmp_path / "tb"))
    assert code == 0, stderr
    _check_projector(tmp_path / "tb", run, 1)
    _metrics_equal(export.metrics_table(run), run.metrics())
    assert "val_acc" in export.metrics_table(run).columns


def test_bench_export_times_a_real_export(capsys, tmp_path):
    from perco_viz.cli import main

    assert main(["bench", "export", "--n", "30", "--json", str(tmp_path / "e.json")]) == 0
    assert "| 30 |" in capsys.readouterr().out
    (row,) = json.loads((tmp_path / "e.json").read_text())["rows"]
    assert row["folder_mib"] > 0 and row["zip_mib"] > 0 and row["folder_s"] > 0
