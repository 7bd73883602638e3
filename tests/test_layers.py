"""The layering the architecture promises: HTTP above Service, one assembly module naming the logs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tuco.assembly import build_service
from tuco.config import load_settings
from tuco.log.file import FileTransactionLog

SRC = Path(__file__).resolve().parents[1] / "src" / "tuco"


def test_nothing_below_the_http_layer_imports_it() -> None:
    """Importing the service, the assembly, the core and the logs loads no tuco.http module."""
    code = (
        "import sys, tuco.service, tuco.assembly, tuco.core.store, tuco.log.file, tuco.log.postgres, tuco.testing\n"
        "print(sorted(name for name in sys.modules if name.startswith('tuco.http')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_the_client_loads_none_of_the_server() -> None:
    """Importing tuco.client loads no server module (HTTP layer, logs, service) and no server-only driver."""
    code = (
        "import sys, tuco.client\n"
        "server = ('tuco.http', 'tuco.log', 'tuco.service', 'tuco.runtime', 'asyncpg', 'uvloop', 'httptools')\n"
        "print(sorted(name for name in sys.modules if name.startswith(server)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_only_the_assembly_module_names_a_concrete_log_outside_the_log_package() -> None:
    """Above tuco.log, FileTransactionLog and PostgresTransactionLog are named in assembly.py (and the fakes) only."""
    naming = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if path.parts[len(SRC.parts)] != "log"
        and ("FileTransactionLog" in path.read_text() or "PostgresTransactionLog" in path.read_text())
    )
    assert naming == ["assembly.py", "testing/_disk.py"]


def test_build_service_wires_the_file_logs_compaction_snapshot_and_the_history_bound(tmp_path: Path) -> None:
    """The file log built from settings compacts from the service's store; the store keeps the configured history."""
    service = build_service(load_settings(data_dir=tmp_path, history_max_bytes=12345))
    log = service.log
    assert isinstance(log, FileTransactionLog)
    assert log.entries == service.store.entries
    assert service.store.history.max_bytes == 12345


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _import_graph() -> dict[str, set[str]]:
    """Each module of src/tuco and the modules of src/tuco it imports, at any depth (under TYPE_CHECKING too).

    An extension module of our own (C, no ``.py``) is a module by its stub, ``.pyi``."""
    modules = {_module_name(path): path for path in [*SRC.rglob("*.py"), *SRC.rglob("*.pyi")]}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        named: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                named.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, *([node.module] if node.module else [])])
                for alias in node.names:  # `from tuco import service` imports a module, `from tuco.x import y` a name
                    named.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        found = set()
        for imported in named:
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                found.add(imported)
        graph[name] = found
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def test_the_cycle_finder_finds_a_cycle_and_nothing_else() -> None:
    """A two-module loop through a third is one cycle; a module importing only downwards is none."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycles_in_the_package_type_checking_imports_included() -> None:
    """No module of src/tuco imports itself through others, counting imports under `if TYPE_CHECKING:` too."""
    cycles = _cycles(_import_graph())
    assert cycles == [], "import cycles:\n" + "\n".join(" <-> ".join(cycle) for cycle in cycles)


def test_no_import_cycles_outside_the_http_layer() -> None:
    """Every cycle left (if any) lies inside tuco.http: the service, its parts and the watchers import downwards."""
    cycles = _cycles(_import_graph())
    assert [cycle for cycle in cycles if not all(m.startswith("tuco.http.") for m in cycle)] == []
    assert "tuco.service" not in _import_graph()["tuco.watchers"]


def _reaches(source: str) -> list[tuple[int, str]]:
    """Where ``source`` reads ``.store`` or ``.log`` of a service (``service.store``, ``self._service.log``...)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute) or node.attr not in ("store", "log"):
            continue
        owner = node.value
        named = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
        if named.lstrip("_").endswith("service"):
            found.append((node.lineno, ast.unparse(node)))
    return sorted(found)


def test_the_reach_finder_sees_a_service_s_store_and_log() -> None:
    """``service.store``, ``self._service.log`` and ``api.service.store`` are reaches; ``self.store`` is not."""
    source = "service.store\nself._service.log.x\napi.service.store.y\nself.store\nservice.find\nlog.store\n"
    assert _reaches(source) == [(1, "service.store"), (2, "self._service.log"), (3, "api.service.store")]


def test_the_http_layer_calls_service_methods_and_never_reaches_into_its_store_or_log() -> None:
    """No module under tuco.http, nor serverless.py, reads ``.store`` or ``.log`` of a service."""
    paths = [*sorted((SRC / "http").rglob("*.py")), SRC / "serverless.py"]
    reaches = [
        f"{path.relative_to(SRC)}:{line}: {reach}" for path in paths for line, reach in _reaches(path.read_text())
    ]
    assert reaches == [], "reaches into the service:\n" + "\n".join(reaches)


def test_nothing_picks_a_read_path_by_the_type_of_the_service_or_its_read_strategy() -> None:
    """No ``isinstance(x, Service | FullCopy | ReadThrough)`` in src/tuco: the strategy is asked, never its type."""
    composed = {"Service", "ReadThroughService", "FullCopy", "ReadThrough", "ReadStrategy"}
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance":
                named = {n.id if isinstance(n, ast.Name) else getattr(n, "attr", "") for n in ast.walk(node.args[1])}
                if named & composed:
                    found.append(f"{path.relative_to(SRC)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []
