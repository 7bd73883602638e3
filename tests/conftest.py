"""Fixtures shared by every test directory: the PostgreSQL database and the connection-cutting proxy."""

pytest_plugins = ["tests.fix_db", "tests.fix_proxy"]
