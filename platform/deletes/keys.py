"""Which entities a delete names: rows of join-key values, checked against the view's join keys.

A feature view's entities are named by its join keys (``view.join_keys``, typed by its entities).
Every row must give every join key; values are coerced as serving coerces them (int64 keys sent
as strings are accepted), and duplicates collapse. Bad input fails before anything is deleted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from featurebus.schemas.encoding import JoinKeyValue, coerce_join_key, encode_entity_key
from featurebus.schemas.errors import InvalidRequestError, NotFoundError
from featurebus.schemas.specs import BatchFeatureViewSpec, StreamFeatureViewSpec, WorkspaceSpec

__all__ = ["DeleteTarget", "MAX_KEYS", "delete_target", "entity_keys"]

MAX_KEYS = 100_000  # per request: a bigger delete is split by the caller


@dataclass(frozen=True)
class DeleteTarget:
    """The object a delete applies to: a stream view, a feature table's view, or a batch view."""

    view: StreamFeatureViewSpec | BatchFeatureViewSpec
    join_keys: tuple[str, ...]
    dtypes: tuple[str, ...]

    @property
    def is_batch(self) -> bool:
        return isinstance(self.view, BatchFeatureViewSpec)


def delete_target(spec: WorkspaceSpec, name: str) -> DeleteTarget:
    """The view (or feature table) ``name`` of ``spec``; realtime views hold no data to delete."""
    if spec.is_realtime(name):
        raise InvalidRequestError(
            f"{name!r} is a realtime feature view: it stores nothing (its values are computed per request), "
            "so there is nothing to delete; delete the keys from the views it reads"
        )
    view: StreamFeatureViewSpec | BatchFeatureViewSpec
    if spec.is_batch(name):
        view = spec.batch_view(name)
    elif any(v.name == name for v in spec.stream_feature_views):
        view = spec.view(name)
    else:
        known = sorted([v.name for v in spec.stream_feature_views] + [v.name for v in spec.batch_feature_views])
        raise NotFoundError(
            f"workspace {spec.name!r} has no feature view or feature table named {name!r} "
            f"(known: {', '.join(known) or 'none'})"
        )
    return DeleteTarget(view, tuple(view.join_keys), spec.join_key_dtypes(view))


def entity_keys(target: DeleteTarget, rows: Sequence[Mapping[str, Any]]) -> dict[bytes, tuple[JoinKeyValue, ...]]:
    """Encoded entity key -> join-key values, one per distinct entity named in ``rows``."""
    if not rows:
        raise InvalidRequestError(
            f"no keys given: pass at least one row with the join keys {list(target.join_keys)} of {target.view.name!r}"
        )
    if len(rows) > MAX_KEYS:
        raise InvalidRequestError(f"{len(rows)} keys in one delete; at most {MAX_KEYS}: split the keys")
    keys: dict[bytes, tuple[JoinKeyValue, ...]] = {}
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InvalidRequestError(f"key row {index} is not an object of join keys {list(target.join_keys)}")
        missing = [k for k in target.join_keys if k not in row or row[k] is None]
        if missing:
            raise InvalidRequestError(
                f"key row {index} lacks join key(s) {missing} of {target.view.name!r} "
                f"(it needs {list(target.join_keys)}; got {sorted(row)})"
            )
        values = tuple(
            coerce_join_key(row[k], dtype, k) for k, dtype in zip(target.join_keys, target.dtypes, strict=True)
        )
        keys[encode_entity_key(values)] = values
    return keys
