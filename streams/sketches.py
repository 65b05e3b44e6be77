"""Mergeable sketches: approx_count_distinct (HyperLogLog) and approx_percentile (a logarithmic
histogram with relative-error guarantee, as DDSketch).

Both are written here in numpy rather than taken from a sketch library on purpose: their state
is a pure function of the multiset of values seen (registers take a max, buckets add counts), so
merging is exactly associative, commutative, and independent of how events were cut into tiles.
That is what lets the value served online (tiles merged) equal, bit for bit, the value a training
set computes (one group per spine row) — docs/design.md §4. Library sketches we considered do not
have that property: KLL compacts randomly, t-digest depends on insertion and merge order, and a
DataSketches HLL union switches estimators. Both are also vectorized over a micro-batch.

Partials are JSON lists tagged with the sketch kind and a format version:
``["hll", 1, precision, "sparse"|"dense", base64]`` and
``["loghist", 1, precision, count, min, max, zeros, [pos keys], [pos counts], [neg keys], [neg counts]]``.
``None`` is the empty sketch (no non-null value).
"""

from __future__ import annotations

import base64
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from featurebus.schemas.errors import StoreFormatError
from featurebus.streams.functions import AggregationFunction

__all__ = [
    "ApproxCountDistinct",
    "ApproxPercentile",
    "HLL_PRECISION_RANGE",
    "PERCENTILE_PRECISION_RANGE",
    "hll_relative_error",
    "percentile_relative_error",
]

# (lowest, highest, default), as Tecton's approx_count_distinct(precision=8) and
# approx_percentile(percentile, precision=100).
HLL_PRECISION_RANGE = (4, 16, 8)
PERCENTILE_PRECISION_RANGE = (20, 500, 100)

_HLL_TAG, _HIST_TAG, _FORMAT = "hll", "loghist", 1


def hll_relative_error(precision: int) -> float:
    """The standard error of the HyperLogLog estimate with ``2**precision`` registers."""
    return 1.04 / math.sqrt(1 << precision)


def percentile_relative_error(precision: int) -> float:
    """The guaranteed bound: the result is within this relative distance of the exact value at
    rank ``floor(percentile * (count - 1))`` of the window's sorted values."""
    return 1.0 / precision


