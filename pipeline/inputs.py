"""Read the files the evaluator accepts and turn their records into :class:`DeviceFacts`.

The kind of file is recognised from its content, never its name:

* a ``GET /api/deviceavinfo`` page (``{"value": [...]}``) or a bare list of such records;
* advanced hunting ``DeviceTvmInfoGathering`` results: the portal's CSV export, the MDE hunting
  API's JSON (``Schema`` / ``Results``) or Graph's (``schema`` / ``results``);
* an endpoint collector document (``"schema": "endpoint-av-state/1"``), or a list of them;
* a collected snapshot (``"schema": "mde-snapshot/1"``), which bundles all of the above plus
  the machine list and the tenant's indicators.

A record that cannot be used becomes a :class:`RejectedRecord` naming the file, the record and
the field; every other record is still read. Pure parsing: the only I/O is reading the files.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pipeline.model import (
    DeviceFacts,
    Inputs,
    ModeSource,
    NetworkProtection,
    RejectedRecord,
    State,
    TenantSettings,
)
from pipeline.modes import (
    AV_MODE_CODES,
    STATE_CODES,
    as_bool,
    as_int,
    decode_av_mode,
    decode_network_protection,
    decode_running_mode,
    is_third_party_av,
    platform_from_caption,
    platform_from_os,
)
from pipeline.sources.snapshot import SECTIONS as SNAPSHOT_SECTIONS
from pipeline.sources.snapshot import (
    SnapshotHeader,
    SnapshotLayoutError,
    iter_records,
    written_here,
)

COLLECTOR_SCHEMA = "endpoint-av-state/1"
SNAPSHOT_SCHEMA = "mde-snapshot/1"

# When several sources describe one device, the most direct one wins.
_SOURCE_PRIORITY = {ModeSource.COLLECTOR: 0, ModeSource.DEVICEAVINFO: 1, ModeSource.HUNTING: 2}

_INDICATOR_KINDS = {
    "Url": "url",
    "DomainName": "url",
    "IpAddress": "ip",
    "FileSha1": "file",
    "FileSha256": "file",
    "FileMd5": "file",
    "CertificateThumbprint": "certificate",
}


class InputError(ValueError):
    """A whole file cannot be read or recognised (as opposed to one bad record in it)."""


# --- entry points -----------------------------------------------------------------------------


def read_files(paths: Iterable[Path]) -> Inputs:
    """Read every file, then merge what several sources say about the same device.

    A snapshot the pipeline wrote is read one record at a time (:func:`read_snapshot`); any
    other file is read whole.
    """
    collected = Inputs()
    for path in paths:
        _extend(collected, _read_path(path, None))
    collected.devices = merge_devices(collected.devices)
    return collected


def read_snapshot(path: Path, keep: Callable[[str], bool] | None = None) -> Inputs:
    """A snapshot file's devices (only those whose id ``keep`` accepts, when given), merged.

    A snapshot the pipeline wrote is streamed, so memory holds the kept devices' facts and not
    the file's JSON; another snapshot file is parsed whole. Rejected records are all reported,
    whichever devices they name.
    """
    inputs = _read_path(path, keep)
    inputs.devices = merge_devices(inputs.devices)
    return inputs


def _read_path(path: Path, keep: Callable[[str], bool] | None) -> Inputs:
    """One file's records: streamed when the pipeline wrote it as a snapshot, else whole."""
    try:
        if written_here(path):
            records = iter_records(path, SnapshotHeader())
            return parse_snapshot_records(path.name, records, keep=keep)
        inputs = parse_document(path.name, path.read_bytes())
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from exc
    except SnapshotLayoutError as exc:
        raise InputError(f"{path.name}: {exc}") from exc
    if keep is not None:
        inputs.devices = [d for d in inputs.devices if keep(d.device_id)]
    return inputs


