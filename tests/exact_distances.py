"""Exact dissimilarity keys and brute-force ranks for the tests (DESIGN.md §1), in plain
Python on Fractions: never a float matrix product, so they can judge the library's ties."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

NORM_FLOOR = Fraction(1e-12)  # the library's cosine: x / max(‖x‖, 1e-12)
TIE = 1e-12  # relative gap at or below which two keys tie, as the library's tie rule says
AMBIGUOUS = 1e-6  # relative gaps in (TIE, AMBIGUOUS]: too close to judge a float computation by


class NearTie(Exception):
    """Two keys of one anchor are too close to say whether floats see them tied or not."""


def exact_keys(x: np.ndarray, metric: str) -> list[list]:
    """keys[i][j], exact and ordered as δ(x_i, x_j) for a fixed anchor i: the squared distance
    for euclidean and sqeuclidean (Python ints on integer data, Fractions of the floats
    otherwise); −sign(cos)·cos² (an exact Fraction, increasing with 1 − cos) for cosine, with
    the library's norm floor (a zero vector is at cosine 0, distance 1, from everything)."""
    x = np.asarray(x)
    integral = np.array_equal(x, np.round(x))
    rows = [[int(v) if integral else Fraction(float(v)) for v in row] for row in x.reshape(len(x), -1)]
    sq = [sum(p * p for p in a) for a in rows]
    n = len(rows)
    keys = [[0] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            a, b = rows[i], rows[j]
            if metric == "cosine":
                dot = sum(p * q for p, q in zip(a, b))
                norms = max(sq[i], NORM_FLOOR**2) * max(sq[j], NORM_FLOOR**2)
                keys[i][j] = -(1 if dot > 0 else -1) * Fraction(dot * dot) / norms
            else:
                keys[i][j] = sum((p - q) ** 2 for p, q in zip(a, b))
    return keys


def compare(a, b, floor: float = 0.0, tie: float = 0.0) -> int:
    """sign(a − b), or 0 for a tie: equal, or (``tie`` > 0) within ``tie`` relative to
    max(|a|, |b|, floor). With ``tie`` > 0, gaps up to :data:`AMBIGUOUS` raise :class:`NearTie`."""
    if a == b:
        return 0
    if tie > 0:
        a, b = Fraction(a), Fraction(b)
        gap = float(abs(a - b) / max(abs(a), abs(b), Fraction(floor)))  # exact: no underflow
        if gap <= tie:
            return 0
        if gap <= AMBIGUOUS:
            raise NearTie
    return 1 if a > b else -1


def brute_ranks(keys: list[list], floor: float = 0.0, tie: float = 0.0) -> np.ndarray:
    """R_i(j) = (#{k ∉ {i, j}: D[i,k] < D[i,j]} + ½ #{… = …}) / (n − 2), NaN on the diagonal."""
    n = len(keys)
    r = np.full((n, n), np.nan)
    for i in range(n):
        for j in range(n):
            if i != j:
                signs = [compare(keys[i][k], keys[i][j], floor, tie) for k in range(n) if k not in (i, j)]
                r[i, j] = (signs.count(-1) + 0.5 * signs.count(0)) / (n - 2)
    return r


def brute_per_sample(keys_s: list[list], keys_t: list[list], floor_s: float = 0.0, floor_t: float = 0.0,
                     tie: float = 0.0) -> np.ndarray:
    """c_i: the share of ordered pairs (j, k), j ≠ k ≠ i, with (D_T[i,j] − D_T[i,k])·(D_S[i,j] −
    D_S[i,k]) > 0, ties ½."""
    n = len(keys_s)
    c = np.zeros(n)
    for i in range(n):
        others = [p for p in range(n) if p != i]
        total = 0.0
        for j in others:
            for k in others:
                if j != k:
                    prod = compare(keys_t[i][j], keys_t[i][k], floor_t, tie) * compare(keys_s[i][j], keys_s[i][k], floor_s, tie)
                    total += 1.0 if prod > 0 else 0.5 if prod == 0 else 0.0
        c[i] = total / ((n - 1) * (n - 2))
    return c
