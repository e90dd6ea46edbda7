"""The command line: end to end with the run directory checked; one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from perco_viz.cli import main
from perco_viz.runs import list_runs

TINY = ["--dataset", "blobs", "--n-samples", "300", "--probe-size", "60", "--teacher", "identity",
        "--student-dim", "2", "--batch-size", "64", "--device", "cpu", "--quiet"]


@pytest.mark.slow
def test_distill_end_to_end(tmp_path, capsys):
    assert main(["distill", *TINY, "--epochs", "2", "--out", str(tmp_path), "--name", "cli"]) == 0
    out = capsys.readouterr().out
    assert "status=finished" in out and "pc=" in out
    (run,) = list_runs(tmp_path)
    assert run.name == "cli" and len(run.metrics()) == 3 and run.status()["state"] == "finished"
    # resume to more epochs
    assert main(["resume", str(run.path), "--epochs", "3", "--quiet"]) == 0
    assert len(run.metrics()) == 4


@pytest.mark.slow
def test_config_file_with_flag_override(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  epochs: 1\n  lr: 0.01\nloss:\n  tau: 0.2\n")
    assert main(["distill", *TINY, "--config", str(cfg), "--tau", "0.3", "--out", str(tmp_path / "r")]) == 0
    (run,) = list_runs(tmp_path / "r")
    saved = json.loads((run.path / "config.json").read_text())
    assert saved["train"]["epochs"] == 1 and saved["loss"]["tau"] == 0.3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["distill", "--loss", "triplet", "--epochs", "1"], "loss.name must be one of coherence"),
        (["distill", "--dataset", "imagenet", "--epochs", "1"], "imagenet"),
        (["distill", "--config", "/nonexistent.yaml"], "does not exist"),
        (["resume", "/nonexistent-run"], "not a run directory"),
    ],
)
@pytest.mark.slow
def test_errors_are_one_line_without_traceback(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "perco_viz", *args, "--out", str(tmp_path)] if args[0] == "distill"
                          else [sys.executable, "-m", "perco_viz", *args],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr
    assert proc.stderr.strip().count("\n") <= 3


@pytest.mark.slow
def test_bench_loss_prints_a_table(capsys):
    assert main(["bench", "loss", "--sizes", "16,32", "--repeats", "1", "--reference-max", "32"]) == 0
    out = capsys.readouterr().out
    assert "| n |" in out and "| 16 |" in out and "machine:" in out


# --------------------------------------------------------------------------- nonsense arguments
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "perco_viz", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--batch-size", "0"], "train.batch_size must be between 3 and 65,536"),
        (["--batch-size", "2"], "train.batch_size must be between 3 and 65,536"),
        (["--epochs", "0"], "train.epochs must be between 1"),
        (["--snapshot-every", "-1"], "train.snapshot_every must be between 0"),
        (["--ce-weight", "nan"], "loss.ce_weight must be a finite number, got nan"),
        (["--device", "tpu"], "train.device must be auto, cpu, cuda, cuda:N or mps"),
    ],
)
def test_nonsense_distill_arguments_exit_1_with_one_line_and_write_nothing(tmp_path, flags, message):
    code = main(["distill", *TINY, *flags, "--out", str(tmp_path / "runs")])
    assert code == 1
    assert not (tmp_path / "runs").exists()  # refused before anything is written


@pytest.mark.slow
def test_a_bad_config_file_and_an_absent_device_are_one_error_line(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")))
    proc = _cli("distill", "--config", str(bomb), "--out", str(tmp_path / "runs"))
    assert proc.returncode == 1 and proc.stderr.startswith("error: bomb.yaml: ") and "anchor" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [1, 2]\n")
    proc = _cli("distill", "--config", str(bad), "--out", str(tmp_path / "runs"))
    assert proc.returncode == 1 and proc.stderr == "error: bad.yaml: name must be a string (text), got [1, 2]\n"
    import torch

    if not torch.cuda.is_available():
        proc = _cli("distill", *TINY, "--device", "cuda", "--out", str(tmp_path / "runs"))
        assert proc.returncode == 1 and proc.stderr.count("\n") == 1
        assert "device 'cuda' is not available on this machine; available: cpu" in proc.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_resume_with_negative_epochs_is_refused_before_touching_the_run(tmp_path, capsys):
    assert main(["distill", *TINY, "--epochs", "1", "--out", str(tmp_path), "--name", "r"]) == 0
    (run,) = list_runs(tmp_path)
    before = {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()}
    capsys.readouterr()
    proc = _cli("resume", str(run.path), "--epochs", "-5")
    assert proc.returncode == 1
    assert proc.stderr == "error: train.epochs must be between 1 and 1,000,000, got -5\n" and not proc.stdout
    assert {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()} == before
    assert main(["resume", str(run.path), "--epochs", "0", "--quiet"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == ["error: train.epochs must be between 1 and 1,000,000, got 0"]
    assert {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()} == before


@pytest.mark.parametrize(("flags", "message"), [
    (["--dataset", "imagenet"], "data.name must be one of digits"),
    (["--seed", "-1"], "data.seed must be between 0"),
    (["--device", "tpu"], "train.device must be auto, cpu, cuda, cuda:N or mps"),
])
def test_teacher_train_checks_its_arguments_first(flags, message, capsys):
    assert main(["teacher", "train", *flags]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1


# --------------------------------------------------------------------------- flags derived from the config
def _other_value(info):
    """A valid value of the field other than its default, as (text for the command line, typed value)."""
    special = {"train.device": "cpu", "loss.anchors": 64, "data.test_fraction": 0.5, "name": "n"}
    if info.dotted in special:
        value = special[info.dotted]
    elif info.choices is not None:
        value = next(c for c in info.choices if c != info.default)
    elif info.annotation is bool:
        value = not info.default
    elif info.annotation is int:
        value = info.default + 1
    elif info.annotation is float:
        value = info.default * 2 if info.default else 0.5
    else:  # optional text: paths, names of layers and architectures
        value = "x"
    return str(value).lower() if isinstance(value, bool) else str(value), value


def test_every_config_field_has_a_flag_that_round_trips_into_the_config():
    from perco_viz.cli import ALIASES, build_parser, config_from_args, flag_names
    from perco_viz.config import config_fields

    parser = build_parser()
    infos = [i for i in config_fields() if i.dotted != "loss.options"]
    assert set(ALIASES) <= {i.dotted for i in infos}
    for info in infos:
        text, value = _other_value(info)
        for flag in flag_names(info.dotted):
            cfg = config_from_args(parser.parse_args(["distill", flag, text]))
            owner = getattr(cfg, info.section) if info.section else cfg
            assert getattr(owner, info.name) == value, (flag, text)
            default = config_from_args(parser.parse_args(["distill"]))
            assert getattr(getattr(default, info.section) if info.section else default, info.name) == info.default


def test_loss_options_from_flags_and_set(tmp_path):
    from perco_viz.cli import build_parser, config_from_args
    from perco_viz.config import ConfigError

    parser = build_parser()

    def cfg(*flags):
        return config_from_args(parser.parse_args(["distill", *flags]))

    assert cfg("--loss", "cc", "--loss.options", "gamma=0.3").loss.options == {"gamma": 0.3}
    assert cfg("--loss", "cc", "--set", "loss.options.gamma=0.2").loss.options == {"gamma": 0.2}
    rkd = cfg("--loss.name", "rkd", "--loss.options", "angle_weight=0", "--loss.options", "distance_weight=1")
    assert rkd.loss.options == {"angle_weight": 0.0, "distance_weight": 1.0}
    path = tmp_path / "c.yaml"
    path.write_text("loss: {name: cc, options: {gamma: 0.5}}\n")
    assert cfg("--config", str(path)).loss.options == {"gamma": 0.5}
    assert cfg("--config", str(path), "--loss", "sp").loss.options == {}  # cc's option left with cc
    for flags, match in ((["--loss", "cc", "--loss.options", "beta=1"], "loss.options.beta is not an option of the "
                          "cc loss; its options: gamma"),
                         (["--loss", "cc", "--loss.options", "gamma=wide"], "loss.options.gamma must be a number"),
                         (["--loss.options", "gamma"], "FIELD=VALUE"),
                         (["--train.amp", "maybe"], "train.amp must be true or false"),
                         (["--set", "train.amp=maybe"], "train.amp must be true or false")):
        with pytest.raises(ConfigError, match=match):
            cfg(*flags)


def test_an_unknown_loss_option_is_one_error_line(tmp_path, capsys):
    assert main(["distill", *TINY, "--loss", "cc", "--set", "loss.options.gama=1", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == "error: loss.options.gama is not an option of the cc loss; its options: gamma\n"
    assert not list(tmp_path.iterdir())


def test_help_is_the_configs_help_grouped_by_section():
    from perco_viz.cli import build_parser, flag_names
    from perco_viz.config import config_fields, field_help

    distill = next(a for a in build_parser()._actions if a.dest == "command").choices["distill"]
    by_flag = {opt: action for action in distill._actions for opt in action.option_strings}
    for info in config_fields():
        for flag in flag_names(info.dotted):
            assert by_flag[flag].help.startswith(field_help(info.section, info.name).replace("%", "%%")), flag
    text = distill.format_help()
    for section in ("run:", "data:", "teacher:", "student:", "loss:", "train:"):
        assert f"\n{section}\n" in text
    assert "One of: ramp, sigmoid." in " ".join(text.split())


def test_the_progress_bar_is_tqdm_on_a_terminal_and_lines_in_a_log():
    import contextlib
    import io

    from perco_viz.cli import ProgressBar

    def feed(bar):
        bar({"phase": "teacher", "step": 0, "total_steps": 10, "epoch": 0})
        for step in range(1, 11):
            bar({"phase": "train", "step": step, "total_steps": 10, "epoch": step // 5, "loss": 0.5})
        bar.close()

    log = io.StringIO()
    with contextlib.redirect_stderr(log):
        feed(ProgressBar(quiet=True))
    assert log.getvalue() == "[perco-viz] teacher…\n"
    terminal = io.StringIO()
    with contextlib.redirect_stderr(terminal):
        bar = ProgressBar(quiet=False)
        bar.lines = False  # as on a terminal
        feed(bar)
    assert "10/10" in terminal.getvalue() and "loss 0.5000" in terminal.getvalue()
