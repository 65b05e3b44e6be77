"""ServingLimits: defaults, FEATUREBUS_SERVING_* overrides, and clear errors for bad values."""

from __future__ import annotations

import pytest

from featurebus.schemas.errors import FeaturebusError
from featurebus.serving.limits import ServingLimits


def test_environment_variables_override_the_defaults_and_round_trip() -> None:
    limits = ServingLimits.from_env(
        {"FEATUREBUS_SERVING_MAX_BATCH_ROWS": "50", "FEATUREBUS_SERVING_BODY_TIMEOUT_S": "2.5"}
    )
    assert limits.max_batch_rows == 50 and limits.body_timeout_s == 2.5
    assert limits.header_timeout_s == ServingLimits().header_timeout_s
    assert ServingLimits.from_env(limits.to_env()) == limits


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("FEATUREBUS_SERVING_MAX_BATCH_ROWS", "many", "is not a whole number"),
        ("FEATUREBUS_SERVING_MAX_CONNECTIONS", "0", "must be positive"),
        ("FEATUREBUS_SERVING_HEADER_TIMEOUT_S", "-1", "must be positive"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, fragment: str) -> None:
    with pytest.raises(FeaturebusError, match=fragment) as info:
        ServingLimits.from_env({name: value})
    assert name in str(info.value)
