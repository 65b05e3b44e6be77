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

from collections.abc import Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from featurebus.streams.aggregations import AggregationFunction

__all__ = ["OrderedAggregator"]

Pairs = list[list[Any]]


class OrderedAggregator:
    def __init__(self, function: AggregationFunction, *, n: int, latest: bool, distinct: bool, scalar: bool,
                 include_nulls: bool) -> None:
        self.function = function
        self.n = n
        self.latest = latest  # keep the newest n (last*) rather than the oldest n (first*)
        self.distinct = distinct
        self.scalar = scalar  # ``last``: the value itself, not a one-element array
        self.include_nulls = include_nulls  # Attribute: a null is a value like any other

    def initialize(self) -> Pairs:
        return []

    def from_groups(self, values: np.ndarray, valid: np.ndarray, group_ids: np.ndarray, n_groups: int,
                    ts_ms: np.ndarray) -> list[Pairs]:
        out: list[Pairs] = [[] for _ in range(n_groups)]
        rows = np.arange(len(group_ids)) if self.include_nulls else np.flatnonzero(valid)
        if not len(rows):
            return out
        # Stable order by (group, event time, arrival): lexsort's last key is the primary one.
        rows = rows[np.lexsort((rows, ts_ms[rows], group_ids[rows]))]
        frame = pd.DataFrame({"g": group_ids[rows], "t": ts_ms[rows]})
        picked = values[rows]
        if self.include_nulls:
            picked = picked.astype(object)
            picked[~valid[rows]] = None
        frame["v"] = picked
        if self.distinct:
            frame = frame.loc[~frame.duplicated(["g", "v"], keep="last" if self.latest else "first")]
        grouped = frame.groupby("g", sort=False)
        frame = grouped.tail(self.n) if self.latest else grouped.head(self.n)
        groups = frame["g"].to_numpy()
        times, kept = frame["t"].tolist(), frame["v"].tolist()
        bounds = [0, *(np.flatnonzero(np.diff(groups)) + 1).tolist(), len(groups)]
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
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
            return None  # DESIGN.md §4: no event in the window is null for every function but count
        if self.scalar:
            return partial[-1][1]
        return [value for _, value in partial]