def parse_document(name: str, data: bytes) -> Inputs:
    """Recognise one file's content and parse it."""
    text = data.decode("utf-8-sig", errors="replace")
    stripped = text.lstrip()
    if not stripped:
        raise InputError(f"{name}: the file is empty")
    if stripped[0] in "{[":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{name}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
        return parse_json_document(name, document)
    return parse_hunting_csv(name, text)


def parse_json_document(name: str, document: Any) -> Inputs:
    if isinstance(document, dict):
        schema = document.get("schema")
        if schema == SNAPSHOT_SCHEMA:
            return parse_snapshot(name, document)
        if schema == COLLECTOR_SCHEMA:
            return _collector_documents(name, [document])
        if isinstance(schema, str) and "/" in schema:
            raise InputError(f"{name}: unsupported document schema {schema!r}")
        hunting = _hunting_table(document)
        if hunting is not None:
            return parse_hunting_rows(name, hunting)
        value = document.get("value")
        if isinstance(value, list):
            return _records(name, value)
        raise InputError(
            f"{name}: not a deviceavinfo page, hunting result, collector document or snapshot"
        )
    if isinstance(document, list):
        return _records(name, document)
    raise InputError(f"{name}: expected a JSON object or array")


def parse_tenant(document: Any, where: str = "tenant") -> TenantSettings:
    """The ``--tenant`` file: settings the operator declares. Unknown keys, wrong types: errors."""
    if not isinstance(document, dict):
        raise InputError(f"{where}: expected a JSON object")
    booleans = {
        "edrBlockMode": "edr_block_mode",
        "customNetworkIndicators": "custom_network_indicators",
        "allowOrBlockFile": "allow_or_block_file",
        "mdaEnforceAppAccess": "mda_enforce_app_access",
    }
    allowed = {*booleans, "mdeLicense", "configured"}
    unknown = sorted(set(document) - allowed)
    if unknown:
        raise InputError(f"{where}: unknown settings {unknown}; known: {sorted(allowed)}")

    values: dict[str, Any] = {}
    for key, attr in booleans.items():
        value = document.get(key)
        if value is not None and not isinstance(value, bool):
            raise InputError(f"{where}: {key} must be true, false or null, got {value!r}")
        values[attr] = value
    license_ = document.get("mdeLicense")
    if license_ not in (None, "P1", "P2"):
        raise InputError(f"{where}: mdeLicense must be 'P1' or 'P2', got {license_!r}")
    values["mde_license"] = license_
    configured = document.get("configured")
    if configured is not None:
        if not isinstance(configured, list) or not all(isinstance(c, str) for c in configured):
            raise InputError(f"{where}: configured must be a list of capability ids")
        values["configured"] = frozenset(configured)
    return TenantSettings(**values)


# --- snapshot ----------------------------------------------------------------------------------


def parse_snapshot(name: str, snapshot: Mapping[str, Any]) -> Inputs:
    """A snapshot parsed whole (a file in another layout than the pipeline writes)."""
    rejected: list[RejectedRecord] = []

    def records() -> Iterator[tuple[str, Any]]:
        for key in SNAPSHOT_SECTIONS:
            section = snapshot.get(key) or []
            if not isinstance(section, list):
                rejected.append(RejectedRecord(f"{name}:{key}", None, key, "expected a list"))
                continue
            for record in section:
                yield key, record

    out = parse_snapshot_records(
        name, records(), indicators_listed=isinstance(snapshot.get("indicators"), list)
    )
    out.rejected[:0] = rejected
    return out


