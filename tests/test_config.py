"""Configs are data, validated: hostile YAML, every type rule, every range, every entrance."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from perco_viz.config import (
    MAX_CONFIG_BYTES,
    ConfigError,
    RunConfig,
    apply_overrides,
    check_field,
    check_type,
    config_fields,
    field_choices,
    field_help,
    field_rules,
    loss_option_defaults,
    parse_text,
    parse_value,
)


def _bomb(levels: int = 9, fan: int = 9) -> str:
    """The "billion laughs": each level an anchored list of ``fan`` aliases of the one before."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * fan)}]")
    return "\n".join(lines) + "\n"


def _within(seconds: float, fn):
    """Run ``fn`` in a thread; fail (not hang) if it takes longer than ``seconds``. Returns its exception."""
    out: dict[str, BaseException | None] = {"exc": None}

    def target():
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 — handed to the test
            out["exc"] = exc

    t0 = time.perf_counter()
    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still running after {seconds} s"
    return out["exc"], time.perf_counter() - t0


# --------------------------------------------------------------------------- YAML
def test_the_alias_bomb_is_refused_at_the_first_anchor():
    bomb = _bomb()
    assert len(bomb) < 600  # a few hundred bytes that would expand to 9**9 strings
    exc, _ = _within(30.0, lambda: RunConfig.from_text(bomb))  # expanded, it would never finish
    assert isinstance(exc, ConfigError) and "anchor" in str(exc) and "write every value out" in str(exc)
    assert "\n" not in str(exc)


@pytest.mark.parametrize("text", [
    "data: {name: &n digits}\n",                  # an anchor alone
    "data: {name: digits}\nteacher: *undefined\n",  # an alias alone
    "<<: *base\n",                                 # a merge key
])
def test_anchors_and_aliases_are_refused(text):
    with pytest.raises(ConfigError, match="anchor|alias"):
        RunConfig.from_text(text)


@pytest.mark.parametrize("text", [
    "name: !!python/object/apply:os.system ['echo owned']\n",
    "name: !!python/name:os.system\n",
    "name: !!str 12\n",
    "name: !custom x\n",
    "name: ! x\n",
    "data: !!map {name: digits}\n",
    "--- !!map\ndata: {name: digits}\n",
])
def test_explicit_tags_are_refused(text, tmp_path):
    marker = tmp_path / "owned"
    with pytest.raises(ConfigError, match="explicit YAML tag"):
        RunConfig.from_text(text.replace("echo owned", f"touch {marker}"))
    assert not marker.exists()


def test_size_depth_and_breadth_are_capped():
    exc, _ = _within(2.0, lambda: RunConfig.from_text("#" * (MAX_CONFIG_BYTES + 1)))
    assert isinstance(exc, ConfigError) and "KiB" in str(exc)
    exc, _ = _within(2.0, lambda: RunConfig.from_text(("x" * (MAX_CONFIG_BYTES + 1)).encode()))
    assert isinstance(exc, ConfigError) and "KiB" in str(exc)
    exc, _ = _within(5.0, lambda: RunConfig.from_text("[" * 200_000))
    assert isinstance(exc, ConfigError) and "deeper" in str(exc)
    exc, _ = _within(5.0, lambda: RunConfig.from_text("data: [" + "1, " * 300_000 + "]"))
    assert isinstance(exc, ConfigError) and "more than" in str(exc)
    exc, _ = _within(2.0, lambda: RunConfig.from_text("data: {n_samples: " + "9" * 6000 + "}"))
    assert isinstance(exc, ConfigError) and "\n" not in str(exc)


@pytest.mark.parametrize(("text", "match"), [
    (b"\xff\xfe\x00", "UTF-8"),
    ("data: [unclosed\n", "not valid YAML/JSON"),
    ("a: 1\n---\nb: 2\n", "not valid YAML/JSON"),
    ("- 1\n- 2\n", "must be a mapping"),
    ("just text", "must be a mapping"),
    ("optimizer: {lr: 1}\n", "unknown config section 'optimizer'"),
    ("data: {nme: digits}\n", r"unknown key\(s\) \['nme'\] in section 'data'"),
    ("data: digits\n", "section 'data' must be a mapping"),
])
def test_malformed_text_is_one_clear_line(text, match):
    with pytest.raises(ConfigError, match=match) as info:
        RunConfig.from_text(text)
    assert "\n" not in str(info.value)


