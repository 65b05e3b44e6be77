from featurebus import Entity, Field
from featurebus.types import String

user = Entity(name="fraud_user", join_keys=[Field("user_id", String)], description="A user of the payment platform")