def parse_snapshot_records(
    name: str,
    records: Iterable[tuple[str, Any]],
    *,
    keep: Callable[[str], bool] | None = None,
    indicators_listed: bool = True,
) -> Inputs:
    """A snapshot's ``(section, record)`` pairs, in any order, read one at a time.

    Devices come from the AV health export, hunting (a device's newest row wins) and collector
    documents; the machine list adds each device's Entra id; the indicators are kept whole.
    ``keep`` limits the devices (and the machine list) to the ids it accepts. Without
    ``indicators_listed`` (a snapshot with no indicators list at all), which indicator kinds the
    tenant uses is not known, rather than known to be none.
    """
    out = Inputs()
    by_section: dict[str, list[DeviceFacts]] = {"deviceavinfo": [], "collectorDocuments": []}
    newest: dict[str, tuple[str, DeviceFacts]] = {}
    aad_ids: dict[str, str] = {}
    indicators: list[Any] | None = None
    positions = dict.fromkeys(SNAPSHOT_SECTIONS, 0)
    readers = {
        "deviceavinfo": facts_from_deviceavinfo,
        "tvmInfoGathering": facts_from_hunting,
        "collectorDocuments": facts_from_collector,
    }

    for section, record in records:
        position = positions.get(section)
        if position is None:
            continue  # not a device or tenant section: nothing here reads it
        positions[section] = position + 1
        if section == "machines":
            if isinstance(record, dict) and isinstance(record.get("id"), str):
                aad = record.get("aadDeviceId")
                if aad and (keep is None or keep(record["id"])):
                    aad_ids[record["id"]] = aad
            continue
        if section == "indicators":
            indicators = indicators if indicators is not None else []
            indicators.append(record)
            continue
        where = f"{name}:{section}[{position}]"
        if not isinstance(record, dict):
            out.rejected.append(RejectedRecord(where, None, None, "record is not an object"))
            continue
        if keep is not None:
            # Skip another shard's device before the (costlier) facts are built. The facts
            # functions read the id the same way, so a record that passes here is kept; one
            # without a usable id is read, so that it is rejected with its reason.
            device_id = _DEVICE_ID_OF[section](record)
            if isinstance(device_id, str) and device_id.strip() and not keep(device_id):
                continue
        facts = readers[section](record, where)
        if isinstance(facts, RejectedRecord):
            out.rejected.append(facts)
        elif section == "tvmInfoGathering":
            _keep_newest(newest, record, facts)
        else:
            by_section[section].append(facts)

    devices = [
        *by_section["deviceavinfo"],
        *(facts for _, facts in newest.values()),
        *by_section["collectorDocuments"],
    ]
    out.devices = [
        dataclasses.replace(d, aad_device_id=aad_ids[d.device_id]) if d.device_id in aad_ids else d
        for d in devices
    ]
    if indicators_listed or indicators is not None:
        out.indicators = indicators or []
        out.indicator_kinds = _indicator_kinds(out.indicators)
    return out


def _indicator_kinds(indicators: list[Any]) -> set[str]:
    kinds: set[str] = set()
    for record in indicators:
        if isinstance(record, dict):
            kind = _INDICATOR_KINDS.get(str(record.get("indicatorType")))
            if kind:
                kinds.add(kind)
            if kind == "url" and _is_mda_indicator(record):
                kinds.add("mda")
    return kinds


def _is_mda_indicator(record: Mapping[str, Any]) -> bool:
    # Defender for Cloud Apps creates the indicators for unsanctioned apps itself; they carry
    # the app's name and a creator that is not a user.
    source = f"{record.get('createdBySource', '')} {record.get('createdBy', '')}".lower()
    return bool(record.get("application")) or "cloud app" in source or "mcas" in source


# --- MDE AV health export -----------------------------------------------------------------------


def _records(name: str, records: list[Any]) -> Inputs:
    """A list whose kind is told by its first usable record."""
    for record in records:
        if isinstance(record, dict):
            if record.get("schema") == COLLECTOR_SCHEMA:
                return _collector_documents(name, records)
            if "indicatorValue" in record:
                raise InputError(f"{name}: this is an indicators list, not device data")
            break
    return _deviceavinfo_records(name, records)


def _deviceavinfo_records(name: str, records: list[Any]) -> Inputs:
    out = Inputs()
    out.devices.extend(facts for _, facts in _each(name, records, facts_from_deviceavinfo, out))
    return out


