"""Which offline data a workspace's sources read (pure): a live workspace its own, a development
workspace the live workspaces' copies of the same topics (push sources: of the same name), and
only where the live source has every column of the development one."""

from __future__ import annotations

import dataclasses

import pytest

from featurebus.exceptions import NotFoundError
from featurebus.platform.offline.locations import offline_locations, require_locations
from featurebus.schemas.specs import FieldSpec, KafkaConfigSpec, StreamSourceSpec, WorkspaceSpec
from tests.support.push_repo import push_workspace
from tests.support.specs import spending_workspace


def _dev(spec: WorkspaceSpec) -> WorkspaceSpec:
    return dataclasses.replace(spec, live=False)


def test_a_live_workspace_reads_its_own_sources() -> None:
    live = spending_workspace(name="prod")
    assert offline_locations(live, {"prod": live}) == {"transactions": (("prod", "transactions"),)}


def test_a_development_workspace_reads_every_live_copy_of_its_topics() -> None:
    dev = _dev(spending_workspace(topic="payments", name="dev"))
    registry = {
        "a": spending_workspace(topic="payments", name="a"),
        "b": spending_workspace(topic="payments", name="b"),
        "other_topic": spending_workspace(topic="refunds", name="other_topic"),
        "dev2": _dev(spending_workspace(topic="payments", name="dev2")),  # never materialized
        "dev": dev,
    }
    assert offline_locations(dev, registry) == {"transactions": (("a", "transactions"), ("b", "transactions"))}


def test_a_live_source_lacking_a_column_or_typing_it_otherwise_is_no_match() -> None:
    dev = _dev(spending_workspace(name="dev"))
    live = spending_workspace(name="prod")
    source = live.stream_sources[0]
    narrower = dataclasses.replace(source, schema=source.schema[:1] + source.schema[2:])  # no amount
    retyped = dataclasses.replace(source, schema=(source.schema[0], FieldSpec("amount", "int64"), source.schema[2]))
    for changed in (narrower, retyped):
        registry = {"prod": dataclasses.replace(live, stream_sources=(changed,)), "dev": dev}
        assert offline_locations(dev, registry) == {"transactions": ()}
    wider = dataclasses.replace(source, schema=(*source.schema, FieldSpec("country", "string")))
    assert offline_locations(dev, {"prod": dataclasses.replace(live, stream_sources=(wider,))})["transactions"]


def test_another_cluster_is_other_data() -> None:
    dev = _dev(spending_workspace(name="dev"))
    live = spending_workspace(name="prod")
    source = live.stream_sources[0]
    elsewhere = dataclasses.replace(source, kafka=dataclasses.replace(source.kafka, bootstrap_servers="other:9092"))
    assert offline_locations(dev, {"prod": dataclasses.replace(live, stream_sources=(elsewhere,))}) == {
        "transactions": ()
    }


def test_push_sources_match_by_name_and_only_logged_ones() -> None:
    dev = _dev(push_workspace("dev"))
    live = push_workspace("prod")
    assert offline_locations(dev, {"prod": live, "dev": dev}) == {"clicks": (("prod", "clicks"),)}
    unlogged = dataclasses.replace(
        live, stream_sources=(dataclasses.replace(live.stream_sources[0], log_offline=False),)
    )
    assert offline_locations(dev, {"prod": unlogged}) == {"clicks": ()}
    # A Kafka source on a topic named like the push topic is not the pushed data.
    kafka = StreamSourceSpec(
        "clicks", live.stream_sources[0].schema, KafkaConfigSpec(live.stream_sources[0].kafka.topics, "ts")
    )
    assert offline_locations(dev, {"prod": dataclasses.replace(live, stream_sources=(kafka,))}) == {"clicks": ()}


def test_no_data_is_an_error_naming_the_source_and_the_fix() -> None:
    dev = _dev(push_workspace("dev"))
    with pytest.raises(
        NotFoundError,
        match=r"source 'clicks' of development workspace 'dev' has no offline data.*"
        r"push source named 'clicks'.*--live",
    ):
        require_locations(offline_locations(dev, {}), "dev", dev.stream_sources[0])
