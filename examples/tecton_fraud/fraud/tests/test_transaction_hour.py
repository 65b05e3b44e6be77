from datetime import UTC, datetime

import pandas as pd
from fraud.features.realtime_features.transaction_hour import transaction_hour

from featurebus import RealtimeContext


def test_pandas_mode_reads_the_request_time_from_the_context():
    times = pd.Series([pd.Timestamp("2024-05-01T03:15:00Z"), pd.Timestamp("2024-05-01T18:00:00Z")])
    actual = transaction_hour.run_transformation(
        input_data={
            "transaction_request": pd.DataFrame({"amt": [1.0, 2.0]}),
            "context": RealtimeContext(request_timestamp_series=times),
        }
    )

    assert actual["transaction_hour"].tolist() == [3, 18]
    assert actual["transaction_is_at_night"].tolist() == [True, False]


def test_get_features_for_events_uses_each_row_time():
    events = pd.DataFrame({"amt": [5.0], "timestamp": [datetime(2024, 5, 1, 23, 30, tzinfo=UTC)]})

    actual = transaction_hour.get_features_for_events(events).to_pandas()

    assert actual["transaction_hour__transaction_hour"].tolist() == [23]
    assert actual["transaction_hour__transaction_is_at_night"].tolist() == [False]
