from datetime import datetime, timedelta

import pandas as pd
from recsys.feature_services.recommendations import recommendation_service

T0 = datetime(2024, 5, 10)


def test_the_service_over_mock_sources():
    interactions = pd.DataFrame(
        {
            "user_id": ["user_1", "user_1", "user_1", "user_1"],
            "item_id": ["i1", "i2", "i3", "i5"],
            "category": ["books", "games", "games", "books"],
            "event": ["purchase", "purchase", "view", "purchase"],
            "price": [12.0, 30.0, 0.0, 8.0],
            "timestamp": [
                T0 - timedelta(days=2, hours=3),
                T0 - timedelta(days=2, hours=1),
                T0 - timedelta(days=1, hours=6),
                T0 - timedelta(days=1, hours=2),
            ],
        }
    )
    spine = pd.DataFrame({"user_id": ["user_1"], "timestamp": [T0]})

    training = recommendation_service.get_features_for_events(
        spine, mock_inputs={"user_interactions": interactions}
    ).to_pandas()

    row = training.iloc[0]
    assert list(row["user_category_interactions__category_keys_7d"]) == ["books", "games"]
    assert list(row["user_category_interactions__item_id_count_7d_continuous"]) == [2, 2]
    # The batch view's daily tiles: purchases of the 7 complete days before T0, per category.
    assert list(row["user_category_purchases__category_keys_7d"]) == ["books", "games"]
    assert list(row["user_category_purchases__price_sum_7d_1d"]) == [20.0, 30.0]
    assert row["user_favorite_category__favorite_category"] == "books"
    assert row["user_favorite_category__categories_seen_7d"] == 2
