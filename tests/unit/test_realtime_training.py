"""Realtime views in training sets: spine columns are the request, and online equals offline."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurebus.exceptions import InvalidRequestError
from featurebus.platform.offline.store import open_store, write_partition
from featurebus.platform.training.training_sets import get_features_for_events
from tests.support.realtime_repo import SPEC
from tests.unit.test_realtime_serving import BASE, MINUTE, server

Event = tuple[str, int, float]


def _offline(tmp: Path, events: list[Event], spine: pd.DataFrame, service: str = "scoring") -> pd.DataFrame:
    root = tmp / "offline"
    open_store(root)
    if events:
        frame = pd.DataFrame(
            {
                "user_id": [e[0] for e in events],
                "amount": [e[2] for e in events],
                "ts": pd.to_datetime([e[1] for e in events], unit="ms", utc=True),
            }
        )
        write_partition(root, SPEC.name, SPEC.source("transactions"), "transactions", 0, frame, np.arange(len(events)))
    return get_features_for_events(SPEC, service, spine, root)


def _as_served(value: Any, dtype: str) -> Any:
    """An offline value in the JSON form serving answers with."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if dtype == "int64":
        return str(int(value))
    if dtype == "bool":
        return bool(value)
    if dtype == "float64":
        return float(value)
    return value


def _assert_online_equals_offline(events: list[Event], spine: pd.DataFrame, offline: pd.DataFrame) -> None:
    dtypes = {}
    for selection in SPEC.service("scoring").selections:
        if SPEC.is_realtime(selection.view):
            fields = SPEC.realtime_view(selection.view).features
        else:
            fields = tuple(a for a in SPEC.view(selection.view).aggregations)  # type: ignore[assignment]
        for f in fields:
            dtypes[f"{selection.view}.{f.name}"] = getattr(f, "dtype", None) or getattr(f, "output_dtype", None)
    for i in range(len(spine)):
        row = spine.iloc[i]
        t_ms = int(row["ts"].value // 1_000_000)
        context = {
            "amount": float(row["amount"]),
            "merchant": row["merchant"],
            "channel_code": int(row["channel_code"]),
        }
        online = server(events, t_ms).get_features(
            "rt", "scoring", {"user_id": row["user_id"]}, request_context_map=context
        )
        names = [m["name"] for m in online["metadata"]["features"]]
        for name, got in zip(names, online["result"]["features"], strict=True):
            want = _as_served(offline[name.replace(".", "__")].iloc[i], dtypes[name])
            where = f"row {i} {name}"
            if isinstance(got, float) and math.isnan(got):
                got = None  # 0/0 in a Calculation; the HTTP layer's JSON encodes NaN as null
            if isinstance(got, float) and want is not None:
                assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12), (where, got, want)
            else:
                assert got == want, (where, got, want)


EVENTS: list[Event] = [
    ("alice", BASE + 10 * MINUTE, 10.0),
    ("alice", BASE + 50 * MINUTE, 20.0),
    ("alice", BASE + 59 * MINUTE, 30.0),
    ("bob", BASE, 5.0),
]


def test_training_set_with_realtime_views(tmp_path: Path) -> None:
    spine = pd.DataFrame(
        {
            "user_id": ["alice", "carol", "bob"],
            "ts": pd.to_datetime([BASE + 67 * MINUTE, BASE + 67 * MINUTE, BASE + 30 * MINUTE], unit="ms", utc=True),
            "amount": [50.0, 50.0, 1.0],
            "merchant": ["web", "shop", "app"],
            "channel_code": [2, 2, 7],
        }
    )
    result = _offline(tmp_path, EVENTS, spine)
    assert result["ratio__amount_ratio"].tolist()[:1] == [2.5]
    assert result["ratio__big"].tolist() == [True, False, False]
    assert result["ratio__seen_plus"].tolist() == [5, 2, 8]
    assert result["py_view__label"].tolist() == ["web:3", "shop:0", "app:1"]
    assert result["pd_view__minute"].tolist() == [7, 7, 30]
    assert result["chained__score"].tolist() == [250.0, 100.0, 0.4]
    assert pd.isna(result["ratio__amount_ratio"].iloc[1])
    assert "user_spending__amount_mean_1h_continuous" not in result  # read by the views, not served
    _assert_online_equals_offline(EVENTS, spine, result)


