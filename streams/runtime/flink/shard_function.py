"""The job's keyed operator: micro-batches of one source partition through ``StreamEngine.process``.

The JVM cuts the batches (``job.build_job``: a processing-time tumbling window per source
partition collects its offsets and values with two ``ARRAY_AGG``), so a record crosses from Java
to Python as one element of two flat arrays rather than as a Beam element of its own: the first
version buffered every record in keyed list state from Python, and that per-record crossing and
state traffic bounded it at about 2k events/s. Batches arrive keyed by ``topic\\x00partition`` (one
source partition = one tile shard), in window order; the records of a batch are sorted by offset
(the order the native worker sees them in). Every step of the native engine runs unchanged —
decoding, dead letters, per-partition lateness, the transformation, tile folding, lifetime
prefixes, high watermarks, expiry — over a ``FlinkMapStore`` of the shard's keyed map state.
The window's pending records and the map live in the job's state backend (RocksDB) and are
checkpointed with the Kafka source's offsets and the sink's open transaction, so a restart from a
checkpoint neither loses nor repeats a record.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise, repeat
from typing import Any

from pyflink.common import Row, Types
from pyflink.datastream import DataStream, KeyedProcessFunction, KeyedStream, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from featurebus.schemas.specs import WorkspaceSpec
from featurebus.streams.runtime.engine import EngineCounters, RawRecord, StreamEngine
from featurebus.streams.runtime.flink.state import FlinkMapStore, RowSink

__all__ = ["BATCH_ROWS_TYPE", "OUTPUT_TYPE", "SHARD_KEY_SQL", "ShardBatches", "keyed_in_jvm", "shard_key"]

BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())
OUTPUT_TYPE = Types.ROW_NAMED(
    ["key", "value", "topic", "headers"], [BYTES, BYTES, Types.STRING(), Types.MAP(Types.STRING(), BYTES)]
)
# The job's SQL hands over ``(shard, (topic, partition, offsets, values))`` rows of this type.
BATCH_ROWS_TYPE = Types.ROW(
    [
        Types.STRING(),
        Types.ROW([Types.STRING(), Types.INT(), Types.BASIC_ARRAY(Types.LONG()), Types.OBJECT_ARRAY(BYTES)]),
    ]
)
EXPIRY_INTERVAL_MS = 30_000  # as the native worker's EXPIRY_INTERVAL_S


SHARD_KEY_SQL = "CONCAT(`topic`, CHR(0), CAST(`partition` AS STRING))"
"""The shard of a source row, computed by the job's SQL: ``shard_key`` of its batch."""


def shard_key(batch: Row) -> str:
    """A batch row is ``(topic, partition, offsets, values)``; its shard is the source partition."""
    return f"{batch[0]}\x00{batch[1]}"


def keyed_in_jvm(rows: DataStream) -> KeyedStream:
    """``rows`` (of ``BATCH_ROWS_TYPE``) keyed by their first field, the shard, in the JVM.

    ``DataStream.key_by`` computes the key with a Python function: a whole extra Python operator
    that decodes and re-encodes every batch (the profile: as much Beam coding again as the engine
    step's). The SQL computes the key already, so the stream is keyed the way PyFlink's own
    ``key_by`` keys its ``(key, value)`` rows, by the first field, without the detour; the keyed
    operator hands the function the second field and scopes the state to the first.
    """
    from pyflink.java_gateway import get_gateway

    j_keyed = rows._j_data_stream.keyBy(
        get_gateway().jvm.KeyByKeySelector(), Types.ROW([BATCH_ROWS_TYPE.get_field_types()[0]]).get_java_type_info()
    )
    # (The type given as the "original" one only serves KeyedStream's reduce/window helpers.)
    return KeyedStream(j_keyed, BATCH_ROWS_TYPE, rows)


class ShardBatches(KeyedProcessFunction):  # type: ignore[misc]  # pyflink ships no type information
    def __init__(self, spec_json: bytes, feature_topics: dict[str, tuple[str, int]], dead_letter_topic: str) -> None:
        # Only plain data here: the function is pickled into the job; the engine (compiled user
        # code) is built in ``open`` on the task manager.
        self._spec_json = spec_json
        self._feature_topics = feature_topics
        self._dead_letter_topic = dead_letter_topic

    def open(self, runtime_context: RuntimeContext) -> None:
        self._expire_at = runtime_context.get_state(ValueStateDescriptor("expire_at", Types.LONG()))
        self._store = FlinkMapStore(runtime_context.get_map_state(MapStateDescriptor("shard", BYTES, BYTES)))
        self._sink = RowSink(self._dead_letter_topic)
        self._engine = StreamEngine(
            WorkspaceSpec.from_json(self._spec_json), self._store, self._sink, self._feature_topics.__getitem__
        )
        metrics = runtime_context.get_metrics_group().add_group("featurebus")
        # The engine's totals (ints); its per-partition breakdowns are dicts, which Flink counters cannot hold.
        totals = vars(EngineCounters())
        self._metrics = {name: metrics.counter(name) for name, value in totals.items() if isinstance(value, int)}
        self._reported = EngineCounters()

    def process_element(self, batch: Row, ctx: KeyedProcessFunction.Context) -> Iterator[Row]:
        topic, partition, offsets, values = batch[0], batch[1], batch[2], batch[3]
        if len(offsets) != len(values):
            raise RuntimeError(f"a batch of {topic}/{partition} has {len(offsets)} offsets for {len(values)} values")
        self._store.use(shard_key(batch))
        if any(later <= earlier for earlier, later in pairwise(offsets)):  # the engine wants offset order
            order = sorted(range(len(offsets)), key=offsets.__getitem__)
            offsets, values = [offsets[i] for i in order], [values[i] for i in order]
        self._engine.process(list(map(RawRecord, repeat(topic), repeat(partition), offsets, values)))
        if self._expire_at.value() is None:
            expire_at = ctx.timer_service().current_processing_time() + EXPIRY_INTERVAL_MS
            ctx.timer_service().register_processing_time_timer(expire_at)
            self._expire_at.update(expire_at)
        yield from self._emit()

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Row]:
        if timestamp == self._expire_at.value():
            shard = str(ctx.get_current_key())
            self._store.use(shard)
            topic, partition = shard.split("\x00")
            self._engine.expire({(topic, int(partition))})
            at = timestamp + EXPIRY_INTERVAL_MS
            ctx.timer_service().register_processing_time_timer(at)
            self._expire_at.update(at)
        yield from self._emit()

    def _emit(self) -> Iterator[Row]:
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
