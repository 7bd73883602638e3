"""Schemathesis hooks for the suite's runs: long polls answer at once instead of waiting up to 300 s.

A generated ``wait_revision`` with a long ``timeout`` is a valid request that holds the
connection for its whole timeout; the suite cannot spend that, so every generated
timeout becomes ``0.05``. Nothing else is changed.
"""

from __future__ import annotations

from typing import Any

import schemathesis

from tuco.http.routes import RESERVED


@schemathesis.hook
def map_query(context: Any, query: dict[str, Any] | None) -> dict[str, Any] | None:
    if query and "wait_revision" in query:
        query["timeout"] = "0.05"
    return query


@schemathesis.hook
def filter_path_parameters(context: Any, parameters: dict[str, Any] | None) -> bool:
    # The alias /v1/{key} excludes the reserved names in the schema; negative generation puts them
    # back, and then the request reaches that resource (a listing, this document), not a key.
    return not (parameters and parameters.get("key") in RESERVED)
