"""Where perco_viz keeps what it downloads and trains, outside any run: the cache folder.

``$PERCO_VIZ_CACHE`` (default ``~/.cache/perco_viz``) holds ``teachers/`` (trained built-in
teachers, :func:`perco_viz.models.teacher_cache_path`) and ``datasets/`` (downloaded datasets,
:func:`perco_viz.data.load_dataset`). Runs live elsewhere (:mod:`perco_viz.runs`). Imports nothing
of perco_viz, so that both :mod:`perco_viz.data` and :mod:`perco_viz.models` can use it.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "PERCO_VIZ_CACHE"


def default_cache_dir() -> Path:
    """Where trained built-in teachers and downloaded data live: ``$PERCO_VIZ_CACHE`` or ``~/.cache/perco_viz``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "perco_viz").expanduser()


def dataset_cache_dir() -> Path:
    """Where downloadable datasets go when a config names no folder: ``<cache>/datasets``."""
    return default_cache_dir() / "datasets"
