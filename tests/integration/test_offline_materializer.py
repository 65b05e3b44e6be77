"""The offline materializer against a real broker: every good record lands in Parquet exactly once."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import duckdb
import orjson
import pandas as pd
import pytest
from confluent_kafka import Consumer, TopicPartition

from featurebus.exceptions import KafkaUnavailableError
from featurebus.platform.kafka.clients import reliable_producer
from featurebus.platform.kafka.security import client_settings
from featurebus.platform.kafka.topics import offline_group
from featurebus.platform.offline.materializer import OfflineMaterializer
from featurebus.platform.offline.store import source_glob
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.platform.training.training_sets import get_features_for_events, training_set_from_files
from tests.support.specs import spending_workspace

pytestmark = pytest.mark.kafka

# 23:59:00 UTC: the events cross midnight, so flushes write into two date folders.
T0 = int(pd.Timestamp("2024-03-10T23:59:00Z").value // 1_000_000)
MALFORMED = [b"not json", b'{"user_id": "u1", "amount": "lots", "ts": 1}', b'{"user_id": "u1", "amount": 1.0}']


def _good(first: int, count: int) -> list[dict[str, object]]:
    return [{"user_id": f"u{i % 7}", "amount": float(i), "ts": T0 + i * 1000} for i in range(first, first + count)]


def _produce(bootstrap: str, topic: str, records: list[dict[str, object]], malformed: list[bytes]) -> None:
    with reliable_producer(bootstrap) as producer:
        for record in records:
            producer.produce(topic, orjson.dumps(record), key=str(record["user_id"]).encode())
        for i, payload in enumerate(malformed):
            producer.produce(topic, payload, partition=i % 2)


def _stored(root: Path, workspace: str) -> pd.DataFrame:
    with duckdb.connect() as con:
        frame: pd.DataFrame = con.sql(
            f"SELECT * FROM read_parquet('{source_glob(root, workspace, 'transactions')}')"
        ).df()
    return frame


def test_each_good_record_is_written_exactly_once(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory(partitions=2)
    workspace = f"offline{uuid.uuid4().hex[:8]}"
    apply_workspace(KafkaRegistry(kafka_bootstrap), spending_workspace(topic=topic, name=workspace))
    root = tmp_path / "offline"
    _produce(kafka_bootstrap, topic, _good(0, 300), MALFORMED)

    with OfflineMaterializer(kafka_bootstrap, root, workspace, flush_records=64) as materializer:
        assert materializer.run_until_caught_up(timeout_s=60) == 300
        assert materializer.rejected_count == len(MALFORMED)
    stored = _stored(root, workspace)
    assert sorted(stored["amount"]) == [float(i) for i in range(300)]
    assert not stored.duplicated(["_topic", "_partition", "_offset"]).any()
    assert set(stored["_partition"]) == {0, 1}
    assert stored["ts"].dt.date.nunique() == 2

    # A restarted materializer continues where the files and commits end: no record twice.
    _produce(kafka_bootstrap, topic, _good(300, 100), MALFORMED[:1])
    with OfflineMaterializer(kafka_bootstrap, root, workspace) as materializer:
        assert materializer.run_until_caught_up(timeout_s=60) == 100
        assert materializer.rejected_count == 1
    assert sorted(_stored(root, workspace)["amount"]) == [float(i) for i in range(400)]

    # A crash between writing files and committing leaves the group's offsets behind the files;
    # rewinding the group to 0 simulates exactly that. The files decide: nothing is re-written.
    rewind = Consumer(
        {"bootstrap.servers": kafka_bootstrap, **client_settings(kafka_bootstrap), "group.id": offline_group(workspace)}
    )
    rewind.commit(offsets=[TopicPartition(topic, p, 0) for p in (0, 1)], asynchronous=False)
    rewind.close()
    _produce(kafka_bootstrap, topic, _good(400, 10), [])
    with OfflineMaterializer(kafka_bootstrap, root, workspace) as materializer:
        assert materializer.run_until_caught_up(timeout_s=60) == 10
    stored = _stored(root, workspace)
    assert sorted(stored["amount"]) == [float(i) for i in range(410)]
    assert not stored.duplicated(["_topic", "_partition", "_offset"]).any()

    # And the store feeds training sets directly.
    spec = spending_workspace(topic=topic, name=workspace)
    spine = pd.DataFrame({"user_id": ["u0"], "at": [pd.Timestamp(T0 + 410 * 1000, unit="ms", tz="UTC")]})
    result = get_features_for_events(spec, "spending", spine, root)
    expected = [float(i) for i in range(410) if i % 7 == 0 and T0 + i * 1000 >= T0 + 410 * 1000 - 60_000]
    assert result["user_spending__amount_count_1m_continuous"].tolist() == [len(expected)]
    assert result["user_spending__amount_sum_1h_continuous"].tolist() == [sum(i for i in range(0, 410, 7))]
    # The CLI's path: the spec comes from the registry, spine and output are files.
    spine.to_parquet(tmp_path / "spine.parquet")
    training_set_from_files(
        KafkaRegistry(kafka_bootstrap).list(),
        root,
        workspace,
        "spending",
        tmp_path / "spine.parquet",
        tmp_path / "out" / "train.parquet",
    )
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out" / "train.parquet"), result)


def test_not_catching_up_in_time_raises_instead_of_hanging(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory(partitions=2)
    workspace = f"offline{uuid.uuid4().hex[:8]}"
    apply_workspace(KafkaRegistry(kafka_bootstrap), spending_workspace(topic=topic, name=workspace))
    _produce(kafka_bootstrap, topic, _good(0, 10), [])
    with (
        OfflineMaterializer(kafka_bootstrap, tmp_path, workspace) as materializer,
        pytest.raises(KafkaUnavailableError, match=rf"did not catch up within 0 s; behind: {topic}\["),
    ):
        materializer.run_until_caught_up(timeout_s=0)


def test_run_forever_flushes_on_its_interval_and_stops(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory(partitions=2)
    workspace = f"offline{uuid.uuid4().hex[:8]}"
    apply_workspace(KafkaRegistry(kafka_bootstrap), spending_workspace(topic=topic, name=workspace))
    materializer = OfflineMaterializer(kafka_bootstrap, tmp_path, workspace, flush_interval_s=0.2)
    stop = threading.Event()
    thread = threading.Thread(target=materializer.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        _produce(kafka_bootstrap, topic, _good(0, 20), MALFORMED[:1])
        deadline = time.monotonic() + 30
        while not list(tmp_path.glob("sources/*/*/date=*/*.parquet")) or len(_stored(tmp_path, workspace)) < 20:
            assert time.monotonic() < deadline, "run_forever wrote nothing within 30 s"
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(15)
    assert not thread.is_alive()
    assert len(_stored(tmp_path, workspace)) == 20
    # Stopping flushed and committed: the group is at the end of both partitions.
    check = Consumer(
        {"bootstrap.servers": kafka_bootstrap, **client_settings(kafka_bootstrap), "group.id": offline_group(workspace)}
    )
    try:
        committed = check.committed([TopicPartition(topic, p) for p in (0, 1)], timeout=10)
        ends = [check.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in (0, 1)]
    finally:
        check.close()
    assert [tp.offset for tp in committed] == ends
