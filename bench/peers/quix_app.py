"""The Quix Streams peer of ``bench_stream``: the fraud example's six user aggregations.

Runs inside the peer venv (``bench/.venvs/quix``), never inside featurebus's own: Quix pins a
confluent-kafka older than the one featurebus needs. It therefore imports nothing from featurebus
or from the bench package. The harness starts it as a subprocess and stops it by PID.

Same workload as ``examples/fraud``'s ``user_transaction_stats``: per ``user_id`` (the record key),
count 10m, count 1h, sum 1h, mean 1h, sum 1d and mean 1d of ``amount``, on event time taken from
the record's ``timestamp`` field, with a 10-minute grace (the source's watermark delay). Results
go to one output topic, as featurebus's tiles go to its feature topics.

Window choice: Quix's ``sliding_window`` is the exact counterpart of featurebus's continuous mode
(a value per event, no step). Its cost per event grows with the number of the key's events inside
the window, so on skewed keys it is slow; that is Quix's real behaviour on this workload, and the
harness caps its run time rather than switching semantics. ``--windows hopping`` (the closest
cheaper approximation: ``step_ms`` granularity) is available to compare by hand.
"""

from __future__ import annotations

import argparse
import logging
from datetime import datetime, timedelta
from typing import Any

from quixstreams import Application
from quixstreams.dataframe.windows import aggregations as agg
from quixstreams.models import TimestampType

# (window, {output name: aggregator}) exactly as user_transaction_stats names its features.
_WINDOWS: list[tuple[timedelta, str, dict[str, Any]]] = [
    (timedelta(minutes=10), "10m", {"amount_count_10m_continuous": agg.Count()}),
    (
        timedelta(hours=1),
        "1h",
        {
            "amount_count_1h_continuous": agg.Count(),
            "amount_sum_1h_continuous": agg.Sum("amount"),
            "amount_mean_1h_continuous": agg.Mean("amount"),
        },
    ),
    (
        timedelta(days=1),
        "1d",
        {"amount_sum_1d_continuous": agg.Sum("amount"), "amount_mean_1d_continuous": agg.Mean("amount")},
    ),
]
GRACE = timedelta(minutes=10)  # = the fraud source's watermark_delay_threshold


def event_time_ms(value: Any, headers: Any, timestamp: float, timestamp_type: TimestampType) -> int:
    """Event time from the JSON ``timestamp`` field (ISO-8601, ms, "Z"), as featurebus reads it."""
    return int(datetime.fromisoformat(value["timestamp"]).timestamp() * 1000)


def build(args: argparse.Namespace) -> Application:
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        # Same guarantee as featurebus's worker, which commits every micro-batch in a Kafka
        # transaction: exactly-once. Quix commits its transaction every second (default 5 s),
        # so "committed offsets reached the end" stays comparable.
        processing_guarantee="exactly-once",
        commit_interval=1.0,
        loglevel="WARNING",
    )
    source = app.topic(args.topic, key_deserializer="str", value_deserializer="json", timestamp_extractor=event_time_ms)
    output = app.topic(args.output, key_serializer="str", value_serializer="json")
    sdf = app.dataframe(source)
    for window, label, aggregators in _WINDOWS:
        if args.windows == "sliding":
            defined = sdf.sliding_window(duration_ms=window, grace_ms=GRACE, name=f"user_{label}")
        else:
            step = min(timedelta(milliseconds=args.step_ms), window)
            defined = sdf.hopping_window(duration_ms=window, step_ms=step, grace_ms=GRACE, name=f"user_{label}")
        # A branch per window size: each emits its updated values for every event, like
        # featurebus publishes each touched tile.
        defined.agg(**aggregators).current().to_topic(output)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--windows", choices=["sliding", "hopping"], default="sliding")
    parser.add_argument("--step-ms", type=int, default=60_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    build(args).run()  # until SIGTERM/SIGINT: Quix commits and closes cleanly on either


if __name__ == "__main__":
    main()
