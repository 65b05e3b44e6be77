"""Float sums that stay exact: error-free extraction (per group, or as prefix sums) and
double-double partials.

A float64 sum loses what cancels: after values of 1e12 a running sum cannot hold the 1e-4 digits
of later small values, and a window's sum taken as the difference of two running sums inherits
that loss from values *outside* the window. Here every sum is carried exactly enough that the
result is the correctly rounded exact sum in all but contrived cases (cancellation beyond about
1e-32 of the magnitudes involved):

- ``group_sums``: per group of a micro-batch, the exact sum as a double-double ``(hi, lo)``;
- ``dd_add`` / ``dd_sum``: merging double-double partials (tiles, prefixes, request-time merges);
- ``prefix_terms``: prefix sums whose differences are exact, for training sets' windows.

All three rest on one idea (Rump, Ogita and Oishi's error-free extraction, as in AccSum): with
``sigma`` a power of two at least ``n * max|x|`` (times two), ``q = (sigma + x) - sigma`` is
exact, every ``q`` is a multiple of ``ulp(sigma) / 2``, and any sum of up to ``n`` of them is
exact in float64. The remainder ``x - q`` is exact too and about ``2**-53 * n`` times smaller, so
a few rounds of extraction split the values into a few float arrays whose sums are all exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

__all__ = ["DoubleDouble", "dd_add", "dd_sum", "dd_value", "group_sums", "prefix_terms", "two_sum"]

DoubleDouble = tuple[float, float]  # (hi, lo): the value hi + lo, |lo| <= ulp(hi) / 2
_MAX_ROUNDS = 40  # each round takes at least ~20 bits off: more than the float64 exponent span


def two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(s, e)`` with ``s = fl(a + b)`` and ``a + b = s + e`` exactly (Knuth), element-wise."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


def _sigma(magnitude: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """A power of two >= 2 * (count + 1) * magnitude (0 where the magnitude is 0)."""
    _, exponent = np.frexp(magnitude)  # magnitude < 2**exponent
    _, count_bits = np.frexp((counts + 1).astype(np.float64))
    with np.errstate(over="ignore"):
        sigma = np.ldexp(1.0, exponent + count_bits + 1)
    # Near float64's top no sigma fits: those values are summed plainly (they are ~1e300).
    return np.where((magnitude > 0) & np.isfinite(sigma), sigma, 0.0)


def _renormalized(terms: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The exact sum of ``terms`` (largest first, each exact) as a double-double, element-wise."""
    hi = terms[0]
    lo = np.zeros_like(hi)
    for term in terms[1:]:
        hi, error = two_sum(hi, term)
        lo = lo + error
    return two_sum(hi, lo)


def group_sums(values: np.ndarray, group_ids: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact sum of each group's values as ``(hi, lo)`` arrays (nulls must be 0 already).

    Groups holding a non-finite value get the plain float sum (inf or nan, as IEEE says)."""
    x = values.astype(np.float64, copy=False)
    counts = np.bincount(group_ids, minlength=n_groups)
    finite = np.isfinite(x)
    if not finite.all():
        plain = np.bincount(group_ids, weights=x, minlength=n_groups)
        bad = np.zeros(n_groups, dtype=bool)
        bad[group_ids[~finite]] = True
        x = np.where(bad[group_ids], 0.0, x)
    else:
        plain, bad = None, None
    terms: list[np.ndarray] = []
    residual = x
    for _ in range(_MAX_ROUNDS):
        magnitude = np.zeros(n_groups)
        np.maximum.at(magnitude, group_ids, np.abs(residual))
        if not magnitude.any():
            break
        sigma = _sigma(magnitude, counts)[group_ids]
        extracted = (sigma + residual) - sigma
        residual = residual - extracted
        terms.append(np.bincount(group_ids, weights=extracted, minlength=n_groups))
    else:
        terms.append(np.bincount(group_ids, weights=residual, minlength=n_groups))
    if not terms:
        terms.append(np.zeros(n_groups))
    hi, lo = _renormalized(terms)
    if bad is not None and plain is not None:
        hi, lo = np.where(bad, plain, hi), np.where(bad, 0.0, lo)
    return hi, lo


def dd_add(a: DoubleDouble, b: DoubleDouble) -> DoubleDouble:
    """``a + b`` as a double-double (the scalar merge of two partial sums)."""
    s = a[0] + b[0]
    bb = s - a[0]
    e = (a[0] - (s - bb)) + (b[0] - bb) + a[1] + b[1]
    hi = s + e
    return hi, e - (hi - s)


def dd_sum(parts: Iterable[DoubleDouble]) -> DoubleDouble:
    """The sum of many double-doubles: ``math.fsum`` is exact before its one rounding."""
    flat = [x for part in parts for x in part]
    hi = math.fsum(flat)
    if not math.isfinite(hi):
        return hi, 0.0
    flat.append(-hi)
    return hi, math.fsum(flat)


def dd_value(part: DoubleDouble) -> float:
    return part[0] + part[1]


def prefix_terms(values: np.ndarray) -> list[np.ndarray]:
    """Prefix sums of ``values`` split into terms whose differences are all exact: element ``i``
    of each term is over the first ``i`` values (a leading 0). The sum over positions ``[lo, hi)``
    is ``sum(t[hi] - t[lo] for t in terms)`` with every difference exact, so values outside the
    range cannot disturb it. One ``sigma`` for all values (their count and largest magnitude)
    makes every extracted value a multiple of one unit, so a plain running sum is exact."""
    terms: list[np.ndarray] = []
    residual = values.astype(np.float64, copy=True)
    counts = np.array([len(values)])
    for _ in range(_MAX_ROUNDS):
        magnitude = np.abs(residual).max(initial=0.0)
        if magnitude == 0.0:
            break
        sigma = float(_sigma(np.array([magnitude]), counts)[0])
        extracted = (sigma + residual) - sigma
        residual = residual - extracted
        terms.append(np.concatenate([[0.0], np.cumsum(extracted)]))
    else:
        terms.append(np.concatenate([[0.0], np.cumsum(residual)]))
    return terms or [np.zeros(len(values) + 1)]
