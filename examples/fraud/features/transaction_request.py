from featurebus import Calculation, Field, RealtimeFeatureView, RequestSource
from featurebus.types import Float64
from fraud.features.user_transactions import user_transaction_stats

# The transaction being scored arrives with the request (``requestContextMap`` online, a spine
# column offline); it is compared with the user's recent history, computed by the stream worker.
transaction = RequestSource(name="transaction", schema=[Field("amount", Float64)])

transaction_vs_history = RealtimeFeatureView(
    name="transaction_vs_history",
    sources=[transaction, user_transaction_stats[["amount_mean_1d_continuous", "amount_count_10m_continuous"]]],
    features=[
        Calculation(
            name="amount_to_daily_mean",
            expr="transaction.amount / COALESCE(user_transaction_stats.amount_mean_1d_continuous, transaction.amount)",
        ),
        Calculation(
            name="is_unusual",
            expr="transaction.amount > 3 * COALESCE(user_transaction_stats.amount_mean_1d_continuous, 0.0) "
            "OR user_transaction_stats.amount_count_10m_continuous >= 5",
        ),
    ],
    description="The transaction being authorised against the user's spending history.",
)
