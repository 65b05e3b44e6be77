"""The serving benchmark's data: one day of card transactions for N users, loaded into featurebus
(through the stream engine, onto the real feature topics) and, aggregated the same way, into
Feast's offline files.

featurebus is populated by running ``StreamEngine`` (the worker's own code: JSON decoding,
transformation, tiling, encoding) in this process over the generated records and publishing
its tiles to the workspace's compacted feature topics (``_TileSink``: the engine's sink over a
plain idempotent producer; there are no consumer offsets to commit with them here).
Only the Faust consumer loop is skipped: producing 350k events to a source topic and waiting
for a worker would add minutes to a benchmark about reads and measure nothing it reports. The
serving processes then build their online stores from those topics through their own
``OnlineMaterializer``, exactly as in production.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from confluent_kafka import Producer

from featurebus.platform.kafka.admin import TopicConfig, ensure_topics
from featurebus.platform.kafka.clients import DeliveryTracker, producer_config
from featurebus.platform.kafka.topics import feature_topic
from featurebus.platform.kv import RocksStore
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.schemas.time import format_iso_ms
from featurebus.streams.runtime.engine import Progress, RawRecord, StreamEngine

__all__ = ["Dataset", "make_dataset", "publish_tiles", "feast_tables", "FEATURE_PARTITIONS"]

log = logging.getLogger(__name__)

FEATURE_PARTITIONS = 2
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Dataset:
    events: pd.DataFrame  # transaction_id, user_id, merchant_id, amount, is_online, ts_ms; by time
    users: int
    merchants: int
    now_ms: int  # the events span the day before this

    def user(self, i: int) -> str:
        return f"user_{i}"

    def merchant(self, i: int) -> str:
        return f"merchant_{i}"


def make_dataset(users: int, merchants: int, seed: int = 11, now_ms: int | None = None) -> Dataset:
    """1 to 6 transactions per user (3.5 on average), spread uniformly over the last 23 hours,
    each at a random merchant, about half of them card-not-present."""
    rng = np.random.default_rng(seed)
    now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    per_user = rng.integers(1, 7, size=users)
    user_index = np.repeat(np.arange(users), per_user)
    n = len(user_index)
    ts = now_ms - rng.integers(1_000, 23 * 3_600_000, size=n)
    order = np.argsort(ts, kind="stable")
    events = pd.DataFrame(
        {
            "transaction_id": [f"t{i}" for i in range(n)],
            "user_id": [f"user_{u}" for u in user_index[order]],
            "merchant_id": [f"merchant_{m}" for m in rng.integers(0, merchants, size=n)],
            "amount": np.round(rng.lognormal(3.0, 1.0, size=n), 2),
            "is_online": rng.random(n) < 0.5,
            "ts_ms": ts[order],
        }
    )
    return Dataset(events, users, merchants, now_ms)


class _TileSink:
    """``FeatureSink`` of the stream engine over an idempotent ``acks=all`` producer."""

    def __init__(self, bootstrap: str) -> None:
        self._tracker = DeliveryTracker(Producer(producer_config(bootstrap, **{"linger.ms": 5})), bootstrap)

    def publish(self, topic: str, partition: int, key: bytes, value: bytes | None) -> None:
        self._tracker.produce(topic, value=value, key=key, partition=partition)

    def dead_letter(self, record: RawRecord, reason: str) -> None:
        raise RuntimeError(f"generated record {record.offset} was rejected: {reason}")

    def commit(self, progress: dict[tuple[str, int], Progress]) -> None:
        self._tracker.flush(timeout_s=60.0)


def publish_tiles(bootstrap: str, spec: WorkspaceSpec, source_topic: str, data: Dataset, batch: int = 20_000) -> int:
    """Run the stream engine over ``data`` and publish its tiles to the feature topics; returns
    the number of events processed."""
    topics = {v.name: (feature_topic(spec.name, v.name), FEATURE_PARTITIONS) for v in spec.stream_feature_views}
    ensure_topics(bootstrap, [TopicConfig(name, parts, compacted=True) for name, parts in topics.values()])
    sink = _TileSink(bootstrap)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="featurebus-bench-engine-") as state_dir:
        store = RocksStore(Path(state_dir))
        try:
            engine = StreamEngine(spec, store, sink, topics.__getitem__)
            records = [
                orjson.dumps(
                    {
                        "transaction_id": t,
                        "user_id": u,
                        "merchant_id": m,
                        "amount": a,
                        "is_online": bool(o),
                        "timestamp": format_iso_ms(int(ts)),
                    }
                )
                for t, u, m, a, o, ts in zip(
                    data.events["transaction_id"],
                    data.events["user_id"],
                    data.events["merchant_id"],
                    data.events["amount"],
                    data.events["is_online"],
                    data.events["ts_ms"],
                    strict=True,
                )
            ]
            for start in range(0, len(records), batch):
                engine.process(
                    [
                        RawRecord(source_topic, 0, start + i, value)
                        for i, value in enumerate(records[start : start + batch])
                    ]
                )
            sink.commit({})
        finally:
            store.close()
    counters = engine.counters
    if counters.processed != len(records) or counters.dropped_late or counters.dead_lettered:
        raise RuntimeError(f"the engine did not take every generated event: {counters}")
    log.info(
        "engine: %d events -> %d tiles on the feature topics in %.1fs",
        counters.processed,
        counters.tiles_written,
        time.monotonic() - started,
    )
    return counters.processed


def feast_tables(data: Dataset) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The same ten features, aggregated at ``data.now_ms`` (Feast stores values, not windows):
    ``(per user: 6 columns, per merchant: 4 columns)``, each with an ``event_timestamp``."""
    ev = data.events
    age = data.now_ms - ev["ts_ms"]

    def window(frame: pd.DataFrame, key: str, column: pd.Series, ms: int) -> Any:
        mask = age[frame.index] < ms
        return column[mask].groupby(frame.loc[mask, key])

    amount = ev["amount"]
    users = pd.DataFrame({"user_id": [data.user(i) for i in range(data.users)]}).set_index("user_id")
    users["amount_count_10m_continuous"] = window(ev, "user_id", amount, 600_000).count()
    users["amount_count_1h_continuous"] = window(ev, "user_id", amount, 3_600_000).count()
    users["amount_sum_1h_continuous"] = window(ev, "user_id", amount, 3_600_000).sum()
    users["amount_mean_1h_continuous"] = window(ev, "user_id", amount, 3_600_000).mean()
    users["amount_sum_1d_continuous"] = window(ev, "user_id", amount, DAY_MS).sum()
    users["amount_mean_1d_continuous"] = window(ev, "user_id", amount, DAY_MS).mean()
    online = ev[ev["is_online"]]
    merchants = pd.DataFrame({"merchant_id": [data.merchant(i) for i in range(data.merchants)]}).set_index(
        "merchant_id"
    )
    merchants["online_amount_count_1h_5m"] = window(online, "merchant_id", online["amount"], 3_600_000).count()
    merchants["online_amount_sum_1h_5m"] = window(online, "merchant_id", online["amount"], 3_600_000).sum()
    merchants["online_amount_mean_1h_5m"] = window(online, "merchant_id", online["amount"], 3_600_000).mean()
    merchants["online_amount_sum_1d_5m"] = window(online, "merchant_id", online["amount"], DAY_MS).sum()
    stamp = pd.Timestamp(data.now_ms - 1, unit="ms", tz="UTC")
    out = []
    for frame in (users, merchants):
        counts = [c for c in frame.columns if "_count_" in c]
        frame[counts] = frame[counts].fillna(0).astype("int64")
        frame = frame.reset_index()
        frame["event_timestamp"] = stamp
        out.append(frame)
    return out[0], out[1]
