"""Each source's way of saying the Defender Antivirus mode, decoded into one :class:`State`.

Three sources say it differently:

* the MDE AV health export (``GET /api/deviceavinfo``) and advanced hunting's
  ``DeviceTvmInfoGathering.AdditionalFields.AvMode`` use numeric strings ("0" to "5", or "");
* the endpoint collector carries ``Get-MpComputerStatus``'s ``AMRunningMode`` words.

Every decode returns the state together with a sentence saying why, and keeps the raw value.
Nothing here raises on bad data: an unreadable value becomes ``State.OTHER`` with the reason.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from pipeline.model import NetworkProtection, Platform, State

# Microsoft's AV health API property table. Values are strings; "" and "3" both mean "other".
AV_MODE_CODES: dict[str, State] = {
    "0": State.ACTIVE,
    "1": State.PASSIVE,
    "2": State.DISABLED,
    "3": State.OTHER,
    "": State.OTHER,
    "4": State.EDR_BLOCK,
    "5": State.PASSIVE_AUDIT,
}
_CODE_MEANING = {
    "0": "Active",
    "1": "Passive",
    "2": "Disabled (uninstalled, disabled, or side-by-side passive)",
    "3": "Other (not running or unknown)",
    "": "Other (empty code)",
    "4": "EDRBlocked",
    "5": "PassiveAudit (meaning not documented by Microsoft)",
}
# The code each state is reported as, so rows from the collector carry a comparable code too.
STATE_CODES: dict[State, str] = {
    State.ACTIVE: "0",
    State.PASSIVE: "1",
    State.DISABLED: "2",
    State.LIMITED_PERIODIC_SCANNING: "2",  # the AV health report folds SxS passive into code 2
    State.OTHER: "3",
    State.EDR_BLOCK: "4",
    State.PASSIVE_AUDIT: "5",
}

# AMRunningMode spellings. Microsoft's pages write both "Passive" and "Passive Mode"; "Not
# running" is what devices show in the field when another antivirus replaced Defender.
_RUNNING_MODES: dict[str, State] = {
    "normal": State.ACTIVE,
    "passive": State.PASSIVE,
    "passive mode": State.PASSIVE,
    "edr block mode": State.EDR_BLOCK,
    "sxs passive mode": State.LIMITED_PERIODIC_SCANNING,
    "not running": State.DISABLED,
}

_DEFENDER_PRODUCT_NAMES = ("windows defender", "microsoft defender")


def decode_av_mode(value: Any) -> tuple[State, str, str | None]:
    """Decode an ``avMode`` / ``AvMode`` value: (state, reason, code or None if unreadable)."""
    if isinstance(value, str):
        code = value.strip()
        if code in AV_MODE_CODES:
            return AV_MODE_CODES[code], f"avMode {code!r} = {_CODE_MEANING[code]}", code
        if code.isdigit():
            return State.OTHER, f"avMode {code!r} is not a code Microsoft documents", code
        return (
            State.OTHER,
            f"avMode {code!r} is not a numeric code; Microsoft reports modes as '0'..'5'",
            None,
        )
    if value is None:
        return State.OTHER, "avMode is missing", None
    return State.OTHER, f"avMode must be a string code, got {type(value).__name__}", None


def decode_running_mode(value: Any, onboarded: bool | None) -> tuple[State, str]:
    """Decode ``Get-MpComputerStatus.AMRunningMode`` for a device known to be onboarded or not."""
    if not isinstance(value, str) or not value.strip():
        return State.OTHER, f"AMRunningMode is missing or not text ({value!r})"
    key = " ".join(value.split()).lower()
    state = _RUNNING_MODES.get(key)
    if state is None:
        return State.OTHER, f"AMRunningMode {value!r} is not a known running mode"
    if state is State.DISABLED and onboarded is False:
        return (
            State.NOT_ONBOARDED,
            f"AMRunningMode {value!r} on a device that is not onboarded to Defender for Endpoint",
        )
    return state, f"AMRunningMode {value!r}"


def platform_from_os(os_kind: Any, os_platform: Any) -> Platform | None:
    """Platform from MDE's ``osKind`` / ``osPlatform`` (or hunting's ``OSPlatform``)."""
    kind = os_kind.lower() if isinstance(os_kind, str) else ""
    name = os_platform.replace(" ", "").lower() if isinstance(os_platform, str) else ""
    if kind in ("mac", "macos") or name.startswith(("macos", "mac")):
        return Platform.MACOS
    if kind == "linux" or name.startswith(("linux", "ubuntu", "rhel", "centos", "debian", "sles")):
        return Platform.LINUX
    if kind == "windows" or name.startswith("windows"):
        if "server" in name:
            return _server_platform(name)
        # osKind "windows" with no osPlatform cannot tell a client from a server.
        return Platform.WINDOWS_CLIENT if name.startswith("windows") else None
    return None


def platform_from_caption(product_type: Any, caption: Any) -> Platform | None:
    """Platform from the collector's ``productType`` and ``osCaption`` (Win32_OperatingSystem)."""
    text = caption.lower().replace(" ", "") if isinstance(caption, str) else ""
    if product_type == "server" or "server" in text:
        return _server_platform(text)
    if product_type == "client":
        return Platform.WINDOWS_CLIENT
    return None


