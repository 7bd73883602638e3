"""Each API operation as data: the request to send and how its answer becomes a result or an error.

Nothing here does I/O. :class:`~tuco.client.Client` and :class:`~tuco.client.AsyncClient`
only send a :class:`Call`'s request and hand the answer back to it, so the two clients share
every rule about paths, headers, retries and errors (the way psycopg's generators keep the
protocol apart from the waiting).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar
from urllib.parse import quote

from tuco import errors
from tuco.errors import (
    HistoryCompactedError,
    InvalidRequestError,
    LeaseNotFoundError,
    NoSuchKeyError,
    PreconditionFailedError,
    ProtocolError,
    RevisionAheadError,
    TucoError,
)

__all__ = [
    "Answer",
    "Call",
    "Entry",
    "Item",
    "Lease",
    "LeaseSummary",
    "Page",
    "RevokedLease",
    "Written",
    "deadline",
    "error_from",
    "key_path",
]

T = TypeVar("T")

# Answers that say the server did nothing with the request: safe to send again, even a conditional write.
NOTHING_DONE = frozenset(("starting", "shutting_down", "too_many_connections", "server_busy", "too_many_watchers"))


class Answer(NamedTuple):
    """What came back: status, headers (lower-case names) and the body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request and what to make of its answer.

    ``idempotent``: sending it twice does what sending it once does, so a broken
    connection or a 503 may be retried. A conditional write is not: after a lost
    answer its first attempt may have applied, and a retry would report a false 412.
    """

    method: str
    path: str
    parse: Callable[[Answer], T]
    params: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    idempotent: bool = True
    timeout: float | None = None
    retry_unavailable: bool = True
    """False where a 503 is itself the answer (readiness), not a reason to try again."""

    def may_resend(self, answer: Answer | None, sent: bool) -> bool:
        """Whether to try again after this outcome: no answer (``sent``: the request may have arrived) or a 503."""
        if answer is None:
            return self.idempotent or not sent
        if answer.status != 503 or not self.retry_unavailable:
            return False
        return self.idempotent or _body(answer).get("error") in NOTHING_DONE


class Entry(NamedTuple):
    """A key's value as read, with its ``mod_revision`` (its ETag) and the store's revision of the read."""

    key: str
    value: bytes
    mod_revision: int
    revision: int
    expires_at: int | None = None
    """Unix milliseconds at which the key is deleted, or None for a permanent key."""


class Written(NamedTuple):
    """What a PUT or DELETE created: its revision (a PUT's new ETag), and a PUT's deadline if it has one."""

    revision: int
    expires_at: int | None = None


class Item(NamedTuple):
    """One key of a listing page; ``value`` is None in a ``keys_only`` listing."""

    key: str
    value: bytes | None
    create_revision: int
    mod_revision: int
    version: int
    expires_at: int | None = None


class Page(NamedTuple):
    """One page of a listing, all pages pinned at ``revision``; ``next_page_token`` None on the last."""

    revision: int
    items: tuple[Item, ...]
    next_page_token: str | None


class Lease(NamedTuple):
    """A lease: its id (pass it as ``lease=``), its ttl in seconds and its current end (Unix ms)."""

    id: int
    ttl: float
    expires_at: int
    revision: int | None = None
    keys: tuple[str, ...] | None = None


class RevokedLease(NamedTuple):
    """A revoke's outcome: the revision of the lease record and how many keys went with it."""

    id: int
    revision: int
    deleted_keys: int


def key_path(key: str) -> str:
    """``/v1/key/{key}`` with every byte but the unreserved ones escaped (dots too: no ``.``/``..`` segments)."""
    if not isinstance(key, str) or not key:
        raise InvalidRequestError("a key is a non-empty string")
    return "/v1/key/" + quote(key, safe="").replace(".", "%2E")


def _codes() -> dict[str, type[TucoError]]:
    table: dict[str, type[TucoError]] = {}
    pending: list[type[TucoError]] = [TucoError]
    while pending:
        cls = pending.pop()
        if issubclass(cls, ProtocolError):  # the server's own refusals: the nearest general class stands for them
            continue
        table.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return table


_BY_CODE = _codes()


def _body(answer: Answer) -> dict[str, Any]:
    try:
        parsed = json.loads(answer.body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _etag(answer: Answer) -> int:
    tag = answer.headers.get("etag", "").strip('"')
    return int(tag) if tag.isdigit() else 0


def _revision(answer: Answer) -> int:
    raw = answer.headers.get("x-tuco-revision", "")
    return int(raw) if raw.isdigit() else 0


def _expires(answer: Answer) -> int | None:
    raw = answer.headers.get("x-tuco-expires-at")
    return int(raw) if raw is not None and raw.isdigit() else None


def error_from(answer: Answer, *, key: str | None = None, lease: int | None = None) -> TucoError:
    """The exception of tuco's tree that an error answer stands for, with the server's code and message.

    A code with no class of its own (``not_found``, ``starting``...) becomes the nearest
    general class (:class:`~tuco.errors.InvalidRequestError` for 4xx,
    :class:`~tuco.errors.UnavailableError` for 503) carrying the server's code and status.
    """
    body = _body(answer)
    code = str(body.get("error", "")) or f"http_{answer.status}"
    message = str(body.get("message", "")) or answer.body[:200].decode("utf-8", "replace")
    cls = _BY_CODE.get(code)
    error: TucoError
    if cls is PreconditionFailedError:
        error = PreconditionFailedError(key or "", _etag(answer))
    elif cls is NoSuchKeyError:
        error = NoSuchKeyError(key) if key is not None else NoSuchKeyError()
    elif cls is HistoryCompactedError:
        oldest = body.get("oldest_revision")
        error = HistoryCompactedError(oldest if isinstance(oldest, int) else 0)
    elif cls is LeaseNotFoundError:
        error = LeaseNotFoundError(lease or 0)
    elif cls is RevisionAheadError:
        requested, revision = body.get("requested"), body.get("revision")
        error = RevisionAheadError(
            requested if isinstance(requested, int) else 0, revision if isinstance(revision, int) else 0
        )
    elif cls is not None:
        error = cls(message)
    else:
        fallback: type[TucoError]
        if answer.status == 503:
            fallback = errors.UnavailableError
        elif 400 <= answer.status < 500:
            fallback = InvalidRequestError
        else:
            fallback = TucoError
        error = fallback(message)
        error.code = code
    error.status = answer.status
    return error


def _expect(answer: Answer, statuses: tuple[int, ...], **context: Any) -> None:
    if answer.status not in statuses:
        raise error_from(answer, **context)


# --- keys --------------------------------------------------------------------------------------------------------


def get(key: str, *, consistent: bool = False, revision: int | None = None) -> Call[Entry]:
    """``GET /v1/key/{key}``: the value (as of ``revision``, if given), or :class:`~tuco.errors.NoSuchKeyError`."""

    def parse(answer: Answer) -> Entry:
        _expect(answer, (200,), key=key)
        return Entry(key, answer.body, _etag(answer), _revision(answer), _expires(answer))

    params: tuple[tuple[str, str], ...] = (("consistent", "true"),) if consistent else ()
    if revision is not None:
        params += (("revision", str(revision)),)
    return Call("GET", key_path(key), parse, params=params)


def wait(key: str, revision: int, timeout: float) -> Call[tuple[bool, Entry | None]]:
    """Long poll: ``(changed, entry)`` once the key changed at ``revision`` or later, or at the timeout."""

    def parse(answer: Answer) -> tuple[bool, Entry | None]:
        changed = answer.headers.get("x-tuco-wait") == "changed"
        if answer.status == 404 and _body(answer).get("error") == "no_such_key":
            return changed, None
        _expect(answer, (200,), key=key)
        return changed, Entry(key, answer.body, _etag(answer), _revision(answer), _expires(answer))

    params = (("wait_revision", str(revision)), ("timeout", f"{timeout:g}"))
    return Call("GET", key_path(key), parse, params=params, timeout=timeout + 10.0)


def _conditions(if_revision: int | None, if_absent: bool, if_exists: bool) -> tuple[tuple[str, str], ...]:
    chosen = (if_revision is not None) + if_absent + if_exists
    if chosen > 1:
        raise InvalidRequestError("give at most one of if_revision, if_absent and if_exists")
    if if_revision is not None:
        if isinstance(if_revision, bool) or not isinstance(if_revision, int) or not 1 <= if_revision < 1 << 63:
            raise InvalidRequestError("if_revision is a revision: a whole number from 1 to 2**63 - 1")
        return (("If-Match", f'"{if_revision}"'),)
    if if_absent:
        return (("If-None-Match", "*"),)
    if if_exists:
        return (("If-Match", "*"),)
    return ()


def put(
    key: str,
    value: bytes | str,
    *,
    if_revision: int | None = None,
    if_absent: bool = False,
    if_exists: bool = False,
    ttl: float | None = None,
    lease: int | None = None,
) -> Call[Written]:
    """``PUT /v1/key/{key}``; a condition that fails raises :class:`~tuco.errors.PreconditionFailedError`."""
    body = value.encode() if isinstance(value, str) else bytes(value)
    headers = _conditions(if_revision, if_absent, if_exists)
    params: list[tuple[str, str]] = []
    if ttl is not None and lease is not None:
        raise InvalidRequestError("give ttl or lease, not both")
    if ttl is not None:
        params.append(("ttl", f"{round(ttl * 1000)}ms"))
    if lease is not None:
        params.append(("lease", str(lease)))

    def parse(answer: Answer) -> Written:
        _expect(answer, (200, 201), key=key, lease=lease)
        return Written(_etag(answer) or _revision(answer), _expires(answer))

    return Call("PUT", key_path(key), parse, tuple(params), headers, body, idempotent=not headers)


def delete(key: str, *, if_revision: int | None = None, if_exists: bool = False) -> Call[Written]:
    """``DELETE /v1/key/{key}`` (idempotent: an absent key is fine unless a condition says otherwise)."""
    headers = _conditions(if_revision, False, if_exists)

    def parse(answer: Answer) -> Written:
        _expect(answer, (200, 204), key=key)
        return Written(_revision(answer))

    return Call("DELETE", key_path(key), parse, headers=headers, idempotent=not headers)


def deadline(key: str, ttl: float | None) -> Call[Written]:
    """``POST /v1/keys/{key}/ttl?ttl=`` (touch: expire ``ttl`` seconds from now) or ``DELETE`` (``ttl`` None: persist).

    The server rewrites the value it holds, on the condition that the key did not change
    in between; sending it twice moves the deadline twice (harmless), so it is idempotent.
    """
    path = "/v1/keys/" + key_path(key)[len("/v1/key/") :] + "/ttl"

    def parse(answer: Answer) -> Written:
        _expect(answer, (200,), key=key)
        expires = _expires(answer)
        return Written(_etag(answer) or _revision(answer), expires or None)

    if ttl is None:
        return Call("DELETE", path, parse)
    return Call("POST", path, parse, params=(("ttl", f"{round(ttl * 1000)}ms"),))


# --- listing -------------------------------------------------------------------------------------------------------


def _item(raw: Mapping[str, Any]) -> Item:
    value = raw.get("value")
    expires = raw.get("expires_at")
    return Item(
        str(raw["key"]),
        base64.b64decode(value) if isinstance(value, str) else None,
        int(raw["create_revision"]),
        int(raw["mod_revision"]),
        int(raw["version"]),
        int(expires) if isinstance(expires, int) else None,
    )


def list_page(
    prefix: str = "", *, limit: int = 100, keys_only: bool = False, page_token: str | None = None
) -> Call[Page]:
    """One page of ``GET /v1/keys``."""
    params = [("prefix", prefix), ("limit", str(limit))]
    if keys_only:
        params.append(("keys_only", "true"))
    if page_token is not None:
        params.append(("page_token", page_token))

    def parse(answer: Answer) -> Page:
        _expect(answer, (200,))
        body = _body(answer)
        token = body.get("next_page_token")
        return Page(
            int(body["revision"]),
            tuple(_item(raw) for raw in body["items"]),
            token if isinstance(token, str) else None,
        )

    return Call("GET", "/v1/keys", parse, params=tuple(params))


# --- leases --------------------------------------------------------------------------------------------------------


def _lease(body: Mapping[str, Any]) -> Lease:
    keys = body.get("keys")
    revision = body.get("revision")
    return Lease(
        int(body["id"]),
        float(body["ttl"]),
        int(body["expires_at"]),
        int(revision) if isinstance(revision, int) else None,
        tuple(str(key) for key in keys) if isinstance(keys, list) else None,
    )


def grant(ttl: float) -> Call[Lease]:
    """``POST /v1/leases``: not idempotent (a second grant is a second lease), so only resent if never sent."""

    def parse(answer: Answer) -> Lease:
        _expect(answer, (201,))
        return _lease(_body(answer))

    body = json.dumps({"ttl": ttl}).encode()
    return Call(
        "POST", "/v1/leases", parse, headers=(("Content-Type", "application/json"),), body=body, idempotent=False
    )


class LeaseSummary(NamedTuple):
    """One of the caller's leases as ``GET /v1/leases`` lists it: seconds left and how many keys it holds."""

    id: int
    ttl: float
    expires_at: int
    remaining: float
    key_count: int


def list_leases(
    limit: int | None = None, after: int | None = None
) -> Call[tuple[tuple[LeaseSummary, ...], int | None]]:
    """``GET /v1/leases``: a page of the caller's own leases (an admin's: all) and the ``after`` of the next page."""
    params: list[tuple[str, str]] = []
    if limit is not None:
        params.append(("limit", str(limit)))
    if after is not None:
        params.append(("after", str(after)))

    def parse(answer: Answer) -> tuple[tuple[LeaseSummary, ...], int | None]:
        _expect(answer, (200,))
        body = _body(answer)
        leases = tuple(
            LeaseSummary(
                int(raw["id"]),
                float(raw["ttl"]),
                int(raw["expires_at"]),
                float(raw["remaining"]),
                int(raw["key_count"]),
            )
            for raw in body.get("leases", ())
        )
        following = body.get("next_after")
        return leases, following if isinstance(following, int) else None

    return Call("GET", "/v1/leases", parse, params=tuple(params))


def _lease_path(lease: int) -> str:
    if isinstance(lease, bool) or not isinstance(lease, int) or lease < 1:
        raise InvalidRequestError("a lease id is a whole number from 1")
    return f"/v1/leases/{lease}"


def keepalive(lease: int) -> Call[Lease]:
    """``POST /v1/leases/{id}/keepalive``: moves the end to ttl from now, so sending it twice is harmless."""

    def parse(answer: Answer) -> Lease:
        _expect(answer, (200,), lease=lease)
        return _lease(_body(answer))

    return Call("POST", _lease_path(lease) + "/keepalive", parse)


def lease_info(lease: int) -> Call[Lease]:
    """``GET /v1/leases/{id}``: the lease and its keys."""

    def parse(answer: Answer) -> Lease:
        _expect(answer, (200,), lease=lease)
        return _lease(_body(answer))

    return Call("GET", _lease_path(lease), parse)


def revoke(lease: int) -> Call[RevokedLease]:
    """``DELETE /v1/leases/{id}``: the lease and its keys are deleted."""

    def parse(answer: Answer) -> RevokedLease:
        _expect(answer, (200,), lease=lease)
        body = _body(answer)
        return RevokedLease(int(body["id"]), int(body["revision"]), int(body["deleted_keys"]))

    return Call("DELETE", _lease_path(lease), parse)


# --- the server ----------------------------------------------------------------------------------------------------


def health() -> Call[bool]:
    """``GET /healthz``: True while the process runs."""
    return Call("GET", "/healthz", lambda answer: answer.status == 200)


def readiness() -> Call[dict[str, Any]]:
    """``GET /readyz``: its JSON, ready or not (``ready`` says which)."""

    def parse(answer: Answer) -> dict[str, Any]:
        if answer.status not in (200, 503):
            raise error_from(answer)
        return _body(answer)

    return Call("GET", "/readyz", parse, retry_unavailable=False)
