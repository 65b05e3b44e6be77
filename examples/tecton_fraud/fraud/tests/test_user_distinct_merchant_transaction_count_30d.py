from datetime import datetime, timedelta

import pandas as pd
from fraud.features.batch_features.user_distinct_merchant_transaction_count_30d import (
    user_distinct_merchant_transaction_count_30d,
)

T0 = datetime(2024, 5, 1)


def _transactions():
    # user_1 pays m1 40 days before T0 (outside every 30-day range below), then m2 and m3.
    return pd.DataFrame(
        {
            "user_id": ["user_1", "user_1", "user_1", "user_2"],
            "merchant": ["m1", "m2", "m3", "m1"],
            "amt": [1.0, 2.0, 3.0, 4.0],
            "timestamp": [
                T0 - timedelta(days=40),
                T0 - timedelta(days=10),
                T0 - timedelta(hours=1),
                T0 - timedelta(days=2),
            ],
        }
    )


def test_select_range_reads_the_30_days_before_each_window_end():
    output = (
        user_distinct_merchant_transaction_count_30d.run_transformation(
            start_time=T0 - timedelta(days=1), end_time=T0, mock_inputs={"transactions_batch": _transactions()}
        )
        .to_pandas()
        .sort_values("user_id")
    )

    assert output["user_id"].tolist() == ["user_1", "user_2"]
    assert output["distinct_merchant_transaction_count_30d"].tolist() == [2, 1]


def test_features_as_of_each_event():
    spine = pd.DataFrame(
        {"user_id": ["user_1", "user_1"], "timestamp": [T0 + timedelta(hours=1), T0 - timedelta(days=5)]}
    )

    features = user_distinct_merchant_transaction_count_30d.get_features_for_events(
        spine, mock_inputs={"transactions_batch": _transactions()}
    ).to_pandas()

    # As of T0 + 1h: the run of [T0 - 1d, T0) saw m2 and m3; as of T0 - 5d only m2 (m1 is too old).
    column = "user_distinct_merchant_transaction_count_30d__distinct_merchant_transaction_count_30d"
    assert features[column].tolist() == [2, 1]
