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


# -- watching -----------------------------------------------------------------------


def test_watch_settings_reach_the_service_and_cors_origins_are_a_set() -> None:
    """TUCO_WATCH_* and TUCO_CORS_ALLOW_ORIGINS arrive in the service's WatchSettings."""
    from tuco.assembly import build_service

    settings = load_settings(
        watch_max_watchers="7",
        watch_max_lag_events="50",
        watch_heartbeat_seconds="0.5",
        cors_allow_origins=" http://a.test:3000 ,https://b.test",
        data_dir="/nonexistent-tuco-dir",
    )
    watching = build_service(settings).watch_settings
    assert (watching.max_watchers, watching.max_lag_events, watching.heartbeat_seconds) == (7, 50, 0.5)
    assert watching.allow_origins == frozenset({"http://a.test:3000", "https://b.test"})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cors_allow_origins": "app.test"}, "TUCO_CORS_ALLOW_ORIGINS: 'app.test' is not an origin"),
        ({"cors_allow_origins": "https://a.test/path"}, "TUCO_CORS_ALLOW_ORIGINS: 'https://a.test/path' is not an"),
        ({"watch_max_lag_events": "0"}, "TUCO_WATCH_MAX_LAG_EVENTS: Input should be greater than or equal to 1"),
        ({"watch_heartbeat_seconds": "0"}, "TUCO_WATCH_HEARTBEAT_SECONDS: Input should be greater than 0"),
        ({"watch_max_watchers": "many"}, "TUCO_WATCH_MAX_WATCHERS: Input should be a valid integer"),
    ],
)
def test_bad_watch_settings_are_one_line_errors(options: dict[str, str], message: str) -> None:
    """An origin that is not scheme://host[:port], a lag or heartbeat of 0, a non-number: refused in one line."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings(**options)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"log_level": "INFO"}, ("info", "json", "file", "always")),
        ({"log_level": "Warning", "log_format": "CONSOLE"}, ("warning", "console", "file", "always")),
        ({"log_backend": "File", "log_sync": "EverySec"}, ("info", "json", "file", "everysec")),
    ],
)
def test_choices_are_case_insensitive(options: dict[str, str], expected: tuple[str, str, str, str]) -> None:
    """TUCO_LOG_LEVEL=INFO and kin are accepted as their lower-case choice, as people type them."""
    settings = load_settings(**options)
    assert (settings.log_level, settings.log_format, settings.log_backend, settings.log_sync) == expected


def test_unknown_tuco_variables_are_named_with_the_nearest_setting() -> None:
    """A misspelled TUCO_PROT is reported with TUCO_PORT; client variables and other prefixes are not reported."""
    environ = {
        "TUCO_PROT": "9000",
        "TUCO_LOG_LEVLE": "debug",
        "TUCO_NONSENSE_THING": "1",
        "TUCO_PORT": "1",
        "TUCO_URL": "http://x",
        "TUCO_TOKEN": "t",
        "TUCO_BUILD": "pure",  # the build's choice (scripts/run, hatch_build.py), not a server setting
        "TUCOPORT": "1",
        "HOME": "/root",
    }
    from tuco.config import unknown_variables

    assert unknown_variables(environ) == [
        ("TUCO_LOG_LEVLE", "TUCO_LOG_LEVEL"),
        ("TUCO_NONSENSE_THING", None),
        ("TUCO_PROT", "TUCO_PORT"),
    ]
