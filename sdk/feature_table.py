"""``FeatureTable``: precomputed features written through the ingestion API (Tecton 1.x).

    user_scores = FeatureTable(
        name="user_scores", entities=[user], timestamp_field="ts", ttl=timedelta(days=7),
        features=[Attribute("score", Float64), Attribute("segment", String)], online=True, offline=True,
    )

Records are ingested under the table's name, over HTTP (``POST /ingest`` with
``{"records": {"user_scores": [{"record": {"user_id", "score", "segment", "ts"}}]}}``) or from
Python (``get_workspace(ws).get_feature_table("user_scores").ingest(df)``), both through the same
validated, all-or-nothing path. A table compiles onto what already exists: an implicit push
source of the same name (its records logged offline when ``offline=True``) and a view of one
``Attribute`` per feature with the table's ``ttl``, so serving answers the latest value per
entity within the ttl and training sets join it point-in-time correctly, exactly as for a
stream view of Attribute features. ``plan`` and ``describe`` show the table as one object of
kind ``feature_table``; its derived source and view are ``table_objects`` of its spec.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from featurebus.definition_base import DefinitionSite, _caller_site, _require_name, duration_ms, reject_options
from featurebus.definitions import Attribute, Entity, FeatureView
from featurebus.exceptions import DefinitionError, InvalidRequestError

# Moved down a layer: the control plane diffs and applies workspaces with them.
from featurebus.platform.plan.tables import attribute_aggregation, table_objects, with_table_objects
from featurebus.schemas.specs import (
    DefinitionLocationSpec,
    FeatureTableSpec,
    FieldSpec,
)
from featurebus.streams.aggregations import aggregator_of
from featurebus.types import Field

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FeatureTable", "compile_feature_table", "table_objects", "table_records", "with_table_objects"]

# Tecton parameters of FeatureTable that featurebus does not act on, and why.
_STORES = "featurebus's stores are fixed (RocksDB online, Parquet offline)"
FEATURE_TABLE_OPTIONS = {
    "offline_store": _STORES,
    "online_store": _STORES,
    "batch_compute": "featurebus runs no Spark or Databricks/EMR cluster; ingestion writes straight to the bus",
    "online_serving_index": "the online store is keyed by the entities' join keys",
    "alert_email": "featurebus sends no alerts",
    "tecton_materialization_runtime": "featurebus has no materialization runtime to pin",
    "options": "feature tables take no engine options",
    "environment": "featurebus has no compute environments",
}


class FeatureTable(FeatureView):
    """Tecton's ``FeatureTable``: ``features=[Attribute(...)]`` (with ``timestamp_field``), or the
    older ``schema=[Field(...)]`` listing the join keys, the timestamp and the features."""

    def __init__(
        self,
        *,
        name: str,
        entities: Sequence[Entity],
        features: Sequence[Attribute] | None = None,
        schema: Sequence[Field] | None = None,
        timestamp_field: str | None = None,
        ttl: timedelta | None = None,
        online: bool = False,
        offline: bool = False,
        description: str | None = None,
        owner: str | None = None,
        tags: dict[str, str] | None = None,
        prevent_destroy: bool = False,
        **tecton_options: Any,
    ) -> None:
        self.site: DefinitionSite = _caller_site()
        self.name = _require_name("FeatureTable", name, self.site)
        reject_options("FeatureTable", self.name, self.site, tecton_options, FEATURE_TABLE_OPTIONS)
        if not entities or not all(isinstance(e, Entity) for e in entities):
            raise self.error("entities must be a non-empty list of Entity", "Pass entities=[user].")
        self.entities = tuple(entities)
        join_keys = [k for e in self.entities for k in e.join_keys]
        key_names = [k.name for k in join_keys]
        if len(set(key_names)) != len(key_names):
            raise self.error(f"its entities repeat a join key ({key_names})", "Use entities with distinct join keys.")
        for flag, value in (("online", online), ("offline", offline)):
            if not isinstance(value, bool):
                raise self.error(f"{flag} must be True or False, got {value!r}", f"Pass {flag}=True or {flag}=False.")
        if ttl is None:
            raise self.error(
                "a feature table needs a ttl (how old a latest value may be when served)", "Pass ttl=timedelta(days=1)."
            )
        self.ttl_ms = duration_ms(ttl, "ttl", "FeatureTable", self.name, self.site)
        self.ttl = ttl
        self.online = online
        self.offline = offline
        self.join_keys = tuple(join_keys)
        self.features, self.timestamp_field = self._columns(features, schema, timestamp_field, key_names)
        self._keep_metadata(description, owner, tags, prevent_destroy)

    def _columns(
        self,
        features: Sequence[Attribute] | None,
        schema: Sequence[Field] | None,
        timestamp_field: str | None,
        key_names: list[str],
    ) -> tuple[tuple[Field, ...], str]:
        """The feature columns and the timestamp column, from ``features=`` or ``schema=``."""
        if (features is None) == (schema is None):
            raise self.error(
                "pass exactly one of features= and schema=",
                "Pass features=[Attribute('score', Float64), ...] and timestamp_field='ts'.",
            )
        if features is not None:
            if not features or not all(isinstance(f, Attribute) for f in features):
                raise self.error(
                    "features must be a non-empty list of Attribute (a feature table stores values "
                    "computed elsewhere; it aggregates nothing)",
                    "Pass features=[Attribute('score', Float64)].",
                )
            if not isinstance(timestamp_field, str) or not timestamp_field:
                raise self.error(
                    "a feature table with features= needs timestamp_field (the column holding each "
                    "record's event time)",
                    "Pass timestamp_field='timestamp'.",
                )
            columns = tuple(Field(f.name, f.dtype) for f in features)
        else:
            assert schema is not None
            if not schema or not all(isinstance(f, Field) for f in schema):
                raise self.error(
                    "schema must be a non-empty list of Field", "Pass schema=[Field('user_id', String), ...]."
                )
            stamps = [f.name for f in schema if f.dtype.name == "timestamp"]
            if timestamp_field is None:
                if len(stamps) != 1:
                    raise self.error(
                        f"the schema has {len(stamps)} Timestamp fields",
                        "Pass timestamp_field= to say which one is the event time.",
                    )
                timestamp_field = stamps[0]
            names = [f.name for f in schema]
            if timestamp_field not in names:
                raise self.error(
                    f"timestamp_field {timestamp_field!r} is not in the schema",
                    f"Add Field({timestamp_field!r}, Timestamp) to schema=.",
                )
            missing = [k for k in key_names if k not in names]
            if missing:
                raise self.error(
                    f"the schema lacks the join key {missing[0]!r} of its entities",
                    f"Add Field({missing[0]!r}, ...) to schema= with the entity's type.",
                )
            for f in schema:
                key = next((k for k in self.join_keys if k.name == f.name), None)
                if key is not None and key.dtype.name != f.dtype.name:
                    raise self.error(
                        f"the schema declares join key {f.name!r} as {f.dtype.name}, its entity as {key.dtype.name}",
                        "Give the join key the same type in the Entity and the schema.",
                    )
            columns = tuple(f for f in schema if f.name not in key_names and f.name != timestamp_field)
            if not columns:
                raise self.error(
                    "the schema has no feature columns besides the join keys and the timestamp",
                    "Add the feature columns to schema=.",
                )
        names = [c.name for c in columns]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise self.error(f"the feature {repeated[0]!r} is listed more than once", "Keep one entry per feature.")
        clash = sorted(set(names) & ({*key_names, timestamp_field}))
        if clash:
            raise self.error(
                f"the feature {clash[0]!r} is also a join key or the timestamp field", "Rename the feature column."
            )
        return columns, timestamp_field

    def __repr__(self) -> str:
        return f"FeatureTable({self.name!r})"


def compile_feature_table(table: FeatureTable) -> FeatureTableSpec:
    """The table's spec; each feature checked as the ``last`` aggregation that serves it."""
    spec = FeatureTableSpec(
        name=table.name,
        entities=tuple(e.name for e in table.entities),
        join_keys=tuple(FieldSpec(k.name, k.dtype.name) for k in table.join_keys),
        features=tuple(FieldSpec(f.name, f.dtype.name) for f in table.features),
        timestamp_field=table.timestamp_field,
        ttl_ms=table.ttl_ms,
        online=table.online,
        offline=table.offline,
        description=table.description,
        owner=table.owner,
        tags=tuple(sorted(table.tags.items())),
        prevent_destroy=table.prevent_destroy,
        defined_at=DefinitionLocationSpec(table.site.file, table.site.line),
    )
    for feature in spec.features:
        try:
            aggregator_of(attribute_aggregation(feature, spec.ttl_ms))
        except DefinitionError as exc:
            raise table.error(f"feature {feature.name!r} cannot be served: {exc}", "Use another type for it.") from None
    return spec


def table_records(table: FeatureTableSpec, df: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of ``df`` as ingestion items (``{"record": {...}}``) of the table, with pandas'
    missing values (NaN, NaT, None) as nulls and numpy scalars as Python values; the ingestion
    path validates them. Its columns must be the table's, all of them but optional features."""
    import pandas as pd

    columns = [str(c) for c in df.columns]
    required = [k.name for k in table.join_keys] + [table.timestamp_field]
    known = {*required, *(f.name for f in table.features)}
    missing = [c for c in required if c not in columns]
    unknown = [c for c in columns if c not in known]
    if missing or unknown:
        raise InvalidRequestError(
            f"the DataFrame does not match feature table {table.name!r}: "
            + "; ".join(
                part
                for part in (
                    f"missing columns {missing}" if missing else "",
                    f"unknown columns {unknown}" if unknown else "",
                )
                if part
            )
            + f". Its columns are {sorted(known)} (join keys and {table.timestamp_field!r} required)."
        )
    frame = df.astype(object).where(pd.notna(df), None)  # NaN/NaT/None -> None, numpy -> Python scalars
    return [{"record": row} for row in frame.to_dict("records")]
