"""Structural checks of ``endpoint-av-state/1`` documents sent by the endpoint collector.

The collector (``collector/Collect-DefenderAvState.ps1``) copies Defender's cmdlet output
verbatim. Windows PowerShell's ``ConvertTo-Json`` writes enumerations as numbers, while
PowerShell 7 with ``-EnumsAsStrings`` and many EDR consoles write their names, so both are
accepted. This module only checks shape (schema tag, required keys, types, size); what the values
mean is the evaluator's business. It never raises on a bad document: it returns the problems.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

COLLECTOR_SCHEMA = "endpoint-av-state/1"
MAX_DOCUMENT_BYTES = 256 * 1024  # a real document is 5-15 KB; anything far larger is not one

_DEVICE_FIELDS: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "mdeDeviceId": (str, type(None)),
    "osCaption": (str,),
    "osVersion": (str,),
    "productType": (str,),
    "onboarded": (bool,),
}

# Get-MpComputerStatus properties the evaluator reads, with the JSON types the cmdlet produces.
_STATUS_BOOLEANS = (
    "AMServiceEnabled",
    "AntispywareEnabled",
    "AntivirusEnabled",
    "BehaviorMonitorEnabled",
    "IoavProtectionEnabled",
    "IsTamperProtected",
    "NISEnabled",
    "OnAccessProtectionEnabled",
    "RealTimeProtectionEnabled",
)
_STATUS_STRINGS = ("AMRunningMode", "AMProductVersion", "AMEngineVersion", "AMServiceVersion")

# Get-MpPreference byte-valued settings: number, or the name a console shows for it.
_PREFERENCE_ENUMS: dict[str, tuple[range, frozenset[str]]] = {
    "EnableNetworkProtection": (range(3), frozenset({"Disabled", "Enabled", "AuditMode"})),
    "MAPSReporting": (range(3), frozenset({"Disabled", "Basic", "Advanced"})),
    "PUAProtection": (range(3), frozenset({"Disabled", "Enabled", "AuditMode"})),
    "EnableControlledFolderAccess": (
        range(7),
        frozenset({"Disabled", "Enabled", "AuditMode", "BlockDiskModificationOnly"}),
    ),
}
_PREFERENCE_BOOLEANS = ("DisableRealtimeMonitoring", "DisableBehaviorMonitoring")

_REGISTRY_VALUES = (
    "ForceDefenderPassiveMode",
    "ForcePassiveMode",
    "PassiveRemediation",
    "AllowNetworkProtectionOnWinServer",
    "AllowNetworkProtectionDownLevel",
)
_SERVICES = ("WinDefend", "WdNisDrv", "Sense", "wscsvc")
# System.ServiceProcess.ServiceControllerStatus, which Windows PowerShell serialises as a number.
_SERVICE_STATES = {
    1: "Stopped",
    2: "StartPending",
    3: "StopPending",
    4: "Running",
    5: "ContinuePending",
    6: "PausePending",
    7: "Paused",
}
_SERVICE_NAMES = frozenset(_SERVICE_STATES.values()) | {"Disabled"}


def validate_collector_document(document: Any, size: int | None = None) -> list[str]:
    """Return the document's structural problems; an empty list means it is well formed."""
    if size is not None and size > MAX_DOCUMENT_BYTES:
        return [f"document is {size} bytes, more than {MAX_DOCUMENT_BYTES}"]
    if not isinstance(document, dict):
        return [f"document is a JSON {type(document).__name__}, not an object"]

    problems: list[str] = []
    if document.get("schema") != COLLECTOR_SCHEMA:
        problems.append(f"schema: expected {COLLECTOR_SCHEMA!r}, got {document.get('schema')!r}")
    if not _is_iso_time(document.get("collectedAt")):
        problems.append(f"collectedAt: not an ISO 8601 time: {document.get('collectedAt')!r}")

    problems += _check_device(document.get("device"))
    problems += _check_status(document.get("mpComputerStatus"))
    problems += _check_preference(document.get("mpPreference"))
    problems += _check_flat(document.get("registry"), "registry", _REGISTRY_VALUES, _is_dword)
    problems += _check_flat(document.get("services"), "services", _SERVICES, _is_service_state)
    problems += _check_third_party(document.get("thirdPartyAv"))
    return problems


def read_collector_documents(directory: Path) -> Iterator[tuple[str, Any, list[str]]]:
    """Yield (file name, document or None, problems) for each ``*.json`` file, sorted by name."""
    for path in sorted(Path(directory).glob("*.json")):
        size = path.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            yield path.name, None, [f"file is {size} bytes, more than {MAX_DOCUMENT_BYTES}"]
            continue
        try:
            document = json.loads(_decode(path.read_bytes()))
        except (UnicodeDecodeError, ValueError) as exc:
            yield path.name, None, [f"not JSON: {exc}"]
            continue
        yield path.name, document, validate_collector_document(document, size)


