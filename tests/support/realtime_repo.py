"""A small repository with every kind of realtime feature view, for the realtime tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from featurebus import (
    Aggregate,
    Attribute,
    Calculation,
    Entity,
    FeatureService,
    Field,
    KafkaConfig,
    RealtimeFeatureView,
    RequestSource,
    StreamSource,
    realtime_feature_view,
    stream_feature_view,
)
from featurebus.compile import compile_workspace
from featurebus.types import Bool, Float64, Int64, String, Timestamp

user = Entity(name="user", join_keys=[Field("user_id", String)])
transactions = StreamSource(
    name="transactions",
    schema=[Field("user_id", String), Field("amount", Float64), Field("ts", Timestamp)],
    stream_config=KafkaConfig(topics="transactions", timestamp_field="ts"),
)


@stream_feature_view(
    source=transactions,
    entities=[user],
    mode="pandas",
    online=True,
    offline=True,
    features=[
        Aggregate(function=fn, time_window=timedelta(hours=1), input_column=Field("amount", Float64))
        for fn in ("count", "sum", "mean")
    ],
)
def user_spending(transactions: Any) -> Any:
    return transactions[["user_id", "amount", "ts"]]


txn = RequestSource(
    name="txn", schema=[Field("amount", Float64), Field("merchant", String), Field("channel_code", Int64)]
)

ratio = RealtimeFeatureView(
    name="ratio",
    sources=[
        txn,
        user_spending[["amount_mean_1h_continuous", "amount_count_1h_continuous", "amount_sum_1h_continuous"]],
    ],
    features=[
        Calculation(name="amount_ratio", expr="txn.amount / user_spending.amount_mean_1h_continuous"),
        Calculation(
            name="big",
            expr="CASE WHEN user_spending.amount_count_1h_continuous = 0 THEN txn.amount > 100 "
            "ELSE txn.amount > 2 * user_spending.amount_mean_1h_continuous END",
        ),
        Calculation(name="seen_plus", expr="user_spending.amount_count_1h_continuous + txn.channel_code"),
        Calculation(name="app_or_web", expr="txn.merchant = 'web' OR txn.merchant = 'app'"),
    ],
)


@realtime_feature_view(
    sources=[txn, user_spending[["amount_mean_1h_continuous", "amount_count_1h_continuous"]]],
    mode="python",
    features=[
        Attribute("amount_x2", Float64),
        Attribute("hour", Int64),
        Attribute("mean_or_zero", Float64),
        Attribute("label", String),
        Attribute("quiet", Bool),
    ],
)
def py_view(txn: Any, user_spending: Any, context: Any) -> Any:
    # Each source brings exactly its fields, online and offline alike.
    if set(txn) != {"amount", "merchant", "channel_code"} or len(user_spending) != 2:
        raise ValueError(f"unexpected inputs {txn}, {user_spending}")
    mean = user_spending["amount_mean_1h_continuous"]
    return {
        "amount_x2": txn["amount"] * 2,
        "hour": context.request_timestamp.hour,
        "mean_or_zero": mean if mean is not None else 0.0,
        "label": f"{txn['merchant']}:{user_spending['amount_count_1h_continuous']}",
        "quiet": user_spending["amount_count_1h_continuous"] == 0,
    }


@realtime_feature_view(
    sources=[txn, user_spending[["amount_mean_1h_continuous"]]],
    mode="pandas",
    features=[Attribute("amount_minus_mean", Float64), Attribute("minute", Int64)],
)
def pd_view(txn: Any, spend: Any, context: Any) -> Any:
    import pandas

    if list(spend.columns) != ["amount_mean_1h_continuous"] or len(txn.columns) != 3:
        raise ValueError(f"unexpected columns {list(spend.columns)}, {list(txn.columns)}")
    out = pandas.DataFrame()
    out["amount_minus_mean"] = txn["amount"] - spend["amount_mean_1h_continuous"]
    out["minute"] = context.request_timestamp_series.dt.minute.astype("int64")
    return out


chained = RealtimeFeatureView(
    name="chained",
    sources=[py_view, ratio[["amount_ratio"]]],
    features=[Calculation(name="score", expr="py_view.amount_x2 * COALESCE(ratio.amount_ratio, 1.0)")],
)

request_only = RealtimeFeatureView(
    name="request_only",
    sources=[txn],
    features=[Calculation(name="doubled", expr="txn.amount * 2")],
)

scoring = FeatureService(
    name="scoring",
    features=[user_spending[["amount_count_1h_continuous"]], ratio, py_view, pd_view, chained],
)
no_keys = FeatureService(name="no_keys", features=[request_only])

OBJECTS = [user, transactions, user_spending, ratio, py_view, pd_view, chained, request_only, scoring, no_keys]
SPEC = compile_workspace("rt", OBJECTS)
