"""One behaviour for every ``Registry`` backend: the in-memory twin and the registry on Kafka.

Workspace specs (versions, history, the ``live`` flag, deletion), following them, API keys and
job records, through the same domain functions the CLI, the worker and the job runner call.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable

import pytest

from featurebus.platform.access.roles import Action
from featurebus.platform.api_keys import ApiKeyStore, create_api_key, list_api_keys, revoke_api_key
from featurebus.platform.kafka.admin import partition_counts
from featurebus.platform.kafka.topics import push_topic
from featurebus.platform.registry import (
    PUSH_TOPIC_PARTITIONS,
    KafkaRegistry,
    MemoryRegistry,
    Registry,
    SpecFollower,
    apply_workspace,
    read_version,
)
from featurebus.platform.workspaces import create_workspace, delete_workspace, list_workspaces
from featurebus.schemas.errors import (
    AuthenticationError,
    InvalidRequestError,
    JobRunnerFencedError,
    NotFoundError,
    PermissionDeniedError,
)
from featurebus.schemas.jobs import JobKind, new_job
from featurebus.schemas.specs import WorkspaceSpec
from tests.support.push_repo import push_workspace
from tests.support.specs import spending_workspace


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
def registry(request: pytest.FixtureRequest) -> Registry:
    if request.param == "memory":
        return MemoryRegistry()
    return KafkaRegistry(request.getfixturevalue("kafka_bootstrap"))


@pytest.fixture
def workspace() -> str:
    """A fresh name: the Kafka case shares one broker with the whole session."""
    return f"contract-{uuid.uuid4().hex[:8]}"


def _poll_until(
    follower: SpecFollower, done: Callable[[dict[str, WorkspaceSpec]], bool], timeout_s: float = 20.0
) -> dict[str, WorkspaceSpec]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        specs = follower.poll(0.2)
        if done(specs):
            return specs
    raise AssertionError("the follower did not see the expected registry state in time")


def test_an_unknown_workspace_has_no_spec_and_no_history(registry: Registry, workspace: str) -> None:
    assert registry.get(workspace) is None
    assert workspace not in registry.list()
    assert registry.history(workspace) == []


def test_each_apply_is_the_next_version_and_history_keeps_every_one(registry: Registry, workspace: str) -> None:
    first = apply_workspace(registry, spending_workspace(name=workspace))
    assert (first.version, first.live) == (1, True)  # created live by the library call
    shorter = dataclasses.replace(first, feature_services=())
    second = apply_workspace(registry, shorter)
    assert second.version == 2 and second.feature_services == ()
    assert registry.get(workspace) == second
    assert registry.list()[workspace] == second
    assert [spec.version for spec in registry.history(workspace)] == [1, 2]
    assert read_version(registry, workspace, 1) == first
    with pytest.raises(NotFoundError, match="applied versions: v1, v2"):
        read_version(registry, workspace, 7)


def test_a_created_workspace_keeps_its_flag_through_applies(registry: Registry, workspace: str) -> None:
    created = create_workspace(registry, workspace, live=False)
    assert (created.version, created.live) == (0, False)
    assert registry.history(workspace) == []  # version 0 is not an applied version
    applied = apply_workspace(registry, spending_workspace(name=workspace), create_live=False)
    assert (applied.version, applied.live) == (1, False)
    assert workspace in {spec.name for spec in list_workspaces(registry)}
    with pytest.raises(InvalidRequestError, match="already exists"):
        create_workspace(registry, workspace, live=True)


def test_apply_without_create_live_refuses_a_missing_workspace(registry: Registry, workspace: str) -> None:
    with pytest.raises(NotFoundError, match="workspace create"):
        apply_workspace(registry, spending_workspace(name=workspace), create_live=False)
    assert registry.get(workspace) is None


def test_delete_refuses_a_workspace_with_objects_unless_forced(registry: Registry, workspace: str) -> None:
    apply_workspace(registry, spending_workspace(name=workspace))
    with pytest.raises(InvalidRequestError, match="--force"):
        delete_workspace(registry, workspace)
    deleted = delete_workspace(registry, workspace, force=True)
    assert deleted.version == 1
    assert registry.get(workspace) is None and registry.history(workspace) == []
    with pytest.raises(NotFoundError, match=f"no workspace named '{workspace}'"):
        delete_workspace(registry, workspace)


def test_a_follower_sees_new_versions_and_deletions(registry: Registry, workspace: str) -> None:
    follower = registry.follow()
    try:
        first = apply_workspace(registry, spending_workspace(name=workspace))
        assert _poll_until(follower, lambda specs: workspace in specs)[workspace] == first
        second = apply_workspace(registry, dataclasses.replace(first, feature_services=()))
        assert _poll_until(follower, lambda specs: specs.get(workspace) == second)[workspace].version == 2
        delete_workspace(registry, workspace, force=True)
        _poll_until(follower, lambda specs: workspace not in specs)
    finally:
        follower.close()


def test_applying_a_push_source_creates_its_topic(registry: Registry, workspace: str) -> None:
    apply_workspace(registry, push_workspace(workspace))
    topics = [t for s in push_workspace(workspace).stream_sources if s.push for t in s.kafka.topics]
    assert topics and all(t.startswith(push_topic(workspace, "")) for t in topics)
    if isinstance(registry, MemoryRegistry):
        assert {t: registry.topics[t].partitions for t in topics} == dict.fromkeys(topics, PUSH_TOPIC_PARTITIONS)
    else:
        assert isinstance(registry, KafkaRegistry)
        assert partition_counts(registry.bootstrap, topics) == dict.fromkeys(topics, PUSH_TOPIC_PARTITIONS)


def test_api_keys_are_created_listed_checked_and_revoked(registry: Registry, workspace: str) -> None:
    key_id, secret = create_api_key(registry, workspace, "writer", "ci")
    listed = {key["key_id"]: key for key in list_api_keys(registry)}
    assert listed[key_id]["workspace"] == workspace and listed[key_id]["role"] == "editor"
    assert secret not in str(listed) and "fbk_" not in str(registry.api_keys())  # only hashes are stored
    keys = ApiKeyStore()
    for digest, record in registry.api_keys().items():
        keys.apply_record(digest, record)
    assert keys.authorize(f"Tecton-key {secret}", workspace, Action.INGEST).key_id == key_id
    with pytest.raises(PermissionDeniedError):
        keys.authorize(f"Tecton-key {secret}", workspace, Action.MANAGE_ACCESS)
    revoke_api_key(registry, key_id)
    assert key_id not in {key["key_id"] for key in list_api_keys(registry)}
    revoked = ApiKeyStore()
    for digest, record in registry.api_keys().items():
        revoked.apply_record(digest, record)
    with pytest.raises(AuthenticationError):
        revoked.authenticate(f"Bearer {secret}")
    with pytest.raises(NotFoundError, match="no live API key"):
        revoke_api_key(registry, key_id)
    with pytest.raises(InvalidRequestError, match="unknown role"):
        create_api_key(registry, workspace, "root")


def test_job_records_are_shared_and_a_new_runner_fences_the_old_one(registry: Registry, workspace: str) -> None:
    opened = [registry.jobs(workspace), registry.jobs(workspace, runner=True)]
    client, old_runner = opened
    try:
        job = new_job("j1", workspace, JobKind.COMPACT, 1_000, offline=True)
        client.put(job)
        assert old_runner.get("j1") == job and [j.id for j in old_runner.list()] == ["j1"]
        opened.append(registry.jobs(workspace, runner=True))  # a restarted runner takes over
        with pytest.raises(JobRunnerFencedError):
            old_runner.put(job)
    finally:
        for store in opened:
            store.close()


def test_the_memory_twin_refuses_records_of_unknown_collections() -> None:
    with pytest.raises(InvalidRequestError, match="unknown collections"):
        MemoryRegistry().apply("w", [("featurebus.elsewhere", b"k", b"v")], "applying")
