"""Every data source, with small fixtures written by the tests themselves."""

from __future__ import annotations

import gzip
import importlib.util
import io
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from perco_viz.config import DataConfig
from perco_viz.data import DATASET_NAMES, SYNTHETIC, load_dataset, read_idx, stratified_choice
from perco_viz.safe_io import InputFileError, OptionalDependencyError, load_array_file

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None
HAS_PIL = importlib.util.find_spec("PIL") is not None


def _class_shares(y: torch.Tensor, n_classes: int) -> np.ndarray:
    return np.bincount(y.numpy(), minlength=n_classes) / len(y)


# ----------------------------------------------------------------------------- registry, config


def test_registry_lists_every_source():
    assert set(DATASET_NAMES) == {
        "digits", "swiss_roll", "blobs", "circles", "spheres", "npz", "csv", "image_folder",
        "mnist", "fashion_mnist", "cifar10", "cifar100",
    }


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (DataConfig(name="imagenet"), "unknown dataset 'imagenet'.*digits"),
        (DataConfig(name="digits", test_fraction=1.0), "test_fraction"),
        (DataConfig(name="blobs", n_samples=5), "n_samples"),
        (DataConfig(name="circles", noise=-1), "noise"),
        (DataConfig(name="npz"), "data.path is required"),
        (DataConfig(name="csv", path=None), "data.path is required"),
    ],
)
def test_bad_config_says_what_to_change(cfg, match):
    with pytest.raises(ValueError, match=match):
        load_dataset(cfg)


# ----------------------------------------------------------------------------- digits


def test_digits_is_the_real_sklearn_set():
    ds = load_dataset(DataConfig(name="digits"))
    assert ds.n_train + ds.n_test == 1797
    assert ds.n_test == round(0.25 * 1797)
    assert ds.X_train.shape[1:] == (1, 8, 8) and ds.X_train.dtype == torch.float32
    assert ds.input_shape == (1, 8, 8) and ds.image_shape == (1, 8, 8) and ds.is_image
    assert float(ds.X_train.min()) >= 0 and float(ds.X_train.max()) == 1.0
    assert ds.n_classes == 10 and ds.class_names == [str(i) for i in range(10)]
    assert ds.y_train.dtype == torch.int64
    thumbs = ds.images("test", [0, 3, 5])
    assert thumbs.shape == (3, 8, 8) and thumbs.dtype == np.uint8
    with pytest.raises(ValueError, match="split"):
        ds.images("val", [0])


def test_vector_dataset_has_no_images():
    ds = load_dataset(DataConfig(name="circles", n_samples=40))
    assert not ds.is_image
    with pytest.raises(ValueError, match="vectors"):
        ds.images("test", [0])


# ----------------------------------------------------------------------------- synthetic


SHAPES = {"swiss_roll": (3,), "blobs": (10,), "circles": (2,), "spheres": (3,)}
CLASSES = {"swiss_roll": 6, "blobs": 5, "circles": 2, "spheres": 3}


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_synthetic_shapes_and_stratified_split(name):
    ds = load_dataset(DataConfig(name=name, n_samples=600, test_fraction=0.2, seed=3))
    assert ds.input_shape == SHAPES[name] and not ds.is_image
    assert ds.n_train == 480 and ds.n_test == 120
    assert ds.X_train.shape == (480, *SHAPES[name]) and torch.isfinite(ds.X_train).all()
    assert ds.n_classes == CLASSES[name] == len(ds.class_names)
    overall = _class_shares(torch.cat([ds.y_train, ds.y_test]), ds.n_classes)
    test_share = _class_shares(ds.y_test, ds.n_classes)
    assert np.abs(test_share - overall).max() <= 1.0 / ds.n_test + 1e-9


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_synthetic_is_determined_by_seed(name):
    a, b = (load_dataset(DataConfig(name=name, n_samples=200, seed=1)) for _ in range(2))
    c = load_dataset(DataConfig(name=name, n_samples=200, seed=2))
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.X_train, c.X_train)


def test_swiss_roll_meta_holds_the_position():
    ds = load_dataset(DataConfig(name="swiss_roll", n_samples=300))
    assert list(ds.meta_test.columns) == ["position", "height"] and len(ds.meta_test) == ds.n_test
    # the labels are the position binned: bin order follows the position
    pos = ds.meta_test["position"].to_numpy()
    means = [pos[ds.y_test.numpy() == c].mean() for c in range(6)]
    assert means == sorted(means)
    assert "bins" in ds.description


