from datetime import datetime, timedelta

import pandas as pd
from recsys.features.stream_features.user_category_interactions import user_category_interactions

T0 = datetime(2024, 5, 10)


def _interactions():
    return pd.DataFrame(
        {
            "user_id": ["user_1", "user_1", "user_1", "user_2", "user_1"],
            "item_id": ["i1", "i2", "i3", "i1", "i4"],
            "category": ["books", "games", "books", "books", "music"],
            "event": ["view", "click", "click", "view", "view"],
            "price": [10.0, 20.0, 5.0, 10.0, 7.0],
            "timestamp": [
                T0 - timedelta(days=3),
                T0 - timedelta(hours=5),
                T0 - timedelta(hours=2),
                T0 - timedelta(hours=1),
                T0 + timedelta(hours=1),  # after the spine time: not counted
            ],
        }
    )


def test_counts_split_by_category():
    spine = pd.DataFrame({"user_id": ["user_1", "user_2", "user_3"], "timestamp": [T0, T0, T0]})

    features = user_category_interactions.get_features_for_events(
        spine, mock_inputs={"user_interactions": _interactions()}
    ).to_pandas()

    row = features.iloc[0]
    prefix = "user_category_interactions__"
    # One element per category, in category order, aligned with category_keys_<window>.
    assert list(row[prefix + "category_keys_7d"]) == ["books", "games"]
    assert list(row[prefix + "item_id_count_7d_continuous"]) == [2, 1]
    assert list(row[prefix + "clicked_sum_7d_continuous"]) == [1, 1]
    assert list(row[prefix + "category_keys_1d"]) == ["books", "games"]
    assert list(row[prefix + "item_id_count_1d_continuous"]) == [1, 1]
    assert list(features.iloc[1][prefix + "category_keys_7d"]) == ["books"]
    # No interaction at all: null, as other aggregations without events.
    assert features.iloc[2][prefix + "category_keys_7d"] is None
