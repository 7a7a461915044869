"""Fixtures of the deployment tests: the daemon under test comes from tests/daemon."""

from tests.daemon.conftest import start_daemon

__all__ = ["start_daemon"]
