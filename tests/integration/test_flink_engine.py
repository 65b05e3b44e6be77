"""The Flink engine computes the native engine's feature records, byte for byte.

One event history (with malformed and too-late records) on one source topic, read by two live
workspaces with the same definitions: one materialized by the native worker, one by the PyFlink
job (``featurebus worker --engine flink``, Flink in process). Their compacted feature topics must
hold the same records, their dead-letter topics the same reasons, and the merged windows must
equal the brute-force oracle.

Amounts are multiples of 1/4: their sums are exact in any order, so the byte comparison does not
depend on where each engine cut its micro-batches (any two batchings of arbitrary decimals may
round a sum's last bit differently, native against native too).
"""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import TopicPartition

from featurebus.platform.kafka.admin import TopicConfig, ensure_topics, read_compacted, topic_end_offsets
from featurebus.platform.kafka.clients import consumer as kafka_consumer
from featurebus.platform.kafka.clients import reliable_producer
from featurebus.platform.kafka.topics import dead_letter_topic, feature_topic
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.schemas.encoding import decode_partials, split_tile_key
from featurebus.streams.runtime.engine import compile_views
from featurebus.streams.tiles import compute_values
from tests.support.all_functions import all_functions_view, derived, oracle_params
from tests.support.flink import flink_available, start_flink_worker, stop_flink_worker, wait_for_topic
from tests.support.oracle import Event, feature_value, matches
from tests.support.specs import HOUR, MINUTE, spending_workspace
from tests.support.workers import assert_feature_topic_equals_oracle, start_worker, wait_caught_up

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(
        not flink_available(),
        reason="the Flink engine needs the flink extra (make bootstrap installs it in .venv-flink)",
    ),
]


