"""Materialization fingerprints agree with plan's invalidating changes; commit metadata round-trips."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given

from featurebus.exceptions import FeaturebusError
from featurebus.plan import plan
from featurebus.schemas.materialization import CommitMetadata, fingerprint, online_fingerprints
from featurebus.schemas.specs import WorkspaceSpec
from tests.unit.test_plan import BASE, CASES, Edit, workspaces


def _fingerprints(ws: WorkspaceSpec) -> dict[str, str]:
    names = {s.name for s in ws.stream_sources}
    return {v.name: fingerprint(v, ws.source(v.source)) for v in ws.stream_feature_views if v.source in names}


def _assert_plan_agrees(a: WorkspaceSpec, b: WorkspaceSpec) -> None:
    before, after = _fingerprints(a), _fingerprints(b)
    for change in plan(a, b).changes:
        if change.kind == "stream_feature_view" and change.name in before and change.name in after:
            assert change.rematerialize == (before[change.name] != after[change.name]), change


@pytest.mark.parametrize("edit", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_the_fingerprint_changes_exactly_when_plan_says_rematerialize(edit: Edit) -> None:
    _assert_plan_agrees(BASE, edit(BASE))


@given(workspaces(), workspaces())
def test_fingerprints_and_plan_agree_on_generated_repositories(a: WorkspaceSpec, b: WorkspaceSpec) -> None:
    _assert_plan_agrees(a, b)


def test_metadata_and_delivery_fields_leave_the_fingerprint_alone() -> None:
    view, source = BASE.stream_feature_views[1], BASE.source(BASE.stream_feature_views[1].source)
    same = fingerprint(view, source)
    assert (
        fingerprint(dataclasses.replace(view, description="x", owner="me", tags=(("a", "b"),), online=False), source)
        == same
    )
    late = dataclasses.replace(
        source, kafka=dataclasses.replace(source.kafka, watermark_delay_ms=1, value_format="avro")
    )
    assert fingerprint(view, late) == same
    assert (
        fingerprint(view, dataclasses.replace(source, kafka=dataclasses.replace(source.kafka, topics=("other",))))
        != same
    )
    assert fingerprint(dataclasses.replace(view, aggregation_interval_ms=60_000), source) != same


def test_online_fingerprints_cover_the_online_views_of_a_topic() -> None:
    topic = BASE.source(BASE.stream_feature_views[0].source).kafka.topics[0]
    readers = {v.name for v in BASE.stream_feature_views if topic in BASE.source(v.source).kafka.topics}
    assert set(online_fingerprints(BASE, topic)) == readers
    offline_only = dataclasses.replace(
        BASE, stream_feature_views=tuple(dataclasses.replace(v, online=False) for v in BASE.stream_feature_views)
    )
    assert online_fingerprints(offline_only, topic) == {}


def test_commit_metadata_round_trips_and_reads_the_bare_watermark_of_format_1() -> None:
    meta = CommitMetadata(1234, {"a": "0123456789abcdef"})
    assert CommitMetadata.decode(meta.encode(), 0) == meta
    assert CommitMetadata.decode("-77", 0) == CommitMetadata(-77, None)
    assert CommitMetadata.decode("", 5) == CommitMetadata(5, None)


def test_stale_views_are_the_changed_and_the_new_ones() -> None:
    meta = CommitMetadata(0, {"kept": "1", "changed": "2", "dropped": "3"})
    assert meta.stale_views({"kept": "1", "changed": "9", "new": "4"}) == ["changed", "new"]
    assert CommitMetadata(0, None).stale_views({"any": "1"}) == []  # format 1: trusted as current


@pytest.mark.parametrize("text", ["{", '{"format": 2}', '{"format": 3, "watermark": 1, "views": {}}', "[1]"])
def test_foreign_metadata_is_refused_with_a_clear_error(text: str) -> None:
    with pytest.raises(FeaturebusError, match="metadata"):
        CommitMetadata.decode(text, 0)
