"""Database URLs are read one way only, and shown only with the password replaced by ***."""

from __future__ import annotations

import pytest

from tuco.config import load_settings
from tuco.errors import ConfigurationError
from tuco.log.postgres import PostgresTransactionLog
from tuco.log.redact import check_database_url, password_of, redact_dsn


@pytest.mark.parametrize(
    ("url", "shown", "password"),
    [
        ("postgresql://u:s3cret@db.example:5433/tuco", "postgresql://u:***@db.example:5433/tuco", "s3cret"),
        ("postgres://u@db/tuco", "postgres://u@db/tuco", None),
        ("postgresql://u:a%2Fb%23c%40d@db/tuco", "postgresql://u:***@db/tuco", "a/b#c@d"),
        ("postgresql://u:@db/tuco", "postgresql://u:***@db/tuco", None),
        (
            "postgresql://u@db/tuco?sslmode=require&Password=p%26q&application_name=x",
            "postgresql://u@db/tuco?sslmode=require&Password=***&application_name=x",
            "p&q",
        ),
        ("postgresql://u:pw@[::1]:5432,db2:5433/tuco", "postgresql://u:***@[::1]:5432,db2:5433/tuco", "pw"),
        ("postgresql:///tuco", "postgresql:///tuco", None),
    ],
)
def test_a_valid_url_is_shown_without_its_password(url: str, shown: str, password: str | None) -> None:
    """The password, in the user part or a parameter, becomes *** and nothing else changes."""
    check_database_url(url)
    assert redact_dsn(url) == shown
    assert password_of(url) == password


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:a/b#c@d@db/tuco",
        "postgresql://u:a@b@db/tuco",
        "postgresql://u:a/b@db/tuco",
        "postgresql://u:ab?c@db/tuco",
        "postgresql://u:s3cret@db:0/tuco",
        "postgresql://u:s3cret@[::1/tuco",
        "postgresql://u:s3cret@db:5432:1/tuco",
        "mysql://u:s3cret@db/tuco",
        "host=db password=s3cret",
        "s3cret",
    ],
)
def test_an_ambiguous_url_is_refused_and_never_shown(url: str) -> None:
    """What does not parse one way is a ValueError without the URL in it, and is shown as a placeholder."""
    with pytest.raises(ValueError) as caught:
        check_database_url(url)
    assert "s3cret" not in str(caught.value) and "a/b" not in str(caught.value)
    assert redact_dsn(url) == "(a database URL that is not shown: it does not parse)"
    assert password_of(url) is None


def test_settings_and_the_log_refuse_a_bad_url_as_configuration() -> None:
    """Both the settings and a log built directly raise ConfigurationError in one line, password-free."""
    with pytest.raises(ConfigurationError) as from_settings:
        load_settings(database_url="postgresql://u:a@b@db/tuco")
    assert str(from_settings.value) == (
        "invalid configuration: TUCO_DATABASE_URL: the URL has '/' or '@' in an unexpected place; percent-encode "
        "'/', '#', '@', ':' and '?' in the user name, password and database name (%2F %23 %40 %3A %3F)"
    )
    with pytest.raises(ConfigurationError) as from_log:
        PostgresTransactionLog("host=db password=s3cret")
    assert str(from_log.value) == (
        "the database URL is invalid: key=value connection strings are not supported; give a postgresql:// URL, "
        "or unset it to use the PG* variables"
    )
