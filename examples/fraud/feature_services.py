from featurebus import FeatureService
from fraud.features.merchant_transactions import merchant_online_volume
from fraud.features.transaction_request import transaction_vs_history
from fraud.features.user_transactions import user_transaction_stats

# Ten features, six continuous user windows and four merchant windows in 5-minute tiles: what a
# real-time fraud model reads per authorisation (and what `python -m bench --only serving` serves).
fraud_detection = FeatureService(
    name="fraud_detection",
    features=[user_transaction_stats, merchant_online_volume],
    description="Features for the card-fraud model.",
)

user_spending = FeatureService(
    name="user_spending",
    features=[user_transaction_stats[["amount_sum_1h_continuous", "amount_mean_1d_continuous"]]],
)

fraud_scoring = FeatureService(
    name="fraud_scoring",
    features=[user_transaction_stats, transaction_vs_history],
    description="The user's history plus how the transaction being scored compares with it "
    "(needs requestContextMap: {'amount': ...}).",
)
