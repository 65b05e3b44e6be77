"""A child process for the batch-view offline crash test: materializes a batch view offline over
a list of ranges, one after another, through the real entry point (``materialize_view``).

Usage: ``python -m tests.support.batch_writer SPEC_JSON ROOT VIEW RANGES_JSON``; prints ``ready``
once imports are done (so the parent times its kill from the work, not from interpreter start-up)
and ``done`` at the end.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from featurebus.platform.batch.materialize import materialize_view
from featurebus.schemas.specs import WorkspaceSpec

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def main(spec_path: str, root: str, view: str, ranges_path: str) -> None:
    spec = WorkspaceSpec.from_json(Path(spec_path).read_bytes())
    ranges = orjson.loads(Path(ranges_path).read_bytes())
    print("ready", flush=True)
    for lo_ms, hi_ms in ranges:
        # Offline only: no broker is involved, the bootstrap address is never used.
        materialize_view(
            "127.0.0.1:9",
            Path(root),
            spec,
            view,
            _EPOCH + timedelta(milliseconds=lo_ms),
            _EPOCH + timedelta(milliseconds=hi_ms),
            online=False,
            offline=True,
        )
    print("done", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
