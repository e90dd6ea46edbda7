"""The one entrance for files: weights, TorchScript, feature arrays.

Everything a user brings (an upload in the app, a path in a config) is read here, never with
a bare ``torch.load`` or ``pickle``: weights go through ``safetensors`` or
``torch.load(weights_only=True)``, arrays through ``np.load(allow_pickle=False)`` or pandas.
A file that would run Python code while loading is refused: pickles always, TorchScript unless
the caller passes ``trust=True`` (the CLI's ``--trust-code``, the app operator's
``$PERCO_VIZ_TRUST_TORCHSCRIPT``); a ``module:Class`` model's module is imported only through
:func:`import_class` (the same trust, or the operator's ``$PERCO_VIZ_TRUSTED_MODULES``). Sizes are
checked on disk and on what a file unpacks to
(zip members from the central directory, ``.npy`` headers) before anything is unpacked. Every
failure raises :class:`InputFileError` (a ``ValueError``) whose message says what to change.

>>> import numpy as np, io
>>> buf = io.BytesIO(); np.savez(buf, X=np.eye(3), y=np.arange(3))
>>> X, y, meta = load_array_file(buf.getvalue(), name="points.npz")
>>> X.shape, X.dtype, y.tolist(), meta is None
((3, 3), dtype('float32'), [0, 1, 2], True)
"""

from __future__ import annotations

import csv
import importlib
import io
import os
import pickle
import re
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
TRUST_TORCHSCRIPT_ENV = "PERCO_VIZ_TRUST_TORCHSCRIPT"
TRUSTED_MODULES_ENV = "PERCO_VIZ_TRUSTED_MODULES"  # comma-separated module prefixes a ``module:Class`` may name
MAX_COLUMNS_ENV = "PERCO_VIZ_MAX_COLUMNS"
DEFAULT_MAX_COLUMNS = 4096
MAX_ROWS_ENV = "PERCO_VIZ_MAX_ROWS"
DEFAULT_MAX_ROWS = 5_000_000
SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors library's own cap on its JSON header
STATE_DICT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
ARRAY_SUFFIXES = (".npz", ".npy", ".csv", ".parquet")
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


def server_trusts_torchscript() -> bool:
    """The app operator's switch: ``$PERCO_VIZ_TRUST_TORCHSCRIPT`` is ``1`` or ``true``.

    Read by the app only (the server process, when a training job is made); the CLI never reads
    it: there ``--trust-code`` on the command line is the only way to load TorchScript.
    """
    return os.environ.get(TRUST_TORCHSCRIPT_ENV, "").strip().lower() in ("1", "true")


SAFE_MODEL_HINT = (
    "bring the model safely instead: its state_dict as .safetensors "
    "(safetensors.torch.save_file(model.state_dict(), 'model.safetensors')) plus its architecture "
    "(a built-in teacher/student, a torchvision or timm model name), or compute its embeddings "
    "yourself and load them on Diagnose"
)


def torchscript_refused(name: str) -> InputFileError:
    """The error for a TorchScript archive that nobody said to trust (the message says what to do)."""
    return InputFileError(
        f"{name!r} is a TorchScript archive: loading it runs the code it carries (PyTorch loads only "
        f"TorchScript you trust), so perco_viz refuses it by default; {SAFE_MODEL_HINT}. Only for a "
        "file you made yourself: pass --trust-code on the perco-viz command line (in the app the operator "
        f"must start the server with {TRUST_TORCHSCRIPT_ENV}=1)"
    )


_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


def trusted_module_prefixes() -> tuple[str, ...]:
    """The operator's list of importable modules: ``$PERCO_VIZ_TRUSTED_MODULES`` split at commas.

    An entry allows that module and everything below it (``mypkg`` allows ``mypkg.nets``, not
    ``mypkg2``). Entries that are not dotted Python names are ignored.
    """
    raw = os.environ.get(TRUSTED_MODULES_ENV, "")
    return tuple(e for e in (part.strip() for part in raw.split(",")) if _DOTTED.fullmatch(e))


