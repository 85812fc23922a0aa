"""The documented facts about Defender modes and capabilities, one test each.

The numbers in the test names follow the project's list of facts a test suite must pin down
(README, "What the verdicts rest on"). Facts about how Windows itself picks a mode (a GPO applied
before onboarding, a third-party antivirus uninstalled later) are outside what the pipeline
decides: it reads the mode the device reports. Those are represented by tests that the pipeline
never infers a mode from surrounding facts. Indicator-level facts (full-path URLs, internal IPs,
the 15,000 limit, Allow over Block) are pinned by the blocklist tests; event-level facts (which
DeviceEvents action types carry a block) by the detection tests.
"""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.evaluate import Evaluator, edr_block_eligibility, findings_for
from pipeline.inputs import facts_from_collector, facts_from_deviceavinfo, facts_from_hunting
from pipeline.matrix import load_matrix
from pipeline.model import (
    DeviceCoverage,
    DeviceFacts,
    ModeSource,
    NetworkProtection,
    Platform,
    State,
    Status,
    TenantSettings,
)
from pipeline.modes import decode_av_mode, decode_running_mode, default_enforcement_state
from tests.support.devices import collector_doc, device, full_tenant

MATRIX = load_matrix()


def evaluate(facts: DeviceFacts, tenant: TenantSettings | None = None) -> DeviceCoverage:
    return Evaluator(MATRIX, tenant or full_tenant()).evaluate(facts)


def status(coverage: DeviceCoverage, capability: str) -> Status:
    return coverage.capabilities[capability].status


def codes(coverage: DeviceCoverage) -> set[str]:
    return {f.code for f in coverage.findings}


# 1 ------------------------------------------------------------------------------------------
def test_01_onboarded_client_with_third_party_av_reports_passive_and_rtp_does_not_block() -> None:
    doc = collector_doc(running_mode="Passive", third_party=["CrowdStrike Falcon Sensor"])
    facts = facts_from_collector(doc, "doc")
    assert isinstance(facts, DeviceFacts)
    assert facts.state is State.PASSIVE
    coverage = evaluate(facts)
    assert status(coverage, "real_time_protection") is Status.NOT_ENFORCED
    assert "WSC_DISABLED_WITH_THIRD_PARTY_AV" not in codes(coverage)


# 2 ------------------------------------------------------------------------------------------
def test_02_not_onboarded_client_with_third_party_av_has_no_mde_capability() -> None:
    doc = collector_doc(running_mode="Not running", onboarded=False, mde_id=None)
    facts = facts_from_collector(doc, "doc")
    assert isinstance(facts, DeviceFacts)
    assert facts.state is State.NOT_ONBOARDED
    coverage = evaluate(facts)
    enforced = {c for c, v in coverage.capabilities.items() if v.status is Status.ENFORCED}
    # Only SmartScreen in Edge, a Windows feature, still protects anything.
    assert enforced == {"web_threat_protection_edge"}


# 3 ------------------------------------------------------------------------------------------
def test_03_smart_app_control_passive_without_onboarding_still_has_no_mde_features() -> None:
    doc = collector_doc(running_mode="Passive", onboarded=False, mde_id=None)
    facts = facts_from_collector(doc, "doc")
    assert isinstance(facts, DeviceFacts)
    coverage = evaluate(facts)
    for cap in MATRIX.capabilities.values():
        if cap.needs_onboarding:
            assert status(coverage, cap.id) in (Status.NOT_ENFORCED, Status.NOT_APPLICABLE), cap.id


# 4 ------------------------------------------------------------------------------------------
def test_04_wsc_disabled_keeps_defender_active_and_is_not_read_as_passive() -> None:
    doc = collector_doc(
        running_mode="Normal", third_party=["Trellix Endpoint Security"], wscsvc="Disabled"
    )
    facts = facts_from_collector(doc, "doc")
    assert isinstance(facts, DeviceFacts)
    assert facts.state is State.ACTIVE
    assert "WSC_DISABLED_WITH_THIRD_PARTY_AV" in codes(evaluate(facts))


