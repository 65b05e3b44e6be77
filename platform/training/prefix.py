"""Windowed counts and sums for every spine row at once, by prefix sums over sorted events.

The join in ``training._join`` pairs each spine row with every event of its entity in the (one
or two) ``max_window`` buckets around it, so its cost grows with spine rows x events per entity
and window: for busy entities and day-long windows that is hundreds of millions of pairs. Here
the events are sorted once by (entity, time); a row's window ``[end - W, end)`` is then the
positions ``[lo, hi)`` found by binary search, and its count or sum the difference of two prefix
sums: O((events + rows) log events), independent of how busy an entity is.

Exactness: counts and integer sums are exact (int64 prefix sums; wrap-around cancels in the
difference whenever the result itself fits). A plain float prefix sum is not: after values of
1e12 it cannot hold the digits of later values in [-1, 1], and the difference of two such sums
was off by up to 1e-3 relative (and -1.4e-14 for a window of zeros). So float prefix sums are
split into a few terms whose running sums are exact (``streams.exact_sum.prefix_terms``), every
difference is exact, and a window's sum is the exact sum of its own values, rounded once:
whatever lies outside the window cannot disturb it. A non-finite input (inf) would make the
difference NaN, so then this path declines (``None``) and the SQL join, which sums only the
window, runs.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurebus.streams.exact_sum import prefix_terms, two_sum

__all__ = ["window_parts"]

# Entity codes times the time span must stay below this for the combined sort key.
_KEY_LIMIT = 2**62


def _codes(spine_keys: dict[str, pa.Array], events: pa.Table) -> tuple[np.ndarray, np.ndarray] | None:
    """One int64 code per event and per spine row for its join key tuple (-1: a null key)."""
    n_events = events.num_rows
    code: np.ndarray | None = None
    for name, spine_column in spine_keys.items():
        column = events.column(name)
        if spine_column.type != column.type:
            try:
                spine_column = pc.cast(spine_column, column.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return None
        both = pa.concat_arrays([*column.chunks, spine_column])
        encoded = pc.dictionary_encode(both)
        part = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        if code is None:
            code = part
        else:
            # Pairs of codes to one code (re-numbered densely, so many keys cannot overflow).
            combined = np.where((code < 0) | (part < 0), -1, code * (len(encoded.dictionary) + 1) + part)
            _, dense = np.unique(combined, return_inverse=True)
            code = np.where(combined < 0, -1, dense.astype(np.int64))
    assert code is not None
    return code[:n_events], code[n_events:]


def window_parts(
    spine_keys: dict[str, pa.Array],
    events: pa.Table,
    ends: np.ndarray,
    needs: dict[tuple[str, str, int], str],
    aliases: dict[str, str],
    integral: dict[str, bool],
) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """``{alias: (values, null mask)}`` for every spine row: the ``count`` (non-null values) or
    ``sum`` of input ``name`` over events of the row's key with time in ``[end - window, end)``,
    for each ``(kind, name, window) -> alias`` of ``needs``. ``None``: use the SQL join instead.

    ``events`` has key columns ``k<i>`` (as ``spine_keys``), ``__ts`` (ms) and the inputs under
    their ``aliases``; a sum is null where no non-null value is in the window.
    """
    codes = _codes(spine_keys, events)
    if codes is None:
        return None
    event_code, row_code = codes
    ts = events.column("__ts").to_numpy()
    keep = np.flatnonzero(event_code >= 0)
    if not len(keep):
        return None
    t_min = int(ts[keep].min())
    span = int(ts[keep].max()) - t_min + 2
    if (int(event_code.max()) + 1) * span >= _KEY_LIMIT:
        return None
    order = keep[np.lexsort((ts[keep], event_code[keep]))]
    sorted_code = event_code[order]
    sort_key = sorted_code * span + (ts[order] - t_min)
    no_key = row_code < 0
    row_base = np.where(no_key, 0, row_code) * span

    def position(times: np.ndarray) -> np.ndarray:
        """Index of the row's entity's first event at or after ``times`` (clipped to its events)."""
        found = np.searchsorted(sort_key, row_base + np.clip(times - t_min, 0, span - 1), side="left")
        return np.where(no_key, 0, found)

    hi = position(ends)
    bounds: dict[int, np.ndarray] = {}
    prefixes: dict[str, tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]] | None]] = {}
    result: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for (kind, name, window_ms), alias in needs.items():
        if window_ms not in bounds:
            bounds[window_ms] = np.where(no_key, 0, position(ends - window_ms))
        lo = bounds[window_ms]
        if name not in prefixes:
            prefix = _prefixes(events.column(aliases[name]), order, sorted_code, integral[name])
            if prefix is None:
                return None
            prefixes[name] = prefix
        count_prefix, sum_prefix = prefixes[name]
        count = count_prefix[hi] - count_prefix[lo]
        if kind == "count":
            result[alias] = (count, np.zeros(len(count), dtype=bool))
        else:
            assert sum_prefix is not None
            result[alias] = (np.where(count > 0, _window_sum(sum_prefix, lo, hi), 0), count == 0)
    return result


def _window_sum(terms: list[tuple[np.ndarray, np.ndarray]], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The sum over sorted positions ``[lo, hi)`` from prefix terms ``(upper, lower)``: exact
    int64 for one integer term; for float terms each difference is exact, and the differences
    (largest first) are added as a double-double, then rounded once."""
    if len(terms) == 1 and terms[0][0].dtype.kind == "i":
        upper, lower = terms[0]
        with np.errstate(over="ignore"):
            exact: np.ndarray = upper[hi] - lower[lo]
        return exact
    total = terms[0][0][hi] - terms[0][1][lo]
    error = np.zeros(len(total))
    for upper, lower in terms[1:]:
        total, e = two_sum(total, upper[hi] - lower[lo])
        error += e
    result: np.ndarray = total + error
    return result


def _prefixes(
    column: pa.ChunkedArray, order: np.ndarray, sorted_code: np.ndarray, integral: bool
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]] | None] | None:
    """Prefix counts of non-null values (element i: over the first i sorted events) and the
    prefix sum terms to subtract at a window's upper and lower end."""
    taken = column.take(pa.array(order))
    valid = taken.is_valid().to_numpy(zero_copy_only=False)
    counts = np.concatenate([[0], np.cumsum(valid, dtype=np.int64)])
    if not (pa.types.is_integer(taken.type) or pa.types.is_floating(taken.type)):
        return counts, None  # counted only (count of a string column, say)
    if integral:
        values = pc.fill_null(taken, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        with np.errstate(over="ignore"):
            exact = np.concatenate([[0], np.cumsum(values, dtype=np.int64)])
        return counts, [(exact, exact)]
    values = pc.fill_null(pc.cast(taken, pa.float64()), 0.0).to_numpy(zero_copy_only=False)
    if not np.isfinite(values).all():
        return None
    # Running sums over every entity's events (sorted by entity): the differences are exact, so
    # a window's sum is exact whatever other entities' values came before it.
    return counts, [(term, term) for term in prefix_terms(values)]
