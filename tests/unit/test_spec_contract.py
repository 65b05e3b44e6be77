"""The spec documents on the wire: typed fields, the same bytes as before they were typed.

``tests/fixtures/specs_v4/*.json`` were written by featurebus before the closed sets became enums
and the metadata fields moved to one base (commit 2ca3259: the examples, the realtime and
feature-table test repos, and a repo using every window kind, value format, file format, batch
config kind, batch trigger and metadata position). Records in registries look like these.
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from pathlib import Path

import orjson
import pytest

from featurebus.schemas.errors import StoreFormatError
from featurebus.schemas.kinds import (
    AggregationFunction,
    AggregationLeadingEdge,
    BatchConfigKind,
    BatchTriggerType,
    FileFormat,
    RealtimeInputKind,
    RealtimeMode,
    TransformationMode,
    ValueFormat,
    WindowKind,
)
from featurebus.schemas.specs import DescribedSpec, WorkspaceSpec

FIXTURES = sorted((Path(__file__).parents[1] / "fixtures" / "specs_v4").glob("*.json"))
KINDS = Path(__file__).parents[1] / "fixtures" / "specs_v4" / "kinds.json"


# What version 6 added to stream views (batch history, streams/cutover.py), at its defaults.
_STREAM_VIEW_V6_DEFAULTS = {
    "feature_start_ms": None,
    "backfill_from_batch": False,
    "stream_cutover_ms": None,
    "batch_schedule_ms": None,
    "batch_trigger": "scheduled",
    "manual_trigger_backfill_end_ms": None,
    "max_backfill_interval_ms": None,
    "incremental_backfills": False,
    "source_range": None,
}


def _as_version_4(document: bytes) -> bytes:
    """A version-7 document without what versions 5 to 7 added (batch views' ``source_ranges``;
    references' ``name`` / ``join_key_map``, aggregations' secondary key fields and stream views'
    batch history; views' ``monitoring`` and the workspace's ``alert_rules``), which a version-4
    document cannot have set, and without the monitoring fields added since with defaults (data
    quality of stream views, logging of services): the bytes version 4 wrote for the same workspace."""
    raw = orjson.loads(document)
    assert raw["format_version"] == 7
    raw["format_version"] = 4
    for view in raw["batch_feature_views"]:
        assert view.pop("source_ranges") == []
    for view in raw["stream_feature_views"]:
        assert {name: view.pop(name) for name in _STREAM_VIEW_V6_DEFAULTS} == _STREAM_VIEW_V6_DEFAULTS
    for view in raw["stream_feature_views"] + raw["batch_feature_views"]:
        assert view.pop("monitoring") is None
    assert raw.pop("alert_rules") == []
    for view in raw["stream_feature_views"] + raw["batch_feature_views"]:
        for aggregation in view["aggregations"]:
            assert aggregation.pop("secondary_key") is None
            assert aggregation.pop("secondary_key_dtype") == ""
            assert aggregation.pop("keys_feature") is False
    for service in raw["feature_services"]:
        for selection in service["selections"]:
            assert (selection.pop("name"), selection.pop("join_key_map")) == ("", [])
    for view in raw["realtime_feature_views"]:
        for source in view["inputs"]:
            assert (source.pop("namespace"), source.pop("join_key_map")) == ("", [])
    for view in raw["stream_feature_views"]:
        assert view.pop("data_quality_enabled") is True
        assert view.pop("skip_default_expectations") is False
        assert view.pop("data_quality_expectations") == []
    for service in raw["feature_services"]:
        assert service.pop("logging") is None
    for kind in (*raw.keys() - {"name", "version", "applied_at_ms", "format_version"},):
        for obj in raw[kind] if isinstance(raw[kind], list) else ():
            assert obj.pop("defined_at") is None  # where a definition was written: recorded since
    return orjson.dumps(raw)


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_documents_written_before_the_typed_specs_round_trip_byte_identically(path: Path) -> None:
    data = path.read_bytes()
    spec = WorkspaceSpec.from_json(data)
    assert _as_version_4(spec.to_json()) == data
    assert WorkspaceSpec.from_json(spec.to_json()) == spec


def test_the_fixtures_cover_every_value_of_every_closed_set() -> None:
    found: set[tuple[type, str]] = set()  # (enum, value): "json" is a ValueFormat and a FileFormat

    def walk(value: object) -> None:
        if isinstance(value, enum.Enum):
            found.add((type(value), value.value))
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                walk(getattr(value, f.name))
        elif isinstance(value, tuple):
            for item in value:
                walk(item)

    for path in FIXTURES:
        walk(WorkspaceSpec.from_json(path.read_bytes()))
    closed_sets = (
        WindowKind,
        BatchTriggerType,
        TransformationMode,
        RealtimeMode,
        RealtimeInputKind,
        ValueFormat,
        FileFormat,
        BatchConfigKind,
    )
    stored = {(type(m), m.value) for kind in closed_sets for m in kind}
    stored |= {(AggregationLeadingEdge, "wall_clock_time"), (AggregationLeadingEdge, "latest_event_time")}
    stored |= {(AggregationFunction, f) for f in ("sum", "count", "stddev_samp", "last", "mean")}
    assert stored - found == set()


def test_closed_sets_decode_to_enum_members() -> None:
    spec = WorkspaceSpec.from_json(KINDS.read_bytes())
    view = spec.view("windows")
    assert [type(a.window_kind) for a in view.aggregations] == [WindowKind] * len(view.aggregations)
    assert view.aggregation_leading_edge is AggregationLeadingEdge.LATEST_EVENT_TIME
    assert view.transformation.mode is TransformationMode.PYTHON
    assert {a.function for a in view.aggregations} >= {AggregationFunction.STDDEV_SAMP}
    assert spec.source("tx").kafka.value_format is ValueFormat.CONFLUENT_AVRO
    assert spec.batch_view("manual").batch_trigger is BatchTriggerType.MANUAL
    custom = spec.batch_source("arrow_source").custom_config
    assert custom is not None and custom.kind is BatchConfigKind.PYARROW


@pytest.mark.parametrize(
    ("field", "path", "allowed"),
    [
        ("window_kind", ["stream_feature_views", 0, "aggregations", 0], "'time', 'lifetime', 'series'"),
        ("value_format", ["stream_sources", 1, "kafka"], "'json', 'avro', 'confluent_avro'"),
        ("batch_trigger", ["batch_feature_views", 0], "'scheduled', 'manual', 'no_batch_materialization'"),
        ("kind", ["batch_sources", 0, "custom_config"], "'pandas', 'pyarrow'"),
    ],
)
def test_a_value_outside_a_closed_set_names_the_field_and_the_allowed_values(
    field: str, path: list[str | int], allowed: str
) -> None:
    raw = orjson.loads(KINDS.read_bytes())
    target = raw
    for step in path:
        target = target[step]
    target[field] = "hourly"
    with pytest.raises(StoreFormatError) as caught:
        WorkspaceSpec.from_json(orjson.dumps(raw))
    where = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in path)
    assert f"workspace 'kinds'{where}.{field} is 'hourly'" in str(caught.value)
    assert allowed in str(caught.value)


def test_a_malformed_nested_value_is_a_store_format_error_naming_where() -> None:
    raw = orjson.loads(KINDS.read_bytes())
    raw["stream_feature_views"][0]["aggregations"] = {"not": "a list"}
    with pytest.raises(StoreFormatError, match=r"stream_feature_views\[0\]\.aggregations: expected a JSON array"):
        WorkspaceSpec.from_json(orjson.dumps(raw))


def test_every_described_spec_declares_the_metadata_fields_once_and_keeps_them_flat() -> None:
    described = [
        hint
        for f in dataclasses.fields(WorkspaceSpec)
        for hint in typing.get_args(typing.get_type_hints(WorkspaceSpec)[f.name])
        if isinstance(hint, type) and issubclass(hint, DescribedSpec)
    ]
    assert len(described) == 8
    for cls in described:
        own = set(vars(cls).get("__annotations__", {}))
        assert own.isdisjoint({"description", "owner", "tags", "prevent_destroy"}), cls
        assert {"description", "owner", "tags", "prevent_destroy"} <= {f.name for f in dataclasses.fields(cls)}


def test_a_malformed_tag_pair_is_a_store_format_error() -> None:
    raw = orjson.loads(KINDS.read_bytes())
    raw["entities"][0]["tags"] = [["tier"]]
    with pytest.raises(StoreFormatError, match=r"entities\[0\]\.tags\[0\]: expected a JSON array of 2"):
        WorkspaceSpec.from_json(orjson.dumps(raw))