def test_04_wsc_running_with_third_party_av_is_no_finding() -> None:
    facts = device(state=State.ACTIVE, third_party_av=("Trellix",), wsc_service_state="Running")
    assert "WSC_DISABLED_WITH_THIRD_PARTY_AV" not in codes(evaluate(facts))


# 5 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("force_passive", [None, 0])
def test_05_server_with_third_party_av_and_no_force_passive_runs_both_engines(
    force_passive: int | None,
) -> None:
    doc = collector_doc(
        running_mode="Normal",
        product_type="server",
        caption="Microsoft Windows Server 2022 Datacenter",
        third_party=["CrowdStrike Falcon Sensor"],
        registry={"ForceDefenderPassiveMode": force_passive},
    )
    facts = facts_from_collector(doc, "doc")
    assert isinstance(facts, DeviceFacts)
    assert facts.state is State.ACTIVE
    assert facts.platform is Platform.WINDOWS_SERVER
    assert "SERVER_BOTH_ENGINES_ACTIVE" in codes(evaluate(facts))


# 6 ------------------------------------------------------------------------------------------
def test_06_server_with_force_passive_reports_passive_without_both_engines_finding() -> None:
    doc = collector_doc(
        running_mode="Passive Mode",
        product_type="server",
        caption="Microsoft Windows Server 2019 Standard",
        third_party=["CrowdStrike Falcon Sensor"],
        registry={"ForceDefenderPassiveMode": 1},
    )
    facts = facts_from_collector(doc, "doc")
    assert isinstance(facts, DeviceFacts)
    assert facts.state is State.PASSIVE
    coverage = evaluate(facts)
    assert "SERVER_BOTH_ENGINES_ACTIVE" not in codes(coverage)
    assert status(coverage, "network_protection") is Status.NOT_ENFORCED


# 7 ------------------------------------------------------------------------------------------
def test_07_force_passive_set_after_defender_went_active_is_flagged() -> None:
    facts = device(
        state=State.ACTIVE,
        platform=Platform.WINDOWS_SERVER,
        force_passive_registry=1,
        third_party_av=("CrowdStrike Falcon Sensor",),
    )
    found = codes(evaluate(facts))
    assert "FORCE_PASSIVE_SET_BUT_ACTIVE" in found
    assert "SERVER_BOTH_ENGINES_ACTIVE" not in found


# 8, 11, 12 -----------------------------------------------------------------------------------
@pytest.mark.parametrize("third_party", [(), ("CrowdStrike Falcon Sensor",)])
def test_08_11_12_mode_is_read_from_the_device_never_inferred_from_surroundings(
    third_party: tuple[str, ...],
) -> None:
    # Whether a GPO, a removed antivirus or DisableAntiSpyware changed the mode, the pipeline
    # trusts what Defender reports: the same report gives the same state either way.
    doc = collector_doc(running_mode="Normal", third_party=list(third_party))
    facts = facts_from_collector(doc, "doc")
    assert isinstance(facts, DeviceFacts)
    assert facts.state is State.ACTIVE


# 9 ------------------------------------------------------------------------------------------
def test_09_misspelled_force_passive_mode_is_a_misconfiguration() -> None:
    doc = collector_doc(
        running_mode="Normal",
        product_type="server",
        caption="Microsoft Windows Server 2019 Standard",
        third_party=["Sophos Intercept X"],
        registry={"ForcePassiveMode": 1},
    )
    facts = facts_from_collector(doc, "doc")
    assert isinstance(facts, DeviceFacts)
    found = codes(evaluate(facts))
    assert "FORCE_PASSIVE_MODE_MISSPELLED" in found
    # The misspelling has no effect, so the server still runs both engines.
    assert "SERVER_BOTH_ENGINES_ACTIVE" in found


