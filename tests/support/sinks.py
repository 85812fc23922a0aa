"""Fixtures for the sinks' tests: a token credential that needs no network, the local ingestion
endpoint, and rows for the custom tables."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken, AccessTokenInfo

from pipeline.lab.ingestion import IngestionServer
from pipeline.sinks.log_analytics import row_id

LOCAL_TOKEN = "local-test-token"


class StaticTokenCredential:
    """An azure-core TokenCredential handing out a fixed token, as the local endpoint needs."""

    def __init__(self, token: str = LOCAL_TOKEN) -> None:
        self.token = token
        self.requests = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.requests += 1
        return AccessToken(self.token, int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        self.requests += 1
        return AccessTokenInfo(self.token, int(time.time()) + 3600)


@pytest.fixture
def ingestion_server(tmp_path: Path) -> Iterator[IngestionServer]:
    """The local Logs Ingestion endpoint, writing into this test's temporary directory."""
    server = IngestionServer(tmp_path / "ingested")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def coverage_row(cycle_id: str, index: int, **overrides: Any) -> dict[str, Any]:
    """A valid MdeAvCoverage_CL row for device ``index`` of ``cycle_id``."""
    device_id = f"device-{index:06d}"
    row: dict[str, Any] = {
        "TimeGenerated": datetime(2026, 12, 3, 12, 0, tzinfo=UTC) + timedelta(seconds=index),
        "RowId": row_id(cycle_id, device_id),
        "CycleId": cycle_id,
        "DeviceId": device_id,
        "DeviceName": f"host{index}.contoso.example",
        "Platform": "windows_client",
        "AvModeCode": "1",
        "AvState": "passive",
        "ModeSource": "deviceavinfo",
        "ModeReason": "avMode 1 in the device AV health export",
        "NetworkProtectionMode": "block",
        "Capabilities": {"network_indicators": "not_enforced", "edr_block": "enforced"},
        "Gaps": ["network_indicators"],
        "GapCount": 1,
        "UnknownCount": 0,
        "Findings": [{"code": "passive_indicators", "message": "indicators do not enforce"}],
        "FindingCodes": ["passive_indicators"],
        "MatrixVersion": "2026.12",
    }
    row.update(overrides)
    return row
