from featurebus import Entity, Field
from featurebus.types import String

user = Entity(name="user", join_keys=[Field("user_id", String)], description="A person browsing the publisher's pages.")
ad = Entity(name="ad", join_keys=[Field("ad_id", String)], description="One creative of a campaign.")
