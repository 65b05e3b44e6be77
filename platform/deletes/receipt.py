"""What a delete changed, listed exactly: the receipt ``delete_keys`` returns.

Every Kafka record the delete wrote (tombstones, per topic and partition, with their offsets),
every offline file it rewrote (rows before and removed), and every place it could *not* delete
from, with the reason. Nothing is claimed that was not done: a source topic Kafka cannot delete
single records from is listed under ``not_deleted``, never under ``topics``.

The stream workers apply the delete after it returns (``platform.deletes.requests``): they
tombstone the same entities' records once more in their own transactions (covering a tile they
republished meanwhile) and log it with the receipt's ``request_id``; those repeats are not listed.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DeleteReceipt", "FileRewrite", "NotDeleted", "TopicTombstones"]


@dataclasses.dataclass(frozen=True)
class TopicTombstones:
    """Tombstones (null-value records) written to one topic partition."""

    topic: str
    partition: int
    records: int
    first_offset: int
    last_offset: int
    kind: str  # "feature" (online values) or "source" (a compacted source topic)


@dataclasses.dataclass(frozen=True)
class FileRewrite:
    """One Parquet file replaced by a copy without the deleted entities' rows."""

    old_path: str
    new_path: str  # the same path for source part files: their name is their offset range
    rows_before: int
    rows_removed: int
    kind: str  # "source" (source records) or "batch_view" (a batch view's materialized rows)


@dataclasses.dataclass(frozen=True)
class NotDeleted:
    """A place holding the entities' data that this delete did not change, and why."""

    where: str
    reason: str


@dataclasses.dataclass(frozen=True)
class DeleteReceipt:
    workspace: str
    view: str
    entities: int  # distinct entity keys asked for
    online: bool
    offline: bool
    include_sources: bool
    topics: tuple[TopicTombstones, ...] = ()
    files: tuple[FileRewrite, ...] = ()
    not_deleted: tuple[NotDeleted, ...] = ()
    request_id: str = ""  # the delete request the stream workers follow (``platform.deletes.requests``)

    @property
    def tombstones(self) -> int:
        return sum(t.records for t in self.topics)

    @property
    def rows_removed(self) -> int:
        return sum(f.rows_removed for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "workspace": self.workspace,
            "view": self.view,
            "entities": self.entities,
            "online": self.online,
            "offline": self.offline,
            "includeSources": self.include_sources,
            "requestId": self.request_id,
            "tombstones": self.tombstones,
            "rowsRemoved": self.rows_removed,
            "topics": [dataclasses.asdict(t) for t in self.topics],
            "files": [dataclasses.asdict(f) for f in self.files],
            "notDeleted": [dataclasses.asdict(n) for n in self.not_deleted],
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> DeleteReceipt:
        return cls(
            workspace=raw["workspace"],
            view=raw["view"],
            entities=int(raw["entities"]),
            online=bool(raw["online"]),
            offline=bool(raw["offline"]),
            include_sources=bool(raw["includeSources"]),
            topics=tuple(TopicTombstones(**t) for t in raw.get("topics", [])),
            files=tuple(FileRewrite(**f) for f in raw.get("files", [])),
            not_deleted=tuple(NotDeleted(**n) for n in raw.get("notDeleted", [])),
            request_id=str(raw.get("requestId", "")),
        )

    def to_pandas(self) -> pd.DataFrame:
        """One row per change: ``action`` (tombstones | rewrite | not_deleted), ``where``, counts."""
        import pandas as pd

        rows: list[dict[str, Any]] = [
            {
                "action": "tombstones",
                "kind": t.kind,
                "where": f"{t.topic}[{t.partition}]",
                "records": t.records,
                "detail": f"offsets {t.first_offset}..{t.last_offset}",
            }
            for t in self.topics
        ]
        rows += [
            {
                "action": "rewrite",
                "kind": f.kind,
                "where": f.old_path,
                "records": f.rows_removed,
                "detail": f"{f.rows_before} -> {f.rows_before - f.rows_removed} rows"
                + ("" if f.new_path == f.old_path else f", now {f.new_path}"),
            }
            for f in self.files
        ]
        rows += [
            {"action": "not_deleted", "kind": "", "where": n.where, "records": 0, "detail": n.reason}
            for n in self.not_deleted
        ]
        return pd.DataFrame(rows, columns=["action", "kind", "where", "records", "detail"])

    def render(self) -> str:
        lines = [
            f"Deleted {self.entities} entities of {self.workspace}/{self.view}: {self.tombstones} tombstones on "
            f"{len(self.topics)} topic partitions, {self.rows_removed} rows removed from {len(self.files)} files."
        ]
        lines += [
            f"  tombstones  {t.topic}[{t.partition}]  {t.records} records at offsets {t.first_offset}..{t.last_offset}"
            for t in self.topics
        ]
        for f in self.files:
            target = "" if f.new_path == f.old_path else f" -> {f.new_path}"
            lines.append(f"  rewrote     {f.old_path}{target}  -{f.rows_removed} of {f.rows_before} rows")
        lines += [f"  NOT deleted {n.where}: {n.reason}" for n in self.not_deleted]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()
