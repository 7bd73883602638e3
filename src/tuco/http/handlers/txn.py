"""``POST /v1/txn`` (a transaction) and ``DELETE /v1/keys?prefix=`` (a range delete, a transaction of one).

The body is JSON: ``compare``, ``success`` and ``failure`` lists (see
docs/concepts.md, Transactions); values are base64. The route's target is ``SOME`` (a
read grant on something): every compare and operation is authorized here, on
its own key or prefix, before anything is queued, so a refusal is a 403 and
nothing happens.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Awaitable, Callable
from typing import Any

from tuco.core.origin import Reason
from tuco.core.tokens import Permission
from tuco.core.txn import COMPARE_OPS, COMPARE_TARGETS, Compare, OpResult, Txn, TxnOp, TxnOutcome, check_branch
from tuco.errors import ForbiddenError, InvalidParameterError, InvalidTxnError, LogError, TucoError
from tuco.http.answers import error_answer, json_response, refusal
from tuco.http.audit import may, origin
from tuco.http.handlers._base import Context
from tuco.http.handlers._writes import write_refused
from tuco.http.messages import Answer, Request, Response
from tuco.http.params import flag, parse_json, text_param

__all__ = ["MAX_LIST_LIMIT", "delete_prefix", "parse_txn", "render_outcome", "txn"]

MAX_LIST_LIMIT = 1000
_DEFAULT_LIST_LIMIT = 100
_MAX_INT = (1 << 63) - 1
_READ = Permission.READ
_WRITE = Permission.WRITE


def txn(ctx: Context, request: Request, segment: bytes) -> Answer:
    """POST /v1/txn: decide, run and answer one transaction."""
    try:
        parsed = parse_txn(request.body)
        _authorize(request, parsed)
        outcome = ctx.service.txn(parsed, request.principal, origin(request, _deletes_reason(parsed)))
    except TucoError as exc:
        return write_refused(exc, "no transaction")
    return _answer(outcome, render_outcome, "no transaction")


def _deletes_reason(parsed: Txn) -> int:
    """Why the transaction's deletes happen: a range delete if every delete in it is a ``delete_prefix``.

    A transaction has one origin, so one reason for all its deletes: with single-key deletes too, ``deleted``.
    """
    kinds = {op.kind for op in (*parsed.success, *parsed.failure) if op.kind in ("delete", "delete_prefix")}
    return Reason.RANGE_DELETE if kinds == {"delete_prefix"} else Reason.NONE


def delete_prefix(ctx: Context, request: Request, segment: bytes) -> Answer:
    """DELETE /v1/keys?prefix=P: every key under P at one revision; the empty prefix needs ``all=true``."""
    try:
        prefix = text_param(request, b"prefix")
        if not prefix and not flag(request, b"all"):
            raise InvalidParameterError("deleting every key takes all=true; give a prefix otherwise")
        if not may(request, _WRITE, prefix):
            raise ForbiddenError("the token has no write grant on the whole prefix")
        outcome = ctx.service.txn(
            Txn((), (TxnOp("delete_prefix", prefix),), ()), request.principal, origin(request, Reason.RANGE_DELETE)
        )
    except TucoError as exc:
        return write_refused(exc, "nothing deleted")
    return _answer(outcome, _range_deleted, "nothing deleted")


def _range_deleted(decided: TxnOutcome) -> dict[str, object]:
    return {"deleted": decided.results[0].deleted, "revision": decided.revision}


async def _answer(
    outcome: Awaitable[TxnOutcome], render: Callable[[TxnOutcome], dict[str, object]], doing: str
) -> Response:
    """The answer once the log decided: ``render`` of the outcome (200), or why nothing was done."""
    try:
        decided = await outcome
    except LogError as exc:
        return refusal(exc, doing)
    except TucoError as exc:
        return error_answer(exc)
    return json_response(200, render(decided), decided.revision)


def _authorize(request: Request, parsed: Txn) -> None:
    """ForbiddenError unless the caller may do every compare and operation (each one audited if refused)."""
    if request.caller is None:
        return
    for compare in parsed.compare:
        if not may(request, _READ, compare.key):
            raise ForbiddenError(f"the token has no read grant on {compare.key!r} (a compare)")
    for op in (*parsed.success, *parsed.failure):
        need = _WRITE if op.kind in ("put", "delete", "delete_prefix") else _READ
        if not may(request, need, op.key):
            what = "prefix" if op.kind in ("delete_prefix", "list") else "key"
            raise ForbiddenError(f"the token has no {need.label} grant on the {what} {op.key!r} ({op.kind})")


# -- the body ---------------------------------------------------------------------


def parse_txn(body: bytes) -> Txn:
    """The transaction a request's JSON body describes; InvalidTxnError saying what is wrong with it."""
    document = parse_json(body, InvalidTxnError("the body is not JSON"))
    if not isinstance(document, dict):
        raise InvalidTxnError("the body must be a JSON object with compare, success and failure")
    unknown = set(document) - {"compare", "success", "failure"}
    if unknown:
        raise InvalidTxnError(f"unknown field {sorted(unknown)[0]!r}; a transaction has compare, success and failure")
    compares = tuple(_compare(item, n) for n, item in enumerate(_list(document, "compare")))
    success = tuple(_op(item, f"success[{n}]") for n, item in enumerate(_list(document, "success")))
    failure = tuple(_op(item, f"failure[{n}]") for n, item in enumerate(_list(document, "failure")))
    check_branch(success)
    check_branch(failure)
    return Txn(compares, success, failure)