def _check(partial: list[Any], tag: str, precision: int) -> None:
    if partial[0] != tag or partial[1] != _FORMAT or partial[2] != precision:
        raise StoreFormatError(
            f"a {tag} sketch partial has format {partial[:3]!r}, expected [{tag!r}, {_FORMAT}, {precision}]: "
            "it was written by another featurebus version or definition; re-apply the repository so the "
            "feature is materialized again"
        )


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer: pandas' hash of numbers mixes its high bits poorly (-1 and
    -145089058 share their top 8 bits), and HyperLogLog indexes registers by the high bits."""
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(33))
        h = h * np.uint64(0xFF51AFD7ED558CCD)
        h = h ^ (h >> np.uint64(33))
        h = h * np.uint64(0xC4CEB9FE1A85EC53)
        mixed: np.ndarray = h ^ (h >> np.uint64(33))
        return mixed


class ApproxCountDistinct:
    """HyperLogLog over a 64-bit hash of each value (``pandas.util.hash_array``: SipHash for
    strings, a fixed mix for numbers; deterministic across processes). ``2**precision`` registers;
    relative standard error ``1.04 / sqrt(2**precision)`` (6.5% at the default precision 8),
    linear counting below ``2.5 * 2**precision`` (nearly exact for small windows)."""

    def __init__(self, function: AggregationFunction, precision: int) -> None:
        self.function = function
        self.precision = precision
        self._m = 1 << precision

    def initialize(self) -> None:
        return None

    def from_groups(
        self, values: np.ndarray, valid: np.ndarray, group_ids: np.ndarray, n_groups: int, ts_ms: np.ndarray
    ) -> list[list[Any] | None]:
        out: list[list[Any] | None] = [None] * n_groups
        rows = np.flatnonzero(valid)
        if not len(rows):
            return out
        index, rank = self._registers(values[rows])
        # The highest rank per (group, register): sort by both then by rank, keep each run's last.
        cell = group_ids[rows].astype(np.int64) * self._m + index
        order = np.lexsort((rank, cell))
        cell, rank = cell[order], rank[order]
        last = np.append(np.flatnonzero(np.diff(cell)), len(cell) - 1)
        groups, registers, ranks = cell[last] // self._m, cell[last] % self._m, rank[last]
        bounds = [0, *(np.flatnonzero(np.diff(groups)) + 1).tolist(), len(groups)]
        for lo, hi in itertools.pairwise(bounds):
            out[int(groups[lo])] = self._encode(registers[lo:hi], ranks[lo:hi])
        return out

    def _registers(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Register index (top ``precision`` bits) and rank (leading zeros of the rest, plus 1)."""
        hashes = _fmix64(pd.util.hash_array(values).astype(np.uint64))
        p = self.precision
        index = (hashes >> np.uint64(64 - p)).astype(np.int64)
        rest = hashes << np.uint64(p)
        # Exact bit length of a uint64 through two 32-bit halves (float64 holds 32 bits exactly).
        high, low = (rest >> np.uint64(32)).astype(np.float64), (rest & np.uint64(0xFFFFFFFF)).astype(np.float64)
        bit_length = np.where(high > 0, 32 + np.frexp(high)[1], np.frexp(low)[1])
        rank = np.minimum(64 - bit_length + 1, 64 - p + 1).astype(np.int64)
        return index, rank

    def _encode(self, index: np.ndarray, rank: np.ndarray) -> list[Any]:
        """Canonical form of a register set: sparse (index<<6 | rank as u32) while smaller than
        dense, so equal register sets always encode to equal partials."""
        if len(index) * 4 < self._m:
            packed = ((index.astype(np.uint32) << np.uint32(6)) | rank.astype(np.uint32)).astype(">u4")
            return [_HLL_TAG, _FORMAT, self.precision, "sparse", base64.b64encode(packed.tobytes()).decode()]
        dense = np.zeros(self._m, dtype=np.uint8)
        dense[index] = rank
        return [_HLL_TAG, _FORMAT, self.precision, "dense", base64.b64encode(dense.tobytes()).decode()]

    def _decode(self, partial: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        _check(partial, _HLL_TAG, self.precision)
        raw = base64.b64decode(partial[4])
        if partial[3] == "sparse":
            packed = np.frombuffer(raw, dtype=">u4").astype(np.int64)
            return packed >> 6, packed & 63
        dense = np.frombuffer(raw, dtype=np.uint8)
        index = np.flatnonzero(dense)
        return index, dense[index].astype(np.int64)

    def merge(self, a: list[Any] | None, b: list[Any] | None) -> list[Any] | None:
        return self.merge_many([a, b])

    def merge_many(self, partials: Sequence[list[Any] | None]) -> list[Any] | None:
        present = [p for p in partials if p is not None]
        if len(present) <= 1:
            return present[0] if present else None
        dense = np.zeros(self._m, dtype=np.int64)
        for partial in present:
            index, rank = self._decode(partial)
            np.maximum.at(dense, index, rank)
        index = np.flatnonzero(dense)
        return self._encode(index, dense[index])

    def result(self, partial: list[Any] | None) -> int | None:
        if partial is None:
            return None
        _, rank = self._decode(partial)
        m = self._m
        zeros = m - len(rank)
        harmonic = zeros + float(np.sum(np.ldexp(1.0, -rank)))
        alpha = {16: 0.673, 32: 0.697, 64: 0.709}.get(m, 0.7213 / (1 + 1.079 / m))
        estimate = alpha * m * m / harmonic
        if estimate <= 2.5 * m and zeros:
            estimate = m * math.log(m / zeros)  # linear counting: the small-range correction
        return round(estimate)


class ApproxPercentile:
    """A logarithmic histogram: a positive value ``x`` counts in bucket ``ceil(log_g(x))`` with
    ``g = (1 + a) / (1 - a)`` and ``a = 1 / precision``; negatives likewise by magnitude, zeros
    apart. Every bucket's representative is within relative ``a`` of all its values, so the
    result (the representative of the bucket holding the value at rank
    ``floor(percentile * (count - 1))``, clamped to the exact min and max) is within relative
    ``a`` of that value: 1% at the default precision 100. Non-finite values are skipped."""

    def __init__(self, function: AggregationFunction, percentile: float, precision: int) -> None:
        self.function = function
        self.percentile = percentile
        self.precision = precision
        accuracy = 1.0 / precision
        self._gamma = (1 + accuracy) / (1 - accuracy)
        self._log_gamma = math.log(self._gamma)

    def initialize(self) -> None:
        return None

    def from_groups(
        self, values: np.ndarray, valid: np.ndarray, group_ids: np.ndarray, n_groups: int, ts_ms: np.ndarray
    ) -> list[list[Any] | None]:
        out: list[list[Any] | None] = [None] * n_groups
        x = values.astype(np.float64)
        rows = np.flatnonzero(valid & np.isfinite(x))
        if not len(rows):
            return out
        x, groups = x[rows], group_ids[rows]
        sign = np.sign(x).astype(np.int64)
        with np.errstate(divide="ignore"):
            key = np.where(sign != 0, np.ceil(np.log(np.abs(x)) / self._log_gamma), 0).astype(np.int64)
        order = np.lexsort((x, key, sign, groups))  # by group, sign, bucket (and value: min/max)
        groups, sign, key, x = groups[order], sign[order], key[order], x[order]
        bucket_starts = np.flatnonzero(
            np.diff(groups, prepend=-1) | np.diff(sign, prepend=2) | np.diff(key, prepend=key[0] - 1)
        )
        counts = np.diff(np.append(bucket_starts, len(groups)))
        b_groups, b_signs, b_keys = groups[bucket_starts], sign[bucket_starts], key[bucket_starts]
        group_starts = np.flatnonzero(np.diff(groups, prepend=-1))
        group_ends = np.append(group_starts[1:], len(groups))
        lows, highs = np.minimum.reduceat(x, group_starts), np.maximum.reduceat(x, group_starts)
        # Within a group buckets run negatives, the zero bucket, positives (sign is sorted first),
        # so each part of a partial is one slice of the flat bucket lists.
        b_starts = np.searchsorted(b_groups, groups[group_starts], side="left")
        b_ends = np.append(b_starts[1:], len(b_groups))
        negatives = np.add.reduceat((b_signs < 0).astype(np.int64), b_starts)
        zero_buckets = np.add.reduceat((b_signs == 0).astype(np.int64), b_starts)
        zeros = np.add.reduceat(np.where(b_signs == 0, counts, 0), b_starts)
        keys_list, counts_list = b_keys.tolist(), counts.tolist()
        columns = zip(
            groups[group_starts].tolist(),
            (group_ends - group_starts).tolist(),
            lows.tolist(),
            highs.tolist(),
            b_starts.tolist(),
            b_ends.tolist(),
            negatives.tolist(),
            zero_buckets.tolist(),
            zeros.tolist(),
            strict=True,
        )
        for group, n, low, high, lo, hi, neg, zb, zero in columns:
            pos = lo + neg + zb
            out[group] = [
                _HIST_TAG,
                _FORMAT,
                self.precision,
                n,
                low,
                high,
                zero,
                keys_list[pos:hi],
                counts_list[pos:hi],
                keys_list[lo : lo + neg],
                counts_list[lo : lo + neg],
            ]
        return out

    def merge(self, a: list[Any] | None, b: list[Any] | None) -> list[Any] | None:
        return self.merge_many([a, b])

    def merge_many(self, partials: Sequence[list[Any] | None]) -> list[Any] | None:
        present = [p for p in partials if p is not None]
        if len(present) <= 1:
            return present[0] if present else None
        for partial in present:
            _check(partial, _HIST_TAG, self.precision)
        merged: list[Any] = [
            _HIST_TAG,
            _FORMAT,
            self.precision,
            sum(p[3] for p in present),
            min(p[4] for p in present),
            max(p[5] for p in present),
            sum(p[6] for p in present),
        ]
        for keys_at in (7, 9):
            keys = np.concatenate([np.asarray(p[keys_at], dtype=np.int64) for p in present])
            counts = np.concatenate([np.asarray(p[keys_at + 1], dtype=np.int64) for p in present])
            unique, inverse = np.unique(keys, return_inverse=True)
            merged += [
                unique.tolist(),
                np.bincount(inverse, weights=counts, minlength=len(unique)).astype(np.int64).tolist(),
            ]
        return merged

    def result(self, partial: list[Any] | None) -> float | None:
        if partial is None:
            return None
        _check(partial, _HIST_TAG, self.precision)
        count, low, high, zeros = partial[3], partial[4], partial[5], partial[6]
        rank = math.floor(self.percentile * (count - 1))
        # Ascending value order: negatives by falling magnitude, zeros, positives by rising magnitude.
        seen = 0
        for key, n in reversed(list(zip(partial[9], partial[10], strict=True))):
            seen += n
            if seen > rank:
                return float(max(low, min(high, -self._value(key))))
        seen += zeros
        if seen > rank:
            return float(max(low, min(high, 0.0)))
        for key, n in zip(partial[7], partial[8], strict=True):
            seen += n
            if seen > rank:
                return float(max(low, min(high, self._value(key))))
        return float(high)

    def _value(self, key: int) -> float:
        return 2.0 * self._gamma**key / (self._gamma + 1.0)
