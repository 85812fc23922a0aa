"""``endpoint-av-state/1`` documents for lab devices, as the endpoint collector would send them.

The documents agree with the fleet (same names, MDE ids, versions and AV mode) and cover the cases
that only the endpoint can show: servers next to Falcon without ForceDefenderPassiveMode, the
misspelled ForcePassiveMode value, a client whose Security Center service is disabled, passive
devices that still report real-time protection on, and network protection in audit mode.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from pipeline.lab.fleet import REFERENCE_TIME, Fleet, LabDevice

# Categories the collector can describe (Windows only) and how many documents of each to write.
_SAMPLE = {
    "client_falcon_passive": 6,
    "client_defender_active": 3,
    "client_edr_block": 3,
    "client_disabled": 2,
    "client_wsc_disabled": 1,
    "client_other": 1,
    "client_unknown": 1,
    "client_passive_audit": 1,
    "server_forced_passive": 3,
    "server_both_active": 3,
    "server_misspelled": 1,
    "server_defender_active": 2,
    "server_edr_block": 2,
}
_SCAN_LIMIT = 20_000  # look no further than this for samples, so huge fleets stay fast

# Security Center productState values: 0x41000 enabled and up to date, 0x61100 snoozed/passive.
_FALCON_ON = 266240
_DEFENDER_PASSIVE = 393488
_DEFENDER_ON = 397568


def sample_devices(fleet: Fleet) -> list[LabDevice]:
    wanted = dict(_SAMPLE)
    chosen: list[LabDevice] = []
    for device in fleet.devices(0, _SCAN_LIMIT):
        if wanted.get(device.category, 0) > 0:
            wanted[device.category] -= 1
            chosen.append(device)
    return chosen


def collector_document(device: LabDevice) -> dict[str, Any]:
    collected = REFERENCE_TIME - timedelta(minutes=device.index % 600)
    return {
        "schema": "endpoint-av-state/1",
        "collectedAt": collected.replace(tzinfo=None).isoformat(timespec="seconds") + "Z",
        "device": {
            "name": device.name.split(".")[0].upper(),
            "mdeDeviceId": device.machine_id,
            "osCaption": device.os_caption,
            "osVersion": device.os_version,
            "productType": "server" if device.server else "client",
            "onboarded": True,
        },
        "mpComputerStatus": _computer_status(device),
        "mpPreference": _preference(device),
        "registry": {
            "ForceDefenderPassiveMode": device.force_passive,
            "ForcePassiveMode": device.force_passive_misspelled,
            "PassiveRemediation": device.passive_remediation,
            "AllowNetworkProtectionOnWinServer": 1 if device.server and device.index % 2 else None,
            "AllowNetworkProtectionDownLevel": (
                1 if device.os_platform in ("WindowsServer2012R2", "WindowsServer2016") else None
            ),
        },
        "services": {
            "WinDefend": "Running" if device.av_mode not in ("2", "3", "") else "Stopped",
            "WdNisDrv": "Running" if device.av_mode in ("0", "4") else "Stopped",
            "Sense": "Running",
            "wscsvc": None if device.server else "Disabled" if device.wsc_disabled else "Running",
        },
        "thirdPartyAv": _products(device),
    }


def write_collector_documents(fleet: Fleet, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for device in sample_devices(fleet):
        path = directory / f"{device.name.split('.')[0]}.json"
        path.write_text(json.dumps(collector_document(device), indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


def _running_mode(device: LabDevice) -> str:
    mode = device.av_mode
    if mode == "0":
        return "Normal"
    if mode in ("1", "5"):
        return "Passive Mode" if device.index % 2 else "Passive"  # both spellings occur
    if mode == "4":
        return "EDR Block Mode"
    if mode == "2":
        return "SxS Passive Mode" if device.index % 2 else "Not running"
    return "Not running"


def _computer_status(device: LabDevice) -> dict[str, Any]:
    running = device.av_mode in ("0", "1", "4", "5")
    updated = (REFERENCE_TIME - timedelta(hours=5)).replace(tzinfo=None).isoformat() + "Z"
    return {
        "AMEngineVersion": device.engine_version,
        "AMProductVersion": device.platform_version,
        "AMRunningMode": _running_mode(device),
        "AMServiceEnabled": running,
        "AMServiceVersion": device.platform_version,
        "AntispywareEnabled": running,
        "AntispywareSignatureVersion": device.signature_version,
        "AntivirusEnabled": running,
        "AntivirusSignatureAge": 0,
        "AntivirusSignatureLastUpdated": updated,
        "AntivirusSignatureVersion": device.signature_version,
        "BehaviorMonitorEnabled": device.av_mode in ("0", "4"),
        "ComputerState": 0,
        "DefenderSignaturesOutOfDate": False,
        "IoavProtectionEnabled": running,
        "IsTamperProtected": device.av_mode in ("0", "4"),
        "IsVirtualMachine": device.server,
        "NISEnabled": device.av_mode in ("0", "4"),
        "NISEngineVersion": device.engine_version,
        "OnAccessProtectionEnabled": running,
        "QuickScanAge": 1,
        "RealTimeProtectionEnabled": device.real_time_reported,
        "RebootRequired": False,
        "TamperProtectionSource": "ATP" if device.av_mode in ("0", "4") else "Signatures",
    }


def _preference(device: LabDevice) -> dict[str, Any]:
    return {
        "EnableNetworkProtection": device.network_protection,
        "MAPSReporting": 2,
        "SubmitSamplesConsent": 1,
        "PUAProtection": 1,
        "EnableControlledFolderAccess": 0,
        "DisableRealtimeMonitoring": not device.real_time_reported,
        "DisableBehaviorMonitoring": device.av_mode not in ("0", "4"),
        "AttackSurfaceReductionRules_Ids": [
            "56a863a9-875e-4185-98a7-b882c64b5ce5",
            "d4f940ab-401b-4efc-aadc-ad5f3c50688a",
        ],
        "AttackSurfaceReductionRules_Actions": [1, 2],
    }


def _products(device: LabDevice) -> list[dict[str, Any]]:
    products = []
    if not device.server and not device.wsc_disabled:
        # Security Center lists Defender itself too; its state shows whether it stepped back.
        state = _DEFENDER_ON if device.av_mode == "0" else _DEFENDER_PASSIVE
        products.append({"displayName": "Windows Defender", "productState": state})
    if device.third_party_av:
        # Servers and clients without Security Center: found by its service, no productState.
        known_state = not device.server and not device.wsc_disabled
        products.append(
            {
                "displayName": device.third_party_av,
                "productState": _FALCON_ON if known_state else None,
            }
        )
    return products
