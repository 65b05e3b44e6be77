"""Definitions follow a running Flink job (``featurebus worker --engine flink``, Flink in process).

One history in four parts on a 2-partition topic; after each part an apply changes the running
job's definitions, and the job restarts from a savepoint with them:

- v2 changes ``user_spending``'s transformation (amounts doubled: every tile is invalid) and adds
  ``user_counts`` (a 2 h count): both are recomputed from the source log, as the native worker
  recomputes them, then go on with the new records;
- v3 removes ``user_spending``: its state is dropped from every shard;
- v4 adds it back: nothing of it is left, so it is recomputed from scratch over the whole log.

After each step the feature topics (read_committed, what serving reads) must equal the
brute-force oracle of the definitions then applied, over the whole history. The job's
``/metrics`` (``--metrics-port``) carries the native worker's series: records consumed and
events processed per view equal what was produced, across the restarts; the lag drops to 0.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from featurebus.platform.kafka.admin import TopicConfig, ensure_topics
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.schemas.specs import AggregationSpec, TransformationSpec, WorkspaceSpec
from tests.support.control import free_port
from tests.support.flink import flink_available, scrape, start_flink_worker, stop_flink_worker, wait_flink_caught_up
from tests.support.oracle import Event
from tests.support.specs import HOUR, spending_workspace
from tests.support.workers import assert_feature_topic_equals_oracle, history, produce_steadily

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(
        not flink_available(),
        reason="the Flink engine needs the flink extra (make bootstrap installs it in .venv-flink)",
    ),
]

DOUBLE = TransformationSpec(
    "pandas", "double", "def double(df):\n    df = df.copy()\n    df['amount'] = df['amount'] * 2\n    return df\n"
)


def _eventually(check: Callable[[], None], log: Path, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                print(log.read_text()[-5000:])
                raise
            time.sleep(1.0)


def _wait_logged(log: Path, text: str, count: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while log.read_text().count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} not logged {count} times:\n{log.read_text()[-5000:]}"
        time.sleep(0.2)


def test_an_apply_restarts_the_job_with_the_new_definitions(kafka_bootstrap: str, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    workspace, topic = f"flinkdefs_{suffix}", f"tx_{suffix}"
    ensure_topics(kafka_bootstrap, [TopicConfig(topic, partitions=2)])
    registry = KafkaRegistry(kafka_bootstrap)
    v1 = apply_workspace(registry, spending_workspace(topic=topic, name=workspace))
    spending = v1.stream_feature_views[0]
    doubled = dataclasses.replace(spending, transformation=DOUBLE)
    counts = dataclasses.replace(
        spending,
        name="user_counts",
        aggregations=(AggregationSpec("amount_count_2h_continuous", "count", "amount", "float64", 2 * HOUR, "int64"),),
    )

    def with_views(*views: object) -> WorkspaceSpec:
        # Feature services name views; the tests's services are left out so any view may go.
        return dataclasses.replace(v1, stream_feature_views=tuple(views), feature_services=())  # type: ignore[arg-type]

    events, users, t_ms = history(topic, 7, 2_400)
    parts = [events[:600], events[600:1_200], events[1_200:1_800], events[1_800:]]
    home = tmp_path / "flink"
    log = home / "flink-worker.log"
    metrics_port = free_port()
    job = start_flink_worker(kafka_bootstrap, workspace, home, metrics_port=metrics_port)

    def assert_metrics(consumed: int, processed: dict[str, int]) -> None:
        series = scrape(metrics_port)
        ws = ("workspace", workspace)
        assert series.get(("featurebus_worker_events_consumed_total", (("topic", topic), ws))) == consumed
        for view, n in processed.items():
            assert series.get(("featurebus_worker_events_processed_total", (("feature_view", view), ws))) == n
            assert series.get(("featurebus_worker_events_dropped_late_total", (("feature_view", view), ws))) == 0
        assert series.get(("featurebus_worker_events_dead_lettered_total", (ws,))) == 0
        for partition in ("0", "1"):
            labels = (("partition", partition), ("topic", topic), ws)
            assert series.get(("featurebus_worker_consumer_lag_records", labels)) == 0
            assert series.get(("featurebus_worker_consumer_lag_seconds", labels)) == 0

    try:
        produce_steadily(kafka_bootstrap, topic, parts[0]).join()
        wait_flink_caught_up(kafka_bootstrap, workspace, topic, job, log)
        _eventually(lambda: assert_feature_topic_equals_oracle(kafka_bootstrap, v1, parts[0], users, t_ms), log)
        _eventually(lambda: assert_metrics(600, {"user_spending": 600}), log, timeout_s=30)

        steps = [(with_views(doubled, counts), 1), (with_views(counts), 2), (with_views(doubled, counts), 3)]
        for spec, part in steps:
            applied = apply_workspace(registry, spec)
            _wait_logged(log, "restarting the Flink job with version", part)
            # New records touch every shard: each one is aligned with the definitions first.
            produce_steadily(kafka_bootstrap, topic, parts[part]).join()
            wait_flink_caught_up(kafka_bootstrap, workspace, topic, job, log)
            so_far = [e for p in parts[: part + 1] for e in p]
            twice = [Event(e.entity, e.ts_ms, None if e.value is None else e.value * 2) for e in so_far]
            for view in applied.stream_feature_views:
                oracle_events = twice if view.name == "user_spending" else so_far
                _eventually(
                    lambda spec=applied, view=view, oracle_events=oracle_events: assert_feature_topic_equals_oracle(
                        kafka_bootstrap, spec, oracle_events, users, t_ms, view.name
                    ),
                    log,
                )
        # Counted across the restarts: each view's events while it was defined (v1, v2, v4 for
        # user_spending; v2 to v4 for user_counts); recomputations replay without counting.
        _eventually(lambda: assert_metrics(2_400, {"user_spending": 1_800, "user_counts": 1_800}), log, timeout_s=30)
        text = log.read_text()
        assert "recomputed user_spending, user_counts from" in text or "recomputed user_counts, user_spending" in text
        assert "dropped the state of the removed views ('user_spending',)" in text
        # v4: user_spending recomputed from scratch (its v2 state was dropped by v3).
        assert text.count("recomputed user_spending from") == 2, text[-5000:]
    finally:
        stop_flink_worker(job)
