"""Property-based fuzzing (issue 7): bad input ends in a correct result or a clear error.

Every target is fed random shapes (n 0..30, d 0..6, student and teacher rows that differ),
NaN/inf, empty and constant inputs, duplicated rows, 1- and 2-row sets, huge (1e30, 1e300)
and tiny (1e-30, 1e-300) values and wrong dtypes (int, bool, object, text, complex, dates).
The contract: a finite result in range (PC, per-sample coherence, ranks and the metrics in
[0, 1]; losses finite, >= 0, with finite gradients), or a ``ValueError`` (``InputFileError``
for files) whose message names what to change. Never another exception, never a NaN, and an
input that is valid by the documented rules must succeed. Where an exact answer is cheap it
is checked too: the measures against a brute-force count of triplets, the fast loss against
the reference, PC against exact power-of-two rescaling.

Counts per target are printed at the end of the module and, when $PERCO_VIZ_FUZZ_COUNTS
names a file, written there as JSON (docs/reliability.md quotes them). Examples per property:
$PERCO_VIZ_FUZZ_EXAMPLES (default 100); $PERCO_VIZ_FUZZ_RANDOM=1 draws fresh examples instead
of the fixed, derandomized ones.
"""

from __future__ import annotations

import collections
import csv
import io
import json
import math
import os
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from perco_viz import coherence, metrics
from perco_viz.checks import magnitude_limit
from perco_viz.config import DataConfig
from perco_viz.data import load_dataset
from perco_viz.losses import LOSS_NAMES, make_loss
from perco_viz.losses.coherence import coherence_loss
from perco_viz.losses.kd import hinton_kd_loss
from perco_viz.safe_io import InputFileError, load_array_file, load_state_dict, save_safetensors
from tests.exact_distances import TIE, NearTie, brute_per_sample, brute_ranks, exact_keys

