"""Hostile and broken files are refused through every entrance (issue 7).

Hostile: pickles whose payload would create a marker file when unpickled (``__reduce__``
returning ``(pathlib.Path.touch, (marker,))``), written with ``pickle`` and with
``torch.save`` under every suffix a user may bring, plus NumPy object arrays, an .npz whose
``X.npy`` member is a raw pickle, a zip dressed up as TorchScript around the payload, and
safetensors whose perco_viz metadata is forged. Each is fed to every entrance: the
``safe_io`` loaders, ``models.load_teacher`` (kinds safetensors, torchscript, and
torchvision/timm where installed), ``models.build_student`` (arch ``file``),
``data.load_dataset`` (npz, csv) and the CLI in a subprocess. Every one must be refused with
``InputFileError``, and the marker must never appear; control tests show that an unsafe
loader would have run the payload.

Broken: truncated and corrupted safetensors (header and data), empty files, a directory, a
missing path, a file over ``$PERCO_VIZ_MAX_FILE_MB``, NaN features, text in a CSV feature
column, unknown loss and dataset names. Each gives a clear error; on the CLI a non-zero exit,
one ``error:`` line on stderr and no traceback.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import pathlib
import pickle
import subprocess
import sys
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from perco_viz import models
from perco_viz.config import DataConfig, RunConfig, StudentConfig, TeacherConfig
from perco_viz.data import load_dataset
from perco_viz.safe_io import (
    InputFileError,
    OptionalDependencyError,
    load_array_file,
    load_state_dict,
    load_torchscript,
    read_safetensors_metadata,
    save_safetensors,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".npz", ".npy", ".csv")


class Payload:
    """Unpickling this calls ``pathlib.Path.touch(marker)``: proof that code ran."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


class CodeOnLoad(torch.nn.Module):
    """A real TorchScript module whose loading runs code: its compiled ``__setstate__`` (which
    ``torch.jit.load`` calls) maps ``path`` with ``torch.from_file(shared=True)``, which creates
    that file. TorchScript that can create a file can write one: proof that code ran."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.stash = torch.zeros(1, dtype=torch.uint8)

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.path, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.path = state[0]
        self.training = state[1]
        self.stash = torch.from_file(self.path, True, 16, dtype=torch.uint8)  # creates the file

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def write_code_on_load(path: pathlib.Path, marker: pathlib.Path) -> pathlib.Path:
    """Script and save :class:`CodeOnLoad` (saving runs nothing: the marker is made on load)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch >= 2.10 deprecates TorchScript
        torch.jit.script(CodeOnLoad(str(marker))).save(str(path))
    assert not marker.exists()
    return path


def write_hostile(folder: pathlib.Path, marker: pathlib.Path) -> dict[str, pathlib.Path]:
    """Every hostile file, by a short name; each would touch ``marker`` if unpickled."""
    folder.mkdir(parents=True, exist_ok=True)
    evil = Payload(marker)
    files: dict[str, pathlib.Path] = {}

    def put(name: str, data: bytes) -> None:
        files[name] = folder / name
        files[name].write_bytes(data)

    for suffix in SUFFIXES:
        put(f"pickle{suffix}", pickle.dumps({"state_dict": {"weight": evil}}))
        buf = io.BytesIO()
        torch.save({"weight": evil}, buf)
        put(f"torchsave{suffix}", buf.getvalue())
    buf = io.BytesIO()
    torch.save({"weight": torch.zeros(2, 2), "bias": torch.zeros(2), "extra": evil}, buf)
    put("state_dict_with_payload.pt", buf.getvalue())
    buf = io.BytesIO()
    np.save(buf, np.array([evil, 1.0], dtype=object), allow_pickle=True)
    put("object_array.npy", buf.getvalue())
    buf = io.BytesIO()
    np.savez(buf, X=np.array([[evil, 1.0]], dtype=object), y=np.array([0]))
    put("object_array.npz", buf.getvalue())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:  # the member's name says .npy, its bytes are a pickle
        zf.writestr("X.npy", pickle.dumps(evil))
    put("member_pickle.npz", buf.getvalue())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:  # looks like TorchScript (code/), routed to torch.jit.load
        zf.writestr("archive/data.pkl", pickle.dumps({"weight": evil}, protocol=2))
        zf.writestr("archive/constants.pkl", pickle.dumps((evil,), protocol=2))
        zf.writestr("archive/code/__torch__.py", "def forward(self, x):\n    return x\n")
        zf.writestr("archive/version", "3\n")
    put("fake_torchscript.pt", buf.getvalue())
    files["code_on_load.pt"] = write_code_on_load(folder / "code_on_load.pt", marker)
    return files


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    marker = root / "MARKER_code_ran"
    return marker, write_hostile(root / "files", marker)


