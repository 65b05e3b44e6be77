from datetime import datetime

import pandas as pd
import pytest
from recsys.features.realtime_features.user_favorite_category import user_favorite_category


@pytest.mark.parametrize(
    ("categories", "counts", "expected"),
    [
        (["books", "games"], [2, 5], {"favorite_category": "games", "categories_seen_7d": 2}),
        (["books", "games"], [3, 3], {"favorite_category": "books", "categories_seen_7d": 2}),
        (None, None, {"favorite_category": None, "categories_seen_7d": 0}),
    ],
)
def test_run_transformation(categories, counts, expected):
    input_data = {"user_category_interactions": {"category_keys_7d": categories, "item_id_count_7d_continuous": counts}}

    assert user_favorite_category.run_transformation(input_data=input_data) == expected


def test_get_features_for_events_with_mocked_upstream_arrays():
    input_df = pd.DataFrame(
        {
            "user_id": ["user_1", "user_2"],
            "timestamp": [datetime(2024, 5, 10), datetime(2024, 5, 10)],
            "user_category_interactions__category_keys_7d": [["books", "music"], ["garden"]],
            "user_category_interactions__item_id_count_7d_continuous": [[1, 4], [2]],
        }
    )

    actual = user_favorite_category.get_features_for_events(input_df).to_pandas()

    assert actual["user_favorite_category__favorite_category"].tolist() == ["music", "garden"]
    assert actual["user_favorite_category__categories_seen_7d"].tolist() == [2, 1]