pytestmark = pytest.mark.slow  # about 25 s at 100 examples a test: `make test` runs it, not test-fast
EXAMPLES = int(os.environ.get("PERCO_VIZ_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("PERCO_VIZ_FUZZ_RANDOM") != "1",
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
SLOW = settings(FUZZ, max_examples=max(10, EXAMPLES // 3))

COUNTS: collections.Counter[tuple[str, str]] = collections.Counter()

# what each reason for refusal must mention (any one of the words)
SAYS = {
    "dtype": ("numeric", "real"),
    "shape": ("2-D",),
    "columns": ("zero columns", "widths"),
    "magnitude": ("rescale",),
    "nonfinite": ("NaN/inf",),
    "rows": ("same points",),
    "few": ("at least",),
    "classes": ("same classes",),
}
SPECIAL = [0.0, -0.0, 5e-324, 1e-300, 1e-30, -1e-30, 1e30, -1e30, 1e300, -1e300,
           math.nan, math.inf, -math.inf]
SCALES = [1e-300, 1e-30, 1e-8, 1.0, 1e8, 1e30, 1e300]
KINDS = ("generic", "scaled", "wild", "constant", "duplicated", "int", "bool")


@pytest.fixture(scope="module", autouse=True)
def _report_counts(request):
    yield
    total = sum(COUNTS.values())
    lines = [f"fuzz: {total} cases"] + [
        f"  {target}: {n} ({', '.join(f'{o} {COUNTS[(target, o)]}' for o in ('ok', 'error') if COUNTS[(target, o)])})"
        for target, n in sorted(_per_target().items())
    ]
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("\n" + "\n".join(lines))
    path = os.environ.get("PERCO_VIZ_FUZZ_COUNTS")
    if path:
        with open(path, "w") as f:
            json.dump({f"{t}|{o}": n for (t, o), n in sorted(COUNTS.items())}, f, indent=1)


def _per_target() -> dict[str, int]:
    out: collections.Counter[str] = collections.Counter()
    for (target, _), n in COUNTS.items():
        out[target] += n
    return out


# ----------------------------------------------------------------------------- strategies
@st.composite
def features(draw, n: int | None = None, d: int | None = None, kind: str | None = None) -> np.ndarray:
    """(n, d) features of one of KINDS, float64 or float32 (int64 / bool for those kinds).

    Weighted so that about half the draws are usable (n >= 3, d >= 1, generic values): the
    valid side of the contract gets as many cases as the refusals.
    """
    if n is None:
        n = draw(st.one_of(st.integers(3, 30), st.integers(3, 30), st.integers(0, 2)))
    if d is None:
        d = draw(st.one_of(st.integers(1, 6), st.integers(1, 6), st.integers(0, 6)))
    kind = kind or draw(st.sampled_from(("generic",) * (len(KINDS) - 1) + KINDS))
    grid = arrays(np.int64, (n, d), elements=st.integers(-1000, 1000))
    if kind == "generic":
        x = draw(grid) / 100.0
    elif kind == "scaled":
        x = draw(grid) / 100.0 * draw(st.sampled_from(SCALES))
    elif kind == "wild":
        x = draw(arrays(np.float64, (n, d), elements=st.floats() | st.sampled_from(SPECIAL)))
    elif kind == "constant":
        x = np.full((n, d), draw(st.sampled_from([0.0, 1.0, -3.5, 1e-30, 1e30])))
    elif kind == "duplicated":
        m = draw(st.integers(1, max(1, n // 2)))
        base = draw(arrays(np.int64, (m, d), elements=st.integers(-4, 4))).astype(np.float64)
        x = base[draw(arrays(np.int64, (n,), elements=st.integers(0, m - 1)))]
    elif kind == "int":
        return draw(arrays(np.int64, (n, d), elements=st.integers(-10**6, 10**6)))
    else:
        return draw(arrays(np.bool_, (n, d)))
    with np.errstate(over="ignore"):
        return x.astype(draw(st.sampled_from([np.float64, np.float32])))


@st.composite
def pairs(draw, same_rows: float = 0.85) -> tuple[np.ndarray, np.ndarray]:
    """(student, teacher) of the same n most of the time; otherwise independent row counts.
    A third of the pairs are clean (generic values, n >= 3, d >= 1) and must succeed."""
    if draw(st.integers(0, 2)) == 0:
        s = draw(features(n=draw(st.integers(3, 30)), d=draw(st.integers(1, 6)), kind="generic"))
        return s, draw(features(n=len(s), d=draw(st.integers(1, 6)), kind="generic"))
    s = draw(features())
    n = len(s) if same_rows >= 1 or draw(st.floats(0, 1)) < same_rows else None
    return s, draw(features(n=n))


def bad_array(draw_from: st.DataObject, n: int, d: int):
    """Something that is not an (n, d) array of real numbers."""
    choice = draw_from.draw(st.sampled_from(
        ["object", "text", "bytes", "complex", "complex_torch", "dates", "ragged", "3d", "scalar",
         "none", "dict", "timedelta"]))
    rows = max(n, 1)
    return choice, {
        "object": lambda: np.array([[1.0, "a"]] * rows, dtype=object),
        "text": lambda: np.full((rows, max(d, 1)), "1.5"),
        "bytes": lambda: np.full((rows, max(d, 1)), b"x"),
        "complex": lambda: np.ones((rows, max(d, 1))) + 1j,
        "complex_torch": lambda: torch.ones(rows, max(d, 1), dtype=torch.complex64),
        "dates": lambda: np.zeros((rows, max(d, 1)), dtype="datetime64[s]"),
        "timedelta": lambda: np.zeros((rows, max(d, 1)), dtype="timedelta64[s]"),
        "ragged": lambda: [[1.0, 2.0], [3.0]] * rows,
        "3d": lambda: np.zeros((rows, 2, 2)),
        "scalar": lambda: np.float64(3.0),
        "none": lambda: None,
        "dict": lambda: {"a": 1},
    }[choice]()


# ----------------------------------------------------------------------------- the oracle
def _torch_dtype(x: np.ndarray) -> torch.dtype:
    return torch.float64 if x.dtype == np.float64 else torch.float32


def reasons(x: np.ndarray, name: str, dtype: torch.dtype | None = None) -> set[str]:
    """Why ``x`` is not valid features by the documented rules (empty: valid); ``dtype``: the
    dtype they are computed in when not their own (a baseline's teacher: the student's)."""
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        return {"shape"}
    if x.shape[1] == 0:
        return {"columns"}
    out = set()
    if x.dtype != bool:
        a = np.abs(x.astype(np.float64))
        top = float(np.where(np.isfinite(a), a, 0).max(initial=0.0))
        if top > magnitude_limit(x.shape[0], x.shape[1], dtype or _torch_dtype(x)):
            out.add("magnitude")
        if not np.isfinite(a).all():
            out.add("nonfinite")
    return out


def pair_reasons(s: np.ndarray, t: np.ndarray, min_points: int, *, shared_dtype: bool = False) -> set[str]:
    """Reasons to refuse a (student, teacher) pair; ``shared_dtype``: the teacher is computed in
    the student's dtype (the baselines)."""
    out = reasons(s, "student") | reasons(t, "teacher")
    if shared_dtype:
        out |= reasons(t, "teacher", _torch_dtype(s))
    if len(s) != len(t):
        out.add("rows")
    if min(len(s), len(t)) < min_points:
        out.add("few")
    return out


def outcome(target: str, why: set[str], fn):
    """Run ``fn``: return its result when ``why`` is empty, else demand a ValueError naming a
    reason in ``why``. Any other exception type fails the test."""
    try:
        result = fn()
    except ValueError as exc:
        COUNTS[(target, "error")] += 1
        msg = str(exc)
        assert msg.strip(), f"{target}: empty error message"
        assert why, f"{target}: refused a valid input: {msg}"
        words = [w for r in why for w in SAYS[r]]
        assert any(w in msg for w in words), f"{target}: message {msg!r} names none of {sorted(why)}"
        return None
    COUNTS[(target, "ok")] += 1
    assert not why, f"{target}: accepted an input that is invalid because of {sorted(why)}"
    return result


def in_unit(x, what: str) -> None:
    x = np.asarray(x, dtype=np.float64)
    assert np.isfinite(x).all(), f"{what}: NaN/inf in the result"
    assert ((x >= 0) & (x <= 1)).all(), f"{what}: outside [0, 1]: {x[(x < 0) | (x > 1)][:5]}"


# ----------------------------------------------------------------------------- brute force
def _keys(x: np.ndarray, metric: str) -> list[list]:
    """Exact dissimilarity keys (tests/exact_distances.py: Fractions, never a float product)."""
    return exact_keys(np.asarray(x, dtype=np.float64), metric)


def _floor(metric: str) -> float:
    return 1.0 if metric == "cosine" else 0.0


def _judged(fn, *args, **kwargs):
    """The brute force under the library's documented tie rule (exact ties, and gaps below
    1e-12 relative); inputs with gaps too close to judge by floats are not drawn (assume)."""
    try:
        return fn(*args, tie=TIE, **kwargs)
    except NearTie:
        assume(False)


# ----------------------------------------------------------------------------- the measures
METRICS = st.sampled_from(["euclidean", "sqeuclidean", "cosine"])


@FUZZ
@given(pair=pairs(), metric=METRICS, torch_in=st.booleans())
def test_perception_coherence_and_per_sample(pair, metric, torch_in):
    s, t = pair
    why = pair_reasons(s, t, 3)
    args = (torch.from_numpy(s), torch.from_numpy(t)) if torch_in else (s, t)
    c = outcome("per_sample_coherence", why,
                lambda: coherence.per_sample_coherence(*args, metric=metric))
    pc = outcome("perception_coherence", why,
                 lambda: coherence.perception_coherence(*args, metric=metric))
    if c is None:
        return
    in_unit(c, "per_sample_coherence")
    in_unit(pc, "perception_coherence")
    assert c.shape == (len(s),)
    assert pc == pytest.approx(c.mean(), abs=1e-12)
    expected = _judged(brute_per_sample, _keys(s, metric), _keys(t, metric), _floor(metric), _floor(metric))
    np.testing.assert_allclose(c, expected, atol=1e-12)


@FUZZ
@given(pair=pairs(), metric=METRICS)
def test_rank_agreement(pair, metric):
    s, t = pair
    a = outcome("rank_agreement", pair_reasons(s, t, 3),
                lambda: coherence.rank_agreement(s, t, metric=metric))
    if a is None:
        return
    n = len(s)
    off = ~np.eye(n, dtype=bool)
    assert a.shape == (n, n) and np.isnan(np.diag(a)).all()  # the diagonal is undefined (DESIGN §1)
    in_unit(a[off], "rank_agreement")
    r_s = _judged(brute_ranks, _keys(s, metric), _floor(metric))
    r_t = _judged(brute_ranks, _keys(t, metric), _floor(metric))
    np.testing.assert_allclose(a[off], (1 - np.abs(r_t - r_s))[off], atol=1e-12)


@FUZZ
@given(x=features(), metric=METRICS)
def test_normalized_ranks(x, metric):
    why = reasons(x, "features") | ({"few"} if len(x) < 3 else set())
    r = outcome("normalized_ranks", why, lambda: coherence.normalized_ranks(x, metric=metric))
    if r is None:
        return
    off = ~np.eye(len(x), dtype=bool)
    assert np.isnan(np.diag(r)).all()
    in_unit(r[off], "normalized_ranks")
    np.testing.assert_allclose(r[off], _judged(brute_ranks, _keys(x, metric), _floor(metric))[off], atol=1e-12)


@FUZZ
@given(pair=pairs(same_rows=1.0), k=st.integers(-330, 250))
def test_pc_is_exact_under_power_of_two_rescaling(pair, k):
    """Tiny and huge but representable features give the same PC as moderate ones."""
    x, y = pair
    assume(x.dtype == np.float64 and len(x) >= 3 and x.shape[1] >= 1 and y.shape[1] >= 1)
    assume(not reasons(y, "t") and not reasons(x, "s"))
    a = np.abs(x[x != 0])
    scaled = np.ldexp(x, k)  # x · 2^k, exact
    # squared distances stay normal floats (above ~2e-308), where the square root keeps them apart
    assume(a.size and a.min() * 2.0**k > 1e-130 and not reasons(scaled, "s"))
    base = outcome("pc_rescaled", set(), lambda: coherence.perception_coherence(x, y))
    assert coherence.perception_coherence(scaled, y) == base


@FUZZ
@given(data=st.data(), n=st.integers(0, 8), d=st.integers(0, 4), side=st.sampled_from(["s", "t"]))
def test_measures_refuse_wrong_types(data, n, d, side):
    kind, bad = bad_array(data, n, d)
    good = np.arange(max(n, 1) * 3, dtype=np.float64).reshape(-1, 3)
    args = (bad, good) if side == "s" else (good, bad)
    for target, fn in [
        ("perception_coherence", lambda: coherence.perception_coherence(*args)),
        ("student_report", lambda: metrics.student_report(*args)),
        ("linear_cka", lambda: metrics.linear_cka(*args)),
        ("coherence_loss", lambda: make_loss("coherence", student_dim=3, teacher_dim=3)(*args)),
        ("rkd", lambda: make_loss("rkd", student_dim=3, teacher_dim=3)(*args)),
    ]:
        try:
            fn()
        except ValueError as exc:
            COUNTS[(f"{target} (wrong type)", "error")] += 1
            assert str(exc).strip()
            words = {"ragged": ("array",), "scalar": ("2-D", "at least", "same points")}.get(
                kind, ("numeric", "real", "2-D"))  # a scalar reads as one point
            assert any(w in str(exc) for w in words), str(exc)
        else:
            pytest.fail(f"{target} accepted {kind} features")


# ----------------------------------------------------------------------------- the metrics
@SLOW
@given(pair=pairs(), labelled=st.booleans(), k=st.integers(1, 12))
def test_student_report(pair, labelled, k):
    s, t = pair
    why = pair_reasons(s, t, 3)
    labels = np.arange(len(s)) % 3 if labelled else None
    r = outcome("student_report", why,
                lambda: metrics.student_report(s, t, labels, k=k, trust_k=k))
    if r is None:
        return
    in_unit(list(r.values()), "student_report")
    assert r["pc"] == coherence.perception_coherence(s, t)
    assert ("knn_acc" in r) == labelled


@FUZZ
@given(pair=pairs(), k=st.integers(1, 12))
def test_neighbourhood_metrics_and_cka(pair, k):
    s, t = pair
    labels = np.arange(len(s)) % 2
    knn = outcome("knn_accuracy", reasons(s, "features") | ({"few"} if len(s) < 2 else set()),
                  lambda: metrics.knn_accuracy(s, labels, k=k))
    trust = outcome("trustworthiness", pair_reasons(t, s, 3),
                    lambda: metrics.trustworthiness(t, s, k=k))
    overlap = outcome("knn_overlap", pair_reasons(t, s, 2), lambda: metrics.knn_overlap(t, s, k=k))
    cka = outcome("linear_cka", pair_reasons(s, t, 2), lambda: metrics.linear_cka(s, t))
    for name, v in [("knn_accuracy", knn), ("trustworthiness", trust), ("knn_overlap", overlap),
                    ("linear_cka", cka)]:
        if v is not None:
            in_unit(v, name)


def test_linear_cka_never_exceeds_one():
    """Found by this file: rounding gave 1.0000000000000002 (now clipped, by Cauchy-Schwarz)."""
    a = np.array([[0.0, 0.01]] + [[0.01, 0.01]] * 15)
    b = np.array([[0.0]] + [[0.01]] * 15)
    assert metrics.linear_cka(a, b) <= 1.0
    assert metrics.student_report(a, b)["cka"] <= 1.0


# ----------------------------------------------------------------------------- the losses
LOSS_CASES = [("coherence", {"kernel": kernel, "impl": impl})
              for kernel in coherence.KERNELS for impl in ("fast", "reference")]
LOSS_CASES += [(name, {}) for name in LOSS_NAMES if name != "coherence"]
MIN_POINTS = {"coherence": 3, "rkd": 3, "pkt": 3, "fitnet": 2, "sp": 2, "cc": 2, "cka": 2}
UPPER = {"coherence": 1.0, "cka": 1.0}


def _leaf(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x))
    return t.requires_grad_(True) if t.is_floating_point() else t


def _loss_case_id(case) -> str:
    name, opts = case
    return "-".join([name, *map(str, opts.values())])


@pytest.mark.slow  # 10 cases × EXAMPLES inputs; tests/test_loss_reference.py is the quick check of values
@pytest.mark.parametrize("case", LOSS_CASES, ids=_loss_case_id)
@FUZZ
@given(pair=pairs())
def test_losses(case, pair):
    name, options = case
    s, t = pair
    target = _loss_case_id(case)
    why = pair_reasons(s, t, MIN_POINTS[name], shared_dtype=name != "coherence")
    if name == "fitnet" and 0 in (s.shape[1], t.shape[1]):
        why = (why - {"magnitude", "nonfinite", "rows", "few"}) | {"columns"}
    student = _leaf(s)
    loss = outcome(target, why, lambda: make_loss(
        name, student_dim=s.shape[1], teacher_dim=t.shape[1], **options)(student, torch.from_numpy(t)))
    if loss is None:
        return
    value = float(loss.detach())
    assert math.isfinite(value) and value >= 0, f"{target}: loss {value}"
    assert value <= UPPER.get(name, math.inf) + 1e-6, f"{target}: loss {value} above its bound"
    if student.requires_grad:
        loss.backward()
        assert torch.isfinite(student.grad).all(), f"{target}: non-finite gradient"
    if name == "coherence" and options["kernel"] == "ramp" and options["impl"] == "fast":
        ref = make_loss("coherence", student_dim=s.shape[1], teacher_dim=t.shape[1],
                        kernel="ramp", impl="reference")(torch.from_numpy(s), torch.from_numpy(t))
        assert value == pytest.approx(float(ref), abs=1e-5 if s.dtype == np.float64 else 1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_ramp_on_an_equidistant_row(dtype):
    """Anchor 0 sees both other points at distance 71: its row std is 0, so its normalized
    distances are 71 / 1e-12, where v ± τ rounds to v unless the row is shifted first; the tie
    must count ½, as in the reference."""
    s = torch.tensor([[0.0], [71.0], [71.0]], dtype=dtype)
    t = torch.tensor([[0.0], [1.0], [3.0]], dtype=dtype)
    fast, ref = (coherence_loss(s, t, kernel="ramp", impl=impl) for impl in ("fast", "reference"))
    assert float(fast) == pytest.approx(float(ref), abs=1e-5)


def test_tiny_distances_keep_their_order():
    """Tiny distances keep their order: PC is unchanged by an exact power-of-two rescaling to
    distances of ~5e-78 (the square root keeps every normal d², down to ~1.5e-154 in float64)."""
    x = np.array([[0.0], [-0.01], [0.01]])
    y = np.array([[0.0], [1.0], [1.0]])
    assert coherence.perception_coherence(np.ldexp(x, -250), y) == coherence.perception_coherence(x, y)


@FUZZ
@given(pair=pairs(), temperature=st.sampled_from([0.5, 1.0, 4.0, 1e-3, 1e3]))
def test_hinton_kd(pair, temperature):
    s, t = pair
    why = pair_reasons(s, t, 1, shared_dtype=True)
    if s.ndim == 2 and t.ndim == 2 and s.shape[1] != t.shape[1] and "columns" not in why:
        why.add("classes")
    student = _leaf(s)
    loss = outcome("hinton_kd", why, lambda: hinton_kd_loss(student, torch.from_numpy(t), temperature))
    if loss is None:
        return
    value = float(loss.detach())
    assert math.isfinite(value) and value >= 0, f"hinton_kd: loss {value}"
    if student.requires_grad:
        loss.backward()
        assert torch.isfinite(student.grad).all()


@FUZZ
@given(name=st.sampled_from([*LOSS_NAMES, "triplet", "", "COHERENCE"]),
       options=st.dictionaries(st.sampled_from(["tau", "kernel", "gamma", "angle_weight", "bogus"]),
                               st.sampled_from([0, -1, 0.1, math.nan, math.inf, "ramp", "x", None]),
                               max_size=2))
def test_make_loss_options(name, options):
    """Unknown names and bad options are refused when the loss is built, with the choices."""
    try:
        loss = make_loss(name, student_dim=3, teacher_dim=3, **options)
    except ValueError as exc:
        COUNTS[("make_loss options", "error")] += 1
        assert str(exc).strip()
        return
    except TypeError as exc:  # pragma: no cover - reported as a failure below
        pytest.fail(f"make_loss({name!r}, {options}) raised TypeError: {exc}")
    COUNTS[("make_loss options", "ok")] += 1
    s = torch.randn(6, 3, requires_grad=True, generator=torch.Generator().manual_seed(0))
    value = loss(s, torch.randn(6, 3, generator=torch.Generator().manual_seed(1)))
    assert torch.isfinite(value) and float(value.detach()) >= 0


# ----------------------------------------------------------------------------- the loaders
def _npz_bytes(arrays_: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays_)
    return buf.getvalue()


@st.composite
def npz_members(draw) -> dict[str, np.ndarray]:
    """Random arrays under random keys, dtypes and shapes (no object arrays: savez pickles)."""
    keys = draw(st.lists(st.sampled_from(["X", "features", "y", "labels", "meta", "z"]),
                         unique=True, max_size=4))
    out = {}
    for key in keys:
        shape = tuple(draw(st.lists(st.integers(0, 5), max_size=3)))
        dtype = draw(st.sampled_from(["f8", "f4", "f2", "i8", "u1", "?", "c16", "U3", "S2",
                                      "M8[s]", "m8[s]", [("a", "f4")]]))
        base = draw(arrays(np.float64, shape, elements=st.floats() | st.sampled_from(SPECIAL)))
        with np.errstate(all="ignore"):
            if np.dtype(dtype).kind in "iu?":
                base = np.nan_to_num(base, nan=0, posinf=0, neginf=0).clip(-100, 100)
            out[key] = (base.astype(str) if np.dtype(dtype).kind in "US" else base).astype(dtype)
    if draw(st.booleans()):  # half the files hold usable features (and maybe labels)
        x = draw(features(n=draw(st.integers(1, 12)), d=draw(st.integers(1, 4))))
        out["X"] = x
        if draw(st.booleans()):
            out["y"] = draw(arrays(np.int64, (len(x),), elements=st.integers(0, 3)))
    return out


def _valid_table(X) -> bool:
    if X.dtype.kind not in "biuf" or X.ndim != 2 or 0 in X.shape:
        return False
    with np.errstate(over="ignore"):
        return bool(np.isfinite(X.astype(np.float32)).all())


@FUZZ
@given(members=npz_members())
def test_load_array_file_npz_contents(members):
    data = _npz_bytes(members)
    xkey = next((k for k in ("X", "features") if k in members), None)
    ykey = next((k for k in ("y", "labels") if k in members), None)
    try:
        X, y, meta = load_array_file(data, name="fuzz.npz")
    except InputFileError as exc:
        COUNTS[("load_array_file npz contents", "error")] += 1
        assert str(exc).strip() and "fuzz.npz" in str(exc)
        valid_x = xkey is not None and _valid_table(members[xkey])
        assert not (valid_x and ykey is None), f"refused valid, unlabelled features: {exc}"
        return
    COUNTS[("load_array_file npz contents", "ok")] += 1
    assert xkey is not None and _valid_table(members[xkey])
    np.testing.assert_array_equal(X, members[xkey].astype(np.float32))
    assert X.dtype == np.float32 and np.isfinite(X).all()
    assert y is None or len(y) == len(X)
    assert meta is None or len(meta) == len(X)


@FUZZ
@given(data=st.binary(max_size=600), suffix=st.sampled_from([".npz", ".npy", ".csv"]))
def test_load_array_file_random_bytes(data, suffix):
    try:
        X, y, _ = load_array_file(data, name=f"fuzz{suffix}")
    except InputFileError as exc:
        COUNTS[("load_array_file random bytes", "error")] += 1
        assert str(exc).strip()
        return
    COUNTS[("load_array_file random bytes", "ok")] += 1
    assert X.ndim == 2 and X.dtype == np.float32 and np.isfinite(X).all()
    assert y is None or len(y) == len(X)


def _mutate(data: bytes, draw_from: st.DataObject) -> bytes:
    """Truncate, flip bytes, or overwrite a run: what a bad download or disk does."""
    how = draw_from.draw(st.sampled_from(["truncate", "flip", "overwrite"]))
    b = bytearray(data)
    if how == "truncate":
        return bytes(b[: draw_from.draw(st.integers(0, len(b) - 1))])
    for _ in range(draw_from.draw(st.integers(1, 8))):
        i = draw_from.draw(st.integers(0, len(b) - 1))
        if how == "flip":
            b[i] ^= 1 << draw_from.draw(st.integers(0, 7))
        else:
            b[i: i + 8] = draw_from.draw(st.binary(min_size=8, max_size=8))
    return bytes(b)


@FUZZ
@given(data=st.data(), fmt=st.sampled_from(["npz", "npz-compressed", "npy"]))
def test_load_array_file_corrupted(data, fmt):
    X = np.arange(24, dtype=np.float64).reshape(6, 4)
    buf = io.BytesIO()
    {"npz": lambda: np.savez(buf, X=X, y=np.arange(6)),
     "npz-compressed": lambda: np.savez_compressed(buf, X=X, y=np.arange(6)),
     "npy": lambda: np.save(buf, X)}[fmt]()
    corrupted = _mutate(buf.getvalue(), data)
    try:
        got, _, _ = load_array_file(corrupted, name=f"fuzz.{fmt[:3]}")
    except InputFileError as exc:
        COUNTS[("load_array_file corrupted", "error")] += 1
        assert str(exc).strip()
        return
    COUNTS[("load_array_file corrupted", "ok")] += 1
    assert got.ndim == 2 and got.dtype == np.float32 and np.isfinite(got).all()


ODD_CELLS = st.sampled_from(["nan", "NaN", "inf", "-inf", "", "abc", "1e400", "True", "false",
                             " 7 ", '"4"', "1,5", "0x1F", "1e-400", "ñ", "NULL"])
NUMBER_CELLS = st.integers(-1000, 1000).map(str) | st.floats(-1e6, 1e6).map(repr)
CELLS = st.one_of(NUMBER_CELLS, NUMBER_CELLS, NUMBER_CELLS, ODD_CELLS, st.text(max_size=4))


@st.composite
def csv_tables(draw) -> tuple[list[str], list[list[str]]]:
    """A header and rows of random cells; most rows as wide as the header, some not."""
    header = draw(st.lists(st.sampled_from(["a", "b", "c", "label", "y", "1", "2.5", "a", ""]),
                           min_size=1, max_size=5))
    width = st.just(len(header)) | st.integers(0, 6)
    cells = NUMBER_CELLS if draw(st.booleans()) else CELLS  # half the tables are all numbers
    rows = draw(st.lists(width.flatmap(lambda w: st.lists(cells, min_size=w, max_size=w)), max_size=8))
    return header, rows


@FUZZ
@given(table=csv_tables(), label_column=st.sampled_from([None, None, "label", "a", "missing"]))
def test_load_array_file_csv_cells(table, label_column):
    header, rows = table
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    try:
        X, y, meta = load_array_file(buf.getvalue().encode(), name="fuzz.csv", label_column=label_column)
    except InputFileError as exc:
        COUNTS[("load_array_file csv cells", "error")] += 1
        assert str(exc).strip() and "fuzz.csv" in str(exc)
        return
    COUNTS[("load_array_file csv cells", "ok")] += 1
    assert X.ndim == 2 and X.dtype == np.float32 and np.isfinite(X).all() and len(X) >= 1
    assert y is None or len(y) == len(X)
    assert meta is None or len(meta) == len(X)


@SLOW
@given(members=npz_members(), name=st.sampled_from(["npz", "csv"]))
def test_load_dataset_from_fuzzed_files(tmp_path_factory, members, name):
    path = tmp_path_factory.mktemp("fuzz") / f"data.{name}"
    if name == "npz":
        path.write_bytes(_npz_bytes(members))
    else:
        cols = {k: v.reshape(-1)[:6] for k, v in members.items() if v.ndim >= 1}
        n = min((len(v) for v in cols.values()), default=0)
        lines = [",".join(cols)] + [",".join(str(v[i]) for v in cols.values()) for i in range(n)]
        path.write_text("\n".join(lines))
    try:
        ds = load_dataset(DataConfig(name=name, path=str(path)))
    except ValueError as exc:  # InputFileError included
        COUNTS[("load_dataset npz/csv", "error")] += 1
        assert str(exc).strip()
        return
    COUNTS[("load_dataset npz/csv", "ok")] += 1
    assert torch.isfinite(ds.X_train).all() and torch.isfinite(ds.X_test).all()
    assert ds.n_train >= 1 and ds.n_test >= 1
    if ds.y_train is not None:
        assert ds.y_train.dtype == torch.int64 and int(ds.y_train.min()) >= 0
        assert int(ds.y_train.max()) < ds.n_classes


@FUZZ
@given(data=st.data(), fmt=st.sampled_from([".safetensors", ".pt"]))
def test_load_state_dict_corrupted(tmp_path_factory, data, fmt):
    path = tmp_path_factory.mktemp("weights") / f"w{fmt}"
    state = {"layer.weight": torch.arange(12.0).reshape(3, 4), "layer.bias": torch.zeros(3)}
    if fmt == ".safetensors":
        save_safetensors(state, path)
    else:
        torch.save(state, path)
    path.write_bytes(_mutate(path.read_bytes(), data))
    try:
        got = load_state_dict(path)
    except InputFileError as exc:
        COUNTS[("load_state_dict corrupted", "error")] += 1
        assert str(exc).strip() and path.name in str(exc)
        return
    COUNTS[("load_state_dict corrupted", "ok")] += 1
    assert got and all(isinstance(v, torch.Tensor) for v in got.values())


def test_npz_zip_members_are_never_unpickled():
    """A zip member named X.npy that holds a pickle, and one that is not .npy at all."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("X.npy", b"\x80\x04\x95" + b"\x00" * 20)
    with pytest.raises(InputFileError):
        load_array_file(buf.getvalue(), name="odd.npz")