def test_noise_changes_the_points():
    quiet = load_dataset(DataConfig(name="circles", n_samples=200, noise=0.0))
    radii = quiet.X_train.norm(dim=1)
    assert torch.allclose(radii[quiet.y_train == 0], torch.tensor(1.0), atol=1e-5)
    noisy = load_dataset(DataConfig(name="circles", n_samples=200, noise=0.2))
    assert noisy.X_train.norm(dim=1)[noisy.y_train == 0].std() > 0.05


# ----------------------------------------------------------------------------- probe, split helper


def test_probe_is_stratified_fixed_and_capped():
    ds = load_dataset(DataConfig(name="digits"))
    p = ds.probe(100, seed=0)
    assert p.dtype == torch.int64 and len(p) == 100 and len(set(p.tolist())) == 100
    assert torch.equal(p, ds.probe(100, seed=0)) and not torch.equal(p, ds.probe(100, seed=1))
    counts = np.bincount(ds.y_test[p].numpy(), minlength=10)
    assert counts.min() >= 9 and counts.max() <= 11
    assert torch.equal(ds.probe(10_000), torch.arange(ds.n_test))
    with pytest.raises(ValueError, match="at least 1"):
        ds.probe(0)


def test_stratified_choice_unlabeled_and_rare_classes():
    rng = np.random.default_rng(0)
    idx = stratified_choice(None, 5, rng, n=20)
    assert len(idx) == 5 and (np.diff(idx) > 0).all()
    y = np.array([0] * 18 + [1, 2])
    idx = stratified_choice(y, 10, np.random.default_rng(0))
    assert len(idx) == 10 and (y[idx] == 0).sum() >= 8


# ----------------------------------------------------------------------------- npz / csv


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_npz_with_string_labels_and_meta(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5))
    y = np.array(["cat", "dog"] * 20)
    path = _write_npz(tmp_path / "f.npz", features=X, labels=y, weight=np.arange(40.0))
    ds = load_dataset(DataConfig(name="npz", path=path))
    assert ds.input_shape == (5,) and ds.n_train + ds.n_test == 40
    assert ds.class_names == ["cat", "dog"] and ds.n_classes == 2
    assert list(ds.meta_test.columns) == ["weight"] and len(ds.meta_test) == ds.n_test
    assert np.allclose(torch.cat([ds.X_train, ds.X_test]).sum().item(), X.astype(np.float32).sum(), atol=1e-3)


def test_npz_unlabeled_and_continuous_target(tmp_path):
    X = np.random.default_rng(0).normal(size=(30, 4))
    ds = load_dataset(DataConfig(name="npz", path=_write_npz(tmp_path / "u.npz", X=X)))
    assert ds.y_train is None and ds.n_classes is None and ds.class_names is None
    target = np.linspace(0, 1, 30)
    ds = load_dataset(DataConfig(name="npz", path=_write_npz(tmp_path / "t.npz", X=X, y=target)))
    assert ds.y_train is None and "label" in ds.meta_test.columns


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"data": np.zeros((3, 2))}, "store the features under 'X'"),
        ({"X": np.zeros((3, 2, 2))}, "2-D"),
        ({"X": np.zeros((0, 2))}, "at least 1 row"),
        ({"X": np.array([[0.0, np.nan], [1, 2], [np.inf, 1]])}, "2 of 3 rows contain NaN/inf"),
        ({"X": np.zeros((3, 2)), "y": np.arange(4)}, "one entry per row"),
        ({"X": np.array([["a", "b"]])}, "must be numbers"),
    ],
)
def test_npz_errors_say_what_to_change(tmp_path, arrays, match):
    path = _write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(InputFileError, match=match):
        load_array_file(path)


def test_npz_object_arrays_are_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, X=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(InputFileError, match="refuses to unpickle"):
        load_array_file(path)


def test_npy_and_bytes_uploads(tmp_path):
    buf = io.BytesIO()
    np.save(buf, np.ones((4, 3)))
    X, y, meta = load_array_file(buf.getvalue(), name="upload.npy")
    assert X.shape == (4, 3) and X.dtype == np.float32 and y is None and meta is None
    X, _, _ = load_array_file(io.BytesIO(buf.getvalue()), name="upload.npy")
    assert X.shape == (4, 3)
    with pytest.raises(InputFileError, match="name"):
        load_array_file(buf.getvalue())
    with pytest.raises(InputFileError, match="unknown array format '.txt'"):
        load_array_file(b"1,2", name="a.txt")
    with pytest.raises(InputFileError, match="limit"):
        load_array_file(buf.getvalue(), name="upload.npy", max_bytes=10)
    with pytest.raises(InputFileError, match="does not exist"):
        load_array_file(tmp_path / "missing.npz")


