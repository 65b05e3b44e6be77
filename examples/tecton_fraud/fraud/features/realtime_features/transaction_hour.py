from featurebus import Attribute, realtime_feature_view
from featurebus.types import Bool, Int64
from fraud.features.realtime_features.transaction_request import transaction_request


@realtime_feature_view(
    sources=[transaction_request],
    mode="pandas",
    features=[Attribute("transaction_hour", Int64), Attribute("transaction_is_at_night", Bool)],
    description="The UTC hour of the request, and whether it is between 0:00 and 6:00",
)
def transaction_hour(transaction_request, context):
    import pandas  # as in Tecton, a realtime view imports what it needs inside its body

    hours = context.request_timestamp_series.dt.hour
    return pandas.DataFrame({"transaction_hour": hours, "transaction_is_at_night": hours < 6})