def _history(seed: int, n: int) -> tuple[list[Event], list[str], int]:
    rng = random.Random(seed)
    base = (int(time.time() * 1000) // HOUR) * HOUR - HOUR
    users = [f"u{i}" for i in range(12)]
    events = [
        Event((rng.choice(users),), base + i * 600 + rng.randrange(-3000, 3000), rng.randrange(0, 4000) / 4)
        for i in range(n)
    ]
    return events, users, base + n * 600 + 5_000


def _dead_letters(bootstrap: str, topic: str) -> list[tuple[bytes | None, str]]:
    """Every committed record of the dead-letter topic (read up to its current end: the tiles the
    test waited for were committed in the same transactions)."""
    ends = topic_end_offsets(bootstrap, topic)
    consumer = kafka_consumer(
        bootstrap, f"test.{uuid.uuid4().hex}", **{"auto.offset.reset": "earliest", "isolation.level": "read_committed"}
    )
    consumer.assign([TopicPartition(topic, p, low) for p, (low, _) in ends.items()])
    found: list[tuple[bytes | None, str]] = []
    deadline = time.monotonic() + 60
    try:
        # The position, not the last offset seen, decides: it also steps over transaction markers.
        while any(tp.offset < ends[tp.partition][1] for tp in consumer.position(consumer.assignment())):
            assert time.monotonic() < deadline, f"{topic} not read to its end"
            message = consumer.poll(0.2)
            if message is None or message.error() is not None:
                continue
            headers = dict(message.headers() or [])
            found.append((message.value(), (headers.get("featurebus.reason") or b"").decode()))
    finally:
        consumer.close()
    return sorted(found, key=repr)


def test_flink_job_writes_the_native_engines_feature_records(kafka_bootstrap: str, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    topic = f"tx_{suffix}"
    ensure_topics(kafka_bootstrap, [TopicConfig(topic, partitions=2)])
    native = apply_workspace(KafkaRegistry(kafka_bootstrap), spending_workspace(topic=topic, name=f"native_{suffix}"))
    flink = apply_workspace(KafkaRegistry(kafka_bootstrap), spending_workspace(topic=topic, name=f"flink_{suffix}"))
    events, users, t_ms = _history(17, 3_000)
    malformed = [
        b"not json",
        orjson.dumps({"user_id": "u1", "amount": "lots", "ts": events[0].ts_ms}),
        orjson.dumps({"user_id": "u2", "amount": 1.0}),
    ]
    too_late = Event(("u3",), events[0].ts_ms - 3 * HOUR, 1000.0)  # older than watermark - 1 h: dropped by both
    with reliable_producer(kafka_bootstrap) as producer:
        for i, e in enumerate(events):
            producer.produce(
                topic,
                key=e.entity[0].encode(),
                value=orjson.dumps({"user_id": e.entity[0], "amount": e.value, "ts": e.ts_ms}),
            )
            if i == len(events) // 2:
                for bad in malformed:
                    producer.produce(topic, key=b"u1", value=bad)
                producer.produce(
                    topic,
                    key=b"u3",
                    value=orjson.dumps({"user_id": "u3", "amount": too_late.value, "ts": too_late.ts_ms}),
                )
    native_worker = start_worker(kafka_bootstrap, native.name, tmp_path / "native")
    flink_worker = start_flink_worker(kafka_bootstrap, flink.name, tmp_path / "flink")
    try:
        wait_caught_up(kafka_bootstrap, native.name, topic, native_worker, tmp_path / "native")
        expected = read_compacted(kafka_bootstrap, feature_topic(native.name, "user_spending"))
        assert expected
        got = wait_for_topic(
            kafka_bootstrap,
            feature_topic(flink.name, "user_spending"),
            lambda c: c == expected,
            flink_worker,
            tmp_path / "flink" / "flink-worker.log",
        )
        assert got == expected
        assert _dead_letters(kafka_bootstrap, dead_letter_topic(flink.name)) == _dead_letters(
            kafka_bootstrap, dead_letter_topic(native.name)
        )
        assert len(_dead_letters(kafka_bootstrap, dead_letter_topic(flink.name))) == len(malformed)
    finally:
        native_worker.kill()
        native_worker.wait()
        stop_flink_worker(flink_worker)
    assert_feature_topic_equals_oracle(kafka_bootstrap, flink, events, users, t_ms)


def _property_history(rng: random.Random, base_ms: int) -> list[tuple[str, int, float | None]]:
    """The shape of test_engine's hypothesis histories: three users, a coarse time grid (ties on
    window edges), nulls, out-of-order arrival beyond the watermark delay (late events)."""
    return [
        (
            rng.choice(["u1", "u2", "u3"]),
            base_ms + rng.randrange(0, 181) * MINUTE // 2,
            None if rng.random() < 0.15 else round(rng.uniform(-1e6, 1e6), 3),
        )
        for _ in range(rng.randrange(20, 60))
    ]


def test_flink_job_matches_the_oracle_on_property_histories(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Each partition of the source carries its own history (own users, own watermark): one job
    run checks several histories against the brute-force oracle, every function and Attribute."""
    suffix = uuid.uuid4().hex[:8]
    partitions = 4
    topic = f"prop_{suffix}"
    ensure_topics(kafka_bootstrap, [TopicConfig(topic, partitions=partitions)])
    base = (int(time.time() * 1000) // HOUR) * HOUR - 2 * HOUR
    spec = spending_workspace(topic=topic, name=f"flinkprop_{suffix}")
    view = all_functions_view(
        spec.stream_feature_views[0], [("1m", MINUTE), ("1h", HOUR)], attribute_ttl_ms=30 * MINUTE
    )
    spec = apply_workspace(KafkaRegistry(kafka_bootstrap), dataclasses.replace(spec, stream_feature_views=(view,)))
    rng = random.Random(23)
    histories = {p: [(f"p{p}{user}", t, a) for user, t, a in _property_history(rng, base)] for p in range(partitions)}
    with reliable_producer(kafka_bootstrap) as producer:
        for partition, events in histories.items():
            for user, t, amount in events:
                producer.produce(
                    topic, partition=partition, value=orjson.dumps({"user_id": user, "amount": amount, "ts": t})
                )
    worker = start_flink_worker(kafka_bootstrap, spec.name, tmp_path)
    log = tmp_path / "flink-worker.log"
    compiled = compile_views(spec)["user_spending"]
    try:
        # Done when every entity's newest event is in a tile (the job keeps no offsets we can see
        # before its checkpoint); the oracle comparison below then checks every value.
        wanted = {compiled.entity_key([user]) for events in histories.values() for user, _, _ in events}
        contents = wait_for_topic(
            kafka_bootstrap,
            feature_topic(spec.name, "user_spending"),
            lambda c: wanted <= {split_tile_key(k)[0] for k in c} and _flushed(c, histories),
            worker,
            log,
        )
    finally:
        stop_flink_worker(worker)
    tiles: dict[bytes, list[tuple[int, list[object], int]]] = {}
    for key, value in contents.items():
        entity, start, shard = split_tile_key(key)
        tiles.setdefault(entity, []).append((start, decode_partials(value), shard))
    for events in histories.values():
        accepted: dict[str, list[Event]] = {"amount": [], "units": [], "tag": []}
        newest: int | None = None
        for user, t, amount in events:
            if newest is None or t >= newest - HOUR:
                for column, value in derived(amount).items():
                    accepted[column].append(Event((user,), t, value))
            newest = t if newest is None else max(newest, t)
        for user in sorted({user for user, _, _ in events}):
            for q in (0, 37, 90, 181, 200):
                t_ms = base + q * MINUTE // 2
                got = compute_values(compiled, tiles.get(compiled.entity_key([user]), []), t_ms)
                for agg, value in zip(compiled.spec.aggregations, got, strict=True):
                    want = feature_value(
                        accepted[agg.input_column],
                        (user,),
                        t_ms,
                        agg.function,
                        agg.window_ms,
                        None,
                        **oracle_params(agg),
                    )
                    assert matches(agg.function, value, want, agg.precision), (user, q, agg.name, value, want)


def _flushed(contents: dict[bytes, bytes], histories: dict[int, list[tuple[str, int, float | None]]]) -> bool:
    """Every partition's newest tile carries a count that includes its last accepted event: the
    job has applied each partition's whole history (tiles only grow, so a partial one is smaller)."""
    counts: dict[int, int] = {}  # the first aggregation is count(amount): per shard = source partition
    for key, value in contents.items():
        shard = split_tile_key(key)[2]
        counts[shard] = counts.get(shard, 0) + int(decode_partials(value)[0])
    return all(counts.get(p, 0) >= _accepted_present(events) for p, events in histories.items())


def _accepted_present(events: list[tuple[str, int, float | None]]) -> int:
    newest: int | None = None
    count = 0
    for _, t, amount in events:
        if newest is None or t >= newest - HOUR:
            count += amount is not None
        newest = t if newest is None else max(newest, t)
    return count
