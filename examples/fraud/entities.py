from featurebus import Entity, Field
from featurebus.types import String

user = Entity(name="user", join_keys=[Field("user_id", String)], description="A card holder.")
merchant = Entity(name="merchant", join_keys=[Field("merchant_id", String)], description="A card acceptor.")
