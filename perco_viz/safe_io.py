"""The one entrance for files: weights, TorchScript, feature arrays.

Everything a user brings (an upload in the app, a path in a config) is read here, never with
a bare ``torch.load`` or ``pickle``: weights go through ``safetensors`` or
``torch.load(weights_only=True)``, arrays through ``np.load(allow_pickle=False)`` or pandas.
A file that would run Python code while loading is refused. Every failure raises
:class:`InputFileError` (a ``ValueError``) whose message says what to change.

>>> import numpy as np, io
>>> buf = io.BytesIO(); np.savez(buf, X=np.eye(3), y=np.arange(3))
>>> X, y, meta = load_array_file(buf.getvalue(), name="points.npz")
>>> X.shape, X.dtype, y.tolist(), meta is None
((3, 3), dtype('float32'), [0, 1, 2], True)
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import numpy as np
import pandas as pd
import torch

DEFAULT_MAX_FILE_MB = 2048
MAX_FILE_ENV = "PERCO_VIZ_MAX_FILE_MB"
STATE_DICT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
ARRAY_SUFFIXES = (".npz", ".npy", ".csv")
_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "module")
_FEATURE_KEYS = ("X", "features", "embeddings")
_LABEL_KEYS = ("y", "labels", "label")

PathLike = str | os.PathLike
Source = PathLike | bytes | IO[bytes]


class InputFileError(ValueError):
    """A file (or upload) cannot be used; the message says what to change."""


class OptionalDependencyError(ImportError):
    """An optional package (torchvision, timm, pillow) is needed; the message says how to install it."""


def require(module: str, *, install: str, purpose: str) -> ModuleType:
    """Import an optional dependency or raise :class:`OptionalDependencyError` with a hint.

    Args:
        module: import name, e.g. ``"torchvision"``.
        install: the pip package, e.g. ``"torchvision"``.
        purpose: what needs it, e.g. ``"CIFAR-10"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise OptionalDependencyError(
            f"{purpose} needs the optional package {install!r}, which is not installed; "
            f"install it with `pip install {install}`"
        ) from None


# ----------------------------------------------------------------------------- limits


def max_file_bytes() -> int:
    """The size limit for any input file: ``$PERCO_VIZ_MAX_FILE_MB`` (default 2048) megabytes."""
    raw = os.environ.get(MAX_FILE_ENV, str(DEFAULT_MAX_FILE_MB))
    try:
        mb = float(raw)
    except ValueError:
        raise InputFileError(f"{MAX_FILE_ENV}={raw!r} is not a number of megabytes; set e.g. 2048") from None
    return int(mb * 2**20)


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def check_size(n_bytes: int, name: str, max_bytes: int | None = None) -> None:
    """Raise :class:`InputFileError` when ``n_bytes`` exceeds the limit."""
    limit = max_file_bytes() if max_bytes is None else max_bytes
    if n_bytes > limit:
        raise InputFileError(
            f"{name} is {_mb(n_bytes)}, above the {_mb(limit)} limit; use a smaller file or "
            f"raise the limit with the environment variable {MAX_FILE_ENV}"
        )


def check_file(path: PathLike, *, max_bytes: int | None = None, what: str = "file") -> Path:
    """Return ``path`` as a :class:`Path` after checking it exists, is a file and is not too big.

    Args:
        path: the file.
        max_bytes: size limit (``None``: :func:`max_file_bytes`).
        what: how to call it in messages (``"teacher weights"``).
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise InputFileError(f"{what} {str(p)!r} does not exist; check the path")
    if not p.is_file():
        raise InputFileError(f"{what} {str(p)!r} is not a file; give the path of a file")
    size = p.stat().st_size
    if size == 0:
        raise InputFileError(f"{what} {str(p)!r} is empty (0 bytes); check the path or save it again")
    check_size(size, f"{what} {p.name!r}", max_bytes)
    return p


# ----------------------------------------------------------------------------- weights


def is_torchscript_archive(path: PathLike) -> bool:
    """Whether ``path`` is a TorchScript zip (it holds compiled ``code/``), without loading it."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any("/code/" in n or n.endswith("constants.pkl") for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _load_safetensors_file(path: Path) -> Any:
    from safetensors.torch import load_file

    return load_file(str(path), device="cpu")


def _load_torch_file(path: Path) -> Any:
    if is_torchscript_archive(path):
        raise InputFileError(
            f"{path.name!r} is a TorchScript archive, not a state_dict; load it as TorchScript "
            "(teacher kind 'torchscript' / student arch 'file')"
        )
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4": noise on a refused file
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise InputFileError(
            f"{path.name!r}: this file contains Python code/objects, which perco_viz refuses to "
            "unpickle; re-save it with safetensors or as a plain state_dict "
            "(torch.save(model.state_dict(), path))"
        ) from None


