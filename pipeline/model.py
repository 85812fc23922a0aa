"""The nouns of the pipeline: what is known about a device, the tenant, and the verdicts.

Plain frozen dataclasses with no behaviour beyond small derived properties. Every other module
speaks in these terms. No I/O, no clock, no Azure import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal


class State(StrEnum):
    """Defender Antivirus state of a device, as the pipeline normalises it."""

    ACTIVE = "active"
    PASSIVE = "passive"
    EDR_BLOCK = "edr_block"  # passive mode plus EDR in block mode
    PASSIVE_AUDIT = "passive_audit"  # avMode 5; Microsoft does not document what it means
    DISABLED = "disabled"  # onboarded to MDE, Defender AV off or uninstalled
    LIMITED_PERIODIC_SCANNING = "limited_periodic_scanning"  # SxS passive, client only
    NOT_ONBOARDED = "not_onboarded"  # not in MDE and Defender AV not running
    OTHER = "other"  # not running, unknown, or a code we do not know


class Platform(StrEnum):
    WINDOWS_CLIENT = "windows_client"
    WINDOWS_SERVER = "windows_server"  # 2019, 2022, 2025, 1803+
    WINDOWS_SERVER_DOWNLEVEL = "windows_server_downlevel"  # 2012 R2 / 2016 with the unified agent
    MACOS = "macos"
    LINUX = "linux"

    @property
    def is_windows(self) -> bool:
        return self.value.startswith("windows")

    @property
    def is_windows_server(self) -> bool:
        return self in (Platform.WINDOWS_SERVER, Platform.WINDOWS_SERVER_DOWNLEVEL)


class Status(StrEnum):
    """A capability's verdict on one device."""

    ENFORCED = "enforced"
    NOT_ENFORCED = "not_enforced"
    PARTIAL = "partial"  # enforced within a stated scope only, e.g. "Microsoft Edge only"
    UNKNOWN = "unknown"  # documentation conflicts or a needed fact is missing; reason says which
    NOT_APPLICABLE = "not_applicable"


class ModeSource(StrEnum):
    DEVICEAVINFO = "deviceavinfo"  # MDE API GET /api/deviceavinfo
    HUNTING = "hunting"  # advanced hunting DeviceTvmInfoGathering
    COLLECTOR = "collector"  # the endpoint collector document


class NetworkProtection(StrEnum):
    OFF = "off"  # EnableNetworkProtection 0
    BLOCK = "block"  # 1
    AUDIT = "audit"  # 2
    UNKNOWN = "unknown"


License = Literal["P1", "P2"]


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """Everything the evaluator may use about one device. ``None`` means "not known"."""

    device_id: str
    device_name: str
    platform: Platform | None
    state: State
    mode_source: ModeSource
    mode_reason: str
    av_mode_code: str | None = None  # Microsoft's numeric code when the source gave one
    raw_mode: str | None = None  # the value as the source spelled it
    os_version: str | None = None
    aad_device_id: str | None = None
    onboarded: bool | None = True
    platform_version: str | None = None  # AMProductVersion / avPlatformVersion
    engine_version: str | None = None  # AMEngineVersion / avEngineVersion
    network_protection: NetworkProtection = NetworkProtection.UNKNOWN
    cloud_protection: bool | None = None
    behavior_monitoring: bool | None = None
    real_time_protection_reported: bool | None = None
    tamper_protected: bool | None = None
    allow_np_on_server: bool | None = None  # AllowNetworkProtectionOnWinServer == 1
    allow_np_down_level: bool | None = None  # AllowNetworkProtectionDownLevel == 1
    force_passive_registry: int | None = None  # ForceDefenderPassiveMode
    misspelled_force_passive: int | None = None  # ForcePassiveMode (a documentation typo)
    passive_remediation: int | None = None  # PassiveRemediation flags
    wsc_service_state: str | None = None
    third_party_av: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()  # fields the source gave that could not be read


@dataclass(frozen=True)
class TenantSettings:
    """Tenant-wide settings the operator declares (the portal toggles have no read API).

    ``None`` means the operator did not say; capabilities that depend on it become ``unknown``.
    ``configured`` lists the capabilities the tenant has policies for; ``None`` means "assume every
    tenant-policy capability is configured", which is what the portal implies.
    """

    edr_block_mode: bool | None = None
    custom_network_indicators: bool | None = None
    allow_or_block_file: bool | None = None
    mde_license: License | None = None
    mda_enforce_app_access: bool | None = None
    configured: frozenset[str] | None = None
    # Kinds of indicator the tenant has (url, ip, file, certificate, mda), when its indicator
    # list was collected; narrows ``configured`` to the indicator capabilities really in use.
    indicator_kinds: frozenset[str] | None = None


@dataclass(frozen=True)
class Verdict:
    status: Status
    reason: str
    source: str  # the Microsoft documentation URL the verdict rests on
    scope: str | None = None  # for partial: where it does enforce
    not_enforced_in: str | None = None  # for unknown: the part that certainly does not enforce
    basis: str = "documented"  # documented, inferred, or conflict (Microsoft's pages disagree)
    also: tuple[str, ...] = ()  # further pages, e.g. the other side of a conflict


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    fix: str


@dataclass(frozen=True, slots=True)
class DeviceCoverage:
    """The evaluator's answer for one device."""

    facts: DeviceFacts
    capabilities: dict[str, Verdict]
    findings: tuple[Finding, ...]
    gaps: tuple[str, ...]
    matrix_version: str


@dataclass(frozen=True)
class RejectedRecord:
    """An input record that could not be turned into facts, and why."""

    source: str  # file name or API, plus the record's position
    record_id: str | None
    field: str | None
    reason: str


@dataclass
class Inputs:
    """What the input readers produced: device facts, tenant settings hints, rejections."""

    devices: list[DeviceFacts] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)
    # Kinds of indicator the tenant has (url, ip, file, certificate, mda); None = not known.
    indicator_kinds: set[str] | None = None
    # The tenant's indicator records as the API returned them, when a snapshot carried them.
    indicators: list[Any] | None = None
