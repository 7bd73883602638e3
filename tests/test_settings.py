"""Settings that derive their default from another setting."""

from __future__ import annotations

import pytest

from tuco.config import load_settings
from tuco.errors import ConfigurationError


def test_the_body_budget_defaults_to_64_mib_or_one_largest_value() -> None:
    """Unset, TUCO_MAX_BUFFERED_BYTES is 64 MiB, or TUCO_MAX_VALUE_BYTES when larger, so one value always fits."""
    assert load_settings().body_budget_bytes == 64 << 20
    assert load_settings(max_value_bytes=1 << 30).body_budget_bytes == 1 << 30
    assert load_settings(max_value_bytes=1 << 30, max_buffered_bytes=2 << 30).body_budget_bytes == 2 << 30


def test_an_explicit_body_budget_below_the_value_limit_is_refused() -> None:
    """Set explicitly below TUCO_MAX_VALUE_BYTES, the budget could never take a largest value: a one-line error."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings(max_value_bytes=1 << 20, max_buffered_bytes=1000)
    assert str(caught.value) == (
        "invalid configuration: TUCO_MAX_BUFFERED_BYTES (1000) must be at least TUCO_MAX_VALUE_BYTES (1048576), "
        "or no largest value could ever be received"
    )