_STATE_LOADERS: dict[str, Callable[[Path], Any]] = {
    ".safetensors": _load_safetensors_file,
    ".pt": _load_torch_file,
    ".pth": _load_torch_file,
    ".bin": _load_torch_file,
    ".ckpt": _load_torch_file,
}


def _unwrap_state(obj: Any, name: str) -> dict[str, torch.Tensor]:
    """Find the tensor mapping inside ``{"state_dict": ...}``-style containers."""
    for _ in range(3):
        if not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise InputFileError(
            f"{name!r} holds a {type(obj).__name__}, not a state_dict; save "
            "model.state_dict() (a mapping of parameter names to tensors)"
        )
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise InputFileError(
            f"{name!r}: entries {bad[:5]} are not tensors; save only model.state_dict() "
            "(or put it under the key 'state_dict')"
        )
    return _strip_prefix({str(k): v for k, v in obj.items()}, "module.")


def _strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Drop a prefix that every key carries (``module.`` from DataParallel)."""
    if all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_state_dict(path: PathLike, *, max_bytes: int | None = None) -> dict[str, torch.Tensor]:
    """Read weights safely: ``.safetensors``, or ``.pt/.pth/.bin/.ckpt`` with ``weights_only``.

    Containers such as ``{"state_dict": ..., "epoch": 3}`` or ``{"model": ...}`` are unwrapped
    and a ``module.`` prefix on every key is dropped.

    Args:
        path: the weights file.
        max_bytes: size limit (``None``: ``$PERCO_VIZ_MAX_FILE_MB``, default 2048 MB).

    Returns:
        Parameter name -> CPU tensor.

    Raises:
        InputFileError: missing, too big, unknown suffix, corrupt/truncated, or a pickle that
            carries Python objects (refused, never executed).
    """
    p = check_file(path, max_bytes=max_bytes, what="weights file")
    loader = _STATE_LOADERS.get(p.suffix.lower())
    if loader is None:
        raise InputFileError(
            f"{p.name!r}: unknown weights format {p.suffix!r}; use one of {', '.join(STATE_DICT_SUFFIXES)}"
        )
    try:
        obj = loader(p)
    except InputFileError:
        raise
    except Exception as exc:  # corrupt zip, truncated header, ...
        raise InputFileError(
            f"{p.name!r} could not be read as {p.suffix} weights ({type(exc).__name__}: "
            f"{_first_line(exc)}); the file may be truncated or corrupt, save it again"
        ) from None
    return _unwrap_state(obj, p.name)


def read_safetensors_metadata(path: PathLike) -> dict[str, str]:
    """The string metadata stored in a ``.safetensors`` header (``{}`` when none)."""
    from safetensors import safe_open

    p = check_file(path, what="weights file")
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            return dict(f.metadata() or {})
    except Exception as exc:
        raise InputFileError(
            f"{p.name!r} is not a readable .safetensors file ({_first_line(exc)}); save it again"
        ) from None


def load_torchscript(path: PathLike, *, max_bytes: int | None = None) -> torch.jit.ScriptModule:
    """Load a TorchScript module (``torch.jit.save``) onto the CPU.

    Raises:
        InputFileError: missing, too big, or not a TorchScript archive.
    """
    p = check_file(path, max_bytes=max_bytes, what="TorchScript file")
    try:
        with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript; users still bring it
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(p), map_location="cpu")
    except Exception as exc:
        raise InputFileError(
            f"{p.name!r} is not a loadable TorchScript file ({_first_line(exc)}); export it with "
            "torch.jit.save(torch.jit.script(model), path) or torch.jit.trace"
        ) from None


def save_safetensors(
    state: Mapping[str, torch.Tensor], path: PathLike, *, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write tensors to ``path`` atomically (a temporary file in the same folder, then rename).

    Args:
        state: name -> tensor; tensors are copied to contiguous CPU memory (tied weights are fine).
        path: destination, conventionally ``*.safetensors``; parent folders are created.
        metadata: optional string -> string header entries.
    """
    from safetensors.torch import save_file

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=dict(metadata) if metadata else None)
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return p


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


# ----------------------------------------------------------------------------- arrays


ArrayResult = tuple[np.ndarray, np.ndarray | None, pd.DataFrame | None]


