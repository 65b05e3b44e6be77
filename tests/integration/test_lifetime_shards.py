"""Lifetime windows through the real worker and broker: three source partitions (three shards with
their own watermarks and lifetime prefixes), an expiry that folds tiles into the prefixes, then a
lost state directory, so the restarted worker rebuilds every shard (tiles, prefixes, high
watermarks) from the feature topic and goes on: the feature topic, read as serving reads it,
equals the brute-force oracle."""

from __future__ import annotations

import dataclasses
import random
import shutil
import time
import uuid
from pathlib import Path

import orjson
import pytest

from featurebus.platform.kafka.admin import TopicConfig, ensure_topics, read_compacted
from featurebus.platform.kafka.clients import reliable_producer
from featurebus.platform.kafka.topics import feature_topic
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.schemas.encoding import decode_tiles
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.streams.lifetime import PREFIX_START_MS, high_watermark_shard
from featurebus.streams.runtime.engine import compile_views
from featurebus.streams.tiles import compute_values
from tests.support.oracle import Event, close, value_of
from tests.support.specs import HOUR, MINUTE
from tests.support.window_specs import VIEW, windowed_workspace
from tests.support.workers import start_worker, wait_caught_up

pytestmark = pytest.mark.kafka

BASE = 1_700_000_000_000 - 1_700_000_000_000 % HOUR
DELAY = 10 * MINUTE


def _workspace(topic: str, name: str) -> WorkspaceSpec:
    spec = windowed_workspace(BASE, None, DELAY, leading_edge="latest_event_time")
    source = spec.stream_sources[0]
    source = dataclasses.replace(source, kafka=dataclasses.replace(source.kafka, topics=(topic,)))
    return dataclasses.replace(spec, name=name, stream_sources=(source,))


def _produce(bootstrap: str, topic: str, events: list[tuple[str, int, float, int]]) -> None:
    with reliable_producer(bootstrap) as producer:
        for user, ts, amount, partition in events:
            producer.produce(
                topic,
                partition=partition,
                key=user.encode(),
                value=orjson.dumps({"user_id": user, "amount": amount, "ts": ts}),
            )


def _feature_records(bootstrap: str, spec: WorkspaceSpec) -> dict[bytes, bytes]:
    return read_compacted(bootstrap, feature_topic(spec.name, VIEW))


def _wait_for_final_prefixes(bootstrap: str, spec: WorkspaceSpec, shards: int, home: Path) -> None:
    """Until every shard published a final lifetime prefix (the worker expires every 30 s)."""
    deadline = time.monotonic() + 120
    while True:
        records = _feature_records(bootstrap, spec)
        tiles = decode_tiles(((k, v) for k, v in records.items() if high_watermark_shard(k) is None), shards=True)
        if len({shard for start, _, shard in tiles if start == PREFIX_START_MS}) == shards:
            return
        assert time.monotonic() < deadline, (home / "worker.log").read_text()[-3000:]
        time.sleep(2.0)


def test_lifetime_prefixes_restored_from_the_bus_keep_serving_the_oracle(kafka_bootstrap: str, tmp_path: Path) -> None:
    rng = random.Random(11)
    suffix = uuid.uuid4().hex[:8]
    workspace, topic = f"life_{suffix}", f"tx_{suffix}"
    ensure_topics(kafka_bootstrap, [TopicConfig(topic, partitions=3)])
    spec = apply_workspace(KafkaRegistry(kafka_bootstrap), _workspace(topic, workspace))
    users = ["u1", "u2", "u3"]
    # Six hours in time order per partition (beyond the view's 2 h 10 min retention, so expiry
    # deletes tiles that only the prefixes then hold); partition 2 runs an hour behind the others.
    first = [
        (rng.choice(users), BASE + i * 60_000 - (HOUR if i % 3 == 2 else 0), float(rng.randint(-5, 9)), i % 3)
        for i in range(360)
    ]
    _produce(kafka_bootstrap, topic, first)
    worker = start_worker(kafka_bootstrap, workspace, tmp_path)
    try:
        wait_caught_up(kafka_bootstrap, workspace, topic, worker, tmp_path)
        _wait_for_final_prefixes(kafka_bootstrap, spec, 3, tmp_path)
        worker.kill()
        worker.wait()
        shutil.rmtree(tmp_path / "worker")  # a lost disk: every shard comes back from the feature topic
        newest = {p: max(ts for _, ts, _, q in first if q == p) for p in range(3)}
        # Late (within the delay, into the eager prefixes) and new events for every shard.
        later = [(rng.choice(users), newest[p] - DELAY + 30_000 + k * 1000, 7.0, p) for p in range(3) for k in range(3)]
        later += [(rng.choice(users), newest[i % 3] + (i + 1) * 15_000, 1.0, i % 3) for i in range(60)]
        _produce(kafka_bootstrap, topic, later)
        worker = start_worker(kafka_bootstrap, workspace, tmp_path)
        wait_caught_up(kafka_bootstrap, workspace, topic, worker, tmp_path)
    finally:
        worker.kill()
        worker.wait()
    assert "restored" in (tmp_path / "worker.log").read_text()

    records = _feature_records(kafka_bootstrap, spec)
    marks = {high_watermark_shard(k) for k in records if high_watermark_shard(k) is not None}
    assert marks == {0, 1, 2}
    tiles = decode_tiles(((k, v) for k, v in records.items() if high_watermark_shard(k) is None), shards=True)
    assert {shard for start, _, shard in tiles if start == PREFIX_START_MS} == {0, 1, 2}
    view = compile_views(spec)[VIEW]
    history = [Event((user,), ts, amount) for user, ts, amount, _ in first + later]
    t_ms = max(ts for _, ts, _, _ in later) + 1  # the latest event time's edge
    for user in users:
        entity = view.entity_key([user])
        mine = [
            tile
            for tile, key in zip(tiles, (k for k in records if high_watermark_shard(k) is None), strict=True)
            if key.startswith(entity)
        ]
        for agg, value in zip(spec.view(VIEW).aggregations, compute_values(view, mine, t_ms), strict=True):
            want = value_of(history, (user,), t_ms, agg, spec.view(VIEW))
            assert close(value, want), (user, agg.name, value, want)