def module_allowed(module: str, *, trust: bool = False) -> bool:
    """Whether ``module`` may be imported: ``trust`` (the CLI's ``--trust-code``, ``trust_code=True``,
    an app operator trusting code), or a prefix match in :func:`trusted_module_prefixes`."""
    if not _DOTTED.fullmatch(module or ""):
        return False
    return trust or any(module == p or module.startswith(p + ".") for p in trusted_module_prefixes())


def import_class(spec: str, *, trust: bool = False) -> Any:
    """The object ``Class`` of ``"package.module:Class"``, importing the module only when allowed.

    Importing a module runs its code, so this is the one gate for ``module:Class`` models: the
    module must be allowed (:func:`module_allowed`). It is imported by name from the installed
    packages with :func:`importlib.import_module`; the import path (``sys.path``) is never changed,
    so nothing is imported from a folder an uploader controls.

    Raises:
        ValueError: ``spec`` is not ``module:Class``, the module is not allowed (the message says how
            to allow it), cannot be imported, or has no attribute ``Class``.
    """
    module, sep, name = (spec or "").strip().partition(":")
    if not sep or not _DOTTED.fullmatch(module) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"a model class is given as 'package.module:Class' (e.g. mypkg.nets:ResNet8), got {spec!r}")
    if not module_allowed(module, trust=trust):
        top = module.split(".")[0]
        raise ValueError(
            f"perco_viz does not import {module!r}: importing a module runs its code, so only modules "
            f"that were allowed are imported. On the command line pass --trust-code (trust_code=True in "
            f"Python); on an app server the operator starts it with {TRUSTED_MODULES_ENV}={top} "
            "(comma-separated package names; each allows the modules below it)"
        )
    try:
        loaded = importlib.import_module(module)
    except Exception as exc:  # ImportError, or an error raised by the module's own code
        raise ValueError(
            f"the module {module!r} could not be imported ({type(exc).__name__}: {_first_line(exc)}); install "
            "the package that defines it (e.g. pip install -e . in its project); perco_viz imports installed "
            "modules only and never adds folders to the import path"
        ) from None
    if not hasattr(loaded, name):
        raise ValueError(f"the module {module!r} has no {name!r}; check the class name in {spec!r}")
    return getattr(loaded, name)


def check_zip_unpacked(source: PathLike | IO[bytes], name: str, *, max_bytes: int | None = None) -> int:
    """Refuse a zip (``torch.save`` file, ``.npz``) whose members declare more than the limit unpacked.

    The sizes come from the central directory, without unpacking anything. ``zipfile`` and
    PyTorch's reader both stop a member at its declared size (and check its CRC), so a member
    that lies small cannot grow past it either.

    Args:
        source: the zip file (path or seekable binary stream).
        name: the name for messages.
        max_bytes: the limit (``None``: ``$PERCO_VIZ_MAX_FILE_MB``).

    Returns:
        The declared unpacked size in bytes.
    """
    try:
        with zipfile.ZipFile(source) as zf:
            unpacked = sum(info.file_size for info in zf.infolist())
    except Exception as exc:  # BadZipFile, NotImplementedError("zip file version"), ...
        raise InputFileError(f"{name!r} is not a readable zip archive ({_first_line(exc)}); save it again") from None
    limit = max_file_bytes() if max_bytes is None else max_bytes
    if unpacked > limit:
        raise InputFileError(
            f"{name!r} unpacks to {_mb(unpacked)}, above the {_mb(limit)} limit (refused before unpacking); "
            f"use a smaller file or raise the limit with the environment variable {MAX_FILE_ENV}"
        )
    return unpacked


