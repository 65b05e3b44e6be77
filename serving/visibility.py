"""Read-after-write for ingestion: wait until this replica serves what the worker made of a set
of just-written source records.

Two steps, both observed from outside the worker: (1) the worker's consumer group has committed
past every written offset — the worker commits a batch's tiles and offsets in one Kafka
transaction, so from then on the feature topics hold them; (2) this replica's online materializer has applied
the feature topics up to their end offsets taken after step 1 (it stores its positions in the
online store, in the same write as the tiles).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from featurebus.platform.kafka.clients import consumer as kafka_consumer
from featurebus.platform.kafka.topics import feature_topic, worker_group
from featurebus.platform.kv import KeyValueStore
from featurebus.schemas.errors import KafkaUnavailableError
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.serving.online_materializer import offset_key

__all__ = ["OnlineVisibility"]

_POLL_S = 0.01


class OnlineVisibility:
    def __init__(self, bootstrap: str, store: KeyValueStore, timeout_s: float = 15.0) -> None:
        self._bootstrap = bootstrap
        self._store = store
        self._timeout_s = timeout_s
        self._groups: dict[str, Any] = {}  # workspace -> consumer asking for the worker's offsets
        self._lock = threading.Lock()  # a confluent_kafka Consumer is not safe across threads

    def wait(self, spec: WorkspaceSpec, source: str, written: Mapping[tuple[str, int], int]) -> None:
        """Block until the records ``written`` (last offset per push-topic partition) are served."""
        deadline = time.monotonic() + self._timeout_s
        with self._lock:
            try:
                consumer = self._consumer(spec.name)
                self._wait_processed(consumer, written, deadline)
                targets = self._feature_ends(consumer, spec, source)
            except KafkaException as exc:
                raise KafkaUnavailableError(f"waiting for the records to be served failed: {exc}") from exc
        while not all(self._applied(topic, partition) >= end for (topic, partition), end in targets.items()):
            self._check(deadline, "this replica has not applied the resulting features yet")
            time.sleep(_POLL_S)

    def _consumer(self, workspace: str) -> Any:
        consumer = self._groups.get(workspace)
        if consumer is None:
            # committed() asks the group's coordinator about this group.id without joining it.
            consumer = kafka_consumer(
                self._bootstrap,
                worker_group(workspace),
                **{"client.id": f"featurebus-visibility-{uuid.uuid4().hex[:6]}"},
            )
            self._groups[workspace] = consumer
        return consumer

    def _wait_processed(self, consumer: Any, written: Mapping[tuple[str, int], int], deadline: float) -> None:
        tps = [TopicPartition(topic, partition) for topic, partition in written]
        while True:
            committed = consumer.committed(tps, timeout=max(0.1, deadline - time.monotonic()))
            if all(tp.offset > written[(tp.topic, tp.partition)] for tp in committed):
                return
            self._check(deadline, "the stream worker has not processed them yet (is it running?)")
            time.sleep(_POLL_S * 5)

    def _feature_ends(self, consumer: Any, spec: WorkspaceSpec, source: str) -> dict[tuple[str, int], int]:
        ends = {}
        for view in spec.stream_feature_views:
            if view.source != source or not view.online:
                continue
            topic = feature_topic(spec.name, view.name)
            metadata = consumer.list_topics(topic, timeout=5).topics.get(topic)
            for partition in metadata.partitions if metadata is not None else {}:
                ends[(topic, partition)] = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)[
                    1
                ]
        return ends

    def _applied(self, topic: str, partition: int) -> int:
        raw = self._store.get(offset_key(topic, partition))
        return 0 if raw is None else int(raw)

    def _check(self, deadline: float, why: str) -> None:
        if time.monotonic() > deadline:
            raise KafkaUnavailableError(
                f"the records were written but are not visible online after {self._timeout_s:g}s: {why}"
            )

    def close(self) -> None:
        with self._lock:
            for consumer in self._groups.values():
                consumer.close()
            self._groups.clear()
