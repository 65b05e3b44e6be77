from featurebus import Field, RequestSource
from featurebus.types import Float64

transaction_request = RequestSource(name="transaction_request", schema=[Field("amt", Float64)])
