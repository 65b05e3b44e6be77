"""A PyFlink job per live workspace: Kafka source -> keyed engine step -> transactional Kafka sink.

    source topics ─► Kafka table source (raw bytes + topic/partition/offset metadata)
                  ─► per source partition, a processing-time TUMBLE of ``batch_ms`` collecting
                     its offsets and values as two ARRAY_AGGs (in the JVM: one Python element per batch)
                  ─► keyed by source partition in the JVM ─► ShardBatches (StreamEngine over keyed
                     RocksDB state)
                  ─► Kafka table sink (exactly-once: transactions committed on checkpoints)
                  ─► the workspace's feature topics (and dead-letter topic), as the native worker writes them

The records the sink writes are the native engine's, byte for byte, because the native engine's
batch step computes them (``shard_function``). What Flink adds: its checkpoints hold the source
offsets, every shard's state and the sink's pre-committed transaction together, so a failure
rewinds all three to the last checkpoint (the native worker gets the same from Kafka
transactions plus its restore from the feature topics). Stopped by this process, the job takes a
savepoint and the next start resumes from it, at any parallelism.

Where the time goes (profiled on a backlog at parallelism 2: JFR on the JVM, py-spy and /proc CPU
time on the Python workers; a 2-core machine shared with other work, so shares, not absolutes):
about 80% of the job's CPU is the JVM's and 20% Python's (the engine's step about half of that,
Beam's coders and gRPC the rest). Of the JVM's sampled time: the Python operator's Java side
(Beam coding, gRPC, one Row per output record) about 25%, checkpointing (the RocksDB snapshot,
the Python bundle flush it forces, the sink's pre-commit) 15-30%, the Kafka sink and its producer
threads about 20%, the window operator about 10%, the source about 10%. In all about 120 us of
CPU per event against the native worker's 20 us in one Python process: the native worker folds
and produces a batch where Flink serialises it four times (source -> window -> Python -> sink)
and snapshots its state three times a second. PyFlink's ``key_by`` no longer runs a Python
operator of its own that decoded and re-encoded every whole batch (``shard_function.keyed_in_jvm``).
In a local mini-cluster PyFlink runs every subtask's Python in this client process (one GIL at
parallelism 2; on a cluster each TaskManager has its own): Python being a fifth of the CPU, that
costs little, and it keeps the workers' log lines in this process's log.

Freshness: an event waits for its micro-batch (``batch_ms``), crosses three network exchanges
(``execution.buffer-timeout``: 10 ms here, Flink's 100 ms default cost up to 300 ms), a Python
bundle (20 ms), and becomes visible to read_committed readers when the checkpoint after it
completes and the sink commits (``checkpoint_interval_ms`` plus the checkpoint's own duration).

Definitions follow the job (``run_flink_worker``; ``follow.py`` decides when, ``definitions.py``
says how a shard catches up): an apply that changes what the job computes stops it with a
savepoint and restarts it from there with the new spec; every shard, before its next batch or
timer, drops the state of removed views and recomputes changed or new views from the source log
with the native worker's own rebuild code, so the feature topics end as the native worker's do.

Where it differs from the native worker, and why:
- on an apply, processing pauses for the stop and restart (the job graph holds the definitions;
  the native worker swaps its engine between two batches), and a shard is recomputed when it is
  next touched (a batch, or its expiry timer at most 30 s after the restart; Flink gives an
  operator no key context before that); a removed view's state is deleted (the native worker
  leaves it unused in its store), so when the view comes back its old records on the feature
  topic are what the recomputation diffs against; a job submitted to a cluster (``detached``)
  does not follow: no process of ours watches the registry for it;
- records without a value (tombstones) on a source topic are skipped by Flink's raw format
  instead of dead-lettered (the connector hands the format no record to reject);
- the feature-topic partition of a record is chosen by the sink's partitioner from its key
  rather than from its shard: every update of a tile still goes to one partition (so compaction
  keeps the latest), but a native worker taking over the workspace restores nothing from it and
  recomputes from the source log instead;
- lateness is decided per source partition by the engine (as natively); Flink's own watermarks
  play no part in it, because Flink merges them across partitions, which would drop other
  events than the native engine drops.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from prometheus_client import REGISTRY

from featurebus.platform.files.atomic import atomic_write
from featurebus.platform.flink import check_flink_installed, ensure_flink_jars
from featurebus.platform.kafka.admin import TopicConfig, ensure_topics, partition_counts
from featurebus.platform.kafka.security import security_for
from featurebus.platform.kafka.topics import dead_letter_topic, feature_topic, flink_group
from featurebus.platform.monitoring.exposition import serve_metrics
from featurebus.platform.registry import KafkaRegistry, wait_for_workspace
from featurebus.schemas.errors import FeaturebusError, NotFoundError
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.streams.runtime.flink.follow import DefinitionsFollower
from featurebus.streams.runtime.flink.metrics import FlinkJobCollector
from featurebus.streams.runtime.workspace_watch import WorkspaceDeletedError, WorkspaceWatch

__all__ = [
    "FlinkJobSettings",
    "flink_group",
    "last_savepoint",
    "build_job",
    "prepare_topics",
    "run_flink_worker",
    "submit_in_cluster_client",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlinkJobSettings:
    bootstrap: str
    workspace: str
    home: Path  # checkpoints and savepoints go under <home>/flink/<workspace>/
    parallelism: int = 1
    # How long a source partition's records gather (in the JVM) before one engine step, and how
    # often the sink's transaction commits (with each checkpoint): together the freshness floor.
    # Each checkpoint costs CPU (a RocksDB snapshot, a Python bundle flush, a Kafka commit): 300 ms
    # keeps an event's p99 to visibility under a second with the engine keeping up.
    batch_ms: int = 100
    checkpoint_interval_ms: int = 300
    jobmanager: str | None = None  # HOST:PORT of a cluster's REST endpoint; None runs in this process
    savepoint: str | None = None  # restore from this savepoint (or retained checkpoint)
    # Restarting with new definitions: state of operators the new job lacks is dropped, not refused.
    ignore_unclaimed_state: bool = False
    # In-process runs: the mini-cluster's REST API on this port of 127.0.0.1 (metrics.py reads the
    # job's counters there); None leaves Flink's default.
    rest_port: int | None = None

    @property
    def state_dir(self) -> Path:
        return self.home / "flink" / self.workspace


def prepare_topics(bootstrap: str, spec: WorkspaceSpec) -> dict[str, tuple[str, int]]:
    """Create the feature topics (with their source's partitions) and the dead-letter topic, as
    the native worker does; ``view -> (feature topic, partitions)`` of every online view."""
    source_topics = sorted({t for s in spec.stream_sources for t in s.kafka.topics})
    counts = partition_counts(bootstrap, source_topics)
    missing = [t for t in source_topics if t not in counts]
    if missing:
        raise NotFoundError(
            f"source topics {missing} do not exist on {bootstrap}; create them or fix KafkaConfig(topics=...)"
        )
    topics = {
        view.name: (feature_topic(spec.name, view.name), max(counts[t] for t in spec.source(view.source).kafka.topics))
        for view in spec.stream_feature_views
    }
    ensure_topics(
        bootstrap,
        [TopicConfig(name, partitions, compacted=True) for name, partitions in topics.values()]
        + [TopicConfig(dead_letter_topic(spec.name))],
    )
    return topics


def _configuration(settings: FlinkJobSettings) -> Any:
    from pyflink.common import Configuration

    jars = ";".join(jar.resolve().as_uri() for jar in ensure_flink_jars())
    checkpoints = (settings.state_dir / "checkpoints").resolve()
    savepoints = (settings.state_dir / "savepoints").resolve()
    config = Configuration()
    values = {
        "pipeline.jars": jars,
        "pipeline.name": f"featurebus {settings.workspace}",
        "parallelism.default": str(settings.parallelism),
        "python.executable": sys.executable,  # the task managers' Python: this one, with featurebus
        "python.client.executable": sys.executable,
        "state.backend.type": "rocksdb",
        # Checkpoints every half second must stay cheap: only the RocksDB files new since the last.
        "execution.checkpointing.incremental": "true",
        "execution.checkpointing.interval": f"{settings.checkpoint_interval_ms} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.dir": checkpoints.as_uri(),
        "execution.checkpointing.savepoint-dir": savepoints.as_uri(),
        # Keep the last checkpoint when the job is cancelled: a restart resumes from it.
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "restart-strategy.type": "fixed-delay",
        "restart-strategy.fixed-delay.attempts": "1000",
        "restart-strategy.fixed-delay.delay": "2 s",
        # Latency along the way to the sink: the records of a micro-batch cross three exchanges
        # (source -> window -> engine step -> sink); each holds a partly filled network buffer for
        # up to this long (Flink's default, 100 ms, added up to 300 ms of every record's freshness).
        "execution.buffer-timeout.interval": "10 ms",
        # The Python operator returns its output when its bundle ends.
        "python.fn-execution.bundle.time": "20",
        # Chained operators hand records over without a defensive copy (the SQL operators and the
        # Python operator's serializer never keep or mutate a record they passed on).
        "pipeline.object-reuse": "true",
    }
    if settings.savepoint is not None:
        values["execution.state-recovery.path"] = settings.savepoint
    if settings.rest_port is not None:
        values["rest.bind-address"] = "127.0.0.1"
        values["rest.port"] = str(settings.rest_port)
        # The REST API serves metrics the JobManager fetched: every second, not every 10 s.
        values["metrics.fetcher.update-interval"] = "1000"
    if settings.ignore_unclaimed_state:
        values["execution.state-recovery.ignore-unclaimed-state"] = "true"
    for key, value in values.items():
        config.set_string(key, value)
    return config


_SHADED_KAFKA = "org.apache.flink.kafka.shaded.org.apache.kafka"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def build_job(settings: FlinkJobSettings, spec: WorkspaceSpec, feature_topics: dict[str, tuple[str, int]]) -> Any:
    """The job's statement set (not yet executed) for ``spec``'s online views."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    from featurebus.streams.runtime.flink.following import FollowingShardBatches
    from featurebus.streams.runtime.flink.shard_function import (
        BATCH_ROWS_TYPE,
        OUTPUT_TYPE,
        SHARD_KEY_SQL,
        keyed_in_jvm,
    )

    source_topics = sorted(
        {t for view in spec.stream_feature_views if view.online for t in spec.source(view.source).kafka.topics}
    )
    if not source_topics:
        raise FeaturebusError(
            f"workspace {spec.name!r} has no online stream feature view: the Flink job has nothing to compute"
        )
    # The sink writes to the topic each row names; the connector wants the list of them.
    sink_topics = sorted({topic for topic, _ in feature_topics.values()} | {dead_letter_topic(spec.name)})
    env = StreamExecutionEnvironment.get_execution_environment(_configuration(settings))
    t_env = StreamTableEnvironment.create(env)
    bootstrap = _quote(settings.bootstrap)
    # The process's Kafka principal (security.security_for), for the connector's Java clients,
    # whose classes flink-sql-connector-kafka relocates (the JAAS login module is named by class).
    java_client = security_for(settings.bootstrap).java_client(_SHADED_KAFKA)
    security = "".join(f"\n            'properties.{key}' = {_quote(value)}," for key, value in java_client.items())
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE featurebus_source (
            `value` BYTES,
            `topic` STRING METADATA VIRTUAL,
            `partition` INT METADATA VIRTUAL,
            `offset` BIGINT METADATA VIRTUAL,
            `arrived` AS PROCTIME()
        ) WITH (
            'connector' = 'kafka',
            'topic' = {_quote(";".join(source_topics))},
            'properties.bootstrap.servers' = {bootstrap},{security}
            'properties.group.id' = {_quote(flink_group(spec.name))},
            'properties.isolation.level' = 'read_committed',
            'scan.startup.mode' = 'earliest-offset',
            'format' = 'raw'
        )""")
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE featurebus_sink (
            `key` BYTES,
            `value` BYTES,
            `topic` STRING METADATA,
            `headers` MAP<STRING, BYTES> METADATA
        ) WITH (
            'connector' = 'kafka',
            'topic' = {_quote(";".join(sink_topics))},
            'properties.bootstrap.servers' = {bootstrap},{security}
            'key.format' = 'raw',
            'key.fields' = 'key',
            'value.format' = 'raw',
            'value.fields-include' = 'EXCEPT_KEY',
            'sink.delivery-guarantee' = 'exactly-once',
            'sink.transactional-id-prefix' = {_quote(f"featurebus.{spec.name}.flink")},
            -- Reuse a small pool of transactional ids (and their producers) instead of a new id per
            -- checkpoint: every new producer is a new SASL/SCRAM login, paid twice a second.
            'sink.transaction-naming-strategy' = 'POOLING',
            'properties.transaction.timeout.ms' = '60000',
            'properties.enable.idempotence' = 'true',
            'properties.acks' = 'all'
        )""")
    # The JVM cuts each source partition's records into micro-batches (one row per partition and
    # window) and keys them by shard itself (``keyed_in_jvm``), so a batch crosses into Python once,
    # as two flat arrays (offsets, values): no per-record Row objects on either side.
    batches = t_env.sql_query(f"""
        SELECT {SHARD_KEY_SQL}, ROW(`topic`, `partition`, ARRAY_AGG(`offset`), ARRAY_AGG(`value`))
        FROM TABLE(TUMBLE(TABLE featurebus_source, DESCRIPTOR(`arrived`), INTERVAL '{settings.batch_ms / 1000:.3f}' SECOND))
        GROUP BY window_start, window_end, `topic`, `partition`""")
    tiles = (
        keyed_in_jvm(t_env.to_append_stream(batches, BATCH_ROWS_TYPE))
        .process(
            FollowingShardBatches(settings.bootstrap, spec.to_json(), feature_topics, dead_letter_topic(spec.name)),
            output_type=OUTPUT_TYPE,
        )
        .name("featurebus engine step")
        .uid("featurebus-engine-step")
    )
    statements = t_env.create_statement_set()
    statements.add_insert("featurebus_sink", t_env.from_data_stream(tiles))
    return statements


