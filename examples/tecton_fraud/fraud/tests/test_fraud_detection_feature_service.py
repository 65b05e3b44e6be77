from datetime import datetime, timedelta

import pandas as pd
from fraud.feature_services.fraud_detection import fraud_detection_feature_service

T0 = datetime(2024, 5, 1)


def test_the_service_over_mock_sources():
    transactions = pd.DataFrame(
        {
            "user_id": ["user_1", "user_1"],
            "merchant": ["m1", "m2"],
            "amt": [50.0, 150.0],
            "timestamp": [T0 - timedelta(hours=5), T0 - timedelta(hours=2)],
        }
    )
    spine = pd.DataFrame({"user_id": ["user_1"], "timestamp": [T0 + timedelta(hours=1)], "amt": [120.0]})

    training = fraud_detection_feature_service.get_features_for_events(
        spine, mock_inputs={"transactions_stream": transactions, "transactions_batch": transactions}
    ).to_pandas()

    row = training.iloc[0]
    assert row["user_transaction_amount_metrics__amt_mean_1d_continuous"] == 100.0
    assert row["user_distinct_merchant_transaction_count_30d__distinct_merchant_transaction_count_30d"] == 2
    assert bool(row["transaction_amount_is_high__transaction_amount_is_high"]) is True
    assert bool(row["transaction_amount_is_higher_than_average__transaction_amount_is_higher_than_average"]) is True
