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
        source=clicks, entities=[user], mode="pandas",
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
        "amount_count_10m_continuous", "amount_count_1h_continuous", "amount_sum_1h_continuous"]
    assert spec.view("merchant_online_volume").aggregation_interval_ms == 300_000
    assert spec.service("user_spending").selections[0].features == ("amount_sum_1h_continuous", "amount_mean_1d_continuous")
    assert WorkspaceSpec.from_json(spec.to_json()) == spec


def test_transformation_code_has_no_decorator_and_runs_standalone() -> None:
    code = _view().transformation_code
    assert code.startswith("def user_clicks(clicks):")


@pytest.mark.parametrize(
    ("window", "interval", "name"),
    [(3_600_000, None, "amt_sum_1h_continuous"), (86_400_000, 600_000, "amt_sum_1d_10m"), (5_400_000, None, "amt_sum_1h30m_continuous")],
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
        (lambda: StreamSource(name="s", schema=[Field("a", String)], stream_config=KafkaConfig(topics="t", timestamp_field="ts")),
         ["StreamSource 's'", "timestamp_field 'ts'", "Add Field('ts', Timestamp)"]),
        (lambda: KafkaConfig(topics="t", timestamp_field="ts", value_format="xml"), ["value_format", "json"]),
        (lambda: _view(mode="spark_sql"), ["StreamFeatureView 'user_clicks'", "mode 'spark_sql'"]),
        (lambda: _view(entities=[]), ["entities"]),
        (lambda: _view(features=[]), ["features"]),
        (lambda: compile_workspace("w", [_view(aggregation_interval=timedelta(minutes=7))]),
         ["not a multiple of aggregation_interval", "Make every time_window a multiple"]),
        (lambda: compile_workspace("w", [_view(features=[Aggregate(function="sum", time_window=timedelta(hours=1), input_column=Field("page", String))])]),
         ["numeric input column", "'count'"]),
        (lambda: compile_workspace("w", [_view(features=[Aggregate(function="median", time_window=timedelta(hours=1), input_column=Field("price", Float64))])]),
         ["unknown aggregation function 'median'", "count, sum, mean"]),
        (lambda: compile_workspace("w", [_view(features=[
            Aggregate(function="sum", time_window=timedelta(hours=1), input_column=Field("price", Float64)),
            Aggregate(function="sum", time_window=timedelta(hours=1), input_column=Field("price", Float64))])]),
         ["both named", "explicit name="]),
        (lambda: compile_workspace("w", [FeatureService(name="s", features=[_view()[["nope"]]])]),
         ["FeatureService 's'", "no feature 'nope'", "Choose from: price_sum_1h_continuous"]),
        (lambda: compile_workspace("w", [Entity(name="user", join_keys=[Field("user_id", Int64)]), user]),
         ["already used by the definition at"]),
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
    view = _view(features=[
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
        Aggregate(function=approx_count_distinct(precision=12), time_window=hour, input_column=page, name="pages_hll12"),
        Aggregate(function=approx_percentile(0.95), time_window=hour, input_column=price),
        Aggregate(function=approx_percentile(percentile=0.5, precision=200), time_window=hour, input_column=price),
    ])
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
    assert [(a.name, a.function, a.input_column, a.window_ms, a.output_dtype, a.attribute) for a in spec.aggregations] == [
        ("page", "last", "page", 2 * 86_400_000, "string", True),
        ("price", "last", "price", 2 * 86_400_000, "float64", True),
    ]


def test_version_one_specs_still_read() -> None:
    import orjson

    spec = compile_workspace("w", [_view()])
    raw = orjson.loads(spec.to_json())
    raw["format_version"] = 1
    for view in raw["stream_feature_views"]:
        for agg in view["aggregations"]:
            for key in ("n", "percentile", "precision", "attribute"):
                del agg[key]
    assert WorkspaceSpec.from_json(orjson.dumps(raw)) == spec


HOUR_WINDOW = timedelta(hours=1)


def _with(function, column=Field("price", Float64)):  # type: ignore[no-untyped-def]
    return lambda: compile_workspace("w", [_view(features=[Aggregate(function=function, time_window=HOUR_WINDOW, input_column=column)])])


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
        (lambda: _view(features=[Attribute("page", String)]), ["StreamFeatureView 'user_clicks'", "needs a ttl", "ttl=timedelta"]),
        (lambda: _view(features=[Attribute("page", String)], ttl=timedelta(days=1), aggregation_interval=timedelta(minutes=5)),
         ["Attribute features are continuous", "Remove aggregation_interval"]),
        (lambda: _view(features=[Attribute("page", String),
                                 Aggregate(function="sum", time_window=HOUR_WINDOW, input_column=Field("price", Float64))]),
         ["not both", "separate views"]),
        (lambda: Attribute("page", "string"), ["Attribute 'page'", "featurebus.types"]),  # type: ignore[arg-type]
        (lambda: compile_workspace("w", [_view(features=[Attribute("ts", Timestamp)], ttl=timedelta(days=1))]),
         ["Attribute 'ts' in StreamFeatureView 'user_clicks'", "epoch milliseconds"]),
    ],
)
def test_invalid_aggregation_parameters_name_the_view_the_line_and_the_fix(make, must_say: list[str]) -> None:  # type: ignore[no-untyped-def]
    message = _error(make)
    for text in must_say:
        assert text in message, message
    assert re.search(THIS_FILE + r":\d+", message), message
