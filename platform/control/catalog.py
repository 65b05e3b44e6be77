"""Every named object of the workspaces a caller may read, as flat rows to filter, search,
sort and page through (the web UI's browse page), and one object's full document.

Pure over specs: ``catalog_rows`` flattens a ``WorkspaceSpec`` once; ``query_rows`` filters and
sorts plain rows, so 10,000 features are a list comprehension, not a query engine.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from featurebus.platform.access.roles import Action
from featurebus.platform.control.guard import Call, Guard
from featurebus.platform.control.spec_cache import SpecCache
from featurebus.platform.registry.base import Registry
from featurebus.schemas.errors import InvalidRequestError, NotFoundError
from featurebus.schemas.specs import (
    AggregationSpec,
    BatchFeatureViewSpec,
    StreamFeatureViewSpec,
    WorkspaceSpec,
)

__all__ = ["Catalog", "CatalogRow", "ObjectKind", "Page", "catalog_rows", "query_rows", "spec_object"]


class ObjectKind(enum.Enum):
    ENTITY = "entity"
    STREAM_SOURCE = "stream_source"
    BATCH_SOURCE = "batch_source"
    STREAM_FEATURE_VIEW = "stream_feature_view"
    BATCH_FEATURE_VIEW = "batch_feature_view"
    REALTIME_FEATURE_VIEW = "realtime_feature_view"
    FEATURE_TABLE = "feature_table"
    FEATURE_SERVICE = "feature_service"
    FEATURE = "feature"


SORT_KEYS = ("name", "kind", "workspace", "owner")


@dataclasses.dataclass(frozen=True)
class CatalogRow:
    workspace: str
    kind: ObjectKind
    name: str  # a feature's is "view.feature", as served
    description: str
    owner: str
    tags: tuple[tuple[str, str], ...]
    dtype: str = ""  # features only
    parent: str = ""  # a feature's view

    @property
    def object_name(self) -> str:
        """The page that shows it: a feature's view, else the object itself."""
        return self.parent or self.name

    def matches(self, text: str) -> bool:
        return text in self.name.lower() or text in self.description.lower()


@dataclasses.dataclass(frozen=True)
class Page:
    rows: list[CatalogRow]
    total: int
    page: int
    pages: int


def _feature_dtype(agg: AggregationSpec) -> str:
    return agg.output_dtype


def _view_features(view: StreamFeatureViewSpec | BatchFeatureViewSpec) -> Iterator[tuple[str, str]]:
    for agg in view.aggregations:
        yield agg.name, _feature_dtype(agg)


def _objects(spec: WorkspaceSpec) -> Iterator[tuple[ObjectKind, Any]]:
    yield from ((ObjectKind.ENTITY, o) for o in spec.entities)
    # A feature table's own source and view are its internals: the table is listed once.
    yield from ((ObjectKind.STREAM_SOURCE, o) for o in spec.stream_sources if not o.feature_table)
    yield from ((ObjectKind.BATCH_SOURCE, o) for o in spec.batch_sources)
    yield from ((ObjectKind.STREAM_FEATURE_VIEW, o) for o in spec.stream_feature_views if not o.feature_table)
    yield from ((ObjectKind.BATCH_FEATURE_VIEW, o) for o in spec.batch_feature_views)
    yield from ((ObjectKind.REALTIME_FEATURE_VIEW, o) for o in spec.realtime_feature_views)
    yield from ((ObjectKind.FEATURE_TABLE, o) for o in spec.feature_tables)
    yield from ((ObjectKind.FEATURE_SERVICE, o) for o in spec.feature_services)


def catalog_rows(spec: WorkspaceSpec) -> list[CatalogRow]:
    """Every object of ``spec`` and every feature of its views, one row each."""
    rows: list[CatalogRow] = []
    for kind, obj in _objects(spec):
        owner = obj.owner or ""
        rows.append(CatalogRow(spec.name, kind, obj.name, obj.description, owner, obj.tags))
        features: Iterable[tuple[str, str]] = ()
        if isinstance(obj, StreamFeatureViewSpec | BatchFeatureViewSpec):
            features = _view_features(obj)
        elif kind in (ObjectKind.REALTIME_FEATURE_VIEW, ObjectKind.FEATURE_TABLE):
            features = ((f.name, str(f.dtype)) for f in obj.features)
        rows.extend(
            CatalogRow(
                spec.name, ObjectKind.FEATURE, f"{obj.name}.{name}", obj.description, owner, obj.tags, dtype, obj.name
            )
            for name, dtype in features
        )
    return rows


