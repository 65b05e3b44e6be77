"""How long the local Kafka 4.x broker (KRaft, one JVM) takes from launch to answering metadata.

Nothing to compare it with on this machine (there is no other way to get a broker here), so the
line has no peer. Fresh brokers with empty storage each time, median of the repetitions; the
jars are resolved before the clock starts (``LocalKafka.started_in_s`` counts JVM launch to
first metadata answer only).
"""

from __future__ import annotations

import logging
from typing import Any

from bench.harness import BenchContext, emit, median
from featurebus.platform.kafka.broker import LocalKafka

log = logging.getLogger(__name__)


def run(ctx: BenchContext) -> list[dict[str, Any]]:
    repeats = 1 if ctx.quick else 3
    samples: list[float] = []
    for i in range(repeats):
        broker = LocalKafka()  # a temporary directory, removed by stop()
        try:
            broker.start(timeout_s=120)
            assert broker.started_in_s is not None
            samples.append(broker.started_in_s)
            log.info("broker %d/%d answered after %.2fs", i + 1, repeats, broker.started_in_s)
        finally:
            broker.stop()
    return [emit("kafka", "broker_start_s", median(samples), "s", None, None, {"samples": samples})]
