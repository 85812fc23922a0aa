"""Positive and negative cases for every Defender AV state on every platform.

Positive: with every fact known and every prerequisite met, the verdict is the matrix cell's.
Negative: protections that need Defender Antivirus running as the primary antivirus never read
``enforced`` outside the active state, and with a prerequisite missing they never read
``enforced`` anywhere.
"""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.evaluate import Evaluator
from pipeline.matrix import load_matrix
from pipeline.model import DeviceFacts, NetworkProtection, Platform, State, Status
from tests.support.devices import device, full_tenant

MATRIX = load_matrix()
EVALUATOR = Evaluator(MATRIX, full_tenant())
CELLS = [(s, p) for s in State for p in Platform]

# Protections that only Defender Antivirus in active mode enforces.
ACTIVE_ONLY = (
    "real_time_protection",
    "cloud_protection",
    "behavior_monitoring",
    "network_protection",
    "indicator_file",
    "indicator_certificate",
    "asr_rules",
    "controlled_folder_access",
    "pua_protection",
    "tvm_block_vulnerable_app",
)


def _facts(state: State, platform: Platform, **overrides: object) -> DeviceFacts:
    onboarded = state not in (State.NOT_ONBOARDED, State.LIMITED_PERIODIC_SCANNING)
    return device(state=state, platform=platform, onboarded=onboarded, **overrides)


@pytest.mark.parametrize(("state", "platform"), CELLS, ids=str)
def test_positive_full_facts_give_the_cells_verdict(state: State, platform: Platform) -> None:
    coverage = EVALUATOR.evaluate(_facts(state, platform))
    for cap_id, capability in MATRIX.capabilities.items():
        cell = capability.cells[(state, platform)]
        verdict = coverage.capabilities[cap_id]
        if capability.needs_onboarding and state in (
            State.NOT_ONBOARDED,
            State.LIMITED_PERIODIC_SCANNING,
        ):
            assert verdict.status in (Status.NOT_ENFORCED, Status.NOT_APPLICABLE), cap_id
        else:
            assert verdict.status is cell.status, (cap_id, verdict.reason)
            assert verdict.source == cell.source


@pytest.mark.parametrize(("state", "platform"), CELLS, ids=str)
def test_negative_active_only_protections_never_enforce_outside_active(
    state: State, platform: Platform
) -> None:
    coverage = EVALUATOR.evaluate(_facts(state, platform))
    for cap_id in ACTIVE_ONLY:
        enforced = coverage.capabilities[cap_id].status is Status.ENFORCED
        if state is not State.ACTIVE:
            assert not enforced, cap_id


@pytest.mark.parametrize("platform", list(Platform), ids=str)
def test_negative_a_missing_prerequisite_never_reads_enforced(platform: Platform) -> None:
    facts = _facts(
        State.ACTIVE,
        platform,
        network_protection=NetworkProtection.OFF,
        cloud_protection=False,
        behavior_monitoring=False,
    )
    tenant = dataclasses.replace(
        full_tenant(), custom_network_indicators=False, mda_enforce_app_access=False
    )
    coverage = Evaluator(MATRIX, tenant).evaluate(facts)
    for cap_id in ("network_protection", "indicator_url", "indicator_ip", "cloud_protection"):
        assert coverage.capabilities[cap_id].status is not Status.ENFORCED, cap_id


@pytest.mark.parametrize("platform", list(Platform), ids=str)
def test_unknown_facts_never_read_enforced(platform: Platform) -> None:
    facts = _facts(
        State.ACTIVE,
        platform,
        network_protection=NetworkProtection.UNKNOWN,
        cloud_protection=None,
        behavior_monitoring=None,
    )
    coverage = EVALUATOR.evaluate(facts)
    verdict = coverage.capabilities["network_protection"]
    assert verdict.status is Status.UNKNOWN
    assert "not reported" in verdict.reason


def test_unknown_platform_makes_every_capability_unknown_with_the_reason() -> None:
    coverage = EVALUATOR.evaluate(device(platform=None))
    assert {v.status for v in coverage.capabilities.values()} == {Status.UNKNOWN}
    assert "platform is not known" in coverage.capabilities["asr_rules"].reason