def run_flink_worker(
    bootstrap: str,
    workspace: str,
    home: Path,
    parallelism: int = 1,
    jobmanager: str | None = None,
    savepoint: str | None = None,
    detached: bool = False,
    metrics_port: int = 0,
) -> None:
    """Run the workspace's Flink job until SIGTERM/SIGINT or the workspace's deletion (then stop
    it with a savepoint), restarting it with the definitions of every apply that changes them; or
    submit it to ``jobmanager`` and return at once when ``detached``. ``metrics_port``: serve the
    job's counters as the native worker's ``/metrics`` there (0: not at all; ``metrics.py``)."""
    check_flink_installed()
    ensure_flink_jars()
    spec = _applied_spec(bootstrap, workspace)
    if not spec.live:
        log.warning(
            "workspace %r is a development workspace: it is never materialized; the Flink job has nothing to do",
            workspace,
        )
        return
    settings = FlinkJobSettings(bootstrap, workspace, home, parallelism, jobmanager=jobmanager, savepoint=savepoint)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    if jobmanager is not None:
        _submit_with_flink_cli(settings)
        return
    if savepoint is None and (resumed := last_savepoint(settings.state_dir)) is not None:
        # A job stopped by this command left a savepoint: continue from it (at any parallelism:
        # Flink redistributes the keyed state and the source's partitions), not from the log's start.
        log.warning("workspace %r: resuming from the savepoint %s", workspace, resumed)
        # Definitions may have changed since (the shards align themselves with the new ones).
        settings = dataclasses.replace(settings, savepoint=resumed, ignore_unclaimed_state=True)
    if detached:
        build_job(settings, spec, prepare_topics(bootstrap, spec)).execute()
        return
    collector = None
    if metrics_port:
        settings = dataclasses.replace(settings, rest_port=_free_port())
        collector = FlinkJobCollector(workspace, bootstrap, f"http://127.0.0.1:{settings.rest_port}")
        REGISTRY.register(collector)
        serve_metrics(metrics_port)
        log.warning(
            "workspace %r: /metrics on port %d, from the job's REST API on port %d",
            workspace,
            metrics_port,
            settings.rest_port,
        )
    try:
        _run_following_definitions(settings, spec, collector)
    finally:
        if collector is not None:
            REGISTRY.unregister(collector)
            collector.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _run_following_definitions(
    settings: FlinkJobSettings, spec: WorkspaceSpec, collector: FlinkJobCollector | None
) -> None:
    """Run the job until SIGTERM/SIGINT or the workspace's deletion (then stop it with a
    savepoint); an apply that changes what it computes restarts it from a savepoint with the new
    definitions (``follow.py``; the shards catch up in the job, ``definitions.py``)."""
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous: dict[int, Any] = {}
    _keep_logging_to_stderr()
    watch = WorkspaceWatch(KafkaRegistry(settings.bootstrap), settings.workspace)
    watch.start()
    follower = DefinitionsFollower(watch, spec, lambda topics: list(partition_counts(settings.bootstrap, topics)))
    try:
        while True:
            client = build_job(settings, spec, prepare_topics(settings.bootstrap, spec)).execute().get_job_client()
            log.warning(
                "workspace %r v%d: Flink job %s submitted (in process)", spec.name, spec.version, client.get_job_id()
            )
            if collector is not None:
                collector.job_id = str(client.get_job_id())
                collector.topics = sorted(
                    {t for v in spec.stream_feature_views if v.online for t in spec.source(v.source).kafka.topics}
                )
            # A stop from now on takes a savepoint (before the first start, it just ends the process).
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous.setdefault(signum, signal.signal(signum, stop))
            restart_with: WorkspaceSpec | None = None
            while not stopping and restart_with is None:
                status = str(client.get_job_status().result())
                if status in ("FAILED", "CANCELED", "FINISHED"):
                    raise FeaturebusError(f"the Flink job of workspace {settings.workspace!r} stopped: {status}")
                time.sleep(1.0)
                try:
                    restart_with = follower.poll()
                except WorkspaceDeletedError as exc:
                    log.warning("%s", exc)
                    stopping = True
            if collector is not None and restart_with is not None:
                collector.read_before_restart()
            _stop_with_savepoint(client, settings)
            if restart_with is None:
                return
            log.warning(
                "workspace %r: restarting the Flink job with version %d", settings.workspace, restart_with.version
            )
            spec = restart_with
            follower.restarted(spec)
            settings = dataclasses.replace(
                settings, savepoint=last_savepoint(settings.state_dir), ignore_unclaimed_state=True
            )
    finally:
        watch.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _keep_logging_to_stderr() -> None:
    """In local execution Beam's in-process Python worker takes the root logger over (replaces its
    handlers by one forwarding to the JVM, and closes that when the job ends): featurebus's own
    records (the restarts, the shards' recomputations) get a handler of their own on stderr."""
    logger = logging.getLogger("featurebus")
    if any(isinstance(handler, _StderrHandler) for handler in logger.handlers):
        return
    handler = _StderrHandler(sys.stderr)
    root = logging.getLogger().handlers
    handler.setFormatter(root[0].formatter if root and root[0].formatter else logging.Formatter(_LOG_FORMAT))
    logger.addHandler(handler)
    logger.propagate = False


