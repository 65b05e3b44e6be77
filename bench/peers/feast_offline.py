"""Feast's side of the offline benchmark: ``get_historical_features`` over a precomputed table.

Runs in ``bench/.venvs/feast`` (Feast pins its own pandas/pyarrow), one process per store kind,
so its peak RSS is its own. Usage::

    python feast_offline.py REPO_DIR FEATURES_PARQUET SPINE_PARQUET {file,duckdb}

FEATURES_PARQUET has ``user_id``, ``event_timestamp`` and one column per feature: the value of
every window just after each event. The feature view's ``ttl`` is the longest window (1 day), so
Feast's as-of join finds the latest row at or before each spine time within a day. Applying the
repository is not timed; ``get_historical_features(...).to_df()`` is. Prints one JSON object.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource
from feast.types import Float64, Int64
from feast.value_type import ValueType

FEATURES = {
    "amount_count_10m_continuous": Int64,
    "amount_count_1h_continuous": Int64,
    "amount_sum_1h_continuous": Float64,
    "amount_mean_1h_continuous": Float64,
    "amount_sum_1d_continuous": Float64,
    "amount_mean_1d_continuous": Float64,
}


def main(repo: Path, features: Path, spine_path: Path, kind: str) -> None:
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(
        "project: featurebus_bench\n"
        f"registry: {repo / 'registry.db'}\n"
        "provider: local\n"
        f"online_store:\n  type: sqlite\n  path: {repo / 'online.db'}\n"
        f"offline_store:\n  type: {kind}\n"
        "entity_key_serialization_version: 3\n"
    )
    store = FeatureStore(repo_path=str(repo))
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
    source = FileSource(name="user_stats_source", path=str(features), timestamp_field="event_timestamp")
    view = FeatureView(
        name="user_transaction_stats",
        entities=[user],
        ttl=timedelta(days=1),
        schema=[Field(name=name, dtype=dtype) for name, dtype in FEATURES.items()],
        source=source,
        online=False,
    )
    store.apply([user, view])
    spine = pd.read_parquet(spine_path)
    # Wall-clock start, for the harness if it has to kill this process at a cap.
    (repo / "timing_started").write_text(str(time.time()))
    started = time.perf_counter()
    frame = store.get_historical_features(
        entity_df=spine, features=[f"user_transaction_stats:{name}" for name in FEATURES]
    ).to_df()
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": seconds,
                "rows": len(frame),
                "non_null": int(frame[list(FEATURES)[-1]].notna().sum()),
                "peak_rss_bytes": _peak_rss_bytes(),
            }
        )
    )


def _peak_rss_bytes() -> int:
    """This process's peak RSS: VmHWM, which starts afresh at exec (``ru_maxrss`` would carry
    the forking parent's size over into a child that never reached it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4])
