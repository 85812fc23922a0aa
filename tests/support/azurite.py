"""Azurite fixtures for tests; the process itself is ``pipeline.lab.azurite.AzuriteProcess``.

Fixtures: ``azurite`` (session-scoped, shared by every test module that imports it) and
``private_azurite`` (one instance per test, for tests that stop or restart it). Import them
explicitly into the test module that uses them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.lab.azurite import (
    ACCOUNT_KEY,
    ACCOUNT_NAME,
    AZURITE_BIN,
    AzuriteError,
    AzuriteProcess,
    free_port,
)

__all__ = [
    "ACCOUNT_KEY",
    "ACCOUNT_NAME",
    "AZURITE_BIN",
    "AzuriteError",
    "AzuriteProcess",
    "azurite",
    "free_port",
    "private_azurite",
]


class _SharedAzurite:
    """One Azurite process shared by every user of the ``azurite`` fixture, stopped by the last."""

    def __init__(self) -> None:
        self.process: AzuriteProcess | None = None
        self.users = 0

    def acquire(self) -> AzuriteProcess:
        if self.process is None:
            self.process = AzuriteProcess().start()
        self.users += 1
        return self.process

    def release(self) -> None:
        self.users -= 1
        if self.users == 0 and self.process is not None:
            self.process.close()
            self.process = None


_SHARED = _SharedAzurite()


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuriteProcess]:
    """One in-memory Azurite for the whole session. Do not stop it; use ``private_azurite``."""
    # Each test module that imports this fixture gets its own session-scoped instance of it;
    # counting users makes them all share a single Azurite process.
    process = _SHARED.acquire()
    try:
        yield process
    finally:
        _SHARED.release()


@pytest.fixture
def private_azurite() -> Iterator[AzuriteProcess]:
    """An Azurite of this test's own (persistent across ``restart()``), free to stop and start."""
    with AzuriteProcess(persistent=True) as process:
        yield process
