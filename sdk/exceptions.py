"""featurebus's errors, for users: ``except featurebus.exceptions.FeaturebusError``.

The hierarchy itself lives in ``featurebus.schemas.errors``, below every layer, so that the
stream kernel, the platform and serving can raise these without importing the SDK.
"""

from featurebus.schemas.errors import *  # noqa: F403 -- a re-export, under the same names
from featurebus.schemas.errors import __all__ as __all__
