"""The one input-check API (perco_viz.checks): the numpy side and the tensor side apply the same
rules with the same messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from perco_viz.checks import (
    as_tensor,
    check_feature_pair,
    check_features,
    check_finite,
    check_labels,
    check_pair,
    magnitude_limit,
)


def test_check_features_returns_float64_2d():
    out = check_features(np.arange(6, dtype=np.int64).reshape(3, 2), "x")
    assert out.dtype == np.float64 and out.shape == (3, 2)
    assert check_features(np.arange(4.0), "x").shape == (4, 1)  # 1-D reads as (n, 1)
    assert check_features(torch.ones(3, 2, dtype=torch.bfloat16), "x").dtype == np.float64
    assert check_features(np.array([[True], [False]]), "x").tolist() == [[1.0], [0.0]]


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (np.ones((3, 2)) + 1j, "real numbers"),
        (torch.ones(3, 2, dtype=torch.complex64), "real numbers"),
        (np.full((3, 2), "1.5"), "numeric"),
        (np.zeros((3, 2), dtype="datetime64[s]"), "numeric"),
        (None, "numeric"),
        ([[1.0, 2.0], [3.0]], "array"),
        (np.zeros((3, 2, 2)), "2-D"),
        (np.zeros((3, 0)), "zero columns"),
        (np.array([[1.0, np.nan], [np.inf, 0.0], [0.0, 0.0]]), "2 NaN/inf value"),
        (np.full((3, 2), 1e30, dtype=np.float32), "rescale"),
        (np.full((3, 2), 1e200), "rescale"),
    ],
)
def test_check_features_refuses_with_the_tensor_sides_message(bad, words):
    with pytest.raises(ValueError, match=words) as numpy_side:
        check_features(bad, "student")
    with pytest.raises(ValueError) as tensor_side:
        t = as_tensor(bad, "student")
        check_finite(t, "student")
    assert str(numpy_side.value) == str(tensor_side.value)


def test_magnitude_limit_follows_the_incoming_dtype():
    n, d = 4, 2
    lim32 = magnitude_limit(n, d, torch.float32)
    check_features(np.full((n, d), 2 * lim32), "x")  # float64: far below float64's limit
    with pytest.raises(ValueError, match="float32"):
        check_features(np.full((n, d), 2 * lim32, dtype=np.float32), "x")
    with pytest.raises(ValueError, match="float32"):
        check_features(torch.full((n, d), 2 * lim32), "x")


def test_min_points():
    with pytest.raises(ValueError, match="at least 3 points"):
        check_features(np.zeros((2, 2)), "x", min_points=3)
    with pytest.raises(ValueError, match="at least 3 points"):
        check_feature_pair(np.zeros((2, 2)), np.zeros((2, 5)))


def test_check_feature_pair_agrees_with_check_pair():
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(5, 2)), rng.normal(size=(5, 3)).astype(np.float32)
    a, b = check_feature_pair(s, t)
    ts, tt = check_pair(s, t)
    np.testing.assert_array_equal(a, ts.numpy())
    np.testing.assert_array_equal(b, tt.double().numpy())
    for fn in (check_feature_pair, check_pair):
        with pytest.raises(ValueError, match="same points"):
            fn(s, t[:-1])
    with pytest.raises(ValueError, match="^a and b must describe the same points: got 5 a rows"):
        check_feature_pair(s, t[:-1], names=("a", "b"))


def test_check_labels():
    assert check_labels(torch.tensor([0, 1, 1]), 3).tolist() == [0, 1, 1]
    assert check_labels(["cat", "dog"], 2).dtype.kind == "U"
    with pytest.raises(ValueError, match="one entry per point: got 2 entries for 3 points"):
        check_labels([0, 1], 3)
    with pytest.raises(ValueError, match="1-D"):
        check_labels(np.zeros((3, 1)), 3, "test labels")
    with pytest.raises(ValueError, match="^train labels contain NaN/inf"):
        check_labels([0.0, np.nan, 1.0], 3, "train labels")
