"""Limits on what files unpack to (issue 10): deflate, gzip and decompression bombs.

Every bomb is generated here, cheaply: one block of deflated zeros, ended by a full flush,
repeats byte for byte, so a ~1 MB stream that inflates to 1 GiB is a concatenation (checked
below, with a control that inflates a prefix). Each is fed to every entrance that reads its
format, in a fresh subprocess with ``PERCO_VIZ_MAX_FILE_MB=64``; the subprocess reports each
refusal and how much its peak memory (``VmHWM``, reset before each case) grew, which must stay under 100 MB for
bombs that would unpack to 1 GiB.

* ``.npz`` (``safe_io.load_npz`` / ``load_array_file`` / ``data.load_dataset`` / Diagnose
  labels): honest central directory (refused before reading), a central directory that lies
  small (``zipfile`` stops at the declared size and checks the CRC), and ``.npy`` headers that
  declare huge or truncated arrays (refused before allocating).
* ``torch.save`` zips (``.pt``; ``load_state_dict``, ``load_teacher``, ``build_student``, the
  resume checkpoint): honest sizes refused from the central directory; a lying small size is
  cut by PyTorch's reader at the declared size. A legacy (pre-zip) file whose pickle declares
  a 4 GiB storage is refused with its raw data missing.
* ``.gz`` IDX files (``data.read_idx`` / the MNIST loader): shape header above the limit
  refused before reading; a header that lies small reads only what it declares.
* images (``image_folder``): an 8192x8192 PNG of a few kB is refused from its header.
* CSV: a 100k-column header is refused before pandas parses it; rows too.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from perco_viz.safe_io import (
    InputFileError,
    check_zip_unpacked,
    load_array_file,
    load_npz,
    load_state_dict,
)

ROOT = Path(__file__).resolve().parent.parent
GIB = 1 << 30
CHUNK = 1 << 24
LIMIT_MB = 64
MAX_GROWTH_MB = 100


# ----------------------------------------------------------------------------- bomb kit
def deflate_zeros(n_chunks: int, chunk: int = CHUNK, prefix: bytes = b"") -> tuple[bytes, int, int]:
    """A raw deflate stream of ``prefix`` then ``n_chunks * chunk`` zero bytes, its CRC-32 and size.

    After a full flush the compressor starts afresh, so the block for one chunk of zeros is
    the same bytes every time: the stream is built by repetition in milliseconds.
    """
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = co.compress(prefix) + co.flush(zlib.Z_FULL_FLUSH)
    zeros = bytes(chunk)
    block = co.compress(zeros) + co.flush(zlib.Z_FULL_FLUSH)
    assert block == co.compress(zeros) + co.flush(zlib.Z_FULL_FLUSH), "deflate blocks do not repeat"
    stream = head + block * n_chunks + co.flush()
    crc = zlib.crc32(prefix)
    for _ in range(n_chunks):
        crc = zlib.crc32(zeros, crc)
    return stream, crc, len(prefix) + n_chunks * chunk


def build_zip(members: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A zip written by hand, so sizes can lie: members are (name, raw bytes, method, crc, declared size)."""
    out, central = io.BytesIO(), []
    for name, raw, method, crc, usize in members:
        offset, nb = out.tell(), name.encode()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 33, crc, len(raw), usize, len(nb), 0))
        out.write(nb + raw)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 33, crc, len(raw),
                                   usize, len(nb), 0, 0, 0, 0, 0, offset) + nb)
    cd_offset, cd = out.tell(), b"".join(central)
    out.write(cd + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(cd), cd_offset, 0))
    return out.getvalue()


def stored_members(data: bytes) -> list[tuple[str, bytes, int, int, int]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(i.filename, zf.read(i), zipfile.ZIP_STORED, i.CRC, i.file_size) for i in zf.infolist()]


def npy_header(shape: tuple[int, ...], descr: str = "|u1") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def gzip_wrap(stream: bytes, crc: int, size: int) -> bytes:
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + stream + struct.pack("<II", crc, size & 0xFFFFFFFF)