# The fields each part takes: any other is a 400, or a misspelt "value" would store an empty one.
_FIELDS = {
    "compare": ("key", "target", "op", "value"),
    "put": ("key", "value", "ttl", "lease"),
    "delete": ("key",),
    "get": ("key",),
    "delete_prefix": ("prefix", "all"),
    "list": ("prefix", "limit"),
}


def _only_known(item: dict[str, Any], kind: str, where: str) -> None:
    known = _FIELDS[kind]
    for name in item:
        if name not in known:
            names = ", ".join(known[:-1]) + f" and {known[-1]}" if len(known) > 1 else known[0]
            raise InvalidTxnError(f"{where}: unknown field {name!r}; a {kind} has {names}")


def _list(document: dict[str, Any], name: str) -> list[Any]:
    found = document.get(name, [])
    if not isinstance(found, list):
        raise InvalidTxnError(f"{name} must be a list")
    return found


def _text(item: dict[str, Any], name: str, where: str, *, empty: bool = False) -> str:
    value = item.get(name)
    if not isinstance(value, str) or (not value and not empty):
        raise InvalidTxnError(f"{where}: {name} must be a{'' if empty else ' non-empty'} string")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:  # a lone surrogate (JSON's \ud800): no UTF-8, no key
            raise InvalidTxnError(f"{where}: {name} is not valid Unicode") from None
    return value


def _bytes(value: object, where: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidTxnError(f"{where}: the value must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidTxnError(f"{where}: the value is not base64") from None


def _integer(value: object, where: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= _MAX_INT:
        raise InvalidTxnError(f"{where} must be an integer from {low}")
    return value


def _compare(item: object, n: int) -> Compare:
    where = f"compare[{n}]"
    if not isinstance(item, dict):
        raise InvalidTxnError(f"{where} must be an object with key, target, op and value")
    _only_known(item, "compare", where)
    key = _text(item, "key", where)
    target, op = item.get("target"), item.get("op", "==")
    if target not in COMPARE_TARGETS:
        raise InvalidTxnError(f"{where}: target must be one of {', '.join(COMPARE_TARGETS)}")
    if op not in COMPARE_OPS:
        raise InvalidTxnError(f"{where}: op must be one of {' '.join(COMPARE_OPS)}")
    if "value" not in item:
        raise InvalidTxnError(f"{where}: value is missing")
    raw = item["value"]
    value: int | bytes
    if target == "value":
        value = _bytes(raw, where)
    elif target == "exists":
        if not isinstance(raw, bool):
            raise InvalidTxnError(f"{where}: an exists compare's value is true or false")
        value = int(raw)
    else:
        value = _integer(raw, f"{where}: the value")
    return Compare(key, str(target), str(op), value)


def _op(item: object, where: str) -> TxnOp:
    if not isinstance(item, dict) or len(item) != 1:
        raise InvalidTxnError(f"{where} must be an object with one of put, delete, delete_prefix, get, list")
    ((kind, spec),) = item.items()
    if not isinstance(spec, dict):
        raise InvalidTxnError(f"{where}: {kind} must be an object")
    where = f"{where}.{kind}"
    if kind in _FIELDS:
        _only_known(spec, kind, where)
    if kind == "put":
        key = _text(spec, "key", where)
        value = _bytes(spec.get("value", ""), where)
        ttl = spec.get("ttl")
        lease = spec.get("lease")
        if ttl is not None and lease is not None:
            raise InvalidTxnError(f"{where}: a put has a ttl or a lease, not both")
        ttl_ms = 0
        if ttl is not None:
            if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl) or ttl <= 0:
                raise InvalidTxnError(f"{where}: ttl is a positive number of seconds")
            ttl_ms = max(1, round(ttl * 1000))
        return TxnOp("put", key, value, ttl_ms, _integer(lease, f"{where}: lease", 1) if lease is not None else 0)
    if kind in ("delete", "get"):
        return TxnOp(kind, _text(spec, "key", where))
    if kind == "delete_prefix":
        prefix = _text(spec, "prefix", where, empty=True)
        if not prefix and spec.get("all") is not True:
            raise InvalidTxnError(f"{where}: deleting every key takes 'all': true")
        return TxnOp(kind, prefix)
    if kind == "list":
        limit = spec.get("limit", _DEFAULT_LIST_LIMIT)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidTxnError(f"{where}: limit must be an integer from 1 to {MAX_LIST_LIMIT}")
        return TxnOp(kind, _text(spec, "prefix", where, empty=True), limit=limit)
    raise InvalidTxnError(f"{where}: unknown operation; one of put, delete, delete_prefix, get, list")


# -- the answer -------------------------------------------------------------------


def render_outcome(outcome: TxnOutcome) -> dict[str, object]:
    """The JSON answer: ``succeeded``, ``revision`` and one result per operation of the branch that ran."""
    return {
        "succeeded": outcome.succeeded,
        "revision": outcome.revision,
        "results": [{result.kind: _result(result)} for result in outcome.results],
    }


def _result(result: OpResult) -> dict[str, object]:
    kind = result.kind
    if kind == "put":
        return {"revision": result.revision}
    if kind in ("delete", "delete_prefix"):
        return {"deleted": result.deleted}
    if kind == "get":
        entry = result.entry
        if entry is None:
            return {"key": result.key, "found": False}
        shown = _item(result.key, entry)
        shown["found"] = True
        if result.expires_at:
            shown["expires_at"] = result.expires_at
        return shown
    return {"items": [_item(key, entry) for key, entry in result.items], "more": result.more}


def _item(key: str, entry: Any) -> dict[str, object]:
    value, created, modified, version = entry
    return {
        "key": key,
        "value": base64.b64encode(value).decode("ascii"),
        "create_revision": created,
        "mod_revision": modified,
        "version": version,
    }
