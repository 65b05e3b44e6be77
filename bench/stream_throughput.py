"""Sustained events/s through the fraud example: featurebus and Quix Streams on the same topic.

Per repetition: a fresh topic (4 partitions) is filled with N generated transactions *before*
anything consumes it, so both engines start with a full backlog and what is measured is how
fast they work it off, not how fast the producer is. featurebus gets a fresh workspace and a
whole platform (worker, serving with its online materializer, offline materializer — they share
the 2 cores, as they would in ``featurebus up``); Quix gets a fresh consumer group. Both are
timed by the same outside observer (``kafka_progress``): from the first output record (and, for
``incl_startup``, from process launch) to when the group's commits reached the topic's end and
the output stopped growing. featurebus must additionally serve the right 1-day sums over HTTP
for the three hottest users and the user of the very last event: "produce to online store".
"""

from __future__ import annotations

import logging
import math
import signal
import subprocess
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.fraud_setup import FeatureClient, apply_fraud, feature_topics, platform_home
from bench.harness import BENCH_DIR, BenchContext
from bench.kafka_progress import CatchUp, OffsetReader, watch_catch_up
from bench.peer_venv import QUIX_VERSION, quix_python
from bench.profiling import WorkerProfiler
from featurebus.platform.kafka.admin import TopicConfig, ensure_topics
from featurebus.platform.kafka.topics import worker_group
from featurebus.platform.local.generator import fraud_events, produce_events
from featurebus.platform.local.up import LocalPlatform

__all__ = ["Backlog", "make_backlog", "run_featurebus", "run_quix"]

log = logging.getLogger(__name__)

PARTITIONS = 4
SPAN_MS = 3_600_000  # the events cover the hour before now: every window of the example sees them
QUIX_APP = BENCH_DIR / "peers" / "quix_app.py"


@dataclass
class Backlog:
    topic: str
    events: int
    ends: dict[int, int]
    sums: dict[str, float]  # expected amount_sum_1d per user (all events are within a day)
    probe_users: list[str] = field(default_factory=list)  # users whose sums prove catch-up


def make_backlog(bootstrap: str, topic: str, events: int, users: int, seed: int) -> Backlog:
    ensure_topics(bootstrap, [TopicConfig(topic, PARTITIONS)])
    now_ms = int(time.time() * 1000)
    generated = list(fraud_events(events, now_ms - SPAN_MS, SPAN_MS, users=users, merchants=100, seed=seed))
    started = time.monotonic()
    produce_events(bootstrap, topic, generated)
    log.info("produced %d events to %s in %.1fs", len(generated), topic, time.monotonic() - started)
    sums: dict[str, float] = defaultdict(float)
    for e in generated:
        sums[str(e["user_id"])] += float(e["amount"])  # type: ignore[arg-type]
    reader = OffsetReader(bootstrap)
    try:
        ends = reader.end_offsets(topic)
    finally:
        reader.close()
    if sum(ends.values()) != len(generated):
        raise RuntimeError(f"{topic} holds {sum(ends.values())} records, expected {len(generated)}")
    hottest = [u for u, _ in Counter(str(e["user_id"]) for e in generated).most_common(3)]
    # The last event of the run is one of the last a worker processes; with the hottest users
    # (whose tiles keep changing to the end) they make a cheap "has it all arrived" probe.
    last = [str(generated[-1]["user_id"])]
    return Backlog(topic, len(generated), ends, dict(sums), list(dict.fromkeys(hottest + last)))


def _sums_visible(client: FeatureClient, backlog: Backlog) -> bool:
    try:
        rows = client.features(backlog.probe_users)
    except Exception as exc:  # serving may still be subscribing to the feature topics
        log.debug("probe failed: %s", exc)
        return False
    for user, row in zip(backlog.probe_users, rows, strict=True):
        served = row.get("amount_sum_1d_continuous")
        expected = backlog.sums[user]
        if served is None or not math.isclose(float(served), expected, rel_tol=1e-6):
            return False
    return True


def run_featurebus(
    ctx: BenchContext, bootstrap: str, backlog: Backlog, workspace: str, timeout_s: float, profile: Path | None = None
) -> CatchUp:
    spec, secret = apply_fraud(bootstrap, workspace, backlog.topic)
    platform = LocalPlatform(platform_home(ctx.scratch("platforms"), workspace), workspace, bootstrap=bootstrap)
    reader = OffsetReader(bootstrap)
    launched = time.monotonic()
    platform.start()
    client = FeatureClient(platform.serving_url, workspace, secret)
    profiler = WorkerProfiler(platform.pids()["worker"], profile) if profile else None
    try:
        result = watch_catch_up(
            reader,
            group=worker_group(workspace),
            source_topic=backlog.topic,
            source_ends=backlog.ends,
            output_topics=feature_topics(spec),
            started_at=launched,
            timeout_s=timeout_s,
            check=lambda: _sums_visible(client, backlog),
            alive=platform.check,
        )
        if not result.finished:
            log.warning("featurebus did not finish: %s\nworker log:\n%s", result.notes, platform.log_tail("worker"))
        return result
    finally:
        if profiler is not None:
            profiler.stop()
        client.close()
        reader.close()
        platform.stop()


def run_quix(ctx: BenchContext, bootstrap: str, backlog: Backlog, name: str, timeout_s: float) -> CatchUp:
    python = quix_python()
    output = f"{name}.out"
    group = f"{name}.group"
    ensure_topics(bootstrap, [TopicConfig(output, PARTITIONS)])
    state_dir = ctx.scratch(f"quix/{name}")
    log_path = state_dir / "quix.log"
    reader = OffsetReader(bootstrap)
    command = [
        str(python),
        str(QUIX_APP),
        "--bootstrap",
        bootstrap,
        "--topic",
        backlog.topic,
        "--output",
        output,
        "--group",
        group,
        "--state-dir",
        str(state_dir / "state"),
    ]
    launched = time.monotonic()
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    log.info("started Quix Streams (pid %d), log %s", process.pid, log_path)

    def alive() -> None:
        if process.poll() is not None:
            raise RuntimeError(f"the Quix app exited with {process.returncode}:\n{_tail(log_path)}")

    try:
        return watch_catch_up(
            reader,
            group=group,
            source_topic=backlog.topic,
            source_ends=backlog.ends,
            output_topics=[output],
            started_at=launched,
            timeout_s=timeout_s,
            alive=alive,
        )
    finally:
        reader.close()
        _stop(process)


def _stop(process: subprocess.Popen[bytes], grace_s: float = 30.0) -> None:
    """SIGTERM by PID (Quix commits and closes), SIGKILL if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            log.warning("Quix (pid %d) ignored SIGTERM for %gs; killing it", process.pid, grace_s)
            process.kill()
            process.wait()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def quix_label() -> str:
    return f"quixstreams {QUIX_VERSION} (sliding windows)"


def describe(result: CatchUp) -> dict[str, Any]:
    return {
        "finished": result.finished,
        "consumed": result.consumed,
        "output_records": result.output_records,
        "first_output_after_s": None
        if result.first_output_at is None
        else round(result.first_output_at - result.started_at, 2),
        "notes": result.notes,
    }