def test_json_goes_through_the_same_path_and_round_trips():
    cfg = RunConfig(name="x").override(**{"train.lr": 1e-5, "train.weight_decay": 0.0, "loss.anchors": 64})
    assert RunConfig.from_text(cfg.to_json()) == cfg  # json writes 1e-05: read as a number, not text
    assert RunConfig.from_text(cfg.to_yaml()) == cfg
    assert RunConfig.from_text("train: {lr: 1e-4}").train.lr == 1e-4  # YAML 1.2 floats without a dot
    with pytest.raises(ConfigError, match="anchor"):
        RunConfig.from_text('{"name": &a "x"}')
    with pytest.raises(ConfigError, match=r"train.lr must be a finite number, got nan"):
        RunConfig.from_text('{"train": {"lr": NaN}}'.replace("NaN", ".nan"))
    assert RunConfig.from_text("") == RunConfig() and RunConfig.from_text("# nothing\n") == RunConfig()


# --------------------------------------------------------------------------- types
@pytest.mark.parametrize(("text", "message"), [
    ("name: 123", "name must be a string (text), got 123"),
    ("name: [1, 2]", "name must be a string (text), got [1, 2]"),
    ("name: {a: 1}", "name must be a string (text), got {'a': 1}"),
    ("name: yes", "name must be a string (text), got True"),
    ("data: {path: 7}", "data.path must be a string (text), got 7"),
    ("loss: {kernel: on}", "loss.kernel must be a string (text), got True"),
    ("train: {epochs: 2.5}", "train.epochs must be a whole number (integer), got 2.5"),
    ("train: {epochs: '3'}", "train.epochs must be a whole number (integer), got '3'"),
    ("train: {epochs: true}", "train.epochs must be a whole number (integer), got True"),
    ("train: {epochs: null}", "train.epochs must not be null"),
    ("train: {epochs: [3]}", "train.epochs must be a whole number (integer), got [3]"),
    ("train: {lr: '0.1'}", "train.lr must be a number, got '0.1'"),
    ("train: {lr: false}", "train.lr must be a number, got False"),
    ("train: {lr: .inf}", "train.lr must be a finite number, got inf"),
    ("loss: {ce_weight: .nan}", "loss.ce_weight must be a finite number, got nan"),
    ("train: {amp: maybe}", "train.amp must be true or false, got 'maybe'"),
    ("train: {amp: 2}", "train.amp must be true or false, got 2"),
    ("train: {amp: 'yes'}", "train.amp must be true or false, got 'yes'"),
    ("data: {download: 0.0}", "data.download must be true or false, got 0.0"),
    ("loss: {anchors: 1.5}", "loss.anchors must be a whole number (integer), got 1.5"),
])
def test_every_type_rule_names_the_field(text, message):
    with pytest.raises(ConfigError) as info:
        RunConfig.from_text(text)
    assert str(info.value).startswith(message), str(info.value)


@pytest.mark.parametrize(("text", "field", "value"), [
    ("train: {epochs: 3.0}", "train.epochs", 3),
    ("train: {lr: 1}", "train.lr", 1.0),
    ("train: {amp: no}", "train.amp", False),
    ("train: {amp: on}", "train.amp", True),
    ("train: {amp: 0}", "train.amp", False),
    ("data: {download: 1}", "data.download", True),
    ("loss: {anchors: null}", "loss.anchors", None),
    ("loss: {teacher_metric: null}", "loss.teacher_metric", None),
    ("name: '123'", "name", "123"),
    ("name: null", "name", None),
])
def test_accepted_forms_are_typed(text, field, value):
    cfg = RunConfig.from_text(text)
    section, _, name = field.partition(".")
    got = getattr(getattr(cfg, section), name) if name else getattr(cfg, section)
    assert got == value and type(got) is type(value)


