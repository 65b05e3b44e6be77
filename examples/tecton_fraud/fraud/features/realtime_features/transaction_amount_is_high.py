from featurebus import Calculation, RealtimeFeatureView
from fraud.features.realtime_features.transaction_request import transaction_request

transaction_amount_is_high = RealtimeFeatureView(
    name="transaction_amount_is_high",
    sources=[transaction_request],
    features=[Calculation(name="transaction_amount_is_high", expr="transaction_request.amt > 100")],
    description="Whether the transaction amount is over 100",
)
