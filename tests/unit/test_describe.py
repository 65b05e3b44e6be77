"""`featurebus describe`: the object's spec and metadata, its lineage and its materialization
state; plus the metadata and prevent_destroy behaviour of plans that describe relies on."""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path

import pytest

from featurebus.cli import main
from featurebus.describe import describe_document, find_object, lineage, read_state, render_description
from featurebus.exceptions import DefinitionError, NotFoundError
from featurebus.plan import plan
from featurebus.plan_render import render_plan
from featurebus.repo import find_repo_root, load_repo
from featurebus.schemas.specs import WorkspaceSpec

ROOT = Path(__file__).resolve().parents[2]
FRAUD = ROOT / "examples" / "fraud"


@pytest.fixture(scope="module")
def fraud() -> WorkspaceSpec:
    return load_repo(FRAUD, "ws")


def _closed_port() -> str:
    with socket.socket() as sock:  # bound then released: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def test_lineage_follows_sources_views_and_services(fraud: WorkspaceSpec) -> None:
    assert lineage(fraud, "stream_source", "transactions") == {
        "sources": ["transactions"],
        "entities": ["merchant", "user"],
        "feature_views": ["merchant_online_volume", "transaction_vs_history", "user_transaction_stats"],
        "feature_services": ["fraud_detection", "fraud_scoring", "user_spending"],
    }
    # A realtime view reaches back to the stream views it reads, and their sources.
    assert lineage(fraud, "realtime_feature_view", "transaction_vs_history")["sources"] == ["transactions"]
    assert lineage(fraud, "feature_service", "user_spending") == {
        "sources": ["transactions"],
        "entities": ["user"],
        "feature_views": ["user_transaction_stats"],
        "feature_services": ["user_spending"],
    }
    assert lineage(fraud, "entity", "merchant")["feature_views"] == ["merchant_online_volume"]


def test_find_object_names_what_exists_and_asks_for_a_kind_when_ambiguous(fraud: WorkspaceSpec) -> None:
    assert find_object(fraud, "user")[0] == "entity"
    with pytest.raises(NotFoundError, match=r"no object named 'nope'.*user_spending"):
        find_object(fraud, "nope")
    twin = dataclasses.replace(
        fraud,
        stream_feature_views=(
            *fraud.stream_feature_views,
            dataclasses.replace(fraud.stream_feature_views[0], name="user"),
        ),
    )
    with pytest.raises(NotFoundError, match="pass --kind"):
        find_object(twin, "user")
    assert find_object(twin, "user", "stream_feature_view")[0] == "stream_feature_view"


def test_document_carries_spec_metadata_lineage_and_materialization(fraud: WorkspaceSpec) -> None:
    kind, view = find_object(fraud, "user_transaction_stats")
    view = dataclasses.replace(view, owner="fraud-team", tags=(("tier", "gold"),), prevent_destroy=True)
    doc = describe_document(fraud, kind, view, None, "applied")
    assert doc["metadata"] == {
        "description": view.description,
        "owner": "fraud-team",
        "tags": {"tier": "gold"},
        "prevent_destroy": True,
        "defined_at": {"path": "features/user_transactions.py", "line": view.defined_at.line},  # type: ignore[union-attr]
    }
    assert doc["spec"]["aggregations"][0]["name"] == "amount_count_10m_continuous"
    assert doc["materialization"] == {
        "online": True,
        "offline": True,
        "feature_topic": "featurebus.ws.features.user_transaction_stats",
    }
    json.dumps(doc)  # JSON-ready as it is
    text = render_description(doc)
    for expected in (
        "stream_feature_view user_transaction_stats",
        "owner: fraud-team",
        "tags: tier=gold",
        "prevent_destroy: True",
        "sources [transactions] -> views [transaction_vs_history, "
        "user_transaction_stats] -> services [fraud_detection, fraud_scoring, user_spending]",
        "| def user_transaction_stats(transactions):",
        "feature topic: featurebus.ws.features.user_transaction_stats",
    ):
        assert expected in text, text


def test_state_degrades_to_a_note_without_a_broker(fraud: WorkspaceSpec) -> None:
    address = _closed_port()
    state = read_state(address, fraud, fraud.view("user_transaction_stats"), timeout_s=1.0)
    assert state is not None and not state.available and address in state.note
    assert read_state(address, fraud, fraud.entities[0]) is None  # entities hold no data


def test_cli_describes_a_repository_without_kafka(capsys: pytest.CaptureFixture[str]) -> None:
    main(["describe", "transactions", "--repo", str(FRAUD), "--json", "--bootstrap", _closed_port()])
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "stream_source" and doc["origin"].startswith("definitions in")
    assert doc["materialization"]["state"]["available"] is False
    assert doc["lineage"]["feature_services"] == ["fraud_detection", "fraud_scoring", "user_spending"]


