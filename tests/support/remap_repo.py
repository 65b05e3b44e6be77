"""A repository that joins one view twice (sender and recipient) through ``with_join_key_map``,
in a feature service and as the sources of realtime views, for the key remapping tests."""

from __future__ import annotations

from typing import Any

from featurebus import (
    Attribute,
    Calculation,
    FeatureService,
    RealtimeFeatureView,
    RequestSource,
    realtime_feature_view,
)
from featurebus.compile import compile_workspace
from featurebus.types import Field, Float64, Int64
from tests.support.realtime_repo import transactions, user, user_spending

SENDER = user_spending.with_name("sender").with_join_key_map({"user_id": "sender_id"})
RECIPIENT = user_spending.with_join_key_map({"user_id": "recipient_id"}).with_name("recipient")

transfer = RequestSource(name="transfer", schema=[Field("amount", Float64)])

# Calculations name sources by their namespace: sender.<feature>, recipient.<feature>.
flow = RealtimeFeatureView(
    name="flow",
    sources=[transfer, SENDER[["amount_sum_1h_continuous"]], RECIPIENT[["amount_sum_1h_continuous"]]],
    features=[
        Calculation(
            name="net",
            expr="COALESCE(recipient.amount_sum_1h_continuous, 0.0) - COALESCE(sender.amount_sum_1h_continuous, 0.0)",
        )
    ],
)


@realtime_feature_view(
    sources=[transfer, SENDER[["amount_count_1h_continuous"]], RECIPIENT[["amount_count_1h_continuous"]]],
    mode="python",
    features=[Attribute("events_between", Int64), Attribute("amount_share", Float64)],
)
def pair(transfer: Any, sender: Any, recipient: Any) -> Any:
    total = sender["amount_count_1h_continuous"] + recipient["amount_count_1h_continuous"]
    return {"events_between": total, "amount_share": transfer["amount"] / (total + 1)}


transfers = FeatureService(
    name="transfers",
    features=[SENDER, RECIPIENT[["amount_count_1h_continuous"]], user_spending[["amount_count_1h_continuous"]]],
)
transfers_rt = FeatureService(name="transfers_rt", features=[flow, pair, SENDER[["amount_count_1h_continuous"]]])

OBJECTS = [user, transactions, user_spending, flow, pair, transfers, transfers_rt]
SPEC = compile_workspace("remap", OBJECTS)
