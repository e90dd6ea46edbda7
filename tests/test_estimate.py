"""The sampled estimators of PC and c_i (perco_viz/estimate.py) against the exact measures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import perco_viz as pv
from perco_viz.estimate import Estimate, PerSampleEstimate, wilson_interval

N_TRIALS = 100


@pytest.fixture(autouse=True)
def _one_thread():
    """Many tiny chunks: one thread is faster than two fighting over a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _set(kind: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(student, teacher) of a few dozen points whose exact PC is quick to compute."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        t = rng.normal(size=(60, 6))
        s = np.tanh(t @ rng.normal(size=(6, 3))) + 0.5 * rng.normal(size=(60, 3))
    elif kind == "clustered":
        centres = 4.0 * rng.normal(size=(4, 8))
        t = centres[rng.integers(0, 4, 70)] + rng.normal(size=(70, 8))
        s = np.sin(t[:, :3]) + 0.3 * rng.normal(size=(70, 3))
    elif kind == "duplicated":  # 30 distinct points, drawn with repeats: duplicated rows in both
        t0 = rng.normal(size=(30, 5))
        s0 = np.tanh(t0 @ rng.normal(size=(5, 2))) + 0.4 * rng.normal(size=(30, 2))
        rows = rng.integers(0, 30, 60)
        t, s = t0[rows], s0[rows]
    elif kind == "lattice":  # integer features: many distances equal in exact arithmetic
        t = rng.integers(-2, 3, size=(50, 3)).astype(np.float64)
        s = t[:, :2] + rng.integers(-1, 2, size=(50, 2))
    else:
        raise AssertionError(kind)
    return s, t


# --------------------------------------------------------------------------- coverage
@pytest.mark.parametrize("kind", ["random", "clustered", "duplicated", "lattice"])
def test_interval_covers_exact_pc_in_at_least_93_of_100_trials(kind):
    s, t = _set(kind)
    exact = pv.perception_coherence(s, t)
    assert 0.55 < exact < 0.95  # a set where the interval has work to do
    hits = 0
    for seed in range(N_TRIALS):
        e = pv.estimate_perception_coherence(s, t, n_triplets=20_000, seed=seed)
        hits += e.low <= exact <= e.high
    assert hits >= 93, f"{kind}: the 95% interval covered the exact PC {exact:.4f} in {hits}/100 trials"


def test_all_identical_points_and_constant_student_give_exactly_one_half():
    rng = np.random.default_rng(3)
    same = np.ones((40, 4))
    for s, t in [(same, same), (np.zeros((40, 2)), rng.normal(size=(40, 5))),
                 (rng.normal(size=(40, 2)), np.full((40, 7), 3.0))]:
        exact = pv.perception_coherence(s, t)
        e = pv.estimate_perception_coherence(s, t, n_triplets=5_000, seed=0)
        assert exact == 0.5
        assert e.value == 0.5  # every triplet is a tie: ½ each, no sampling error at all
        assert e.low < 0.5 < e.high


def test_one_anchor_far_away_lies_within_the_interval():
    rng = np.random.default_rng(4)
    t = rng.normal(size=(60, 5))
    t[17] = 1e6
    s = t[:, :2] + 0.5 * rng.normal(size=(60, 2))
    exact = pv.perception_coherence(s, t)
    e = pv.estimate_perception_coherence(s, t, n_triplets=50_000, seed=1)
    assert e.low <= exact <= e.high
    c = pv.per_sample_coherence(s, t)
    pe = pv.estimate_per_sample_coherence(s, t, [17, 0], n_pairs=20_000, seed=2)
    assert np.all((pe.low <= c[[17, 0]]) & (c[[17, 0]] <= pe.high))


def test_lattice_ties_are_counted_half_as_the_exact_definition_says():
    """Brute force over every ordered triplet with integer squared distances (no rounding)."""
    rng = np.random.default_rng(5)
    t = rng.integers(-3, 4, size=(12, 3))
    s = rng.integers(-3, 4, size=(12, 2))
    d_t = ((t[:, None] - t[None]) ** 2).sum(-1)
    d_s = ((s[:, None] - s[None]) ** 2).sum(-1)
    n, total, count = 12, 0.0, 0
    for i in range(n):
        for j in range(n):
            for k in range(n):
                if len({i, j, k}) == 3:
                    total += (1 + np.sign(d_t[i, j] - d_t[i, k]) * np.sign(d_s[i, j] - d_s[i, k])) / 2
                    count += 1
    brute = total / count
    e = pv.estimate_perception_coherence(s.astype(np.float64), t.astype(np.float64), n_triplets=200_000, seed=0)
    assert e.low <= brute <= e.high
    assert abs(e.value - brute) < 0.01
    # 0.1 and 0.3 are not exact in binary: scaled distances that are equal in exact arithmetic
    # come out a few ulps apart, and the tie rule still calls them equal (same triplets, same score)
    scaled = pv.estimate_perception_coherence(0.3 * s, 0.1 * t, n_triplets=200_000, seed=0)
    assert scaled.value == e.value


# --------------------------------------------------------------------------- per sample
def test_per_sample_intervals_cover_the_exact_c_i_for_at_least_93_percent_of_anchors():
    rng = np.random.default_rng(6)
    t = rng.normal(size=(100, 6))
    s = np.tanh(t @ rng.normal(size=(6, 3))) + 0.6 * rng.normal(size=(100, 3))
    t[:20] = t[20:40]  # duplicated rows (the same in the student)
    s[:20] = s[20:40]
    exact = pv.per_sample_coherence(s, t)
    pe = pv.estimate_per_sample_coherence(s, t, np.arange(100), n_pairs=4_000, seed=0)
    assert isinstance(pe, PerSampleEstimate) and pe.method == "wilson" and pe.n_pairs == 4_000
    assert pe.anchors.dtype == np.int64 and pe.value.shape == pe.low.shape == pe.high.shape == (100,)
    covered = int(((pe.low <= exact) & (exact <= pe.high)).sum())
    assert covered >= 93, f"the per-anchor intervals covered the exact c_i for {covered}/100 anchors"
    assert np.all((pe.low <= pe.value) & (pe.value <= pe.high))


def test_per_sample_keeps_the_anchor_order_and_repeats():
    s, t = _set("random")
    pe = pv.estimate_per_sample_coherence(s, t, [5, 2, 5], n_pairs=3_000, seed=0)
    assert pe.anchors.tolist() == [5, 2, 5] and len(pe) == 3
    exact = pv.per_sample_coherence(s, t)[[5, 2, 5]]
    assert np.all(np.abs(pe.value - exact) < 0.05)
    ident = pv.estimate_per_sample_coherence(np.ones((10, 2)), np.ones((10, 3)), [0, 9], n_pairs=100, seed=0)
    assert ident.value.tolist() == [0.5, 0.5]


def test_per_sample_of_exact():
    pe = PerSampleEstimate.of_exact([1, 4], [0.9, 0.7], n=10)
    assert pe.exact and pe.n_pairs == 72 and pe.low.tolist() == pe.high.tolist() == [0.9, 0.7]


# --------------------------------------------------------------------------- the result object
def test_estimate_object():
    s, t = _set("random")
    e = pv.estimate_perception_coherence(s, t, n_triplets=10_000, seed=0)
    assert isinstance(e, pv.Estimate)
    assert float(e) == e.value and e.n_triplets == 10_000 and e.confidence == 0.95
    assert e.method == "wilson" and not e.exact
    assert e.low < e.value < e.high
    assert e.text().endswith("(95% CI, 10⁴ triplets)") and " ± " in e.text()
    wide = pv.estimate_perception_coherence(s, t, n_triplets=1_000, confidence=0.99, seed=0)
    narrow = pv.estimate_perception_coherence(s, t, n_triplets=1_000, confidence=0.5, seed=0)
    assert wide.value == narrow.value and wide.high - wide.low > narrow.high - narrow.low
    assert "99% CI, 10³ triplets" in wide.text() and "50% CI" in narrow.text()
    ex = Estimate.of_exact(0.91234, 10)
    assert ex.exact and float(ex) == ex.low == ex.high == 0.91234 and ex.n_triplets == 720
    assert ex.text() == "0.912 (exact)"


def test_text_shows_a_significant_digit_of_the_interval():
    e = Estimate(0.91234, 0.91214, 0.91254, 10**7, 0.95, "wilson")
    assert e.text() == "0.9123 ± 0.0002 (95% CI, 10⁷ triplets)"
    assert Estimate(0.5, 0.4, 0.6, 20_000, 0.9, "wilson").text() == "0.500 ± 0.100 (90% CI, 20,000 triplets)"


def test_wilson_interval_matches_its_formula():
    low, high = wilson_interval(81.0, 100, 0.95)  # by hand: 81/100 -> [0.7222, 0.8749]
    assert low == pytest.approx(0.7222, abs=1e-4) and high == pytest.approx(0.8749, abs=1e-4)
    assert wilson_interval(0.0, 10, 0.95)[0] == 0.0 and wilson_interval(10.0, 10, 0.95)[1] == 1.0


def test_seeds_reproduce_and_no_seed_is_fresh():
    s, t = _set("clustered")
    a = pv.estimate_perception_coherence(s, t, n_triplets=200_000, seed=7)
    assert a == pv.estimate_perception_coherence(s, t, n_triplets=200_000, seed=7)
    # the same triplets whatever the chunk size (a GPU scores larger chunks than the CPU; here
    # 4,000 zero columns, which change no distance, make the CPU's chunks 16x smaller)
    padded = np.hstack([t, np.zeros((len(t), 4000))])
    assert a.value == pv.estimate_perception_coherence(s, padded, n_triplets=200_000, seed=7).value
    assert a.value != pv.estimate_perception_coherence(s, t, n_triplets=200_000, seed=8).value
    fresh = {pv.estimate_perception_coherence(s, t, n_triplets=20_000).value for _ in range(3)}
    assert len(fresh) > 1
    p = pv.estimate_per_sample_coherence(s, t, [0, 1], n_pairs=2_000, seed=3)
    q = pv.estimate_per_sample_coherence(s, t, [0, 1], n_pairs=2_000, seed=3)
    assert np.array_equal(p.value, q.value) and np.array_equal(p.low, q.low)


def test_tensors_numpy_and_metrics_agree():
    s, t = _set("random")
    a = pv.estimate_perception_coherence(s, t, n_triplets=5_000, seed=0)
    b = pv.estimate_perception_coherence(torch.from_numpy(s), torch.from_numpy(t).requires_grad_(True),
                                         n_triplets=5_000, seed=0, device="cpu")
    assert a == b
    exact = pv.perception_coherence(s, t, metric="cosine", teacher_metric="sqeuclidean")
    e = pv.estimate_perception_coherence(s, t, n_triplets=20_000, metric="cosine", teacher_metric="sqeuclidean",
                                         seed=0)
    assert e.low <= exact <= e.high
    # sqeuclidean orders as euclidean does: the same triplets score the same
    assert pv.estimate_perception_coherence(s, t, n_triplets=5_000, metric="sqeuclidean", seed=0).value == a.value


def test_metric_callables_are_used_and_their_nan_refused():
    s, t = _set("random")

    def l1(x, y):
        return torch.cdist(x, y, p=1)

    exact = pv.perception_coherence(s, t, metric=l1)
    e = pv.estimate_perception_coherence(s, t, n_triplets=400, metric=l1, seed=0)
    assert e.low <= exact <= e.high

    def farthest_first(x, y):  # reverses every ordering of the student: the same triplets score 1 − ·
        return -torch.cdist(x, y)

    plain = pv.estimate_perception_coherence(s, t, n_triplets=400, seed=0)
    flipped = pv.estimate_perception_coherence(s, t, n_triplets=400, metric=farthest_first, teacher_metric="euclidean",
                                               seed=0)
    assert flipped.value == pytest.approx(1.0 - plain.value, abs=1e-12)
    with pytest.raises(ValueError, match="a metric callable must return finite numbers"):
        pv.estimate_perception_coherence(s, t, n_triplets=10, metric=lambda x, y: torch.full((1, 1), float("nan")),
                                         teacher_metric="euclidean")
    with pytest.raises(ValueError, match="a metric callable must return finite numbers"):
        pv.estimate_per_sample_coherence(s, t, [0], n_pairs=10, teacher_metric=lambda x, y: torch.full((1, 1), float("inf")))


# --------------------------------------------------------------------------- scale
def test_memmap_input_is_read_in_place(tmp_path):
    s, t = _set("random")
    np.save(tmp_path / "s.npy", s.astype(np.float32))
    np.save(tmp_path / "t.npy", t.astype(np.float32))
    sm = np.load(tmp_path / "s.npy", mmap_mode="r", allow_pickle=False)
    tm = np.load(tmp_path / "t.npy", mmap_mode="r", allow_pickle=False)
    e = pv.estimate_perception_coherence(sm, tm, n_triplets=20_000, seed=0)
    assert e == pv.estimate_perception_coherence(s.astype(np.float32), t.astype(np.float32), n_triplets=20_000, seed=0)
    exact = pv.perception_coherence(s.astype(np.float32), t.astype(np.float32))
    assert e.low <= exact <= e.high
    pe = pv.estimate_per_sample_coherence(sm, tm, [0, 3], n_pairs=1_000, seed=0)
    assert pe.value.shape == (2,)
    bad = t.astype(np.float32)
    bad[[4, 9], 1] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(ValueError, match="teacher features contain 2 NaN/inf value"):
        pv.estimate_perception_coherence(sm, np.load(tmp_path / "bad.npy", mmap_mode="r"), n_triplets=10)


def test_never_builds_an_n_by_n_matrix(monkeypatch):
    """200,000 points: an n × n float64 matrix would be 320 GB."""
    import perco_viz.coherence as coherence

    def refuse(*args, **kwargs):
        raise AssertionError("an all-pairs distance matrix was computed")

    for name in ("pairwise_dissimilarity", "exact_dissimilarity"):
        monkeypatch.setattr(coherence, name, refuse)
    monkeypatch.setattr(torch, "cdist", refuse)
    t = np.random.default_rng(0).normal(size=(200_000, 4)).astype(np.float32)
    e = pv.estimate_perception_coherence(3.0 * t, t, n_triplets=20_000, seed=0)
    assert e.value == 1.0 and e.n_triplets == 20_000
    pe = pv.estimate_per_sample_coherence(-t, t, [0, 199_999], n_pairs=1_000, seed=0, metric="cosine")
    assert pe.value.tolist() == [1.0, 1.0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here")
def test_cuda_absent_is_a_clear_value_error():
    t = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match="device 'cuda' is not available on this machine"):
        pv.estimate_perception_coherence(t, t, n_triplets=10, device="cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_same_triplets_as_the_cpu():
    s, t = _set("clustered")
    cpu = pv.estimate_perception_coherence(s, t, n_triplets=50_000, seed=0)
    gpu = pv.estimate_perception_coherence(torch.from_numpy(s).cuda(), torch.from_numpy(t).cuda(),
                                           n_triplets=50_000, seed=0)
    assert gpu == cpu
    assert pv.estimate_perception_coherence(s, t, n_triplets=50_000, seed=0, device="cuda") == cpu
    pe_cpu = pv.estimate_per_sample_coherence(s, t, [1, 2], n_pairs=5_000, seed=0)
    pe_gpu = pv.estimate_per_sample_coherence(s, t, [1, 2], n_pairs=5_000, seed=0, device="cuda")
    assert np.array_equal(pe_cpu.value, pe_gpu.value)


# --------------------------------------------------------------------------- bad input
def _bad_cases():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(20, 3))
    nan, inf = t.copy(), t.copy()
    nan[3, 1] = np.nan
    inf[5, 0] = np.inf
    return t, [
        ({"student": nan}, "student features contain 1 NaN/inf value"),
        ({"teacher": inf}, "teacher features contain 1 NaN/inf value"),
        ({"student": t[:19]}, "same points: got 19 student rows and 20 teacher rows"),
        ({"student": t[:2], "teacher": t[:2]}, "at least 3 points"),
        ({"student": t[:, :, None]}, "2-D"),
        ({"student": t.astype(complex)}, "real numbers"),
        ({"teacher": 1e300 * t}, "overflow in float64"),
        ({"n_triplets": 0}, "n_triplets must be a whole number ≥ 1"),
        ({"n_triplets": -5}, "n_triplets must be a whole number ≥ 1"),
        ({"n_triplets": 2.5}, "n_triplets must be a whole number ≥ 1"),
        ({"confidence": 0.0}, "confidence must be strictly between 0 and 1"),
        ({"confidence": 1.0}, "confidence must be strictly between 0 and 1"),
        ({"confidence": 95}, "confidence must be strictly between 0 and 1"),
        ({"confidence": float("nan")}, "confidence must be strictly between 0 and 1"),
        ({"metric": "manhattan"}, "unknown metric 'manhattan'"),
        ({"teacher_metric": "l1"}, "unknown metric 'l1'"),
        ({"seed": "abc"}, "seed must be an int or None"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"device": "meta"}, "float64 on the CPU or CUDA, not on 'meta'"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_cases()[1])))
