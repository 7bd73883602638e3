"""tuco lock, tuco elect and tuco wait: run a command while holding a lock or leading, wait for a key to change.

``lock`` and ``elect`` run the command as a child with the fencing token in
``TUCO_FENCING_TOKEN`` (as ``consul lock`` and ``etcdctl lock`` do), forward SIGTERM,
SIGINT and SIGHUP to it, and exit with its status; the lock goes when the command
ends, or with the session's lease if tuco itself is killed. If the lock is lost
while the command runs (the session could not be renewed in time), the command is
sent SIGTERM and tuco exits 10.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from types import FrameType

import click

from tuco.cli._common import (
    EXIT_LOST,
    EXIT_NOT_FOUND,
    EXIT_TIMEOUT,
    client_command,
    duration_seconds,
    echo_json,
    key_argument,
    usage,
)
from tuco.cli._keys import _entry_json, _revision
from tuco.client import Client, LockTimeoutError, Session

__all__ = ["elect", "lock", "wait"]

_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_CHECK_EVERY = 0.1


def _status(code: int) -> int:
    """A child's exit status as a shell reports it: 128 + N for a child killed by signal N."""
    return code if code >= 0 else 128 - code


def _run_holding(command: tuple[str, ...], token: int, key: str, held: Callable[[], bool], what: str) -> int:
    """Run ``command`` with the token in its environment while ``held()``; its exit status (10 if lost first)."""
    env = {**os.environ, "TUCO_FENCING_TOKEN": str(token), "TUCO_LOCK_KEY": key}
    try:
        child = subprocess.Popen(command, env=env)
    except OSError as exc:
        click.echo(f"tuco: cannot run {command[0]!r}: {exc.strerror or exc}", err=True)
        return 127 if isinstance(exc, FileNotFoundError) else 126

    def forward(signum: int, frame: FrameType | None) -> None:
        child.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in _FORWARDED}
    try:
        while True:
            try:
                return _status(child.wait(_CHECK_EVERY))
            except subprocess.TimeoutExpired:
                pass
            if not held():
                click.echo(
                    f"tuco: lost the {what} (the session was not renewed in time); stopping the command", err=True
                )
                child.terminate()
                child.wait()
                return EXIT_LOST
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    """While waiting for the lock: leave through the context managers, which withdraw the key and revoke the lease."""
    sys.exit(128 + signum)


def _leave_cleanly() -> None:
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)


def _session_ttl(ttl: str) -> float:
    seconds = duration_seconds(ttl, "--ttl")
    if not 1 <= seconds <= 86_400:
        usage("--ttl takes from 1s to 1d")
    return seconds


_TTL_OPTION = click.option(
    "--ttl",
    default="15s",
    show_default=True,
    help="The session's lease: if tuco dies, the lock is free this long after (renewed every third of it).",
)
_TIMEOUT_OPTION = click.option("--timeout", metavar="DURATION", help="Give up after DURATION (exit 9).")


@click.command()
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@_TTL_OPTION
@_TIMEOUT_OPTION
@client_command
def lock(client: Client, output: str, name: str, command: tuple[str, ...], ttl: str, timeout: str | None) -> None:
    """Run COMMAND while holding the lock NAME; exit with its status.

    tuco lock locks/backup -- ./backup.sh   (the command sees TUCO_FENCING_TOKEN: pass it on
    to what it writes, which should refuse tokens lower than the highest it has seen).
    Waits for the lock as long as needed (--timeout: at most that long, then exit 9).
    """
    wait = duration_seconds(timeout, "--timeout") if timeout is not None else None
    _leave_cleanly()
    with Session(client, _session_ttl(ttl)) as session:
        held = session.lock(name)
        if not held.acquire(wait):
            click.echo(f"tuco: lock {name!r} not acquired within {wait:g}s: another session holds it", err=True)
            sys.exit(EXIT_TIMEOUT)
        assert held.token is not None and held.key is not None
        if output == "json":
            echo_json({"lock": name, "token": held.token, "key": held.key})
            sys.stdout.flush()
        try:
            code = _run_holding(command, held.token, held.key, lambda: held.held, "lock")
        finally:
            held.release()
    sys.exit(code)


@click.command()
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--value", default="", help="What the leader announces (its address, its name...).")
@_TTL_OPTION
@_TIMEOUT_OPTION
@client_command
def elect(
    client: Client, output: str, name: str, command: tuple[str, ...], value: str, ttl: str, timeout: str | None
) -> None:
    """Campaign in the election NAME, then run COMMAND as the leader; exit with its status.

    The command sees TUCO_FENCING_TOKEN (the revision it won at). When it ends (or
    tuco is stopped) the leadership passes to the next campaigner at once.
    """
    wait = duration_seconds(timeout, "--timeout") if timeout is not None else None
    _leave_cleanly()
    with Session(client, _session_ttl(ttl)) as session:
        election = session.election(name)
        try:
            token = election.campaign(value, timeout=wait)
        except LockTimeoutError:
            click.echo(f"tuco: not the leader of {name!r} within {timeout}", err=True)
            sys.exit(EXIT_TIMEOUT)
        leader = election.leader()
        key = leader.key if leader is not None else ""
        if output == "json":
            echo_json({"election": name, "token": token, "key": key})
            sys.stdout.flush()
        try:
            code = _run_holding(command, token, key, election.is_leader, "leadership")
        finally:
            election.resign()
    sys.exit(code)


@click.command()
@key_argument()
@click.option("--revision", "revision", required=True, metavar="REV", help="Wait for a change at REV or later.")
@_TIMEOUT_OPTION
@client_command
def wait(client: Client, output: str, key: str, revision: str, timeout: str | None) -> None:
    """Wait until KEY changes at revision REV or later, then print its value (exit 1 if it was deleted).

    REV is usually the last revision you saw plus one (tuco put prints a key's
    revision). --timeout: give up after that long (exit 9).
    """
    start = _revision(revision, "--revision")
    assert start is not None
    limit = duration_seconds(timeout, "--timeout") if timeout is not None else None
    deadline = None if limit is None else time.monotonic() + limit
    while True:
        poll = 30.0 if deadline is None else min(30.0, max(deadline - time.monotonic(), 0.001))
        changed, entry = client.wait(key, start, timeout=poll)
        if changed:
            break
        if deadline is not None and time.monotonic() >= deadline:
            click.echo(f"tuco: {key!r} did not change at revision {start} or later within {timeout}", err=True)
            sys.exit(EXIT_TIMEOUT)
    if entry is None:
        if output == "json":
            echo_json({"key": key, "deleted": True})
        else:
            click.echo(f"tuco: {key!r} was deleted", err=True)
        sys.exit(EXIT_NOT_FOUND)
    if output == "json":
        echo_json(_entry_json(entry))
        return
    sys.stdout.buffer.write(entry.value)
    sys.stdout.buffer.flush()
