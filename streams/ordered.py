"""Order-dependent aggregations: last, first(n), last(n), first_distinct(n), last_distinct(n).

Order is event time; events with equal event time are ordered by arrival (the order rows reach
``from_groups``, and ``merge(a, b)`` treats ``b`` as the later arrival). Online, arrival is the
order of a source partition's offsets; offline, the training set replays events in
``(topic, partition, offset)`` order, so the two agree whenever tied events share a partition
(as events of one entity do when the source is keyed by it).

The partial is a list of ``[event_ms, value]`` pairs in that order, at most ``n`` long: enough to
merge exactly, because an element a partial dropped can never win against the ``n`` it kept.
For the distinct variants each value appears once, at its latest (``last_distinct``) or earliest
(``first_distinct``) occurrence. Results are arrays in event-time order (oldest first), as
Tecton returns them; ``last`` returns the single latest value.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd

from featurebus.streams.functions import AggregationFunction

__all__ = ["OrderedAggregator"]

Pairs = list[list[Any]]


class OrderedAggregator:
    def __init__(
        self, function: AggregationFunction, *, n: int, latest: bool, distinct: bool, scalar: bool, include_nulls: bool
    ) -> None:
        self.function = function
        self.n = n
        self.latest = latest  # keep the newest n (last*) rather than the oldest n (first*)
        self.distinct = distinct
        self.scalar = scalar  # ``last``: the value itself, not a one-element array
        self.include_nulls = include_nulls  # Attribute: a null is a value like any other

    def initialize(self) -> Pairs:
        return []

    def from_groups(
        self, values: np.ndarray, valid: np.ndarray, group_ids: np.ndarray, n_groups: int, ts_ms: np.ndarray
    ) -> list[Pairs]:
        out: list[Pairs] = [[] for _ in range(n_groups)]
        rows = np.arange(len(group_ids)) if self.include_nulls else np.flatnonzero(valid)
        if not len(rows):
            return out
        # Stable order by (group, event time, arrival): lexsort's last key is the primary one.
        rows = rows[np.lexsort((rows, ts_ms[rows], group_ids[rows]))]
        if self.distinct:
            rows = rows[_first_of_each(group_ids[rows], pd.factorize(values[rows])[0], from_end=self.latest)]
        groups = group_ids[rows]
        starts = np.flatnonzero(np.diff(groups, prepend=-1))
        sizes = np.diff(np.append(starts, len(groups)))
        position = np.arange(len(groups)) - np.repeat(starts, sizes)
        keep = position >= np.repeat(sizes - self.n, sizes) if self.latest else position < self.n
        rows, groups = rows[keep], groups[keep]
        times = ts_ms[rows].tolist()
        kept: list[Any] = values[rows].tolist()
        if self.include_nulls:
            kept = [v if ok else None for v, ok in zip(kept, valid[rows].tolist(), strict=True)]
        bounds = [*np.flatnonzero(np.diff(groups, prepend=-1)).tolist(), len(groups)]
        for lo, hi in itertools.pairwise(bounds):
            out[int(groups[lo])] = [[times[i], kept[i]] for i in range(lo, hi)]
        return out

    def merge(self, a: Pairs, b: Pairs) -> Pairs:
        return self._trim([*a, *b])

    def merge_many(self, partials: Sequence[Pairs]) -> Pairs:
        return self._trim([pair for partial in partials for pair in partial])

    def _trim(self, pairs: Pairs) -> Pairs:
        pairs.sort(key=itemgetter(0))  # stable: equal event times keep arrival order
        if self.distinct:
            seen: set[Any] = set()
            unique: Pairs = []
            for pair in reversed(pairs) if self.latest else pairs:
                if pair[1] not in seen:
                    seen.add(pair[1])
                    unique.append(pair)
            pairs = unique[::-1] if self.latest else unique
        return pairs[-self.n :] if self.latest else pairs[: self.n]

    def result(self, partial: Pairs) -> Any:
        if not partial:
            return None  # docs/design.md §4: no event in the window is null for every function but count
        if self.scalar:
            return partial[-1][1]
        return [value for _, value in partial]


def _first_of_each(groups: np.ndarray, codes: np.ndarray, from_end: bool) -> np.ndarray:
    """Positions (ascending) of the first (or, ``from_end``, the last) occurrence of every
    ``(group, code)`` pair in an already ordered sequence."""
    key = groups.astype(np.int64) * (int(codes.max()) + 2) + codes
    if from_end:
        _, index = np.unique(key[::-1], return_index=True)
        return np.sort(len(key) - 1 - index)
    _, index = np.unique(key, return_index=True)
    return np.sort(index)
