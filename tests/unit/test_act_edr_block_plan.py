"""Planning EDR in block mode: who gets an action, who is skipped and why, caps and approval."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.act.edr_block import (
    ActionHistory,
    ExecutedRecord,
    PlanRecord,
    action_id_for,
    plan,
    plan_id_for,
)
from pipeline.act.safety import ActionSettings
from pipeline.model import Platform, State, TenantSettings
from tests.support.edr_block import coverage, facts, fleet_of, machine_id

P2 = TenantSettings(mde_license="P2")
T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
ROOMY = ActionSettings(max_devices=1000, max_percent=100)


def _plan(coverages, tenant=P2, settings=ROOMY, history=None):  # type: ignore[no-untyped-def]
    return plan(coverages, tenant, settings, history or ActionHistory(), cycle_id="c1")


def test_an_eligible_passive_device_gets_one_action_with_an_id_from_its_device_id() -> None:
    result = _plan([coverage(facts(1))])

    assert [a.device_id for a in result.executable] == [machine_id(1)]
    action = result.executable[0]
    assert action.action_id == action_id_for(machine_id(1))
    assert action.aad_device_id == facts(1).aad_device_id
    assert result.status == "ready"
    assert not result.skipped


def test_action_ids_are_deterministic_and_distinct_per_device() -> None:
    first = _plan(fleet_of(5))
    again = _plan(list(reversed(fleet_of(5))))
    renamed = _plan([coverage(facts(n, device_name="renamed")) for n in range(5)])

    ids = [a.action_id for a in first.executable]
    assert ids == [a.action_id for a in again.executable]
    assert ids == [a.action_id for a in renamed.executable]
    assert len(set(ids)) == 5
    # Case of the machine id does not make a second action.
    assert action_id_for(machine_id(1).upper()) == action_id_for(machine_id(1))


@pytest.mark.parametrize(
    ("state", "platform"),
    [
        (State.ACTIVE, Platform.WINDOWS_CLIENT),
        (State.EDR_BLOCK, Platform.WINDOWS_CLIENT),
        (State.DISABLED, Platform.WINDOWS_CLIENT),
        (State.PASSIVE, Platform.MACOS),
        (State.PASSIVE, Platform.LINUX),
        (State.PASSIVE, None),
    ],
)
def test_only_passive_windows_devices_are_considered(state: State, platform: Platform) -> None:
    result = _plan([coverage(facts(1, state=state, platform=platform))])

    assert result.executable == ()
    assert result.skipped == ()
    assert result.status == "nothing_to_do"


def test_passive_windows_server_is_planned_like_a_client() -> None:
    result = _plan([coverage(facts(1, platform=Platform.WINDOWS_SERVER))])

    assert len(result.executable) == 1


@pytest.mark.parametrize(
    ("overrides", "tenant", "code", "words"),
    [
        ({"platform_version": "4.18.1911.3"}, P2, "ineligible", "platform 4.18.2001.10"),
        ({"engine_version": "1.1.16600.7"}, P2, "ineligible", "engine 1.1.16700.2"),
        ({"cloud_protection": False}, P2, "ineligible", "cloud-delivered protection"),
        ({}, TenantSettings(mde_license="P1"), "ineligible", "Plan 2"),
        ({}, TenantSettings(), "eligibility_unknown", "licence"),
        ({"platform_version": None}, P2, "eligibility_unknown", "platform version"),
        ({"engine_version": "garbage"}, P2, "eligibility_unknown", "engine version"),
        ({"platform_version": "4.18.2101.9"}, P2, "per_device_platform", "4.18.2202.0"),
        ({"aad_device_id": None}, P2, "no_entra_device_id", "not Entra-joined"),
        ({"aad_device_id": ""}, P2, "no_entra_device_id", "not Entra-joined"),
    ],
)
def test_devices_that_cannot_be_acted_on_are_listed_with_what_is_missing(
    overrides: dict[str, object], tenant: TenantSettings, code: str, words: str
) -> None:
    result = _plan([coverage(facts(1, **overrides))], tenant=tenant)

    assert result.executable == ()
    assert result.awaiting_approval == ()
    [skipped] = result.skipped
    assert skipped.device_id == machine_id(1)
    assert skipped.code == code
    assert words in skipped.reason


def test_unknown_cloud_protection_does_not_hold_a_device_back() -> None:
    result = _plan([coverage(facts(1, cloud_protection=None))])

    assert len(result.executable) == 1


def test_unknown_cloud_protection_with_an_unknown_licence_still_holds_it_back() -> None:
    result = _plan([coverage(facts(1, cloud_protection=None))], tenant=TenantSettings())

    assert [s.code for s in result.skipped] == ["eligibility_unknown"]


def test_a_device_whose_action_already_executed_is_not_planned_again() -> None:
    done = ExecutedRecord(machine_id(0), action_id_for(machine_id(0)), T0, "added")
    history = ActionHistory(executed={machine_id(0): done})

    result = _plan(fleet_of(3), history=history)

    assert machine_id(0) not in [a.device_id for a in result.executable]
    assert len(result.executable) == 2
    assert result.already_done == (machine_id(0),)


def test_within_both_caps_the_plan_is_executable() -> None:
    # 10 passive among 500 devices: 2 % of 500 is 10, and 10 <= 25.
    result = _plan(fleet_of(10, others=490), settings=ActionSettings())

    assert result.cap == 10
    assert len(result.executable) == 10
    assert result.awaiting_approval == ()
    assert result.plan_id is None


def test_above_the_percentage_cap_the_whole_plan_waits_for_approval() -> None:
    # 11 passive among 500: one more than 2 %; nothing runs in part.
    result = _plan(fleet_of(11, others=489), settings=ActionSettings())

    assert result.cap == 10
    assert result.executable == ()
    assert len(result.awaiting_approval) == 11
    assert result.status == "awaiting_approval"
    assert result.plan_id == plan_id_for(a.action_id for a in result.awaiting_approval)
    assert not result.plan_already_recorded


def test_above_the_device_cap_the_plan_waits_even_in_a_large_fleet() -> None:
    # 2 % of 5,000 is 100, but at most 25 devices a cycle.
    result = _plan(fleet_of(26, others=4974), settings=ActionSettings())

    assert result.cap == 25
    assert len(result.awaiting_approval) == 26


def test_percentage_cap_rounds_down_so_a_tiny_fleet_always_needs_approval() -> None:
    result = _plan(fleet_of(1, others=10), settings=ActionSettings())

    assert result.cap == 0
    assert len(result.awaiting_approval) == 1


def test_the_same_waiting_plan_gets_the_same_id_and_is_known_once_recorded() -> None:
    settings = ActionSettings(max_devices=2)
    first = _plan(fleet_of(3, others=300), settings=settings)
    assert first.plan_id is not None
    recorded = PlanRecord(
        first.plan_id, "c1", T0, frozenset(a.action_id for a in first.awaiting_approval)
    )

    again = _plan(
        fleet_of(3, others=300),
        settings=settings,
        history=ActionHistory(plans={first.plan_id: recorded}),
    )

    assert again.plan_id == first.plan_id
    assert again.plan_already_recorded
    assert again.executable == ()


def test_approved_actions_run_past_the_caps_and_carry_their_approval() -> None:
    settings = ActionSettings(max_devices=2)
    waiting = _plan(fleet_of(5, others=300), settings=settings)
    assert waiting.plan_id is not None
    approved = PlanRecord(
        waiting.plan_id,
        "c1",
        T0,
        frozenset(a.action_id for a in waiting.awaiting_approval),
        approvers=("alice@contoso.com",),
    )

    # The fleet grew by one passive device since; it is a small plan of its own.
    result = _plan(
        fleet_of(6, others=300),
        settings=settings,
        history=ActionHistory(plans={waiting.plan_id: approved}),
    )

    assert len(result.executable) == 6
    by_device = {a.device_id: a for a in result.executable}
    assert by_device[machine_id(0)].approved_plan_id == waiting.plan_id
    assert by_device[machine_id(0)].approvers == ("alice@contoso.com",)
    assert by_device[machine_id(5)].approved_plan_id is None
    assert result.awaiting_approval == ()


def test_an_unapproved_recorded_plan_grants_nothing() -> None:
    settings = ActionSettings(max_devices=2)
    waiting = _plan(fleet_of(5, others=300), settings=settings)
    assert waiting.plan_id is not None
    record = PlanRecord(
        waiting.plan_id, "c1", T0, frozenset(a.action_id for a in waiting.awaiting_approval)
    )

    result = _plan(
        fleet_of(5, others=300),
        settings=settings,
        history=ActionHistory(plans={waiting.plan_id: record}),
    )

    assert result.executable == ()
    assert len(result.awaiting_approval) == 5


def test_tenant_toggle_is_reported_only_as_declared() -> None:
    assert _plan(fleet_of(1)).tenant_toggle is None
    declared = TenantSettings(mde_license="P2", edr_block_mode=False)
    assert _plan(fleet_of(1), tenant=declared).tenant_toggle is False
    assert _plan(fleet_of(1), tenant=declared).to_json()["tenant_toggle_declared"] is False


def test_plan_json_lists_every_part() -> None:
    devices = [*fleet_of(2), coverage(facts(9, aad_device_id=None))]
    document = _plan(devices).to_json()

    assert document["status"] == "ready"
    assert [a["device_id"] for a in document["executable"]] == [machine_id(0), machine_id(1)]
    assert document["skipped"][0]["code"] == "no_entra_device_id"
    assert document["fleet_size"] == 3
