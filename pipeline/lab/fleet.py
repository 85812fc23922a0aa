"""The lab tenant's fleet: a seeded, deterministic Contoso estate of any size up to 500,000.

Every device is computed from (seed, index) alone, so a page of 200,000 devices is produced on
demand and nothing proportional to the fleet is kept in memory. Each block of 1,000 consecutive
devices holds exactly the mix in :data:`CONTOSO_MIX` in a seeded order, so every scenario below is
present in any fleet of 1,000 devices or more:

* most Windows clients run CrowdStrike Falcon as primary AV, so Defender is passive (avMode 1);
* some clients run Defender active (0), some are in EDR block mode (4), some disabled (2), and a
  few report Other (3), an empty mode ("") or PassiveAudit (5);
* a few hundred Windows Servers (2012 R2 and 2016 with the unified agent, 2019, 2022, 2025): some
  with ForceDefenderPassiveMode set (passive), some without it next to Falcon, so both engines are
  active (avMode 0), one per block with the misspelled ForcePassiveMode value (so still active);
* one client per block has the Security Center service (wscsvc) disabled, so Defender cannot see
  Falcon and stays active beside it;
* macOS and Linux devices;
* about 4 % of Windows devices on a platform/engine older than EDR block mode needs
  (4.18.2001.10 / 1.1.16700.2);
* every device has an Entra device id except a few (mostly servers).

Identifiers carry their device's index in an invertible form, so the server can answer
``/devices(deviceId='…')`` or ``/machines/{id}/tags`` for a 500,000-device fleet without an index.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

MAX_DEVICES = 500_000
DEFAULT_DEVICES = 8_000
DEFAULT_SEED = 20261203
REFERENCE_TIME = datetime(2026, 12, 3, 18, 0, tzinfo=UTC)  # the lab's "now" for timestamps

# (category, devices per 1,000). Categories decide AV mode and what the collector would see.
CONTOSO_MIX: tuple[tuple[str, int], ...] = (
    ("client_falcon_passive", 598),
    ("client_defender_active", 150),
    ("client_edr_block", 60),
    ("client_disabled", 30),
    ("client_wsc_disabled", 1),
    ("client_other", 4),
    ("client_unknown", 3),
    ("client_passive_audit", 3),
    ("server_forced_passive", 18),
    ("server_both_active", 7),
    ("server_misspelled", 1),
    ("server_defender_active", 10),
    ("server_edr_block", 4),
    ("mac", 60),
    ("linux", 51),
)
assert sum(count for _, count in CONTOSO_MIX) == 1000

_AV_MODE = {
    "client_falcon_passive": "1",
    "client_defender_active": "0",
    "client_edr_block": "4",
    "client_disabled": "2",
    "client_wsc_disabled": "0",
    "client_other": "3",
    "client_unknown": "",
    "client_passive_audit": "5",
    "server_forced_passive": "1",
    "server_both_active": "0",
    "server_misspelled": "0",
    "server_defender_active": "0",
    "server_edr_block": "4",
}
_FALCON = "CrowdStrike Falcon Sensor"
_SERVER_OS = (
    ("WindowsServer2012R2", "6.3.9600.22620", "Microsoft Windows Server 2012 R2 Datacenter"),
    ("WindowsServer2016", "10.0.14393.7876", "Microsoft Windows Server 2016 Datacenter"),
    ("WindowsServer2019", "10.0.17763.7009", "Microsoft Windows Server 2019 Datacenter"),
    ("WindowsServer2022", "10.0.20348.3328", "Microsoft Windows Server 2022 Datacenter"),
    ("WindowsServer2025", "10.0.26100.3476", "Microsoft Windows Server 2025 Datacenter"),
)
_CLIENT_OS = (
    ("Windows10", "10.0.19045.5737", "Microsoft Windows 10 Enterprise"),
    ("Windows11", "10.0.22631.4890", "Microsoft Windows 11 Enterprise"),
    ("Windows11", "10.0.26100.3775", "Microsoft Windows 11 Enterprise"),
)
_RBAC = {
    "client": (101, "Contoso Workstations"),
    "server": (102, "Contoso Servers"),
    "mac": (103, "Contoso Mac"),
    "linux": (104, "Contoso Linux"),
}
_CURRENT = ("4.18.25090.3", "1.1.25090.1")  # platform, engine
_OLD = ("4.18.1911.3", "1.1.16600.7")  # below EDR block mode's 4.18.2001.10 / 1.1.16700.2

# Identifier encoding: the first 8 hex digits are (index * K + seed) mod 2^32, K odd.
_K = 0x9E3779B1
_K_INVERSE = pow(_K, -1, 2**32)


@dataclass(frozen=True)
class LabDevice:
    index: int
    category: str
    machine_id: str  # MDE machine id, 40 hex digits
    name: str
    os_kind: str  # windows | mac | linux
    os_platform: str
    os_version: str
    os_caption: str
    server: bool
    av_mode: str
    third_party_av: str | None
    force_passive: int | None  # ForceDefenderPassiveMode
    force_passive_misspelled: int | None  # ForcePassiveMode
    passive_remediation: int | None
    wsc_disabled: bool
    platform_version: str
    engine_version: str
    signature_version: str
    aad_device_id: str | None
    entra_object_id: str | None
    rbac_group_id: int
    rbac_group_name: str
    health_status: str
    network_protection: int  # EnableNetworkProtection 0 off, 1 block, 2 audit
    real_time_reported: bool  # what Get-MpComputerStatus says, even when passive
    last_seen: datetime
    ip_address: str


class Fleet:
    """A Contoso fleet of ``size`` devices (plus discovered, not-onboarded machines)."""

    def __init__(self, size: int = DEFAULT_DEVICES, seed: int = DEFAULT_SEED) -> None:
        if not 0 <= size <= MAX_DEVICES:
            raise ValueError(f"fleet size must be 0..{MAX_DEVICES}, got {size}")
        self.size = size
        self.seed = seed
        # Devices MDE discovered on the network but that are not onboarded: in /api/machines only.
        self.discovered = size // 50

    def device(self, index: int) -> LabDevice:
        if not 0 <= index < self.size:
            raise IndexError(index)
        return _build_device(self.seed, index)

    def devices(self, start: int = 0, stop: int | None = None) -> Iterator[LabDevice]:
        for index in range(start, min(self.size, self.size if stop is None else stop)):
            yield self.device(index)

    def machine_id_head(self, index: int) -> str:
        """The first eight hex digits of a device's machine id, without building the device."""
        return _identifier_head(self.seed, index)

    def index_of_machine_id(self, machine_id: str) -> int | None:
        return self._decode(machine_id, "machine", self.size + self.discovered)

    def index_of_aad_device_id(self, aad_device_id: str) -> int | None:
        index = self._decode(aad_device_id, "aad", self.size)
        if index is None or self.device(index).aad_device_id != aad_device_id.lower():
            return None
        return index

    def index_of_entra_object(self, object_id: str) -> int | None:
        index = self._decode(object_id, "object", self.size)
        if index is None or self.device(index).entra_object_id != object_id.lower():
            return None
        return index

    def _decode(self, identifier: str, kind: str, limit: int) -> int | None:
        try:
            head = int(identifier[:8], 16)
        except ValueError:
            return None
        index = ((head - self.seed) * _K_INVERSE) % 2**32
        if index >= limit or _identifier(self.seed, index, kind) != identifier.lower():
            return None
        return index

    # --- records in Microsoft's shapes -------------------------------------------------------

    def deviceavinfo_record(self, index: int) -> dict[str, Any]:
        """One row of GET /api/deviceavinfo, string-typed as Microsoft's sample shows."""
        device = self.device(index)
        refreshed = _iso(device.last_seen + timedelta(minutes=17))
        windows = device.os_kind == "windows"
        up_to_date = "Unknown" if not windows else ("False" if _is_old(device) else "True")
        return {
            "id": device.machine_id,
            "machineId": device.machine_id,
            "computerDnsName": device.name,
            "osKind": device.os_kind,
            "osPlatform": device.os_platform,
            "osVersion": device.os_version,
            "avMode": device.av_mode,
            "avSignatureVersion": device.signature_version,
            "avEngineVersion": device.engine_version,
            "avPlatformVersion": device.platform_version,
            "lastSeenTime": _iso(device.last_seen),
            "quickScanResult": "Completed" if device.av_mode in ("0", "1", "4") else "",
            "quickScanError": "",
            "quickScanTime": _iso(device.last_seen - timedelta(hours=20)),
            "fullScanResult": "",
            "fullScanError": "",
            "fullScanTime": None,
            "dataRefreshTimestamp": refreshed,
            "avEngineUpdateTime": _iso(device.last_seen - timedelta(days=3)),
            "avSignatureUpdateTime": _iso(device.last_seen - timedelta(hours=5)),
            "avPlatformUpdateTime": _iso(device.last_seen - timedelta(days=9)),
            "avSignaturePublishTime": _iso(device.last_seen - timedelta(hours=7)),
            "avIsSignatureUpToDate": up_to_date,
            "avIsEngineUpToDate": up_to_date,
            "avIsPlatformUpToDate": up_to_date,
            "rbacGroupName": device.rbac_group_name,
            "rbacGroupId": device.rbac_group_id,
        }

    def machine_record(self, index: int, tags: list[str] | None = None) -> dict[str, Any]:
        """One machine of GET /api/machines (the documented machine entity)."""
        if index >= self.size:
            return self._discovered_machine(index, tags)
        device = self.device(index)
        default_tags = ["Falcon"] if device.third_party_av else []
        return {
            "id": device.machine_id,
            "computerDnsName": device.name,
            "firstSeen": _iso(REFERENCE_TIME - timedelta(days=400 + index % 300)),
            "lastSeen": _iso(device.last_seen),
            "osPlatform": device.os_platform,
            "version": _os_release(device),
            "osProcessor": "x64",
            "lastIpAddress": device.ip_address,
            "lastExternalIpAddress": "203.0.113.10",
            "agentVersion": "10.8760.26100.3775" if device.os_kind == "windows" else "101.25012.2",
            "osBuild": _os_build(device),
            "healthStatus": device.health_status,
            "deviceValue": "High" if device.server else "Normal",
            "rbacGroupId": device.rbac_group_id,
            "rbacGroupName": device.rbac_group_name,
            "riskScore": ("None", "Low", "Medium", "High")[index % 4],
            "exposureLevel": ("Low", "Medium", "High")[index % 3],
            "isAadJoined": device.aad_device_id is not None,
            "aadDeviceId": device.aad_device_id,
            "machineTags": tags if tags is not None else default_tags,
            "onboardingStatus": "Onboarded",
            "osArchitecture": "64-bit",
            "managedBy": "Intune" if not device.server else "MicrosoftDefenderForEndpoint",
            "managedByStatus": "Success",
            "ipAddresses": [
                {
                    "ipAddress": device.ip_address,
                    "macAddress": _mac(self.seed, index),
                    "type": "Ethernet",
                    "operationalStatus": "Up",
                }
            ],
        }

    def tvm_row(self, index: int) -> dict[str, Any]:
        """One DeviceTvmInfoGathering row; Graph returns the dynamic column as a JSON string."""
        device = self.device(index)
        additional = {
            "AvMode": device.av_mode,
            "AvModeDataRefreshTime": _iso(device.last_seen),
            "AvEngineVersion": device.engine_version,
            "AvPlatformVersion": device.platform_version,
            "AvSignatureVersion": device.signature_version,
            "AvIsEngineUptodate": "False" if _is_old(device) else "True",
            "AvIsPlatformUptodate": "False" if _is_old(device) else "True",
            "AvIsSignatureUptoDate": "True",
            "CloudProtectionState": "Enabled",
        }
        return {
            "Timestamp": _iso(device.last_seen),
            "DeviceId": device.machine_id,
            "DeviceName": device.name,
            "OSPlatform": device.os_platform,
            "AdditionalFields": json.dumps(additional, separators=(",", ":")),
        }

    def entra_device(self, index: int) -> dict[str, Any]:
        device = self.device(index)
        return {
            "id": device.entra_object_id,
            "deviceId": device.aad_device_id,
            "displayName": device.name.split(".")[0],
            "accountEnabled": True,
            "trustType": "ServerAd" if device.server else "AzureAd",
        }

    def _discovered_machine(self, index: int, tags: list[str] | None) -> dict[str, Any]:
        rng = random.Random(f"{self.seed}:discovered:{index}")
        return {
            "id": _identifier(self.seed, index, "machine"),
            "computerDnsName": f"unmanaged-{index:06d}",
            "firstSeen": _iso(REFERENCE_TIME - timedelta(days=30)),
            "lastSeen": _iso(REFERENCE_TIME - timedelta(hours=rng.randint(1, 200))),
            "osPlatform": rng.choice(("Windows10", "Linux", "Other")),
            "version": None,
            "osProcessor": None,
            "lastIpAddress": f"10.40.{index // 250 % 250}.{index % 250 + 1}",
            "lastExternalIpAddress": None,
            "agentVersion": None,
            "osBuild": None,
            "healthStatus": "Unknown",
            "deviceValue": "Normal",
            "rbacGroupId": 0,
            "rbacGroupName": None,
            "riskScore": "None",
            "exposureLevel": "None",
            "isAadJoined": False,
            "aadDeviceId": None,
            "machineTags": tags or [],
            "onboardingStatus": "CanBeOnboarded",
            "osArchitecture": None,
            "managedBy": "Unknown",
            "managedByStatus": "Unknown",
            "ipAddresses": [],
        }