def _csv(tmp_path, text: str, name: str = "d.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_csv_label_column_and_metadata(tmp_path):
    rows = ["a,b,c,label,city"] + [f"{i},{i * 2},{i % 3},{'xy'[i % 2]},town{i}" for i in range(20)]
    path = _csv(tmp_path, "\n".join(rows))
    X, y, meta = load_array_file(path)
    assert X.shape == (20, 3) and list(y[:2]) == ["x", "y"] and list(meta.columns) == ["city"]
    ds = load_dataset(DataConfig(name="csv", path=path))
    assert ds.class_names == ["x", "y"] and ds.input_shape == (3,)
    assert list(ds.meta_test.columns) == ["city"]
    ds = load_dataset(DataConfig(name="csv", path=path, label_column="c"))
    assert ds.class_names == ["0", "1", "2"] and ds.input_shape == (2,)


def test_csv_without_header_and_without_labels(tmp_path):
    path = _csv(tmp_path, "\n".join(f"{i},{i + 1.5}" for i in range(10)))
    X, y, meta = load_array_file(path)
    assert X.shape == (10, 2) and y is None and meta is None
    assert X[0, 1] == 1.5


@pytest.mark.parametrize(
    ("text", "kwargs", "match"),
    [
        ("a,b\n1,2\n,3\n4,5\n", {}, "1 of 3 rows contain NaN/inf"),
        ("a,b\n1,2\n3,oops\n4,5\n", {}, "column 'b' is numeric except 1 row"),
        ("a,b\n1,2\n", {"label_column": "target"}, "no column 'target'"),
        ("name\nx\ny\n", {}, "no numeric feature columns"),
        ("a,label\n1,x\n2,\n", {}, "1 row\\(s\\) have no label"),
    ],
)
def test_csv_errors_say_what_to_change(tmp_path, text, kwargs, match):
    with pytest.raises(InputFileError, match=match):
        load_array_file(_csv(tmp_path, text), **kwargs)


# ----------------------------------------------------------------------------- image folder


@pytest.fixture
def image_folder(tmp_path):
    if not HAS_PIL:
        pytest.skip("pillow is not installed (pip install pillow)")
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(["circle", "square", "zigzag"]):
        (tmp_path / name).mkdir()
        for i in range(4):
            arr = rng.integers(0, 255, size=(10 + i, 12), dtype=np.uint8) // (c + 1)
            Image.fromarray(arr, mode="L").save(tmp_path / name / f"{i}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    return tmp_path


def test_image_folder_greyscale(image_folder):
    ds = load_dataset(DataConfig(name="image_folder", path=str(image_folder), test_fraction=0.25))
    assert ds.class_names == ["circle", "square", "zigzag"]
    assert ds.n_train + ds.n_test == 12 and ds.n_test == 3
    side = ds.input_shape[-1]
    assert ds.input_shape == (1, side, side) == ds.image_shape and side == 11  # median smaller side
    assert float(ds.X_train.max()) <= 1.0 and ds.images("train", [0]).shape == (1, side, side)
    assert sorted(ds.y_test.tolist()) == [0, 1, 2]


def test_image_folder_colour(image_folder):
    from PIL import Image

    Image.new("RGB", (12, 12), (255, 0, 0)).save(image_folder / "circle" / "red.png")
    ds = load_dataset(DataConfig(name="image_folder", path=str(image_folder)))
    assert ds.input_shape[0] == 3 and ds.images("test", [0, 1]).shape[-1] == 3


def test_image_folder_errors(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        load_dataset(DataConfig(name="image_folder", path=str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="one sub-folder per class"):
        load_dataset(DataConfig(name="image_folder", path=str(tmp_path)))
    if HAS_PIL:
        (tmp_path / "empty" / "broken.png").write_bytes(b"not a png")
        with pytest.raises(InputFileError, match="broken.png"):
            load_dataset(DataConfig(name="image_folder", path=str(tmp_path)))


def test_image_folder_without_pillow_gives_an_install_hint(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(OptionalDependencyError, match="pip install pillow"):
        load_dataset(DataConfig(name="image_folder", path=str(tmp_path)))


# ----------------------------------------------------------------------------- MNIST IDX


def _idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + np.array(arr.shape, dtype=">i4").tobytes()
    return header + arr.astype(np.uint8).tobytes()


def _write_mnist(folder, n_train=40, n_test=12, side=6, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, side, side)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, side, side)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for name, arr in arrays.items():
        data = _idx_bytes(arr)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


@pytest.mark.parametrize(("layout", "gz"), [("MNIST/raw", False), ("MNIST/raw", True), (".", True)])
def test_mnist_from_idx_files(tmp_path, layout, gz):
    arrays = _write_mnist(tmp_path / layout, gz=gz)
    ds = load_dataset(DataConfig(name="mnist", path=str(tmp_path), n_samples=1000))
    assert ds.n_train == 40 and ds.n_test == 12  # the official split, under the caps
    assert ds.input_shape == (1, 6, 6) == ds.image_shape and ds.class_names[3] == "3"
    expected = arrays["train-images-idx3-ubyte"][0] / 255.0
    assert np.allclose(ds.X_train[0, 0].numpy(), expected, atol=1e-6)
    assert ds.images("train", [0])[0].tolist() == arrays["train-images-idx3-ubyte"][0].tolist()


def test_n_samples_caps_large_sets(tmp_path):
    _write_mnist(tmp_path / "FashionMNIST" / "raw", n_train=60, n_test=30)
    cfg = DataConfig(name="fashion_mnist", path=str(tmp_path), n_samples=20, test_fraction=0.25)
    ds = load_dataset(cfg)
    assert ds.n_train == 20 and ds.n_test == 7  # 20 * 0.25 / 0.75 rounded
    assert np.bincount(ds.y_train.numpy(), minlength=10).tolist() == [2] * 10  # stratified
    assert ds.class_names[0] == "T-shirt/top"
    assert torch.equal(load_dataset(cfg).X_train, ds.X_train)


def test_mnist_missing_or_truncated_files(tmp_path):
    with pytest.raises(InputFileError, match="download"):
        load_dataset(DataConfig(name="mnist", path=str(tmp_path)))
    _write_mnist(tmp_path)
    name = tmp_path / "t10k-images-idx3-ubyte"
    name.write_bytes(name.read_bytes()[:-5])
    with pytest.raises(InputFileError, match="truncated"):
        load_dataset(DataConfig(name="mnist", path=str(tmp_path)))
    name.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(InputFileError, match="not an IDX file"):
        read_idx(name)


# ----------------------------------------------------------------------------- torchvision sets


@pytest.mark.skipif(HAS_TORCHVISION, reason="torchvision is installed")
def test_cifar_without_torchvision_gives_an_install_hint(tmp_path):
    with pytest.raises(OptionalDependencyError, match="pip install torchvision") as err:
        load_dataset(DataConfig(name="cifar10", path=str(tmp_path)))
    assert isinstance(err.value, ImportError)
    with pytest.raises(OptionalDependencyError, match="pip install torchvision"):
        load_dataset(DataConfig(name="mnist", path=str(tmp_path), download=True))


def test_cifar_missing_files_do_not_download(tmp_path):
    pytest.importorskip("torchvision")
    with pytest.raises(InputFileError, match="download=true"):
        load_dataset(DataConfig(name="cifar10", path=str(tmp_path)))
    assert not any(tmp_path.iterdir())


def test_meta_rows_follow_the_split(tmp_path):
    X = np.arange(20, dtype=float)[:, None] * np.ones((1, 2))
    path = _write_npz(tmp_path / "m.npz", X=X, idx=np.arange(20))
    ds = load_dataset(DataConfig(name="npz", path=path))
    assert np.array_equal(ds.meta_test["idx"].to_numpy(), ds.X_test[:, 0].numpy().astype(int))
    assert isinstance(ds.meta_test, pd.DataFrame)


def test_effective_data_settings_say_what_a_run_really_uses():
    """Issue 12: Setup showed n_samples 2000 and probe_size 500 for the 1,797-image digits set."""
    from perco_viz.data import effective_data_settings

    digits = load_dataset(DataConfig())
    used = effective_data_settings(DataConfig(), digits.n_train, digits.n_test)
    assert used["data.n_samples"][0] is None and "1,797" in used["data.n_samples"][1]
    assert used["data.probe_size"][0] == digits.n_test == len(digits.probe(500))
    small = effective_data_settings(DataConfig(probe_size=100), digits.n_train, digits.n_test)
    assert "data.probe_size" not in small  # fits: used as given
    blobs = DataConfig(name="blobs", n_samples=300, probe_size=60)
    assert effective_data_settings(blobs, 225, 75) == {}  # synthetic: n_samples makes the points
    capped = effective_data_settings(DataConfig(name="mnist", n_samples=100_000), 60_000, 10_000)
    assert capped["data.n_samples"][0] == 60_000