def _each(
    name: str,
    records: list[Any],
    read: Callable[[Mapping[str, Any], str], DeviceFacts | RejectedRecord],
    out: Inputs,
) -> Iterator[tuple[Mapping[str, Any], DeviceFacts]]:
    """Each readable record with its facts; unreadable ones go to ``out.rejected``."""
    for index, record in enumerate(records):
        where = f"{name}[{index}]" if len(records) > 1 else name
        if not isinstance(record, dict):
            out.rejected.append(RejectedRecord(where, None, None, "record is not an object"))
            continue
        facts = read(record, where)
        if isinstance(facts, RejectedRecord):
            out.rejected.append(facts)
        else:
            yield record, facts


def _deviceavinfo_id(record: Mapping[str, Any]) -> Any:
    return record.get("id") or record.get("machineId")


def _hunting_id(row: Mapping[str, Any]) -> Any:
    return row.get("DeviceId")


def _collector_id(document: Mapping[str, Any]) -> Any:
    device = document.get("device")
    if not isinstance(device, dict):
        return None
    return device.get("mdeDeviceId") or device.get("name")


# Where each snapshot section keeps the device id: the same reads the facts functions make.
_DEVICE_ID_OF: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "deviceavinfo": _deviceavinfo_id,
    "tvmInfoGathering": _hunting_id,
    "collectorDocuments": _collector_id,
}


def facts_from_deviceavinfo(record: Mapping[str, Any], where: str) -> DeviceFacts | RejectedRecord:
    device_id = _deviceavinfo_id(record)
    if not isinstance(device_id, str) or not device_id.strip():
        return RejectedRecord(where, None, "id", "missing device id (id / machineId)")

    problems: list[str] = []
    state, reason, code = decode_av_mode(record.get("avMode"))
    if code not in AV_MODE_CODES:
        problems.append(reason)
    platform = platform_from_os(record.get("osKind"), record.get("osPlatform"))
    if platform is None:
        problems.append(
            f"platform not recognised (osKind {record.get('osKind')!r}, "
            f"osPlatform {record.get('osPlatform')!r})"
        )

    return DeviceFacts(
        device_id=device_id,
        device_name=_text(record.get("computerDnsName")) or device_id,
        platform=platform,
        state=state,
        mode_source=ModeSource.DEVICEAVINFO,
        mode_reason=reason,
        av_mode_code=code,
        raw_mode=_text(record.get("avMode")),
        os_version=_text(record.get("osVersion")),
        onboarded=True,  # the AV health export lists onboarded devices only
        platform_version=_text(record.get("avPlatformVersion")),
        engine_version=_text(record.get("avEngineVersion")),
        problems=tuple(problems),
    )


# --- advanced hunting ---------------------------------------------------------------------------


def _hunting_table(document: Mapping[str, Any]) -> list[Any] | None:
    for schema_key, results_key in (("Schema", "Results"), ("schema", "results")):
        if schema_key in document and isinstance(document.get(results_key), list):
            results: list[Any] = document[results_key]
            return results
    return None


def parse_hunting_csv(name: str, text: str) -> Inputs:
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    if "DeviceId" not in header or "AdditionalFields" not in header:
        raise InputError(
            f"{name}: not recognised: CSV needs DeviceId and AdditionalFields columns "
            "(a DeviceTvmInfoGathering export)"
        )
    return parse_hunting_rows(name, list(reader))


def parse_hunting_rows(name: str, rows: list[Any]) -> Inputs:
    """``DeviceTvmInfoGathering`` rows; a device's newest row wins."""
    out = Inputs()
    newest: dict[str, tuple[str, DeviceFacts]] = {}
    for row, facts in _each(name, rows, facts_from_hunting, out):
        _keep_newest(newest, row, facts)
    out.devices.extend(facts for _, facts in newest.values())
    return out


