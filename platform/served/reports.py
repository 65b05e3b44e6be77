"""The last drift and parity reports of the monitor loops, next to the offline store.

    <root>/monitoring/<workspace>/<kind>/<name>.json      kind: "drift" (per view) | "parity" (per service)

Written atomically by the offline materializer process's monitor (``feature_monitor``) and read
by the control plane's routes, so both sides need only the offline store's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from featurebus.platform.files.atomic import atomic_write
from featurebus.schemas.errors import NotFoundError

__all__ = ["ReportStore"]

REPORT_FORMAT_VERSION = 1


class ReportStore:
    def __init__(self, root: Path) -> None:
        self._root = root

    def _path(self, workspace: str, kind: str, name: str) -> Path:
        return self._root / "monitoring" / workspace / kind / f"{name}.json"

    def write(self, workspace: str, kind: str, name: str, report: dict[str, Any]) -> None:
        document = {"format": REPORT_FORMAT_VERSION, **report}
        atomic_write(self._path(workspace, kind, name), orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY))

    def read(self, workspace: str, kind: str, name: str) -> dict[str, Any]:
        path = self._path(workspace, kind, name)
        if not path.exists():
            raise NotFoundError(
                f"no {kind} report for {name!r} in workspace {workspace!r} yet: the monitor of the offline "
                "materializer process writes one once the feature service logs requests (LoggingConfig)"
            )
        document: dict[str, Any] = orjson.loads(path.read_bytes())
        if document.get("format") != REPORT_FORMAT_VERSION:
            raise NotFoundError(f"{path} has another format; the monitor rewrites it on its next run")
        document.pop("format")
        return document
