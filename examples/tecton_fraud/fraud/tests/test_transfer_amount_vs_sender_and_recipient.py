from datetime import datetime, timedelta

import pandas as pd
import pytest
from fraud.feature_services.p2p_transfers import p2p_transfer_service
from fraud.features.realtime_features.transfer_amount_vs_sender_and_recipient import (
    transfer_amount_vs_sender_and_recipient,
)

T0 = datetime(2024, 5, 1)


@pytest.mark.parametrize(
    ("sender_mean", "recipient_count", "expected"),
    [
        (100.0, 0, {"amount_over_sender_mean": 2.5, "recipient_is_new": True}),
        (None, 3, {"amount_over_sender_mean": None, "recipient_is_new": False}),
    ],
)
def test_run_transformation(sender_mean, recipient_count, expected):
    input_data = {
        "transfer_request": {"amt": 250.0},
        "sender": {"amt_mean_1d_continuous": sender_mean, "amt_count_1d_continuous": 4},
        "recipient": {"amt_count_1d_continuous": recipient_count},
    }

    actual = transfer_amount_vs_sender_and_recipient.run_transformation(input_data=input_data)

    assert actual == expected


def test_get_features_for_events_with_mocked_sender_and_recipient_features():
    input_df = pd.DataFrame(
        {
            "timestamp": [T0, T0],
            "amt": [50.0, 10.0],
            "sender__amt_mean_1d_continuous": [100.0, 20.0],
            "sender__amt_count_1d_continuous": [2, 1],
            "recipient__amt_count_1d_continuous": [0, 5],
        }
    )

    actual = transfer_amount_vs_sender_and_recipient.get_features_for_events(input_df).to_pandas()

    prefix = "transfer_amount_vs_sender_and_recipient__"
    assert actual[prefix + "amount_over_sender_mean"].tolist() == [0.5, 0.5]
    assert actual[prefix + "recipient_is_new"].tolist() == [True, False]


def test_the_service_joins_the_view_for_sender_and_recipient():
    transactions = pd.DataFrame(
        {
            "user_id": ["user_1", "user_1", "user_2"],
            "merchant": ["m1", "m2", "m1"],
            "amt": [50.0, 150.0, 30.0],
            "timestamp": [T0 - timedelta(hours=5), T0 - timedelta(hours=2), T0 - timedelta(hours=3)],
        }
    )
    spine = pd.DataFrame(
        {
            "sender_id": ["user_1", "user_2"],
            "recipient_id": ["user_2", "user_3"],
            "timestamp": [T0, T0],
            "amt": [300.0, 60.0],
        }
    )

    training = p2p_transfer_service.get_features_for_events(
        spine, mock_inputs={"transactions_stream": transactions}
    ).to_pandas()

    assert training["sender__amt_mean_1d_continuous"].tolist() == [100.0, 30.0]
    assert training["recipient__amt_count_1d_continuous"].tolist() == [1, 0]
    assert training["transfer_amount_vs_sender_and_recipient__amount_over_sender_mean"].tolist() == [3.0, 2.0]
    assert training["transfer_amount_vs_sender_and_recipient__recipient_is_new"].tolist() == [False, True]