_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler ``_keep_logging_to_stderr`` added."""


LAST_SAVEPOINT_FILE = "last-savepoint"
"""Under the job's state directory: the path of the savepoint the last stop took."""


def last_savepoint(state_dir: Path) -> str | None:
    """The savepoint the job of ``state_dir`` was last stopped with, if it still exists."""
    try:
        path = (state_dir / LAST_SAVEPOINT_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    local = path.removeprefix("file:")
    if path.startswith("file:") and not Path(local).exists():
        log.warning("the recorded savepoint %s is gone; starting without it", path)
        return None
    return path or None


def _stop_with_savepoint(client: Any, settings: FlinkJobSettings, attempts: int = 30, pause_s: float = 1.0) -> None:
    """Stop the job with a savepoint (the sink commits its last transaction) and record its path
    for the next start; cancel when that keeps failing (the retained last checkpoint stays).
    A savepoint is refused while some task is still being deployed (a job stopped right after
    it started): that is retried."""
    from pyflink.common.completable_future import CompletableFuture
    from pyflink.java_gateway import get_gateway

    directory = (settings.state_dir / "savepoints").resolve().as_uri()
    # PyFlink 2.2's JobClient.stop_with_savepoint calls a Java overload that no longer exists
    # (the savepoint format became a parameter): the Java client is called directly.
    canonical = get_gateway().jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL
    for attempt in range(1, attempts + 1):
        try:
            stopping = client._j_job_client.stopWithSavepoint(False, directory, canonical)
            path = str(CompletableFuture(stopping, str).result())
        except Exception as exc:  # py4j wraps whatever the JVM threw
            reason = str(exc).splitlines()[0:3]
            log.warning("stopping workspace %r's job with a savepoint failed (%s)", settings.workspace, reason)
            if attempt < attempts:
                time.sleep(pause_s)
            continue
        atomic_write(settings.state_dir / LAST_SAVEPOINT_FILE, path.encode())
        log.warning("workspace %r: job stopped with the savepoint %s", settings.workspace, path)
        return
    log.warning("workspace %r: cancelling the job; a restart resumes from its last checkpoint", settings.workspace)
    client.cancel().result()


def _submit_with_flink_cli(settings: FlinkJobSettings) -> None:
    """Submit through the distribution's ``bin/flink run``: it runs ``flink.submit`` (this job's
    builder) in a Python client whose execution environment is the cluster's, and returns once the
    cluster accepted the job (``-d``). The cluster's TaskManagers start their Python workers with
    ``python.executable`` (this interpreter): on another machine it must have featurebus[flink]."""
    import subprocess

    from featurebus.platform.flink import flink_home

    command = [
        "bash",
        str(flink_home() / "bin" / "flink"),
        "run",
        "-d",
        "-m",
        str(settings.jobmanager),
        "-pym",
        "featurebus.streams.runtime.flink.submit",
        "-pyexec",
        sys.executable,
        "--bootstrap",
        settings.bootstrap,
        "--workspace",
        settings.workspace,
        "--home",
        str(settings.home),
        "--parallelism",
        str(settings.parallelism),
        *(["--savepoint", settings.savepoint] if settings.savepoint else []),
    ]
    env = {**os.environ, "PYFLINK_CLIENT_EXECUTABLE": sys.executable}
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=300, check=False, stdin=subprocess.DEVNULL
    )
    if result.returncode != 0 or "Job has been submitted" not in result.stdout + result.stderr:
        raise FeaturebusError(
            f"submitting workspace {settings.workspace!r}'s job to {settings.jobmanager} failed "
            f"({result.returncode}):\n{(result.stdout + result.stderr)[-4000:]}"
        )
    log.warning("%s", (result.stdout + result.stderr).strip().splitlines()[-1])


def submit_in_cluster_client(settings: FlinkJobSettings) -> None:
    """Inside ``bin/flink run``: build the job and execute it in the client's (cluster) environment."""
    spec = _applied_spec(settings.bootstrap, settings.workspace)
    build_job(settings, spec, prepare_topics(settings.bootstrap, spec)).execute()


def _applied_spec(bootstrap: str, workspace: str) -> WorkspaceSpec:
    spec = wait_for_workspace(KafkaRegistry(bootstrap), workspace)
    if spec is None:  # only when a stop event is given, which this call does not
        raise FeaturebusError(f"workspace {workspace!r} was not applied")
    return spec
