"""What applying a repository would change: a pure diff between two ``WorkspaceSpec`` values.

``plan(current, desired)`` returns data (one ``Change`` per object, with field-level changes);
rendering lives in ``featurebus.plan_render`` (the JSON document in ``...plan.document``) and the CLI decides what to do with it. The diff
walks ``dataclasses.fields`` generically, so a field added to a spec later is diffed (and, until
classified below, treated as invalidating materialized data) without touching this module.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from featurebus.platform.plan.tables import with_table_objects
from featurebus.schemas.errors import DefinitionError, FeaturebusError
from featurebus.schemas.materialization import SOURCE_HARMLESS, VIEW_HARMLESS
from featurebus.schemas.specs import (
    AlertRuleSpec,
    BatchFeatureViewSpec,
    BatchSourceSpec,
    EntitySpec,
    FeatureServiceSpec,
    FeatureTableSpec,
    RealtimeFeatureViewSpec,
    StreamFeatureViewSpec,
    StreamSourceSpec,
    WorkspaceSpec,
)

__all__ = ["WORKSPACE_FIELD", "Action", "Change", "FieldChange", "Kind", "Plan", "plan"]

Kind = Literal[
    "entity",
    "batch_source",
    "stream_source",
    "stream_feature_view",
    "batch_feature_view",
    "realtime_feature_view",
    "feature_table",
    "feature_service",
    "alert_rule",  # user-declared (featurebus.AlertRule); after what they watch
]
Action = Literal["create", "update", "delete", "unchanged"]

# Dependency order: a view's source is listed before the view, a service's views before it.
_KINDS: tuple[Kind, ...] = get_args(Kind)
WORKSPACE_FIELD: dict[Kind, str] = {
    "entity": "entities",
    "batch_source": "batch_sources",
    "stream_source": "stream_sources",
    "stream_feature_view": "stream_feature_views",
    "batch_feature_view": "batch_feature_views",
    "realtime_feature_view": "realtime_feature_views",
    "feature_table": "feature_tables",
    "feature_service": "feature_services",
    "alert_rule": "alert_rules",
}
_SPEC_CLASS: dict[Kind, type[Any]] = {
    "entity": EntitySpec,
    "batch_source": BatchSourceSpec,
    "stream_source": StreamSourceSpec,
    "stream_feature_view": StreamFeatureViewSpec,
    "batch_feature_view": BatchFeatureViewSpec,
    "realtime_feature_view": RealtimeFeatureViewSpec,
    "feature_table": FeatureTableSpec,
    "feature_service": FeatureServiceSpec,
    "alert_rule": AlertRuleSpec,
}

# Which changes invalidate materialized data is decided once, for plan and the stream worker.
_VIEW_HARMLESS = VIEW_HARMLESS
_SOURCE_HARMLESS = SOURCE_HARMLESS
# A feature table's online/offline flags only say where its records go from now on.
_TABLE_HARMLESS = VIEW_HARMLESS


@dataclass(frozen=True)
class _Attr:
    name: str


@dataclass(frozen=True)
class _Elem:
    """A tuple element, found by its ``name`` (str key) or position (int key); ``index`` is
    where an added element goes in the new tuple."""

    key: str | int
    index: int


_Step = _Attr | _Elem


@dataclass(frozen=True)
class FieldChange:
    """One value that differs. ``old`` is None for an added tuple element, ``new`` for a removed one."""

    path: str  # e.g. "aggregations[amount_sum_1h_continuous].window_ms", "selections[0].features"
    old: Any
    new: Any
    # The same location as data, so apply_to never parses ``path`` (names may hold any character).
    at: tuple[_Step, ...] = field(default=(), repr=False, compare=False)


@dataclass(frozen=True)
class Change:
    kind: Kind
    name: str
    action: Action
    # For a create: every field of the new object (old None), which is what apply_to builds it from.
    changed_fields: tuple[FieldChange, ...] = ()
    rematerialize: bool = False
    reason: str = ""  # why it must be re-materialized, or what a delete drops


@dataclass(frozen=True)
class Plan:
    workspace: str
    # Per kind in dependency order: the desired objects in their order, then the deletions.
    changes: tuple[Change, ...]

    @property
    def is_empty(self) -> bool:
        return all(c.action == "unchanged" for c in self.changes)

    def summary(self) -> dict[Action, int]:
        """How many objects each action touches; every action is present, in a fixed order."""
        counts = Counter(c.action for c in self.changes)
        return {action: counts[action] for action in get_args(Action)}

    def apply_to(self, current: WorkspaceSpec | None) -> WorkspaceSpec:
        """The workspace that results from executing this plan on ``current`` (its version kept:
        the registry assigns the next one). Refuses a ``current`` the plan was not made from."""
        base = current if current is not None else WorkspaceSpec(self.workspace)
        objects: dict[str, Any] = {}  # workspace field -> its tuple of specs
        for kind in _KINDS:
            existing = {o.name: o for o in _planned(base, kind)}
            changes = [c for c in self.changes if c.kind == kind]
            _check_base(kind, existing, changes)
            result: list[Any] = []
            for change in changes:
                if change.action == "create":
                    result.append(_SPEC_CLASS[kind](**{fc.path: fc.new for fc in change.changed_fields}))
                elif change.action != "delete":
                    obj = existing[change.name]
                    for fc in change.changed_fields:
                        obj = _patch(obj, fc.at, fc)
                    result.append(obj)
            objects[WORKSPACE_FIELD[kind]] = tuple(result)
        return with_table_objects(dataclasses.replace(base, name=self.workspace, **objects))


def plan(current: WorkspaceSpec | None, desired: WorkspaceSpec) -> Plan:
    """Diff ``current`` (None: never applied) against ``desired``; ``version`` fields are ignored."""
    changes: list[Change] = []
    source_changes: dict[str, list[str]] = {}  # source name -> paths that invalidate its readers
    batch_input_changes: dict[str, list[str]] = {}
    for kind in _KINDS:
        old = {o.name: o for o in _planned(current, kind)} if current is not None else {}
        new = _planned(desired, kind)
        for obj in new:
            before = old.get(obj.name)
            if before is None:
                created = tuple(
                    FieldChange(f.name, None, getattr(obj, f.name), (_Attr(f.name),)) for f in dataclasses.fields(obj)
                )
                changes.append(Change(kind, obj.name, "create", created))
                continue
            if kind == "stream_feature_view":
                obj = _keeping_cutover(before, obj)
            diff = tuple(_diff(before, obj, ()))
            change = Change(kind, obj.name, "update" if diff else "unchanged", diff)
            if kind == "stream_source" and diff:
                source_changes[obj.name] = _invalidating(diff, _SOURCE_HARMLESS)
            if kind in ("stream_source", "batch_source") and diff:
                batch_input_changes[obj.name] = _invalidating(diff, _BATCH_INPUT_HARMLESS)
            elif kind == "stream_feature_view":
                # A view backfilled from its source's batch_config also depends on those files.
                change = _with_rematerialization(
                    change, obj, batch_input_changes if obj.backfill_from_batch else source_changes
                )
            elif kind == "batch_feature_view":
                change = _with_rematerialization(change, obj, batch_input_changes)
            elif kind == "feature_table" and diff:
                invalidating = _invalidating(diff, _TABLE_HARMLESS)
                if invalidating:
                    change = dataclasses.replace(
                        change, rematerialize=True, reason=f"changed: {', '.join(invalidating)}"
                    )
            changes.append(change)
        kept = {o.name for o in new}
        for name in old:
            if name not in kept:
                dropped = (
                    "it is no longer computed or served (its feature topic stays on the bus)"
                    if kind in ("stream_feature_view", "batch_feature_view", "feature_table")
                    else ""
                )
                changes.append(Change(kind, name, "delete", reason=dropped))
    _refuse_destroying_protected(changes, current)
    return Plan(desired.name, tuple(changes))


def _planned(spec: WorkspaceSpec, kind: Kind) -> tuple[Any, ...]:
    """The objects of ``kind`` a plan is about: a feature table's derived push source and view
    are not (the table is, and ``apply_to`` derives them again from it)."""
    return tuple(o for o in getattr(spec, WORKSPACE_FIELD[kind]) if not getattr(o, "feature_table", False))


def _refuse_destroying_protected(changes: list[Change], current: WorkspaceSpec | None) -> None:
    """``prevent_destroy=True`` on the applied object blocks deleting it and changes that
    invalidate its materialized features (Tecton's destructive updates). Lifting the flag is a
    harmless update, so the way out is to apply ``prevent_destroy=False`` first."""
    if current is None:
        return
    for change in changes:
        if change.action != "delete" and not change.rematerialize:
            continue
        applied = next(o for o in _planned(current, change.kind) if o.name == change.name)
        if getattr(applied, "prevent_destroy", False):  # alert rules have none
            what = (
                "delete it" if change.action == "delete" else f"invalidate its materialized features ({change.reason})"
            )
            raise DefinitionError(
                f"{change.kind} '{change.name}' has prevent_destroy=True, and this plan would {what}. "
                f"Apply prevent_destroy=False on it first (a harmless update), then make this change."
            )


# When and how a batch view is scheduled changes no value it computed.
_BATCH_VIEW_HARMLESS = frozenset({"batch_schedule_ms", "batch_trigger", "incremental_backfills"})
# What a batch view reads from its sources is all of them (a stream source's batch_config too):
# any change but descriptive metadata invalidates what it materialized.
_BATCH_INPUT_HARMLESS = _VIEW_HARMLESS - {"online", "offline"}


def _keeping_cutover(before: StreamFeatureViewSpec, desired: StreamFeatureViewSpec) -> StreamFeatureViewSpec:
    """The desired view with the cut-over to its stream an earlier apply fixed (compiled
    definitions carry none; ``platform/registry/cutover.py`` fixes it once, streams/cutover.py)."""
    if desired.backfill_from_batch and before.backfill_from_batch and desired.stream_cutover_ms is None:
        return dataclasses.replace(desired, stream_cutover_ms=before.stream_cutover_ms)
    return desired


def _with_rematerialization(
    change: Change, view: StreamFeatureViewSpec | BatchFeatureViewSpec, source_changes: dict[str, list[str]]
) -> Change:
    reasons = []
    own = _invalidating(change.changed_fields, _VIEW_HARMLESS | _BATCH_VIEW_HARMLESS)
    if own:
        reasons.append(f"changed: {', '.join(own)}")
    for source in view.sources if isinstance(view, BatchFeatureViewSpec) else (view.source,):
        from_source = source_changes.get(source)
        if from_source:
            reasons.append(f"source {source!r} changed: {', '.join(from_source)}")
    if not reasons:
        return change
    return dataclasses.replace(change, rematerialize=True, reason="; ".join(reasons))


def _invalidating(changes: tuple[FieldChange, ...], harmless: frozenset[str]) -> list[str]:
    return [fc.path for fc in changes if not _is_harmless(_attribute_path(fc.at), harmless)]


def _is_harmless(path: str, harmless: frozenset[str]) -> bool:
    """A harmless attribute covers what is nested in it: ``defined_at.line`` under ``defined_at``."""
    return any(path == h or path.startswith(h + ".") for h in harmless)


def _attribute_path(at: tuple[_Step, ...]) -> str:
    """The leading attribute names of a location: ``kafka.topics`` for ``kafka.topics``,
    ``aggregations`` for ``aggregations[x].window_ms``."""
    names = []
    for step in at:
        if not isinstance(step, _Attr):
            break
        names.append(step.name)
    return ".".join(names)


# -- the diff ----------------------------------------------------------------------------------------
def _diff(old: Any, new: Any, at: tuple[_Step, ...]) -> list[FieldChange]:
    if old == new:
        return []
    if dataclasses.is_dataclass(old) and type(old) is type(new):
        return [
            change
            for f in dataclasses.fields(old)
            for change in _diff(getattr(old, f.name), getattr(new, f.name), (*at, _Attr(f.name)))
        ]
    # Tuples of specs are diffed element by element; tuples of plain values (topics, entity names,
    # served feature order) read better whole: "topics: ['a'] -> ['a', 'b']".
    if isinstance(old, tuple) and isinstance(new, tuple) and all(dataclasses.is_dataclass(x) for x in old + new):
        by_element = _diff_named(old, new, at) if _named(old) and _named(new) else _diff_indexed(old, new, at)
        if by_element is not None:
            return by_element
    return [FieldChange(_path(at), old, new, at)]


def _named(items: tuple[Any, ...]) -> bool:
    names = [getattr(x, "name", None) for x in items]
    # An empty name is no name: a feature service's selections without with_name are matched by position.
    return all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names)


def _diff_named(old: tuple[Any, ...], new: tuple[Any, ...], at: tuple[_Step, ...]) -> list[FieldChange] | None:
    """Match elements by name. None when the elements both sides keep changed their relative
    order: that is reported as a change of the whole tuple, as per-element records cannot say it."""
    old_by_name = {x.name: x for x in old}
    new_by_name = {x.name: x for x in new}
    if [n for n in old_by_name if n in new_by_name] != [n for n in new_by_name if n in old_by_name]:
        return None
    # Removals, then edits, then insertions by ascending index: the order _patch replays them in.
    removed = [_element_change(at, n, 0, x, None) for n, x in old_by_name.items() if n not in new_by_name]
    edited = [
        change
        for i, x in enumerate(new)
        if x.name in old_by_name
        for change in _diff(old_by_name[x.name], x, (*at, _Elem(x.name, i)))
    ]
    added = [_element_change(at, x.name, i, None, x) for i, x in enumerate(new) if x.name not in old_by_name]
    return removed + edited + added


def _diff_indexed(old: tuple[Any, ...], new: tuple[Any, ...], at: tuple[_Step, ...]) -> list[FieldChange]:
    common = min(len(old), len(new))
    edited = [change for i in range(common) for change in _diff(old[i], new[i], (*at, _Elem(i, i)))]
    # Trailing removals from the end first, so every index stays valid while they are replayed.
    removed = [_element_change(at, i, i, old[i], None) for i in reversed(range(common, len(old)))]
    added = [_element_change(at, i, i, None, new[i]) for i in range(common, len(new))]
    return edited + removed + added


def _element_change(at: tuple[_Step, ...], key: str | int, index: int, old: Any, new: Any) -> FieldChange:
    location = (*at, _Elem(key, index))
    return FieldChange(_path(location), old, new, location)


def _path(at: tuple[_Step, ...]) -> str:
    text = ""
    for step in at:
        text += f"[{step.key}]" if isinstance(step, _Elem) else (f".{step.name}" if text else step.name)
    return text


# -- replaying a diff ---------------------------------------------------------------------------------
def _patch(obj: Any, at: tuple[_Step, ...], change: FieldChange) -> Any:
    if not at:
        return change.new
    step, rest = at[0], at[1:]
    if isinstance(step, _Attr):
        return dataclasses.replace(obj, **{step.name: _patch(getattr(obj, step.name), rest, change)})
    items = list(obj)
    if not rest and change.old is None:  # tuple elements are specs, never None: None marks an insertion
        items.insert(step.index, change.new)
        return tuple(items)
    position = (
        step.key if isinstance(step.key, int) else next((i for i, x in enumerate(items) if x.name == step.key), None)
    )
    if position is None or position >= len(items):
        raise FeaturebusError(f"the plan changes {change.path!r}, which the workspace does not have; re-run plan")
    if rest or change.new is not None:
        items[position] = _patch(items[position], rest, change)
    else:
        del items[position]
    return tuple(items)


def _check_base(kind: Kind, existing: dict[str, Any], changes: list[Change]) -> None:
    planned_on = {c.name for c in changes if c.action != "create"}
    created = {c.name for c in changes if c.action == "create"}
    if planned_on != set(existing) or created & set(existing):
        raise FeaturebusError(
            f"this plan was made against a different version of the workspace's {WORKSPACE_FIELD[kind]}; "
            "re-run plan against the current workspace"
        )
