"""A linearizability checker for tuco's keys: record what concurrent clients saw, then prove it (or not).

The model is a register with compare-and-swap, one per key (keys are
independent, so each is checked alone). The search is Wing and Gong's, as
Lowe improved it and Porcupine and Knossos use it: walk the history's call
and return events in time order, linearize any pending operation the model
accepts, backtrack when an operation's return comes before it could be
placed, and remember every (set of operations linearized, state) pair
already explored so no configuration is searched twice.

Values are identities: every write writes a value no other write writes, so
"the key is at revision R" (an ``If-Match``) is "the key holds the value the
write with revision R wrote"; :class:`History` turns revisions into values
from what the clients were answered. An operation whose outcome is unknown (a
503 that says it may have been stored, a time-out, a dropped connection)
never returns: it may take effect at any moment after its call, or never.
Reads that failed changed nothing and are left out.

Default (non-consistent) reads are not linearizable by design: they come from
the replica's memory. :func:`check_stale_reads` holds them to the documented
bound instead: a read may miss writes acknowledged less than ``bound`` seconds
before it started, never older ones.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import httpx

__all__ = [
    "History",
    "Op",
    "Verdict",
    "check_history",
    "check_key",
    "check_stale_reads",
]

Kind = Literal["read", "write", "cas"]
Outcome = Literal["ok", "fail", "unknown"]
UNKNOWN_STATUSES = frozenset({503})


@dataclass(frozen=True)
class Op:
    """One client operation on one key, as the client saw it.

    ``value`` is what a write wrote (None: a DELETE) or what a read returned
    (None: 404). A ``cas`` writes ``value`` only if the key holds ``expect``
    (None: only if absent). ``ret`` is ``math.inf`` when the outcome is unknown.
    """

    key: str
    kind: Kind
    value: bytes | None
    call: float
    ret: float
    outcome: Outcome = "ok"
    expect: bytes | None = None
    client: int = 0
    consistent: bool = True

    def __str__(self) -> str:
        shown = {"read": f"read -> {self.value!r}", "write": f"write {self.value!r}"}.get(
            self.kind, f"cas {self.expect!r} -> {self.value!r}"
        )
        ret = "?" if math.isinf(self.ret) else f"{self.ret:.4f}"
        return f"client {self.client} {shown} [{self.call:.4f}, {ret}] {self.outcome}"


@dataclass
class Verdict:
    """Whether a history is linearizable; if not, which key failed and the operation no order could place."""

    ok: bool
    key: str | None = None
    explanation: str = ""
    keys: int = 0
    operations: int = 0

    def __bool__(self) -> bool:
        return self.ok


def _step(state: bytes | None, op: Op) -> tuple[bool, bytes | None]:
    """The register with compare-and-swap: (is this op allowed in ``state``, the state after it)."""
    if op.kind == "read":
        return state == op.value, state
    if op.kind == "write":
        return True, op.value
    matches = state == op.expect
    if op.outcome == "ok":
        return matches, op.value
    if op.outcome == "fail":
        return not matches, state
    return True, op.value if matches else state  # unknown: it did whatever the state made it do


class _Entry:
    __slots__ = ("call", "id", "match", "next", "op", "prev")

    def __init__(self, op: Op | None, id: int, call: bool) -> None:
        self.op = op
        self.id = id
        self.call = call
        self.match: _Entry | None = None
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


def check_key(ops: Sequence[Op], initial: bytes | None = None) -> tuple[bool, str]:
    """Decide whether one key's operations are linearizable from ``initial``; say which op failed if not."""
    events: list[tuple[float, int, int, bool]] = []
    for n, one in enumerate(ops):
        if one.ret < one.call:
            raise ValueError(f"operation returns before it was called: {one}")
        events.append((one.call, 0, n, True))  # calls first at equal times: touching operations overlap
        events.append((one.ret, 1, n, False))
    events.sort()
    head = _Entry(None, -1, False)
    calls: dict[int, _Entry] = {}
    last = head
    for _, _, n, is_call in events:
        node = _Entry(ops[n], n, is_call)
        if is_call:
            calls[n] = node
        else:
            calls[n].match = node
        node.prev, last.next = last, node
        last = node

    def lift(entry: _Entry) -> None:
        for node in (entry, entry.match):
            assert node is not None and node.prev is not None
            node.prev.next = node.next
            if node.next is not None:
                node.next.prev = node.prev

    def unlift(entry: _Entry) -> None:
        for node in (entry.match, entry):
            assert node is not None and node.prev is not None
            node.prev.next = node
            if node.next is not None:
                node.next.prev = node

    state = initial
    linearized = 0
    seen: set[tuple[int, bytes | None]] = set()
    stack: list[tuple[_Entry, bytes | None]] = []
    deepest: tuple[int, Op | None] = (-1, None)
    entry: _Entry | None = head.next
    while head.next is not None:
        assert entry is not None
        op: Op | None = entry.op
        assert op is not None
        if entry.call:
            allowed, after = _step(state, op)
            if allowed:
                marked = linearized | (1 << entry.id)
                if (marked, after) not in seen:
                    seen.add((marked, after))
                    stack.append((entry, state))
                    state, linearized = after, marked
                    lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            if len(stack) > deepest[0]:
                deepest = (len(stack), op)
            if not stack:
                return False, f"no order explains: {deepest[1]} (after {deepest[0]} operations placed)"
            top, state = stack.pop()
            linearized &= ~(1 << top.id)
            unlift(top)
            entry = top.next
    return True, ""


