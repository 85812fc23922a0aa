"""Evaluations as rows of the coverage table (``pipeline.tables.COVERAGE``).

A test holds the keys here equal to the table's columns, so the two cannot drift apart.

Pure: the caller passes the cycle id and the time. Each row's ``RowId`` is a stable hash of cycle
and device, so a re-sent row can be recognised and de-duplicated in KQL
(``summarize arg_max(TimeGenerated, *) by RowId``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pipeline.model import DeviceCoverage, Status
from pipeline.sinks.log_analytics import row_id


def coverage_row(coverage: DeviceCoverage, cycle_id: str, at: datetime) -> dict[str, Any]:
    facts = coverage.facts
    row: dict[str, Any] = {
        "TimeGenerated": at.isoformat().replace("+00:00", "Z"),
        "RowId": row_id(cycle_id, facts.device_id),
        "CycleId": cycle_id,
        "DeviceId": facts.device_id,
        "DeviceName": facts.device_name,
        "AadDeviceId": facts.aad_device_id,
        "Platform": facts.platform.value if facts.platform else None,
        "AvModeCode": facts.av_mode_code,
        "AvState": facts.state.value,
        "ModeSource": facts.mode_source.value,
        "ModeReason": facts.mode_reason,
        "AvPlatformVersion": facts.platform_version,
        "AvEngineVersion": facts.engine_version,
        "NetworkProtectionMode": facts.network_protection.value,
        "Capabilities": {k: v.status.value for k, v in coverage.capabilities.items()},
        "Gaps": list(coverage.gaps),
        "GapCount": len(coverage.gaps),
        "UnknownCount": sum(
            1 for v in coverage.capabilities.values() if v.status is Status.UNKNOWN
        ),
        "Findings": [{"code": f.code, "message": f.message} for f in coverage.findings],
        "FindingCodes": [f.code for f in coverage.findings],
        "MatrixVersion": coverage.matrix_version,
    }
    return row