# 10 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("os_platform", ["WindowsServer2016", "WindowsServer2012R2"])
def test_10_down_level_servers_in_the_av_health_report_are_their_own_platform(
    os_platform: str,
) -> None:
    record = {"id": "m1", "osKind": "windows", "osPlatform": os_platform, "avMode": "1"}
    facts = facts_from_deviceavinfo(record, "r")
    assert isinstance(facts, DeviceFacts)
    assert facts.platform is Platform.WINDOWS_SERVER_DOWNLEVEL
    assert facts.state is State.PASSIVE
    # Web content filtering needs Server 2019 or later, even in Edge.
    assert status(evaluate(facts), "web_content_filtering") is Status.NOT_ENFORCED


# 13 -----------------------------------------------------------------------------------------
def test_13_edr_block_mode_reports_as_its_own_state_only_when_passive() -> None:
    assert decode_running_mode("EDR Block Mode", True)[0] is State.EDR_BLOCK
    assert decode_av_mode("4")[0] is State.EDR_BLOCK
    # Active with EDR in block mode still reports Normal / "0".
    assert decode_running_mode("Normal", True)[0] is State.ACTIVE
    active = evaluate(device(state=State.ACTIVE))
    assert status(active, "edr_block_mode") is Status.NOT_APPLICABLE
    assert status(evaluate(device(state=State.EDR_BLOCK)), "edr_block_mode") is Status.ENFORCED


# 14 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "state"),
    [
        ("0", State.ACTIVE),
        ("1", State.PASSIVE),
        ("2", State.DISABLED),
        ("3", State.OTHER),
        ("", State.OTHER),
        ("4", State.EDR_BLOCK),
        ("5", State.PASSIVE_AUDIT),
    ],
)
def test_14_av_mode_codes_are_numeric_strings(code: str, state: State) -> None:
    decoded, reason, kept = decode_av_mode(code)
    assert decoded is state
    assert kept == code
    assert repr(code) in reason


@pytest.mark.parametrize("value", ["Passive", "Active", "EDR Blocked", "SxS Passive", "7", 1, None])
def test_14_words_numbers_and_unknown_codes_are_never_a_mode(value: object) -> None:
    state, reason, _ = decode_av_mode(value)
    assert state is State.OTHER
    assert reason


# 15 -----------------------------------------------------------------------------------------
def test_15_hunting_av_mode_one_is_passive_and_the_word_is_not() -> None:
    row = {
        "DeviceId": "d1",
        "DeviceName": "pc1",
        "OSPlatform": "Windows11",
        "AdditionalFields": '{"AvMode": "1"}',
    }
    facts = facts_from_hunting(row, "r")
    assert isinstance(facts, DeviceFacts)
    assert facts.state is State.PASSIVE

    worded = facts_from_hunting({**row, "AdditionalFields": '{"AvMode": "Passive"}'}, "r")
    assert isinstance(worded, DeviceFacts)
    assert worded.state is State.OTHER
    assert worded.problems


# 16 -----------------------------------------------------------------------------------------
def test_16_disabled_code_means_no_protection_from_defender() -> None:
    coverage = evaluate(device(state=State.DISABLED))
    for capability in (
        "real_time_protection",
        "cloud_protection",
        "network_protection",
        "indicator_url",
        "indicator_file",
        "asr_rules",
        "on_demand_scan",
        "av_remediation",
    ):
        assert status(coverage, capability) is Status.NOT_ENFORCED, capability
    # The sensor still reports, so the device is not invisible.
    assert status(coverage, "edr_sensor") is Status.ENFORCED


# 17 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("state", [State.PASSIVE, State.EDR_BLOCK])
def test_17_network_protection_in_block_mode_does_nothing_when_passive(state: State) -> None:
    coverage = evaluate(device(state=state, network_protection=NetworkProtection.BLOCK))
    assert status(coverage, "network_protection") is Status.NOT_ENFORCED
    assert "network_protection" in coverage.gaps


