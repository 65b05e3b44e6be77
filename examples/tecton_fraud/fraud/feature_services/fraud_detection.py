from featurebus import FeatureService
from fraud.features.batch_features.user_distinct_merchant_transaction_count_30d import (
    user_distinct_merchant_transaction_count_30d,
)
from fraud.features.realtime_features.transaction_amount_is_high import transaction_amount_is_high
from fraud.features.realtime_features.transaction_amount_is_higher_than_average import (
    transaction_amount_is_higher_than_average,
)
from fraud.features.stream_features.user_transaction_amount_metrics import user_transaction_amount_metrics

fraud_detection_feature_service = FeatureService(
    name="fraud_detection_feature_service",
    features=[
        user_transaction_amount_metrics,
        user_distinct_merchant_transaction_count_30d,
        transaction_amount_is_high,
        transaction_amount_is_higher_than_average,
    ],
)
