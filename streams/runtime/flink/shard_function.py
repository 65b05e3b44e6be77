"""The job's keyed operator: micro-batches of one source partition through ``StreamEngine.process``.

Records arrive keyed by ``topic\\x00partition`` (one source partition = one tile shard) in
partition order. They are buffered in keyed list state and applied together when the batch's
processing-time timer fires (``batch_ms`` after its first record): the engine's vectorized step
costs about the same for one record or a thousand, so per-record calls would multiply the cost.
Every step of the native engine runs unchanged — decoding, dead letters, per-partition lateness,
the transformation, tile folding, lifetime prefixes, high watermarks, expiry — over a
``FlinkMapStore`` of the shard's keyed map state. Both the buffer and the map live in the job's
state backend (RocksDB) and are checkpointed with the Kafka source's offsets and the sink's open
transaction, so a restart from a checkpoint neither loses nor repeats a record.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ListStateDescriptor, MapStateDescriptor, ValueStateDescriptor

from featurebus.schemas.specs import WorkspaceSpec
from featurebus.streams.runtime.engine import EngineCounters, RawRecord, StreamEngine
from featurebus.streams.runtime.flink.state import FlinkMapStore, RowSink

__all__ = ["ShardBatches", "OUTPUT_TYPE", "RECORD_TYPE", "shard_key"]

BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())
RECORD_TYPE = Types.ROW_NAMED(
    ["value", "topic", "partition", "offset"], [BYTES, Types.STRING(), Types.INT(), Types.LONG()]
)
OUTPUT_TYPE = Types.ROW_NAMED(
    ["key", "value", "topic", "headers"], [BYTES, BYTES, Types.STRING(), Types.MAP(Types.STRING(), BYTES)]
)
EXPIRY_INTERVAL_MS = 30_000  # as the native worker's EXPIRY_INTERVAL_S


def shard_key(record: Row) -> str:
    return f"{record['topic']}\x00{record['partition']}"


class ShardBatches(KeyedProcessFunction):  # type: ignore[misc]  # pyflink ships no type information
    def __init__(
        self, spec_json: bytes, feature_topics: dict[str, tuple[str, int]], dead_letter_topic: str, batch_ms: int
    ) -> None:
        # Only plain data here: the function is pickled into the job; the engine (compiled user
        # code) is built in ``open`` on the task manager.
        self._spec_json = spec_json
        self._feature_topics = feature_topics
        self._dead_letter_topic = dead_letter_topic
        self._batch_ms = batch_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        self._pending = runtime_context.get_list_state(ListStateDescriptor("pending", RECORD_TYPE))
        self._flush_at = runtime_context.get_state(ValueStateDescriptor("flush_at", Types.LONG()))
        self._expire_at = runtime_context.get_state(ValueStateDescriptor("expire_at", Types.LONG()))
        shard_state = runtime_context.get_map_state(MapStateDescriptor("shard", BYTES, BYTES))
        self._sink = RowSink(self._dead_letter_topic)
        self._engine = StreamEngine(
            WorkspaceSpec.from_json(self._spec_json),
            FlinkMapStore(shard_state),
            self._sink,
            self._feature_topics.__getitem__,
        )
        metrics = runtime_context.get_metrics_group().add_group("featurebus")
        # The engine's totals (ints); its per-partition breakdowns are dicts, which Flink counters cannot hold.
        totals = vars(EngineCounters())
        self._metrics = {name: metrics.counter(name) for name, value in totals.items() if isinstance(value, int)}
        self._reported = EngineCounters()

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context) -> Iterator[Row]:
        self._pending.add(value)
        if self._flush_at.value() is None:
            at = ctx.timer_service().current_processing_time() + self._batch_ms
            ctx.timer_service().register_processing_time_timer(at)
            self._flush_at.update(at)
            if self._expire_at.value() is None:
                expire_at = at + EXPIRY_INTERVAL_MS
                ctx.timer_service().register_processing_time_timer(expire_at)
                self._expire_at.update(expire_at)
        yield from ()

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Row]:
        if timestamp == self._flush_at.value():
            records = [
                RawRecord(r["topic"], r["partition"], r["offset"], None if r["value"] is None else bytes(r["value"]))
                for r in self._pending.get()
            ]
            self._pending.clear()
            self._flush_at.clear()
            self._engine.process(records)
        if timestamp == self._expire_at.value():
            topic, partition = str(ctx.get_current_key()).split("\x00")
            self._engine.expire({(topic, int(partition))})
            at = timestamp + EXPIRY_INTERVAL_MS
            ctx.timer_service().register_processing_time_timer(at)
            self._expire_at.update(at)
        self._report_counters()
        for key, value, topic, headers in self._sink.drain():
            yield Row(key, value, topic, headers)

    def _report_counters(self) -> None:
        """Flink's metrics carry the engine's counters (processed, dead-lettered, late, ...)."""
        current: dict[str, Any] = vars(self._engine.counters)
        reported: dict[str, Any] = vars(self._reported)
        for name, counter in self._metrics.items():
            if current[name] != reported[name]:
                counter.inc(current[name] - reported[name])
                reported[name] = current[name]