def _decode(raw: bytes) -> str:
    # Windows PowerShell 5.1 writes UTF-8 with a byte-order mark (Out-File -Encoding utf8) or
    # UTF-16 LE (Out-File's default); both are normal for files a script left behind.
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    return raw.decode("utf-8-sig")


def _check_device(device: Any) -> list[str]:
    if not isinstance(device, dict):
        return ["device: missing or not an object"]
    problems = []
    for name, types in _DEVICE_FIELDS.items():
        if name not in device:
            problems.append(f"device.{name}: missing")
        elif not isinstance(device[name], types):
            problems.append(f"device.{name}: expected {_names(types)}, got {device[name]!r}")
    if device.get("productType") not in (None, "client", "server"):
        problems.append(
            f"device.productType: expected client or server, got {device['productType']!r}"
        )
    if isinstance(device.get("name"), str) and not device["name"].strip():
        problems.append("device.name: empty")
    return problems


def _check_status(status: Any) -> list[str]:
    # null: Get-MpComputerStatus failed, which happens when Defender Antivirus is uninstalled.
    if status is None:
        return []
    if not isinstance(status, dict):
        return ["mpComputerStatus: not an object or null"]
    problems = []
    for name in _STATUS_BOOLEANS:
        if name in status and not isinstance(status[name], bool | type(None)):
            problems.append(f"mpComputerStatus.{name}: expected true/false, got {status[name]!r}")
    for name in _STATUS_STRINGS:
        if name in status and not isinstance(status[name], str | type(None)):
            problems.append(f"mpComputerStatus.{name}: expected a string, got {status[name]!r}")
    if "AMRunningMode" not in status:
        problems.append("mpComputerStatus.AMRunningMode: missing")
    return problems


def _check_preference(preference: Any) -> list[str]:
    if preference is None:
        return []
    if not isinstance(preference, dict):
        return ["mpPreference: not an object or null"]
    problems = []
    for name, (numbers, words) in _PREFERENCE_ENUMS.items():
        value = preference.get(name)
        if value is None or (isinstance(value, str) and value in words):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value not in numbers:
            expected = f"{numbers.start}-{numbers.stop - 1} or one of {sorted(words)}"
            problems.append(f"mpPreference.{name}: expected {expected}, got {value!r}")
    for name in _PREFERENCE_BOOLEANS:
        if name in preference and not isinstance(preference[name], bool | type(None)):
            problems.append(f"mpPreference.{name}: expected true/false, got {preference[name]!r}")

    ids = _as_list(preference.get("AttackSurfaceReductionRules_Ids"))
    actions = _as_list(preference.get("AttackSurfaceReductionRules_Actions"))
    if not all(isinstance(rule, str) for rule in ids):
        problems.append("mpPreference.AttackSurfaceReductionRules_Ids: not a list of strings")
    if not all(isinstance(action, int | str) for action in actions):
        problems.append("mpPreference.AttackSurfaceReductionRules_Actions: not numbers or names")
    if len(ids) != len(actions):
        problems.append(
            f"mpPreference: {len(ids)} ASR rule ids but {len(actions)} ASR rule actions"
        )
    return problems


def _check_flat(section: Any, label: str, names: tuple[str, ...], valid: Any) -> list[str]:
    if not isinstance(section, dict):
        return [f"{label}: missing or not an object"]
    problems = []
    for name in names:
        if name not in section:
            problems.append(f"{label}.{name}: missing (use null when absent)")
        elif section[name] is not None and not valid(section[name]):
            problems.append(f"{label}.{name}: unexpected value {section[name]!r}")
    return problems


def _check_third_party(products: Any) -> list[str]:
    if products is None:
        return []  # root/SecurityCenter2 does not exist on Windows Server
    items = _as_list(products)
    problems = []
    for position, product in enumerate(items):
        if not isinstance(product, dict) or not isinstance(product.get("displayName"), str):
            problems.append(f"thirdPartyAv[{position}]: needs a displayName string")
        elif not isinstance(product.get("productState"), int | str | type(None)):
            problems.append(f"thirdPartyAv[{position}].productState: not a number")
    return problems


def _as_list(value: Any) -> list[Any]:
    # A PowerShell variable filled from a pipeline holds the bare item when one came back and
    # $null when none did, and ConvertTo-Json writes exactly that.
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _is_dword(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFFFFFFFF


def _is_service_state(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return value in _SERVICE_STATES if isinstance(value, int) else value in _SERVICE_NAMES


def _is_iso_time(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _names(types: tuple[type, ...]) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)
