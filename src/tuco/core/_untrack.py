"""Tuples the live write path keeps, untracked by the cyclic collector as they are made.

An entry (bytes and ints), an origin (a str and ints) and a history change
holding them can never be part of a cycle, and the first young collection
after they are made concludes as much and stops tracking them, after
visiting each. Under steady writes those visits were most of the collector's
work (tuco.collector runs a young collection every 512 writes).
:func:`untracked` concludes it at once, by CPython's own rule for tuples. It
is the compiled build's C helper (``_native.c``); in the pure build it is
``None`` and the collector does it, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

__all__ = ["untracked"]

_loaded: Callable[[Any], Any] | None
try:
    from tuco.core._native import untracked as _loaded
except ImportError:
    _loaded = None

untracked: Final = _loaded
"""Final: in the compiled build each caller reads a C static, not a module's dict (see tuco.http.observer)."""