def _check_safetensors_header(path: Path) -> None:
    """The 8-byte header length of a ``.safetensors`` must fit the file and the library's cap."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
    n = int.from_bytes(head, "little") if len(head) == 8 else -1
    if n < 2 or n > size - 8 or n > SAFETENSORS_MAX_HEADER:
        raise InputFileError(
            f"{path.name!r} is not a valid .safetensors file: its header claims {max(n, 0)} bytes in a "
            f"{size}-byte file; the file is truncated, damaged or forged, save it again"
        )


def _load_safetensors_file(path: Path) -> Any:
    from safetensors.torch import load_file

    _check_safetensors_header(path)  # tensors are raw bytes inside the file: bounded by its size
    return load_file(str(path), device="cpu")


def _check_torch_file(path: Path, max_bytes: int | None = None) -> None:
    """A ``torch.save`` file: TorchScript refused, a zip's unpacked size within the limit."""
    if zipfile.is_zipfile(path):
        if is_torchscript_archive(path):
            raise InputFileError(
                f"{path.name!r} is a TorchScript archive, not a state_dict (and loading TorchScript runs the "
                f"code it carries); {SAFE_MODEL_HINT}"
            )
        check_zip_unpacked(path, path.name, max_bytes=max_bytes)
    # A legacy (pre-zip) torch file stores its tensors as raw, uncompressed bytes inside the file:
    # a storage is reserved at its declared size (untouched pages) and filled from the file, whose
    # own size record must match, so what is read stays within its size on disk (check_file);
    # weights_only refuses its objects. (tests/test_unpack_limits.py: a declared 4 GiB, 1.5 MB.)


def load_torch_checkpoint(path: PathLike, *, max_bytes: int | None = None, map_location: Any = "cpu") -> Any:
    """A ``torch.save`` file (a run's resume checkpoint) read with ``weights_only=True`` within the limits.

    Raises:
        InputFileError: missing, too big on disk or unpacked, TorchScript, unreadable, or holding
            Python objects (refused, never executed).
    """
    p = check_file(path, max_bytes=max_bytes, what="checkpoint")
    try:
        return _load_torch_file(p, max_bytes=max_bytes, map_location=map_location)
    except InputFileError:
        raise
    except Exception as exc:
        raise InputFileError(
            f"{p.name!r} could not be read ({type(exc).__name__}: {_first_line(exc)}); the file may be "
            "truncated or corrupt"
        ) from None


def _load_torch_file(path: Path, max_bytes: int | None = None, map_location: Any = "cpu") -> Any:
    _check_torch_file(path, max_bytes)
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4": noise on a refused file
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise InputFileError(
            f"{path.name!r}: this file contains Python code/objects, which perco_viz refuses to "
            "unpickle; re-save it with safetensors or as a plain state_dict "
            "(torch.save(model.state_dict(), path))"
        ) from None


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
    suffix = p.suffix.lower()
    if suffix not in STATE_DICT_SUFFIXES:
        raise InputFileError(
            f"{p.name!r}: unknown weights format {p.suffix!r}; use one of {', '.join(STATE_DICT_SUFFIXES)}"
        )
    try:
        obj = _load_safetensors_file(p) if suffix == ".safetensors" else _load_torch_file(p, max_bytes)
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


def load_torchscript(path: PathLike, *, trust: bool = False, max_bytes: int | None = None) -> torch.jit.ScriptModule:
    """Load a TorchScript module (``torch.jit.save``) onto the CPU, only when told to trust it.

    Loading TorchScript runs the code the archive carries (its compiled methods, ``__setstate__``
    among them, can write files), so it is refused unless ``trust=True``: the CLI's
    ``--trust-code``, or the app operator's :data:`TRUST_TORCHSCRIPT_ENV`.

    Args:
        path: the archive.
        trust: the caller vouches for the file (the user's own file on their own command line).
        max_bytes: size limit on disk and unpacked (``None``: ``$PERCO_VIZ_MAX_FILE_MB``).

    Raises:
        InputFileError: not trusted (the message says how to bring the model safely), missing,
            too big on disk or unpacked, or not a TorchScript archive.
    """
    p = check_file(path, max_bytes=max_bytes, what="TorchScript file")
    if not trust:
        raise torchscript_refused(p.name)
    if zipfile.is_zipfile(p):
        check_zip_unpacked(p, p.name, max_bytes=max_bytes)
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


# ----------------------------------------------------------------------------- bounded .npz/.npy


NPY_MAGIC = b"\x93NUMPY"
_CHUNK = 1 << 20  # bytes read per step while unpacking


