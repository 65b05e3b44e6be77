"""``StreamSource.unfiltered()`` in a batch feature view: the transformation sees the source's
whole ``batch_config`` history, not only the materialization range (as ``BatchSource.unfiltered()``);
in a stream feature view it changes nothing."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from featurebus import (
    Attribute,
    Entity,
    Field,
    FileConfig,
    KafkaConfig,
    StreamSource,
    batch_feature_view,
    stream_feature_view,
)
from featurebus.compile import compile_workspace
from featurebus.exceptions import DefinitionError
from featurebus.platform.batch.compute import compute_rows
from featurebus.platform.batch.inputs import read_inputs
from featurebus.schemas.specs import FileConfigSpec, WorkspaceSpec
from featurebus.types import Float64, Int64, String, Timestamp

HOUR = 3_600_000
T0 = 1714521600000  # 2024-05-01T00:00:00Z

user = Entity(name="user", join_keys=[Field("user_id", String)])
clicks = StreamSource(
    name="clicks",
    schema=[Field("user_id", String), Field("amount", Float64), Field("ts", Timestamp)],
    stream_config=KafkaConfig(topics="clicks", timestamp_field="ts"),
    batch_config=FileConfig(uri="/replaced/in/tests", file_format="parquet"),
)


def _running_count(clicks):  # type: ignore[no-untyped-def]
    # The how-many-th click of its user each click is: depends on every earlier click.
    ordered = clicks.sort_values("ts")
    return ordered.assign(n=ordered.groupby("user_id").cumcount() + 1)[["user_id", "n", "ts"]]


def _view(unfiltered: bool):  # type: ignore[no-untyped-def]
    return batch_feature_view(
        name="nth",
        sources=[clicks.unfiltered() if unfiltered else clicks],
        entities=[user],
        mode="pandas",
        offline=True,
        ttl=timedelta(days=30),
        features=[Attribute("n", Int64)],
    )(_running_count)


def _spec(folder: Path, unfiltered: bool) -> WorkspaceSpec:
    folder.mkdir(parents=True, exist_ok=True)
    stamps = [T0 + h * HOUR for h in range(10)]
    pd.DataFrame(
        {"user_id": ["a"] * 10, "amount": [1.0] * 10, "ts": pd.to_datetime(stamps, unit="ms", utc=True)}
    ).to_parquet(folder / "clicks.parquet")
    spec = compile_workspace("w", [user, _view(unfiltered)])
    source = dataclasses.replace(spec.stream_sources[0], batch_config=FileConfigSpec(str(folder), "parquet", None))
    return dataclasses.replace(spec, stream_sources=(source,))


@pytest.mark.parametrize(("unfiltered", "expected"), [(True, [7, 8, 9]), (False, [1, 2, 3])])
def test_an_unfiltered_stream_source_gives_the_whole_history(
    tmp_path: Path, unfiltered: bool, expected: list[int]
) -> None:
    spec = _spec(tmp_path / "clicks", unfiltered)
    view = spec.batch_view("nth")
    assert view.unfiltered_sources == (("clicks",) if unfiltered else ())
    assert [s.name for s in spec.stream_sources] == ["clicks"] and not spec.batch_sources
    lo, hi = T0 + 6 * HOUR, T0 + 9 * HOUR
    rows, ts_ms = compute_rows(view, read_inputs(spec, view, lo, hi), lo, hi)
    assert ts_ms.tolist() == [T0 + h * HOUR for h in (6, 7, 8)]  # the output is still the range's rows
    assert rows["n"].tolist() == expected


def test_a_stream_view_over_an_unfiltered_source_is_the_same_view() -> None:
    def spend(clicks):  # type: ignore[no-untyped-def]
        return clicks

    def build(source: object) -> WorkspaceSpec:
        view = stream_feature_view(
            name="spend",
            source=source,
            entities=[user],
            mode="pandas",  # type: ignore[arg-type]
            ttl=timedelta(days=1),
            features=[Attribute("amount", Float64)],
        )(spend)
        return compile_workspace("w", [view])

    assert build(clicks.unfiltered()) == build(clicks)


def test_an_unfiltered_stream_source_without_history_is_refused() -> None:
    bare = StreamSource(
        name="bare",
        schema=[Field("user_id", String), Field("ts", Timestamp)],
        stream_config=KafkaConfig(topics="bare", timestamp_field="ts"),
    )
    with pytest.raises(DefinitionError, match="has no batch_config"):
        batch_feature_view(
            name="v",
            sources=[bare.unfiltered()],
            entities=[user],
            mode="pandas",
            ttl=timedelta(days=1),
            features=[Attribute("user_id", String)],
        )(lambda bare: bare)
