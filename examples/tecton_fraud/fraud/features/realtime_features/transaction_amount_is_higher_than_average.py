from featurebus import Attribute, realtime_feature_view
from featurebus.types import Bool
from fraud.features.realtime_features.transaction_request import transaction_request
from fraud.features.stream_features.user_transaction_amount_metrics import user_transaction_amount_metrics


@realtime_feature_view(
    sources=[transaction_request, user_transaction_amount_metrics],
    mode="python",
    features=[Attribute("transaction_amount_is_higher_than_average", Bool)],
    description="Whether the transaction amount is over the user's mean of the last day",
)
def transaction_amount_is_higher_than_average(transaction_request, user_transaction_amount_metrics):
    daily_mean = user_transaction_amount_metrics["amt_mean_1d_continuous"] or 0
    return {"transaction_amount_is_higher_than_average": transaction_request["amt"] > daily_mean}
