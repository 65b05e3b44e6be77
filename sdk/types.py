"""Feature data types, named as in ``tecton.types`` so that an import swap just works.

The types themselves live in ``featurebus.schemas.types`` (specs and the stream kernel need them
without the SDK); this module is their public name.
"""

from featurebus.schemas.types import *  # noqa: F403 -- a re-export, under the same names
from featurebus.schemas.types import __all__ as __all__
