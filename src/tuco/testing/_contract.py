"""The contract every transaction log passes: :func:`check_transaction_log`.

Loads no log adapter: a backend's tests import it without the file log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tuco.core.events import ABSENT, EXISTS, Event, EventType, Expiry, Precondition
from tuco.core.store import Store
from tuco.errors import (
    InvalidKeyError,
    LeaseNotFoundError,
    LogClosedError,
    PreconditionFailedError,
)
from tuco.ports import TransactionLog
from tuco.testing._memory import RecordingSink

__all__ = ["check_transaction_log"]


async def check_transaction_log(make_log: Callable[[], TransactionLog]) -> None:
    """Check that the logs ``make_log`` makes behave as every :class:`~tuco.ports.TransactionLog` must.

    ``make_log`` is called three times, each time after the previous log was
    closed, and must return a log over the same storage: empty the first time,
    then holding what was stored before (a reopen). Raises ``AssertionError``
    naming what does not hold. Checked: the lifecycle (``open``,
    ``read_events``, ``run``, writes, ``aclose``); sequences contiguous from
    the last replayed one, in submission order, each event handed to the sink
    once; every kind of precondition, decided in log order (within one batch
    too), a refused write taking no sequence and leaving no trace; concurrent
    compare-and-swap from one revision has exactly one winner; a reopened log
    replays the same entries (with revisions) and last sequence, and
    preconditions hold against them; writes after ``aclose`` raise
    :class:`~tuco.errors.LogClosedError`. Expiry: deadlines set by the log's
    clock, leases granted (id = sequence), kept alive, revoked and missing,
    expired-only deletes refused before the deadline and taken after it, a
    plain PUT clearing a deadline, and all of it replayed after a reopen.
    Tokens: records created and revoked in log order, changing no key, the
    live ones replayed after a reopen.
    """
    log, sink = await _start(make_log, expected=({}, 0, _NO_EXPIRY))
    try:
        await _check_writes(log, sink)
        await _check_preconditions(log, sink)
        lease = await _check_expiry(log, sink)
        token = await _check_tokens(log, sink)
    finally:
        await log.aclose()
    await _check_closed(log)
    first = (sink.store.entries(), sink.store.last_sequence, _expiry_of(sink.store))

    log, sink = await _start(make_log, expected=first)
    try:
        last = sink.store.last_sequence
        a = sink.store.entry("a")
        _check(
            _key_fields(await log.write_put("a", b"reopened", Precondition(a.mod_revision)))
            == (last + 1, EventType.PUT, "a", b"reopened"),
            "after a reopen, If-Match with the replayed revision holds and the next sequence follows the last one",
        )
        _check(
            sink.store.entry("a") == (b"reopened", a.create_revision, last + 1, a.version + 1),
            f"after a reopen, a write continues the key's revisions: {sink.store.entry('a')}",
        )
        _check(
            [record.id for record in sink.store.tokens] == [token],
            f"after a reopen, the live token {token} is replayed and the revoked one is not",
        )
        await _expect_refused(log.write_put("a", b"stale", Precondition(a.mod_revision)), "a", last + 1)
        await log.write_delete("cas", EXISTS)
        before = sink.store.lease(lease)
        kept = await log.write_expiring(EventType.LEASE_KEEPALIVE, "", expiry=Expiry(lease=lease))
        _check(
            before is not None and kept.lease == lease and kept.ttl == before[0] and kept.deadline >= before[1],
            f"after a reopen, the replayed lease {lease} can be kept alive: {kept}, was {before}",
        )
    finally:
        await log.aclose()
    second = (sink.store.entries(), sink.store.last_sequence, _expiry_of(sink.store))

    log, sink = await _start(make_log, expected=second)
    await log.aclose()


_ExpiryView = tuple[dict[str, int], dict[str, int], list[tuple[int, int, int, str]]]
_NO_EXPIRY: _ExpiryView = ({}, {}, [])


def _expiry_of(store: Store) -> _ExpiryView:
    deadlines, key_leases, leases = store.expiry_state()
    return deadlines, key_leases, sorted(leases)


async def _start(
    make_log: Callable[[], TransactionLog],
    expected: tuple[dict[str, tuple[bytes, int, int, int]], int, _ExpiryView],
) -> tuple[TransactionLog, RecordingSink]:
    """Open, replay and run a log; check that the replay holds ``expected`` (entries, last sequence, expiry)."""
    log = make_log()
    await log.open()
    sink = RecordingSink()
    try:
        async for batch in log.read_events():
            sink.store.apply_batch(batch)
        replayed = (sink.store.entries(), sink.store.last_sequence, _expiry_of(sink.store))
        _check(replayed == expected, f"the replay holds what was stored: {replayed} != {expected}")
        await log.run(sink)
        described = log.describe()
        _check(
            isinstance(described.get("backend"), str) and described.get("last_sequence") == expected[1],
            f"describe() names the backend and the last sequence {expected[1]}: {dict(described)}",
        )
    except BaseException:
        await log.aclose()
        raise
    return log, sink


async def _check_writes(log: TransactionLog, sink: RecordingSink) -> None:
    """Writes of any key and value take contiguous sequences, in order, and reach the sink once each."""
    writes: list[tuple[EventType, str, bytes]] = [
        (EventType.PUT, "a", b"1"),
        (EventType.PUT, "b", bytes(range(256))),
        (EventType.PUT, "a", b"2"),
        (EventType.PUT, "", b""),
        (EventType.PUT, "line\nbreak\ttab/slash \U0001f511", b"\x00"),
        (EventType.DELETE, "b", b""),
        (EventType.DELETE, "never written", b""),
        (EventType.PUT, "b", b"again"),
    ]
    for number, (type, key, value) in enumerate(writes, start=1):
        write = log.write_put(key, value) if type is EventType.PUT else log.write_delete(key)
        event = await write
        _check(_key_fields(event) == (number, type, key, value), f"write {number} is {event}")
    _check(
        [_key_fields(event) for event in sink.events] == [(n, *w) for n, w in enumerate(writes, start=1)],
        "the sink was handed every committed event once, in sequence order",
    )
    store = sink.store
    _check(store.entry("a") == (b"2", 1, 3, 2), f"a rewritten key keeps its create revision: {store.entry('a')}")
    _check(store.entry("b") == (b"again", 8, 8, 1), f"a key created again starts over: {store.entry('b')}")
    try:
        await log.write_put("\ud800", b"lone surrogate")
    except InvalidKeyError:
        pass
    else:
        raise AssertionError("a key that is not encodable as UTF-8 raises InvalidKeyError")
    concurrent = await asyncio.gather(*(log.write_put(f"c{n}", b"%d" % n) for n in range(40)))
    _check(
        [event.sequence for event in concurrent] == list(range(9, 49)),
        "concurrent writes take the next sequences in submission order (the refused key took none)",
    )
    _check(store.last_sequence == 48, f"the sink's store is at the last sequence: {store.last_sequence}")


async def _check_preconditions(log: TransactionLog, sink: RecordingSink) -> None:
    """Every kind of condition, decided in log order against earlier writes too; refused writes take no sequence."""
    n = sink.store.last_sequence + 1
    submitted = [  # all submitted at once: one batch on a group-committing log, and still judged in order
        log.write_put("cas", b"1", ABSENT),  # n
        log.write_put("cas", b"2", ABSENT),  # refused: exists at n
        log.write_put("cas", b"3", Precondition(n)),  # n + 1
        log.write_delete("cas", Precondition(n)),  # refused: at n + 1
        log.write_put("cas", b"4", EXISTS),  # n + 2
        log.write_delete("cas", EXISTS),  # n + 3
        log.write_put("cas", b"5", EXISTS),  # refused: absent
        log.write_delete("cas", Precondition(n + 2)),  # refused: absent
        log.write_delete("cas", ABSENT),  # n + 4: a delete of an absent key, as asked
        log.write_put("cas", b"6", Precondition(n + 4)),  # refused: a delete gives the key no revision
        log.write_put("cas", b"7", ABSENT),  # n + 5
    ]
    outcomes = await asyncio.gather(*submitted, return_exceptions=True)
    expected: list[tuple[int, EventType, str, bytes] | tuple[str, int]] = [
        (n, EventType.PUT, "cas", b"1"),
        ("refused", n),
        (n + 1, EventType.PUT, "cas", b"3"),
        ("refused", n + 1),
        (n + 2, EventType.PUT, "cas", b"4"),
        (n + 3, EventType.DELETE, "cas", b""),
        ("refused", 0),
        ("refused", 0),
        (n + 4, EventType.DELETE, "cas", b""),
        ("refused", 0),
        (n + 5, EventType.PUT, "cas", b"7"),
    ]
    _check([_outcome(o, "cas") for o in outcomes] == expected, f"conditions in log order: {outcomes}")
    _check(sink.store.entry("cas") == (b"7", n + 5, n + 5, 1), f"the state after them: {sink.store.entry('cas')}")
    _check(
        [event.sequence for event in sink.events[-6:]] == list(range(n, n + 6)),
        "only the writes whose condition held reached the sink",
    )

    last = sink.store.last_sequence
    all_refused = [
        log.write_put("cas", b"x", ABSENT),
        log.write_put("missing", b"x", EXISTS),
        log.write_delete("cas", Precondition(last - 1)),
    ]
    outcomes = await asyncio.gather(*all_refused, return_exceptions=True)
    _check(
        [_outcome(o, key) for o, key in zip(outcomes, ["cas", "missing", "cas"], strict=True)]
        == [("refused", last), ("refused", 0), ("refused", last)],
        f"writes whose conditions all fail are all refused: {outcomes}",
    )
    _check(_key_fields(await log.write_put("after", b"1")) == (last + 1, EventType.PUT, "after", b"1"), "no gap")

    await log.write_put("contended", b"start")
    start = sink.store.mod_revision("contended")
    racers = await asyncio.gather(
        *(log.write_put("contended", b"racer %d" % i, Precondition(start)) for i in range(16)), return_exceptions=True
    )
    winners = [outcome for outcome in racers if isinstance(outcome, Event)]
    _check(len(winners) == 1, f"exactly one of 16 compare-and-swaps from revision {start} wins: {racers}")
    won = winners[0].sequence
    _check(
        all(_outcome(o, "contended") == ("refused", won) for o in racers if not isinstance(o, Event)),
        f"the others are refused with the winner's revision {won}: {racers}",
    )
    _check(sink.store.last_sequence == won == start + 1, "the refused compare-and-swaps took no sequence")


async def _check_expiry(log: TransactionLog, sink: RecordingSink) -> int:
    """Deadlines and leases, decided by the log's clock in log order; returns a lease left alive for the reopen."""
    store = sink.store
    hour = 3_600_000
    before = log.now_ms()
    put = await log.write_expiring(EventType.PUT, "ttl", b"t", None, Expiry(ttl=hour))
    after = log.now_ms()
    _check(
        put.type is EventType.PUT and before + hour - 1000 <= put.deadline <= after + hour + 1000 and not put.lease,
        f"a PUT with a ttl gets deadline = the log's now + ttl: {put} (now was {before}..{after})",
    )
    _check(store.entry("ttl") == (b"t", put.sequence, put.sequence, 1), "a key with a deadline is read like any other")
    _check(store.key_expiry("ttl") == put.deadline, f"the store keeps the deadline: {store.key_expiry('ttl')}")
    await _expect_refused(
        log.write_expiring(EventType.DELETE, "ttl", b"", Precondition(put.sequence), Expiry(expired=True)),
        "ttl",
        put.sequence,
    )
    granted = await log.write_expiring(EventType.LEASE_GRANT, "", expiry=Expiry(ttl=hour))
    _check(
        granted.type is EventType.LEASE_GRANT and granted.lease == granted.sequence and granted.ttl == hour,
        f"a grant's lease id is its own sequence and it carries its ttl: {granted}",
    )
    _check(
        store.lease(granted.lease) == (hour, granted.deadline), f"the lease is applied: {store.lease(granted.lease)}"
    )
    leased = await log.write_expiring(EventType.PUT, "leased", b"l", None, Expiry(lease=granted.lease))
    _check(leased.lease == granted.lease and not leased.deadline, f"a PUT with a lease names it: {leased}")
    _check(store.key_expiry("leased") == granted.deadline, "a leased key expires with its lease")
    for name, write in (
        ("a PUT with a lease", log.write_expiring(EventType.PUT, "nope", b"", None, Expiry(lease=1 << 40))),
        ("a keepalive", log.write_expiring(EventType.LEASE_KEEPALIVE, "", expiry=Expiry(lease=1 << 40))),
        ("a revoke", log.write_expiring(EventType.LEASE_REVOKE, "", expiry=Expiry(lease=1 << 40))),
    ):
        try:
            await write
        except LeaseNotFoundError as exc:
            _check(exc.lease == 1 << 40, f"{name} of a missing lease names it: {exc.lease}")
        else:
            raise AssertionError(f"{name} of a lease that does not exist raises LeaseNotFoundError")
    _check("nope" not in store, "a PUT refused for its lease wrote nothing")
    cleared = await log.write_expiring(EventType.PUT, "cleared", b"1", None, Expiry(ttl=hour))
    await log.write_put("cleared", b"2")
    _check(store.key_expiry("cleared") is None, "a PUT without a ttl clears the key's deadline")
    _check(store.entry("cleared")[1:] == (cleared.sequence, cleared.sequence + 1, 2), "and continues its revisions")

    short = await log.write_expiring(EventType.LEASE_GRANT, "", expiry=Expiry(ttl=1))
    brief = await log.write_expiring(EventType.PUT, "brief", b"b", None, Expiry(ttl=1))
    # Time passes by the log's clock, which a test cannot move for a real backend: wait until it has.
    await asyncio.sleep(max(0, max(short.deadline, brief.deadline) + 50 - log.now_ms()) / 1000)
    try:
        await log.write_expiring(EventType.LEASE_KEEPALIVE, "", expiry=Expiry(lease=short.lease))
    except LeaseNotFoundError:
        pass
    else:
        raise AssertionError("an expired lease cannot be kept alive")
    gone = await asyncio.gather(
        log.write_expiring(EventType.DELETE, "brief", b"", Precondition(brief.sequence), Expiry(expired=True)),
        log.write_expiring(EventType.DELETE, "brief", b"", Precondition(brief.sequence), Expiry(expired=True)),
        return_exceptions=True,
    )
    _check(
        isinstance(gone[0], Event)
        and gone[0].type is EventType.DELETE
        and isinstance(gone[1], PreconditionFailedError),
        f"one expired-only DELETE after the deadline is taken, the same one again refused: {gone}",
    )
    _check("brief" not in store, "the expired key is deleted")
    revoked = await log.write_expiring(EventType.LEASE_REVOKE, "", expiry=Expiry(lease=short.lease, expired=True))
    _check(revoked.lease == short.lease and store.lease(short.lease) is None, f"an expired lease is revoked: {revoked}")
    return granted.lease


