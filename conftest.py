"""Fixtures both test trees share: the real servers the project's own scripts start (sweeper/tests/servers.py)."""

pytest_plugins = ["sweeper.tests.servers"]
