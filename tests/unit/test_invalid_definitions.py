"""Every invalid definition fails with the object's kind and name, the file:line where it was
written, and what to change (issue 3, item 2). One table: each row builds something invalid
(constructing it, or compiling it as ``plan`` does) and says which fix the message must give."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import featurebus
from featurebus import (
    Aggregate,
    Attribute,
    BatchSource,
    Entity,
    FeatureService,
    FeatureTable,
    Field,
    FileConfig,
    KafkaConfig,
    StreamProcessingMode,
    StreamSource,
    batch_feature_view,
    stream_feature_view,
)
from featurebus.compile import compile_workspace
from featurebus.exceptions import DefinitionError
from featurebus.types import Float64, Int64, String, Timestamp

THIS_FILE = re.escape(__file__)

user = Entity(name="user", join_keys=[Field("user_id", String)])
clicks = StreamSource(
    name="clicks",
    schema=[Field("user_id", String), Field("price", Float64), Field("ts", Timestamp), Field("page", String)],
    stream_config=KafkaConfig(topics="clicks", timestamp_field="ts"),
)
history = BatchSource(name="history", batch_config=FileConfig(uri="/data/clicks", timestamp_field="ts"))
AVRO = {
    "type": "record",
    "name": "Click",
    "fields": [{"name": "user_id", "type": "string"}, {"name": "ts", "type": "long"}],
}


def _sum(column: str = "price", dtype: Any = Float64, window: timedelta = timedelta(hours=1), **kw: Any) -> Aggregate:
    return Aggregate(function=kw.pop("function", "sum"), time_window=window, input_column=Field(column, dtype), **kw)


def _view(transform: Callable[[Any], Any] | None = None, **overrides: Any) -> Any:
    params: dict[str, Any] = dict(source=clicks, entities=[user], mode="pandas", features=[_sum()])
    params.update(overrides)

    def user_clicks(clicks):  # type: ignore[no-untyped-def]
        return clicks

    return stream_feature_view(**params)(transform or user_clicks)


def _plan(*objects: Any) -> Callable[[], Any]:
    return lambda: compile_workspace("w", objects)


def _drop_user(clicks):  # type: ignore[no-untyped-def]
    return clicks.drop(columns=["user_id"])


clicks_with_history = StreamSource(
    name="clicks_h",
    schema=[Field("user_id", String), Field("price", Float64), Field("ts", Timestamp)],
    stream_config=KafkaConfig(topics="clicks_h", timestamp_field="ts"),
    batch_config=FileConfig(uri="/data/clicks_h", timestamp_field="ts"),
)
no_time = BatchSource(name="no_time", batch_config=FileConfig(uri="/data/no_time"))


def _daily(function: Callable[..., Any] | None = None, **overrides: Any) -> Any:
    def daily(history):  # type: ignore[no-untyped-def]
        return history

    params: dict[str, Any] = dict(
        sources=[history],
        entities=[user],
        mode="pandas",
        features=[_sum()],
        batch_schedule=timedelta(days=1),
        aggregation_interval=timedelta(hours=1),
    )
    params.update(overrides)
    return batch_feature_view(**params)(function or daily)


def _two_args(history, other):  # type: ignore[no-untyped-def]
    return history


def _secret_source() -> Any:
    def from_api(filter_context, secrets):  # type: ignore[no-untyped-def]
        return None

    return featurebus.pandas_batch_config(supports_time_filtering=True)(from_api)


# (id, builds the invalid thing, the object as the message names it, the fix the message gives)
CASES: list[tuple[str, Callable[[], Any], str, str]] = [
    ("entity without join keys", lambda: Entity(name="user", join_keys=[]), "Entity 'user'", "Pass join_keys=[Field("),
    (
        "entity with a float join key",
        lambda: Entity(name="u", join_keys=[Field("k", Float64)]),
        "Entity 'u'",
        "Join keys must be String, Int64 or Int32",
    ),
    (
        "entity name not an identifier",
        lambda: Entity(name="bad name", join_keys=[Field("k", String)]),
        "Entity 'bad name'",
        "Use letters, digits and underscores",
    ),
    (
        "entity repeating a join key",
        lambda: Entity(name="u", join_keys=[Field("k", String), Field("k", String)]),
        "Entity 'u'",
        "List each join key once",
    ),
    (
        "misspelled parameter",
        lambda: Entity(name="u", join_keys=[Field("k", String)], descripton="x"),
        "Entity 'u'",
        "Check the spelling",
    ),
    (
        "tags that are not strings",
        lambda: Entity(name="u", join_keys=[Field("k", String)], tags={"team": 1}),
        "Entity 'u'",
        "Pass tags={'team': 'fraud'}",
    ),
    (
        "field typed with a Python type",
        lambda: Field("amount", float),
        "Field 'amount'",
        "Use the type objects (Int64)",
    ),
    (
        "timestamp field missing from the schema",
        lambda: StreamSource(
            name="s", schema=[Field("a", String)], stream_config=KafkaConfig(topics="t", timestamp_field="ts")
        ),
        "StreamSource 's'",
        "Add Field('ts', Timestamp) to schema",
    ),
    (
        "timestamp field that is not a Timestamp",
        lambda: StreamSource(
            name="s", schema=[Field("ts", String)], stream_config=KafkaConfig(topics="t", timestamp_field="ts")
        ),
        "StreamSource 's'",
        "Declare Field('ts', Timestamp)",
    ),
    (
        "schema naming a column twice",
        lambda: StreamSource(
            name="s",
            schema=[Field("ts", Timestamp), Field("ts", Timestamp)],
            stream_config=KafkaConfig(topics="t", timestamp_field="ts"),
        ),
        "StreamSource 's'",
        "Keep one Field per column",
    ),
    (
        "batch_config that is not a FileConfig",
        lambda: StreamSource(
            name="s",
            schema=[Field("ts", Timestamp)],
            stream_config=KafkaConfig(topics="t", timestamp_field="ts"),
            batch_config="s3://bucket/clicks",
        ),  # type: ignore[arg-type]
        "StreamSource 's'",
        "Pass batch_config=FileConfig(",
    ),
    (
        "unknown value format",
        lambda: KafkaConfig(topics="t", timestamp_field="ts", value_format="xml"),
        "KafkaConfig 't'",
        "Use value_format='json', 'avro' or 'confluent_avro'",
    ),
    (
        "Avro without a schema",
        lambda: KafkaConfig(topics="t", timestamp_field="ts", value_format="avro"),
        "KafkaConfig 't'",
        "Pass avro_schema=",
    ),
    (
        "schema column absent from the Avro schema",
        lambda: StreamSource(
            name="s",
            schema=[Field("ts", Timestamp), Field("price", Float64)],
            stream_config=KafkaConfig(topics="t", timestamp_field="ts", value_format="avro", avro_schema=AVRO),
        ),
        "StreamSource 's'",
        "Remove it from schema=",
    ),
    (
        "Kafka TLS option",
        lambda: KafkaConfig(topics="t", timestamp_field="ts", security_protocol="SSL"),
        "KafkaConfig 't'",
        "Remove security_protocol=",
    ),
    (
        "unknown file format",
        lambda: FileConfig(uri="/data/x", file_format="orc"),
        "FileConfig '/data/x'",
        "Use file_format='parquet'",
    ),
    (
        "Spark SQL transformation",
        lambda: _view(mode="spark_sql"),
        "StreamFeatureView 'user_clicks'",
        "Use mode='pandas' or mode='python'",
    ),
    ("view without entities", lambda: _view(entities=[]), "StreamFeatureView 'user_clicks'", "Pass entities=[user]"),
    (
        "view without features",
        lambda: _view(features=[]),
        "StreamFeatureView 'user_clicks'",
        "Pass features=[Aggregate(",
    ),
    (
        "stream view over a batch source",
        lambda: _view(source=history),
        "StreamFeatureView 'user_clicks'",
        "Pass a StreamSource",
    ),
    (
        "Spark cluster config",
        lambda: _view(name="spendy", batch_compute={"instance_type": "m5.large"}),
        "StreamFeatureView 'spendy'",
        "Remove batch_compute=",
    ),
    (
        "continuous mode with an interval",
        lambda: _view(
            stream_processing_mode=StreamProcessingMode.CONTINUOUS, aggregation_interval=timedelta(minutes=5)
        ),
        "StreamFeatureView 'user_clicks'",
        "Remove aggregation_interval",
    ),
    (
        "interval that is not a timedelta",
        _plan(_view(aggregation_interval=600)),
        "StreamFeatureView 'user_clicks'",
        "Pass e.g. aggregation_interval=timedelta(hours=1)",
    ),
    (
        "window not a multiple of the interval",
        _plan(_view(aggregation_interval=timedelta(minutes=7))),
        "StreamFeatureView 'user_clicks'",
        "Make every time_window (window size, offset, series bounds) a multiple of the aggregation_interval",
    ),
    (
        "sum over a string column",
        _plan(_view(features=[_sum("page", String)])),
        "StreamFeatureView 'user_clicks'",
        "use 'count' or change the column's type",
    ),
    (
        "unknown aggregation function",
        _plan(_view(features=[_sum(function="median")])),
        "StreamFeatureView 'user_clicks'",
        "use one of: count, sum, mean",
    ),
    (
        "two features with one name",
        _plan(_view(features=[_sum(), _sum()])),
        "StreamFeatureView 'user_clicks'",
        "Give one of them an explicit name=",
    ),
    (
        "unknown column",
        _plan(_view(features=[_sum("amount")])),
        "StreamFeatureView 'user_clicks'",
        "Use a column the transformation returns (page, price, ts, user_id)",
    ),
    (
        "transformation dropping the join key",
        _plan(_view(_drop_user)),
        "StreamFeatureView '_drop_user'",
        "Keep the entity's join key columns",
    ),
    (
        "dangling entity (its key is in no column)",
        _plan(_view(entities=[Entity(name="merchant", join_keys=[Field("merchant_id", String)])])),
        "StreamFeatureView 'user_clicks'",
        "Keep the entity's join key columns",
    ),
    (
        "entity and source disagree on a key's type",
        _plan(_view(entities=[Entity(name="user", join_keys=[Field("user_id", Int64)])])),
        "StreamFeatureView 'user_clicks'",
        "Give the join key the same type in the Entity and in the source's schema",
    ),
    (
        "feature service selecting an unknown feature",
        _plan(FeatureService(name="s", features=[_view()[["nope"]]])),
        "FeatureService 's'",
        "Choose from: price_sum_1h_continuous",
    ),
    (
        "empty feature service",
        lambda: FeatureService(name="s", features=[]),
        "FeatureService 's'",
        "Pass features=[my_view]",
    ),
    (
        "feature service listing a source",
        lambda: FeatureService(name="s", features=[clicks]),  # type: ignore[list-item]
        "FeatureService 's'",
        "List feature views or selections",
    ),
    (
        "two entities with one name",
        _plan(Entity(name="user", join_keys=[Field("user_id", Int64)]), user),
        "Entity 'user'",
        "Rename one of them",
    ),
    ("two views with one name", _plan(_view(), _view()), "StreamFeatureView 'user_clicks'", "Rename one of them"),
    (
        "batch view without features",
        lambda: _daily(features=[]),
        "BatchFeatureView 'daily'",
        "Pass features=[Attribute('city', String)]",
    ),
    ("batch view in spark_sql mode", lambda: _daily(mode="spark_sql"), "BatchFeatureView 'daily'", "Use mode='pandas'"),
    (
        "batch view in python mode (Tecton has none)",
        lambda: _daily(mode="python"),
        "BatchFeatureView 'daily'",
        "Use mode='pandas', the mode batch views support",
    ),
    (
        "batch attribute view without ttl",
        lambda: _daily(features=[featurebus.Attribute("price", Float64)], aggregation_interval=None),
        "BatchFeatureView 'daily'",
        "Pass ttl=timedelta(days=1)",
    ),
    (
        "batch aggregation view with a ttl",
        lambda: _daily(ttl=timedelta(days=1)),
        "BatchFeatureView 'daily'",
        "Remove ttl=, or make the features Attributes",
    ),
    (
        "batch window not a multiple of the interval",
        _plan(_daily(features=[_sum(window=timedelta(minutes=90))])),
        "BatchFeatureView 'daily'",
        "multiple of the aggregation_interval",
    ),
    (
        "batch aggregation of a string column",
        _plan(_daily(features=[_sum(column="page", dtype=String)])),
        "BatchFeatureView 'daily'",
        "use 'count' or change the column's type",
    ),
    (
        "batch view aggregating an unknown column",
        _plan(_daily(sources=[clicks_with_history], features=[_sum(column="nope")])),
        "BatchFeatureView 'daily'",
        "Use a column the transformation returns (price, ts, user_id)",
    ),
    (
        "batch view without a timestamp field",
        _plan(_daily(sources=[no_time])),
        "BatchFeatureView 'daily'",
        "Pass timestamp_field=",
    ),
    (
        "batch transformation arguments not matching sources",
        lambda: _daily(_two_args),
        "BatchFeatureView '_two_args'",
        "one argument per source",
    ),
    (
        "batch view over a stream source without history",
        lambda: _daily(sources=[clicks]),
        "BatchFeatureView 'daily'",
        "Give the StreamSource batch_config=FileConfig",
    ),
    (
        "batch view with a lifetime start",
        lambda: _daily(lifetime_start_time=featurebus.definitions.datetime(2024, 1, 1)),
        "BatchFeatureView 'daily'",
        "Use a TimeWindow",
    ),
    (
        "batch view with a Spark option",
        lambda: _daily(batch_compute={"instance": "m5"}),
        "BatchFeatureView 'daily'",
        "Remove batch_compute=",
    ),
    (
        "batch config taking secrets",
        _secret_source,
        "pandas_batch_config 'from_api'",
        "read credentials from the environment",
    ),
    (
        "unsupported Tecton class",
        lambda: featurebus.KinesisConfig(stream_name="clicks"),  # type: ignore[attr-defined]
        "KinesisConfig",
        "use KafkaConfig(topics=..., timestamp_field=...)",
    ),
    (
        "unsupported Tecton function",
        lambda: featurebus.get_feature_view("v"),  # type: ignore[attr-defined]
        "get_feature_view",
        "use featurebus.get_workspace('<name>')",
    ),
    ("feature table without a ttl", lambda: _table(ttl=None), "FeatureTable 'scores'", "Pass ttl=timedelta(days=1)"),
    (
        "feature table with an Aggregate",
        lambda: _table(features=[_sum()]),
        "FeatureTable 'scores'",
        "Pass features=[Attribute('score', Float64)]",
    ),
    (
        "feature table without timestamp_field",
        lambda: _table(timestamp_field=None),
        "FeatureTable 'scores'",
        "Pass timestamp_field='timestamp'",
    ),
    (
        "feature table with features and schema",
        lambda: _table(schema=[Field("user_id", String)]),
        "FeatureTable 'scores'",
        "pass exactly one of features= and schema=",
    ),
    (
        "feature table schema without the join key",
        lambda: _table(features=None, schema=[Field("ts", Timestamp), Field("score", Float64)]),
        "FeatureTable 'scores'",
        "Add Field('user_id', ...) to schema=",
    ),
    (
        "feature table feature named as a join key",
        lambda: _table(features=[Attribute("user_id", String)]),
        "FeatureTable 'scores'",
        "Rename the feature column",
    ),
    (
        "feature table with a Tecton store option",
        lambda: _table(online_store=object()),
        "FeatureTable 'scores'",
        "Remove online_store=",
    ),
    (
        "feature table named as a stream source",
        lambda: compile_workspace("w", [clicks, _table(name="clicks")]),
        "FeatureTable 'clicks'",
        "Rename one of them",
    ),
]


def _table(**overrides: Any) -> Any:
    params: dict[str, Any] = dict(
        name="scores",
        entities=[user],
        timestamp_field="ts",
        ttl=timedelta(days=1),
        features=[Attribute("score", Float64)],
    )
    params.update(overrides)
    return FeatureTable(**params)


def test_the_table_has_at_least_25_cases() -> None:
    assert len(CASES) >= 25
    assert len({case_id for case_id, *_ in CASES}) == len(CASES)


@pytest.mark.parametrize(("make", "names", "fix"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_definition_names_the_object_the_line_and_the_fix(
    make: Callable[[], Any], names: str, fix: str
) -> None:
    with pytest.raises(DefinitionError) as info:
        make()
    message = str(info.value)
    assert names in message, message
    assert re.search(THIS_FILE + r":\d+", message), message
    assert fix in message, message


def test_a_valid_view_over_an_entity_with_several_join_keys_compiles() -> None:
    pair = Entity(name="user_merchant", join_keys=[Field("user_id", String), Field("merchant", String)])
    source = StreamSource(
        name="pairs",
        schema=[Field("user_id", String), Field("merchant", String), Field("price", Float64), Field("ts", Timestamp)],
        stream_config=KafkaConfig(topics="pairs", timestamp_field="ts"),
    )
    spec = compile_workspace("w", [_view(source=source, entities=[pair])])
    assert spec.view("user_clicks").join_keys == ("user_id", "merchant")
    assert spec.entities[0].join_keys[1].name == "merchant"