def test_text_becomes_a_number_only_through_override():
    cfg = RunConfig().override(**{"train.epochs": "5", "train.lr": "1e-3", "train.amp": "OFF",
                                  "loss.anchors": "none", "data.download": "yes", "name": "42"})
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.amp, cfg.loss.anchors) == (5, 1e-3, False, None)
    assert cfg.data.download is True and cfg.name == "42"
    for word, expected in (("true", True), ("False", False), ("on", True), ("no", False), ("1", True), ("0", False)):
        assert parse_text("train.amp", bool, word) is expected
    with pytest.raises(ConfigError, match="train.amp must be true or false .*got 'maybe'"):
        RunConfig().override(**{"train.amp": "maybe"})
    with pytest.raises(ConfigError, match="train.epochs must be a whole number .*got '2.5'"):
        RunConfig().override(**{"train.epochs": "2.5"})
    with pytest.raises(ConfigError, match="train.lr must be a finite number, got nan"):
        RunConfig().override(**{"train.lr": "nan"})
    with pytest.raises(ConfigError, match="unknown config field 'train.epoch'"):
        RunConfig().override(**{"train.epoch": 3})
    with pytest.raises(ConfigError, match="unknown config field 'train'"):
        RunConfig().override(**{"train": 3})
    assert check_field("train.epochs", "7") == 7
    assert check_type("train.epochs", int, 4.0) == 4


# --------------------------------------------------------------------------- ranges
BAD = [
    ("teacher.pooling", "max", "one of flatten"),
    ("student.pooling", "max", "one of flatten"),
    ("data.name", "imagenet", "one of digits"),
    ("data.n_samples", 1, "between 2 and"),
    ("data.n_samples", 10**12, "between 2 and"),
    ("data.noise", -0.1, "0 or more"),
    ("data.test_fraction", 0.0, "strictly between 0 and 1"),
    ("data.test_fraction", 1.0, "strictly between 0 and 1"),
    ("data.probe_size", 2, "between 3 and"),
    ("data.probe_size", 100_001, "between 3 and 100,000"),
    ("data.seed", -1, "between 0 and"),
    ("teacher.kind", "hf", "one of builtin"),
    ("student.arch", "vit", "one of mlp"),
    ("student.dim", 0, "between 1 and 4,096"),
    ("student.dim", 10**6, "between 1 and 4,096"),
    ("student.hidden", 0, "between 1 and 8,192"),
    ("loss.name", "triplet", "one of coherence"),
    ("loss.tau", 0.0, "greater than 0"),
    ("loss.kernel", "gauss", "one of ramp, sigmoid"),
    ("loss.metric", "manhattan", "one of euclidean"),
    ("loss.teacher_metric", "manhattan", "null or one of euclidean"),
    ("loss.anchors", 0, "null or between 1 and"),
    ("loss.ce_weight", -1.0, "0 or more"),
    ("loss.kd_weight", -0.5, "0 or more"),
    ("loss.kd_temperature", 0.0, "greater than 0"),
    ("train.epochs", 0, "between 1 and"),
    ("train.epochs", -5, "between 1 and"),
    ("train.batch_size", 0, "between 3 and 65,536"),
    ("train.batch_size", 1, "between 3 and 65,536"),
    ("train.batch_size", 2, "between 3 and 65,536"),
    ("train.batch_size", 65_537, "between 3 and 65,536"),
    ("train.lr", 0.0, "greater than 0"),
    ("train.lr", -1e-3, "greater than 0"),
    ("train.weight_decay", -1e-4, "0 or more"),
    ("train.device", "tpu", "auto, cpu, cuda, cuda:N or mps"),
    ("train.device", "cuda:x", "auto, cpu, cuda, cuda:N or mps"),
    ("train.seed", 2**40, "between 0 and"),
    ("train.snapshot_every", -1, "between 0 and"),
]


@pytest.mark.parametrize(("field", "value", "allowed"), BAD, ids=[f"{f}={v}" for f, v, _ in BAD])
def test_every_range_is_checked_with_a_one_line_message(field, value, allowed):
    with pytest.raises(ConfigError) as info:
        RunConfig().override(**{field: value})
    message = str(info.value)
    assert message.startswith(f"{field} must be ") and allowed in message and "\n" not in message
    # the same through text, the same for a direct construction checked by validate()
    section, _, name = field.partition(".")
    with pytest.raises(ConfigError, match=f"^{field} must be "):
        RunConfig.from_text(json.dumps({section: {name: value}}))
    cfg = RunConfig()
    setattr(getattr(cfg, section), name, value)
    with pytest.raises(ConfigError, match=f"^{field} must be "):
        cfg.validate()