def query_rows(
    rows: list[CatalogRow],
    *,
    text: str = "",
    kind: str = "",
    tag: str = "",
    owner: str = "",
    sort: str = "name",
    descending: bool = False,
    page: int = 1,
    per_page: int = 50,
) -> Page:
    """Filter (all given filters must hold), sort, and cut one page. ``tag`` is ``key`` or
    ``key=value``; ``text`` matches names and descriptions, case-insensitively."""
    if sort not in SORT_KEYS:
        raise InvalidRequestError(f"sort must be one of {', '.join(SORT_KEYS)}, not {sort!r}")
    if kind and kind not in {k.value for k in ObjectKind}:
        raise InvalidRequestError(f"kind must be one of {', '.join(k.value for k in ObjectKind)}, not {kind!r}")
    if not 1 <= per_page <= 500:
        raise InvalidRequestError(f"per_page must be between 1 and 500, not {per_page}")
    wanted_text = text.strip().lower()
    tag_key, has_value, tag_value = tag.partition("=")
    found = [
        r
        for r in rows
        if (not kind or r.kind.value == kind)
        and (not owner or r.owner == owner)
        and (not tag or any(k == tag_key and (not has_value or v == tag_value) for k, v in r.tags))
        and (not wanted_text or r.matches(wanted_text))
    ]
    field = "kind" if sort == "kind" else sort
    found.sort(key=lambda r: (r.kind.value if field == "kind" else getattr(r, field), r.name), reverse=descending)
    pages = max(1, -(-len(found) // per_page))
    page = min(max(1, page), pages)
    return Page(found[(page - 1) * per_page : page * per_page], len(found), page, pages)


def spec_object(spec: WorkspaceSpec, name: str) -> tuple[ObjectKind, dict[str, Any]]:
    """The named object of ``spec`` (its kind and JSON document); NotFoundError names the workspace."""
    for kind, obj in _objects(spec):
        if obj.name == name:
            document: dict[str, Any] = orjson.loads(orjson.dumps(obj, default=_plain))
            return kind, document
    raise NotFoundError(f"workspace {spec.name!r} has no object named {name!r}")


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


class Catalog:
    """The guarded reads: only workspaces the caller may read are listed."""

    def __init__(self, registry: Registry, guard: Guard) -> None:
        self.specs = SpecCache(registry)
        self._guard = guard
        # (workspace, version) -> rows: a spec version never changes, so its rows never go stale.
        self._rows: dict[tuple[str, int], list[CatalogRow]] = {}

    def readable(self, call: Call) -> list[WorkspaceSpec]:
        caller = self._guard.authenticate(call, "catalog.list")
        view = self._guard.access.view
        return [
            spec
            for name, spec in sorted(self.specs.specs().items())
            if caller.admin or view.role_of(caller, name) is not None
        ]

    def rows_of(self, spec: WorkspaceSpec) -> list[CatalogRow]:
        key = (spec.name, spec.version)
        rows = self._rows.get(key)
        if rows is None:
            if len(self._rows) > 64:  # old versions of busy workspaces: start over rather than grow
                self._rows.clear()
            rows = self._rows[key] = catalog_rows(spec)
        return rows

    def search(self, call: Call, workspace: str = "", **query: Any) -> Page:
        specs = self.readable(call)
        if workspace:
            self._guard.check(call, workspace, Action.READ_DEFINITIONS, "catalog.search")
            specs = [s for s in specs if s.name == workspace]
        rows = [row for spec in specs for row in self.rows_of(spec)]
        return query_rows(rows, **query)

    def spec(self, call: Call, workspace: str) -> WorkspaceSpec:
        self._guard.check(call, workspace, Action.READ_DEFINITIONS, "catalog.get")
        spec = self.specs.get(workspace)
        if spec is None:
            raise NotFoundError(f"workspace {workspace!r} does not exist")
        return spec