def _server_platform(name: str) -> Platform:
    # 2012 R2 and 2016 run Defender through the unified agent, with their own rules.
    if "2012" in name or "2016" in name:
        return Platform.WINDOWS_SERVER_DOWNLEVEL
    return Platform.WINDOWS_SERVER


def decode_network_protection(value: Any) -> NetworkProtection:
    """``EnableNetworkProtection`` as a number (0/1/2), a numeric string, or its enum name."""
    if isinstance(value, bool):
        return NetworkProtection.UNKNOWN
    text = str(value).strip().lower() if value is not None else ""
    return {
        "0": NetworkProtection.OFF,
        "disabled": NetworkProtection.OFF,
        "1": NetworkProtection.BLOCK,
        "enabled": NetworkProtection.BLOCK,
        "2": NetworkProtection.AUDIT,
        "auditmode": NetworkProtection.AUDIT,
    }.get(text, NetworkProtection.UNKNOWN)


def as_bool(value: Any) -> bool | None:
    """True/False from JSON booleans and the strings Microsoft's APIs use; None otherwise."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return bool(value) if value in (0, 1) else None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "on", "enabled", "1", "yes"):
            return True
        if text in ("false", "off", "disabled", "0", "no"):
            return False
    return None


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


_VERSION = re.compile(r"^\d+(\.\d+){1,3}$")


def parse_version(value: Any) -> tuple[int, ...] | None:
    """``"4.18.2001.10"`` -> ``(4, 18, 2001, 10)``; None when it is not a dotted version."""
    if not isinstance(value, str) or not _VERSION.match(value.strip()):
        return None
    return tuple(int(part) for part in value.strip().split("."))


@functools.lru_cache(maxsize=8192)
def version_at_least(value: str | None, minimum: str) -> bool | None:
    """Whether a version reaches ``minimum``; None when the version is unknown or unreadable."""
    have = parse_version(value)
    want = parse_version(minimum)
    if have is None or want is None:
        return None
    width = max(len(have), len(want))
    return have + (0,) * (width - len(have)) >= want + (0,) * (width - len(want))


def is_third_party_av(display_name: str) -> bool:
    """Security Center lists Defender itself among AV products; that one is not a third party."""
    return not display_name.strip().lower().startswith(_DEFENDER_PRODUCT_NAMES)


# Linux changed its default enforcement level to passive in 101.23062.0001; before that, and on
# macOS always, the default is real-time.
LINUX_PASSIVE_DEFAULT_FROM = "101.23062.1"


def default_enforcement_state(platform: Platform, product_version: str | None) -> State | None:
    """The state macOS/Linux Defender starts in when no enforcement level is managed."""
    if platform is Platform.MACOS:
        return State.ACTIVE
    if platform is Platform.LINUX:
        newer = version_at_least(product_version, LINUX_PASSIVE_DEFAULT_FROM)
        if newer is None:
            return None
        return State.PASSIVE if newer else State.ACTIVE
    return None
