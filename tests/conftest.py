"""Fixtures shared by every test directory: the PostgreSQL database, the connection-cutting proxy, the HA rig."""

pytest_plugins = ["tests.fix_db", "tests.fix_proxy", "tests.fix_ha"]