@pytest.fixture(scope="module")
def blobs():
    return load_dataset(DataConfig(name="blobs", n_samples=60))


def _teacher(kind: str):
    def load(path, ds):
        if kind in ("torchvision", "timm"):
            pytest.importorskip(kind)
        return models.load_teacher(TeacherConfig(kind=kind, arch="resnet18", path=str(path)), ds)
    return load


ENTRANCES = {
    "safe_io.load_state_dict": lambda p, ds: load_state_dict(p),
    "safe_io.load_array_file": lambda p, ds: load_array_file(p),
    "safe_io.load_torchscript": lambda p, ds: load_torchscript(p),
    "safe_io.read_safetensors_metadata": lambda p, ds: read_safetensors_metadata(p),
    "models.load_teacher[safetensors]": _teacher("safetensors"),
    "models.load_teacher[torchscript]": _teacher("torchscript"),
    "models.load_teacher[torchvision]": _teacher("torchvision"),
    "models.load_teacher[timm]": _teacher("timm"),
    "models.build_student[file]": lambda p, ds: models.build_student(StudentConfig(arch="file", path=str(p)), ds),
    "data.load_dataset[npz]": lambda p, ds: load_dataset(DataConfig(name="npz", path=str(p))),
    "data.load_dataset[csv]": lambda p, ds: load_dataset(DataConfig(name="csv", path=str(p))),
}
HOSTILE_NAMES = sorted([  # the names write_hostile makes (test_the_payload_is_live checks)
    *(f"{kind}{s}" for kind in ("pickle", "torchsave") for s in SUFFIXES),
    "state_dict_with_payload.pt", "object_array.npy", "object_array.npz", "member_pickle.npz",
    "fake_torchscript.pt", "code_on_load.pt",
])


def test_the_payload_is_live(tmp_path):
    """Control: unsafe loaders do run it, so a refusal below is a real refusal."""
    marker = tmp_path / "control"
    files = write_hostile(tmp_path / "files", marker)
    assert sorted(files) == HOSTILE_NAMES
    pickle.loads(files["pickle.pt"].read_bytes())
    assert marker.exists()
    marker.unlink()
    # torch.save's format is a zip around a pickle: unpickling that member runs the payload
    # (what torch.load without weights_only would do; this suite never calls it so)
    with zipfile.ZipFile(files["torchsave.pt"]) as archive:
        member = next(n for n in archive.namelist() if n.endswith("data.pkl"))
        pickle.loads(archive.read(member))
    assert marker.exists()
    marker.unlink()
    np.load(files["object_array.npy"], allow_pickle=True)
    assert marker.exists()
    marker.unlink()
    with warnings.catch_warnings():  # TorchScript runs its code on load: what every entrance must refuse
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.load(str(files["code_on_load.pt"]))
    assert marker.exists() and marker.stat().st_size == 16


@pytest.mark.parametrize("entrance", sorted(ENTRANCES))
@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_file_is_refused(hostile, blobs, entrance, name):
    marker, files = hostile
    with pytest.raises(InputFileError) as info:
        ENTRANCES[entrance](files[name], blobs)
    message = str(info.value)
    assert message.strip() and "\n" not in message
    assert not marker.exists(), f"{entrance} ran the payload of {name}"


@pytest.mark.parametrize("kind", ["torchvision", "timm"])
def test_missing_optional_teacher_package_is_an_install_hint(hostile, blobs, kind):
    if importlib.util.find_spec(kind) is not None:
        pytest.skip(f"{kind} is installed: test_hostile_file_is_refused covers it")
    marker, files = hostile
    with pytest.raises(OptionalDependencyError, match=f"pip install {kind}"):
        models.load_teacher(TeacherConfig(kind=kind, arch="resnet18", path=str(files["torchsave.pt"])), blobs)
    assert not marker.exists()


def test_pickled_payloads_never_ran(hostile):
    """After every entrance above (module order), the marker is still absent."""
    marker, _ = hostile
    assert not marker.exists()


# ----------------------------------------------------------------------------- broken files
def _teacher_file(ds, folder: pathlib.Path) -> pathlib.Path:
    """A valid built-in teacher for ``ds`` as perco_viz writes it."""
    return models.save_model_safetensors(models.teacher_architecture(ds), folder / "teacher.safetensors")


def _header_len(data: bytes) -> int:
    return 8 + int.from_bytes(data[:8], "little")


