"""``featurebus describe OBJECT``: an object's spec, its lineage (source -> views -> services) and
its materialization state (online/offline flags, feature topic, end offsets, worker lag).

Finding the object, its lineage and the document are pure functions of a ``WorkspaceSpec``;
``read_state`` is the only part that talks to Kafka, and it degrades to a note saying why the
state is unknown when the broker cannot be reached.
"""

from __future__ import annotations

import dataclasses
import json
import socket
from dataclasses import dataclass
from typing import Any

from featurebus.exceptions import KafkaUnavailableError, NotFoundError
from featurebus.plan import WORKSPACE_FIELD
from featurebus.schemas.kinds import RealtimeInputKind
from featurebus.schemas.specs import (
    BatchFeatureViewSpec,
    FeatureTableSpec,
    StreamFeatureViewSpec,
    StreamSourceSpec,
    WorkspaceSpec,
)

__all__ = [
    "DESCRIBE_JSON_FORMAT_VERSION",
    "KINDS",
    "MaterializationState",
    "TopicState",
    "broker_reachable",
    "describe_document",
    "find_object",
    "dropped_partitions",
    "holds_data",
    "lineage",
    "read_state",
    "render_description",
]

DESCRIBE_JSON_FORMAT_VERSION = 1
# kind -> the WorkspaceSpec field holding that kind, in lineage order
KINDS = WORKSPACE_FIELD
_METADATA = ("description", "owner", "tags", "prevent_destroy", "defined_at")


@dataclass(frozen=True)
class TopicState:
    topic: str
    end_offsets: dict[int, int]  # partition -> offset after the last record
    records: int  # records currently held (end - start, summed over partitions)


@dataclass(frozen=True)
class MaterializationState:
    """What Kafka says about an object's data; ``available`` False when the broker is unreachable."""

    available: bool
    note: str = ""
    topics: tuple[TopicState, ...] = ()
    worker_lag: int | None = None  # source records the stream worker has not committed yet
    # Source partitions whose committed state the worker has not yet recomputed for the view's
    # current definition (after an apply that invalidated it: ``featurebus.streams.runtime.rebuild``).
    recomputing: tuple[str, ...] = ()
    # Source topics that do not exist: the stream worker waits for them before materializing.
    missing_source_topics: tuple[str, ...] = ()
    # Source partitions where the stream engine dropped events: "topic[p]: N late, M ahead"
    # (the watermark rule of streams/arrival.py, which training sets apply too).
    dropped: tuple[str, ...] = ()
    # The Flink engine (``--engine flink``): source records its last checkpoint has not covered
    # (None when no Flink job ever committed), and the job's state from the JobManager's REST API
    # when $FEATUREBUS_FLINK_JOBMANAGER names one.
    flink_lag: int | None = None
    flink_job: str | None = None


def find_object(spec: WorkspaceSpec, name: str, kind: str | None = None) -> tuple[str, Any]:
    """The object named ``name`` (of ``kind`` when given); errors list what exists."""
    if kind is not None and kind not in KINDS:
        raise NotFoundError(f"unknown kind {kind!r}; use one of: {', '.join(KINDS)}")
    matches = [
        (k, obj)
        for k, attr in KINDS.items()
        if kind in (None, k)
        for obj in getattr(spec, attr)
        if obj.name == name and not getattr(obj, "feature_table", False)  # a table's own source and view: the table
    ]
    if not matches:
        known = ", ".join(sorted({o.name for attr in KINDS.values() for o in getattr(spec, attr)})) or "none"
        raise NotFoundError(f"workspace {spec.name!r} has no object named {name!r} (objects: {known})")
    if len(matches) > 1:
        kinds = ", ".join(k for k, _ in matches)
        raise NotFoundError(f"{name!r} names several objects ({kinds}); pass --kind to choose one")
    return matches[0]


