"""Events are what the transaction log records: one mutation each, in sequence."""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

__all__ = ["Event", "EventType"]


class EventType(IntEnum):
    """Kinds of mutation. The numbers are written to disk: only ever append new ones."""

    PUT = 1
    DELETE = 2


class Event(NamedTuple):
    """One mutation with its place in the log.

    A NamedTuple rather than a dataclass: replay creates millions of these and
    tuple construction is the cheapest immutable record Python has.
    """

    sequence: int
    type: EventType
    key: str
    value: bytes = b""
