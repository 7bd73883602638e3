"""Transactions from the client: a small builder, and the calls of ``POST /v1/txn`` and ``DELETE /v1/keys``.

Pure like :mod:`tuco.client._calls`: the builder gathers compares and
operations and hands one :class:`~tuco.client._calls.Call` to the client's
sender, so :class:`~tuco.client.Client` and :class:`~tuco.client.AsyncClient`
share it (``commit()`` returns the result, or an awaitable of it).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, Generic, NamedTuple, TypeVar

from tuco.client._calls import Answer, Call, Item, _body, _expect, _item
from tuco.errors import InvalidRequestError

__all__ = ["Listed", "Ops", "RangeDeleted", "Txn", "TxnResult", "delete_prefix", "txn_call"]

R = TypeVar("R")

_TARGETS = ("value", "mod_revision", "create_revision", "version", "exists")
_OPS = ("==", "!=", "<", ">")


class Listed(NamedTuple):
    """A ``list`` operation's result: the keys found (at most its limit) and whether more follow."""

    items: tuple[Item, ...]
    more: bool


class TxnResult(NamedTuple):
    """A transaction's outcome: which branch ran, its revision, one result per operation of that branch.

    A put's result is its revision (int), a delete's or delete_prefix's the count deleted (int), a
    get's the :class:`~tuco.client.Item` (None: absent), a list's a :class:`Listed`.
    """

    succeeded: bool
    revision: int
    results: tuple[Any, ...]


class RangeDeleted(NamedTuple):
    """What ``delete_prefix`` did: how many keys it deleted, at which revision."""

    deleted: int
    revision: int


def _b64(value: bytes | str) -> str:
    data = value.encode() if isinstance(value, str) else value
    return base64.b64encode(data).decode("ascii")


class Ops:
    """One branch's operations, in order; each method returns the branch, so they chain."""

    def __init__(self) -> None:
        self.ops: list[dict[str, Any]] = []

    def put(self, key: str, value: bytes | str, *, ttl: float | None = None, lease: int | None = None) -> Ops:
        spec: dict[str, Any] = {"key": key, "value": _b64(value)}
        if ttl is not None:
            spec["ttl"] = ttl
        if lease is not None:
            spec["lease"] = lease
        self.ops.append({"put": spec})
        return self

    def delete(self, key: str) -> Ops:
        self.ops.append({"delete": {"key": key}})
        return self

    def delete_prefix(self, prefix: str) -> Ops:
        """Every key under ``prefix`` (the empty prefix: every key)."""
        spec: dict[str, Any] = {"prefix": prefix}
        if not prefix:
            spec["all"] = True
        self.ops.append({"delete_prefix": spec})
        return self

    def get(self, key: str) -> Ops:
        self.ops.append({"get": {"key": key}})
        return self

    def list(self, prefix: str = "", limit: int = 100) -> Ops:
        self.ops.append({"list": {"prefix": prefix, "limit": limit}})
        return self


class Txn(Generic[R]):
    """A transaction being built: ``when(...)`` compares, ``then`` and ``otherwise`` branches, then ``commit()``.

    ``client.txn().when("a", "mod_revision", "==", 7).then.put("b", b"hi")`` and so on;
    ``commit()`` sends it once (a transaction is not retried after a lost answer: it may have applied).
    """

    def __init__(self, send: Callable[[Call[TxnResult]], R]) -> None:
        self._send = send
        self.compares: list[dict[str, Any]] = []
        self.then = Ops()
        """The operations run when every compare holds."""
        self.otherwise = Ops()
        """The operations run when one does not."""

    def when(self, key: str, target: str, op: str, value: int | bool | bytes | str) -> Txn[R]:
        """Add a compare: ``target`` (value, mod_revision, create_revision, version, exists) ``op`` ``value``."""
        if target not in _TARGETS or op not in _OPS:
            raise InvalidRequestError(f"a compare is one of {_TARGETS} with one of {_OPS}")
        shown: Any = _b64(value) if target == "value" and isinstance(value, bytes | str) else value
        self.compares.append({"key": key, "target": target, "op": op, "value": shown})
        return self

    def body(self) -> bytes:
        """The request's JSON."""
        return json.dumps(
            {"compare": self.compares, "success": self.then.ops, "failure": self.otherwise.ops},
            separators=(",", ":"),
        ).encode()

    def commit(self) -> R:
        """Send it: the :class:`TxnResult` (an awaitable of it from an AsyncClient)."""
        return self._send(txn_call(self.body()))


def _result(raw: dict[str, Any]) -> Any:
    ((kind, spec),) = raw.items()
    if kind == "put":
        return int(spec["revision"])
    if kind in ("delete", "delete_prefix"):
        return int(spec["deleted"])
    if kind == "get":
        return _item(spec) if spec.get("found") else None
    return Listed(tuple(_item(item) for item in spec["items"]), bool(spec["more"]))


def txn_call(body: bytes) -> Call[TxnResult]:
    """``POST /v1/txn`` with a JSON body (not idempotent: a lost answer's transaction may have applied)."""

    def parse(answer: Answer) -> TxnResult:
        _expect(answer, (200,))
        found = _body(answer)
        return TxnResult(
            bool(found["succeeded"]), int(found["revision"]), tuple(_result(raw) for raw in found["results"])
        )

    return Call("POST", "/v1/txn", parse, headers=(("content-type", "application/json"),), body=body, idempotent=False)


def delete_prefix(prefix: str) -> Call[RangeDeleted]:
    """``DELETE /v1/keys?prefix=`` (the empty prefix: every key, with ``all=true``)."""
    params = (("prefix", prefix),) if prefix else (("all", "true"),)

    def parse(answer: Answer) -> RangeDeleted:
        _expect(answer, (200,))
        found = _body(answer)
        return RangeDeleted(int(found["deleted"]), int(found["revision"]))

    return Call("DELETE", "/v1/keys", parse, params=params)
