from featurebus import Field, RequestSource
from featurebus.types import Float64

transfer_request = RequestSource(name="transfer_request", schema=[Field("amt", Float64)])
