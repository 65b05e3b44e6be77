"""Monitoring parameters at plan time (data quality, LoggingConfig), and the feature logger's
promise never to block serving."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from featurebus import (
    Aggregate,
    Entity,
    Expectation,
    FeatureService,
    Field,
    KafkaConfig,
    LoggingConfig,
    StreamSource,
    stream_feature_view,
)
from featurebus.compile import compile_workspace
from featurebus.exceptions import DefinitionError
from featurebus.schemas.specs import ExpectationSpec, LoggingSpec
from featurebus.serving.feature_logging import FeatureLogger
from featurebus.types import Float64, String, Timestamp

THIS_FILE = re.escape(Path(__file__).name)

user = Entity(name="user", join_keys=[Field("user_id", String)])
clicks = StreamSource(
    name="clicks",
    schema=[Field("user_id", String), Field("price", Float64), Field("ts", Timestamp)],
    stream_config=KafkaConfig(topics="clicks", timestamp_field="ts"),
)


def _view(**overrides: object):  # type: ignore[no-untyped-def]
    params: dict[str, object] = dict(
        source=clicks,
        entities=[user],
        mode="pandas",
        features=[Aggregate(function="sum", time_window=timedelta(hours=1), input_column=Field("price", Float64))],
        offline=True,
    )
    params.update(overrides)

    def user_clicks(clicks):  # type: ignore[no-untyped-def]
        return clicks

    return stream_feature_view(**params)(user_clicks)  # type: ignore[arg-type]


def test_data_quality_compiles_with_tectons_default_on_for_offline_views() -> None:
    view = _view(
        data_quality_expectations=[Expectation(feature="price_sum_1h_continuous", statistic="null_rate", max=0.1)]
    )
    online_only = _view(name="online_only", offline=False)
    spec = compile_workspace("ws", [user, clicks, view, online_only])
    compiled = spec.view("user_clicks")
    assert compiled.data_quality_enabled is True and compiled.skip_default_expectations is False
    assert compiled.data_quality_expectations == (ExpectationSpec("price_sum_1h_continuous", "null_rate", None, 0.1),)
    assert spec.view("online_only").data_quality_enabled is False


def test_logging_config_compiles_onto_the_service() -> None:
    view = _view()
    service = FeatureService("svc", features=[view], logging=LoggingConfig(sample_rate=0.25, log_effective_times=True))
    spec = compile_workspace("ws", [user, clicks, view, service])
    assert spec.service("svc").logging == LoggingSpec(0.25, True)


@pytest.mark.parametrize(
    ("make", "must_say"),
    [
        (lambda: LoggingConfig(sample_rate=0), ["LoggingConfig", THIS_FILE, "sample_rate", "(0, 1]"]),
        (lambda: LoggingConfig(sample_rate="all"), ["sample_rate"]),  # type: ignore[arg-type]
        (lambda: Expectation(feature="f", statistic="p99", max=1), ["statistic must be one of", THIS_FILE]),
        (lambda: Expectation(feature="f", statistic="mean"), ["give min=, max= or both"]),
        (lambda: Expectation(feature="f", statistic="mean", min=2, max=1), ["above max"]),
        (lambda: Expectation(feature="f", statistic="null_rate", max=1.5), ["within [0, 1]"]),
        (lambda: _view(data_quality_expectations="null_rate"), ["data_quality_expectations must be a list"]),
        (lambda: FeatureService("svc", features=[_view()], logging={"sample_rate": 1}), ["LoggingConfig"]),
        (
            lambda: compile_workspace(
                "ws", [user, clicks, _view(data_quality_expectations=[Expectation("nope", "mean", max=1)])]
            ),
            ["user_clicks", "names feature 'nope'", "price_sum_1h_continuous", THIS_FILE],
        ),
        (
            lambda: compile_workspace("ws", [user, clicks, _view(offline=False, data_quality_enabled=True)]),
            ["data_quality_enabled=True needs offline=True"],
        ),
    ],
)
def test_bad_monitoring_parameters_fail_naming_the_object_and_line(make, must_say: list[str]) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DefinitionError) as caught:
        make()
    for text in must_say:
        assert re.search(text if text == THIS_FILE else re.escape(text), str(caught.value)), str(caught.value)


def test_the_feature_logger_drops_and_counts_rather_than_block_when_kafka_is_away() -> None:
    # Nothing listens on port 9: the background thread cannot deliver, the queue fills up.
    logger = FeatureLogger("127.0.0.1:9", queue_size=10, seed=1)
    try:
        started = time.perf_counter()
        for i in range(1_000):
            logger.log("ws_drop", "svc", i, {"user_id": "u"}, None, ["v.f"], [1.0], None)
        elapsed = time.perf_counter() - started
    finally:
        logger.close(timeout_s=0.1)
    assert elapsed < 1.0  # about a microsecond each: never waits on the bus

    def count(outcome: str) -> float:
        value = REGISTRY.get_sample_value(
            "featurebus_feature_logging_records_total",
            {"workspace": "ws_drop", "feature_service": "svc", "outcome": outcome},
        )
        return value or 0.0

    assert count("dropped") >= 900  # the queue holds 10; the stuck thread took at most a few out
    assert count("produced") == 0


def test_sampling_follows_the_rate() -> None:
    logger = FeatureLogger("127.0.0.1:9", seed=3)
    assert all(logger.sampled(1.0) for _ in range(100))
    share = sum(logger.sampled(0.01) for _ in range(100_000)) / 100_000
    assert 0.008 < share < 0.012