# 18 -----------------------------------------------------------------------------------------
def test_18_network_protection_audit_leaves_non_edge_blocks_unenforced() -> None:
    coverage = evaluate(device(state=State.ACTIVE, network_protection=NetworkProtection.AUDIT))
    assert status(coverage, "network_protection") is Status.NOT_ENFORCED
    for capability in ("indicator_url", "indicator_ip", "web_content_filtering"):
        verdict = coverage.capabilities[capability]
        assert verdict.status is Status.PARTIAL, capability
        assert verdict.scope == "Microsoft Edge only"
    assert status(coverage, "mda_unsanctioned_block") is Status.PARTIAL
    assert "NETWORK_PROTECTION_AUDIT" in codes(coverage)


# 19 -----------------------------------------------------------------------------------------
def test_19_custom_network_indicators_off_means_no_url_or_ip_indicators() -> None:
    tenant = dataclasses.replace(full_tenant(), custom_network_indicators=False)
    coverage = evaluate(device(state=State.ACTIVE), tenant)
    for capability in ("indicator_url", "indicator_ip"):
        verdict = coverage.capabilities[capability]
        assert verdict.status is Status.NOT_ENFORCED
        assert "Custom network indicators" in verdict.reason
    assert status(coverage, "network_protection") is Status.ENFORCED


def test_19_custom_network_indicators_undeclared_is_unknown_naming_the_setting() -> None:
    tenant = dataclasses.replace(full_tenant(), custom_network_indicators=None)
    verdict = evaluate(device(state=State.ACTIVE), tenant).capabilities["indicator_url"]
    assert verdict.status is Status.UNKNOWN
    assert "customNetworkIndicators" in verdict.reason


# 20 -----------------------------------------------------------------------------------------
def test_20_server_network_protection_needs_allow_on_win_server() -> None:
    facts = device(
        state=State.ACTIVE,
        platform=Platform.WINDOWS_SERVER,
        network_protection=NetworkProtection.BLOCK,
        allow_np_on_server=False,
    )
    coverage = evaluate(facts)
    verdict = coverage.capabilities["network_protection"]
    assert verdict.status is Status.NOT_ENFORCED
    assert "AllowNetworkProtectionOnWinServer" in verdict.reason
    assert "NETWORK_PROTECTION_SERVER_NOT_ALLOWED" in codes(coverage)

    allowed = evaluate(dataclasses.replace(facts, allow_np_on_server=True))
    assert status(allowed, "network_protection") is Status.ENFORCED


def test_20_down_level_server_also_needs_allow_down_level() -> None:
    facts = device(
        state=State.ACTIVE,
        platform=Platform.WINDOWS_SERVER_DOWNLEVEL,
        allow_np_on_server=True,
        allow_np_down_level=False,
    )
    verdict = evaluate(facts).capabilities["network_protection"]
    assert verdict.status is Status.NOT_ENFORCED
    assert "AllowNetworkProtectionDownLevel" in verdict.reason


# 21 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("state", [State.PASSIVE, State.EDR_BLOCK])
def test_21_asr_cfa_and_pua_do_nothing_when_passive(state: State) -> None:
    coverage = evaluate(device(state=state))
    for capability in ("asr_rules", "controlled_folder_access", "pua_protection"):
        assert status(coverage, capability) is Status.NOT_ENFORCED, capability
        assert capability in coverage.gaps


# 22, 23, 36 ----------------------------------------------------------------------------------
@pytest.mark.parametrize("state", [State.PASSIVE, State.EDR_BLOCK])
def test_22_23_36_file_and_certificate_indicators_do_not_enforce_when_passive(
    state: State,
) -> None:
    # "Allow or block file" is on in the full tenant: it still does not help (fact 36).
    coverage = evaluate(device(state=state))
    assert status(coverage, "indicator_file") is Status.NOT_ENFORCED
    assert status(coverage, "indicator_certificate") is Status.NOT_ENFORCED
    # EDR in block mode ignores indicators, so an Allow indicator does not stop it (fact 23).
    assert "Allow indicator" in coverage.capabilities["indicator_file"].reason