def check_history(ops: Iterable[Op], initial: bytes | None = None) -> Verdict:
    """Check every key's consistent operations (default reads are left to :func:`check_stale_reads`)."""
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        if op.kind != "read" or op.consistent:
            by_key[op.key].append(op)
    total = 0
    for key in sorted(by_key):
        total += len(by_key[key])
        ok, why = check_key(by_key[key], initial)
        if not ok:
            return Verdict(False, key, why, len(by_key), total)
    return Verdict(True, None, "", len(by_key), total)


def check_stale_reads(ops: Iterable[Op], bound: float) -> list[str]:
    """Default reads against the staleness bound: each read may miss only writes acknowledged within ``bound``.

    A read of value v is too stale if some write that certainly came after v's
    write (called after it returned) was acknowledged more than ``bound``
    before the read was called. A read of a value never written, or written
    only after the read returned, is always wrong. Returns the violations.
    """
    everything = list(ops)
    writes: dict[tuple[str, bytes | None], Op] = {}
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in everything:
        if op.kind != "read" and op.outcome != "fail":
            by_key[op.key].append(op)
            if op.value is not None:
                writes[op.key, op.value] = op
    problems = []
    for read in everything:
        if read.kind != "read" or read.consistent:
            continue
        changes = by_key[read.key]
        if read.value is not None:
            source = writes.get((read.key, read.value))
            if source is None or source.call > read.ret:
                problems.append(f"{read}: no write of this value before the read returned")
                continue
            newer = [w for w in changes if w.outcome == "ok" and w.call > source.ret and w.ret < read.call - bound]
        else:
            # Absent: fine if the key was never certainly written long enough ago, or a DELETE may follow that.
            old = [w for w in changes if w.outcome == "ok" and w.value is not None and w.ret < read.call - bound]
            deletes = [w for w in changes if w.value is None]
            newer = [w for w in old if not any(d.call < read.ret and d.ret > w.call for d in deletes)]
        if newer:
            problems.append(f"{read}: misses {newer[0]}, acknowledged over {bound} s before the read")
    return problems


