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
_TVM_TABLE = "DeviceTvmInfoGathering"
_TVM_LATEST = (
    " | summarize arg_max(Timestamp, *) by DeviceId"
    " | project Timestamp, DeviceId, DeviceName, OSPlatform, AdditionalFields"
)
TVM_INFO_GATHERING_QUERY = _TVM_TABLE + _TVM_LATEST

# Documented row cap of an advanced-hunting answer; a full answer may have been cut.
MAX_HUNTING_ROWS = 100_000

_HEX_DIGITS = "0123456789abcdef"
# A split prefix is at most this long: 16 ** 2 parts of 100,000 rows hold 25.6 million devices.
MAX_SPLIT_DEPTH = 2


@dataclass(frozen=True)
class DevicePart:
    """The devices whose DeviceId starts with ``prefix``, or, with ``rest``, those that start
    with ``prefix`` but not with ``prefix`` and one more hex digit.

    MDE device ids are 40 hex digits, so a prefix's sixteen one-digit-longer parts hold all of
    its devices; the ``rest`` part is there so that an id of any other shape is still read once.
    ``startswith`` ignores case, as hex digits may come in either.
    """

    prefix: str = ""
    rest: bool = False

    def __post_init__(self) -> None:
        if any(c not in _HEX_DIGITS for c in self.prefix):
            raise ValueError(f"a device-id prefix is lower-case hex digits, not {self.prefix!r}")

    @property
    def splittable(self) -> bool:
        return not self.rest and len(self.prefix) < MAX_SPLIT_DEPTH

    def split(self) -> list[DevicePart]:
        """Seventeen disjoint parts that together hold exactly this part's devices."""
        if not self.splittable:
            raise ValueError(f"{self.label} cannot be split further")
        return [DevicePart(self.prefix + digit) for digit in _HEX_DIGITS] + [
            DevicePart(self.prefix, rest=True)
        ]

    @property
    def label(self) -> str:
        if self.rest:
            return f"DeviceId {self.prefix or ''}<not hex>…"
        return f"DeviceId {self.prefix}…" if self.prefix else "all devices"

    def matches(self, device_id: str) -> bool:
        """The same test the KQL filter makes, for the lab and the tests."""
        lowered = device_id.lower()
        if not lowered.startswith(self.prefix):
            return False
        if not self.rest:
            return True
        following = lowered[len(self.prefix) : len(self.prefix) + 1]
        return following == "" or following not in _HEX_DIGITS

    def kql_filter(self) -> str:
        """The ``where`` clause selecting this part, or "" for all devices."""
        if self.rest:
            pattern = "^" + "." * len(self.prefix) + "[0-9a-fA-F]"
            condition = f'not(DeviceId matches regex "{pattern}")'
            if self.prefix:
                condition = f'DeviceId startswith "{self.prefix}" and {condition}'
            return f" | where {condition}"
        return f' | where DeviceId startswith "{self.prefix}"' if self.prefix else ""


def tvm_info_gathering_query(part: DevicePart | None = None) -> str:
    """The newest DeviceTvmInfoGathering row of each device in ``part`` (all by default)."""
    return _TVM_TABLE + (part.kql_filter() if part else "") + _TVM_LATEST


@dataclass(frozen=True)
class Column:
    name: str
    type: str


@dataclass(frozen=True)
class HuntingResult:
    columns: tuple[Column, ...]
    rows: list[dict[str, Any]]

    def possibly_truncated(self, row_cap: int = MAX_HUNTING_ROWS) -> bool:
        """An answer with as many rows as the cap may have been cut; hunting does not say."""
        return len(self.rows) >= row_cap


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