async def _check_tokens(log: TransactionLog, sink: RecordingSink) -> str:
    """Token records: created and revoked in log order, keys untouched; returns the id left live for the reopen."""
    from tuco.core.tokens import Grant, Permission, TokenRecord, digest, encode_record

    store = sink.store
    keys = store.entries()
    ids = ("c0ffee0000000001", "c0ffee0000000002")
    for id in ids:
        record = TokenRecord(id, "contract", (Grant("a/", Permission.READ),), 0, digest(id.encode()))
        created = await log.write_expiring(EventType.TOKEN_CREATE, id, encode_record(record), None, Expiry())
        _check(
            created.type is EventType.TOKEN_CREATE and created.key == id and created.value == encode_record(record),
            f"a token record is written as given: {created}",
        )
        _check(store.tokens.get(id) == record._replace(created=created.sequence), "and applied to the registry")
    revoked = await log.write_expiring(EventType.TOKEN_REVOKE, ids[1], b"", None, Expiry())
    _check(revoked.type is EventType.TOKEN_REVOKE and store.tokens.get(ids[1]) is None, f"a revoke applies: {revoked}")
    _check(store.entries() == keys, "token records change no key")
    return ids[0]


async def _check_closed(log: TransactionLog) -> None:
    """A closed log refuses writes with LogClosedError, whether it raises at the call or at the await."""
    for kind in ("put", "delete"):
        try:
            await (log.write_put("late", b"x") if kind == "put" else log.write_delete("late"))
        except LogClosedError:
            continue
        raise AssertionError(f"a {kind} after aclose() raises LogClosedError")


async def _expect_refused(write: Awaitable[Event], key: str, current: int) -> None:
    try:
        event = await write
    except PreconditionFailedError as exc:
        _check(
            (exc.key, exc.current) == (key, current), f"refused for {key!r} at {current}: {exc.key!r} at {exc.current}"
        )
    else:
        raise AssertionError(f"a write whose condition fails is refused, not {event}")


def _outcome(outcome: object, key: str) -> tuple[int, EventType, str, bytes] | tuple[str, int]:
    if isinstance(outcome, PreconditionFailedError):
        _check(outcome.key == key, f"the refusal names the key {key!r}: {outcome.key!r}")
        return ("refused", outcome.current)
    if isinstance(outcome, Event):
        return _key_fields(outcome)
    raise AssertionError(f"a write ended with {outcome!r}")


def _key_fields(event: Event) -> tuple[int, EventType, str, bytes]:
    return (event.sequence, event.type, event.key, event.value)


def _check(condition: bool, what: str) -> None:
    """``assert`` that survives ``python -O``: the suite is shipped, not only run under pytest."""
    if not condition:
        raise AssertionError(what)
