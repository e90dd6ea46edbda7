"""Built-in and user datasets, all behind one registry and one :class:`Dataset` record.

``load_dataset(DataConfig(name=...))`` returns a fixed, seeded train/test split (stratified by
label when there are labels). Image inputs are float32 in [0, 1] with shape (n, C, H, W);
vector inputs are (n, d).

Sources (``DATASET_NAMES``):

* ``digits`` - scikit-learn's 1,797 real 8x8 handwritten digits, shipped offline (the default).
* synthetic sets of ``n_samples`` points, each a noiseless structure plus isotropic Gaussian noise
  of standard deviation ``noise`` per coordinate: ``swiss_roll`` (3-D; labels are the position
  along the roll binned into 6 equal-count classes, for colouring; the continuous position is in
  ``meta_test``), ``blobs`` (5 Gaussian blobs of std 0.1 in 10-D, labeled), ``circles``
  (two circles of radius 1 and 0.5 in 2-D, labeled), ``spheres`` (three concentric spheres of
  radius 0.5, 1 and 1.5 in 3-D, labeled by shell).
* user data: ``npz``/``csv`` (see :func:`perco_viz.safe_io.load_array_file`) and
  ``image_folder`` (one sub-folder per class; needs pillow).
* ``mnist``/``fashion_mnist`` read from the standard IDX files under ``path`` (no torchvision
  needed unless ``download=True``), ``cifar10``/``cifar100`` through torchvision. These keep
  their official train/test split; ``n_samples`` caps the number of training points (a seeded,
  stratified subsample) and the test split is capped to keep the ``test_fraction`` ratio.

>>> ds = load_dataset(DataConfig(name="circles", n_samples=200))
>>> tuple(ds.X_train.shape), tuple(ds.X_test.shape), ds.n_classes
((150, 2), (50, 2), 2)
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from perco_viz.config import DataConfig
from perco_viz.paths import dataset_cache_dir
from perco_viz.safe_io import (
    MAX_FILE_ENV,
    InputFileError,
    check_file,
    load_array_file,
    max_file_bytes,
    require,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
IMAGE_FOLDER_MAX_SIDE = 32
MAX_IMAGE_PIXELS_ENV = "PERCO_VIZ_MAX_IMAGE_PIXELS"
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096  # decoded RGB: 48 MB per image
SWISS_ROLL_BINS = 6


# ----------------------------------------------------------------------------- the record


@dataclass(eq=False)  # tensors: compare by identity
class Dataset:
    """A train/test split ready for the engine.

    Attributes:
        name: registry name (``digits``, ``npz``, ...).
        X_train: (n_train, *input_shape) float32 inputs.
        y_train: (n_train,) int64 labels in ``[0, n_classes)``, or ``None``.
        X_test: (n_test, *input_shape) float32 held-out inputs (the probe set is drawn here).
        y_test: (n_test,) int64 labels or ``None``.
        input_shape: shape of one input, e.g. ``(1, 8, 8)`` or ``(3,)``.
        n_classes: number of classes, ``None`` when unlabeled.
        class_names: one name per class, ``None`` when unlabeled.
        image_shape: ``(C, H, W)`` when the inputs are images in [0, 1], else ``None``.
        meta_test: per-row metadata of the test split (e.g. the swiss-roll ``position``).
        seed: the seed of the split (and of synthetic generation).
        description: one line on what the inputs and labels are.
    """

    name: str
    X_train: torch.Tensor
    y_train: torch.Tensor | None
    X_test: torch.Tensor
    y_test: torch.Tensor | None
    input_shape: tuple[int, ...]
    n_classes: int | None = None
    class_names: list[str] | None = None
    image_shape: tuple[int, int, int] | None = None
    meta_test: pd.DataFrame | None = None
    seed: int = 0
    description: str = ""

    @property
    def is_image(self) -> bool:
        """Whether the inputs are images (thumbnails can be drawn)."""
        return self.image_shape is not None

    @property
    def n_train(self) -> int:
        """Number of training points."""
        return int(self.X_train.shape[0])

    @property
    def n_test(self) -> int:
        """Number of held-out points."""
        return int(self.X_test.shape[0])

    def probe(self, size: int, seed: int = 0) -> torch.Tensor:
        """Indices of a fixed probe set in the test split.

        Args:
            size: number of points; all test points when ``size >= n_test``.
            seed: fixes the choice.

        Returns:
            (min(size, n_test),) int64 sorted indices into ``X_test``, stratified by label
            when labels exist.
        """
        if size < 1:
            raise ValueError(f"probe size must be at least 1, got {size}")
        if size >= self.n_test:
            return torch.arange(self.n_test)
        y = None if self.y_test is None else self.y_test.numpy()
        idx = stratified_choice(y, size, np.random.default_rng(seed), n=self.n_test)
        return torch.from_numpy(idx)

    def images(self, split: str, indices: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
        """Thumbnails of some inputs.

        Args:
            split: ``"train"`` or ``"test"``.
            indices: (k,) row indices into that split.

        Returns:
            (k, H, W) uint8 for greyscale, (k, H, W, 3) uint8 for colour images.
        """
        if not self.is_image:
            raise ValueError(f"dataset {self.name!r} holds vectors, not images; there is nothing to draw")
        splits = {"train": self.X_train, "test": self.X_test}
        if split not in splits:
            raise ValueError(f"split must be one of {sorted(splits)}, got {split!r}")
        idx = torch.as_tensor(np.array(indices), dtype=torch.long).reshape(-1)
        x = splits[split][idx].clamp(0, 1).mul(255).round().to(torch.uint8)  # (k, C, H, W)
        x = x.permute(0, 2, 3, 1).numpy()  # (k, H, W, C)
        return x[..., 0] if x.shape[-1] == 1 else x


# ----------------------------------------------------------------------------- loaders


@dataclass
class _Loaded:
    """What a loader returns: all rows (uint8 images are scaled after subsampling)."""

    X: np.ndarray  # (n, *shape)
    y: np.ndarray | None  # (n,) int64
    class_names: list[str] | None = None
    image_shape: tuple[int, int, int] | None = None
    meta: pd.DataFrame | None = None
    is_test: np.ndarray | None = None  # (n,) bool: an official split to keep
    description: str = ""


def _load_digits(cfg: DataConfig) -> _Loaded:
    from sklearn.datasets import load_digits

    d = load_digits()
    X = (d.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8) in [0, 1]
    return _Loaded(
        X, d.target.astype(np.int64), [str(c) for c in d.target_names], (1, 8, 8),
        description="scikit-learn's 1,797 handwritten digits, 8x8 greyscale, 10 classes",
    )


def _check_synthetic(cfg: DataConfig) -> None:
    if cfg.n_samples < 10:
        raise ValueError(f"data.n_samples must be at least 10 for a synthetic set, got {cfg.n_samples}")
    if not cfg.noise >= 0:
        raise ValueError(f"data.noise must be >= 0, got {cfg.noise}")


def _load_swiss_roll(cfg: DataConfig) -> _Loaded:
    from sklearn.datasets import make_swiss_roll

    _check_synthetic(cfg)
    # sklearn's roll spans about 20 units: scale by 1/10 so `noise` is in the same units as the rest.
    X, t = make_swiss_roll(cfg.n_samples, noise=cfg.noise * 10, random_state=cfg.seed)
    X = (X / 10).astype(np.float32)
    edges = np.quantile(t, np.linspace(0, 1, SWISS_ROLL_BINS + 1))
    y = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, SWISS_ROLL_BINS - 1)
    names = [f"position {edges[i]:.1f}-{edges[i + 1]:.1f}" for i in range(SWISS_ROLL_BINS)]
    meta = pd.DataFrame({"position": t, "height": X[:, 1]})
    return _Loaded(
        X, y.astype(np.int64), names, meta=meta,
        description="swiss roll in 3-D; labels = position along the roll in 6 equal-count bins "
        "(for colouring), continuous position in meta 'position'",
    )


def _load_blobs(cfg: DataConfig) -> _Loaded:
    from sklearn.datasets import make_blobs

    _check_synthetic(cfg)
    std = float(np.hypot(0.1, cfg.noise))
    X, y = make_blobs(cfg.n_samples, n_features=10, centers=5, cluster_std=std,
                      center_box=(-1.0, 1.0), random_state=cfg.seed)
    return _Loaded(X.astype(np.float32), y.astype(np.int64), [f"blob {i}" for i in range(5)],
                   description="5 Gaussian blobs (std 0.1 + noise) in 10-D")


def _load_circles(cfg: DataConfig) -> _Loaded:
    from sklearn.datasets import make_circles

    _check_synthetic(cfg)
    X, y = make_circles(cfg.n_samples, noise=cfg.noise, factor=0.5, random_state=cfg.seed)
    return _Loaded(X.astype(np.float32), y.astype(np.int64), ["outer", "inner"],
                   description="two concentric circles (radius 1 and 0.5) in 2-D")


def _load_spheres(cfg: DataConfig) -> _Loaded:
    _check_synthetic(cfg)
    rng = np.random.default_rng(cfg.seed)
    radii = np.array([0.5, 1.0, 1.5])
    y = np.arange(cfg.n_samples) % len(radii)
    u = rng.standard_normal((cfg.n_samples, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    X = u * radii[y, None] + cfg.noise * rng.standard_normal((cfg.n_samples, 3))
    return _Loaded(X.astype(np.float32), y.astype(np.int64), [f"radius {r}" for r in radii],
                   description="three concentric spheres (radius 0.5, 1, 1.5) in 3-D")


def _require_path(cfg: DataConfig, what: str) -> str:
    if not cfg.path:
        raise ValueError(f"data.path is required for data.name={cfg.name!r}: set it to {what}")
    return cfg.path


def _encode_labels(y: np.ndarray | None, meta: pd.DataFrame | None) -> tuple[
    np.ndarray | None, list[str] | None, pd.DataFrame | None
]:
    """Class labels -> int64 codes + names; non-integer numbers are a continuous target (meta)."""
    if y is None:
        return None, None, meta
    if np.issubdtype(y.dtype, np.floating) and not np.all(np.mod(y, 1) == 0):
        meta = pd.DataFrame() if meta is None else meta
        meta = meta.assign(label=y)
        return None, None, meta
    if np.issubdtype(y.dtype, np.floating):
        y = y.astype(np.int64)
    classes, codes = np.unique(y, return_inverse=True)
    return codes.astype(np.int64), [str(c) for c in classes], meta


def _load_table(cfg: DataConfig) -> _Loaded:
    path = _require_path(cfg, f"a .{cfg.name} file")
    X, y, meta = load_array_file(path, label_column=cfg.label_column)
    y, names, meta = _encode_labels(y, meta)
    kind = f"{len(names)} classes" if names else "unlabeled"
    return _Loaded(X, y, names, meta=meta, description=f"{Path(path).name}: {X.shape[1]} features, {kind}")


# ----------------------------------------------------------------------------- image folder


def _list_image_folder(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files = [
        (f, label)
        for label, c in enumerate(classes)
        for f in sorted((root / c).rglob("*"))
        if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file() and not f.name.startswith(".")
    ]
    if not files:
        raise InputFileError(
            f"no images found under {str(root)!r}; expected one sub-folder per class holding "
            f"image files ({', '.join(IMAGE_SUFFIXES)}), e.g. {root}/cat/1.png"
        )
    return classes, files


def max_image_pixels() -> int:
    """Width x height allowed per image: ``$PERCO_VIZ_MAX_IMAGE_PIXELS`` (default 4096 x 4096)."""
    raw = os.environ.get(MAX_IMAGE_PIXELS_ENV, str(DEFAULT_MAX_IMAGE_PIXELS))
    try:
        return int(float(raw))
    except ValueError:
        raise InputFileError(f"{MAX_IMAGE_PIXELS_ENV}={raw!r} is not a number of pixels; set e.g. 16777216") from None


def _check_pixels(im, path: Path) -> None:
    """Refuse an image whose header promises more pixels than the limit (a decompression bomb:
    a few kB of PNG can decode to gigabytes); ``Image.open`` reads only the header."""
    width, height = im.size
    limit = max_image_pixels()
    if width * height > limit:
        raise InputFileError(
            f"image {str(path)!r} is {width}x{height} pixels, above the {limit}-pixel limit (decoded it would "
            f"take {width * height * 3 / 2**20:.0f} MB); shrink it or raise the limit with the environment "
            f"variable {MAX_IMAGE_PIXELS_ENV}"
        )


def _read_image(image_mod, path: Path, side: int) -> np.ndarray:
    check_file(path, what="image")
    try:
        with image_mod.open(path) as im:
            _check_pixels(im, path)
            im = im.convert("RGB").resize((side, side), image_mod.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8)  # (side, side, 3)
    except InputFileError:
        raise
    except Exception as exc:
        raise InputFileError(f"image {str(path)!r} could not be read ({exc}); remove or re-save it") from None


def _common_side(image_mod, files: list[tuple[Path, int]]) -> int:
    """The square side every image is resized to: the median smaller side, at most 32."""
    sides = []
    for f, _ in files[:200]:
        try:
            with image_mod.open(f) as im:
                _check_pixels(im, f)
                sides.append(min(im.size))
        except InputFileError:
            raise
        except Exception as exc:
            raise InputFileError(f"image {str(f)!r} could not be read ({exc}); remove or re-save it") from None
    return int(max(1, min(IMAGE_FOLDER_MAX_SIDE, np.median(sides))))


def _load_image_folder(cfg: DataConfig) -> _Loaded:
    root = Path(_require_path(cfg, "a folder with one sub-folder of images per class")).expanduser()
    if not root.is_dir():
        raise InputFileError(f"image folder {str(root)!r} does not exist or is not a folder")
    image_mod = require("PIL.Image", install="pillow", purpose="reading an image folder")
    classes, files = _list_image_folder(root)
    side = _common_side(image_mod, files)
    X = np.stack([_read_image(image_mod, f, side) for f, _ in files])  # (n, side, side, 3)
    grey = bool((X[..., :1] == X[..., 1:]).all())
    X = X[..., :1] if grey else X
    X = X.transpose(0, 3, 1, 2)  # (n, C, side, side) uint8
    y = np.array([label for _, label in files], dtype=np.int64)
    return _Loaded(X, y, classes, tuple(X.shape[1:]),
                   description=f"{root.name}: {len(files)} images, {len(classes)} classes, "
                   f"{'greyscale' if grey else 'RGB'} {side}x{side}")


# ----------------------------------------------------------------------------- MNIST / CIFAR

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IDX_CHUNK = 1 << 20  # bytes unpacked per step
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike, *, max_bytes: int | None = None) -> np.ndarray:
    """Read one IDX file (the MNIST format), plain or ``.gz``, within a limit on what it unpacks to.

    The header's shape says how many bytes follow: more than the limit (or, for a plain file,
    more than the file holds) is refused before anything is allocated, and a ``.gz`` is streamed
    in chunks into an array of exactly that size, so a gzip bomb never holds more than the
    limit in memory.

    Args:
        path: the file.
        max_bytes: the limit on disk and unpacked (``None``: ``$PERCO_VIZ_MAX_FILE_MB``).

    Returns:
        The array with the shape in its header, e.g. (60000, 28, 28) uint8.
    """
    p = check_file(path, max_bytes=max_bytes, what="IDX file")
    limit = max_file_bytes() if max_bytes is None else max_bytes
    gz = p.suffix == ".gz"
    opener = gzip.open if gz else open
    try:
        with opener(p, "rb") as f:
            header = f.read(4)
            if len(header) != 4 or header[:2] != b"\x00\x00" or header[2] not in _IDX_DTYPES:
                raise InputFileError(f"{p.name!r} is not an IDX file (bad magic number)")
            ndim = header[3]
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) != 4 * ndim:
                raise InputFileError(f"{p.name!r} is truncated (its header ends early); download it again")
            dims = tuple(int(d) for d in np.frombuffer(raw_dims, dtype=">i4"))
            dtype = np.dtype(_IDX_DTYPES[header[2]])
            count = math.prod(dims) if dims else 0
            nbytes = count * dtype.itemsize
            if any(d < 0 for d in dims) or nbytes > limit:
                raise InputFileError(
                    f"{p.name!r} declares shape {dims} ({nbytes / 2**20:.1f} MB unpacked), above the "
                    f"{limit / 2**20:.1f} MB limit; use a smaller file or raise the limit with the "
                    f"environment variable {MAX_FILE_ENV}"
                )
            if not gz and nbytes > p.stat().st_size - 4 - 4 * ndim:
                raise InputFileError(f"{p.name!r} is truncated (expected shape {dims}); download it again")
            out = np.empty(count, dtype=dtype)
            view = memoryview(out.view(np.uint8)) if nbytes else memoryview(b"")
            pos = 0
            while pos < nbytes:
                n = f.readinto(view[pos : pos + IDX_CHUNK])
                if not n:
                    break
                pos += n
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise InputFileError(f"{p.name!r} could not be read ({exc}); download it again") from None
    if len(dims) != ndim or pos != nbytes:
        raise InputFileError(f"{p.name!r} is truncated (expected shape {dims}); download it again")
    return out.reshape(dims)


def _find_idx(root: Path, folder: str, key: str) -> Path | None:
    for d in (root / folder / "raw", root / folder, root):
        for suffix in ("", ".gz"):
            p = d / (_IDX_FILES[key] + suffix)
            if p.is_file():
                return p
    return None


def _mnist_files(cfg: DataConfig, folder: str, tv_class: str) -> dict[str, Path]:
    root = _dataset_root(cfg)
    found = {k: _find_idx(root, folder, k) for k in _IDX_FILES}
    if None in found.values() and cfg.download:
        tv = require("torchvision", install="torchvision", purpose=f"downloading {folder}")
        for train in (True, False):
            getattr(tv.datasets, tv_class)(str(root), train=train, download=True)
        found = {k: _find_idx(root, folder, k) for k in _IDX_FILES}
    missing = [_IDX_FILES[k] for k, v in found.items() if v is None]
    if missing:
        raise InputFileError(
            f"{folder} files {missing} not found under {str(root)!r} (looked in {folder}/raw, "
            f"{folder} and the folder itself, plain or .gz); put them there or set "
            "data.download=true (needs torchvision and a network)"
        )
    return found  # type: ignore[return-value]


def _load_idx_set(cfg: DataConfig, folder: str, tv_class: str, names: list[str]) -> _Loaded:
    files = _mnist_files(cfg, folder, tv_class)
    arrays = {k: read_idx(p) for k, p in files.items()}
    X = np.concatenate([arrays["train_images"], arrays["test_images"]])[:, None]  # (n, 1, 28, 28)
    y = np.concatenate([arrays["train_labels"], arrays["test_labels"]]).astype(np.int64)
    if len(X) != len(y):
        raise InputFileError(f"{folder}: {len(X)} images but {len(y)} labels; the files do not match")
    is_test = np.arange(len(X)) >= len(arrays["train_images"])
    return _Loaded(X, y, names, tuple(X.shape[1:]), is_test=is_test,
                   description=f"{folder} (IDX files), greyscale {X.shape[2]}x{X.shape[3]}, 10 classes")


def _load_mnist(cfg: DataConfig) -> _Loaded:
    return _load_idx_set(cfg, "MNIST", "MNIST", [str(i) for i in range(10)])


def _load_fashion_mnist(cfg: DataConfig) -> _Loaded:
    return _load_idx_set(cfg, "FashionMNIST", "FashionMNIST", FASHION_CLASSES)


def _dataset_root(cfg: DataConfig) -> Path:
    if cfg.path:
        return Path(cfg.path).expanduser()
    return dataset_cache_dir()


def _load_cifar(cfg: DataConfig, tv_class: str) -> _Loaded:
    tv = require("torchvision", install="torchvision", purpose=f"{cfg.name} (CIFAR files are read by torchvision)")
    root = str(_dataset_root(cfg))
    try:
        parts = [getattr(tv.datasets, tv_class)(root, train=t, download=cfg.download) for t in (True, False)]
    except RuntimeError as exc:
        raise InputFileError(
            f"{cfg.name} not found under {root!r} ({exc}); put the extracted CIFAR folder there "
            "or set data.download=true"
        ) from None
    X = np.concatenate([p.data for p in parts]).transpose(0, 3, 1, 2)  # (n, 3, 32, 32) uint8
    y = np.concatenate([np.asarray(p.targets) for p in parts]).astype(np.int64)
    is_test = np.arange(len(X)) >= len(parts[0].data)
    return _Loaded(X, y, list(parts[0].classes), (3, 32, 32), is_test=is_test,
                   description=f"{cfg.name} (torchvision), RGB 32x32, {len(parts[0].classes)} classes")


LOADERS: dict[str, Callable[[DataConfig], _Loaded]] = {
    "digits": _load_digits,
    "swiss_roll": _load_swiss_roll,
    "blobs": _load_blobs,
    "circles": _load_circles,
    "spheres": _load_spheres,
    "npz": _load_table,
    "csv": _load_table,
    "image_folder": _load_image_folder,
    "mnist": _load_mnist,
    "fashion_mnist": _load_fashion_mnist,
    "cifar10": lambda cfg: _load_cifar(cfg, "CIFAR10"),
    "cifar100": lambda cfg: _load_cifar(cfg, "CIFAR100"),
}
DATASET_NAMES: tuple[str, ...] = tuple(LOADERS)
NEEDS_PATH: frozenset[str] = frozenset({"npz", "csv", "image_folder"})
SYNTHETIC: frozenset[str] = frozenset({"swiss_roll", "blobs", "circles", "spheres"})
CAPPED: frozenset[str] = frozenset(DATASET_NAMES) - SYNTHETIC - NEEDS_PATH - {"digits"}  # official splits, capped


def effective_data_settings(cfg: DataConfig, n_train: int, n_test: int) -> dict[str, tuple[Any, str]]:
    """The data fields whose value is not what a run of ``cfg`` uses on its dataset, and why.

    ``n_samples`` generates the points of a synthetic set and caps the training points of a
    torchvision-style set; a dataset with points of its own (``digits``, your npz, csv or image
    folder) does not use it. The probe set is at most the held-out split (``Dataset.probe``).

    Args:
        cfg: the data section.
        n_train: points in the training split of the loaded dataset.
        n_test: points in its held-out split.

    Returns:
        dotted field -> (the value used, ``None`` when the field is not used; one line saying why).
        Empty when every field is used as given.

    >>> effective_data_settings(DataConfig(), 1347, 450)["data.probe_size"]
    (450, 'the held-out split has 450 points: all of them are the probe set')
    """
    out: dict[str, tuple[Any, str]] = {}
    n = n_train + n_test
    if cfg.name not in SYNTHETIC and cfg.name not in CAPPED:
        out["data.n_samples"] = (None, f"{cfg.name} has its own {n:,} points")
    elif cfg.name in CAPPED and cfg.n_samples > n_train:
        out["data.n_samples"] = (n_train, f"the training split has {n_train:,} points, fewer than the cap")
    if cfg.probe_size > n_test:
        out["data.probe_size"] = (n_test, f"the held-out split has {n_test:,} points: all of them are the probe set")
    return out


# ----------------------------------------------------------------------------- split


def stratified_choice(y: np.ndarray | None, k: int, rng: np.random.Generator, *, n: int | None = None) -> np.ndarray:
    """Choose ``k`` of ``n`` indices, in proportion to each class when labels are given.

    Args:
        y: (n,) labels or ``None`` (then a plain random choice of ``n`` indices).
        k: how many to choose (``0 <= k <= n``).
        rng: the random generator (fixes the choice).
        n: number of rows when ``y`` is ``None``.

    Returns:
        (k,) sorted int64 indices.
    """
    if y is None:
        return np.sort(rng.permutation(n)[:k]).astype(np.int64)
    _, inv, counts = np.unique(y, return_inverse=True, return_counts=True)
    quota = counts * k / len(y)
    take = np.floor(quota).astype(np.int64)
    extra = np.argsort(-(quota - take), kind="stable")[: k - int(take.sum())]
    take[extra] += 1
    chosen = [rng.permutation(np.flatnonzero(inv == c))[:t] for c, t in enumerate(take)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _split(cfg: DataConfig, loaded: _Loaded) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices): seeded, stratified, or the official split capped."""
    rng = np.random.default_rng(cfg.seed)
    n, y = len(loaded.X), loaded.y
    if loaded.is_test is None:
        n_test = min(n - 1, max(1, round(cfg.test_fraction * n)))
        test = stratified_choice(y, n_test, rng, n=n)
        return np.setdiff1d(np.arange(n), test), test
    parts = []
    caps = (cfg.n_samples, round(cfg.n_samples * cfg.test_fraction / (1 - cfg.test_fraction)))
    for mask, cap in zip((~loaded.is_test, loaded.is_test), caps):
        idx = np.flatnonzero(mask)
        if len(idx) > cap:
            sub = None if y is None else y[idx]
            idx = idx[stratified_choice(sub, max(1, cap), rng, n=len(idx))]
        parts.append(idx)
    return parts[0], parts[1]


