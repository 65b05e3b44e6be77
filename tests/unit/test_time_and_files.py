"""Epoch milliseconds (featurebus.schemas.time) and atomic file replacement (platform.files)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from featurebus.platform.files.atomic import atomic_write, atomic_write_with
from featurebus.schemas.time import format_iso_ms, from_epoch_ms, now_ms, parse_iso_ms, to_epoch_ms

T = 1714564800250  # 2024-05-01T12:00:00.250Z


def test_conversions_agree_on_one_instant() -> None:
    moment = datetime(2024, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    assert to_epoch_ms(moment) == T
    assert to_epoch_ms(moment.replace(tzinfo=None)) == T  # naive means UTC
    assert to_epoch_ms(moment.astimezone(timezone(timedelta(hours=2)))) == T
    assert to_epoch_ms(pd.Timestamp("2024-05-01T12:00:00.250999999Z")) == T  # floored, nanoseconds too
    assert from_epoch_ms(T) == moment
    assert format_iso_ms(T) == "2024-05-01T12:00:00.250Z"
    assert parse_iso_ms("2024-05-01T12:00:00.250Z") == parse_iso_ms("2024-05-01T14:00:00.250+02:00") == T
    assert parse_iso_ms("2024-05-01") == T - 12 * 3_600_000 - 250


def test_sub_millisecond_times_floor_also_before_the_epoch() -> None:
    assert to_epoch_ms(datetime(1969, 12, 31, 23, 59, 59, 999_500, tzinfo=UTC)) == -1
    assert format_iso_ms(-1) == "1969-12-31T23:59:59.999Z"


@given(st.integers(min_value=-(10**12), max_value=4 * 10**12))
def test_every_millisecond_round_trips(ms: int) -> None:
    assert to_epoch_ms(from_epoch_ms(ms)) == ms
    assert parse_iso_ms(format_iso_ms(ms)) == ms


def test_a_bad_iso_text_is_named() -> None:
    with pytest.raises(ValueError, match=r"'yesterday' is not an ISO-8601 timestamp"):
        parse_iso_ms("yesterday")


def test_now_is_the_wall_clock() -> None:
    assert abs(now_ms() - to_epoch_ms(datetime.now(UTC))) < 5_000


def test_atomic_write_replaces_the_whole_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "state.json"
    atomic_write(target, "first\n")
    atomic_write(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["state.json"]


def test_an_interrupted_atomic_write_keeps_the_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "state.json"
    atomic_write(target, "old")

    def crash(src: object, dst: object) -> None:
        raise KeyboardInterrupt("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, "new", temporary=tmp_path / "_state-1.tmp")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert (tmp_path / "_state-1.tmp").read_text() == "new"  # what recovery code would clear away


def test_atomic_write_with_lets_a_library_write_the_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "set.parquet"
    atomic_write_with(target, lambda temporary: pd.DataFrame({"a": [1, 2]}).to_parquet(temporary, index=False))
    assert pd.read_parquet(target)["a"].tolist() == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set.parquet"]
