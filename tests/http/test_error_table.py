"""Every error answer is built from an error class: no literal status answer outside the error table."""

from __future__ import annotations

import ast
from pathlib import Path

import tuco

_SRC = Path(tuco.__file__).parent
_TABLE = {_SRC / "errors.py", *_SRC.glob("_errors_*.py"), _SRC / "http" / "answers.py"}
_BUILDERS = {"Response", "StreamResponse", "json_response", "error_response"}


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _literal_statuses(node: ast.expr) -> list[int]:
    """The integer literals a status argument may evaluate to (``503``, ``200 if ok else 503``)."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _literal_statuses(node.body) + _literal_statuses(node.orelse)
    return []


def _offences(path: Path) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        if name not in _BUILDERS:
            continue
        if name == "error_response":
            found.append(f"{path.relative_to(_SRC)}:{node.lineno}: error_response() outside the error table")
            continue
        status = node.args[0] if node.args else None
        if status is not None and any(value >= 400 for value in _literal_statuses(status)):
            found.append(f"{path.relative_to(_SRC)}:{node.lineno}: a literal error status in {name}()")
    return found


def test_no_literal_error_answer_outside_the_error_table() -> None:
    """An answer with status 400 or more is built only in errors.py / answers.py, from an error class."""
    offences = [line for path in sorted(_SRC.rglob("*.py")) if path not in _TABLE for line in _offences(path)]
    assert offences == []


def test_the_scan_finds_a_literal_answer(tmp_path: Path) -> None:
    """The scan itself catches a literal 404 answer and a conditional 503 (so an empty result means something)."""
    path = tmp_path / "bad.py"
    path.write_text("x = Response(404, b'', None)\ny = json_response(200 if ok else 503, {})\n")
    tree_offences = [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and _name(node.func) in _BUILDERS
        and any(value >= 400 for value in _literal_statuses(node.args[0]))
    ]
    assert tree_offences == [1, 2]
