"""Advanced-hunting answers, from either API, as one shape.

The MDE API (``POST /api/advancedqueries/run``) answers ``{"Schema": [{"Name", "Type"}],
"Results": [...]}``; Graph (``POST /security/runHuntingQuery``) answers ``{"schema": [{"name",
"type"}], "results": [...]}``, and one of Graph's own examples capitalises the inner names. Keys
are therefore matched without regard to case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.sources.errors import MalformedResponseError

# The newest DeviceTvmInfoGathering row per device: AdditionalFields carries AvMode and the AV
# versions (https://learn.microsoft.com/defender-xdr/advanced-hunting-devicetvminfogathering-table).
TVM_INFO_GATHERING_QUERY = (
    "DeviceTvmInfoGathering"
    " | summarize arg_max(Timestamp, *) by DeviceId"
    " | project Timestamp, DeviceId, DeviceName, OSPlatform, AdditionalFields"
)

# Documented row cap of an advanced-hunting answer; a full answer may have been cut.
MAX_HUNTING_ROWS = 100_000


@dataclass(frozen=True)
class Column:
    name: str
    type: str


@dataclass(frozen=True)
class HuntingResult:
    columns: tuple[Column, ...]
    rows: list[dict[str, Any]]

    @property
    def possibly_truncated(self) -> bool:
        return len(self.rows) >= MAX_HUNTING_ROWS


def parse_hunting_result(body: Any, endpoint: str) -> HuntingResult:
    """Read a hunting answer in either spelling; raise MalformedResponseError naming the problem."""
    if not isinstance(body, dict):
        raise MalformedResponseError(endpoint, "hunting answer is not a JSON object")
    schema = _get_folded(body, "schema")
    results = _get_folded(body, "results")
    if not isinstance(schema, list):
        raise MalformedResponseError(endpoint, "hunting answer has no schema list")
    if not isinstance(results, list):
        raise MalformedResponseError(endpoint, "hunting answer has no results list")

    columns = []
    for position, entry in enumerate(schema):
        name = _get_folded(entry, "name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            raise MalformedResponseError(endpoint, f"schema[{position}] has no name")
        column_type = _get_folded(entry, "type") if isinstance(entry, dict) else None
        columns.append(Column(name, str(column_type or "")))

    for position, row in enumerate(results):
        if not isinstance(row, dict):
            raise MalformedResponseError(endpoint, f"results[{position}] is not an object")
    return HuntingResult(tuple(columns), results)


def _get_folded(mapping: dict[str, Any], key: str) -> Any:
    for name, value in mapping.items():
        if name.lower() == key:
            return value
    return None
