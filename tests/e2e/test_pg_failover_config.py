"""Multi-host database URLs and the libpq variables: the replicas always ask for the primary."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from tests.e2e.process import TucoProcess
from tests.fix_ha import HaCluster
from tuco.errors import ConfigurationError
from tuco.log._pg_failover import NotPrimaryError, describe_hosts, is_not_primary, is_retriable, session_attributes

StartTuco = Callable[..., TucoProcess]


@pytest.mark.parametrize(
    ("url", "env", "passed"),
    [
        ("postgresql://u@h1:5432,h2:5432/tuco", None, "read-write"),
        ("postgresql://u@h1,h2/tuco?target_session_attrs=read-write", None, None),
        ("postgresql://u@h1,h2/tuco?target_session_attrs=primary", None, None),
        (None, None, "read-write"),
        (None, "primary", None),
        ("postgresql://u@h1/tuco?target_session_attrs=read-write", "standby", None),  # the URL wins, as in asyncpg
    ],
)
def test_the_log_asks_for_the_primary_unless_told_how(
    url: str | None, env: str | None, passed: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without target_session_attrs the driver is asked for read-write; read-write and primary are kept as given."""
    monkeypatch.delenv("PGTARGETSESSIONATTRS", raising=False)
    if env is not None:
        monkeypatch.setenv("PGTARGETSESSIONATTRS", env)
    assert session_attributes(url) == passed


@pytest.mark.parametrize("value", ["any", "standby", "prefer-standby", "read-only", "bogus"])
def test_a_target_that_can_pick_a_node_refusing_writes_is_a_configuration_error(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """target_session_attrs other than read-write or primary (URL or PGTARGETSESSIONATTRS) is refused at start."""
    monkeypatch.delenv("PGTARGETSESSIONATTRS", raising=False)
    with pytest.raises(ConfigurationError, match=f"must be read-write or primary .*, not {value}$"):
        session_attributes(f"postgresql://u@h1,h2/tuco?target_session_attrs={value}")
    monkeypatch.setenv("PGTARGETSESSIONATTRS", value)
    with pytest.raises(ConfigurationError, match="PGTARGETSESSIONATTRS must be read-write or primary"):
        session_attributes(None)


def test_host_and_port_lists_are_shown_in_pairs() -> None:
    """PGHOST/PGPORT lists are described host by host; one port applies to every host."""
    assert describe_hosts("h1,h2", "5432,5433") == "h1:5432,h2:5433"
    assert describe_hosts("h1,h2", "6432") == "h1:6432,h2:6432"
    assert describe_hosts("h1,h2,h3", "1,2") == "h1,h2,h3 (ports 1,2)"


def test_serve_refuses_a_url_that_may_choose_a_standby(tmp_path: Path) -> None:
    """`tuco serve` with target_session_attrs=any exits 2 with one line naming the setting, before listening."""
    env = {
        **os.environ,
        "TUCO_LOG_BACKEND": "postgres",
        "TUCO_DATABASE_URL": "postgresql://postgres:s3cret@127.0.0.1:1,127.0.0.1:2/tuco?target_session_attrs=any",
        "TUCO_PORT": "0",
    }
    done = subprocess.run(
        [sys.executable, "-m", "tuco", "serve"], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "tuco: invalid configuration: TUCO_DATABASE_URL: target_session_attrs must be read-write or primary "
        "(tuco writes on every connection it opens), not any"
    ]
    assert "s3cret" not in done.stdout + done.stderr
    assert "listening" not in done.stdout


@pytest.mark.postgres
@pytest.mark.xdist_group("ha")
def test_pghost_lists_with_the_standby_first_reach_the_primary(tuco: StartTuco, ha_cluster: HaCluster) -> None:
    """With only PGHOST/PGPORT lists (the standby listed first), the replica starts and writes on the primary."""
    ha_cluster.create_database("tuco")
    ports = f"{ha_cluster.standby.port},{ha_cluster.primary.port}"
    replica = tuco(
        TUCO_LOG_BACKEND="postgres",
        TUCO_DATA_DIR="/nonexistent/pghost",
        PGHOST="127.0.0.1,127.0.0.1",
        PGPORT=ports,
        PGUSER="postgres",
        PGDATABASE="tuco",
    )
    with replica.client() as http:
        assert http.put("/v1/key/k", content=b"v").status_code == 201
        assert http.get("/v1/key/k", params={"consistent": "true"}).content == b"v"
    ready = replica.wait_for("database_ready")
    assert ready["database"] == (
        f"postgresql://postgres@127.0.0.1:{ha_cluster.standby.port},127.0.0.1:{ha_cluster.primary.port}"
        "/tuco (from PG* variables)"
    )
    assert ha_cluster.query("SELECT count(*) FROM tuco_events", database="tuco") == "1"


def test_a_read_only_answer_means_not_the_primary_and_is_retried() -> None:
    """SQLSTATE 25006 and "no host takes writes" are "not the primary" (retried); a client-side error is neither."""
    read_only = asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction")
    assert is_not_primary(read_only) and is_retriable(read_only)
    no_primary = asyncpg.TargetServerAttributeNotMatched("None of the hosts match")
    assert is_not_primary(no_primary) and is_retriable(no_primary)
    assert is_not_primary(NotPrimaryError("standby")) and is_retriable(NotPrimaryError("standby"))
    unique = asyncpg.UniqueViolationError("duplicate key")
    assert not is_not_primary(unique) and not is_retriable(unique)
    assert is_retriable(ConnectionResetError()) and not is_not_primary(ConnectionResetError())


@pytest.mark.postgres
@pytest.mark.xdist_group("ha")
def test_a_url_naming_only_a_standby_waits_for_a_primary_then_gives_up(tmp_path: Path, ha_cluster: HaCluster) -> None:
    """Start-up with only the standby reachable waits out the connect timeout (no primary), then exits 1 saying so."""
    ha_cluster.create_database("tuco")
    url = ha_cluster.node_url(ha_cluster.standby, "tuco")
    env = {
        **os.environ,
        "TUCO_LOG_BACKEND": "postgres",
        "TUCO_DATABASE_URL": url,
        "TUCO_PORT": "0",
        "TUCO_DATABASE_CONNECT_TIMEOUT_SECONDS": "2",
    }
    done = subprocess.run(
        [sys.executable, "-m", "tuco", "serve"], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 1
    assert done.stderr == (
        f"tuco: cannot use the database {url}: no host takes writes (a standby, or default_transaction_read_only "
        "on for this role or database); gave up after 2.0 s\n"
    )
    assert "listening" not in done.stdout
    assert ha_cluster.query("SELECT count(*) FROM pg_tables WHERE tablename = 'tuco_events'", database="tuco") == "0"
