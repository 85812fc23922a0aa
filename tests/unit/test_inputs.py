"""Input files are recognised from their content; bad records are rejected one by one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.inputs import InputError, parse_document, parse_tenant, read_files
from pipeline.model import ModeSource, NetworkProtection, Platform, State
from tests.support.devices import collector_doc

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def _json(document: object) -> bytes:
    return json.dumps(document).encode()


def test_deviceavinfo_page_keeps_good_records_and_names_the_bad_one() -> None:
    inputs = read_files([SAMPLES / "deviceavinfo.json"])
    assert len(inputs.devices) == 9
    assert [(r.source, r.field) for r in inputs.rejected] == [("deviceavinfo.json[9]", "id")]
    worded = next(d for d in inputs.devices if d.device_name == "lab-pc-13.contoso.com")
    assert worded.state is State.OTHER
    assert any("'Passive'" in p for p in worded.problems)


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ("not an object", None),
        ({"osKind": "windows", "avMode": "1"}, "id"),
        ({"id": 42, "avMode": "1"}, "id"),
    ],
)
def test_bad_deviceavinfo_records_are_rejected_not_fatal(record: object, field: str | None) -> None:
    good = {"id": "m1", "osKind": "windows", "osPlatform": "Windows10", "avMode": "0"}
    inputs = parse_document("page.json", _json({"value": [record, good]}))
    assert [d.device_id for d in inputs.devices] == ["m1"]
    assert inputs.rejected[0].field == field
    assert inputs.rejected[0].source == "page.json[0]"


def test_wrong_type_and_unknown_code_become_other_with_the_reason() -> None:
    page = {
        "value": [
            {"id": "a", "osKind": "windows", "osPlatform": "Windows10", "avMode": 1},
            {"id": "b", "osKind": "windows", "osPlatform": "Windows10", "avMode": "9"},
            {"id": "c", "osKind": "plan9", "osPlatform": "Plan9", "avMode": "0"},
        ]
    }
    devices = {d.device_id: d for d in parse_document("p.json", _json(page)).devices}
    assert devices["a"].state is State.OTHER
    assert "must be a string" in devices["a"].problems[0]
    assert devices["b"].state is State.OTHER
    assert "not a code Microsoft documents" in devices["b"].problems[0]
    assert devices["c"].platform is None
    assert "platform not recognised" in devices["c"].problems[0]


def test_hunting_csv_export_newest_row_wins() -> None:
    csv_text = (
        "Timestamp,DeviceId,DeviceName,OSPlatform,AdditionalFields\n"
        '2026-12-01T00:00:00Z,d1,pc1,Windows11,"{""AvMode"":""0"",""AvPlatformVersion"":""4.18.1""}"\n'
        '2026-12-02T00:00:00Z,d1,pc1,Windows11,"{""AvMode"":""1"",""CloudProtectionState"":""On""}"\n'
        "2026-12-02T00:00:00Z,d2,srv,WindowsServer2019,not-json\n"
    )
    inputs = parse_document("export.csv", csv_text.encode())
    assert [(d.device_id, d.state) for d in inputs.devices] == [("d1", State.PASSIVE)]
    assert inputs.devices[0].mode_source is ModeSource.HUNTING
    assert inputs.devices[0].cloud_protection is True
    assert [(r.record_id, r.field) for r in inputs.rejected] == [("d2", "AdditionalFields")]


@pytest.mark.parametrize(
    ("schema_key", "results_key"), [("Schema", "Results"), ("schema", "results")]
)
def test_hunting_json_in_either_case(schema_key: str, results_key: str) -> None:
    document = {
        schema_key: [{"Name": "DeviceId", "Type": "String"}],
        results_key: [
            {
                "DeviceId": "d9",
                "DeviceName": "mac9",
                "OSPlatform": "macOS",
                "AdditionalFields": {"AvMode": "1"},
            }
        ],
    }
    inputs = parse_document("hunt.json", _json(document))
    assert inputs.devices[0].platform is Platform.MACOS
    assert inputs.devices[0].state is State.PASSIVE


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, NetworkProtection.BLOCK),
        ("Enabled", NetworkProtection.BLOCK),
        (2, NetworkProtection.AUDIT),
        ("AuditMode", NetworkProtection.AUDIT),
        (0, NetworkProtection.OFF),
        ("Disabled", NetworkProtection.OFF),
    ],
)
def test_collector_enums_as_numbers_or_names(value: object, expected: NetworkProtection) -> None:
    doc = collector_doc(preference={"EnableNetworkProtection": value, "MAPSReporting": "Advanced"})
    device = parse_document("doc.json", _json(doc)).devices[0]
    assert device.network_protection is expected
    assert device.cloud_protection is True


@pytest.mark.parametrize(
    ("spelling", "state"),
    [
        ("Normal", State.ACTIVE),
        ("Passive", State.PASSIVE),
        ("Passive Mode", State.PASSIVE),
        ("passive  mode", State.PASSIVE),
        ("EDR Block Mode", State.EDR_BLOCK),
        ("SxS Passive Mode", State.LIMITED_PERIODIC_SCANNING),
        ("Not running", State.DISABLED),
        ("Hybrid", State.OTHER),
    ],
)
def test_running_mode_spellings(spelling: str, state: State) -> None:
    device = parse_document("doc.json", _json(collector_doc(running_mode=spelling))).devices[0]
    assert device.state is state
    assert device.raw_mode == spelling


def test_collector_list_and_broken_document_in_one_file() -> None:
    broken = collector_doc()
    broken["mpComputerStatus"] = "oops"
    inputs = parse_document("docs.json", _json([collector_doc(), broken]))
    assert len(inputs.devices) == 1
    assert inputs.rejected[0].field == "mpComputerStatus"


def test_defender_itself_is_not_a_third_party_antivirus() -> None:
    doc = collector_doc(third_party=["CrowdStrike Falcon Sensor"])
    device = parse_document("doc.json", _json(doc)).devices[0]
    assert device.third_party_av == ("CrowdStrike Falcon Sensor",)


def test_snapshot_merges_sources_and_reads_indicator_kinds(tmp_path: Path) -> None:
    device_id = "4f1c0e6a9b2d4c8e8f7a6b5c4d3e2f1a0b9c8d7e"
    snapshot = {
        "schema": "mde-snapshot/1",
        "deviceavinfo": [
            {"id": device_id, "osKind": "windows", "osPlatform": "Windows11", "avMode": "0"},
            {"id": "other", "osKind": "linux", "osPlatform": "Linux", "avMode": "1"},
        ],
        "machines": [{"id": device_id, "aadDeviceId": "aad-1"}],
        "tvmInfoGathering": [],
        "collectorDocuments": [collector_doc(running_mode="Passive", mde_id=device_id)],
        "indicators": [
            {"id": "1", "indicatorType": "DomainName", "application": "Dropbox"},
            {"id": "2", "indicatorType": "IpAddress"},
        ],
    }
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(snapshot))
    inputs = read_files([path])
    merged = {d.device_id: d for d in inputs.devices}
    assert len(merged) == 2
    assert merged[device_id].mode_source is ModeSource.COLLECTOR
    assert merged[device_id].state is State.PASSIVE
    assert merged[device_id].aad_device_id == "aad-1"
    assert "deviceavinfo source says active" in merged[device_id].mode_reason
    assert inputs.indicator_kinds == {"url", "ip", "mda"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"{not json", "not valid JSON"),
        (b'{"hello": 1}', "not a deviceavinfo page"),
        (b'{"schema": "other/9"}', "unsupported document schema"),
        (b"a,b\n1,2\n", "CSV needs DeviceId"),
        (b'{"value": [{"indicatorValue": "x"}]}', "indicators list"),
    ],
)
def test_unrecognised_files_are_a_clear_error(content: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_document("f", content)


def test_tenant_settings_are_validated() -> None:
    tenant = parse_tenant({"edrBlockMode": True, "mdeLicense": "P2", "configured": ["asr_rules"]})
    assert tenant.edr_block_mode is True
    assert tenant.configured == frozenset({"asr_rules"})
    assert tenant.custom_network_indicators is None
    with pytest.raises(InputError, match="unknown settings"):
        parse_tenant({"edrBlockMod": True})
    with pytest.raises(InputError, match="mdeLicense"):
        parse_tenant({"mdeLicense": "E5"})
    with pytest.raises(InputError, match="must be true, false or null"):
        parse_tenant({"edrBlockMode": "yes"})
