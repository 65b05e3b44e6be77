"""Delete requests on the bus, for the stream workers: ``deletes_topic(workspace)``.

The tombstones a delete writes clear the feature topics, but a stream worker also caches every
tile it publishes (``streams.runtime.shard_state``) and merges the next event into the cached
tile: the deleted counts would come back with the entity's next event. So a delete also appends
a request naming the view and the entity keys; every worker of the workspace follows the topic
(``streams.runtime.delete_follower``) and drops those entities' local records, tombstoning what
it held in its own transaction (which also covers a tile it republished between the delete's
tombstones and its reading of the request).

One partition (requests are applied in order), never compacted, kept without a time limit (a
worker that was down applies what it missed when it returns); records are small.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from featurebus.platform.kafka.admin import TopicConfig, ensure_topics
from featurebus.platform.kafka.clients import reliable_producer
from featurebus.platform.kafka.topics import deletes_topic
from featurebus.schemas.errors import StoreFormatError

__all__ = ["REQUEST_FORMAT", "DeleteRequest", "deletes_topic_config", "publish_request"]

REQUEST_FORMAT = 1


@dataclass(frozen=True)
class DeleteRequest:
    request_id: str
    view: str
    entity_keys: tuple[bytes, ...]
    time_ms: int

    def to_record(self) -> bytes:
        return orjson.dumps(
            {
                "version": REQUEST_FORMAT,
                "id": self.request_id,
                "view": self.view,
                "entityKeys": [k.hex() for k in self.entity_keys],
                "timeMs": self.time_ms,
            }
        )

    @classmethod
    def from_record(cls, value: bytes) -> DeleteRequest:
        raw = orjson.loads(value)
        if raw.get("version") != REQUEST_FORMAT:
            raise StoreFormatError(
                f"delete request format {raw.get('version')!r} is not {REQUEST_FORMAT}: written by another "
                "featurebus version; upgrade the stream worker"
            )
        return cls(
            str(raw["id"]), str(raw["view"]), tuple(bytes.fromhex(k) for k in raw["entityKeys"]), int(raw["timeMs"])
        )


def deletes_topic_config(workspace: str) -> TopicConfig:
    return TopicConfig(deletes_topic(workspace), 1, config={"retention.ms": "-1", "retention.bytes": "-1"})


def publish_request(bootstrap: str, workspace: str, request: DeleteRequest) -> None:
    ensure_topics(bootstrap, [deletes_topic_config(workspace)])
    with reliable_producer(bootstrap) as writer:
        writer.produce(deletes_topic(workspace), request.to_record(), request.request_id.encode(), partition=0)
