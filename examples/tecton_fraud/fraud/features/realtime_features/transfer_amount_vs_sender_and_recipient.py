from featurebus import Attribute, realtime_feature_view
from featurebus.types import Bool, Float64
from fraud.features.realtime_features.transfer_request import transfer_request
from fraud.features.stream_features.user_transaction_amount_metrics import user_transaction_amount_metrics

# The same view joined twice, as in Tecton's P2P samples: once for the sender, once for the
# recipient of a transfer. The request carries sender_id and recipient_id as join keys.
sender_metrics = user_transaction_amount_metrics.with_name("sender").with_join_key_map({"user_id": "sender_id"})
recipient_metrics = user_transaction_amount_metrics.with_name("recipient").with_join_key_map(
    {"user_id": "recipient_id"}
)


@realtime_feature_view(
    sources=[
        transfer_request,
        sender_metrics[["amt_mean_1d_continuous", "amt_count_1d_continuous"]],
        recipient_metrics[["amt_count_1d_continuous"]],
    ],
    mode="python",
    features=[
        Attribute("amount_over_sender_mean", Float64),
        Attribute("recipient_is_new", Bool),
    ],
    description="A transfer's amount against the sender's daily mean, and whether the recipient is new",
)
def transfer_amount_vs_sender_and_recipient(transfer_request, sender, recipient):
    mean = sender["amt_mean_1d_continuous"]
    return {
        "amount_over_sender_mean": transfer_request["amt"] / mean if mean else None,
        "recipient_is_new": (recipient["amt_count_1d_continuous"] or 0) == 0,
    }
