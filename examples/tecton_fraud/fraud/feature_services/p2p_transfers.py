from featurebus import FeatureService
from fraud.features.realtime_features.transfer_amount_vs_sender_and_recipient import (
    recipient_metrics,
    sender_metrics,
    transfer_amount_vs_sender_and_recipient,
)

p2p_transfer_service = FeatureService(
    name="p2p_transfer_service",
    features=[
        sender_metrics,
        recipient_metrics[["amt_count_1d_continuous"]],
        transfer_amount_vs_sender_and_recipient,
    ],
)
