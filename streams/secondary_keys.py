"""Secondary-key aggregations (Tecton's ``aggregation_secondary_key``): one aggregation per value
of a second column within each entity, served as arrays ordered by that value.

``KeyedAggregator`` wraps any aggregator of ``streams.aggregations``. Its partial is the list of
``[secondary key, inner partial]`` pairs, sorted by key: plain JSON like every partial, so tiles,
the feature topic, serving and the offline join carry it unchanged, and ``merge`` is the inner
merge key by key (``b`` still the later arrival for the order-dependent functions). Rows whose
secondary key is null belong to no key and are left out, for every aggregation of the view alike,
so every array of one window lines up with the ``<secondary_key>_keys_<window>`` feature (the
keys themselves: ``keys_feature``). A window without rows gives null, as other functions do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from featurebus.streams.functions import AggregationFunction

__all__ = ["KeyedAggregator"]

KeyedPartial = list[list[Any]]  # [[key, inner partial], ...], sorted by key


class KeyedAggregator:
    """``inner`` computed per secondary key; ``keys_only`` makes the result the keys themselves."""

    def __init__(self, inner: Any, *, keys_only: bool = False) -> None:
        self.inner = inner
        self.function: AggregationFunction = inner.function
        self.keys_only = keys_only

    def initialize(self) -> KeyedPartial:
        return []

    def from_groups(
        self, values: np.ndarray, valid: np.ndarray, group_ids: np.ndarray, n_groups: int, ts_ms: np.ndarray
    ) -> list[KeyedPartial]:
        raise TypeError("a secondary-key aggregation needs its keys: call from_keyed_groups")

    def from_keyed_groups(
        self,
        values: np.ndarray,
        valid: np.ndarray,
        keys: np.ndarray,
        keys_valid: np.ndarray,
        group_ids: np.ndarray,
        n_groups: int,
        ts_ms: np.ndarray,
    ) -> list[KeyedPartial]:
        """The partial of every group at once: the inner aggregator computes every (group, key)
        pair of the batch in one vectorized call, in arrival order within each pair."""
        partials: list[KeyedPartial] = [[] for _ in range(n_groups)]
        rows = np.flatnonzero(keys_valid)
        if not len(rows):
            return partials
        key_codes, key_values = pd.factorize(keys[rows])
        # Each (group, key) pair numbered in order of first appearance; ``pairs`` holds its code.
        pair_ids, pairs = pd.factorize(group_ids[rows] * len(key_values) + key_codes)
        inner = self.inner.from_groups(values[rows], valid[rows], pair_ids, len(pairs), ts_ms[rows])
        if isinstance(inner, np.ndarray):
            inner = inner.tolist()
        pair_groups = (pairs // len(key_values)).tolist()
        pair_keys = np.asarray(key_values)[pairs % len(key_values)].tolist()
        for group, key, partial in zip(pair_groups, pair_keys, inner, strict=True):
            partials[group].append([key, partial])
        for partial in partials:
            partial.sort(key=lambda pair: pair[0])
        return partials

    def merge(self, a: KeyedPartial, b: KeyedPartial) -> KeyedPartial:
        if not a:
            return [list(pair) for pair in b]
        if not b:
            return [list(pair) for pair in a]
        merged: KeyedPartial = []
        i = j = 0
        while i < len(a) and j < len(b):
            if a[i][0] == b[j][0]:
                merged.append([a[i][0], self.inner.merge(a[i][1], b[j][1])])
                i += 1
                j += 1
            elif a[i][0] < b[j][0]:
                merged.append(list(a[i]))
                i += 1
            else:
                merged.append(list(b[j]))
                j += 1
        merged.extend(list(pair) for pair in a[i:])
        merged.extend(list(pair) for pair in b[j:])
        return merged

    def merge_many(self, partials: Sequence[KeyedPartial]) -> KeyedPartial:
        by_key: dict[Any, list[Any]] = {}
        for partial in partials:  # in arrival order: each key's inner partials keep it
            for key, inner in partial:
                by_key.setdefault(key, []).append(inner)
        return [[key, self.inner.merge_many(by_key[key])] for key in sorted(by_key)]

    def result(self, partial: KeyedPartial) -> list[Any] | None:
        if not partial:
            return None
        if self.keys_only:
            return [key for key, _ in partial]
        return [self.inner.result(inner) for _, inner in partial]