@dataclass
class History:
    """Record operations done through real HTTP requests, with their invoke and completion times.

    Each write must write a value no other write writes. ``If-Match`` revisions
    are turned into the values they name when the history is checked.
    """

    ops: list[tuple[Op, int | None, int | None]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unreachable: int = 0
    """Requests that never reached the server (connection refused): nothing happened, nothing recorded."""

    async def put(self, http: httpx.AsyncClient, client: int, key: str, value: bytes) -> int | None:
        """PUT ``value``; return the new revision, or None if the outcome is unknown."""
        return await self._write(http, client, key, value, None, {})

    async def cas(
        self, http: httpx.AsyncClient, client: int, key: str, value: bytes, revision: int | None
    ) -> int | None:
        """PUT with ``If-Match: "revision"`` (``If-None-Match: *`` for None); the new revision, or None."""
        headers = {"If-None-Match": "*"} if revision is None else {"If-Match": f'"{revision}"'}
        return await self._write(http, client, key, value, revision or 0, headers)

    async def delete(self, http: httpx.AsyncClient, client: int, key: str) -> None:
        """DELETE the key."""
        await self._write(http, client, key, None, None, {})

    async def get(
        self, http: httpx.AsyncClient, client: int, key: str, *, consistent: bool
    ) -> tuple[bytes | None, int | None] | None:
        """GET (``?consistent=true`` if asked); (value or None if absent, revision), or None if it failed."""
        params = {"consistent": "true"} if consistent else None
        call = time.monotonic()
        try:
            response = await http.get(f"/v1/key/{key}", params=params)
        except httpx.HTTPError as exc:
            self.unreachable += isinstance(exc, httpx.ConnectError)
            return None
        ret = time.monotonic()
        if response.status_code == 200:
            revision = int(response.headers["ETag"].strip('"'))
            self.ops.append(
                (Op(key, "read", response.content, call, ret, client=client, consistent=consistent), None, revision)
            )
            return response.content, revision
        if response.status_code == 404:
            self.ops.append((Op(key, "read", None, call, ret, client=client, consistent=consistent), None, None))
            return None, None
        if response.status_code not in UNKNOWN_STATUSES:
            self.errors.append(f"GET {key}: {response.status_code} {response.text[:200]}")
        return None

    async def _write(
        self,
        http: httpx.AsyncClient,
        client: int,
        key: str,
        value: bytes | None,
        expect: int | None,
        headers: dict[str, str],
    ) -> int | None:
        call = time.monotonic()
        try:
            if value is None:
                response = await http.delete(f"/v1/key/{key}", headers=headers)
            else:
                response = await http.put(f"/v1/key/{key}", content=value, headers=headers)
        except httpx.ConnectError:  # never sent: it cannot have been applied
            self.unreachable += 1
            return None
        except httpx.HTTPError:  # a time-out or a dropped connection: it may have been applied
            response = None
        ret = time.monotonic()
        kind: Kind = "write" if expect is None else "cas"
        if response is None or response.status_code in UNKNOWN_STATUSES:
            self.ops.append((Op(key, kind, value, call, math.inf, "unknown", client=client), expect, None))
            return None
        if response.status_code in (200, 201):
            revision = int(response.headers["X-Tuco-Revision"])
            self.ops.append((Op(key, kind, value, call, ret, "ok", client=client), expect, revision))
            return revision
        if response.status_code == 412 and expect is not None:
            self.ops.append((Op(key, kind, value, call, ret, "fail", client=client), expect, None))
            return None
        self.errors.append(
            f"{'DELETE' if value is None else 'PUT'} {key}: {response.status_code} {response.text[:200]}"
        )
        return None

    def resolved(self) -> list[Op]:
        """The operations with each CAS's expected revision replaced by the value that revision wrote.

        Raises AssertionError if two answers disagree on what a revision holds.
        """
        value_at: dict[tuple[str, int], bytes] = {}
        for op, _, revision in self.ops:
            if revision is None or op.value is None or op.outcome != "ok":
                continue
            known = value_at.setdefault((op.key, revision), op.value)
            if known != op.value:
                raise AssertionError(f"revision {revision} of {op.key} answered as {known!r} and as {op.value!r}")
        ops = []
        for op, expect, _ in self.ops:
            if op.kind == "cas":
                wanted = None if not expect else value_at.get((op.key, expect))
                if expect and wanted is None:
                    raise AssertionError(f"{op}: If-Match names revision {expect}, which no answer showed")
                op = Op(op.key, "cas", op.value, op.call, op.ret, op.outcome, wanted, op.client, op.consistent)
            ops.append(op)
        return ops