def _keep_newest(
    newest: dict[str, tuple[str, DeviceFacts]], row: Mapping[str, Any], facts: DeviceFacts
) -> None:
    """Keep ``facts`` if its row is the device's newest so far (a later row wins a tie)."""
    stamp = str(row.get("Timestamp") or "")
    seen = newest.get(facts.device_id)
    if seen is None or stamp >= seen[0]:
        newest[facts.device_id] = (stamp, facts)


def facts_from_hunting(row: Mapping[str, Any], where: str) -> DeviceFacts | RejectedRecord:
    device_id = _hunting_id(row)
    if not isinstance(device_id, str) or not device_id.strip():
        return RejectedRecord(where, None, "DeviceId", "missing DeviceId")

    fields = row.get("AdditionalFields")
    if isinstance(fields, str):
        try:
            fields = json.loads(fields) if fields.strip() else {}
        except json.JSONDecodeError:
            return RejectedRecord(where, device_id, "AdditionalFields", "not valid JSON")
    if not isinstance(fields, dict):
        return RejectedRecord(where, device_id, "AdditionalFields", "expected a JSON object")

    problems: list[str] = []
    raw_mode = fields.get("AvMode")
    if isinstance(raw_mode, int) and not isinstance(raw_mode, bool):
        # Some exports render the code as a number; the meaning is the same code.
        raw_mode = str(raw_mode)
    state, reason, code = decode_av_mode(raw_mode)
    if code not in AV_MODE_CODES:
        problems.append(reason)
    platform = platform_from_os(None, row.get("OSPlatform"))
    if platform is None:
        problems.append(f"platform not recognised (OSPlatform {row.get('OSPlatform')!r})")

    return DeviceFacts(
        device_id=device_id,
        device_name=_text(row.get("DeviceName")) or device_id,
        platform=platform,
        state=state,
        mode_source=ModeSource.HUNTING,
        mode_reason=f"DeviceTvmInfoGathering {reason}",
        av_mode_code=code,
        raw_mode=_text(raw_mode),
        onboarded=True,
        platform_version=_text(fields.get("AvPlatformVersion")),
        engine_version=_text(fields.get("AvEngineVersion")),
        cloud_protection=as_bool(fields.get("CloudProtectionState")),
        problems=tuple(problems),
    )


# --- endpoint collector ---------------------------------------------------------------------------


def _collector_documents(name: str, documents: list[Any]) -> Inputs:
    out = Inputs()
    out.devices.extend(facts for _, facts in _each(name, documents, facts_from_collector, out))
    return out


