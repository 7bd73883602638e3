from __future__ import annotations

import inspect
from pathlib import Path
from types import ModuleType

import pytest

import tuco
import tuco.client
import tuco.core
import tuco.errors
import tuco.http
import tuco.log
import tuco.testing

PUBLIC_MODULES = [tuco, tuco.client, tuco.core, tuco.log, tuco.errors, tuco.http, tuco.testing]


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda module: module.__name__)
def test_every_exported_name_exists(module: ModuleType) -> None:
    """Every name a public module lists in __all__ is importable from it, and listed once."""
    names = module.__all__
    assert names, module.__name__
    assert len(names) == len(set(names))
    missing = [name for name in names if not hasattr(module, name)]
    assert missing == []


def error_classes() -> list[type[BaseException]]:
    return [
        member
        for _, member in inspect.getmembers(tuco.errors, inspect.isclass)
        if issubclass(member, BaseException) and member.__module__ == tuco.errors.__name__
    ]


def code_of(cls: type[BaseException]) -> object:
    return getattr(cls, "code", None)


def test_every_error_class_is_exported() -> None:
    """Every exception defined in tuco.errors is in its __all__ and re-exported from tuco."""
    names = sorted(cls.__name__ for cls in error_classes())
    assert names == sorted(tuco.errors.__all__)
    assert set(names) <= set(tuco.__all__)


def test_every_error_has_a_distinct_code_and_the_common_root() -> None:
    """Each error class subclasses TucoError and has its own non-empty machine-readable code."""
    classes = error_classes()
    for cls in classes:
        assert issubclass(cls, tuco.errors.TucoError), cls
        assert isinstance(code_of(cls), str), cls
        assert code_of(cls), cls
        assert "code" in vars(cls), f"{cls.__name__} inherits its code"
    codes = [code_of(cls) for cls in classes]
    assert len(codes) == len(set(codes))


def test_no_such_key_error_is_also_a_key_error() -> None:
    """NoSuchKeyError is the one callers test for, and code that catches KeyError still works."""
    assert issubclass(tuco.NoSuchKeyError, KeyError)
    assert issubclass(tuco.NoSuchKeyError, tuco.TucoError)


def test_the_version_has_one_source_and_the_package_is_typed() -> None:
    """The installed metadata's version is tuco.__version__ (pyproject reads it), and py.typed ships in the package."""
    import importlib.metadata
    import importlib.resources

    assert importlib.metadata.version("tuco") == tuco.__version__
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and "\nversion =" not in pyproject
    assert importlib.resources.files("tuco").joinpath("py.typed").is_file()
