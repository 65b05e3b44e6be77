"""The Flink job's metrics under the native worker's names, without Flink: which Flink metric ids
are the engine's counters, and totals that survive the job's restarts."""

from __future__ import annotations

from featurebus.streams.runtime.flink.metrics import MonotonicTotals, parse_metric_ids


def test_engine_counters_are_told_apart_from_flinks_own_metrics() -> None:
    parsed = parse_metric_ids(
        [
            "featurebus_engine_step.featurebus.feature_view.user_spending.processed",
            "featurebus_engine_step.featurebus.topic.tx.with.dots.consumed",
            "featurebus_engine_step.featurebus.dead_lettered",
            "featurebus_engine_step.numRecordsIn",
            "featurebus_sink[9]__Writer.KafkaProducer.record-send-total",
        ]
    )
    assert parsed == {
        "featurebus_engine_step.featurebus.feature_view.user_spending.processed": (
            "feature_view",
            "user_spending",
            "processed",
        ),
        "featurebus_engine_step.featurebus.topic.tx.with.dots.consumed": ("topic", "tx.with.dots", "consumed"),
        "featurebus_engine_step.featurebus.dead_lettered": "dead_lettered",
    }


def test_totals_carry_over_restarts_failovers_and_series_that_come_back() -> None:
    totals = MonotonicTotals()
    assert totals.update({"a": 5, "b": 2}) == {"a": 5, "b": 2}
    assert totals.update({"a": 7, "b": 2}) == {"a": 7, "b": 2}
    assert totals.update({"a": 3, "b": 4}) == {"a": 10, "b": 4}  # a went down: its tasks restarted
    totals.restart()  # a new job: its first values add up even when above the last ones
    assert totals.update({"a": 20}) == {"a": 30, "b": 4}  # b is not in the new job
    assert totals.update({"a": 21, "b": 1}) == {"a": 31, "b": 5}
