"""Keep a serving replica's online store in step with the bus.

One background thread, one consumer, manual assignment (no consumer group: each replica holds its
own full copy of the online store). It reads

* ``REGISTRY_TOPIC`` from the beginning on every start -> the latest ``WorkspaceSpec`` per
  workspace (``specs()``, ``generation``);
* ``API_KEYS_TOPIC`` from the beginning -> the ``ApiKeyStore`` serving checks requests against;
* the feature topic of every online stream feature view -> tiles in the ``KeyValueStore``, with the
  next offset of each partition written in the *same* atomic batch under ``b"\\x00offsets."``, so
  a restarted replica resumes exactly where its store ends instead of replaying the topic.

Online store keys are ``store_key(online_view_name(workspace, view), record key)``: the view name
is qualified by its workspace because one replica serves every workspace, and two workspaces (say
``prod`` and ``staging``) routinely hold views of the same name.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import Counter, Gauge

from featurebus.platform.api_keys import ApiKeyStore
from featurebus.platform.kafka.admin import unreachable_hint
from featurebus.platform.kafka.clients import consumer as kafka_consumer
from featurebus.platform.kafka.health import BrokerHealth
from featurebus.platform.kafka.topics import API_KEYS_TOPIC, REGISTRY_TOPIC, feature_topic
from featurebus.platform.kv import KeyValueStore
from featurebus.schemas.encoding import readable_value, store_prefix
from featurebus.schemas.errors import FeaturebusError, KafkaUnavailableError
from featurebus.schemas.specs import BatchFeatureViewSpec, StreamFeatureViewSpec, WorkspaceSpec
from featurebus.streams.lifetime import HIGH_WATERMARK_PREFIX

__all__ = ["OnlineMaterializer", "WriteListener", "online_view_name", "offset_key", "OFFSETS_PREFIX"]

# Sorts before every data key (those start with the key format byte, >= 0x01).
OFFSETS_PREFIX = b"\x00offsets."
_OFFSETS_END = b"\x00offsets/"  # "/" follows "." in byte order: the end of the prefix range
# The write time of the newest feature record applied per partition (freshness), stored with the
# offsets so a restarted replica still knows how fresh its copy is.
NEWEST_PREFIX = b"\x00newest."
_NEWEST_END = b"\x00newest/"
_BATCH = 5000  # records applied per store write at most (catch-up); at low rates, what has arrived
_TILE_KEY_TAIL = 10  # a tile key's u64 start + u16 shard, after the entity key (schemas/encoding.py)
_POLL_S = 0.05
_METADATA_REFRESH_S = 30.0  # while every wanted topic is assigned: only new partitions to find

_LAG = Gauge("featurebus_online_materializer_lag_records", "Records behind the high watermark", ["topic", "partition"])
_RECORDS = Counter("featurebus_online_materializer_records_total", "Records applied", ["kind"])
_SKIPPED = Counter("featurebus_online_materializer_skipped_total", "Malformed records skipped", ["topic"])

_log = logging.getLogger(__name__)


def online_view_name(workspace: str, view: str) -> str:
    """The view name used in online store keys. "/" cannot occur in (topic-safe) names."""
    return f"{workspace}/{view}"


class WriteListener(Protocol):
    def begin_write(self, entity_prefixes: set[bytes]) -> None: ...

    def end_write(self, entity_prefixes: set[bytes]) -> None: ...


def _materialized_views(spec: WorkspaceSpec) -> list[StreamFeatureViewSpec | BatchFeatureViewSpec]:
    """Views with a feature topic: stream views, and batch views (``platform/batch/online.py``)."""
    return [*spec.stream_feature_views, *spec.batch_feature_views]


def offset_key(topic: str, partition: int) -> bytes:
    return OFFSETS_PREFIX + f"{topic}/{partition}".encode()


@dataclass
class _Partition:
    """Progress of one assigned partition, from local consumer state only.

    Watermarks come from fetch responses (``cached=True``), never from synchronous broker
    queries: those queue behind the consumer's long-polling fetch on the broker connection and
    would stall the loop for every partition of every newly subscribed view.
    """

    position: int | None  # next offset to apply; None until known (the low watermark if unread)
    target: int | None = None  # first high watermark seen after assignment: the catch-up goal
    high: int = 0  # latest high watermark, for lag
    reached: bool = False

    def advance(self, position: int) -> None:
        if position >= 0 and (self.position is None or position > self.position):
            self.position = position

    def observe(self, consumer: Any, tp: TopicPartition, position: int) -> None:
        """Fold in the consumer's position (it steps over transaction markers and compacted
        gaps, which message offsets never reach) and the cached watermarks."""
        self.advance(position)
        low, high = consumer.get_watermark_offsets(tp, cached=True)
        if self.position is None and low >= 0:
            self.position = low  # nothing delivered yet: we are at the log start
        if high >= 0:
            self.high = max(self.high, high)
            if self.target is None:
                self.target = high
        if not self.reached and self.target is not None and self.position is not None:
            self.reached = self.position >= self.target

    @property
    def lag(self) -> int:
        return max(self.high - (self.position or 0), 0)


class OnlineMaterializer:
    def __init__(
        self,
        bootstrap: str,
        store: KeyValueStore,
        api_keys: ApiKeyStore,
        *,
        refresh_interval_s: float = 1.0,
        unavailable_timeout_s: float = 10.0,
        kafka_timeout_s: float = 2.0,
    ) -> None:
        self._bootstrap = bootstrap
        self._store = store
        self._api_keys = api_keys
        self._refresh_interval_s = refresh_interval_s
        self._unavailable_timeout_s = unavailable_timeout_s
        self._kafka_timeout_s = kafka_timeout_s
        # Published snapshots: replaced, never mutated, so readers on other threads need no lock.
        self._specs: dict[str, WorkspaceSpec] = {}
        self._lag: dict[tuple[str, int], int] = {}
        self._newest_ms: dict[tuple[str, int], int] = {}  # feature partitions only (freshness)
        self._written: dict[str, int] = {}  # feature topic -> records applied
        self._generation = 0
        self._error: str | None = None
        self._fatal = False
        # Owned by the consumer thread.
        self._feature_topics: dict[str, str] = {}  # topic -> online view name
        self._feature_prefixes: dict[str, bytes] = {}  # topic -> store_prefix(online view name)
        self._parts: dict[tuple[str, int], _Partition] = {}
        self._offsets: dict[tuple[str, int], int] = {}
        self._refresh_pending = True
        self._topics_missing = True  # some wanted topic was not in the last metadata
        self._health = BrokerHealth(bootstrap)  # fed by the consumer thread
        self._logged_errors: set[tuple[int, str]] = set()
        self._caught_up = threading.Event()
        self._ready = threading.Event()  # latched by the first catch-up
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._write_listeners: list[WriteListener] = []

    def add_write_listener(self, listener: WriteListener) -> None:
        """Tell ``listener`` (on the consumer thread) before and after each store write which
        entities' tiles it changes, as ``store_prefix(view, entity key)`` (caches use it)."""
        self._write_listeners.append(listener)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            raise FeaturebusError("the online materializer is already started")
        self._thread = threading.Thread(target=self._run, name="featurebus-online-materializer", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                _log.error("online materializer thread did not stop within %.1f s", timeout_s)

    def __enter__(self) -> OnlineMaterializer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- state, readable from any thread -----------------------------------------------------
    @property
    def error(self) -> str | None:
        """Why the materializer cannot keep the store current (None while healthy)."""
        return self._error

    @property
    def generation(self) -> int:
        """Bumped on every registry change applied; a cheap "did the specs change" check."""
        return self._generation

    def specs(self) -> dict[str, WorkspaceSpec]:
        """The latest spec per workspace. A shared snapshot: do not mutate it."""
        return self._specs

    def caught_up(self) -> bool:
        """Every assigned partition (including those of views added since) reached the high
        watermark first seen after its assignment."""
        return self._error is None and self._caught_up.is_set()

    def ready(self) -> bool:
        """Healthy and caught up at least once since start: what ``/ready`` reports.

        Unlike ``caught_up`` it does not drop while a newly applied view's topic is read, or an
        apply would take every replica out of its load balancer at the same moment.
        """
        return self._error is None and self._ready.is_set()

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the high watermark per ``(topic, partition)``, as of the last refresh."""
        return self._lag

    def newest_ms(self) -> dict[tuple[str, int], int]:
        """Per feature ``(topic, partition)``: the write time (epoch ms) of the newest feature record
        applied, i.e. when the stream engine published the latest update this replica serves."""
        return dict(self._newest_ms)

    def feature_topics(self) -> dict[str, str]:
        """Feature topic -> ``online_view_name(workspace, view)`` of every served view."""
        return self._feature_topics

    def records_written(self) -> dict[str, int]:
        """Feature records applied per feature topic since start."""
        return dict(self._written)

    def wait_caught_up(self, timeout_s: float) -> bool:
        """True once caught up, False on timeout. Raises rather than waiting out the timeout:
        ``KafkaUnavailableError`` if no broker answers, ``FeaturebusError`` if the thread failed."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self._error is not None:
                raise (FeaturebusError if self._fatal else KafkaUnavailableError)(self._error)
            if self.caught_up():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._thread is None or not self._thread.is_alive():
                raise FeaturebusError("the online materializer is not running; call start() first")
            self._caught_up.wait(min(remaining, 0.1))

    # -- the consumer thread -----------------------------------------------------------------
    def _run(self) -> None:
        consumer: Any = None
        try:
            consumer = kafka_consumer(
                self._bootstrap,
                # Unique per process and never committed: the store holds the offsets.
                f"featurebus.serving.{uuid.uuid4().hex}",
                **{
                    "enable.auto.offset.store": False,
                    "auto.offset.reset": "earliest",
                    "socket.connection.setup.timeout.ms": 5000,
                    # The broker answers a connection's requests in order: a shorter fetch long
                    # poll keeps metadata refreshes (new views) from waiting behind it.
                    "fetch.wait.max.ms": 100,
                    # Registry versions are written in transactions: never act on an aborted one.
                    "isolation.level": "read_committed",
                    "error_cb": self._on_kafka_error,
                },
            )
            self._offsets = self._load_offsets()
            self._newest_ms = self._load_newest()
            next_refresh = next_metadata = 0.0
            while not self._stop.is_set():
                now = time.monotonic()
                if self._refresh_pending or now >= next_refresh:
                    # A metadata request queues behind the consumer's fetch on the broker
                    # connection, stalling every update meanwhile: ask only while a wanted topic
                    # is missing (a view the worker has not written yet) or the broker seemed
                    # down (a metadata answer is what clears that), else rarely (new partitions);
                    # the lag comes from local consumer state every time.
                    if (
                        self._refresh_pending
                        or self._topics_missing
                        or self._health.down_since is not None
                        or now >= next_metadata
                    ):
                        self._refresh(consumer)
                        next_metadata = now + _METADATA_REFRESH_S
                    else:
                        self._publish_lag(consumer)
                    next_refresh = time.monotonic() + self._refresh_interval_s
                # consume(n, timeout) waits for all n records or the whole timeout, which at low
                # rates adds the timeout to every update's freshness: block for the first record
                # only, then drain what is already fetched without waiting.
                first = consumer.poll(_POLL_S)
                messages = [] if first is None else [first, *consumer.consume(num_messages=_BATCH - 1, timeout=0)]
                if messages:
                    self._apply(messages)
                self._store_positions(consumer)
                self._update_progress(consumer)
                self._check_health()
        except Exception as exc:  # a bug or a broken store: stop loudly, /ready turns 503
            _log.exception("online materializer failed")
            self._fatal = True
            self._error = f"online materializer failed: {type(exc).__name__}: {exc}"
        finally:
            self._caught_up.clear()
            self._ready.clear()
            if consumer is not None:
                consumer.close()

    def _load_offsets(self) -> dict[tuple[str, int], int]:
        offsets = {}
        for key, value in self._store.scan(OFFSETS_PREFIX, _OFFSETS_END):
            topic, _, partition = key[len(OFFSETS_PREFIX) :].decode().rpartition("/")
            offsets[(topic, int(partition))] = int(value)
        return offsets

    def _load_newest(self) -> dict[tuple[str, int], int]:
        newest = {}
        for key, value in self._store.scan(NEWEST_PREFIX, _NEWEST_END):
            topic, _, partition = key[len(NEWEST_PREFIX) :].decode().rpartition("/")
            newest[(topic, int(partition))] = int(value)
        return newest

    def _on_kafka_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = True
            self._error = f"Kafka client failed: {error}"
            _log.error("%s", self._error)
        else:
            self._health.on_error(error)

    def _refresh(self, consumer: Any) -> None:
        """Assign partitions of wanted topics that appeared, drop unwanted ones, update lag."""
        try:
            metadata = consumer.list_topics(timeout=self._kafka_timeout_s)
        except KafkaException as exc:  # metadata needs a broker: none answers
            self._health.unreachable(str(exc))
            return
        self._health.reachable()
        # Only feature topics resume from stored offsets; specs and keys live in memory.
        wanted = {REGISTRY_TOPIC: False, API_KEYS_TOPIC: False, **dict.fromkeys(self._feature_topics, True)}
        new: list[tuple[TopicPartition, _Partition]] = []
        self._topics_missing = False
        for topic, resumable in wanted.items():
            topic_meta = metadata.topics.get(topic)
            if topic_meta is None or topic_meta.error is not None:
                self._topics_missing = True
                continue  # not created yet (e.g. the worker has not written the view yet)
            for p in topic_meta.partitions:
                if (topic, p) not in self._parts:
                    stored = self._offsets.get((topic, p)) if resumable else None
                    start = OFFSET_BEGINNING if stored is None else stored
                    new.append((TopicPartition(topic, p, start), _Partition(stored)))
        if new:
            consumer.incremental_assign([tp for tp, _ in new])
            self._parts.update({(tp.topic, tp.partition): part for tp, part in new})
        gone = [key for key in self._parts if key[0] not in wanted]
        if gone:
            consumer.incremental_unassign([TopicPartition(t, p) for t, p in gone])
            for key in gone:
                del self._parts[key]
                try:
                    _LAG.remove(key[0], str(key[1]))
                except KeyError:
                    pass  # never published
        self._refresh_pending = False
        self._publish_lag(consumer)

    def _publish_lag(self, consumer: Any) -> None:
        tps = [TopicPartition(t, p) for t, p in self._parts]
        lag = {}
        for tp in consumer.position(tps):
            key = (tp.topic, tp.partition)
            self._parts[key].observe(consumer, tp, tp.offset)
            lag[key] = self._parts[key].lag
            _LAG.labels(tp.topic, str(tp.partition)).set(lag[key])
        self._lag = lag

    def _apply(self, messages: list[Message]) -> None:
        puts: list[tuple[bytes, bytes | None]] = []
        entities: list[bytes] = []  # the store prefix of each written tile's entity
        offsets: dict[tuple[str, int], int] = {}
        newest: dict[tuple[str, int], int] = {}
        applied: dict[str, int] = {}  # feature topic -> records applied
        for msg in messages:
            error = msg.error()
            topic = msg.topic() or ""
            if error is not None:
                self._log_once(error, topic)
                continue
            partition, offset = msg.partition() or 0, msg.offset() or 0
            part = self._parts.get((topic, partition))
            if part is not None:
                part.advance(offset + 1)
            if topic == REGISTRY_TOPIC:
                self._apply_registry(msg.key(), msg.value())
            elif topic == API_KEYS_TOPIC:
                self._api_keys.apply_record(msg.key(), msg.value())
                _RECORDS.labels("api_key").inc()
            else:
                view = self._feature_prefixes.get(topic)
                if view is None:
                    continue  # its view left the registry earlier in this batch
                key, value = msg.key(), msg.value()
                if (
                    key is None
                    or (value is not None and not readable_value(value))
                    or (len(key) <= _TILE_KEY_TAIL and not key.startswith(HIGH_WATERMARK_PREFIX))
                ):
                    _SKIPPED.labels(topic).inc()
                    _log.warning("skipping malformed feature record %s[%d]@%d", topic, partition, offset)
                else:
                    stored = view + key
                    puts.append((stored, value))
                    applied[topic] = applied.get(topic, 0) + 1
                    if value is not None:  # an expiry tombstone is no update of the features
                        newest[(topic, partition)] = msg.timestamp()[1]
                    if not key.startswith(HIGH_WATERMARK_PREFIX):  # those belong to no entity
                        entities.append(stored[:-_TILE_KEY_TAIL])  # store_prefix(view, entity key)
                offsets[(topic, partition)] = offset + 1
        if offsets:
            tiles = len(puts)
            puts.extend((offset_key(t, p), str(o).encode()) for (t, p), o in offsets.items())
            newest = {key: ms for key, ms in newest.items() if ms > self._newest_ms.get(key, -1)}
            puts.extend((NEWEST_PREFIX + f"{t}/{p}".encode(), str(ms).encode()) for (t, p), ms in newest.items())
            touched = set(entities) if self._write_listeners else set()
            for listener in self._write_listeners:
                listener.begin_write(touched)
            self._store.write(puts)  # tiles and offsets together: a crash never skips a record
            for listener in self._write_listeners:
                listener.end_write(touched)
            self._offsets.update(offsets)
            self._newest_ms = {**self._newest_ms, **newest}  # replaced, never mutated: read by scrapes
            written = dict(self._written)
            for topic, n in applied.items():
                written[topic] = written.get(topic, 0) + n
            self._written = written
            _RECORDS.labels("tile").inc(tiles)

    def _store_positions(self, consumer: Any) -> None:
        """Persist positions that moved past records we never see: the worker's transaction
        commit markers end every batch, and read-after-write compares the stored offsets with
        the partitions' end offsets, which count the markers."""
        feature_parts = [TopicPartition(t, p) for t, p in self._parts if t in self._feature_topics]
        moved = {
            (tp.topic, tp.partition): tp.offset
            for tp in consumer.position(feature_parts)
            if tp.offset > self._offsets.get((tp.topic, tp.partition), -1)
        }
        if moved:
            self._store.write([(offset_key(t, p), str(o).encode()) for (t, p), o in moved.items()])
            self._offsets.update(moved)

    def _apply_registry(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            _log.warning("skipping registry record without a key")
            return
        workspace = key.decode("utf-8", errors="replace")
        specs = dict(self._specs)
        if value is None:
            specs.pop(workspace, None)
        else:
            try:
                spec = WorkspaceSpec.from_json(value)
                if spec.name != workspace:
                    raise ValueError(f"the record key says {workspace!r} but the spec is named {spec.name!r}")
            except (FeaturebusError, ValueError, TypeError, KeyError) as exc:
                _SKIPPED.labels(REGISTRY_TOPIC).inc()
                _log.error("skipping unreadable spec of workspace %r (keeping the previous one): %s", workspace, exc)
                return
            if spec.live:
                specs[workspace] = spec
            else:  # a development workspace is never materialized nor served: to serving it does not exist
                specs.pop(workspace, None)
        self._feature_topics = {
            feature_topic(ws, view.name): online_view_name(ws, view.name)
            for ws, spec in specs.items()
            for view in _materialized_views(spec)
            if view.online
        }
        self._feature_prefixes = {topic: store_prefix(view) for topic, view in self._feature_topics.items()}
        self._specs = specs
        self._generation += 1
        self._refresh_pending = True  # subscribe to new views' topics before claiming caught up
        self._caught_up.clear()
        _RECORDS.labels("registry").inc()

    def _update_progress(self, consumer: Any) -> None:
        pending = [TopicPartition(*key) for key, part in self._parts.items() if not part.reached]
        if pending:
            for tp in consumer.position(pending):
                self._parts[(tp.topic, tp.partition)].observe(consumer, tp, tp.offset)
        if not self._refresh_pending and all(part.reached for part in self._parts.values()):
            self._caught_up.set()
            self._ready.set()
        else:
            self._caught_up.clear()

    def _check_health(self) -> None:
        if self._fatal:
            return
        down_for = self._health.down_for()
        if down_for is not None and down_for > self._unavailable_timeout_s:
            if self._error is None:
                self._error = f"no Kafka broker reachable for {down_for:.0f} s. {unreachable_hint(self._bootstrap)}"
                _log.error("online store is going stale: %s", self._error)
        elif down_for is None and self._error is not None:
            _log.info("Kafka at %s reachable again; online store catching up", self._bootstrap)
            self._error = None

    def _log_once(self, error: KafkaError, topic: str) -> None:
        if (error.code(), topic) not in self._logged_errors:
            self._logged_errors.add((error.code(), topic))
            _log.warning("consumer error on %s: %s", topic or "<no topic>", error)
