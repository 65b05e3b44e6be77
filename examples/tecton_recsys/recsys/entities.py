from featurebus import Entity, Field
from featurebus.types import String

user = Entity(name="recsys_user", join_keys=[Field("user_id", String)], description="A shopper")
