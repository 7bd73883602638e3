"""A strict-serializability checker for transaction histories, beside :mod:`tests.lincheck`.

Every answered transaction names the revision it was decided at, so no search
is needed: the committed transactions, replayed in revision order against a
model of the store written here (independent of tuco's own code), must give
exactly the answers the clients got, each writing one revision right after the
previous one (a transaction split over two revisions leaves a revision nobody
wrote), each read-only one reading the state at its revision; and that order
must agree with real time: a transaction that completed before another was
invoked comes first. Transactions whose answer was lost may have applied: one
fills a revision no answered transaction took, if its replay writes.

The model covers what the workloads send: compares on value, mod_revision,
create_revision, version and exists; put (no ttl or lease), delete,
delete_prefix, get and list.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Record", "check_transactions"]

Entry = tuple[bytes, int, int, int]  # value, create_revision, mod_revision, version


@dataclass
class Record:
    """One transaction a client sent: its JSON body, when, and the JSON answer (None: no answer came)."""

    body: dict[str, Any]
    invoked: float
    completed: float | None = None
    answer: dict[str, Any] | None = None


@dataclass
class _Model:
    keys: dict[str, Entry] = field(default_factory=dict)
    revision: int = 0

    def holds(self, compare: dict[str, Any]) -> bool:
        found = self.keys.get(compare["key"])
        target, op, right = compare["target"], compare.get("op", "=="), compare["value"]
        if target == "value":
            if found is None:
                return False
            left: Any = found[0]
            right = base64.b64decode(right)
        elif target == "exists":
            left, right = int(found is not None), int(right)
        else:
            index = {"create_revision": 1, "mod_revision": 2, "version": 3}[target]
            left = found[index] if found is not None else 0
        return bool({"==": left == right, "!=": left != right, "<": left < right, ">": left > right}[op])

    def run(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The answer the transaction gets as the next one, and whether it wrote; the model moves on if it did."""
        succeeded = all(self.holds(c) for c in body.get("compare", []))
        ops = body.get("success" if succeeded else "failure", [])
        revision = self.revision + 1
        keys = dict(self.keys)
        wrote = False
        results: list[dict[str, Any]] = []
        for op in ops:
            ((kind, spec),) = op.items()
            if kind == "put":
                old = keys.get(spec["key"])
                value = base64.b64decode(spec.get("value", ""))
                keys[spec["key"]] = (value, old[1], revision, old[3] + 1) if old else (value, revision, revision, 1)
                wrote = True
                results.append({"put": {"revision": revision}})
            elif kind == "delete":
                results.append({"delete": {"deleted": int(keys.pop(spec["key"], None) is not None)}})
                wrote = True
            elif kind == "delete_prefix":
                gone = [key for key in keys if key.startswith(spec["prefix"])]
                for key in gone:
                    del keys[key]
                wrote = wrote or bool(gone)
                results.append({"delete_prefix": {"deleted": len(gone)}})
            elif kind == "get":
                found = keys.get(spec["key"])
                shown = (
                    {"key": spec["key"], "found": False}
                    if found is None
                    else {**_item(spec["key"], found), "found": True}
                )
                results.append({"get": shown})
            else:
                under = sorted(key for key in keys if key.startswith(spec["prefix"]))
                limit = spec.get("limit", 100)
                items = [_item(key, keys[key]) for key in under[:limit]]
                results.append({"list": {"items": items, "more": len(under) > limit}})
        if wrote:
            self.keys, self.revision = keys, revision
        return {"succeeded": succeeded, "revision": self.revision, "results": results}, wrote


def _item(key: str, entry: Entry) -> dict[str, Any]:
    value, created, modified, version = entry
    return {
        "key": key,
        "value": base64.b64encode(value).decode(),
        "create_revision": created,
        "mod_revision": modified,
        "version": version,
    }


def check_transactions(records: list[Record]) -> list[str]:
    """What is wrong with the history (empty: it is strictly serializable)."""
    answered = [r for r in records if r.answer is not None]
    lost = [r for r in records if r.answer is None]
    problems: list[str] = []

    def place(record: Record) -> tuple[int, int]:
        assert record.answer is not None
        return (int(record.answer["revision"]), 1 if record.answer.get("_read_only") else 0)

    # Read-only answers carry the revision they read; a writer's is the one it wrote. The model says which is which.
    by_revision: dict[int, list[Record]] = {}
    for record in answered:
        by_revision.setdefault(int(record.answer["revision"]), []).append(record)  # type: ignore[index]
    model = _Model()
    last = max(by_revision, default=0)
    for revision in range(last + 1):
        group = by_revision.get(revision, [])
        if revision > 0:
            writer = _writer_of(model, group, lost)
            if writer is None:
                problems.append(f"revision {revision}: no transaction's replay writes it (split, or lost?)")
                return problems
            if writer.answer is not None:
                writer.answer["_read_only"] = False
            group = [r for r in group if r is not writer]
        for record in group:
            expected, wrote = _Model(dict(model.keys), model.revision).run(record.body)
            assert record.answer is not None
            record.answer["_read_only"] = True
            if wrote or _public(record.answer) != expected:
                problems.append(
                    f"revision {revision}: {record.body} answered {_public(record.answer)}, expected {expected}"
                )
    problems.extend(_real_time(answered, place))
    return problems


def _public(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if not k.startswith("_")}


def _writer_of(model: _Model, group: list[Record], lost: list[Record]) -> Record | None:
    """The one transaction that, replayed next, writes the next revision and gets its answer (else a lost one)."""
    for record in group:
        trial = _Model(dict(model.keys), model.revision)
        expected, wrote = trial.run(record.body)
        if wrote and _public(record.answer or {}) == expected:
            model.keys, model.revision = trial.keys, trial.revision
            return record
    for record in lost:
        trial = _Model(dict(model.keys), model.revision)
        _, wrote = trial.run(record.body)
        if wrote:
            lost.remove(record)
            model.keys, model.revision = trial.keys, trial.revision
            return record
    return None


def _real_time(answered: list[Record], place: Any) -> list[str]:
    """A transaction that completed before another was invoked must come first in the serial order."""
    problems: list[str] = []
    by_completion = sorted(answered, key=lambda r: r.completed or 0.0)
    by_invocation = sorted(answered, key=lambda r: r.invoked)
    best: tuple[int, int] | None = None
    best_record: Record | None = None
    i = 0
    for record in by_invocation:
        while i < len(by_completion) and (by_completion[i].completed or 0.0) < record.invoked:
            candidate = place(by_completion[i])
            if best is None or candidate > best:
                best, best_record = candidate, by_completion[i]
            i += 1
        mine = place(record)
        if best is not None and (best > mine if mine[1] else best >= mine) and best_record is not record:
            problems.append(
                f"{record.body} at {mine} was invoked after {best_record.body if best_record else ''} at {best} ended"
            )
    return problems
