from datetime import datetime

import pandas as pd
import pytest
from fraud.features.realtime_features.transaction_amount_is_higher_than_average import (
    transaction_amount_is_higher_than_average,
)


@pytest.mark.parametrize(("daily_mean", "amount", "expected"), [(100, 200, True), (100, 10, False), (100, 100, False)])
def test_run_transformation(daily_mean, amount, expected):
    input_data = {
        "transaction_request": {"amt": amount},
        "user_transaction_amount_metrics": {"amt_mean_1d_continuous": daily_mean},
    }

    actual = transaction_amount_is_higher_than_average.run_transformation(input_data=input_data)

    assert actual == {"transaction_amount_is_higher_than_average": expected}


def test_get_features_for_events_with_mocked_upstream_features():
    input_df = pd.DataFrame(
        {
            "user_id": ["user_1", "user_2"],
            "timestamp": [datetime(2024, 5, 1), datetime(2024, 5, 1)],
            "amt": [200.0, 10.0],
            "user_transaction_amount_metrics__amt_mean_1d_continuous": [100.0, 100.0],
            "user_transaction_amount_metrics__amt_sum_1h_continuous": [0.0, 0.0],
            "user_transaction_amount_metrics__amt_count_1d_continuous": [1, 1],
        }
    )

    actual_df = transaction_amount_is_higher_than_average.get_features_for_events(input_df).to_pandas()

    expected = input_df.assign(
        transaction_amount_is_higher_than_average__transaction_amount_is_higher_than_average=[True, False]
    )
    pd.testing.assert_frame_equal(actual_df, expected)