def lineage(spec: WorkspaceSpec, kind: str, name: str) -> dict[str, list[str]]:
    """The sources, entities, views and services connected to the object, through views.

    Realtime views sit downstream of the views they read: a source's lineage reaches them, and
    a realtime view's lineage reaches back to the stream views (and their sources) it reads.
    """
    realtime = {v.name: v for v in spec.realtime_feature_views}

    def upstream(view_name: str) -> set[str]:  # the view and every view it reads, transitively
        found, pending = set(), [view_name]
        while pending:
            current = pending.pop()
            if current not in found:
                found.add(current)
                if current in realtime:
                    pending.extend(i.name for i in realtime[current].inputs if i.kind == RealtimeInputKind.FEATURE_VIEW)
        return found

    if kind in ("stream_feature_view", "realtime_feature_view", "feature_table"):  # a table serves as a view
        names = upstream(name)
    elif kind == "stream_source":
        names = {v.name for v in spec.stream_feature_views if v.source == name}
    elif kind == "entity":
        names = {v.name for v in spec.stream_feature_views if name in v.entities}
    elif kind == "feature_service":
        names = set().union(*(upstream(s.view) for s in spec.service(name).selections))
    else:  # a batch feature view or batch source: batch views are added below
        names = {name} if kind == "batch_feature_view" else set()
    # Batch views read batch sources and stream sources' history, keyed by entities.
    batch = [
        v
        for v in spec.batch_feature_views
        if kind in ("batch_source", "stream_source", "entity") and name in (*v.sources, *v.entities)
    ]
    names |= {v.name for v in batch}
    if kind in (
        "stream_source",
        "entity",
        "stream_feature_view",
        "feature_table",
        "batch_source",
        "batch_feature_view",
    ):  # downstream: realtime views reading them
        names |= {r for r in realtime if upstream(r) & names}
    materialized: list[StreamFeatureViewSpec | BatchFeatureViewSpec] = [
        *spec.stream_feature_views,
        *spec.batch_feature_views,
    ]
    views = [v for v in materialized if v.name in names]
    services = [s.name for s in spec.feature_services if any(upstream(sel.view) & names for sel in s.selections)]
    return {
        "sources": sorted(
            {s for v in views for s in (v.sources if isinstance(v, BatchFeatureViewSpec) else (v.source,))}
            | ({name} if kind.endswith("source") else set())
        ),
        "entities": sorted({e for v in views for e in v.entities} | ({name} if kind == "entity" else set())),
        "feature_views": sorted(names),
        "feature_services": sorted(services) if kind != "feature_service" else [name],
    }


FLINK_JOBMANAGER_ENV = "FEATUREBUS_FLINK_JOBMANAGER"
"""HOST:PORT of the REST endpoint of the Flink cluster that runs the workspaces' jobs."""


def flink_job_state(workspace: str, timeout_s: float = 5.0) -> str | None:
    """The state of the workspace's Flink job (``featurebus <workspace>``) as the JobManager's REST
    API reports it (``GET /jobs/overview``; the newest job of that name), or None when
    $FEATUREBUS_FLINK_JOBMANAGER is unset; a note when the JobManager does not answer."""
    import os
    import urllib.error
    import urllib.request

    jobmanager = os.environ.get(FLINK_JOBMANAGER_ENV)
    if not jobmanager:
        return None
    url = f"http://{jobmanager}/jobs/overview"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            jobs = json.loads(response.read())["jobs"]
    except (OSError, ValueError, KeyError) as exc:
        return f"unknown: the JobManager at {jobmanager} did not answer ({exc})"
    mine = [job for job in jobs if job.get("name") == f"featurebus {workspace}"]
    if not mine:
        return f"no job named 'featurebus {workspace}' on {jobmanager}"
    job = max(mine, key=lambda j: j.get("start-time", 0))
    return f"{job['state']} (job {job['jid']} on {jobmanager}, {job.get('tasks', {}).get('running', 0)} tasks running)"


