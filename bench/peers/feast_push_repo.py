"""The Feast peer of the ingestion benchmark, run with the Feast venv's interpreter:

    python feast_push_repo.py REPO_DIR

writes a Feast repository in REPO_DIR (local provider, SQLite online store, file offline store)
holding what featurebus's ingestion benchmark pushes to: a ``user`` entity, a ``PushSource``
``clicks_push`` (over an empty Parquet batch source of the same columns) and a ``user_clicks``
feature view of its ``price`` and ``quantity``, then runs ``feast apply``. ``feast serve`` in
REPO_DIR then takes ``POST /push`` batches of those records. This file imports Feast (and
pandas from Feast's venv) and so never runs in featurebus's venv.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FEATURE_STORE_YAML = """\
project: featurebus_ingest_bench
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

from feast import Entity, FeatureView, Field, FileSource, PushSource
from feast.types import Float64, Int64

user = Entity(name="user", join_keys=["user_id"])

clicks_push = PushSource(
    name="clicks_push",
    batch_source=FileSource(path="{history}", timestamp_field="ts"),
)

user_clicks = FeatureView(
    name="user_clicks",
    entities=[user],
    ttl=timedelta(days=2),
    schema=[Field(name="price", dtype=Float64), Field(name="quantity", dtype=Int64)],
    online=True,
    source=clicks_push,
)
"""


def main(argv: list[str]) -> int:
    import pandas as pd

    repo = Path(argv[0])
    (repo / "data").mkdir(parents=True, exist_ok=True)
    history = (repo / "data" / "clicks.parquet").resolve()
    pd.DataFrame(
        {
            "user_id": pd.Series([], dtype="string"),
            "price": pd.Series([], dtype="float64"),
            "quantity": pd.Series([], dtype="int64"),
            "ts": pd.Series([], dtype="datetime64[ns, UTC]"),
        }
    ).to_parquet(history)
    (repo / "feature_store.yaml").write_text(FEATURE_STORE_YAML)
    (repo / "definitions.py").write_text(DEFINITIONS.format(history=history))
    subprocess.run([str(Path(sys.executable).parent / "feast"), "apply"], cwd=repo, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