def test_22_file_indicators_enforce_when_active_with_every_prerequisite() -> None:
    coverage = evaluate(device(state=State.ACTIVE))
    assert status(coverage, "indicator_file") is Status.ENFORCED
    assert status(coverage, "indicator_certificate") is Status.ENFORCED


# 24 -----------------------------------------------------------------------------------------
def test_24_web_content_filtering_works_in_edge_only_when_passive() -> None:
    verdict = evaluate(device(state=State.PASSIVE)).capabilities["web_content_filtering"]
    assert verdict.status is Status.PARTIAL
    assert verdict.scope == "Microsoft Edge only"


# 25 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("capability", ["indicator_url", "indicator_ip", "mda_unsanctioned_block"])
def test_25_edge_enforcement_of_network_indicators_when_passive_is_unknown(
    capability: str,
) -> None:
    coverage = evaluate(device(state=State.PASSIVE))
    verdict = coverage.capabilities[capability]
    assert verdict.status is Status.UNKNOWN
    assert verdict.basis == "conflict"
    assert verdict.not_enforced_in == "other browsers and non-browser processes"
    # Certainly not enforced outside Edge, so the device still counts as a gap.
    assert capability in coverage.gaps


# 32 -----------------------------------------------------------------------------------------
def test_32_edr_block_eligibility_needs_every_prerequisite() -> None:
    tenant = full_tenant()
    ok, _ = edr_block_eligibility(device(state=State.PASSIVE), tenant)
    assert ok is True

    misses = {
        "platform": device(state=State.PASSIVE, platform_version="4.18.2001.9"),
        "engine": device(state=State.PASSIVE, engine_version="1.1.16600.7"),
        "cloud-delivered": device(state=State.PASSIVE, cloud_protection=False),
        "Windows": device(state=State.PASSIVE, platform=Platform.LINUX),
        "active or passive": device(state=State.DISABLED),
    }
    for word, facts in misses.items():
        eligible, detail = edr_block_eligibility(facts, tenant)
        assert eligible is False, word
        assert word in detail

    plan1 = dataclasses.replace(tenant, mde_license="P1")
    eligible, detail = edr_block_eligibility(device(state=State.PASSIVE), plan1)
    assert eligible is False
    assert "Plan 2" in detail


def test_32_eligibility_boundaries_are_inclusive() -> None:
    facts = device(
        state=State.PASSIVE, platform_version="4.18.2001.10", engine_version="1.1.16700.2"
    )
    assert edr_block_eligibility(facts, full_tenant())[0] is True


def test_32_passive_device_gets_edr_block_finding_or_too_old_finding() -> None:
    eligible = evaluate(device(state=State.PASSIVE))
    assert "EDR_BLOCK_MODE_MISSING" in codes(eligible)
    old = evaluate(device(state=State.PASSIVE, platform_version="4.18.1911.3"))
    assert "EDR_BLOCK_PLATFORM_TOO_OLD" in codes(old)
    assert "EDR_BLOCK_MODE_MISSING" not in codes(old)
    assert not {"EDR_BLOCK_MODE_MISSING", "EDR_BLOCK_PLATFORM_TOO_OLD"} & codes(
        evaluate(device(state=State.EDR_BLOCK))
    )


# 34 -----------------------------------------------------------------------------------------
def test_34_linux_defaults_to_passive_from_101_23062_and_macos_to_real_time() -> None:
    assert default_enforcement_state(Platform.LINUX, "101.23062.0001") is State.PASSIVE
    assert default_enforcement_state(Platform.LINUX, "101.24092.0004") is State.PASSIVE
    assert default_enforcement_state(Platform.LINUX, "101.23052.0009") is State.ACTIVE
    assert default_enforcement_state(Platform.LINUX, None) is None
    assert default_enforcement_state(Platform.MACOS, "101.24092.0004") is State.ACTIVE


