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
         ["the window (1h) is not a multiple of aggregation_interval (7m)", "Make every time_window"]),
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