def facts_from_collector(document: Any, where: str) -> DeviceFacts | RejectedRecord:
    if not isinstance(document, dict) or document.get("schema") != COLLECTOR_SCHEMA:
        return RejectedRecord(where, None, "schema", f"expected schema {COLLECTOR_SCHEMA!r}")
    sections: dict[str, dict[str, Any]] = {}
    for key in ("device", "mpComputerStatus", "mpPreference", "registry", "services"):
        value = document.get(key)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            return RejectedRecord(where, None, key, "expected an object")
        sections[key] = value
    device, status, prefs = (
        sections["device"],
        sections["mpComputerStatus"],
        sections["mpPreference"],
    )
    registry, services = sections["registry"], sections["services"]

    device_id = _collector_id(document)
    if not isinstance(device_id, str) or not device_id.strip():
        return RejectedRecord(where, None, "device.mdeDeviceId", "missing device id and name")

    problems: list[str] = []
    onboarded = device.get("onboarded")
    if not isinstance(onboarded, bool):
        problems.append(f"device.onboarded should be true or false, got {onboarded!r}")
        onboarded = None
    state, reason = decode_running_mode(status.get("AMRunningMode"), onboarded)
    if state is State.OTHER:
        problems.append(reason)
    platform = platform_from_caption(device.get("productType"), device.get("osCaption"))
    if platform is None:
        problems.append("productType/osCaption do not say client or server")

    network_protection = decode_network_protection(prefs.get("EnableNetworkProtection"))
    if network_protection is NetworkProtection.UNKNOWN and "EnableNetworkProtection" in prefs:
        problems.append(
            f"EnableNetworkProtection {prefs.get('EnableNetworkProtection')!r} is not 0, 1 or 2"
        )
    maps = prefs.get("MAPSReporting")
    maps_level = as_int(maps)
    if maps_level is None and isinstance(maps, str):
        maps_level = {"disabled": 0, "basic": 1, "advanced": 2}.get(maps.strip().lower())

    third_party = document.get("thirdPartyAv") or []
    names = tuple(
        str(p.get("displayName"))
        for p in third_party
        if isinstance(p, dict)
        and isinstance(p.get("displayName"), str)
        and is_third_party_av(p["displayName"])
    )

    return DeviceFacts(
        device_id=device_id,
        device_name=_text(device.get("name")) or device_id,
        platform=platform,
        state=state,
        mode_source=ModeSource.COLLECTOR,
        mode_reason=reason,
        av_mode_code=STATE_CODES.get(state),
        raw_mode=_text(status.get("AMRunningMode")),
        os_version=_text(device.get("osVersion")),
        onboarded=onboarded,
        platform_version=_text(status.get("AMProductVersion")),
        engine_version=_text(status.get("AMEngineVersion")),
        network_protection=network_protection,
        cloud_protection=None if maps_level is None else maps_level > 0,
        behavior_monitoring=as_bool(status.get("BehaviorMonitorEnabled")),
        real_time_protection_reported=as_bool(status.get("RealTimeProtectionEnabled")),
        tamper_protected=as_bool(status.get("IsTamperProtected")),
        allow_np_on_server=_flag(registry.get("AllowNetworkProtectionOnWinServer")),
        allow_np_down_level=_flag(registry.get("AllowNetworkProtectionDownLevel")),
        force_passive_registry=as_int(registry.get("ForceDefenderPassiveMode")),
        misspelled_force_passive=as_int(registry.get("ForcePassiveMode")),
        passive_remediation=as_int(registry.get("PassiveRemediation")),
        wsc_service_state=_text(services.get("wscsvc")),
        third_party_av=names,
        problems=tuple(problems),
    )


def _flag(value: Any) -> bool:
    # A registry value that is absent (null) is the same as "not 1" for these switches.
    return as_int(value) == 1


# --- merging ----------------------------------------------------------------------------------


def merge_devices(devices: list[DeviceFacts]) -> list[DeviceFacts]:
    """One facts record per device: the most direct source decides, others fill gaps."""
    by_id: dict[str, DeviceFacts] = {}
    for facts in devices:
        seen = by_id.get(facts.device_id)
        if seen is None:
            by_id[facts.device_id] = facts
            continue
        first, second = sorted((seen, facts), key=lambda f: _SOURCE_PRIORITY[f.mode_source])
        by_id[facts.device_id] = _fill(first, second)
    return list(by_id.values())


def _fill(primary: DeviceFacts, other: DeviceFacts) -> DeviceFacts:
    updates: dict[str, Any] = {}
    for name in ("aad_device_id", "platform_version", "engine_version", "os_version"):
        if getattr(primary, name) is None and getattr(other, name) is not None:
            updates[name] = getattr(other, name)
    if primary.platform is None and other.platform is not None:
        updates["platform"] = other.platform
    if primary.state is not other.state:
        updates["mode_reason"] = (
            f"{primary.mode_reason} (the {other.mode_source.value} source says "
            f"{other.state.value}; the {primary.mode_source.value} source is preferred)"
        )
    return dataclasses.replace(primary, **updates) if updates else primary


def _extend(into: Inputs, more: Inputs) -> None:
    into.devices.extend(more.devices)
    into.rejected.extend(more.rejected)
    if more.indicator_kinds is not None:
        into.indicator_kinds = (into.indicator_kinds or set()) | more.indicator_kinds
    if more.indicators is not None:
        into.indicators = (into.indicators or []) + more.indicators


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None