def test_spine_must_carry_the_request_fields(tmp_path: Path) -> None:
    spine = pd.DataFrame({"user_id": ["alice"], "ts": pd.to_datetime([BASE], unit="ms", utc=True), "amount": [1.0]})
    with pytest.raises(InvalidRequestError, match=r"lacks request context column\(s\) \['merchant', 'channel_code'\]"):
        _offline(tmp_path, EVENTS, spine)


def test_request_only_service_in_training(tmp_path: Path) -> None:
    spine = pd.DataFrame(
        {
            "ts": pd.to_datetime([BASE, BASE], unit="ms", utc=True),
            "amount": [1.5, None],
            "merchant": ["a", "b"],
            "channel_code": [1, 2],
        }
    )
    result = _offline(tmp_path, [], spine, service="no_keys")
    assert result["request_only__doubled"].iloc[0] == 3.0 and pd.isna(result["request_only__doubled"].iloc[1])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    events=st.lists(
        st.tuples(
            st.sampled_from(["u1", "u2"]),
            st.integers(0, 120).map(lambda m: BASE + m * MINUTE // 2),
            st.floats(-1e3, 1e3, allow_nan=False),
        ),
        max_size=12,
    ),
    queries=st.lists(
        st.tuples(
            st.sampled_from(["u1", "u2", "u3"]),
            st.integers(0, 70),
            st.floats(-1e3, 1e3, allow_nan=False),
            st.sampled_from(["web", "app", "x"]),
            st.integers(-5, 5),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_online_and_offline_agree(
    tmp_path_factory: pytest.TempPathFactory, events: list[Event], queries: list[tuple[str, int, float, str, int]]
) -> None:
    spine = pd.DataFrame(
        {
            "user_id": [q[0] for q in queries],
            "ts": pd.to_datetime([BASE + q[1] * MINUTE for q in queries], unit="ms", utc=True),
            "amount": [q[2] for q in queries],
            "merchant": [q[3] for q in queries],
            "channel_code": [q[4] for q in queries],
        }
    )
    offline = _offline(tmp_path_factory.mktemp("rt"), events, spine)
    _assert_online_equals_offline(events, spine, offline)


def test_timestamps_through_calculations_online_and_offline() -> None:
    from featurebus.schemas.specs import CalculationSpec, FieldSpec, RealtimeFeatureViewSpec, RealtimeInputSpec
    from featurebus.streams.realtime import CompiledRealtimeView

    spec = RealtimeFeatureViewSpec(
        "times",
        (RealtimeInputSpec("request", "req", (FieldSpec("at", "timestamp"),)),),
        (FieldSpec("first", "timestamp"), FieldSpec("later", "bool")),
        "no_transformation",
        calculations=(
            CalculationSpec("first", "COALESCE(req.at, context.request_timestamp)", "timestamp"),
            CalculationSpec("later", "req.at > context.request_timestamp", "bool"),
        ),
    )
    view = CompiledRealtimeView(spec)
    now = pd.Timestamp("2024-01-01T12:00:00Z")
    at = pd.Timestamp("2024-01-01T13:00:00.5Z")
    online = [view.evaluate_row({"req": {"at": a}}, now.to_pydatetime()) for a in (at.to_pydatetime(), None)]
    assert online == [{"first": at.to_pydatetime(), "later": True}, {"first": now.to_pydatetime(), "later": None}]
    frame = view.evaluate_frame(
        {"req": pd.DataFrame({"at": pd.to_datetime([at, None], utc=True)})},
        pd.Series(pd.to_datetime([now, now], utc=True)),
    )
    assert frame["first"].tolist() == [at, now]
    assert frame["later"].tolist() == [True, pd.NA]