def test_cli_describes_a_repository_with_no_kafka_configured_at_all(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No --bootstrap, no FEATUREBUS_KAFKA_BOOTSTRAP, no local broker: --repo still works."""
    monkeypatch.delenv("FEATUREBUS_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setenv("FEATUREBUS_HOME", str(tmp_path))
    main(["describe", "user_transaction_stats", "--repo", str(FRAUD)])
    out = capsys.readouterr().out
    assert "user_transaction_stats" in out and "materialization state unknown: no Kafka cluster configured" in out


def test_dropped_events_are_read_from_the_committed_metadata() -> None:
    from confluent_kafka import TopicPartition

    from featurebus.describe import dropped_partitions
    from featurebus.schemas.materialization import CommitMetadata

    committed = [
        TopicPartition("t", 0, 5, metadata=CommitMetadata(1, {}, (3, 1)).encode()),
        TopicPartition("t", 1, 5, metadata=CommitMetadata(1, {}).encode()),
    ]
    assert dropped_partitions(committed) == ("t[0]: 3 late, 1 ahead of their record time",)
    assert CommitMetadata.decode(committed[1].metadata, 0).dropped == (0, 0)


def test_cli_without_a_broker_or_repo_says_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["describe", "transactions", "--bootstrap", _closed_port()])
    assert info.value.code == 1
    assert "pass --repo" in capsys.readouterr().err


# -- metadata and prevent_destroy in plans ----------------------------------------------------------
def test_metadata_round_trips_and_is_shown_when_created(tmp_path: Path) -> None:
    (tmp_path / "defs.py").write_text(
        "from featurebus import Entity, Field\nfrom featurebus.types import String\n"
        "user = Entity(name='user', join_keys=[Field('user_id', String)], description='A customer',"
        " owner='risk@example.com', tags={'tier': 'gold'}, prevent_destroy=True)\n"
    )
    spec = load_repo(tmp_path, "meta")
    entity = spec.entities[0]
    assert (entity.owner, entity.tags, entity.prevent_destroy) == ("risk@example.com", (("tier", "gold"),), True)
    assert WorkspaceSpec.from_json(spec.to_json()) == spec
    text = render_plan(plan(None, spec), color=False)
    assert "description: A customer" in text and "owner: risk@example.com" in text
    assert "tags: tier=gold" in text and "prevent_destroy: true" in text


def test_prevent_destroy_blocks_deletes_and_invalidating_updates(fraud: WorkspaceSpec) -> None:
    view = fraud.view("user_transaction_stats")
    protected = dataclasses.replace(
        fraud,
        stream_feature_views=tuple(
            dataclasses.replace(v, prevent_destroy=True) if v.name == view.name else v
            for v in fraud.stream_feature_views
        ),
    )
    without = dataclasses.replace(
        protected,
        stream_feature_views=tuple(v for v in protected.stream_feature_views if v.name != view.name),
        feature_services=(),
    )
    with pytest.raises(
        DefinitionError,
        match=r"user_transaction_stats' has prevent_destroy=True.*delete it.*"
        r"prevent_destroy=False",
    ):
        plan(protected, without)
    shorter = dataclasses.replace(
        protected,
        stream_feature_views=tuple(
            dataclasses.replace(v, aggregations=v.aggregations[:1]) if v.name == view.name else v
            for v in protected.stream_feature_views
        ),
        feature_services=(),
    )
    with pytest.raises(DefinitionError, match="invalidate its materialized features"):
        plan(protected, shorter)
    # The way out: lifting the flag is harmless (no rematerialization), then the delete plans.
    lifted = dataclasses.replace(protected, stream_feature_views=fraud.stream_feature_views)
    step = plan(protected, lifted)
    assert not any(c.rematerialize for c in step.changes)
    assert plan(lifted, without).summary()["delete"] >= 1
    # Metadata-only edits of a protected object are fine.
    described = dataclasses.replace(
        protected,
        stream_feature_views=tuple(
            dataclasses.replace(v, description="new words", tags=(("a", "b"),)) for v in protected.stream_feature_views
        ),
    )
    assert plan(protected, described).summary()["update"] >= 1


def test_repository_root_is_the_nearest_marked_parent_and_tests_are_skipped(tmp_path: Path) -> None:
    (tmp_path / ".featurebus-repo").write_text("")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "entities.py").write_text(
        "from featurebus import Entity, Field\nfrom featurebus.types import String\n"
        "rider = Entity(name='rider', join_keys=[Field('rider_id', String)])\n"
    )
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "more.py").write_text(
        "from shared.entities import rider\nfrom featurebus import Entity, Field\nfrom featurebus.types import Int64\n"
        "driver = Entity(name='driver', join_keys=[Field('driver_id', Int64)])\n"
    )
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_broken.py").write_text("raise RuntimeError('tests are not definitions')\n")
    assert find_repo_root(tmp_path / "features") == tmp_path.resolve()
    spec = load_repo(tmp_path / "features", "marked")  # run from a sub-folder: the marked root is loaded
    assert sorted(e.name for e in spec.entities) == ["driver", "rider"]
    lone = tmp_path / "elsewhere"
    lone.mkdir()
    assert find_repo_root(lone) == tmp_path.resolve()  # still under the marker


def test_reloading_a_repository_sees_its_edits(tmp_path: Path) -> None:
    (tmp_path / "defs.py").write_text(
        "from featurebus import Entity, Field\nfrom featurebus.types import String\n"
        "user = Entity(name='user', join_keys=[Field('user_id', String)], description='first')\n"
    )
    assert load_repo(tmp_path, "w").entities[0].description == "first"
    (tmp_path / "defs.py").write_text(
        "from featurebus import Entity, Field\nfrom featurebus.types import String\n"
        "user = Entity(name='user', join_keys=[Field('user_id', String)], description='second, longer')\n"
    )
    assert load_repo(tmp_path, "w").entities[0].description == "second, longer"


def test_specs_of_format_version_1_are_still_read(fraud: WorkspaceSpec) -> None:
    import orjson

    raw = orjson.loads(fraud.to_json())
    raw["format_version"] = 1
    raw.pop("batch_sources")
    for kind in ("entities", "stream_sources", "stream_feature_views", "feature_services"):
        for obj in raw[kind]:
            for added in ("owner", "tags", "prevent_destroy", "batch_config"):
                obj.pop(added, None)
            obj.get("kafka", {}).pop("avro_schema", None)
    assert WorkspaceSpec.from_json(orjson.dumps(raw)) == fraud