def test_bad_input_is_a_clear_value_error(case):
    t, cases = _bad_cases()
    change, message = cases[case]
    kwargs = {"student": t, "teacher": t, "n_triplets": 100, **change}
    with pytest.raises(ValueError, match=message):
        pv.estimate_perception_coherence(kwargs.pop("student"), kwargs.pop("teacher"), **kwargs)
    kwargs = {"student": t, "teacher": t, "n_pairs": 100, **change}
    kwargs["n_pairs"] = kwargs.pop("n_triplets", 100)
    with pytest.raises(ValueError, match=message.replace("n_triplets", "n_pairs")):
        pv.estimate_per_sample_coherence(kwargs.pop("student"), kwargs.pop("teacher"), [0], **kwargs)


@pytest.mark.parametrize("anchors, message", [
    ([20], r"anchors must be point indices in \[0, 19\]: got \[20\]"),
    ([-1, 3], r"anchors must be point indices in \[0, 19\]: got \[-1\]"),
    ([], "at least one anchor"),
    ([0.5], "whole-number point indices"),
])
def test_bad_anchors(anchors, message):
    t = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match=message):
        pv.estimate_per_sample_coherence(t, t, anchors, n_pairs=10)


# --------------------------------------------------------------------------- benchmark
def test_bench_estimate_runs_through_the_cli(capsys, tmp_path):
    from perco_viz.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", "estimate", "--rows", "3000", "--student-dim", "4", "--teacher-dim", "16",
                 "--triplets", "20000", "--device", "cpu", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| rows |" in text and "| 3000 |" in text.replace(",", "")
    import json

    row = json.loads(out.read_text())["rows"]
    assert row["rows"] == 3000 and row["triplets"] == 20_000 and row["device"] == "cpu"
    assert row["low"] <= row["value"] <= row["high"] and 0.5 < row["value"] < 1.0


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_cpu_kernel_scores_triplets_as_the_torch_path(metric):
    """Float features on the CPU are scored by the numba kernel, integer ones by torch ops on
    gathered rows: on a lattice (many exact ties) both give the same score, triplet for triplet."""
    rng = np.random.default_rng(3)
    s = rng.integers(-2, 3, size=(40, 3))
    t = rng.integers(-2, 3, size=(40, 6))
    s[s.sum(1) == 0, 0] = 5  # no zero vector (cosine)
    t[t.sum(1) == 0, 0] = 5
    by_kernel = pv.estimate_perception_coherence(s.astype(np.float32), t.astype(np.float64), n_triplets=5000,
                                                 metric=metric, seed=1)
    by_torch = pv.estimate_perception_coherence(s, t, n_triplets=5000, metric=metric, seed=1)
    assert by_kernel == by_torch
    per_kernel = pv.estimate_per_sample_coherence(s.astype(np.float64), t.astype(np.float32), [0, 5, 9],
                                                  n_pairs=500, metric=metric, seed=2)
    per_torch = pv.estimate_per_sample_coherence(s, t, [0, 5, 9], n_pairs=500, metric=metric, seed=2)
    np.testing.assert_array_equal(per_kernel.value, per_torch.value)
