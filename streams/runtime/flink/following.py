"""The job's keyed operator as run: ``ShardBatches`` plus what the runner around it needs.

Kept apart from ``shard_function`` (the data path) so that each can change without the other:
this subclass only adds steps before the batch step and after it, never inside it.

- Definitions (``definitions.py``): the first time this operator instance touches a shard (after
  a start, a restart with new definitions, a restore or a rescale), the shard is aligned with the
  job's definitions before its batch or timer runs: removed views' state dropped, changed or new
  views recomputed from the source log. The fingerprints a shard was built with are keyed state
  of their own (``definitions``), checkpointed with the shard.
- Metrics: next to ``ShardBatches``' totals, the breakdowns the native worker exports (records
  consumed per source topic; events processed, transformation failures and late drops per
  view) as Flink counters in key-value groups (``featurebus.topic.<topic>.consumed``,
  ``featurebus.feature_view.<view>.processed``), which ``metrics.py`` maps to the native names.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from featurebus.platform.kafka.admin import read_compacted
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.streams.runtime.flink.definitions import (
    align_shard,
    decode_fingerprints,
    encode_fingerprints,
)
from featurebus.streams.runtime.flink.shard_function import ShardBatches, shard_key
from featurebus.streams.runtime.rebuild import read_source_partition

__all__ = ["FollowingShardBatches"]

log = logging.getLogger(__name__)


class FollowingShardBatches(ShardBatches):
    def __init__(
        self, bootstrap: str, spec_json: bytes, feature_topics: dict[str, tuple[str, int]], dead_letter_topic: str
    ) -> None:
        super().__init__(spec_json, feature_topics, dead_letter_topic)
        self._bootstrap = bootstrap

    def open(self, runtime_context: RuntimeContext) -> None:
        super().open(runtime_context)
        self._built_with = runtime_context.get_state(ValueStateDescriptor("definitions", Types.STRING()))
        self._spec = WorkspaceSpec.from_json(self._spec_json)
        self._aligned: set[str] = set()  # shards checked by this operator instance
        self._group = runtime_context.get_metrics_group().add_group("featurebus")
        self._consumed: dict[str, int] = {}  # source topic -> records received
        self._breakdowns: dict[tuple[str, str, str], Any] = {}  # (kind, label, counter name) -> Flink counter
        self._breakdowns_reported: dict[tuple[str, str, str], int] = {}

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context) -> Iterator[Row]:
        self._align(shard_key(value))
        self._consumed[value[0]] = self._consumed.get(value[0], 0) + len(value[2])
        yield from super().process_element(value, ctx)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Row]:
        self._align(str(ctx.get_current_key()))
        yield from super().on_timer(timestamp, ctx)

    def _align(self, shard: str) -> None:
        """Once per shard and operator instance; the rows it publishes leave with the batch's."""
        if shard in self._aligned:
            return
        self._store.use(shard)
        topic, partition = shard.split("\x00")
        alignment = align_shard(
            self._spec,
            self._engine,
            self._store,
            self._sink,
            topic,
            int(partition),
            decode_fingerprints(self._built_with.value()),
            lambda t, p, end: read_source_partition(self._bootstrap, t, p, end),
            lambda view: read_compacted(self._bootstrap, self._feature_topics[view][0], timeout_s=300.0),
            self._feature_topics.__getitem__,
        )
        if alignment.dropped:
            log.warning("%s[%s]: dropped the state of the removed views %s", topic, partition, alignment.dropped)
        self._built_with.update(encode_fingerprints(alignment.fingerprints))
        self._aligned.add(shard)

    def _report_counters(self) -> None:
        super()._report_counters()
        counters = self._engine.counters
        current: dict[tuple[str, str, str], int] = {}
        for topic, n in self._consumed.items():
            current[("topic", topic, "consumed")] = n
        for view, n in counters.processed_by_view.items():
            current[("feature_view", view, "processed")] = n
        for view, n in counters.transform_failed_by_view.items():
            current[("feature_view", view, "transform_failed")] = n
        for (view, _, _), (late, _) in list(counters.dropped_by_partition.items()):
            key = ("feature_view", view, "dropped_late")
            current[key] = current.get(key, 0) + late
        for key, n in current.items():
            reported = self._breakdowns_reported.get(key, 0)
            if n != reported:
                counter = self._breakdowns.get(key)
                if counter is None:
                    kind, label, name = key
                    counter = self._breakdowns[key] = self._group.add_group(kind, label).counter(name)
                counter.inc(n - reported)
                self._breakdowns_reported[key] = n
