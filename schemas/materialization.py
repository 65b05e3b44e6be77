"""What a stream view's materialized state depends on, and how a worker records what it built.

A view's *materialization fingerprint* hashes every field of the view and of its source that
changes the tiles it computes (plan calls a change of one of those an invalidating change); the
descriptive fields (``description``, ``owner``, ...) and a few that only affect new records are
left out. The stream worker commits, with each source partition's offset, the fingerprints of
the views whose state it built from that partition (``CommitMetadata``): a view whose current
fingerprint is not the committed one (changed by an apply, or new to the partition's history)
is recomputed from the source log before the worker goes on (``featurebus.streams.runtime.rebuild``).

Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from featurebus.schemas.errors import FeaturebusError
from featurebus.schemas.specs import LOCATION_FIELD, StreamFeatureViewSpec, StreamSourceSpec, WorkspaceSpec
from featurebus.schemas.specs import METADATA_FIELDS as DESCRIPTIVE_FIELDS

__all__ = [
    "METADATA_FIELDS",
    "SOURCE_HARMLESS",
    "VIEW_HARMLESS",
    "CommitMetadata",
    "fingerprint",
    "online_fingerprints",
]

# Fields whose change leaves materialized features valid, as dotted attribute paths. Everything
# else invalidates them, including fields added to the specs later: recomputing once too often is
# cheap next to serving features computed under an old definition.
# Where a definition was written (file:line) is metadata too: moving it recomputes nothing.
METADATA_FIELDS = frozenset({*DESCRIPTIVE_FIELDS, LOCATION_FIELD})
# ``online``/``offline`` say where the features go, not what they are. (A view switched online
# has no state yet: its missing fingerprint, not a changed one, makes the worker build it.)
VIEW_HARMLESS = (
    METADATA_FIELDS
    | {"online", "offline"}
    | {
        # How a stream view's backfill from batch history is cut into jobs (streams/cutover.py): the
        # stream's tiles do not depend on it.
        "batch_schedule_ms",
        "batch_trigger",
        "manual_trigger_backfill_end_ms",
        "max_backfill_interval_ms",
        "incremental_backfills",
    }
    # Statistics over the features as they are written offline (platform/monitoring): they
    # describe the tiles, never change them.
    | {"data_quality_enabled", "skip_default_expectations", "data_quality_expectations"}
    | {"monitoring"}  # alerting: who is told, not what
)
# The watermark delay and the value format only decide how records that have not arrived yet are
# read; batch_config files hold history the offline store reads, never the stream worker.
SOURCE_HARMLESS = METADATA_FIELDS | {
    "kafka.watermark_delay_ms",
    "kafka.value_format",
    "kafka.avro_schema",
    "batch_config",
}

_FINGERPRINT_CHARS = 16  # 64 bits of sha256: collisions between two versions of a view are not a concern
_METADATA_FORMAT = 2  # 1: the bare watermark as a decimal string (before fingerprints existed)


def _without(value: dict[str, Any], harmless: frozenset[str]) -> dict[str, Any]:
    kept = {}
    for name, item in value.items():
        if name in harmless:
            continue
        nested = frozenset(path.split(".", 1)[1] for path in harmless if path.startswith(name + "."))
        kept[name] = _without(item, nested) if nested and isinstance(item, dict) else item
    return kept


# Fields added after fingerprints existed, at the value that means what specs without them meant:
# left out of the hash then, so an upgrade does not recompute every view.
_ADDED_AT_DEFAULT = {
    "feature_start_ms": None,
    "backfill_from_batch": False,
    "stream_cutover_ms": None,
    "source_range": None,
}
_AGGREGATION_ADDED_AT_DEFAULT = {"secondary_key": None, "secondary_key_dtype": "", "keys_feature": False}


def _drop_defaults(value: dict[str, Any], added: dict[str, Any]) -> dict[str, Any]:
    return {name: item for name, item in value.items() if not (name in added and item == added[name])}


def fingerprint(view: StreamFeatureViewSpec, source: StreamSourceSpec) -> str:
    """A short, stable hash of what the view's tiles depend on (the same in every process)."""
    kept = _drop_defaults(_without(dataclasses.asdict(view), VIEW_HARMLESS), _ADDED_AT_DEFAULT)
    kept["aggregations"] = [_drop_defaults(a, _AGGREGATION_ADDED_AT_DEFAULT) for a in kept["aggregations"]]
    payload = {
        "view": kept,
        "source": _without(dataclasses.asdict(source), SOURCE_HARMLESS),
    }
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()[:_FINGERPRINT_CHARS]


def online_fingerprints(spec: WorkspaceSpec, topic: str) -> dict[str, str]:
    """``view -> fingerprint`` of the online stream views reading source topic ``topic``."""
    result = {}
    for view in spec.stream_feature_views:
        source = spec.source(view.source)
        if view.online and topic in source.kafka.topics:
            result[view.name] = fingerprint(view, source)
    return result


class CommitMetadataError(FeaturebusError):
    """A consumer offset's metadata is not one featurebus wrote."""


@dataclass(frozen=True)
class CommitMetadata:
    """What the worker commits with a source partition's offset.

    ``fingerprints`` None: written before fingerprints existed (format 1); the state is taken as
    built by the current definitions, so an upgrade does not recompute every view.
    """

    watermark: int
    fingerprints: dict[str, str] | None = None
    # Events the engine dropped in this partition so far: [late, ahead] (streams/arrival.py); an
    # optional key, so older featurebus versions read this metadata unchanged.
    dropped: tuple[int, int] = (0, 0)

    def encode(self) -> str:
        raw: dict[str, object] = {
            "format": _METADATA_FORMAT,
            "watermark": self.watermark,
            "views": self.fingerprints or {},
        }
        if any(self.dropped):
            raw["dropped"] = list(self.dropped)
        return orjson.dumps(raw, option=orjson.OPT_SORT_KEYS).decode()

    @classmethod
    def decode(cls, text: str | None, default_watermark: int) -> CommitMetadata:
        """Parse a committed offset's metadata; empty metadata (never written) has no watermark."""
        if not text:
            return cls(default_watermark, None)
        if text.lstrip("-").isdigit():
            return cls(int(text), None)
        try:
            raw = orjson.loads(text)
            if raw["format"] != _METADATA_FORMAT:
                raise CommitMetadataError(
                    f"offset metadata format {raw['format']} is newer than this featurebus "
                    f"understands ({_METADATA_FORMAT}); upgrade featurebus"
                )
            late, ahead = raw.get("dropped", (0, 0))
            return cls(
                int(raw["watermark"]), {str(k): str(v) for k, v in raw["views"].items()}, (int(late), int(ahead))
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CommitMetadataError(f"offset metadata {text[:80]!r} was not written by featurebus: {exc}") from exc

    def stale_views(self, current: dict[str, str]) -> list[str]:
        """The views of ``current`` whose state this commit did not build with their definition."""
        if self.fingerprints is None:
            return []
        return sorted(view for view, fp in current.items() if self.fingerprints.get(view) != fp)
