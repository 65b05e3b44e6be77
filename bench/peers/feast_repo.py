"""The Feast peer of the serving benchmark, run with the Feast venv's interpreter:

    python feast_repo.py REPO_DIR USERS.parquet MERCHANTS.parquet

writes a Feast repository in REPO_DIR (local provider, SQLite online store, file offline store)
with the same shape as featurebus's ``fraud_detection`` service: a ``user`` and a ``merchant``
entity, a 6-feature user view and a 4-feature merchant view over the given Parquet files, and
a ``fraud_detection`` feature service of all ten features. It then runs ``feast apply`` and
``feast materialize`` over the files' whole time range, so ``feast serve`` in REPO_DIR answers
for every entity. This file imports Feast and so never runs in featurebus's venv.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FEATURE_STORE_YAML = """\
project: featurebus_bench
registry: data/registry.db
provider: local
online_store:
  type: sqlite
  path: data/online_store.db
offline_store:
  type: file
entity_key_serialization_version: 3
"""

DEFINITIONS = """\
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.types import Float64, Int64

user = Entity(name="user", join_keys=["user_id"])
merchant = Entity(name="merchant", join_keys=["merchant_id"])

user_source = FileSource(path="{users}", timestamp_field="event_timestamp")
merchant_source = FileSource(path="{merchants}", timestamp_field="event_timestamp")

user_transaction_stats = FeatureView(
    name="user_transaction_stats",
    entities=[user],
    ttl=timedelta(days=2),
    schema=[
        Field(name="amount_count_10m_continuous", dtype=Int64),
        Field(name="amount_count_1h_continuous", dtype=Int64),
        Field(name="amount_sum_1h_continuous", dtype=Float64),
        Field(name="amount_mean_1h_continuous", dtype=Float64),
        Field(name="amount_sum_1d_continuous", dtype=Float64),
        Field(name="amount_mean_1d_continuous", dtype=Float64),
    ],
    online=True,
    source=user_source,
)

merchant_online_volume = FeatureView(
    name="merchant_online_volume",
    entities=[merchant],
    ttl=timedelta(days=2),
    schema=[
        Field(name="online_amount_count_1h_5m", dtype=Int64),
        Field(name="online_amount_sum_1h_5m", dtype=Float64),
        Field(name="online_amount_mean_1h_5m", dtype=Float64),
        Field(name="online_amount_sum_1d_5m", dtype=Float64),
    ],
    online=True,
    source=merchant_source,
)

fraud_detection = FeatureService(name="fraud_detection", features=[user_transaction_stats, merchant_online_volume])
"""


def main(argv: list[str]) -> int:
    repo, users, merchants = Path(argv[0]), Path(argv[1]).resolve(), Path(argv[2]).resolve()
    (repo / "data").mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(FEATURE_STORE_YAML)
    (repo / "definitions.py").write_text(DEFINITIONS.format(users=users, merchants=merchants))
    feast = str(Path(sys.executable).parent / "feast")
    subprocess.run([feast, "apply"], cwd=repo, check=True)
    # The files hold one row per entity, stamped just before the benchmark's "now".
    subprocess.run([feast, "materialize", "2000-01-01T00:00:00", "2100-01-01T00:00:00"], cwd=repo, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