def _open_source(source: Source, name: str | None, max_bytes: int | None) -> tuple[IO[bytes], str, bool]:
    """A seekable binary stream over ``source``, its name, and whether we opened it (and must close it).

    A path is checked with :func:`check_file`; bytes are wrapped; a file object is used as is
    when seekable, else read (at most the limit plus one byte) into memory.
    """
    if isinstance(source, (str, os.PathLike)):
        p = check_file(source, max_bytes=max_bytes, what="array file")
        return open(p, "rb"), name or p.name, True
    if name is None:
        name = str(getattr(source, "name", "") or "") or None
    if name is None:
        raise InputFileError("give the file name (e.g. name='points.npz') so its format is known")
    limit = max_file_bytes() if max_bytes is None else max_bytes
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif getattr(source, "seekable", lambda: False)():
        start = source.tell()
        size = source.seek(0, io.SEEK_END) - start
        source.seek(start)
        if size <= 0:
            raise InputFileError(f"{name!r} is empty (0 bytes); upload the file again")
        check_size(size, repr(name), max_bytes)
        return source, name, False
    else:
        data = source.read(limit + 1)
    if not data:
        raise InputFileError(f"{name!r} is empty (0 bytes); upload the file again")
    check_size(len(data), repr(name), max_bytes)
    return io.BytesIO(data), name, True


def _read_exactly_into(fp: IO[bytes], out: np.ndarray, what: str) -> None:
    """Fill ``out``'s bytes from ``fp`` in chunks; a short read is a truncated file."""
    if out.nbytes == 0:
        return
    view = memoryview(out.reshape(-1).view(np.uint8))
    pos = 0
    while pos < len(view):
        n = fp.readinto(view[pos : pos + _CHUNK])  # type: ignore[attr-defined]
        if not n:
            raise InputFileError(f"{what} is truncated: it ends before the data its header declares; save it again")
        pos += n


def _read_npy_stream(fp: IO[bytes], *, available: int, budget: int, what: str, limit: int,
                     member: bool = False) -> np.ndarray:
    """One ``.npy`` array from ``fp``, refused before allocation when its header asks too much.

    Args:
        fp: stream positioned at the ``\\x93NUMPY`` magic.
        available: bytes the stream holds from its current position (the member's unpacked size).
        budget: bytes still allowed for arrays in this file.
        what: name for messages.
        limit: the file's whole unpacked-size limit (for the message).
        member: ``fp`` is a member of a ``.npz`` archive (not a whole file).
    """
    start = fp.tell()
    magic = fp.read(len(NPY_MAGIC) + 2)
    if not magic.startswith(NPY_MAGIC) or len(magic) < len(NPY_MAGIC) + 2:
        raise _not_numpy(what, magic, member=member)
    version = (magic[-2], magic[-1])
    try:
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except Exception as exc:  # ValueError, SyntaxError, tokenize.TokenError on a damaged header
        raise InputFileError(f"{what} is not a readable .npy array ({_first_line(exc)}); save it with np.save / np.savez") from None
    if dtype.hasobject:
        raise InputFileError(
            f"{what} holds pickled Python objects (dtype {dtype}), which perco_viz refuses to unpickle; "
            "save plain numeric/string arrays with np.savez / np.save"
        )
    if any(int(dim) < 0 for dim in shape):
        raise InputFileError(f"{what} declares a negative shape {tuple(shape)}; the file is forged or corrupt")
    count = 1
    for dim in shape:
        count *= int(dim)
    nbytes = count * dtype.itemsize
    available -= fp.tell() - start
    if nbytes > budget:
        raise InputFileError(
            f"{what} declares an array of shape {tuple(shape)} ({_mb(nbytes)}), which would take the file past "
            f"its {_mb(limit)} unpacked limit; use a smaller file or raise the limit with the environment "
            f"variable {MAX_FILE_ENV}"
        )
    if nbytes > available:
        raise InputFileError(
            f"{what} declares an array of shape {tuple(shape)} ({_mb(nbytes)}) but holds only "
            f"{_mb(max(available, 0))}; the file is truncated or forged, save it again"
        )
    try:
        out = np.empty(count, dtype=dtype)
    except (ValueError, MemoryError) as exc:  # e.g. 2^62 items of a zero-size dtype
        raise InputFileError(f"{what} declares an impossible array of shape {tuple(shape)} ({_first_line(exc)})") from None
    _read_exactly_into(fp, out, what)
    if fortran:
        return out.reshape(shape[::-1]).transpose()
    return out.reshape(shape)