def _broken_weights(ds, folder: pathlib.Path) -> dict[str, pathlib.Path]:
    good = _teacher_file(ds, folder).read_bytes()
    h = _header_len(good)
    nan_model = models.teacher_architecture(ds)
    with torch.no_grad():
        nan_model.body[1].weight[0, 0] = float("nan")  # what a flipped exponent byte gives
    state = {k: v.contiguous() for k, v in models.teacher_architecture(ds).state_dict().items()}
    meta = {"perco_viz.arch": "TeacherMLP",
            "perco_viz.config": json.dumps({"in_shape": [10**6], "n_classes": 10**6, "hidden": 10**6})}
    bomb = folder / "forged_config.safetensors"
    save_safetensors(state, bomb, metadata=meta)
    files = {
        "truncated_header.safetensors": good[: h // 2],
        "truncated_data.safetensors": good[: h + (len(good) - h) // 2],
        "flipped_header.safetensors": good[:8] + bytes(b ^ 0x5A for b in good[8:24]) + good[24:],
        "flipped_length.safetensors": (len(good) * 7).to_bytes(8, "little") + good[8:],
        "empty.safetensors": b"",
        "empty.pt": b"",
    }
    out = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        out[name] = folder / name
    out["nan_weights.safetensors"] = models.save_model_safetensors(nan_model, folder / "nan_weights.safetensors")
    out["forged_config.safetensors"] = bomb
    out["unknown_arch.safetensors"] = save_safetensors(
        state, folder / "unknown_arch.safetensors", metadata={"perco_viz.arch": "os.system", "perco_viz.config": "{}"})
    return out


BROKEN_WEIGHTS = ["truncated_header.safetensors", "truncated_data.safetensors",
                  "flipped_header.safetensors", "flipped_length.safetensors", "empty.safetensors",
                  "empty.pt", "nan_weights.safetensors", "forged_config.safetensors",
                  "unknown_arch.safetensors"]
SAYS = {  # what the message must contain
    "truncated_header.safetensors": "save it again", "truncated_data.safetensors": "save it again",
    "flipped_header.safetensors": "save it again", "flipped_length.safetensors": "save it again",
    "empty.safetensors": "empty", "empty.pt": "empty",
    "nan_weights.safetensors": "NaN/inf", "forged_config.safetensors": "do not match",
    "unknown_arch.safetensors": "unknown built-in architecture",
}


@pytest.fixture(scope="module")
def broken(tmp_path_factory, blobs):
    return _broken_weights(blobs, tmp_path_factory.mktemp("broken"))


@pytest.mark.parametrize("name", BROKEN_WEIGHTS)
@pytest.mark.parametrize("entrance", ["models.load_teacher[safetensors]", "models.build_student[file]"])
def test_broken_weights_are_refused(broken, blobs, entrance, name):
    with pytest.raises(InputFileError) as info:
        ENTRANCES[entrance](broken[name], blobs)
    assert SAYS[name] in str(info.value) and "\n" not in str(info.value)


def test_a_flipped_data_byte_is_caught_only_when_it_makes_nan(blobs, tmp_path):
    """safetensors carries no checksum: a flip in a mantissa loads as a slightly different
    model (documented); one that makes NaN/inf is refused (test above)."""
    good = (tmp_path / "ok.safetensors")
    good.write_bytes(_teacher_file(blobs, tmp_path).read_bytes())
    data = bytearray(good.read_bytes())
    data[_header_len(bytes(data))] ^= 0x01  # lowest mantissa bit of the first float
    good.write_bytes(bytes(data))
    teacher = models.load_teacher(TeacherConfig(kind="safetensors", path=str(good)), blobs)
    assert torch.isfinite(teacher(blobs.X_test[:4])).all()


def test_forged_config_is_refused_before_allocating(broken):
    """Metadata naming a 10⁶-wide MLP (4 TB of weights) is compared on the meta device."""
    with pytest.raises(InputFileError, match="do not match"):
        models.load_model_safetensors(broken["forged_config.safetensors"])


@pytest.mark.parametrize(("meta", "says"), [
    ({"perco_viz.arch": "os.system", "perco_viz.config": "{}"}, "unknown built-in architecture"),
    ({"perco_viz.arch": "TeacherMLP", "perco_viz.config": "{not json"}, "not a JSON object"),
    ({"perco_viz.arch": "TeacherMLP", "perco_viz.config": "[1, 2]"}, "not a JSON object"),
    ({"perco_viz.arch": "TeacherMLP"}, "not a JSON object"),
    ({"perco_viz.arch": "TeacherMLP", "perco_viz.config": '{"n_classes": 5}'}, "does not fit"),
    ({"perco_viz.arch": "TeacherMLP", "perco_viz.config": '{"in_shape": [Infinity], "n_classes": 5}'}, "does not fit"),
    ({"perco_viz.arch": "TeacherMLP", "perco_viz.config": '{"in_shape": [-5], "n_classes": 5}'}, "does not fit"),
])
def test_forged_metadata(tmp_path, blobs, meta, says):
    state = {k: v.contiguous() for k, v in models.teacher_architecture(blobs).state_dict().items()}
    path = save_safetensors(state, tmp_path / "forged.safetensors", metadata=meta)
    with pytest.raises(InputFileError, match=says):
        ENTRANCES["models.load_teacher[safetensors]"](path, blobs)


@pytest.mark.parametrize("entrance", ["safe_io.load_state_dict", "safe_io.load_array_file",
                                      "models.load_teacher[safetensors]", "models.build_student[file]",
                                      "data.load_dataset[npz]"])
def test_directory_and_missing_path(tmp_path, blobs, entrance):
    folder = tmp_path / "folder.safetensors"
    folder.mkdir()
    with pytest.raises(InputFileError, match="is not a file"):
        ENTRANCES[entrance](folder, blobs)
    with pytest.raises(InputFileError, match="does not exist"):
        ENTRANCES[entrance](tmp_path / "missing.npz", blobs)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_empty_files(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    for load in (load_state_dict, load_array_file):
        with pytest.raises(InputFileError, match="empty"):
            load(path)


def test_size_limit(tmp_path, monkeypatch, blobs):
    path = tmp_path / "points.npz"
    np.savez(path, X=np.zeros((100, 10)))
    monkeypatch.setenv("PERCO_VIZ_MAX_FILE_MB", "0.001")
    for entrance in ("safe_io.load_array_file", "data.load_dataset[npz]"):
        with pytest.raises(InputFileError, match="limit.*PERCO_VIZ_MAX_FILE_MB"):
            ENTRANCES[entrance](path, blobs)
    weights = _teacher_file(blobs, tmp_path)
    with pytest.raises(InputFileError, match="limit"):
        ENTRANCES["models.load_teacher[safetensors]"](weights, blobs)


def test_npz_bomb_is_refused(tmp_path, monkeypatch):
    """A few kB of compressed zeros that would unpack to 8 MB, with a 1 MB limit."""
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, X=np.zeros((1000, 1000)))
    assert path.stat().st_size < 2**20
    monkeypatch.setenv("PERCO_VIZ_MAX_FILE_MB", "1")
    with pytest.raises(InputFileError, match="unpacks to.*limit"):
        load_array_file(path)


@pytest.mark.parametrize(("name", "write", "says"), [
    ("nan.npz", lambda p: np.savez(p, X=np.array([[0.0, 1.0], [np.nan, 2.0], [3.0, 4.0]])), "NaN/inf"),
    ("inf.npz", lambda p: np.savez(p, X=np.array([[0.0, 1.0], [1e300, 2.0], [3.0, 4.0]])), "float32 range"),
    ("object.npy", lambda p: np.save(p, np.array([{"a": 1}, None], dtype=object), allow_pickle=True), "pickled"),
    ("complex.npz", lambda p: np.savez(p, X=np.ones((3, 2)) + 1j), "must be numbers"),
    ("text.csv", lambda p: p.write_text("a,b,label\n1,2,x\n3,oops,y\n5,6,x\n7,8,y\n"), "not numbers"),
    ("no_numbers.csv", lambda p: p.write_text("a,b\nx,y\nz,w\n"), "no numeric feature columns"),
    ("binary.csv", lambda p: p.write_bytes(bytes(range(256)) * 4), "CSV"),
])
def test_bad_arrays_say_what_to_change(tmp_path, name, write, says):
    path = tmp_path / name
    write(path)
    for load in (lambda: load_array_file(path),
                 lambda: load_dataset(DataConfig(name="csv" if name.endswith(".csv") else "npz", path=str(path)))):
        with pytest.raises(InputFileError, match=says):
            load()


# ----------------------------------------------------------------------------- the CLI
TINY = ["--dataset", "blobs", "--n-samples", "120", "--probe-size", "20", "--teacher", "identity",
        "--student-dim", "2", "--batch-size", "32", "--device", "cpu", "--quiet", "--epochs", "1"]


def _cli_cases(files: dict[str, pathlib.Path], broken: dict[str, pathlib.Path], folder: pathlib.Path):
    """id -> (extra args, extra env, what the error line must say)."""
    nan_npz, text_csv, big = folder / "nan.npz", folder / "text.csv", folder / "big.npz"
    np.savez(nan_npz, X=np.array([[0.0, 1.0], [np.nan, 2.0], [3.0, 4.0]]))
    text_csv.write_text("a,b,label\n1,2,x\n3,oops,y\n5,6,x\n7,8,y\n")
    np.savez(big, X=np.zeros((100, 10)))
    (folder / "a_directory.safetensors").mkdir(exist_ok=True)
    return {
        "teacher safetensors <- torch.save payload .pt": (
            ["--teacher", "safetensors", "--teacher-path", files["torchsave.pt"]], {}, "refuses"),
        "teacher safetensors <- pickle payload .pth": (
            ["--teacher", "safetensors", "--teacher-path", files["pickle.pth"]], {}, "refuses"),
        "teacher safetensors <- pickle named .safetensors": (
            ["--teacher", "safetensors", "--teacher-path", files["pickle.safetensors"]], {}, "save it again"),
        "teacher torchscript <- torch.save payload .pt": (
            ["--teacher", "torchscript", "--teacher-path", files["torchsave.pt"]], {}, "TorchScript"),
        "teacher torchscript <- fake TorchScript zip": (
            ["--teacher", "torchscript", "--teacher-path", files["fake_torchscript.pt"]], {}, "TorchScript"),
        "student file <- torch.save payload .pt": (
            ["--student", "file", "--student-path", files["torchsave.pt"]], {}, "refuses"),
        "student file <- fake TorchScript zip": (
            ["--student", "file", "--student-path", files["fake_torchscript.pt"]], {}, "TorchScript"),
        "teacher torchscript <- code-carrying TorchScript": (
            ["--teacher", "torchscript", "--teacher-path", files["code_on_load.pt"]],
            {"PERCO_VIZ_TRUST_TORCHSCRIPT": "1"}, "runs the code it carries"),  # the app's switch: not the CLI's
        "student file <- code-carrying TorchScript": (
            ["--student", "file", "--student-path", files["code_on_load.pt"]], {}, "--trust-code"),
        "teacher safetensors <- code-carrying TorchScript": (
            ["--teacher", "safetensors", "--teacher-path", files["code_on_load.pt"]], {}, ".safetensors"),
        "dataset npz <- object array payload": (
            ["--dataset", "npz", "--data-path", files["object_array.npz"]], {}, "refuses to unpickle"),
        "dataset npz <- raw pickle .npz": (
            ["--dataset", "npz", "--data-path", files["pickle.npz"]], {}, "refuses to unpickle"),
        "dataset csv <- pickle .csv": (
            ["--dataset", "csv", "--data-path", files["pickle.csv"]], {}, "CSV"),
        "teacher <- truncated safetensors": (
            ["--teacher", "safetensors", "--teacher-path", broken["truncated_data.safetensors"]], {}, "save it again"),
        "teacher <- corrupted header": (
            ["--teacher", "safetensors", "--teacher-path", broken["flipped_header.safetensors"]], {}, "save it again"),
        "teacher <- NaN weights": (
            ["--teacher", "safetensors", "--teacher-path", broken["nan_weights.safetensors"]], {}, "NaN/inf"),
        "teacher <- empty file": (
            ["--teacher", "safetensors", "--teacher-path", broken["empty.safetensors"]], {}, "empty"),
        "teacher <- a directory": (
            ["--teacher", "safetensors", "--teacher-path", folder / "a_directory.safetensors"], {}, "is not a file"),
        "teacher <- missing file": (
            ["--teacher", "safetensors", "--teacher-path", folder / "missing.safetensors"], {}, "does not exist"),
        "dataset npz <- over the size limit": (
            ["--dataset", "npz", "--data-path", big], {"PERCO_VIZ_MAX_FILE_MB": "0.001"}, "limit"),
        "dataset npz <- NaN features": (["--dataset", "npz", "--data-path", nan_npz], {}, "NaN/inf"),
        "dataset csv <- text in a feature column": (
            ["--dataset", "csv", "--data-path", text_csv], {}, "not numbers"),
        "unknown loss": (["--loss", "triplet"], {}, "'triplet'"),  # the message names the bad value
        "unknown dataset": (["--dataset", "imagenet"], {}, "'imagenet'"),
    }


@pytest.fixture(scope="module")
def cli_results(hostile, broken, tmp_path_factory):
    """Every CLI case, run as a subprocess, three at a time: id -> (case, CompletedProcess)."""
    _, files = hostile
    folder = tmp_path_factory.mktemp("cli")
    cases = _cli_cases(files, broken, folder)

    def run(item):
        key, (args, env, _) = item
        cmd = [sys.executable, "-m", "perco_viz", "distill", *TINY, *map(str, args),
               "--out", str(folder / "runs")]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT,
                              env={**os.environ, **env})
        return key, proc

    with ThreadPoolExecutor(3) as pool:
        done = dict(pool.map(run, cases.items()))
    return {key: (cases[key], done[key]) for key in cases}


CLI_IDS = [  # the keys of _cli_cases (test_every_cli_case_is_listed checks)
    "teacher safetensors <- torch.save payload .pt", "teacher safetensors <- pickle payload .pth",
    "teacher safetensors <- pickle named .safetensors", "teacher torchscript <- torch.save payload .pt",
    "teacher torchscript <- fake TorchScript zip", "student file <- torch.save payload .pt",
    "student file <- fake TorchScript zip", "teacher torchscript <- code-carrying TorchScript",
    "student file <- code-carrying TorchScript", "teacher safetensors <- code-carrying TorchScript",
    "dataset npz <- object array payload",
    "dataset npz <- raw pickle .npz", "dataset csv <- pickle .csv",
    "teacher <- truncated safetensors", "teacher <- corrupted header", "teacher <- NaN weights",
    "teacher <- empty file", "teacher <- a directory", "teacher <- missing file",
    "dataset npz <- over the size limit", "dataset npz <- NaN features",
    "dataset csv <- text in a feature column", "unknown loss", "unknown dataset",
]


@pytest.mark.slow
@pytest.mark.parametrize("case", CLI_IDS)
def test_cli_refuses_with_one_line(cli_results, hostile, case):
    (_, _, says), proc = cli_results[case]
    marker, _ = hostile
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert says in errors[0], errors[0]
    others = [ln for ln in lines if not ln.startswith(("error:", "[perco-viz]"))]
    assert not others, f"stray stderr lines (warnings?): {others}"
    assert not marker.exists()


@pytest.mark.slow
def test_every_cli_case_is_listed(cli_results):
    assert sorted(cli_results) == sorted(CLI_IDS)


# ----------------------------------------------------------------------------- TorchScript trust
def _ts_config(archive: pathlib.Path, *, student: bool = False) -> RunConfig:
    """A tiny blobs run whose teacher (or student) is the TorchScript ``archive``."""
    cfg = RunConfig().override(**{
        "data.name": "blobs", "data.n_samples": 120, "data.probe_size": 20, "student.dim": 2,
        "train.batch_size": 32, "train.epochs": 1, "train.device": "cpu"})
    if student:
        return cfg.override(**{"teacher.kind": "identity", "student.arch": "file", "student.path": str(archive)})
    return cfg.override(**{"teacher.kind": "torchscript", "teacher.path": str(archive)})


@pytest.fixture
def code_archive(tmp_path):
    marker = tmp_path / "MARKER_torchscript_ran"
    return write_code_on_load(tmp_path / "model.pt", marker), marker


def test_the_refusal_says_how_to_bring_the_model_safely(code_archive, blobs):
    archive, marker = code_archive
    with pytest.raises(InputFileError) as info:
        load_torchscript(archive)
    message = str(info.value)
    for says in ("runs the code it carries", "state_dict as .safetensors", "torchvision or timm",
                 "embeddings", "Diagnose", "--trust-code", "PERCO_VIZ_TRUST_TORCHSCRIPT"):
        assert says in message, (says, message)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_trust_is_the_callers_explicit_choice(code_archive, blobs, monkeypatch):
    """trust=True loads (and so runs the file's code); the operator's variable does not reach the library."""
    archive, marker = code_archive
    monkeypatch.setenv("PERCO_VIZ_TRUST_TORCHSCRIPT", "1")  # only the app's job maker reads it
    for load in (lambda: load_torchscript(archive),
                 lambda: models.load_teacher(TeacherConfig(kind="torchscript", path=str(archive)), blobs),
                 lambda: models.build_student(StudentConfig(arch="file", path=str(archive)), blobs)):
        with pytest.raises(InputFileError, match="runs the code it carries"):
            load()
        assert not marker.exists()
    teacher = models.load_teacher(TeacherConfig(kind="torchscript", path=str(archive)), blobs, trust_code=True)
    assert marker.exists()
    assert torch.equal(teacher(blobs.X_test[:3]), blobs.X_test[:3])
    marker.unlink()
    models.build_student(StudentConfig(arch="file", path=str(archive)), blobs, trust_code=True)
    assert marker.exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_distill_library_refuses_unless_trusted(code_archive, tmp_path):
    from perco_viz.distill import distill

    archive, marker = code_archive
    for student in (False, True):
        result = distill(_ts_config(archive, student=student), out=tmp_path / "runs")
        assert result.status == "failed" and "runs the code it carries" in result.error
        assert not marker.exists()
    result = distill(_ts_config(archive), out=tmp_path / "runs", trust_code=True)
    assert result.status == "finished", result.error
    assert marker.exists()


def test_a_config_cannot_grant_trust():
    from perco_viz.config import ConfigError

    assert "trust" not in json.dumps(RunConfig().to_dict())
    for raw in ({"trust_code": True}, {"teacher": {"kind": "torchscript", "trust_code": True}}):
        with pytest.raises(ConfigError):
            RunConfig.from_dict(raw)


@pytest.mark.parametrize(("value", "trusted"), [
    (None, False), ("", False), ("0", False), ("false", False), ("yes", False), ("1", True), ("true", True),
    (" TRUE ", True)])
def test_the_operator_switch(monkeypatch, value, trusted):
    from perco_viz.safe_io import TRUST_TORCHSCRIPT_ENV, server_trusts_torchscript

    assert TRUST_TORCHSCRIPT_ENV == "PERCO_VIZ_TRUST_TORCHSCRIPT"
    if value is None:
        monkeypatch.delenv(TRUST_TORCHSCRIPT_ENV, raising=False)
    else:
        monkeypatch.setenv(TRUST_TORCHSCRIPT_ENV, value)
    assert server_trusts_torchscript() is trusted


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "perco_viz", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_cli_trust_code_flag_on_distill_and_resume(code_archive, tmp_path):
    """distill/resume refuse a TorchScript teacher without --trust-code (even a run's saved config
    cannot grant it) and load it with the flag; the help says the file can run code."""
    from perco_viz.distill import distill

    archive, marker = code_archive
    for command in ("distill", "resume"):
        assert "runs the code" in " ".join(_cli(command, "--help").stdout.split())
    flags = ["--dataset", "blobs", "--n-samples", "120", "--probe-size", "20", "--student-dim", "2",
             "--batch-size", "32", "--device", "cpu", "--quiet", "--epochs", "1", "--out", str(tmp_path / "runs"),
             "--teacher", "torchscript", "--teacher-path", str(archive)]
    proc = _cli("distill", *flags, "--trust-code")
    assert proc.returncode == 0, proc.stderr
    assert marker.exists()
    marker.unlink()
    run = distill(_ts_config(archive), out=tmp_path / "runs", name="untrusted").run_dir  # failed: refused
    assert not marker.exists()
    proc = _cli("resume", str(run.path), "--quiet")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "--trust-code" in proc.stderr and not marker.exists()
    proc = _cli("resume", str(run.path), "--quiet", "--trust-code")
    assert proc.returncode == 0, proc.stderr
    assert marker.exists()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_app_training_child_trusts_only_the_operator(code_archive, tmp_path, monkeypatch):
    """The app's trainings (live.py): refused unless the server was started with the variable."""
    from perco_viz import live

    archive, marker = code_archive
    reg = live.RunRegistry()
    monkeypatch.delenv("PERCO_VIZ_TRUST_TORCHSCRIPT", raising=False)
    run = reg.start("me", _ts_config(archive), tmp_path / "runs", "refused")
    _wait_until(lambda: not run.alive)
    assert run.info()["state"] == "failed" and "runs the code it carries" in run.info()["error"]
    assert not marker.exists()
    monkeypatch.setenv("PERCO_VIZ_TRUST_TORCHSCRIPT", "1")
    run = reg.start("me", _ts_config(archive), tmp_path / "runs", "trusted")
    _wait_until(lambda: not run.alive)
    assert run.info()["state"] == "finished", run.info()
    assert marker.exists()


def _wait_until(predicate, timeout: float = 180.0) -> None:
    import time

    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.parametrize(("content", "name"), [
    ("€ 12 per item\nsecond line\n".encode("cp1252"), "prices.npz"),  # text whose first byte is 0x80
    (b"hello, this is plain text\n", "notes.npz"),
    (b"PK but no zip after it", "fake_zip.npz"),
])
def test_a_non_npz_file_is_called_not_a_valid_npz_never_a_pickle(content, name):
    """Issue 12: a text file named .npz was first called "pickled objects". It is not a valid
    .npz (zip) archive, and nothing in it was read as a pickle."""
    with pytest.raises(InputFileError) as info:
        load_array_file(content, name=name)
    message = str(info.value)
    assert "not a valid .npz (zip) archive" in message
    assert "pickle" not in message.lower()


def test_pickles_are_named_only_where_they_are():
    """An object array in a real .npz, a member that is a pickle, or a whole pickle file renamed
    .npz is named as a pickle (the last one also as not a valid .npz archive)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("X.npy", pickle.dumps([1, 2, 3]))
    with pytest.raises(InputFileError, match="holds a pickle"):
        load_array_file(buf.getvalue(), name="member.npz")
    buf = io.BytesIO()
    np.savez(buf, X=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(InputFileError, match="pickled Python objects"):
        load_array_file(buf.getvalue(), name="objects.npz")
    with pytest.raises(InputFileError, match=r"not a valid \.npz \(zip\) archive but a pickle"):
        load_array_file(pickle.dumps({"X": [1.0]}), name="renamed.npz")


# ----------------------------------------------------------------------------- Diagnose's large-file paths
def _npy_header(shape: tuple, dtype: str = "<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def test_an_npz_whose_header_declares_a_huge_array_is_refused_before_allocation(tmp_path):
    """A 1 kB .npz whose member says (10⁹, 512) float32 (2 TB): refused from the header, nothing allocated."""
    import tracemalloc

    from perco_viz.analysis import diagnose

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:  # honest zip sizes: only the .npy header lies
        zf.writestr("X.npy", _npy_header((10**9, 512)) + b"\0" * 1024)
    bomb = buf.getvalue()
    (tmp_path / "bomb.npz").write_bytes(bomb)
    np.savez(tmp_path / "ok.npz", X=np.zeros((20, 3)))
    tracemalloc.start()
    try:
        for load in (lambda: diagnose.load_pair(bomb, tmp_path / "ok.npz", teacher_name="bomb.npz"),
                     lambda: diagnose.load_pair(tmp_path / "bomb.npz", tmp_path / "ok.npz")):
            with pytest.raises(InputFileError, match=r"declares an array of shape \(1000000000, 512\)"):
                load()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20


def test_a_memory_mapped_npy_declaring_more_than_it_holds_is_refused(tmp_path):
    path = tmp_path / "forged.npy"
    path.write_bytes(_npy_header((10**7, 64)) + b"\0" * 4096)
    with pytest.raises(InputFileError, match="truncated or forged"):
        load_array_file(path, mmap=True)
    np.save(tmp_path / "real.npy", np.ones((50, 4), dtype=np.float32))
    X, y, _ = load_array_file(tmp_path / "real.npy", mmap=True)
    assert isinstance(X, np.memmap) and not X.flags.writeable and X.shape == (50, 4) and y is None


def test_a_parquet_file_is_checked_on_its_footer_before_decoding(tmp_path, monkeypatch):
    import pandas as pd

    path = tmp_path / "zeros.parquet"
    pd.DataFrame(np.zeros((200_000, 8)), columns=[f"f{i}" for i in range(8)]).to_parquet(path)
    assert path.stat().st_size < 2**20  # 12.8 MB of float64 zeros encode to a few kB
    monkeypatch.setenv("PERCO_VIZ_MAX_FILE_MB", "2")
    with pytest.raises(InputFileError, match="unpacked is 12.2 MB, above the 2.0 MB limit"):
        load_array_file(path)
    monkeypatch.setenv("PERCO_VIZ_MAX_FILE_MB", "100")
    monkeypatch.setenv("PERCO_VIZ_MAX_ROWS", "1000")
    with pytest.raises(InputFileError, match="200000 rows, above the 1000-row limit"):
        load_array_file(path)
    with pytest.raises(InputFileError, match="not a readable Parquet file"):
        load_array_file(b"PAR1 not really", name="fake.parquet")


@pytest.mark.parametrize("name", ["object_array.npy", "object_array.npz", "member_pickle.npz"])
def test_perco_viz_diagnose_refuses_pickles_in_one_line(hostile, tmp_path, name, capsys):
    from perco_viz.cli import main

    marker, files = hostile
    np.save(tmp_path / "ok.npy", np.ones((20, 3), dtype=np.float32))
    for teacher, student in ((files[name], tmp_path / "ok.npy"), (tmp_path / "ok.npy", files[name])):
        code = main(["diagnose", "--teacher", str(teacher), "--student", str(student)])
        err = capsys.readouterr().err
        assert code != 0 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
        assert "pickle" in err and "Traceback" not in err
        assert not marker.exists()
