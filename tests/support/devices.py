"""Factories for device facts, tenants and collector documents used across the unit tests."""

from __future__ import annotations

from typing import Any

from pipeline.model import (
    DeviceFacts,
    ModeSource,
    NetworkProtection,
    Platform,
    State,
    TenantSettings,
)


def full_tenant() -> TenantSettings:
    """A tenant with every relevant toggle on and Plan 2."""
    return TenantSettings(
        edr_block_mode=False,
        custom_network_indicators=True,
        allow_or_block_file=True,
        mde_license="P2",
        mda_enforce_app_access=True,
    )


def device(**overrides: Any) -> DeviceFacts:
    """A well-configured, fully described Windows client; override what a test is about."""
    values: dict[str, Any] = {
        "device_id": "dev-1",
        "device_name": "pc-1.contoso.com",
        "platform": Platform.WINDOWS_CLIENT,
        "state": State.ACTIVE,
        "mode_source": ModeSource.COLLECTOR,
        "mode_reason": "test",
        "onboarded": True,
        "platform_version": "4.18.24090.11",
        "engine_version": "1.1.24090.11",
        "network_protection": NetworkProtection.BLOCK,
        "cloud_protection": True,
        "behavior_monitoring": True,
        "real_time_protection_reported": True,
        "tamper_protected": True,
        "allow_np_on_server": True,
        "allow_np_down_level": True,
    }
    values.update(overrides)
    return DeviceFacts(**values)


def collector_doc(
    *,
    running_mode: str = "Normal",
    onboarded: bool = True,
    mde_id: str | None = "4f1c0e6a9b2d4c8e8f7a6b5c4d3e2f1a0b9c8d7e",
    product_type: str = "client",
    caption: str = "Microsoft Windows 11 Enterprise",
    third_party: list[str] | None = None,
    wscsvc: str = "Running",
    registry: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    preference: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An ``endpoint-av-state/1`` document shaped like the collector's ConvertTo-Json output."""
    reg: dict[str, Any] = {
        "ForceDefenderPassiveMode": None,
        "ForcePassiveMode": None,
        "PassiveRemediation": None,
        "AllowNetworkProtectionOnWinServer": None,
        "AllowNetworkProtectionDownLevel": None,
    }
    reg.update(registry or {})
    mp_status: dict[str, Any] = {
        "AMRunningMode": running_mode,
        "AMProductVersion": "4.18.24090.11",
        "AMEngineVersion": "1.1.24090.11",
        "AntivirusEnabled": running_mode == "Normal",
        "RealTimeProtectionEnabled": running_mode == "Normal",
        "BehaviorMonitorEnabled": running_mode == "Normal",
        "IsTamperProtected": True,
    }
    mp_status.update(status or {})
    mp_pref: dict[str, Any] = {"EnableNetworkProtection": 1, "MAPSReporting": 2}
    mp_pref.update(preference or {})
    products = [{"displayName": "Windows Defender", "productState": 397568}]
    products += [{"displayName": name, "productState": 266240} for name in third_party or []]
    return {
        "schema": "endpoint-av-state/1",
        "collectedAt": "2026-12-03T08:00:00Z",
        "device": {
            "name": "pc-7.contoso.com",
            "mdeDeviceId": mde_id,
            "osCaption": caption,
            "osVersion": "10.0.22631",
            "productType": product_type,
            "onboarded": onboarded,
        },
        "mpComputerStatus": mp_status,
        "mpPreference": mp_pref,
        "registry": reg,
        "services": {
            "WinDefend": "Running",
            "WdNisDrv": "Running",
            "Sense": "Running",
            "wscsvc": wscsvc,
        },
        "thirdPartyAv": products,
    }
