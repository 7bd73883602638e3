"""The OpenAPI document stays true: to the routes, to the copy in the repository, and as served."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import httpx

import tuco.http
from tests.http.test_api import run_against
from tuco.errors import ForbiddenError, UnauthorizedError
from tuco.http._route import Target
from tuco.http._schema import COMMON
from tuco.http.openapi import document, document_bytes
from tuco.http.routes import ROUTES
from tuco.service import Service

ROOT = Path(__file__).resolve().parents[2]


def test_every_route_and_method_is_described_and_nothing_else() -> None:
    """Each route's path has exactly its methods as operations; no operation names a path tuco does not route."""
    paths = document()["paths"]
    routed = {route.pattern: sorted(m.decode().lower() for m in route.methods) for route in ROUTES if route.handler}
    described = {path: sorted(key for key in item if key != "parameters") for path, item in paths.items()}
    assert described == routed


def test_every_operation_of_the_route_table_is_rendered_from_its_declaration() -> None:
    """Each route/method of ROUTES is one operation of the document with the declared id, summary and parameters."""
    paths = document()["paths"]
    rendered = {(path, method) for path, item in paths.items() for method in item if method != "parameters"}
    declared = {(route.pattern, method.decode().lower()) for route in ROUTES for method in route.operations}
    assert rendered == declared
    for route in ROUTES:
        assert paths[route.pattern].get("parameters", []) == list(route.parameters)
        for method, operation in route.operations.items():
            rendered_operation = paths[route.pattern][method.decode().lower()]
            assert rendered_operation["operationId"] == operation.operation_id
            assert rendered_operation["summary"] == operation.summary
            assert rendered_operation.get("parameters", []) == list(operation.parameters)
            assert rendered_operation.get("requestBody") == operation.body


def test_error_statuses_are_derived_from_the_declared_error_classes() -> None:
    """An operation answers exactly its declared answers, its error classes' statuses (each code named) and the
    shared ones; 401 and 403 only where the guard checks a credential."""
    paths = document()["paths"]
    for route in ROUTES:
        for method, operation in route.operations.items():
            responses = paths[route.pattern][method.decode().lower()]["responses"]
            guard = {
                Target.PUBLIC: set(),
                Target.AUTHENTICATED: {UnauthorizedError},
            }.get(operation.target, {UnauthorizedError, ForbiddenError})
            common = {
                str(c.error.status)
                for c in COMMON
                if c.error in guard or c.error not in (UnauthorizedError, ForbiddenError)
            }
            own = {str(fails.error.status) for fails in operation.errors}
            assert set(responses) == common | own | set(operation.answers), (route.pattern, method)
            for fails in operation.errors:
                assert fails.error.code in responses[str(fails.error.status)]["description"], (route.pattern, method)


def test_no_status_is_typed_in_the_document_modules() -> None:
    """openapi.py and _schema.py type no status ("404", or 404): each comes from an error class or the route table."""
    for name in ("openapi.py", "_schema.py"):
        path = Path(tuco.http.__file__).parent / name
        constants = [node.value for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Constant)]
        literals = [
            value
            for value in constants
            if (isinstance(value, str) and len(value) == 3 and value.isdigit() and "100" <= value <= "599")
            or (type(value) is int and 400 <= value <= 599)  # an error status as a number
        ]
        assert literals == [], (name, literals)


def test_every_operation_documents_its_statuses_and_errors_are_json() -> None:
    """Every operation has a unique id and the statuses any request can get; every 4xx/5xx is an Error body."""
    doc = document()
    ids = [op["operationId"] for item in doc["paths"].values() for key, op in item.items() if key != "parameters"]
    assert len(ids) == len(set(ids))
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            responses = operation["responses"]
            assert {"400", "408", "413", "414", "431", "503"} <= set(responses), (path, method)
            assert any(status.startswith("2") for status in responses), (path, method)


def test_the_repository_copy_is_the_generated_document() -> None:
    """openapi.json in the repository is byte for byte what the code builds (regenerate with python -m)."""
    assert (ROOT / "openapi.json").read_bytes() == document_bytes()
    assert json.loads(document_bytes())["openapi"] == "3.1.0"


def test_the_document_is_served_at_v1_openapi_json() -> None:
    """GET /v1/openapi.json answers the document as JSON; HEAD its headers only; POST is 405 with Allow."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        got = await client.get("/v1/openapi.json")
        assert (got.status_code, got.headers["content-type"], got.content) == (
            200,
            "application/json",
            document_bytes(),
        )
        head = await client.head("/v1/openapi.json")
        assert (head.status_code, head.content, head.headers["content-length"]) == (
            200,
            b"",
            str(len(document_bytes())),
        )
        refused = await client.post("/v1/openapi.json")
        assert (refused.status_code, refused.headers["allow"]) == (405, "GET, HEAD")

    run_against(check)