@lru_cache(maxsize=1024)
def _block_layout(seed: int, block: int) -> tuple[str, ...]:
    slots = [category for category, count in CONTOSO_MIX for _ in range(count)]
    random.Random(f"{seed}:block:{block}").shuffle(slots)
    return tuple(slots)


def _build_device(seed: int, index: int) -> LabDevice:
    category = _block_layout(seed, index // 1000)[index % 1000]
    rng = random.Random(seed * 1_000_003 + index)
    server = category.startswith("server_")

    if category == "mac":
        os_kind, platform, version, caption = "mac", "macOS", "15.3.2", "macOS"
        av_mode = "1" if rng.random() < 0.7 else "0"
        name = f"mac-{index:06d}.contoso.com"
    elif category == "linux":
        os_kind, platform, caption = "linux", "Linux", "Ubuntu"
        version = rng.choice(("22.4", "24.4", "9.5"))
        av_mode = "1" if rng.random() < 0.8 else "0"
        name = f"lnx-{index:06d}.contoso.com"
    elif server:
        os_kind = "windows"
        platform, version, caption = rng.choice(_SERVER_OS)
        av_mode = _AV_MODE[category]
        name = f"srv-{index:06d}.corp.contoso.com"
    else:
        os_kind = "windows"
        platform, version, caption = rng.choice(_CLIENT_OS)
        av_mode = _AV_MODE[category]
        name = f"ws-{index:06d}.corp.contoso.com"

    third_party = _FALCON if _has_falcon(category, av_mode) else None
    force_passive = 1 if category in ("server_forced_passive", "server_edr_block") else None
    old = os_kind == "windows" and rng.random() < 0.04
    platform_version, engine_version = _OLD if old else _CURRENT
    if os_kind != "windows":
        platform_version, engine_version = "101.25012.0002", "1.1.25010.1"

    has_entra_id = rng.random() >= (0.10 if server else 0.003)
    kind = "server" if server else os_kind if os_kind != "windows" else "client"
    rbac_id, rbac_name = _RBAC[kind]
    if av_mode in ("0", "4"):
        network_protection = rng.choice((1, 1, 1, 2, 0))
    else:
        network_protection = rng.choice((1, 2, 0))

    return LabDevice(
        index=index,
        category=category,
        machine_id=_identifier(seed, index, "machine"),
        name=name,
        os_kind=os_kind,
        os_platform=platform,
        os_version=version,
        os_caption=caption,
        server=server,
        av_mode=av_mode,
        third_party_av=third_party,
        force_passive=force_passive,
        force_passive_misspelled=1 if category == "server_misspelled" else None,
        passive_remediation=1 if av_mode == "4" else None,
        wsc_disabled=category == "client_wsc_disabled",
        platform_version=platform_version,
        engine_version=engine_version,
        signature_version=f"1.441.{100 + index % 400}.0",
        aad_device_id=_identifier(seed, index, "aad") if has_entra_id else None,
        entra_object_id=_identifier(seed, index, "object") if has_entra_id else None,
        rbac_group_id=rbac_id,
        rbac_group_name=rbac_name,
        health_status=rng.choices(
            ("Active", "Inactive", "ImpairedCommunication", "NoSensorData"), (90, 6, 3, 1)
        )[0],
        network_protection=network_protection,
        # Get-MpComputerStatus keeps reporting real-time protection on for many passive devices.
        real_time_reported=av_mode in ("0", "4") or rng.random() < 0.5,
        last_seen=REFERENCE_TIME - timedelta(minutes=rng.randint(5, 60 * 72)),
        ip_address=f"10.{20 + index // 62500}.{index // 250 % 250}.{index % 250 + 1}",
    )


def _has_falcon(category: str, av_mode: str) -> bool:
    if category in ("client_defender_active", "server_defender_active", "client_other"):
        return False
    if category in ("mac", "linux"):
        return av_mode == "1"
    return True


def _identifier_head(seed: int, index: int) -> str:
    return f"{(index * _K + seed) % 2**32:08x}"


def _identifier(seed: int, index: int, kind: str) -> str:
    head = _identifier_head(seed, index)
    tail = hashlib.sha256(f"{seed}:{kind}:{index}".encode()).hexdigest()
    if kind == "machine":
        return head + tail[:32]
    guid = head + tail[:24]
    return f"{guid[:8]}-{guid[8:12]}-4{guid[13:16]}-a{guid[17:20]}-{guid[20:32]}"


def _is_old(device: LabDevice) -> bool:
    return device.platform_version == _OLD[0]


def _os_release(device: LabDevice) -> str | None:
    if device.os_platform == "Windows10":
        return "22H2"
    if device.os_platform == "Windows11":
        return "24H2" if device.os_version.startswith("10.0.26100") else "23H2"
    return None if device.os_kind == "windows" else device.os_version


def _os_build(device: LabDevice) -> int | None:
    if device.os_kind != "windows":
        return None
    return int(device.os_version.split(".")[2])


def _mac(seed: int, index: int) -> str:
    raw = hashlib.sha256(f"{seed}:mac:{index}".encode()).hexdigest()[:12].upper()
    return "".join(raw[i : i + 2] for i in range(0, 12, 2))


def _iso(moment: datetime) -> str:
    return moment.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