def load_array_file(
    path_or_bytes: Source,
    *,
    name: str | None = None,
    label_column: str | None = None,
    max_bytes: int | None = None,
) -> ArrayResult:
    """Read features (and labels, metadata) from a ``.npz``, ``.npy`` or ``.csv`` file.

    * ``.npz``: the feature array under ``X`` (or ``features``/``embeddings``); labels under
      ``y``/``labels`` (optional); other 1-D arrays of length n become metadata columns.
      Read with ``allow_pickle=False``.
    * ``.npy``: the feature array alone.
    * ``.csv`` (with a header row): numeric columns are features; the label column is
      ``label_column`` or else a column named ``label``/``y``; other non-numeric columns
      become metadata.

    Args:
        path_or_bytes: a path, the file's bytes, or a binary file object (an upload).
        name: file name, whose suffix picks the format (required for bytes/file objects).
        label_column: CSV column holding labels.
        max_bytes: size limit (``None``: ``$PERCO_VIZ_MAX_FILE_MB``).

    Returns:
        ``X`` (n, d) float32, ``y`` (n,) labels as stored (ints or strings) or ``None``, and
        ``meta`` (n rows) or ``None``.

    Raises:
        InputFileError: unknown format, missing arrays/columns, NaN/inf rows, empty, not 2-D.
    """
    data, name = _read_source(path_or_bytes, name, max_bytes)
    suffix = Path(name).suffix.lower()
    reader = _ARRAY_READERS.get(suffix)
    if reader is None:
        raise InputFileError(f"{name!r}: unknown array format {suffix!r}; use one of {', '.join(ARRAY_SUFFIXES)}")
    X, y, meta = reader(data, name, label_column)
    X = _check_features(X, name)
    _check_labels(y, len(X), name)
    if meta is not None and meta.empty and len(meta.columns) == 0:
        meta = None
    return X, y, meta


def _read_source(src: Source, name: str | None, max_bytes: int | None) -> tuple[bytes, str]:
    """Bytes of a path / bytes / file object, and the name to report."""
    if isinstance(src, (str, os.PathLike)):
        p = check_file(src, max_bytes=max_bytes, what="array file")
        return p.read_bytes(), name or p.name
    if name is None:
        raise InputFileError("give the file name (e.g. name='points.csv') so its format is known")
    data = bytes(src) if isinstance(src, (bytes, bytearray, memoryview)) else src.read()
    if not data:
        raise InputFileError(f"{name!r} is empty (0 bytes); upload the file again")
    check_size(len(data), repr(name), max_bytes)
    return data, name


