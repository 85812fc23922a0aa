"""The Contoso fleet: deterministic, in the described mix, with invertible identifiers."""

from __future__ import annotations

from collections import Counter

import pytest

from pipeline.lab.collector_docs import collector_document, sample_devices
from pipeline.lab.fleet import MAX_DEVICES, Fleet
from pipeline.lab.indicators import contoso_indicators


@pytest.fixture(scope="module")
def contoso() -> Fleet:
    return Fleet()


def test_same_seed_same_fleet_other_seed_other_fleet() -> None:
    a, b, c = Fleet(1_500, seed=1), Fleet(1_500, seed=1), Fleet(1_500, seed=2)

    assert [a.deviceavinfo_record(i) for i in range(0, 1_500, 97)] == [
        b.deviceavinfo_record(i) for i in range(0, 1_500, 97)
    ]
    assert a.deviceavinfo_record(5)["id"] != c.deviceavinfo_record(5)["id"]


def test_contoso_mix_matches_the_scenario(contoso: Fleet) -> None:
    records = [contoso.deviceavinfo_record(i) for i in range(contoso.size)]
    modes = Counter(r["avMode"] for r in records)
    kinds = Counter(r["osKind"] for r in records)
    servers = [r for r in records if r["osPlatform"].startswith("WindowsServer")]

    assert contoso.size == 8_000
    assert modes["1"] > len(records) / 2  # Falcon primary on most devices: Defender passive
    assert modes["0"] > 1_000
    assert modes["4"] > 400
    assert modes["2"] > 200
    assert 0 < modes["3"] < 60
    assert 0 < modes[""] < 60
    assert 0 < modes["5"] < 60
    assert 200 <= len(servers) <= 400  # a few hundred servers
    assert {r["osPlatform"] for r in servers} == {
        "WindowsServer2012R2",
        "WindowsServer2016",
        "WindowsServer2019",
        "WindowsServer2022",
        "WindowsServer2025",
    }
    assert kinds["mac"] > 100
    assert kinds["linux"] > 100
    assert all(r["avIsSignatureUpToDate"] in ("True", "False", "Unknown") for r in records)


def test_servers_both_with_and_without_force_passive(contoso: Fleet) -> None:
    servers = [d for d in contoso.devices() if d.server]
    forced = [d for d in servers if d.force_passive == 1]
    both_active = [d for d in servers if d.av_mode == "0" and d.third_party_av]

    assert forced
    assert all(d.av_mode in ("1", "4") for d in forced)
    assert both_active
    assert all(d.force_passive is None for d in both_active)
    assert any(d.force_passive_misspelled == 1 for d in both_active)


def test_some_devices_are_too_old_for_edr_block_mode_and_a_few_lack_entra_ids(
    contoso: Fleet,
) -> None:
    devices = list(contoso.devices())
    old = [d for d in devices if d.platform_version < "4.18.2001.10" and d.os_kind == "windows"]
    no_entra = [d for d in devices if d.aad_device_id is None]

    assert 100 < len(old) < 600
    assert all(d.engine_version < "1.1.16700.2" for d in old)
    assert 0 < len(no_entra) < 120


def test_identifiers_map_back_to_their_device(contoso: Fleet) -> None:
    for index in (0, 1, 999, 4_321, 7_999):
        device = contoso.device(index)
        assert contoso.index_of_machine_id(device.machine_id) == index
        if device.aad_device_id:
            assert contoso.index_of_aad_device_id(device.aad_device_id) == index
            assert contoso.index_of_entra_object(device.entra_object_id or "") == index

    assert contoso.index_of_machine_id("0" * 40) is None
    assert contoso.index_of_aad_device_id("not-a-guid") is None


def test_machines_include_discovered_devices_with_documented_values(contoso: Fleet) -> None:
    onboarded = contoso.machine_record(10)
    discovered = contoso.machine_record(contoso.size)

    assert onboarded["onboardingStatus"] == "Onboarded"
    assert onboarded["healthStatus"] in (
        "Active",
        "Inactive",
        "ImpairedCommunication",
        "NoSensorData",
    )
    assert discovered["onboardingStatus"] == "CanBeOnboarded"
    assert contoso.discovered == 160


def test_fleet_size_is_bounded() -> None:
    assert Fleet(MAX_DEVICES).device(MAX_DEVICES - 1).index == MAX_DEVICES - 1
    with pytest.raises(ValueError, match="500000"):
        Fleet(MAX_DEVICES + 1)


def test_indicators_cover_phishing_allow_files_and_cloud_apps() -> None:
    indicators = contoso_indicators()
    by_title = {i["title"]: i for i in indicators}
    unsanctioned = [i for i in indicators if i["title"].startswith("Unsanctioned app")]
    monitored = [i for i in indicators if i["title"].startswith("Monitored app")]

    assert {i["application"] for i in unsanctioned} == {"Dropbox", "WeTransfer", "Mega"}
    assert all(i["action"] == "Block" and i["generateAlert"] for i in unsanctioned)
    assert monitored
    assert all(i["action"] == "Warn" for i in monitored)
    assert {i["indicatorType"] for i in indicators} >= {
        "Url",
        "DomainName",
        "IpAddress",
        "FileSha256",
        "FileSha1",
        "CertificateThumbprint",
    }
    assert {i["action"] for i in indicators} >= {"Block", "BlockAndRemediate", "Allowed", "Warn"}
    assert any(i["expirationTime"] and i["expirationTime"] < "2026-12-03" for i in indicators)
    assert len({i["id"] for i in indicators}) == len(indicators)
    assert by_title["Unsanctioned app: Mega"]["indicatorType"] == "DomainName"


def test_collector_samples_show_the_endpoint_only_cases(contoso: Fleet) -> None:
    documents = [collector_document(d) for d in sample_devices(contoso)]
    modes = {d["mpComputerStatus"]["AMRunningMode"] for d in documents}

    assert {"Normal", "Passive", "Passive Mode", "EDR Block Mode", "SxS Passive Mode"} <= modes
    assert any(d["registry"]["ForcePassiveMode"] == 1 for d in documents)
    assert any(
        d["device"]["productType"] == "server"
        and d["registry"]["ForceDefenderPassiveMode"] is None
        and d["thirdPartyAv"]
        for d in documents
    )
    assert any(d["services"]["wscsvc"] == "Disabled" and d["thirdPartyAv"] for d in documents)
    assert any(
        d["mpComputerStatus"]["AMRunningMode"].startswith("Passive")
        and d["mpComputerStatus"]["RealTimeProtectionEnabled"]
        for d in documents
    )
    assert any(d["mpPreference"]["EnableNetworkProtection"] == 2 for d in documents)