def png_zeros(side: int) -> bytes:
    """A valid greyscale PNG of ``side`` x ``side`` black pixels (its IDAT from the repeated block)."""
    row = side + 1  # filter byte + pixels
    rows_per_chunk = 1024
    assert side % rows_per_chunk == 0
    stream, _, size = deflate_zeros(side // rows_per_chunk, chunk=row * rows_per_chunk)
    adler = ((size % 65521) << 16) | 1  # adler32 of zeros: a = 1, b = n
    idat = b"\x78\xda" + stream + struct.pack(">I", adler)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def write_bombs(folder: Path) -> dict[str, Path]:
    """Every bomb by name (all would unpack to >= 1 GiB, or to 64+ MB of pixels)."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        files[name] = folder / name
        files[name].write_bytes(data)

    header = npy_header((GIB,))
    stream, crc, size = deflate_zeros(GIB // CHUNK, prefix=header)
    put("honest.npz", build_zip([("X.npy", stream, zipfile.ZIP_DEFLATED, crc, size)]))
    small = npy_header((1000,))  # what the lying entries declare: 1000 bytes
    lying, true_crc, _ = deflate_zeros(GIB // CHUNK, prefix=small)
    put("lying_small.npz", build_zip([("X.npy", lying, zipfile.ZIP_DEFLATED, true_crc, len(small) + 1000)]))
    put("lying_small_good_crc.npz", build_zip([("X.npy", lying, zipfile.ZIP_DEFLATED,
                                                zlib.crc32(small + bytes(1000)), len(small) + 1000)]))
    huge = npy_header((1 << 40, 1 << 20))
    put("huge_header.npz", build_zip([("X.npy", huge, zipfile.ZIP_STORED, zlib.crc32(huge), len(huge))]))
    short = npy_header((10**6,)) + bytes(10)
    put("truncated_header.npz", build_zip([("X.npy", short, zipfile.ZIP_STORED, zlib.crc32(short), len(short))]))
    put("huge_header.npy", npy_header((1 << 40,)) + bytes(64))

    saved = io.BytesIO()
    torch.save({"w": torch.zeros(4)}, saved)  # its one tensor is the member .../data/0 (16 bytes)
    members = stored_members(saved.getvalue())
    blob, blob_crc, blob_size = deflate_zeros(GIB // CHUNK)

    def with_data(raw: bytes, crc: int, declared: int) -> bytes:
        return build_zip([(m[0], raw, zipfile.ZIP_DEFLATED, crc, declared) if m[0].endswith("data/0") else m
                          for m in members])

    put("honest.pt", with_data(blob, blob_crc, blob_size))
    put("lying_small.pt", with_data(blob, zlib.crc32(bytes(16)), 16))
    legacy = io.BytesIO()
    torch.save({"w": torch.zeros(1000)}, legacy, _use_new_zipfile_serialization=False)
    assert legacy.getvalue().count(b"M\xe8\x03") == 2  # numel 1000 as BININT2, in the storage id and the view
    put("legacy_forged.pt", legacy.getvalue().replace(b"M\xe8\x03", b"J\x00\x00\x00\x40"))  # 2^30 floats: 4 GiB

    idx_header = b"\x00\x00\x08\x01" + struct.pack(">i", GIB)
    stream, crc, size = deflate_zeros(GIB // CHUNK, prefix=idx_header)
    put("honest-idx1-ubyte.gz", gzip_wrap(stream, crc, size))
    small_idx = b"\x00\x00\x08\x03" + struct.pack(">iii", 10, 28, 28)
    stream, crc, size = deflate_zeros(GIB // CHUNK, prefix=small_idx)
    put("lying_small-idx3-ubyte.gz", gzip_wrap(stream, crc, size))
    (folder / "images" / "cls").mkdir(parents=True, exist_ok=True)
    put("images/cls/bomb.png", png_zeros(8192))
    return files


# Run in a fresh interpreter: peak memory (VmHWM, reset before each call through /proc/self/clear_refs,
# so a case is never hidden behind an earlier, larger peak) before and after each call.
RUNNER = r"""
import json, resource, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
from perco_viz import data, models
from perco_viz.analysis import diagnose
from perco_viz.config import DataConfig, StudentConfig, TeacherConfig
from perco_viz.safe_io import InputFileError, load_array_file, load_npz, load_state_dict, load_torch_checkpoint

blobs = data.load_dataset(DataConfig(name="blobs", n_samples=60))
t = np.zeros((20, 3), np.float32)
CALLS = {
    "safe_io.load_npz": lambda p: load_npz(p),
    "safe_io.load_npz[bytes]": lambda p: load_npz(open(p, "rb").read(), name="upload.npz"),
    "safe_io.load_npz[file object]": lambda p: load_npz(open(p, "rb"), name="upload.npz"),
    "safe_io.load_array_file": lambda p: load_array_file(p),
    "data.load_dataset[npz]": lambda p: data.load_dataset(DataConfig(name="npz", path=p)),
    "diagnose.load_labels": lambda p: diagnose.load_labels(p),
    "safe_io.load_state_dict": lambda p: load_state_dict(p),
    "safe_io.load_torch_checkpoint": lambda p: load_torch_checkpoint(p),
    "models.load_teacher[safetensors]": lambda p: models.load_teacher(TeacherConfig(kind="safetensors", path=p), blobs),
    "models.build_student[file]": lambda p: models.build_student(StudentConfig(arch="file", path=p), blobs),
    "data.read_idx": lambda p: data.read_idx(p),
    "data.load_dataset[image_folder]": lambda p: data.load_dataset(DataConfig(name="image_folder", path=p)),
    # the control: an unguarded read of the same bomb (256 MiB of it) shows up in this measure
    "control: zipfile reads 256 MiB": lambda p: np.frombuffer(
        __import__("zipfile").ZipFile(p).open("X.npy").read(256 << 20), np.uint8),
}
def peak_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

out = []
for case, call, path in json.load(open(sys.argv[1])):
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak: each case is measured on its own
    before = peak_kib()
    try:
        got = CALLS[call](path)
        result = "loaded " + (str(getattr(got, "shape", "")) or type(got).__name__)
    except InputFileError as exc:
        result = "refused: " + str(exc)
    except Exception as exc:
        result = "CRASH " + type(exc).__name__ + ": " + str(exc)
    grew = (peak_kib() - before) / 1024
    out.append([case, result[:300], grew])
    got = None
print(json.dumps(out))
"""

CASES = {  # id -> (entrance, bomb, expected: "refused: <regex>" or "loaded")
    "npz honest sizes / load_npz": ("safe_io.load_npz", "honest.npz", "refused: .*unpacks to 1024.0 MB.*64.0 MB limit"),
    "npz honest sizes / bytes": ("safe_io.load_npz[bytes]", "honest.npz", "refused: .*unpacks to 1024.0 MB"),
    "npz honest sizes / file object": ("safe_io.load_npz[file object]", "honest.npz", "refused: .*unpacks to"),
    "npz honest sizes / load_array_file": ("safe_io.load_array_file", "honest.npz", "refused: .*unpacks to"),
    "npz honest sizes / load_dataset": ("data.load_dataset[npz]", "honest.npz", "refused: .*unpacks to"),
    "npz honest sizes / diagnose labels": ("diagnose.load_labels", "honest.npz", "refused: .*unpacks to"),
    "npz lying small size, real CRC": ("safe_io.load_npz", "lying_small.npz", "refused: .*could not be unpacked.*CRC"),
    "npz lying small size, CRC of the prefix": ("safe_io.load_npz", "lying_small_good_crc.npz", "loaded"),
    "npz .npy header declares 2^60 bytes": ("safe_io.load_npz", "huge_header.npz", "refused: .*declares an array.*limit"),
    "npz .npy header longer than its data": ("safe_io.load_array_file", "truncated_header.npz",
                                             "refused: .*declares an array.*holds only"),
    "npy header declares 2^40 bytes": ("safe_io.load_npz", "huge_header.npy", "refused: .*declares an array"),
    "pt honest sizes / load_state_dict": ("safe_io.load_state_dict", "honest.pt", "refused: .*unpacks to 1024.0 MB"),
    "pt honest sizes / checkpoint": ("safe_io.load_torch_checkpoint", "honest.pt", "refused: .*unpacks to"),
    "pt honest sizes / load_teacher": ("models.load_teacher[safetensors]", "honest.pt", "refused: .*unpacks to"),
    "pt honest sizes / build_student": ("models.build_student[file]", "honest.pt", "refused: .*unpacks to"),
    "pt lying small size": ("safe_io.load_state_dict", "lying_small.pt", "loaded"),
    "pt legacy storage declares 4 GiB": ("safe_io.load_state_dict", "legacy_forged.pt", "refused: .*could not be read"),
    "gz IDX header declares 1 GiB": ("data.read_idx", "honest-idx1-ubyte.gz", "refused: .*declares shape.*64.0 MB limit"),
    "gz IDX header lies small": ("data.read_idx", "lying_small-idx3-ubyte.gz", "loaded"),
    "PNG 8192x8192 in a few kB": ("data.load_dataset[image_folder]", "images", "refused: .*8192x8192 pixels.*limit"),
}
CONTROL = ("control: zipfile reads 256 MiB", "honest.npz")


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    return write_bombs(tmp_path_factory.mktemp("bombs"))


@pytest.fixture(scope="module")
def bomb_results(bombs, tmp_path_factory):
    """Every case in one fresh interpreter: id -> (message, peak growth in MB)."""
    folder = bombs["honest.npz"].parent
    plan = tmp_path_factory.mktemp("plan") / "cases.json"
    plan.write_text(json.dumps([[case, call, str(folder / name)] for case, (call, name, _) in CASES.items()]
                               + [["control", CONTROL[0], str(folder / CONTROL[1])]]))
    env = {**os.environ, "PERCO_VIZ_MAX_FILE_MB": str(LIMIT_MB), "PERCO_VIZ_WARMUP": "0"}
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(plan)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {case: (result, grew) for case, result, grew in json.loads(proc.stdout.strip().splitlines()[-1])}


@pytest.mark.slow
def test_the_bombs_are_real(bombs):
    """Control: the declared sizes are what they say and the streams inflate to zeros at ~1000:1."""
    for name in ("honest.npz", "honest.pt"):
        with zipfile.ZipFile(bombs[name]) as zf:
            assert sum(i.file_size for i in zf.infolist()) >= GIB
    assert bombs["honest.npz"].stat().st_size < 2 << 20  # ~1 MB on disk, 1 GiB unpacked
    with zipfile.ZipFile(bombs["honest.npz"]) as zf, zf.open("X.npy") as member:
        member.read(128)
        assert member.read(32 << 20) == bytes(32 << 20)  # the first 32 MiB of zeros, and more follow
        assert member.read(1) == b"\x00"
    stream, _, size = deflate_zeros(2)  # the repetition inflates to exactly what it claims
    assert zlib.decompress(stream, -15) == bytes(size)
    with zipfile.ZipFile(bombs["lying_small.npz"]) as zf:  # the stream under the lie holds 1 GiB
        info = zf.getinfo("X.npy")
        assert info.file_size < 2000 and info.compress_size > 900 * info.file_size
    d = zlib.decompressobj(-15)
    with open(bombs["lying_small.npz"], "rb") as fh:
        raw = fh.read()
    assert len(d.decompress(raw[30 + len("X.npy"):], 64 << 20)) == 64 << 20  # inflates well past 1128 bytes
    with open(bombs["honest-idx1-ubyte.gz"], "rb") as fh:
        import gzip

        with gzip.GzipFile(fileobj=fh) as gz:
            assert gz.read(8)[:4] == b"\x00\x00\x08\x01" and gz.read(16 << 20) == bytes(16 << 20)
    from PIL import Image

    with Image.open(bombs["images/cls/bomb.png"]) as im:  # a valid PNG, decodable
        assert im.size == (8192, 8192) and bombs["images/cls/bomb.png"].stat().st_size < 1 << 20
        im.draft("L", (64, 64))
        Image.MAX_IMAGE_PIXELS, saved = None, Image.MAX_IMAGE_PIXELS
        try:
            im.crop((0, 0, 8, 8)).load()
        finally:
            Image.MAX_IMAGE_PIXELS = saved


@pytest.mark.slow
def test_the_memory_probe_sees_an_unguarded_read(bomb_results):
    """Control for the measure below: reading 256 MiB of the bomb without a guard is seen."""
    result, grew = bomb_results["control"]
    assert result.startswith("loaded"), result
    assert grew > MAX_GROWTH_MB, f"an unguarded 256 MiB read grew the peak by only {grew:.0f} MB"


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_bomb_is_refused_in_bounded_memory(bomb_results, case):
    result, grew = bomb_results[case]
    expected = CASES[case][2]
    assert not result.startswith("CRASH"), result
    if expected == "loaded":
        assert result.startswith("loaded"), result
    else:
        assert result.startswith("refused: ") and "\n" not in result, result
        import re

        assert re.search(expected[len("refused: "):], result), result
    assert grew < MAX_GROWTH_MB, f"{case}: peak memory grew {grew:.0f} MB"


def test_lying_small_npz_reads_only_what_it_declares(bombs):
    arrays = load_npz(bombs["lying_small_good_crc.npz"])
    assert arrays["X"].shape == (1000,) and not arrays["X"].any()


def test_limit_counts_unpacked_bytes_of_every_member(tmp_path):
    """Two members, each under the limit, together above it: refused from the central directory."""
    path = tmp_path / "two.npz"
    np.savez_compressed(path, a=np.zeros(600_000, np.uint8), b=np.zeros(600_000, np.uint8))
    assert path.stat().st_size < 10_000
    with pytest.raises(InputFileError, match="unpacks to 1.1 MB, above the 1.0 MB limit"):
        load_npz(path, max_bytes=1 << 20)
    assert load_npz(path, max_bytes=2 << 20)["a"].shape == (600_000,)
    with pytest.raises(InputFileError, match="unpacks to"):
        check_zip_unpacked(path, "two.npz", max_bytes=1 << 20)


def test_npz_round_trip_keeps_dtypes_and_order(tmp_path):
    path = tmp_path / "ok.npz"
    f = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    np.savez_compressed(path, X=np.eye(3, dtype=np.float32), s=np.array(["a", "bc"]), f=f, e=np.zeros((0, 3)))
    got = load_npz(path)
    assert got["X"].dtype == np.float32 and got["s"].tolist() == ["a", "bc"]
    np.testing.assert_array_equal(got["f"], f)
    assert got["e"].shape == (0, 3)
    buf = io.BytesIO()
    np.save(buf, np.arange(5))
    assert load_npz(buf.getvalue(), name="a.npy")["arr_0"].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(("name", "data", "says"), [
    ("pickle.npz", b"\x80\x04K\x01.", "refuses to unpickle"),
    ("text.npz", b"hello world", "not a readable NumPy file"),
    ("badzip.npz", b"PK\x03\x04" + bytes(40), "not a readable .npz"),
    ("negative.npy", npy_header((-5,)), "negative shape"),
    ("other_member.npz", build_zip([("evil.txt", b"hi", 0, zlib.crc32(b"hi"), 2)]), "not NumPy arrays"),
])
def test_bad_npz_says_what_to_change(tmp_path, name, data, says):
    with pytest.raises(InputFileError, match=says):
        load_npz(data, name=name)


def test_safetensors_header_length_is_checked_against_the_file(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    good = path.read_bytes()
    assert load_state_dict(path)["w"].shape == (3,)
    for claimed in (len(good), 1 << 40, 0):
        path.write_bytes(claimed.to_bytes(8, "little") + good[8:])
        with pytest.raises(InputFileError, match="header claims"):
            load_state_dict(path)


def test_csv_with_too_many_columns_is_refused_before_parsing(tmp_path, monkeypatch):
    """100k columns: refused by counting the header line, in well under a second."""
    header = ",".join(f"c{i}" for i in range(100_000))
    path = tmp_path / "wide.csv"
    path.write_text(header + "\n" + ",".join(["1"] * 100_000) + "\n")
    with pytest.raises(InputFileError, match="100000 columns.*4096-column limit.*PERCO_VIZ_MAX_COLUMNS"):
        load_array_file(path)
    monkeypatch.setenv("PERCO_VIZ_MAX_COLUMNS", "3")
    narrow = tmp_path / "narrow.csv"
    narrow.write_text('a,"b,c",d\n1,2,3\n4,5,6\n')  # quoted comma: 3 columns, not 4
    X, _, _ = load_array_file(narrow)
    assert X.shape == (2, 3)
    monkeypatch.setenv("PERCO_VIZ_MAX_ROWS", "1")
    with pytest.raises(InputFileError, match="rows.*PERCO_VIZ_MAX_ROWS"):
        load_array_file(narrow)


def test_idx_round_trip_and_truncation(tmp_path):
    """The streaming IDX reader still reads real files, plain and gzipped, and refuses short ones."""
    import gzip

    from perco_viz.data import read_idx

    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = b"\x00\x00\x08\x03" + struct.pack(">iii", 2, 3, 4) + arr.tobytes()
    (tmp_path / "a-idx3-ubyte").write_bytes(raw)
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress(raw))
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        np.testing.assert_array_equal(read_idx(tmp_path / name), arr)
    floats = np.linspace(0, 1, 6).astype(">f4")
    (tmp_path / "f.gz").write_bytes(gzip.compress(b"\x00\x00\x0d\x01" + struct.pack(">i", 6) + floats.tobytes()))
    np.testing.assert_array_equal(read_idx(tmp_path / "f.gz"), floats)
    (tmp_path / "short.gz").write_bytes(gzip.compress(raw[:-5]))
    (tmp_path / "short").write_bytes(raw[:-5])
    for name in ("short.gz", "short"):
        with pytest.raises(InputFileError, match="truncated"):
            read_idx(tmp_path / name)
    zeros = b"\x00\x00\x08\x03" + struct.pack(">iii", 100, 28, 28) + bytes(78_400)
    (tmp_path / "z.gz").write_bytes(gzip.compress(zeros))  # ~150 bytes on disk, 78 kB unpacked
    np.testing.assert_array_equal(read_idx(tmp_path / "z.gz", max_bytes=100_000), np.zeros((100, 28, 28)))
    with pytest.raises(InputFileError, match="declares shape.*limit"):
        read_idx(tmp_path / "z.gz", max_bytes=1000)