def _check_unpacked_size(data: bytes, name: str) -> None:
    """An .npz is a zip: refuse one whose members unpack beyond the size limit (a zip bomb)."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            unpacked = sum(info.file_size for info in zf.infolist())
    except Exception as exc:  # BadZipFile, NotImplementedError("zip file version"), ...
        raise InputFileError(f"{name!r} is not a readable .npz file ({_first_line(exc)}); save it with np.savez") from None
    check_size(unpacked, f"{name!r} unpacked", None)


def _read_npz(data: bytes, name: str, label_column: str | None) -> tuple[Any, Any, Any]:
    kind = Path(name).suffix.lower() or ".npz"
    _check_unpacked_size(data, name)
    try:
        npz = np.load(io.BytesIO(data), allow_pickle=False)
        arrays = {k: npz[k] for k in npz.files} if hasattr(npz, "files") else {"X": npz}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputFileError(
                f"{name!r} is not a plain {kind} array file: it holds pickled Python objects "
                "(or is not a NumPy file at all), which perco_viz refuses to unpickle; save plain "
                "numeric/string arrays with np.savez / np.save"
            ) from None
        raise InputFileError(f"{name!r} is not a readable {kind} file ({_first_line(exc)})") from None
    except Exception as exc:
        raise InputFileError(
            f"{name!r} is not a readable {kind} file ({_first_line(exc)}); save it with np.savez / np.save"
        ) from None
    odd = [k for k, v in arrays.items() if not isinstance(v, np.ndarray)]
    if odd:  # a zip member without the .npy header comes back as raw bytes
        raise InputFileError(
            f"{name!r}: members {sorted(odd)[:5]} are not NumPy arrays; is it really an .npz? "
            "save the arrays with np.savez"
        )
    xkey = next((k for k in _FEATURE_KEYS if k in arrays), None)
    if xkey is None:
        raise InputFileError(
            f"{name!r} holds arrays {sorted(arrays)}; store the features under 'X' "
            "(or 'features'/'embeddings')"
        )
    ykey = label_column if label_column in arrays else next((k for k in _LABEL_KEYS if k in arrays), None)
    if label_column is not None and label_column not in arrays:
        raise InputFileError(f"{name!r} has no array {label_column!r} for labels; arrays: {sorted(arrays)}")
    X = arrays.pop(xkey)
    y = arrays.pop(ykey) if ykey else None
    n = len(X) if X.ndim else 0
    meta = {k: v for k, v in arrays.items() if v.ndim == 1 and len(v) == n}
    return X, y, pd.DataFrame(meta) if meta else None


def _read_npy(data: bytes, name: str, label_column: str | None) -> tuple[Any, Any, Any]:
    X, _, _ = _read_npz(data, name, None)
    return X, None, None


def _read_csv(data: bytes, name: str, label_column: str | None) -> tuple[Any, Any, Any]:
    try:
        df = pd.read_csv(io.BytesIO(data))
    except Exception as exc:
        raise InputFileError(f"{name!r} is not a readable CSV file ({_first_line(exc)})") from None
    if len(df.columns) and all(_is_number(c) for c in df.columns):  # no header row
        try:
            df = pd.read_csv(io.BytesIO(data), header=None)
        except Exception as exc:
            raise InputFileError(f"{name!r} is not a readable CSV file ({_first_line(exc)})") from None
        df.columns = [str(c) for c in df.columns]
    label = _pick_label_column(df, label_column, name)
    y = df.pop(label).to_numpy() if label else None
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
    _check_mostly_numeric(df.drop(columns=numeric), name)
    if not numeric:
        raise InputFileError(f"{name!r} has no numeric feature columns (columns: {list(df.columns)[:10]})")
    meta = df.drop(columns=numeric).reset_index(drop=True)
    return df[numeric].to_numpy(dtype=np.float64), y, meta if len(meta.columns) else None


def _is_number(text: Any) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def _pick_label_column(df: pd.DataFrame, label_column: str | None, name: str) -> str | None:
    if label_column is not None:
        if label_column not in df.columns:
            raise InputFileError(
                f"{name!r} has no column {label_column!r}; columns are {list(df.columns)[:20]}; "
                "set label_column to one of them (or to None for unlabeled data)"
            )
        return label_column
    return next((c for c in df.columns if str(c).lower() in ("label", "y")), None)


def _check_mostly_numeric(text_cols: pd.DataFrame, name: str) -> None:
    """A text column that is mostly numbers is a feature column with typos: say which rows."""
    for col in text_cols.columns:
        values = pd.to_numeric(text_cols[col], errors="coerce")
        ok = values.notna()
        if ok.mean() > 0.5 and not ok.all():
            rows = list(np.flatnonzero(~ok.to_numpy())[:5])
            raise InputFileError(
                f"{name!r}: column {col!r} is numeric except {int((~ok).sum())} row(s) "
                f"(first data rows {rows}) that are not numbers; fix or remove them"
            )


_ARRAY_READERS: dict[str, Callable[[bytes, str, str | None], tuple[Any, Any, Any]]] = {
    ".npz": _read_npz,
    ".npy": _read_npy,
    ".csv": _read_csv,
}


def _check_features(X: Any, name: str) -> np.ndarray:
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":  # not complex, timedelta, datetime, text, bytes, records
        raise InputFileError(f"{name!r}: features must be numbers (real, not complex, dates or text), got dtype {X.dtype}")
    if X.ndim != 2:
        raise InputFileError(
            f"{name!r}: features must be a 2-D (n, d) array, got shape {X.shape}; "
            "reshape to (n, -1) before saving"
        )
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise InputFileError(f"{name!r}: features have shape {X.shape}; need at least 1 row and 1 column")
    bad = ~np.isfinite(X).all(axis=1) if X.dtype.kind == "f" else np.zeros(len(X), dtype=bool)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise InputFileError(
            f"{name!r}: {len(rows)} of {len(X)} rows contain NaN/inf (first rows {rows[:5].tolist()}); "
            "remove or impute those rows"
        )
    with np.errstate(over="ignore"):
        X = X.astype(np.float32)
    big = ~np.isfinite(X).all(axis=1)
    if big.any():
        rows = np.flatnonzero(big)
        raise InputFileError(
            f"{name!r}: {len(rows)} of {len(X)} rows hold values beyond the float32 range "
            f"(|x| > 3.4e38; first rows {rows[:5].tolist()}); rescale the features"
        )
    return np.ascontiguousarray(X)


def _check_labels(y: np.ndarray | None, n: int, name: str) -> None:
    if y is None:
        return
    if y.ndim != 1 or len(y) != n:
        raise InputFileError(f"{name!r}: labels must be 1-D with one entry per row ({n}), got shape {y.shape}")
    missing = pd.isna(y)
    if missing.any():
        raise InputFileError(
            f"{name!r}: {int(missing.sum())} row(s) have no label (first rows "
            f"{np.flatnonzero(missing)[:5].tolist()}); fill or drop them"
        )
