"""Device coverages for the EDR-block-mode tests: hand-made ones and ones from the lab fleet."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from pipeline.lab.fleet import Fleet, LabDevice
from pipeline.model import DeviceCoverage, DeviceFacts, ModeSource, Platform, State

CURRENT_PLATFORM = "4.18.25090.3"
CURRENT_ENGINE = "1.1.25090.1"

_LAB_STATES = {"0": State.ACTIVE, "1": State.PASSIVE, "2": State.DISABLED, "4": State.EDR_BLOCK}


def machine_id(n: int) -> str:
    return hashlib.sha1(f"machine-{n}".encode()).hexdigest()  # noqa: S324 - an id, not security


def aad_id(n: int) -> str:
    return str(uuid.UUID(hashlib.sha256(f"aad-{n}".encode()).hexdigest()[:32]))


def facts(n: int, **overrides: Any) -> DeviceFacts:
    """A Windows client in passive mode that meets every EDR-block-mode prerequisite."""
    base = DeviceFacts(
        device_id=machine_id(n),
        device_name=f"ws-{n:04d}.contoso.com",
        platform=Platform.WINDOWS_CLIENT,
        state=State.PASSIVE,
        mode_source=ModeSource.DEVICEAVINFO,
        mode_reason="avMode 1",
        av_mode_code="1",
        aad_device_id=aad_id(n),
        platform_version=CURRENT_PLATFORM,
        engine_version=CURRENT_ENGINE,
        cloud_protection=True,
    )
    return replace(base, **overrides)


def coverage(device: DeviceFacts) -> DeviceCoverage:
    return DeviceCoverage(device, {}, (), (), "test")


def fleet_of(passive: int, others: int = 0, **overrides: Any) -> list[DeviceCoverage]:
    """``passive`` eligible passive devices followed by ``others`` active ones."""
    devices = [coverage(facts(n, **overrides)) for n in range(passive)]
    devices += [coverage(facts(passive + n, state=State.ACTIVE)) for n in range(others)]
    return devices


def lab_facts(device: LabDevice) -> DeviceFacts:
    """What the evaluator would know about a lab device, in short."""
    if device.os_kind == "windows":
        platform = Platform.WINDOWS_SERVER if device.server else Platform.WINDOWS_CLIENT
    else:
        platform = Platform.MACOS if device.os_kind == "mac" else Platform.LINUX
    return DeviceFacts(
        device_id=device.machine_id,
        device_name=device.name,
        platform=platform,
        state=_LAB_STATES.get(device.av_mode, State.OTHER),
        mode_source=ModeSource.DEVICEAVINFO,
        mode_reason=f"avMode {device.av_mode!r}",
        av_mode_code=device.av_mode,
        aad_device_id=device.aad_device_id,
        platform_version=device.platform_version,
        engine_version=device.engine_version,
        cloud_protection=True,
    )


def lab_coverages(fleet: Fleet, indexes: Iterable[int] | None = None) -> list[DeviceCoverage]:
    chosen = range(fleet.size) if indexes is None else indexes
    return [coverage(lab_facts(fleet.device(i))) for i in chosen]


def eligible_lab_devices(fleet: Fleet, count: int) -> list[LabDevice]:
    """The first ``count`` passive Windows clients with current Defender and an Entra id."""
    found = [
        device
        for device in fleet.devices()
        if device.category == "client_falcon_passive"
        and device.aad_device_id is not None
        and device.platform_version == CURRENT_PLATFORM
    ]
    if len(found) < count:
        raise ValueError(f"the lab fleet has only {len(found)} eligible devices")
    return found[:count]
