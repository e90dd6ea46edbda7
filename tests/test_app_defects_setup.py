"""Issue 12's defects of the Setup page (AppTest) and its helpers (ui/setup.py, called directly)."""

from __future__ import annotations

import tomllib

import torch
from conftest import ROOT
from streamlit.testing.v1 import AppTest

from ui import common

PAGE = str(ROOT / "pages" / "1_Setup.py")
TIMEOUT = 60


def _texts(at: AppTest, kind: str) -> list[str]:
    return [e.value for e in getattr(at, kind)]


def _yaml(at: AppTest) -> list[str]:
    return [c.value for c in at.code if c.language == "yaml"]


def test_an_invalid_field_blocks_start_and_no_yaml_pretends_otherwise(app_env):
    """Epochs 0 turned the field red while the YAML still said 20 and Start trained 20 epochs."""
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    at.number_input(key="setup-train-epochs").set_value(0).run()
    assert not at.exception, at.exception
    errors = " ".join(_texts(at, "error"))
    assert "Epochs (train.epochs) must be between 1 and 1,000,000, got 0" in errors
    assert not _yaml(at)  # no YAML of a configuration that would not run
    assert not any(b.key in ("setup-start", "setup-use") and not b.disabled for b in at.button)
    at.number_input(key="setup-train-epochs").set_value(5).run()
    assert not at.exception and not at.error
    assert "epochs: 5" in _yaml(at)[0] and not at.button(key="setup-start").disabled


def test_the_form_says_what_a_run_uses_on_this_data(app_env):
    """n_samples 2000 and probe_size 500 were shown for the 1,797-image digits set, amp on a CPU."""
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    used = next(c for c in _texts(at, "caption") if c.startswith("What a run of it uses here"))
    assert "`data.n_samples`: **not used** (digits has its own 1,797 points)" in used
    assert "`data.probe_size`: **449**" in used
    if not torch.cuda.is_available():
        assert "`train.amp`: **off**" in used
        assert at.checkbox(key="setup-train-amp").disabled
        assert any("no CUDA GPU" in c for c in _texts(at, "caption"))


def test_a_batch_larger_than_the_training_set_is_refused(app_env):
    """A batch of 2,048 on digits (1,348 training points) was accepted without a word."""
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    at.select_slider(key="setup-train-batch_size").set_value(2048).run()
    assert not at.exception, at.exception
    assert any("train.batch_size 2,048 is larger than the training set" in e and "use at most" in e
               for e in _texts(at, "error"))
    assert at.button(key="setup-start").disabled and at.button(key="setup-use").disabled


def test_uploaders_say_the_limit_the_server_really_has(app_env, monkeypatch):
    """The uploader said Streamlit's 200 MB while the app's limit (PERCO_VIZ_MAX_FILE_MB) is 2048."""
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == 2048  # the default PERCO_VIZ_MAX_FILE_MB is what people see
    assert common.upload_limit_mb(2048, 200) == 200 and common.upload_limit_mb(64, 2048) == 64
    monkeypatch.setenv("PERCO_VIZ_MAX_FILE_MB", "64")
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    at.selectbox(key="setup-data-name").select("npz").run()
    assert not at.exception, at.exception
    uploader = next(u for u in at.get("file_uploader") if u.proto.id.endswith("setup-data-upload-npz")
                    or "upload-npz" in u.proto.id)
    assert uploader.proto.max_upload_size_mb == 64