def _to_float(X: np.ndarray) -> torch.Tensor:
    """uint8 images -> [0, 1] float32; other arrays -> float32."""
    x = X.astype(np.float32) / 255.0 if X.dtype == np.uint8 else X.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(x))


def _check_config(cfg: DataConfig) -> None:
    if cfg.name not in LOADERS:
        raise ValueError(f"unknown dataset {cfg.name!r}; choose one of {', '.join(DATASET_NAMES)}")
    if not 0 < cfg.test_fraction < 1:
        raise ValueError(f"data.test_fraction must be in (0, 1), got {cfg.test_fraction}")
    if cfg.n_samples < 2:
        raise ValueError(f"data.n_samples must be at least 2, got {cfg.n_samples}")


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load the dataset ``cfg.name`` and split it.

    Args:
        cfg: which data, where, and the split (``test_fraction``, ``seed``).

    Returns:
        A :class:`Dataset` with float32 inputs (images in [0, 1], shape (n, C, H, W)).

    Raises:
        ValueError: unknown name or bad option (the message lists valid choices).
        InputFileError: a missing or malformed user file.
        OptionalDependencyError: torchvision/pillow needed but not installed.
    """
    _check_config(cfg)
    loaded = LOADERS[cfg.name](cfg)
    if len(loaded.X) < 2:
        raise InputFileError(f"dataset {cfg.name!r} has {len(loaded.X)} row(s); need at least 2 to split")
    train, test = _split(cfg, loaded)
    y_all = None if loaded.y is None else torch.from_numpy(loaded.y.astype(np.int64))
    meta = None if loaded.meta is None else loaded.meta.iloc[test].reset_index(drop=True)
    return Dataset(
        name=cfg.name,
        X_train=_to_float(loaded.X[train]),
        y_train=None if y_all is None else y_all[torch.from_numpy(train)],
        X_test=_to_float(loaded.X[test]),
        y_test=None if y_all is None else y_all[torch.from_numpy(test)],
        input_shape=tuple(int(s) for s in loaded.X.shape[1:]),
        n_classes=None if loaded.class_names is None else len(loaded.class_names),
        class_names=loaded.class_names,
        image_shape=loaded.image_shape,
        meta_test=meta,
        seed=cfg.seed,
        description=loaded.description,
    )
