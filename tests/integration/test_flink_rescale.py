"""Rescaling the Flink job: stop with a savepoint at parallelism 1, continue at 2, and back at 1.

One history in three parts on a 4-partition topic. The job (``featurebus flink run``, a local
mini-cluster) works off part 1 at parallelism 1 and is stopped (SIGTERM: stop-with-savepoint,
recorded under the home); part 2 is produced and the job restarts at parallelism 2 from that
savepoint (Flink redistributes the shards' keyed state and the source's partitions over two
subtasks); then once more at parallelism 1 for part 3. The feature topic at the end must hold
exactly what the native worker writes for the whole history — nothing lost, nothing counted
twice across the restarts — and the merged windows must equal the brute-force oracle.
"""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path

import orjson
import pytest

from featurebus.platform.kafka.admin import TopicConfig, ensure_topics, read_compacted
from featurebus.platform.kafka.clients import reliable_producer
from featurebus.platform.kafka.topics import feature_topic
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.streams.runtime.flink.job import LAST_SAVEPOINT_FILE
from tests.support.flink import flink_available, start_flink_worker, stop_flink_worker, wait_flink_caught_up
from tests.support.oracle import Event
from tests.support.specs import HOUR, spending_workspace
from tests.support.workers import assert_feature_topic_equals_oracle, start_worker, wait_caught_up

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(
        not flink_available(),
        reason="the Flink engine needs the flink extra (make bootstrap installs it in .venv-flink)",
    ),
]


def _produce(bootstrap: str, topic: str, events: list[Event]) -> None:
    with reliable_producer(bootstrap) as producer:
        for e in events:
            producer.produce(
                topic,
                key=e.entity[0].encode(),
                value=orjson.dumps({"user_id": e.entity[0], "amount": e.value, "ts": e.ts_ms}),
            )


def test_the_job_rescales_from_a_savepoint_without_losing_or_repeating_events(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    topic = f"rescale_{suffix}"
    ensure_topics(kafka_bootstrap, [TopicConfig(topic, partitions=4)])
    flink = apply_workspace(KafkaRegistry(kafka_bootstrap), spending_workspace(topic=topic, name=f"fl_{suffix}"))
    native = apply_workspace(KafkaRegistry(kafka_bootstrap), spending_workspace(topic=topic, name=f"nat_{suffix}"))
    rng = random.Random(5)
    base = (int(time.time() * 1000) // HOUR) * HOUR - HOUR
    users = [f"u{i}" for i in range(16)]
    # Amounts are multiples of 1/4: sums are exact whatever the batching, so bytes compare.
    events = [Event((rng.choice(users),), base + i * 1_200, rng.randrange(0, 4000) / 4) for i in range(1_500)]
    parts = [events[:500], events[500:1_000], events[1_000:]]
    home = tmp_path / "flink"
    log = home / "flink-worker.log"
    savepoints: list[str] = []
    # The native worker's reference runs meanwhile (it follows the same parts as they come).
    native_worker = start_worker(kafka_bootstrap, native.name, tmp_path / "native")
    try:
        for part, parallelism in zip(parts, (1, 2, 1), strict=True):
            _produce(kafka_bootstrap, topic, part)
            job = start_flink_worker(kafka_bootstrap, flink.name, home, parallelism=parallelism)
            try:
                wait_flink_caught_up(kafka_bootstrap, flink.name, topic, job, log)
            finally:
                stop_flink_worker(job)
            recorded = (home / "flink" / flink.name / LAST_SAVEPOINT_FILE).read_text()
            assert recorded not in savepoints, f"no new savepoint after the run at parallelism {parallelism}"
            savepoints.append(recorded)
        assert log.read_text().count("resuming from the savepoint") == 2
        wait_caught_up(kafka_bootstrap, native.name, topic, native_worker, tmp_path / "native")
        expected = read_compacted(kafka_bootstrap, feature_topic(native.name, "user_spending"))
    finally:
        native_worker.kill()
        native_worker.wait()
    assert expected and read_compacted(kafka_bootstrap, feature_topic(flink.name, "user_spending")) == expected
    assert_feature_topic_equals_oracle(kafka_bootstrap, flink, events, users, base + 1_500 * 1_200 + 5_000)
