"""A deterministic fraud-style event generator, shared by the demo, the benchmarks and the tests.

The same seed gives the same events; amounts are log-normal, a few users are much busier than most, about
a third of transactions are online, and ``disorder_ms`` moves some timestamps back in time so
that events arrive out of order, as they do from real card networks.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

import orjson

from featurebus.platform.kafka.clients import reliable_producer
from featurebus.schemas.time import format_iso_ms

__all__ = ["fraud_events", "produce_events"]


def fraud_events(
    count: int,
    start_ms: int,
    span_ms: int,
    users: int = 1000,
    merchants: int = 100,
    disorder_ms: int = 0,
    seed: int = 7,
) -> Iterator[dict[str, object]]:
    """``count`` transactions spread evenly over ``[start_ms, start_ms + span_ms)``."""
    rng = random.Random(seed)
    step = span_ms / max(count, 1)
    for i in range(count):
        ts = start_ms + int(i * step)
        if disorder_ms and rng.random() < 0.2:
            ts = max(start_ms, ts - rng.randrange(disorder_ms))
        # Skewed like real card traffic but not degenerate: the busiest 1% of users make about a
        # fifth of the transactions (density of x**3 on [0, 1)), low ids being the busiest.
        user = int(users * rng.random() ** 3)
        yield {
            "transaction_id": f"t{seed}-{i}",
            "user_id": f"user_{user}",
            "merchant_id": f"merchant_{rng.randrange(merchants)}",
            "amount": round(math.exp(rng.gauss(3.0, 1.0)), 2),
            "is_online": rng.random() < 0.35,
            "timestamp": format_iso_ms(ts),
        }


def produce_events(
    bootstrap: str,
    topic: str,
    events: Iterator[dict[str, object]] | list[dict[str, object]],
    key_field: str = "user_id",
) -> int:
    """Write events as JSON, keyed by ``key_field``, with an idempotent acks=all producer."""
    produced = 0
    with reliable_producer(bootstrap, **{"linger.ms": 20, "batch.size": 1_000_000}) as producer:
        for event in events:
            producer.produce(topic, value=orjson.dumps(event), key=str(event[key_field]).encode())
            produced += 1
            if produced % 10_000 == 0:
                producer.poll(0)
    return produced