def test_every_rule_is_tested_and_every_edge_passes():
    assert {f for f, _, _ in BAD} == set(field_rules())
    edges = {"data.n_samples": 2, "data.noise": 0.0, "data.test_fraction": 0.999, "data.probe_size": 3,
             "student.dim": 1, "student.hidden": 8192, "loss.tau": 1e-6, "loss.anchors": 1, "loss.ce_weight": 0.0,
             "train.epochs": 1, "train.batch_size": 3, "train.lr": 1e-9, "train.device": "cuda:7",
             "train.snapshot_every": 0, "train.seed": 2**32 - 1, "loss.teacher_metric": "cosine"}
    cfg = RunConfig().override(**edges)
    assert cfg.validate() is cfg and RunConfig.from_text(cfg.to_yaml()) == cfg


def test_the_name_lists_are_the_registries():
    from perco_viz.coherence import KERNELS, METRICS
    from perco_viz.data import DATASET_NAMES
    from perco_viz.losses import LOSS_NAMES
    from perco_viz.models import STUDENT_ARCHS, TEACHER_KINDS

    for names, field in ((DATASET_NAMES, "data.name"), (TEACHER_KINDS, "teacher.kind"),
                         (STUDENT_ARCHS, "student.arch"), (LOSS_NAMES, "loss.name"), (KERNELS, "loss.kernel"),
                         (METRICS, "loss.metric")):
        rule, allowed = field_rules()[field]
        assert all(rule(n) for n in names) and not rule("nope") and allowed == "one of " + ", ".join(names)


# --------------------------------------------------------------------------- entrances
def test_load_checks_the_file(tmp_path):
    good = tmp_path / "c.yaml"
    good.write_text("train: {epochs: 2}\n")
    assert RunConfig.load(good).train.epochs == 2
    (tmp_path / "empty.yaml").write_text("")
    assert RunConfig.load(tmp_path / "empty.yaml") == RunConfig()
    with pytest.raises(ConfigError, match="does not exist"):
        RunConfig.load(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not a file"):
        RunConfig.load(tmp_path)
    big = tmp_path / "big.yaml"
    big.write_text("#" * (MAX_CONFIG_BYTES + 10))
    with pytest.raises(ConfigError, match="limit"):
        RunConfig.load(big)
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_bomb())
    with pytest.raises(ConfigError, match="^bomb.yaml: .*anchor"):
        RunConfig.load(bomb)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_load_never_blocks_on_a_fifo(tmp_path):
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    exc, _ = _within(5.0, lambda: RunConfig.load(fifo))
    assert isinstance(exc, ConfigError) and "not a file" in str(exc)
    if os.path.exists("/dev/zero"):  # an endless device, also behind a symlink
        (tmp_path / "zero.yaml").symlink_to("/dev/zero")
        for path in ("/dev/zero", tmp_path / "zero.yaml"):
            exc, _ = _within(5.0, lambda p=path: RunConfig.load(p))
            assert isinstance(exc, ConfigError) and "not a file" in str(exc)


def test_a_run_directorys_config_json_is_validated(tmp_path):
    from perco_viz.runs import RunDir

    run = RunDir.create(tmp_path, RunConfig(name="r"), "r")
    assert run.config() == RunConfig(name="r")
    for bad, match in (({"name": 5}, "name must be a string"), ({"train": {"batch_size": 0}}, "train.batch_size"),
                       ({"loss": {"kd_weight": None}}, "loss.kd_weight must not be null")):
        (run.path / "config.json").write_text(json.dumps(bad))
        with pytest.raises((ConfigError, Exception), match=match):  # H2's RunStoreError may wrap it
            run.config()
    (run.path / "config.json").write_text(_bomb())
    exc, _ = _within(1.0, run.config)
    assert exc is not None and ("anchor" in str(exc) or "alias" in str(exc))


