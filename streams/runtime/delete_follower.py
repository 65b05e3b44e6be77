"""The stream worker's side of deletes: apply the workspace's delete requests to local state.

See ``featurebus.platform.deletes.requests`` for why. The follower reads the one-partition
deletes topic with its own consumer (no group: every worker applies every request to what it
holds), between micro-batches. Its position is kept in the worker's local store, written in the
same atomic write as the dropped records (``StreamEngine.drop_entities``), so a request is applied
once per state directory. A worker with no position yet (new or lost state) starts at the topic's
end: its state comes from the feature topics, where the deletes' tombstones already are.

The worker applies requests before each micro-batch without waiting on the broker, so an event
that reaches the worker within a moment (the deletes consumer's fetch, ~50 ms) of the delete may
be folded before the request is seen; it is then deleted with the entity's other records, as if
the delete had come after it. Events after that start the entity afresh.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import TopicPartition

from featurebus.platform.deletes.requests import DeleteRequest, deletes_topic_config
from featurebus.platform.kafka.admin import ensure_topics, partition_bounds
from featurebus.platform.kafka.clients import consumer
from featurebus.platform.kafka.topics import deletes_topic
from featurebus.platform.kv import KeyValueStore
from featurebus.schemas.errors import FeaturebusError
from featurebus.streams.runtime.engine import StreamEngine

__all__ = ["DeleteFollower", "POSITION_KEY"]

POSITION_KEY = b"\x00deletes.position"  # sorts before every data key, like the progress records
_MAX_PER_TURN = 50
_TIMEOUT_S = 15.0
_log = logging.getLogger(__name__)


class DeleteFollower:
    def __init__(self, bootstrap: str, workspace: str, store: KeyValueStore) -> None:
        self._store = store
        self._topic = deletes_topic(workspace)
        ensure_topics(bootstrap, [deletes_topic_config(workspace)])
        # A short fetch wait: the request is prefetched within ~50 ms of its write, so every
        # batch polled after that applies it first (``step`` never waits on the broker).
        self._consumer: Any = consumer(bootstrap, **{"enable.auto.offset.store": False, "fetch.wait.max.ms": 50})
        stored = store.get(POSITION_KEY)
        if stored is None:
            # Pin "the end as of now" in the store at once, so a restart does not skip requests
            # that arrive meanwhile.
            # Retried while the topic ensure_topics just created is not yet in the metadata
            # (the first read failed with _UNKNOWN_PARTITION and stopped the worker).
            _, end = partition_bounds(self._consumer, bootstrap, self._topic, 0, _TIMEOUT_S)
            store.write([(POSITION_KEY, str(end).encode())])
            stored = str(end).encode()
        self._consumer.assign([TopicPartition(self._topic, 0, int(stored))])
        self.applied = 0  # requests applied since start

    def step(self, engine: StreamEngine) -> int:
        """Apply the requests that arrived (without waiting); returns how many records were dropped."""
        dropped = 0
        for message in self._consumer.consume(num_messages=_MAX_PER_TURN, timeout=0):
            if message.error() is not None:
                _log.warning("deletes topic: %s", message.error())
                continue
            position = [(POSITION_KEY, str((message.offset() or 0) + 1).encode())]
            value = message.value()
            if value is None:
                engine.drop_entities("", set(), position)
                continue
            try:
                request = DeleteRequest.from_record(value)
            except (FeaturebusError, ValueError, KeyError, TypeError) as exc:
                _log.error("skipping unreadable delete request at offset %s: %s", message.offset(), exc)
                engine.drop_entities("", set(), position)
                continue
            try:
                count = engine.drop_entities(request.view, set(request.entity_keys), position)
            except Exception:
                # Not applied (e.g. the transaction was fenced): read the request again next turn.
                self._consumer.seek(TopicPartition(self._topic, 0, message.offset() or 0))
                raise
            _log.warning("delete %s: dropped %d local records of %s", request.request_id, count, request.view)
            dropped += count
            self.applied += 1
        return dropped

    def close(self) -> None:
        self._consumer.close()
