"""The cache folder (perco_viz.paths): where teachers and downloaded datasets live."""

from __future__ import annotations

from pathlib import Path

from perco_viz.paths import dataset_cache_dir, default_cache_dir


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("PERCO_VIZ_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    assert dataset_cache_dir() == tmp_path / "datasets"
    monkeypatch.delenv("PERCO_VIZ_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "perco_viz"
