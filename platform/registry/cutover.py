"""Fixing a stream view's cut-over from batch history to its stream, once, when it is applied.

The rule (``featurebus.streams.cutover``): ``T_cut`` is the latest, over the source topics'
partitions, of the event time of each partition's earliest retained record, or the apply time
when no partition holds a record. ``fix_cutovers`` sets it on every view with batch history that
has none yet (created, or given its history by this apply); views that have one keep it (the
plan carries it over, ``platform/plan/diff.py``), so a restart, a rebuild or a re-apply never
moves it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from confluent_kafka import TopicPartition

from featurebus.platform.kafka.admin import topic_end_offsets, unreachable_hint
from featurebus.platform.kafka.clients import consumer
from featurebus.schemas.errors import KafkaUnavailableError
from featurebus.schemas.specs import StreamSourceSpec, WorkspaceSpec
from featurebus.streams.records import decode_records
from featurebus.streams.transform import event_time_ms

__all__ = ["EarliestEvents", "earliest_retained_event_ms", "fix_cutovers"]

# ``source -> event time of each non-empty partition's earliest retained (decodable) record``.
EarliestEvents = Callable[[StreamSourceSpec], list[int]]

_PROBE_RECORDS = 100  # records read per partition to find one that decodes (malformed ones are skipped)


def fix_cutovers(spec: WorkspaceSpec, now_ms: int, earliest: EarliestEvents | None) -> WorkspaceSpec:
    """``spec`` with ``stream_cutover_ms`` set on the views with batch history that lack one
    (``earliest`` None: no bus to ask, the apply time is the cut-over)."""
    views = []
    for view in spec.stream_feature_views:
        if view.backfill_from_batch and view.stream_cutover_ms is None:
            times = [] if earliest is None else earliest(spec.source(view.source))
            view = dataclasses.replace(view, stream_cutover_ms=max(times) if times else now_ms)
        views.append(view)
    return dataclasses.replace(spec, stream_feature_views=tuple(views))


def earliest_retained_event_ms(bootstrap: str, timeout_s: float = 15.0) -> EarliestEvents:
    """The probe ``fix_cutovers`` asks, over the platform's bus (or the source's own cluster)."""

    def earliest(source: StreamSourceSpec) -> list[int]:
        servers = source.kafka.bootstrap_servers or bootstrap
        return [t for topic in source.kafka.topics for t in _first_event_times(servers, topic, source, timeout_s)]

    return earliest


def _first_event_times(bootstrap: str, topic: str, source: StreamSourceSpec, timeout_s: float) -> list[int]:
    ends = topic_end_offsets(bootstrap, topic, timeout_s)
    if not ends:
        return []
    reader = consumer(bootstrap, **{"enable.auto.offset.store": False, "socket.connection.setup.timeout.ms": 5000})
    found: dict[int, int] = {}
    pending = {p: (low, min(high, low + _PROBE_RECORDS)) for p, (low, high) in ends.items()}
    deadline = time.monotonic() + timeout_s
    try:
        reader.assign([TopicPartition(topic, p, low) for p, (low, _) in pending.items()])
        while pending:
            if time.monotonic() > deadline:
                raise KafkaUnavailableError(
                    f"reading the earliest records of {topic!r} to fix a stream view's cut-over did not finish "
                    f"within {timeout_s:g} s. {unreachable_hint(bootstrap)}"
                )
            for message in reader.consume(500, timeout=0.5):
                partition, offset = message.partition(), message.offset()
                if message.error() is not None or partition not in pending or offset is None:
                    continue
                decoded = decode_records([message.value()], source)
                if len(decoded.frame):
                    times = event_time_ms(decoded.frame[source.kafka.timestamp_field])
                    found[partition] = int(times[0])
                    del pending[partition]
                elif offset + 1 >= pending[partition][1]:
                    del pending[partition]  # no decodable record among the first ones: no bound
    finally:
        reader.close()
    return list(found.values())