def _not_numpy(what: str, head: bytes, *, member: bool = False) -> InputFileError:
    """The error for a file (or an archive's member) that does not start like a NumPy file.

    A whole file is "not a valid .npz (zip) archive" whatever its bytes: a text file is never
    called a pickle. Pickles are named only where they are: a file that starts like one (the
    PROTO opcode ``\\x80`` and a protocol 2-5) or an archive member holding one.
    """
    pickled = len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5
    if member:
        if pickled:
            return InputFileError(
                f"{what} is not a NumPy array: it holds a pickle (Python objects), which perco_viz refuses to "
                "unpickle; save plain numeric/string arrays with np.savez / np.save"
            )
        return InputFileError(f"{what} is not a readable NumPy array; save the arrays with np.savez")
    if pickled:
        return InputFileError(
            f"{what} is not a readable NumPy file: it is not a valid .npz (zip) archive but a pickle (Python "
            "objects), which perco_viz refuses to unpickle; save plain numeric/string arrays with np.savez"
        )
    return InputFileError(
        f"{what} is not a readable NumPy file: it is not a valid .npz (zip) archive nor a .npy array (its first "
        "bytes are neither; a text file renamed?); save the arrays with np.savez (or np.save for one array)"
    )


def load_npz(source: Source, *, name: str | None = None, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Read a ``.npz`` (or a single ``.npy``) within a size limit on what it unpacks to.

    The zip's central directory is checked first (the members' declared unpacked sizes must fit
    the limit), then every array's ``.npy`` header (shape x itemsize must fit what is left and
    what the member holds) before anything is allocated; members are streamed in chunks and
    ``zipfile`` stops each at its declared size and checks its CRC, so a forged small size can
    not expand memory either. Object arrays (pickles) are refused, never unpickled.

    Args:
        source: a path, the file's bytes, or a binary file object (an upload).
        name: the name for messages (required for bytes unless the file object has ``.name``).
        max_bytes: limit for the file on disk and for its unpacked arrays together
            (``None``: ``$PERCO_VIZ_MAX_FILE_MB``).

    Returns:
        member name (without ``.npy``) -> array; a bare ``.npy`` gives ``{"arr_0": array}``
        (the name ``np.savez`` gives a positional array).

    Raises:
        InputFileError: too big on disk or unpacked, not a valid .npz (zip) archive or .npy file,
            truncated, corrupt (bad CRC), or an archive holding pickled objects (object arrays).
    """
    limit = max_file_bytes() if max_bytes is None else max_bytes
    fp, name, owned = _open_source(source, name, max_bytes)
    try:
        start = fp.tell()
        magic = fp.read(len(NPY_MAGIC))
        size = fp.seek(0, io.SEEK_END) - start
        fp.seek(start)
        if magic == NPY_MAGIC:
            return {"arr_0": _read_npy_stream(fp, available=size, budget=limit, what=repr(name), limit=limit)}
        if not magic.startswith(b"PK"):
            raise _not_numpy(repr(name), magic)
        return _read_npz_members(fp, name, limit)
    finally:
        if owned:
            fp.close()


def _read_npz_members(fp: IO[bytes], name: str, limit: int) -> dict[str, np.ndarray]:
    try:
        zf = zipfile.ZipFile(fp)
    except Exception as exc:  # BadZipFile, NotImplementedError("zip file version"), ...
        raise InputFileError(f"{name!r} is not a readable .npz file: not a valid .npz (zip) archive "
                             f"({_first_line(exc)}); save the arrays with np.savez") from None
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        declared = sum(i.file_size for i in infos)
        if declared > limit:
            raise InputFileError(
                f"{name!r} unpacks to {_mb(declared)}, above the {_mb(limit)} limit (refused before unpacking); "
                f"use a smaller file or raise the limit with the environment variable {MAX_FILE_ENV}"
            )
        odd = [i.filename for i in infos if not i.filename.endswith(".npy")]
        if odd:
            raise InputFileError(
                f"{name!r}: members {sorted(odd)[:5]} are not NumPy arrays; is it really an .npz? "
                "save the arrays with np.savez"
            )
        arrays: dict[str, np.ndarray] = {}
        budget = limit
        for info in infos:
            what = f"{name!r} member {info.filename!r}"
            try:
                with zf.open(info) as member:
                    arr = _read_npy_stream(member, available=info.file_size, budget=budget, what=what, limit=limit,
                                           member=True)
                    while member.read(_CHUNK):  # trailing bytes (at most the declared size): reach the CRC check
                        pass
            except InputFileError:
                raise
            except Exception as exc:  # BadZipFile (bad CRC), zlib.error, EOFError, NotImplementedError
                raise InputFileError(
                    f"{what} could not be unpacked ({type(exc).__name__}: {_first_line(exc)}); "
                    "the file is corrupt or forged, save it again with np.savez"
                ) from None
            budget -= arr.nbytes
            arrays[info.filename[: -len(".npy")]] = arr
    return arrays


# ----------------------------------------------------------------------------- arrays


ArrayResult = tuple[np.ndarray, np.ndarray | None, pd.DataFrame | None]


def load_array_file(
    path_or_bytes: Source,
    *,
    name: str | None = None,
    label_column: str | None = None,
    max_bytes: int | None = None,
    mmap: bool = False,
) -> ArrayResult:
    """Read features (and labels, metadata) from a ``.npz``, ``.npy``, ``.csv`` or ``.parquet`` file.

    * ``.npz``: the feature array under ``X`` (or ``features``/``embeddings``); labels under
      ``y``/``labels`` (optional); other 1-D arrays of length n become metadata columns.
      Read with ``allow_pickle=False``.
    * ``.npy``: the feature array alone. With ``mmap`` and a path to a 2-D float32 array, the
      array is memory-mapped read-only (``np.load(mmap_mode="r", allow_pickle=False)`` after its
      header is checked against the file's size): nothing is read into memory but the
      finiteness check, which reads it in blocks (:func:`check_finite_rows`).
    * ``.csv`` (with a header row): numeric columns are features; the label column is
      ``label_column`` or else a column named ``label``/``y``; other non-numeric columns
      become metadata.
    * ``.parquet``: as a CSV (numeric columns are features, ``label``/``y`` the labels); its
      row count, column count and uncompressed size (from the file's footer) are checked
      against the limits before any column is decoded.

    Args:
        path_or_bytes: a path, the file's bytes, or a binary file object (an upload).
        name: file name, whose suffix picks the format (required for bytes/file objects).
        label_column: CSV column holding labels.
        max_bytes: size limit (``None``: ``$PERCO_VIZ_MAX_FILE_MB``).
        mmap: memory-map a float32 ``.npy`` given by path (other files are read as usual).

    Returns:
        ``X`` (n, d) float32 (a read-only ``np.memmap`` when memory-mapped), ``y`` (n,) labels as
        stored (ints or strings) or ``None``, and ``meta`` (n rows) or ``None``.

    Raises:
        InputFileError: unknown format, missing arrays/columns, NaN/inf rows, empty, not 2-D.
    """
    if mmap and isinstance(path_or_bytes, (str, os.PathLike)) and Path(name or path_or_bytes).suffix.lower() == ".npy":
        mapped = _memmap_npy(path_or_bytes, name, max_bytes)
        if mapped is not None:
            return mapped, None, None
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


MMAP_BLOCK_ROWS = 65_536  # rows per block of the finiteness check of a memory-mapped array


def _memmap_npy(path: PathLike, name: str | None, max_bytes: int | None) -> np.ndarray | None:
    """A 2-D float32 ``.npy`` file memory-mapped read-only after its header is checked (None for
    any other dtype or shape: those are read into memory as usual)."""
    p = check_file(path, max_bytes=max_bytes, what="array file")
    name = name or p.name
    with open(p, "rb") as fp:
        magic = fp.read(len(NPY_MAGIC) + 2)
        if not magic.startswith(NPY_MAGIC) or len(magic) < len(NPY_MAGIC) + 2:
            raise _not_numpy(repr(name), magic)
        try:
            reader = {(1, 0): np.lib.format.read_array_header_1_0,
                      (2, 0): np.lib.format.read_array_header_2_0}[(magic[-2], magic[-1])]
            shape, fortran, dtype = reader(fp)
        except Exception as exc:  # KeyError (version), ValueError, SyntaxError on a damaged header
            raise InputFileError(f"{name!r} is not a readable .npy array ({_first_line(exc)}); "
                                 "save it with np.save") from None
        offset = fp.tell()
    if dtype != np.dtype("<f4") or len(shape) != 2 or fortran:
        return None
    n_bytes = int(shape[0]) * int(shape[1]) * dtype.itemsize
    if n_bytes > p.stat().st_size - offset:
        raise InputFileError(f"{name!r} declares an array of shape {tuple(shape)} ({_mb(n_bytes)}) but holds only "
                             f"{_mb(max(p.stat().st_size - offset, 0))}; the file is truncated or forged, save it again")
    X = np.load(p, mmap_mode="r", allow_pickle=False)
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise InputFileError(f"{name!r}: features have shape {X.shape}; need at least 1 row and 1 column")
    check_finite_rows(X, name)
    return X


def check_finite_rows(X: np.ndarray, name: str, block_rows: int = MMAP_BLOCK_ROWS) -> None:
    """Refuse (n, d) features holding NaN/inf, read in blocks of rows (a memory-mapped array is
    never read whole); the message names how many rows and the first ones.

    Raises:
        InputFileError: some row holds NaN or ±inf.
    """
    bad: list[int] = []
    count = 0
    for start in range(0, len(X), block_rows):
        rows = np.flatnonzero(~np.isfinite(np.asarray(X[start:start + block_rows])).all(axis=1))
        count += len(rows)
        bad.extend((rows[: max(0, 5 - len(bad))] + start).tolist())
    if count:
        raise InputFileError(f"{name!r}: {count} of {len(X)} rows contain NaN/inf (first rows {bad}); "
                             "remove or impute those rows")


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


def _read_npz(data: bytes, name: str, label_column: str | None) -> tuple[Any, Any, Any]:
    arrays = load_npz(data, name=name)
    if set(arrays) == {"arr_0"}:  # a bare .npy, or np.savez(path, X)
        arrays = {"X": arrays["arr_0"]}
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


def _env_int(env: str, default: int) -> int:
    raw = os.environ.get(env, str(default))
    try:
        return int(float(raw))
    except ValueError:
        raise InputFileError(f"{env}={raw!r} is not a whole number; set e.g. {default}") from None


def check_csv_shape(data: bytes, name: str) -> None:
    """Refuse a CSV with more columns than ``$PERCO_VIZ_MAX_COLUMNS`` (default 4096) or more rows
    than ``$PERCO_VIZ_MAX_ROWS`` (default 5,000,000), counted on the raw bytes before pandas
    parses anything (a 1 MB header of 100k columns costs pandas ~20 s of CPU)."""
    max_cols = _env_int(MAX_COLUMNS_ENV, DEFAULT_MAX_COLUMNS)
    max_rows = _env_int(MAX_ROWS_ENV, DEFAULT_MAX_ROWS)
    end = data.find(b"\n")
    end = len(data) if end < 0 else end
    columns = data.count(b",", 0, end) + 1  # quoted commas overcount: then the csv module decides
    if columns > max_cols and end <= 2**20:
        first = next(csv.reader([data[:end].decode("utf-8", "replace")]), [])
        columns = len(first)
    if columns > max_cols:
        raise InputFileError(
            f"{name!r} has {columns} columns, above the {max_cols}-column limit; reduce the features "
            f"(e.g. PCA) or raise the limit with the environment variable {MAX_COLUMNS_ENV}"
        )
    rows = data.count(b"\n")
    if rows > max_rows + 1:
        raise InputFileError(
            f"{name!r} has about {rows} rows, above the {max_rows}-row limit; subsample it or raise "
            f"the limit with the environment variable {MAX_ROWS_ENV}"
        )


def read_csv_limited(data: bytes, name: str, **kwargs: Any) -> pd.DataFrame:
    """``pd.read_csv`` on bytes after :func:`check_csv_shape`; any parse error is an :class:`InputFileError`."""
    check_csv_shape(data, name)
    try:
        return pd.read_csv(io.BytesIO(data), **kwargs)
    except Exception as exc:
        raise InputFileError(f"{name!r} is not a readable CSV file ({_first_line(exc)})") from None


def _read_csv(data: bytes, name: str, label_column: str | None) -> tuple[Any, Any, Any]:
    df = read_csv_limited(data, name)
    if len(df.columns) and all(_is_number(c) for c in df.columns):  # no header row
        df = read_csv_limited(data, name, header=None)
        df.columns = [str(c) for c in df.columns]
    return _split_table(df, name, label_column)


def _split_table(df: pd.DataFrame, name: str, label_column: str | None) -> tuple[Any, Any, Any]:
    """A table's numeric columns (features), its label column and the other columns (metadata)."""
    label = _pick_label_column(df, label_column, name)
    y = df.pop(label).to_numpy() if label else None
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
    _check_mostly_numeric(df.drop(columns=numeric), name)
    if not numeric:
        raise InputFileError(f"{name!r} has no numeric feature columns (columns: {list(df.columns)[:10]})")
    meta = df.drop(columns=numeric).reset_index(drop=True)
    return df[numeric].to_numpy(dtype=np.float64), y, meta if len(meta.columns) else None


def _read_parquet(data: bytes, name: str, label_column: str | None) -> tuple[Any, Any, Any]:
    return _split_table(read_parquet_limited(data, name), name, label_column)


def read_parquet_limited(data: bytes, name: str) -> pd.DataFrame:
    """A Parquet file as a table: its footer (rows, columns, decoded size) checked against the
    limits first (``$PERCO_VIZ_MAX_ROWS``, ``$PERCO_VIZ_MAX_COLUMNS``, ``$PERCO_VIZ_MAX_FILE_MB``),
    then the columns decoded by pyarrow (no pickles: Arrow's types only); any failure is an
    :class:`InputFileError`."""
    pq = require("pyarrow.parquet", install="pyarrow", purpose="reading .parquet files")
    pa = require("pyarrow", install="pyarrow", purpose="reading .parquet files")
    try:
        pf = pq.ParquetFile(pa.BufferReader(data))
        meta = pf.metadata
        rows, columns = int(meta.num_rows), int(meta.num_columns)
        encoded = sum(int(meta.row_group(i).total_byte_size) for i in range(meta.num_row_groups))
        width = 0  # bytes per row of the decoded fixed-width columns (dictionary/RLE can hide them)
        for f in pf.schema_arrow:
            try:
                width += max(1, f.type.bit_width // 8)
            except ValueError:  # variable width (text): its encoded size counts
                pass
        unpacked = max(encoded, rows * width)
    except Exception as exc:
        raise InputFileError(f"{name!r} is not a readable Parquet file ({_first_line(exc)}); save it with "
                             "DataFrame.to_parquet") from None
    max_cols = _env_int(MAX_COLUMNS_ENV, DEFAULT_MAX_COLUMNS)
    max_rows = _env_int(MAX_ROWS_ENV, DEFAULT_MAX_ROWS)
    if columns > max_cols:
        raise InputFileError(f"{name!r} has {columns} columns, above the {max_cols}-column limit; reduce the features "
                             f"(e.g. PCA) or raise the limit with the environment variable {MAX_COLUMNS_ENV}")
    if rows > max_rows:
        raise InputFileError(f"{name!r} has {rows} rows, above the {max_rows}-row limit; subsample it or raise the "
                             f"limit with the environment variable {MAX_ROWS_ENV}")
    check_size(unpacked, f"{name!r} unpacked", None)
    try:
        df = pf.read().to_pandas()
    except Exception as exc:
        raise InputFileError(f"{name!r} could not be decoded ({_first_line(exc)}); save it again with "
                             "DataFrame.to_parquet") from None
    df.columns = [str(c) for c in df.columns]
    return df.reset_index(drop=True)


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
    ".parquet": _read_parquet,
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
