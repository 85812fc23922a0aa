"""Each device's current Defender Antivirus mode, as the streaming detector needs it.

The cache is filled from the latest evaluation (``MdeAvCoverage_CL`` rows, or
``DeviceCoverage`` objects straight from the evaluator) and kept current by endpoint collector
documents as they arrive. For each device it keeps the newest statement only: a row or document
older than what the cache holds does not replace it.

A device is *reported* when its code is one whose Defender Antivirus cannot enforce network
indicators: ``1`` passive, ``2`` disabled, ``4`` EDR in block mode, ``5`` passive audit
(https://learn.microsoft.com/defender-endpoint/edr-in-block-mode). Active devices (``0``) are
not: their network protection blocks. Codes ``3`` and empty (not running, unknown) are not
reported either, as in the Sentinel rule.

A device the cache has never heard of is the open question. By default it is reported with an
empty code and the state ``unknown`` rather than dropped: an attacker's freshly onboarded machine
is exactly what the last evaluation did not see. ``unknown_devices="ignore"`` drops them, which
is what the Sentinel rule does (its join needs a coverage row).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pipeline.inputs import facts_from_collector
from pipeline.model import DeviceCoverage, DeviceFacts, RejectedRecord, State
from pipeline.modes import STATE_CODES

__all__ = [
    "NON_ENFORCING_CODES",
    "UNKNOWN_DEVICE_POLICIES",
    "DeviceMode",
    "ModesCache",
    "UnknownDevicePolicy",
]

NON_ENFORCING_CODES: Final = frozenset({"1", "2", "4", "5"})
UnknownDevicePolicy = Literal["report", "ignore"]
UNKNOWN_DEVICE_POLICIES: Final[tuple[UnknownDevicePolicy, ...]] = ("report", "ignore")
UNKNOWN_STATE: Final = "unknown"

_EARLIEST: Final = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class DeviceMode:
    device_id: str
    device_name: str
    av_mode_code: str  # Microsoft's numeric code; "" when not known
    av_state: str  # the pipeline's state name, or "unknown"
    as_of: datetime | None  # when the evaluation or the collector said so
    source: str  # coverage, evaluation, collector, or unknown

    @property
    def reported(self) -> bool:
        return self.av_mode_code in NON_ENFORCING_CODES


class ModesCache:
    """Device id → newest known mode, with the set of devices to report precomputed."""

    def __init__(self, unknown_devices: UnknownDevicePolicy = "report") -> None:
        if unknown_devices not in UNKNOWN_DEVICE_POLICIES:
            raise ValueError(
                f"unknown_devices must be one of {', '.join(UNKNOWN_DEVICE_POLICIES)}, "
                f"got {unknown_devices!r}"
            )
        self.unknown_devices: UnknownDevicePolicy = unknown_devices
        self._modes: dict[str, DeviceMode] = {}
        self._reported: dict[str, DeviceMode] = {}
        # Every known device → its mode when reported, None when not: the streaming detector
        # settles a known device with this one lookup, where ``mode_to_report`` needs two.
        self._decisions: dict[str, DeviceMode | None] = {}

    def __len__(self) -> int:
        return len(self._modes)

    def get(self, device_id: str) -> DeviceMode | None:
        """What the cache knows of a device (None when nothing)."""
        return self._modes.get(device_id)

    @property
    def reported(self) -> Mapping[str, DeviceMode]:
        """The known devices that are reported (a live view; do not modify)."""
        return self._reported

    @property
    def decisions(self) -> Mapping[str, DeviceMode | None]:
        """Known device → its mode when reported, else None (a live view; do not modify).

        A device missing from it is unknown: ``mode_to_report`` applies the policy for those.
        """
        return self._decisions

    def mode_to_report(self, device_id: str) -> DeviceMode | None:
        """The mode to put on a detection for this device, or None when it is not reported."""
        mode = self._reported.get(device_id)
        if mode is not None or device_id in self._modes:
            return mode
        if self.unknown_devices == "ignore":
            return None
        return DeviceMode(device_id, "", "", UNKNOWN_STATE, None, "unknown")

    # -- filling ---------------------------------------------------------------------------------

    def load_coverage_rows(self, rows: Iterable[Mapping[str, Any]]) -> list[RejectedRecord]:
        """Take ``MdeAvCoverage_CL`` rows (any number per device; the newest wins)."""
        rejected: list[RejectedRecord] = []
        for position, row in enumerate(rows):
            where = f"coverage row {position}"
            device_id = row.get("DeviceId")
            if not isinstance(device_id, str) or not device_id:
                rejected.append(RejectedRecord(where, None, "DeviceId", "missing or not text"))
                continue
            at = _time(row.get("TimeGenerated"))
            if at is None:
                rejected.append(
                    RejectedRecord(where, device_id, "TimeGenerated", "not an ISO 8601 time")
                )
                continue
            code = row.get("AvModeCode")
            state = row.get("AvState")
            name = row.get("DeviceName")
            self.put(
                DeviceMode(
                    device_id,
                    name if isinstance(name, str) else "",
                    code if isinstance(code, str) else "",
                    state if isinstance(state, str) and state else UNKNOWN_STATE,
                    at,
                    "coverage",
                )
            )
        return rejected

    def load_state_names(self, states: Mapping[str, Any], at: datetime) -> list[RejectedRecord]:
        """Take ``{device id: state name}`` (the cycle's record of the modes it evaluated)."""
        rejected: list[RejectedRecord] = []
        for device_id, name in states.items():
            try:
                state = State(name)
            except ValueError:
                rejected.append(
                    RejectedRecord("device modes", device_id, "state", f"unknown state {name!r}")
                )
                continue
            code = STATE_CODES.get(state, "")
            self.put(DeviceMode(device_id, "", code, state.value, at, "cycle"))
        return rejected

    def load_coverages(self, coverages: Iterable[DeviceCoverage], at: datetime) -> None:
        """Take the evaluator's answers, all made at ``at``."""
        for coverage in coverages:
            self.put(_mode_of(coverage.facts, at, "evaluation"))

    def update_from_collector(self, document: Any, where: str) -> DeviceMode | RejectedRecord:
        """Take one endpoint collector document; returns the device's mode or why it was refused."""
        facts = facts_from_collector(document, where)
        if isinstance(facts, RejectedRecord):
            return facts
        at = _time(document.get("collectedAt"))
        if at is None:
            return RejectedRecord(where, facts.device_id, "collectedAt", "not an ISO 8601 time")
        mode = _mode_of(facts, at, "collector")
        self.put(mode)
        return self._modes[facts.device_id]

    def put(self, mode: DeviceMode) -> None:
        """Keep ``mode`` unless the cache already holds a newer statement for the device."""
        current = self._modes.get(mode.device_id)
        if current is not None and (current.as_of or _EARLIEST) > (mode.as_of or _EARLIEST):
            return
        self._modes[mode.device_id] = mode
        if mode.reported:
            self._reported[mode.device_id] = mode
            self._decisions[mode.device_id] = mode
        else:
            self._reported.pop(mode.device_id, None)
            self._decisions[mode.device_id] = None


def _mode_of(facts: DeviceFacts, at: datetime, source: str) -> DeviceMode:
    code = facts.av_mode_code if facts.av_mode_code is not None else STATE_CODES.get(facts.state)
    return DeviceMode(facts.device_id, facts.device_name, code or "", facts.state.value, at, source)


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
