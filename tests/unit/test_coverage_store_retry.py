"""A coverage-store transaction whose connection broke is sent again; other errors are not."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ServiceResponseError

from pipeline.coverage_store import CoverageStore, CoverageStoreError


class FlakyTable:
    """Stands in for a TableClient: the first ``failures`` transactions raise ``error``."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.transactions: list[list[Any]] = []

    def create_table(self) -> None:
        return None

    def submit_transaction(self, operations: list[Any]) -> None:
        self.transactions.append(operations)
        if len(self.transactions) <= self.failures:
            raise self.error


# One device: one partition, so one transaction per attempt.
ROWS = [{"DeviceId": "dev-0", "TimeGenerated": "2026-12-03T12:00:00Z"}]


def test_a_broken_connection_is_retried_and_the_batch_lands_once() -> None:
    table = FlakyTable(failures=1, error=ServiceResponseError("Connection reset by peer"))
    assert CoverageStore(table).save_rows(ROWS) == 1  # type: ignore[arg-type]
    assert len(table.transactions) == 2
    assert table.transactions[0] == table.transactions[1]


def test_a_connection_that_keeps_breaking_fails_naming_the_partition() -> None:
    table = FlakyTable(failures=99, error=ServiceResponseError("Connection reset by peer"))
    with pytest.raises(CoverageStoreError, match="partition d"):
        CoverageStore(table).save_rows(ROWS)  # type: ignore[arg-type]


def test_a_refused_transaction_is_not_retried() -> None:
    table = FlakyTable(failures=1, error=HttpResponseError("400 InvalidInput"))
    with pytest.raises(CoverageStoreError):
        CoverageStore(table).save_rows(ROWS)  # type: ignore[arg-type]
    assert len(table.transactions) == 1