def test_cli_flags_and_config_file(tmp_path):
    from perco_viz.cli import build_parser, config_from_args

    path = tmp_path / "c.yaml"
    path.write_text("train: {epochs: 2, amp: off}\nname: run\n")
    args = build_parser().parse_args(["distill", "--config", str(path), "--batch-size", "16", "--lr", "0.01"])
    cfg = config_from_args(args)
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr, cfg.train.amp) == (2, 16, 0.01, False)
    for flags, match in ((["--batch-size", "0"], "train.batch_size must be between 3 and 65,536"),
                         (["--epochs", "-5"], "train.epochs must be between 1"),
                         (["--ce-weight", "nan"], "loss.ce_weight must be a finite number"),
                         (["--snapshot-every", "-1"], "train.snapshot_every"),
                         (["--device", "tpu"], "train.device")):
        with pytest.raises(ConfigError, match=match):
            config_from_args(build_parser().parse_args(["distill", *flags]))
    path.write_text("name: 123\n")
    with pytest.raises(ConfigError, match="^c.yaml: name must be a string"):
        config_from_args(build_parser().parse_args(["distill", "--config", str(path)]))


# --------------------------------------------------------------------------- one source: help, choices, parsing
def test_every_field_declares_its_help_once_and_choices_are_the_registries():
    from perco_viz.coherence import KERNELS, METRICS
    from perco_viz.data import DATASET_NAMES
    from perco_viz.losses import LOSS_NAMES
    from perco_viz.models import POOLINGS, STUDENT_ARCHS, TEACHER_KINDS

    infos = config_fields()
    assert {i.dotted for i in infos} >= {"data.name", "loss.options", "train.amp", "name"}
    assert len(infos) == len({i.dotted for i in infos}) == 40  # 9 data, 5 teacher, 7 student, 10 loss, 8 train, name
    for info in infos:
        assert info.help and info.help == field_help(info.section, info.name), info.dotted
        assert "\n" not in info.help
    registries = {("data", "name"): DATASET_NAMES, ("teacher", "kind"): TEACHER_KINDS,
                  ("student", "arch"): STUDENT_ARCHS, ("loss", "name"): LOSS_NAMES, ("loss", "kernel"): KERNELS,
                  ("loss", "metric"): METRICS, ("loss", "teacher_metric"): METRICS,
                  ("teacher", "pooling"): POOLINGS, ("student", "pooling"): POOLINGS}
    for info in infos:
        assert field_choices(info.section, info.name) == registries.get((info.section, info.name)), info.dotted
    with pytest.raises(ConfigError, match="unknown config field 'train.epoch'"):
        field_help("train", "epoch")


@pytest.mark.parametrize("field", ["train.amp", "data.download"])
def test_maybe_is_not_a_boolean_anywhere(field):
    section, _, name = field.partition(".")
    with pytest.raises(ConfigError, match=f"^{field} must be true or false .*got 'maybe'"):
        parse_value(field, "maybe")
    with pytest.raises(ConfigError, match=f"^{field} must be true or false"):
        apply_overrides(RunConfig(), [f"{field}=maybe"])
    with pytest.raises(ConfigError, match=f"^{field} must be true or false, got 'maybe'"):
        RunConfig.from_text(f"{section}: {{{name}: maybe}}")
    for word, expected in (("TRUE", True), ("no", False), ("Yes", True), ("0", False), ("1", True)):
        assert parse_value(field, word) is expected


def test_every_optional_field_takes_none_null_and_empty_text():
    optional = [i for i in config_fields() if i.default is None]
    assert {i.dotted for i in optional} == {"data.path", "data.label_column", "teacher.arch", "teacher.path",
                                             "teacher.layer", "student.path", "student.model_class", "student.layer",
                                             "loss.teacher_metric", "loss.anchors", "name"}
    for info in optional:
        for word in ("none", "NULL", "", "  "):
            assert parse_value(info.dotted, word) is None, (info.dotted, word)
    assert parse_value("loss.anchors", "64") == 64 and parse_value("data.path", "x.csv") == "x.csv"
    with pytest.raises(ConfigError, match="^train.epochs must be a whole number"):
        parse_value("train.epochs", "none")  # not optional