def read_state(bootstrap: str, spec: WorkspaceSpec, obj: Any, timeout_s: float = 5.0) -> MaterializationState | None:
    """Kafka's view of a source's or feature view's data (its topics' end offsets, and how far
    the stream worker is behind on the source); None for kinds that hold no data."""
    from featurebus.platform.kafka.admin import committed_positions, group_lag, partition_counts, topic_end_offsets
    from featurebus.platform.kafka.topics import feature_topic, flink_group, worker_group

    if isinstance(obj, FeatureTableSpec):  # what its view wrote, and the worker's lag on its records
        obj = spec.view(obj.name)
    if isinstance(obj, StreamFeatureViewSpec):
        topics = [feature_topic(spec.name, obj.name)]
        source_topics = list(spec.source(obj.source).kafka.topics)
    elif isinstance(obj, StreamSourceSpec):
        topics = list(obj.kafka.topics)
        source_topics = topics
    else:
        return None
    if not broker_reachable(bootstrap, timeout_s):
        # Checked first: Kafka's client would retry (and log every retry) until its own timeout.
        return MaterializationState(False, f"materialization state unknown: no Kafka broker answers at {bootstrap}")
    try:
        existing = partition_counts(bootstrap, source_topics, timeout_s)
        missing = tuple(t for t in source_topics if t not in existing)
        states = []
        for topic in topics:
            ends = topic_end_offsets(bootstrap, topic, timeout_s)
            states.append(
                TopicState(
                    topic, {p: high for p, (_, high) in ends.items()}, sum(high - low for low, high in ends.values())
                )
            )
        lag = group_lag(bootstrap, worker_group(spec.name), source_topics, timeout_s)
        committed = committed_positions(bootstrap, worker_group(spec.name), source_topics, timeout_s)
        recomputing = (
            _recomputing(spec, obj, committed) if isinstance(obj, StreamFeatureViewSpec) and obj.online else ()
        )
        dropped = dropped_partitions(committed)
        flink_committed = committed_positions(bootstrap, flink_group(spec.name), source_topics, timeout_s)
        flink_lag = (
            group_lag(bootstrap, flink_group(spec.name), source_topics, timeout_s)
            if any(tp.offset >= 0 for tp in flink_committed)
            else None
        )
    except KafkaUnavailableError as exc:
        return MaterializationState(False, f"materialization state unknown: {exc}")
    return MaterializationState(
        True,
        topics=tuple(states),
        worker_lag=lag,
        recomputing=recomputing,
        missing_source_topics=missing,
        dropped=dropped,
        flink_lag=flink_lag,
        flink_job=flink_job_state(spec.name, timeout_s),
    )


def holds_data(obj: Any) -> bool:
    """Whether ``read_state`` has something to say about ``obj`` (sources and stream views)."""
    return isinstance(obj, StreamFeatureViewSpec | StreamSourceSpec | FeatureTableSpec)


def dropped_partitions(committed: list[Any]) -> tuple[str, ...]:
    from featurebus.schemas.materialization import CommitMetadata

    result = []
    for tp in committed:
        late, ahead = CommitMetadata.decode(tp.metadata, 0).dropped if tp.offset >= 0 else (0, 0)
        if late or ahead:
            result.append(f"{tp.topic}[{tp.partition}]: {late} late, {ahead} ahead of their record time")
    return tuple(result)


def _recomputing(spec: WorkspaceSpec, view: StreamFeatureViewSpec, committed: list[Any]) -> tuple[str, ...]:
    from featurebus.schemas.materialization import CommitMetadata, online_fingerprints

    stale = []
    for tp in committed:
        if tp.offset >= 0 and CommitMetadata.decode(tp.metadata, 0).stale_views(
            {view.name: online_fingerprints(spec, tp.topic)[view.name]}
        ):
            stale.append(f"{tp.topic}[{tp.partition}]")
    return tuple(stale)


def broker_reachable(bootstrap: str, timeout_s: float) -> bool:
    """Whether any bootstrap address accepts a TCP connection."""
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=min(timeout_s, 2.0)):
                return True
        except (OSError, ValueError):
            continue
    return False


def describe_document(
    spec: WorkspaceSpec, kind: str, obj: Any, state: MaterializationState | None, origin: str
) -> dict[str, Any]:
    """A JSON-ready document: the spec, its metadata, lineage and materialization state."""
    body = _jsonable(obj)
    metadata = {key: body.pop(key) for key in _METADATA if key in body}
    document: dict[str, Any] = {
        "format_version": DESCRIBE_JSON_FORMAT_VERSION,
        "workspace": spec.name,
        "workspace_version": spec.version,
        "origin": origin,
        "kind": kind,
        "name": obj.name,
        "metadata": metadata,
        "spec": body,
        "lineage": lineage(spec, kind, obj.name),
    }
    if isinstance(obj, StreamFeatureViewSpec | BatchFeatureViewSpec | FeatureTableSpec):
        from featurebus.platform.kafka.topics import feature_topic

        document["materialization"] = {
            "online": obj.online,
            "offline": obj.offline,
            "feature_topic": feature_topic(spec.name, obj.name),
        }
    if state is not None:
        document.setdefault("materialization", {})["state"] = _jsonable(state)
    return document


