"""Definitions compile to specs with Tecton's naming, and invalid ones fail with the object's
name, its file:line and what to change."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from featurebus import Aggregate, Entity, FeatureService, Field, KafkaConfig, StreamSource, stream_feature_view
from featurebus.compile import compile_workspace, default_feature_name
from featurebus.exceptions import DefinitionError
from featurebus.repo import load_repo
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.types import Float64, Int64, String, Timestamp

ROOT = Path(__file__).resolve().parents[2]
THIS_FILE = re.escape(__file__)

user = Entity(name="user", join_keys=[Field("user_id", String)])
clicks = StreamSource(
    name="clicks",
    schema=[Field("user_id", String), Field("price", Float64), Field("ts", Timestamp), Field("page", String)],
    stream_config=KafkaConfig(topics="clicks", timestamp_field="ts"),
)


def _view(**overrides: object):  # type: ignore[no-untyped-def]
    params: dict[str, object] = dict(
        source=clicks,
        entities=[user],
        mode="pandas",
        features=[Aggregate(function="sum", time_window=timedelta(hours=1), input_column=Field("price", Float64))],
    )
    params.update(overrides)

    def user_clicks(clicks):  # type: ignore[no-untyped-def]
        return clicks

    return stream_feature_view(**params)(user_clicks)  # type: ignore[arg-type]


def test_example_repository_compiles_with_tecton_names() -> None:
    spec = load_repo(ROOT / "examples" / "fraud", "ws")
    view = spec.view("user_transaction_stats")
    assert [a.name for a in view.aggregations][:3] == [
        "amount_count_10m_continuous",
        "amount_count_1h_continuous",
        "amount_sum_1h_continuous",
    ]
    assert spec.view("merchant_online_volume").aggregation_interval_ms == 300_000
    assert spec.service("user_spending").selections[0].features == (
        "amount_sum_1h_continuous",
        "amount_mean_1d_continuous",
    )
    assert WorkspaceSpec.from_json(spec.to_json()) == spec


def test_transformation_code_has_no_decorator_and_runs_standalone() -> None:
    code = _view().transformation_code
    assert code.startswith("def user_clicks(clicks):")


@pytest.mark.parametrize(
    ("window", "interval", "name"),
    [
        (3_600_000, None, "amt_sum_1h_continuous"),
        (86_400_000, 600_000, "amt_sum_1d_10m"),
        (5_400_000, None, "amt_sum_1h30m_continuous"),
    ],
)
def test_default_feature_names(window: int, interval: int | None, name: str) -> None:
    assert default_feature_name("amt", "sum", window, interval) == name


def _error(make):  # type: ignore[no-untyped-def]
    with pytest.raises(DefinitionError) as info:
        make()
    return str(info.value)


@pytest.mark.parametrize(
    ("make", "must_say"),
    [
        (lambda: Entity(name="user", join_keys=[]), ["Entity 'user'", "join_keys"]),
        (lambda: Entity(name="u", join_keys=[Field("k", Float64)]), ["join key 'k'", "String, Int64 or Int32"]),
        (lambda: Entity(name="bad name", join_keys=[Field("k", String)]), ["bad name", "identifier"]),
        (
            lambda: StreamSource(
                name="s", schema=[Field("a", String)], stream_config=KafkaConfig(topics="t", timestamp_field="ts")
            ),
            ["StreamSource 's'", "timestamp_field 'ts'", "Add Field('ts', Timestamp)"],
        ),
        (lambda: KafkaConfig(topics="t", timestamp_field="ts", value_format="xml"), ["value_format", "json"]),
        (lambda: _view(mode="spark_sql"), ["StreamFeatureView 'user_clicks'", "mode 'spark_sql'"]),
        (lambda: _view(entities=[]), ["entities"]),
        (lambda: _view(features=[]), ["features"]),
        (
            lambda: compile_workspace("w", [_view(aggregation_interval=timedelta(minutes=7))]),
            ["the window (1h) is not a multiple of aggregation_interval (7m)", "Make every time_window"],
        ),
        (
            lambda: compile_workspace(
                "w",
                [
                    _view(
                        features=[
                            Aggregate(
                                function="sum", time_window=timedelta(hours=1), input_column=Field("page", String)
                            )
                        ]
                    )
                ],
            ),
            ["numeric input column", "'count'"],
        ),
        (
            lambda: compile_workspace(
                "w",
                [
                    _view(
                        features=[
                            Aggregate(
                                function="median", time_window=timedelta(hours=1), input_column=Field("price", Float64)
                            )
                        ]
                    )
                ],
            ),
            ["unknown aggregation function 'median'", "count, sum, mean"],
        ),
        (
            lambda: compile_workspace(
                "w",
                [
                    _view(
                        features=[
                            Aggregate(
                                function="sum", time_window=timedelta(hours=1), input_column=Field("price", Float64)
                            ),
                            Aggregate(
                                function="sum", time_window=timedelta(hours=1), input_column=Field("price", Float64)
                            ),
                        ]
                    )
                ],
            ),
            ["both named", "explicit name="],
        ),
        (
            lambda: compile_workspace("w", [FeatureService(name="s", features=[_view()[["nope"]]])]),
            ["FeatureService 's'", "no feature 'nope'", "Choose from: price_sum_1h_continuous"],
        ),
        (
            lambda: compile_workspace("w", [Entity(name="user", join_keys=[Field("user_id", Int64)]), user]),
            ["already used by the definition at"],
        ),
    ],
)
def test_invalid_definitions_name_the_object_the_line_and_the_fix(make, must_say: list[str]) -> None:  # type: ignore[no-untyped-def]
    message = _error(make)
    for text in must_say:
        assert text in message, message
    assert re.search(THIS_FILE + r":\d+", message), message


def test_repository_import_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import nonexistent_module_xyz\n")
    message = _error(lambda: load_repo(tmp_path, "w"))
    assert "broken.py" in message and "nonexistent_module_xyz" in message


# -- every aggregation function and Attribute ---------------------------------------------------

from featurebus import Attribute  # noqa: E402
from featurebus.aggregation_functions import (  # noqa: E402
    approx_count_distinct,
    approx_percentile,
    first,
    first_distinct,
    last,
    last_distinct,
)


def test_every_function_compiles_with_tectons_feature_names_and_types() -> None:
    hour = timedelta(hours=1)
    price, page = Field("price", Float64), Field("page", String)
    view = _view(
        features=[
            Aggregate(function="max", time_window=hour, input_column=price),
            Aggregate(function="min", time_window=hour, input_column=page),
            Aggregate(function="last", time_window=hour, input_column=page),
            Aggregate(function="stddev", time_window=hour, input_column=price),
            Aggregate(function="variance", time_window=hour, input_column=price),
            Aggregate(function="var_pop", time_window=hour, input_column=price),
            Aggregate(function=last(3), time_window=hour, input_column=page),
            Aggregate(function=first(2), time_window=hour, input_column=price),
            Aggregate(function=last_distinct(5), time_window=hour, input_column=page),
            Aggregate(function=first_distinct(4), time_window=timedelta(days=1), input_column=page),
            Aggregate(function=approx_count_distinct(), time_window=hour, input_column=page),
            Aggregate(
                function=approx_count_distinct(precision=12), time_window=hour, input_column=page, name="pages_hll12"
            ),
            Aggregate(function=approx_percentile(0.95), time_window=hour, input_column=price),
            Aggregate(function=approx_percentile(percentile=0.5, precision=200), time_window=hour, input_column=price),
        ]
    )
    spec = compile_workspace("w", [view]).view("user_clicks")
    got = [(a.name, a.function, a.output_dtype, a.n, a.percentile, a.precision) for a in spec.aggregations]
    assert got == [
        ("price_max_1h_continuous", "max", "float64", None, None, None),
        ("page_min_1h_continuous", "min", "string", None, None, None),
        ("page_last_1h_continuous", "last", "string", None, None, None),
        ("price_stddev_1h_continuous", "stddev_samp", "float64", None, None, None),
        ("price_variance_1h_continuous", "var_samp", "float64", None, None, None),
        ("price_var_pop_1h_continuous", "var_pop", "float64", None, None, None),
        ("page_last_3_1h_continuous", "last_n", "array<string>", 3, None, None),
        ("price_first_2_1h_continuous", "first_n", "array<float64>", 2, None, None),
        ("page_last_distinct_5_1h_continuous", "last_distinct_n", "array<string>", 5, None, None),
        ("page_first_distinct_4_1d_continuous", "first_distinct_n", "array<string>", 4, None, None),
        ("page_approx_count_distinct_1h_continuous", "approx_count_distinct", "int64", None, None, 8),
        ("pages_hll12", "approx_count_distinct", "int64", None, None, 12),
        ("price_approx_percentile_p0_95_1h_continuous", "approx_percentile", "float64", None, 0.95, 100),
        ("price_approx_percentile_p0_5_1h_continuous", "approx_percentile", "float64", None, 0.5, 200),
    ]
    assert WorkspaceSpec.from_json(compile_workspace("w", [view]).to_json()).view("user_clicks") == spec


def test_attributes_compile_to_a_null_keeping_last_over_the_ttl() -> None:
    view = _view(features=[Attribute("page", String), Attribute(Field("price", Float64))], ttl=timedelta(days=2))
    spec = compile_workspace("w", [view]).view("user_clicks")
    assert [
        (a.name, a.function, a.input_column, a.window_ms, a.output_dtype, a.attribute) for a in spec.aggregations
    ] == [
        ("page", "last", "page", 2 * 86_400_000, "string", True),
        ("price", "last", "price", 2 * 86_400_000, "float64", True),
    ]


# -- window kinds ------------------------------------------------------------------------------

from datetime import UTC, datetime  # noqa: E402

from featurebus import AggregationLeadingEdge, LifetimeWindow, TimeWindow, TimeWindowSeries  # noqa: E402

PRICE = Field("price", Float64)
START = datetime(2024, 1, 1, tzinfo=UTC)


def _windowed(*windows: object, **overrides: object):  # type: ignore[no-untyped-def]
    features = [Aggregate(function="sum", time_window=w, input_column=PRICE) for w in windows]
    return _view(features=features, **overrides)


def test_window_kinds_compile_with_tecton_names_and_fields() -> None:
    view = _windowed(
        TimeWindow(window_size=timedelta(hours=1), offset=-timedelta(days=1)),
        LifetimeWindow(),
        TimeWindowSeries(series_start=-timedelta(days=7), window_size=timedelta(days=1)),
        TimeWindowSeries(
            series_start=-timedelta(hours=3),
            series_end=-timedelta(hours=1),
            step_size=timedelta(minutes=30),
            window_size=timedelta(hours=1),
        ),
        aggregation_interval=timedelta(minutes=10),
        lifetime_start_time=START,
        aggregation_leading_edge=AggregationLeadingEdge.LATEST_EVENT_TIME,
    )
    spec = compile_workspace("w", [view])
    v = spec.view("user_clicks")
    assert [a.name for a in v.aggregations] == [
        "price_sum_1h_10m_offset_1d",  # Tecton: {window}_{interval}_offset_{-offset}
        "price_sum_lifetime_10m",
        "price_sum_1d_10m_series_7d_0s_1d",  # Tecton: _series_{-start}_{-end}_{step}
        "price_sum_1h_10m_series_3h_1h_30m",
    ]
    offset, lifetime, week, hours = v.aggregations
    assert (offset.window_kind, offset.window_ms, offset.offset_ms) == ("time", 3_600_000, -86_400_000)
    assert (lifetime.window_kind, lifetime.reach_ms) == ("lifetime", None)
    assert (week.window_kind, week.series_start_ms, week.series_end_ms, week.series_step_ms) == (
        "series",
        -7 * 86_400_000,
        0,
        86_400_000,
    )  # step_size defaults to window_size
    assert week.output_dtype == "array<float64>" and hours.series_step_ms == 1_800_000
    assert v.lifetime_start_ms == int(START.timestamp() * 1000)
    assert v.aggregation_leading_edge == "latest_event_time"
    assert v.max_reach_ms == 7 * 86_400_000
    assert WorkspaceSpec.from_json(spec.to_json()) == spec


def test_defaults_follow_tecton() -> None:
    v = compile_workspace("w", [_windowed(TimeWindow(timedelta(hours=1)))]).view("user_clicks")
    assert v.aggregation_leading_edge == "wall_clock_time" and v.lifetime_start_ms is None
    assert v.aggregations[0].name == "price_sum_1h_continuous"  # a zero offset adds nothing
    unspecified = _windowed(timedelta(hours=1), aggregation_leading_edge=AggregationLeadingEdge.UNSPECIFIED)
    assert compile_workspace("w", [unspecified]).view("user_clicks").aggregation_leading_edge == "wall_clock_time"
    naive = _windowed(LifetimeWindow(), lifetime_start_time=datetime(2024, 1, 1))  # naive: UTC
    assert compile_workspace("w", [naive]).view("user_clicks").lifetime_start_ms == int(START.timestamp() * 1000)


def test_format_1_workspace_documents_still_read() -> None:
    import orjson

    spec = compile_workspace("w", [_view()])
    raw = orjson.loads(spec.to_json())
    raw["format_version"] = 1
    for view in raw["stream_feature_views"]:
        del view["lifetime_start_ms"], view["aggregation_leading_edge"]
        for agg in view["aggregations"]:
            for key in (
                "n",
                "percentile",
                "precision",
                "attribute",
                "window_kind",
                "offset_ms",
                "series_start_ms",
                "series_end_ms",
                "series_step_ms",
            ):
                del agg[key]
    assert WorkspaceSpec.from_json(orjson.dumps(raw)) == spec


HOUR_WINDOW = timedelta(hours=1)


def _with(function, column=Field("price", Float64)):  # type: ignore[no-untyped-def]
    return lambda: compile_workspace(
        "w", [_view(features=[Aggregate(function=function, time_window=HOUR_WINDOW, input_column=column)])]
    )


_HOUR = timedelta(hours=1)


@pytest.mark.parametrize(
    ("make", "must_say"),
    [
        (_with(last(0)), ["StreamFeatureView 'user_clicks'", "price_last_0_1h_continuous", "1 <= n <= 1000"]),
        (_with(first_distinct("3")), ["StreamFeatureView 'user_clicks'", "integer n"]),
        (_with(approx_percentile(1.5)), ["0 < percentile < 1", "approx_percentile(percentile=0.95)"]),
        (_with(approx_percentile(0.5, precision=5)), ["precision must be an integer from 20 to 500"]),
        (_with(approx_count_distinct(precision=20), Field("page", String)), ["from 4 to 16", "precision=8"]),
        (_with("stddev", Field("page", String)), ["numeric input column"]),
        (_with(last(2), Field("ts", Timestamp)), ["numeric, string or bool", "epoch milliseconds"]),
        (
            lambda: _view(features=[Attribute("page", String)]),
            ["StreamFeatureView 'user_clicks'", "needs a ttl", "ttl=timedelta"],
        ),
        (
            lambda: _view(
                features=[Attribute("page", String)], ttl=timedelta(days=1), aggregation_interval=timedelta(minutes=5)
            ),
            ["Attribute features are continuous", "Remove aggregation_interval"],
        ),
        (
            lambda: _view(
                features=[
                    Attribute("page", String),
                    Aggregate(function="sum", time_window=HOUR_WINDOW, input_column=Field("price", Float64)),
                ]
            ),
            ["not both", "separate views"],
        ),
        (lambda: Attribute("page", "string"), ["Attribute 'page'", "featurebus.types"]),  # type: ignore[arg-type]
        (
            lambda: compile_workspace("w", [_view(features=[Attribute("ts", Timestamp)], ttl=timedelta(days=1))]),
            ["Attribute 'ts' in StreamFeatureView 'user_clicks'", "epoch milliseconds"],
        ),
    ],
)
def test_invalid_aggregation_parameters_name_the_view_the_line_and_the_fix(make, must_say: list[str]) -> None:  # type: ignore[no-untyped-def]
    message = _error(make)
    for text in must_say:
        assert text in message, message
    assert re.search(THIS_FILE + r":\d+", message), message


@pytest.mark.parametrize(
    ("make", "must_say"),
    [
        (
            lambda: compile_workspace(
                "w",
                [
                    _windowed(
                        TimeWindow(_HOUR, offset=-timedelta(minutes=15)), aggregation_interval=timedelta(minutes=10)
                    )
                ],
            ),
            [
                "StreamFeatureView 'user_clicks'",
                "feature 'price_sum'",
                "the offset (-15m) is not a multiple of aggregation_interval (10m)",
                "Make every time_window",
            ],
        ),
        (
            lambda: compile_workspace("w", [_windowed(TimeWindow(_HOUR, offset=timedelta(days=1)))]),
            ["offset must be zero or negative", "offset=-1d"],
        ),
        (
            lambda: compile_workspace("w", [_windowed(LifetimeWindow())]),
            ["uses a LifetimeWindow but the view has no lifetime_start_time", "Pass lifetime_start_time="],
        ),
        (
            lambda: compile_workspace(
                "w",
                [
                    _windowed(
                        LifetimeWindow(),
                        lifetime_start_time=START + timedelta(minutes=3),
                        aggregation_interval=timedelta(minutes=10),
                    )
                ],
            ),
            ["lifetime_start_time", "not a multiple of aggregation_interval (10m)"],
        ),
        (
            lambda: compile_workspace(
                "w",
                [
                    _windowed(
                        TimeWindowSeries(
                            series_start=-timedelta(hours=10), step_size=timedelta(hours=4), window_size=_HOUR
                        )
                    )
                ],
            ),
            ["step_size (4h) does not divide series_end - series_start - window_size (9h)", "Choose a step_size"],
        ),
        (
            lambda: compile_workspace("w", [_windowed(TimeWindowSeries(series_start=-_HOUR, window_size=_HOUR))]),
            ["a single window", "plain TimeWindow"],
        ),
        (
            lambda: compile_workspace("w", [_windowed(TimeWindowSeries(series_start=_HOUR, window_size=_HOUR))]),
            ["series_start must be negative", "series_start=-timedelta(days=7)"],
        ),
        (
            lambda: compile_workspace("w", [_windowed(TimeWindowSeries(series_start=-_HOUR, window_size=2 * _HOUR))]),
            ["longer than the series", "smaller window_size"],
        ),
        (
            lambda: compile_workspace(
                "w",
                [
                    _windowed(
                        TimeWindowSeries(series_start=-2 * _HOUR, window_size=_HOUR, series_end=-timedelta(minutes=5)),
                        aggregation_interval=timedelta(minutes=10),
                    )
                ],
            ),
            ["series_end (-5m) is not a multiple of aggregation_interval"],
        ),
        (lambda: compile_workspace("w", [_windowed(TimeWindow(timedelta(0)))]), ["window_size", "positive"]),
        (
            lambda: Aggregate(function="sum", time_window="1h", input_column=PRICE),  # type: ignore[arg-type]
            ["Aggregate 'price_sum'", "LifetimeWindow or TimeWindowSeries"],
        ),
        (
            lambda: _windowed(_HOUR, aggregation_leading_edge="latest"),
            ["aggregation_leading_edge must be an AggregationLeadingEdge"],
        ),
        (
            lambda: _windowed(LifetimeWindow(), lifetime_start_time="2024-01-01"),
            ["lifetime_start_time must be a datetime"],
        ),
    ],
)
def test_invalid_windows_name_the_view_the_line_and_the_fix(make, must_say: list[str]) -> None:  # type: ignore[no-untyped-def]
    message = _error(make)
    for text in must_say:
        assert text in message, message
    assert re.search(THIS_FILE + r":\d+", message), message
