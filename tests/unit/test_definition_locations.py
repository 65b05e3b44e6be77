"""Each object's spec records where it was defined (repo-relative file:line): a moved definition
plans as a metadata update that recomputes nothing, and describe and the UI show the location."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson

from featurebus.describe import describe_document, render_description
from featurebus.platform.plan.diff import plan
from featurebus.repo import load_repo
from featurebus.schemas.materialization import fingerprint
from featurebus.schemas.specs import DefinitionLocationSpec, WorkspaceSpec

EXAMPLE = Path(__file__).parents[2] / "examples" / "fraud"


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_locations_are_relative_to_the_repository_and_name_the_defining_line(tmp_path: Path) -> None:
    repo = shutil.copytree(EXAMPLE, tmp_path / "a" / "fraud")
    spec = load_repo(repo, "default")
    entity = next(e for e in spec.entities if e.name == "merchant")
    assert entity.defined_at == DefinitionLocationSpec("entities.py", _line_of(repo / "entities.py", "merchant"))
    every = [
        o
        for kind in ("entities", "stream_sources", "stream_feature_views", "feature_services")
        for o in getattr(spec, kind)
    ]
    assert all(o.defined_at is not None and not Path(o.defined_at.path).is_absolute() for o in every)
    # Two checkouts of one repository record the same locations: nothing to update.
    other = load_repo(shutil.copytree(EXAMPLE, tmp_path / "b" / "fraud"), "default")
    assert plan(spec, other).summary()["update"] == 0


def test_moving_a_definition_is_a_metadata_update_that_recomputes_nothing(tmp_path: Path) -> None:
    repo = shutil.copytree(EXAMPLE, tmp_path / "a" / "fraud")
    before = load_repo(repo, "default")
    views = repo / "features" / "user_transactions.py"
    views.write_text("# a comment moves every definition below it\n\n" + views.read_text())
    after = load_repo(repo, "default")
    moved = next(c for c in plan(before, after).changes if c.name == "user_transaction_stats")
    assert moved.action == "update" and not moved.rematerialize
    assert [f.path for f in moved.changed_fields] == ["defined_at.line"]
    old_view = next(v for v in before.stream_feature_views if v.name == "user_transaction_stats")
    new_view = next(v for v in after.stream_feature_views if v.name == "user_transaction_stats")
    assert old_view.defined_at is not None and new_view.defined_at is not None
    assert new_view.defined_at.line == old_view.defined_at.line + 2
    source = next(s for s in after.stream_sources if s.name == new_view.source)
    assert fingerprint(old_view, source) == fingerprint(new_view, source)  # the worker keeps its tiles


def test_a_spec_written_before_locations_loads_without_one(tmp_path: Path) -> None:
    spec = load_repo(shutil.copytree(EXAMPLE, tmp_path / "a" / "fraud"), "default")
    assert WorkspaceSpec.from_json(spec.to_json()) == spec
    raw = orjson.loads(spec.to_json())
    for entity in raw["entities"]:
        del entity["defined_at"]
    assert all(e.defined_at is None for e in WorkspaceSpec.from_json(orjson.dumps(raw)).entities)


def test_describe_shows_file_and_line(tmp_path: Path) -> None:
    spec = load_repo(shutil.copytree(EXAMPLE, tmp_path / "a" / "fraud"), "default")
    view = next(v for v in spec.stream_feature_views if v.name == "user_transaction_stats")
    doc = describe_document(spec, "stream_feature_view", view, None, "repository")
    assert doc["metadata"]["defined_at"] == {"path": "features/user_transactions.py", "line": view.defined_at.line}  # type: ignore[union-attr]
    assert f"defined_at: features/user_transactions.py:{view.defined_at.line}" in render_description(doc)  # type: ignore[union-attr]
