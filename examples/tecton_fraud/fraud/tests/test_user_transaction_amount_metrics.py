from datetime import datetime, timedelta

import pandas as pd
from fraud.features.stream_features.user_transaction_amount_metrics import user_transaction_amount_metrics

T0 = datetime(2024, 5, 1)


def _transactions():
    return pd.DataFrame(
        {
            "user_id": ["user_1", "user_1", "user_2", "user_1"],
            "merchant": ["m1", "m2", "m1", "m3"],
            "amt": [10.0, 20.0, 5.0, 40.0],
            "timestamp": [T0, T0 + timedelta(minutes=30), T0 + timedelta(minutes=10), T0 + timedelta(hours=3)],
        }
    )


def test_run_transformation_over_mock_data():
    output = user_transaction_amount_metrics.run_transformation(
        start_time=T0, end_time=T0 + timedelta(hours=1), mock_inputs={"transactions_stream": _transactions()}
    ).to_pandas()

    assert output["amt"].tolist() == [10.0, 20.0, 5.0]  # the rows in [start, end) only
    assert list(output.columns) == ["user_id", "amt", "timestamp"]


def test_features_over_mock_data_without_kafka():
    spine = pd.DataFrame(
        {
            "user_id": ["user_1", "user_2", "user_1"],
            "timestamp": [T0 + timedelta(minutes=45), T0 + timedelta(hours=2), T0 + timedelta(hours=4)],
        }
    )

    features = user_transaction_amount_metrics.get_features_for_events(
        spine, mock_inputs={"transactions_stream": _transactions()}
    ).to_pandas()

    # No event of user_2 in the hour before T0 + 2h: a sum is null there.
    sums = features["user_transaction_amount_metrics__amt_sum_1h_continuous"]
    assert sums[0] == 30.0 and pd.isna(sums[1]) and sums[2] == 40.0
    assert features["user_transaction_amount_metrics__amt_count_1d_continuous"].tolist() == [2, 1, 3]
    assert features["user_transaction_amount_metrics__amt_mean_1d_continuous"].tolist() == [15.0, 5.0, 70.0 / 3]