def _metadata_text(key: str, value: Any) -> str:
    if key == "tags":
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if key == "defined_at":  # {"path": ..., "line": ...}: shown as editors and tracebacks write it
        return f"{value['path']}:{value['line']}"
    return str(value)


def render_description(doc: dict[str, Any]) -> str:
    """The document as text for people."""
    version = f" v{doc['workspace_version']}" if doc["workspace_version"] else ""
    lines = [f"{doc['kind']} {doc['name']}  (workspace {doc['workspace']}{version}; {doc['origin']})"]
    for key, value in doc["metadata"].items():
        if value:
            lines.append(f"  {key}: {_metadata_text(key, value)}")
    lines.append("spec:")
    lines.extend(_render_value(key, value, 1) for key, value in doc["spec"].items() if key != "name")
    chain = doc["lineage"]
    lines.append("lineage:")
    lines.append(
        "  "
        + " -> ".join(
            f"{label} [{', '.join(chain[key]) or 'none'}]"
            for label, key in (("sources", "sources"), ("views", "feature_views"), ("services", "feature_services"))
        )
    )
    lines.append(f"  entities: {', '.join(chain['entities']) or 'none'}")
    materialization = doc.get("materialization")
    if materialization:
        lines.append("materialization:")
        if "online" in materialization:
            lines.append(
                f"  online: {str(materialization['online']).lower()}, "
                f"offline: {str(materialization['offline']).lower()}, "
                f"feature topic: {materialization['feature_topic']}"
            )
        state = materialization.get("state")
        if state is not None and not state["available"]:
            lines.append(f"  {state['note']}")
        elif state is not None:
            for topic in state["topics"]:
                ends = ", ".join(f"p{p}={o}" for p, o in sorted(topic["end_offsets"].items())) or "empty"
                lines.append(f"  {topic['topic']}: {topic['records']} records (end offsets {ends})")
            if state["worker_lag"] is not None:
                lines.append(f"  stream worker lag: {state['worker_lag']} records")
            if state.get("flink_lag") is not None:
                lines.append(f"  flink job lag: {state['flink_lag']} records (offsets of its last checkpoint)")
            if state.get("flink_job"):
                lines.append(f"  flink job: {state['flink_job']}")
            if state["missing_source_topics"]:
                lines.append(
                    f"  waiting for source topics that do not exist: {', '.join(state['missing_source_topics'])} "
                    "(create them, or `featurebus apply --create-topics` on a local broker)"
                )
            if state["recomputing"]:
                lines.append(f"  being recomputed for the current definition: {', '.join(state['recomputing'])}")
            if state.get("dropped"):
                lines.append(f"  events dropped by the watermark rule: {'; '.join(state['dropped'])}")
    return "\n".join(lines)


def _render_value(key: str, value: Any, depth: int) -> str:
    pad = "  " * depth
    if isinstance(value, dict):
        inner = "\n".join(_render_value(k, v, depth + 1) for k, v in value.items() if v not in (None, "", [], {}))
        return f"{pad}{key}:\n{inner}" if inner else f"{pad}{key}: -"
    if isinstance(value, list) and value and isinstance(value[0], dict):
        items = "\n".join(f"{pad}  - " + ", ".join(f"{k}={v}" for k, v in item.items()) for item in value)
        return f"{pad}{key}:\n{items}"
    if isinstance(value, str) and "\n" in value:  # transformation code: shown whole, indented
        body = "\n".join(f"{pad}  | {line}" for line in value.rstrip("\n").splitlines())
        return f"{pad}{key}:\n{body}"
    if isinstance(value, list):
        return f"{pad}{key}: {', '.join(str(v) for v in value) or '-'}"
    return f"{pad}{key}: {value}"


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if "tags" in out and isinstance(out["tags"], list):  # (key, value) pairs in specs
            out["tags"] = dict(out["tags"])
        return out
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value