# 35 -----------------------------------------------------------------------------------------
def test_35_unsanctioned_app_blocks_enforce_on_active_devices_with_network_protection() -> None:
    assert status(evaluate(device(state=State.ACTIVE)), "mda_unsanctioned_block") is Status.ENFORCED
    off = dataclasses.replace(full_tenant(), mda_enforce_app_access=False)
    assert status(evaluate(device(state=State.ACTIVE), off), "mda_unsanctioned_block") is (
        Status.NOT_ENFORCED
    )


# 37 -----------------------------------------------------------------------------------------
def test_37_passive_devices_still_take_av_scan_and_isolation() -> None:
    coverage = evaluate(device(state=State.PASSIVE))
    assert status(coverage, "response_av_scan") is Status.ENFORCED
    assert status(coverage, "device_isolation") is Status.ENFORCED


# 38 -----------------------------------------------------------------------------------------
def test_38_passive_devices_update_signatures_on_the_windows_update_cadence() -> None:
    verdict = evaluate(device(state=State.PASSIVE)).capabilities["signature_updates"]
    assert verdict.status is Status.ENFORCED
    assert "Windows Update" in verdict.reason


# 39 -----------------------------------------------------------------------------------------
def test_39_rtp_reading_true_in_passive_mode_is_not_protection() -> None:
    doc = collector_doc(running_mode="Passive", status={"RealTimeProtectionEnabled": True})
    facts = facts_from_collector(doc, "doc")
    assert isinstance(facts, DeviceFacts)
    coverage = evaluate(facts)
    assert status(coverage, "real_time_protection") is Status.NOT_ENFORCED
    assert "PASSIVE_RTP_REPORTS_ENABLED" in codes(coverage)
    assert "PASSIVE_RTP_REPORTS_ENABLED" not in codes(
        evaluate(dataclasses.replace(facts, real_time_protection_reported=False))
    )


# 40 -----------------------------------------------------------------------------------------
def test_40_tamper_protection_guards_passive_mode_too() -> None:
    assert status(evaluate(device(state=State.PASSIVE)), "tamper_protection") is Status.ENFORCED
    off = evaluate(device(state=State.PASSIVE, tamper_protected=False))
    assert status(off, "tamper_protection") is Status.NOT_ENFORCED


def test_findings_are_pure_and_repeatable() -> None:
    facts = device(state=State.PASSIVE, mode_source=ModeSource.COLLECTOR)
    assert list(findings_for(facts, full_tenant())) == list(findings_for(facts, full_tenant()))


# Microsoft's capabilities-by-platform table ---------------------------------------------------
@pytest.mark.parametrize(
    ("capability", "platform", "expected"),
    [
        ("device_control", Platform.WINDOWS_SERVER, Status.NOT_APPLICABLE),
        ("device_control", Platform.LINUX, Status.NOT_APPLICABLE),
        ("device_control", Platform.MACOS, Status.ENFORCED),
        ("tamper_protection", Platform.LINUX, Status.NOT_APPLICABLE),
        ("tamper_protection", Platform.MACOS, Status.ENFORCED),
        ("automated_investigation", Platform.MACOS, Status.NOT_APPLICABLE),
        ("automated_investigation", Platform.LINUX, Status.NOT_APPLICABLE),
        ("edr_block_mode", Platform.LINUX, Status.NOT_APPLICABLE),
        ("asr_rules", Platform.MACOS, Status.NOT_APPLICABLE),
        ("indicator_file", Platform.LINUX, Status.ENFORCED),
    ],
)
def test_capabilities_by_platform_on_an_active_device(
    capability: str, platform: Platform, expected: Status
) -> None:
    assert status(evaluate(device(state=State.ACTIVE, platform=platform)), capability) is expected