def test_apply_overrides_types_every_value_and_names_the_field():
    cfg = apply_overrides(RunConfig(), ["train.epochs=3", "loss.tau = 0.2", "train.amp=off", "name=x"])
    assert (cfg.train.epochs, cfg.loss.tau, cfg.train.amp, cfg.name) == (3, 0.2, False, "x")
    for item, match in (("loss.tau", "FIELD=VALUE"), ("=3", "FIELD=VALUE"), ("train.epochz=3", "train.epochz"),
                        ("train.lr=fast", "^train.lr must be a number")):
        with pytest.raises(ConfigError, match=match):
            apply_overrides(RunConfig(), [item])


# --------------------------------------------------------------------------- loss options
def test_loss_options_are_checked_against_the_losss_declared_options():
    from perco_viz.losses import LOSS_NAMES

    cfg = apply_overrides(RunConfig(), ["loss.name=cc", "loss.options.gamma=0.3"])
    assert cfg.loss.options == {"gamma": 0.3} and cfg.loss.loss_kwargs() == {"gamma": 0.3}
    assert RunConfig.from_text(cfg.to_yaml()) == cfg and RunConfig.from_text(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match=r"^loss.options.beta is not an option of the cc loss; its options: gamma"):
        apply_overrides(RunConfig(), ["loss.name=cc", "loss.options.beta=1"])
    with pytest.raises(ConfigError, match="^loss.options.gamma is not an option of the sp loss; its options: none"):
        RunConfig.from_text("loss: {name: sp, options: {gamma: 0.3}}")
    with pytest.raises(ConfigError, match="^loss.options.gamma must be a number, got 'wide'"):
        RunConfig.from_text("loss: {name: cc, options: {gamma: wide}}")
    with pytest.raises(ConfigError, match="^loss.options.gamma must be a finite number"):
        RunConfig.from_text("loss: {name: cc, options: {gamma: .nan}}")
    with pytest.raises(ConfigError, match="^loss.options must be a mapping"):
        RunConfig.from_text("loss: {name: cc, options: [1]}")
    with pytest.raises(ConfigError, match="^loss.options.tau is a field of its own: set loss.tau"):
        RunConfig.from_text("loss: {options: {tau: 0.3}}")
    typed = RunConfig.from_text("loss: {name: rkd, options: {angle_weight: 0}}").loss.options  # int for a float
    assert typed == {"angle_weight": 0.0} and type(typed["angle_weight"]) is float
    for name in LOSS_NAMES:  # every declared option is settable, with its default
        cfg = RunConfig().override(**{"loss.name": name, "loss.options": loss_option_defaults(name)})
        assert cfg.loss.options == loss_option_defaults(name)


def test_a_saved_config_without_options_still_loads():
    old = RunConfig().to_dict()
    del old["loss"]["options"]
    assert RunConfig.from_dict(old) == RunConfig() and RunConfig().loss.options == {}


def test_changing_the_loss_drops_the_other_losss_options():
    cc = apply_overrides(RunConfig(), ["loss.name=cc", "loss.options.gamma=0.3"])
    assert cc.override(**{"loss.name": "rkd"}).loss.options == {}
    assert cc.override(**{"loss.name": "cc"}).loss.options == {"gamma": 0.3}
    assert cc.override(**{"train.epochs": 2}).loss.options == {"gamma": 0.3}


@pytest.mark.slow
def test_loss_options_reach_the_loss_module():
    from perco_viz.distill import Distiller

    cfg = apply_overrides(RunConfig(), ["data.name=blobs", "data.n_samples=120", "data.probe_size=20",
                                        "teacher.kind=identity", "train.device=cpu", "train.epochs=1", "train.batch_size=32",
                                        "loss.name=cc", "loss.options.gamma=0.25"])
    engine = Distiller(cfg)
    engine.setup()
    assert engine.loss_fn.options["gamma"] == 0.25
    coherence = RunConfig().override(**{"loss.tau": 0.2, "loss.kernel": "sigmoid", "loss.options.impl": "reference"})
    assert coherence.loss.loss_kwargs() == {"tau": 0.2, "kernel": "sigmoid", "metric": "euclidean",
                                            "teacher_metric": None, "anchors": None, "impl": "reference"}
