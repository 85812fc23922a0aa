"""The history read back from audit events, and verification on the next cycle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.act.edr_block import (
    ACTION_KIND,
    ACTION_VERIFIED,
    NOT_EFFECTIVE,
    ActionHistory,
    ExecutedRecord,
    action_id_for,
    verify,
)
from pipeline.act.safety import ActionSettings
from pipeline.model import State
from pipeline.sinks.audit import AuditKind, new_event
from tests.support.edr_block import coverage, facts, machine_id

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
SETTINGS = ActionSettings(verify_after_hours=24)


def _executed(n: int, at: datetime, outcome: str = "added"):  # type: ignore[no-untyped-def]
    return new_event(
        AuditKind.ACTION_EXECUTED,
        "c1",
        machine_id(n),
        {"action": ACTION_KIND, "action_id": action_id_for(machine_id(n)), "outcome": outcome},
        at=at,
    )


def test_history_keeps_the_first_execution_of_each_device() -> None:
    events = [
        _executed(1, T0 + timedelta(hours=5), "already_member"),
        _executed(1, T0),
        _executed(2, T0 + timedelta(hours=1)),
    ]

    history = ActionHistory.from_events(events)

    assert history.executed[machine_id(1)] == ExecutedRecord(
        machine_id(1), action_id_for(machine_id(1)), T0, "added"
    )
    assert set(history.executed) == {machine_id(1), machine_id(2)}


def test_history_ignores_other_actions_failures_and_device_level_plans() -> None:
    events = [
        new_event(AuditKind.ACTION_EXECUTED, "c1", machine_id(1), {"action": "blocklist"}, at=T0),
        new_event(
            AuditKind.ACTION_FAILED,
            "c1",
            machine_id(2),
            {"action": ACTION_KIND, "action_id": "x", "error": "HTTP 500"},
            at=T0,
        ),
        new_event(
            AuditKind.ACTION_PLANNED,
            "c1",
            machine_id(3),
            {"action": ACTION_KIND, "scope": "device", "status": "dry_run"},
            at=T0,
        ),
    ]

    history = ActionHistory.from_events(events)

    assert history.executed == {}
    assert history.plans == {}


def test_history_joins_plans_with_their_approvals() -> None:
    ids = ["edrb-a", "edrb-b"]
    plan_event = new_event(
        AuditKind.ACTION_PLANNED,
        "c1",
        None,
        {
            "action": ACTION_KIND,
            "scope": "plan",
            "plan_id": "plan-1",
            "status": "awaiting_approval",
            "action_ids": ids,
            "action_count": 2,
        },
        at=T0,
    )

    def approval(who: str, hours: int):  # type: ignore[no-untyped-def]
        details = {"action": ACTION_KIND, "scope": "plan", "plan_id": "plan-1", "approver": who}
        return new_event(
            AuditKind.ACTION_APPROVED, "c1", None, details, at=T0 + timedelta(hours=hours)
        )

    # Newest first, as the audit trail returns them; the same approver twice counts once.
    history = ActionHistory.from_events(
        [approval("bob", 3), approval("alice", 2), approval("alice", 1), plan_event]
    )

    record = history.plans["plan-1"]
    assert record.action_ids == frozenset(ids)
    assert record.approvers == ("alice", "bob")
    assert set(history.approved_actions()) == set(ids)


def test_a_plan_whose_action_list_was_cut_short_approves_nothing() -> None:
    details = {
        "action": ACTION_KIND,
        "scope": "plan",
        "plan_id": "plan-1",
        "action_ids": ["edrb-a"],
        "action_count": 5000,
    }
    events = [
        new_event(AuditKind.ACTION_PLANNED, "c1", None, details, at=T0),
        new_event(
            AuditKind.ACTION_APPROVED,
            "c1",
            None,
            {"action": ACTION_KIND, "scope": "plan", "plan_id": "plan-1", "approver": "alice"},
            at=T0,
        ),
    ]

    history = ActionHistory.from_events(events)

    assert not history.plans["plan-1"].complete
    assert history.approved_actions() == {}


def _history(*devices: int, verified: tuple[int, ...] = ()) -> ActionHistory:
    history = ActionHistory.from_events([_executed(n, T0) for n in devices])
    history.verified = {machine_id(n) for n in verified}
    return history


def test_still_passive_after_the_expected_delay_is_a_finding_with_a_fix() -> None:
    history = _history(1)

    result = verify([coverage(facts(1))], history, T0 + timedelta(hours=25), SETTINGS)

    [device] = result.not_effective
    assert device.device_id == machine_id(1)
    assert device.finding.code == NOT_EFFECTIVE
    assert "25 h ago" in device.finding.message
    assert "Intune" in device.finding.fix
    assert result.pending == []


def test_still_passive_within_the_delay_is_pending_not_a_finding() -> None:
    result = verify([coverage(facts(1))], _history(1), T0 + timedelta(hours=23), SETTINGS)

    assert result.not_effective == []
    assert result.pending == [machine_id(1)]


def test_the_delay_is_a_setting() -> None:
    settings = ActionSettings(verify_after_hours=2)

    result = verify([coverage(facts(1))], _history(1), T0 + timedelta(hours=3), settings)

    assert [d.device_id for d in result.not_effective] == [machine_id(1)]


def test_a_device_now_in_edr_block_mode_is_verified_once() -> None:
    now = T0 + timedelta(hours=2)
    devices = [coverage(facts(1, state=State.EDR_BLOCK)), coverage(facts(2, state=State.EDR_BLOCK))]

    result = verify(devices, _history(1, 2, verified=(2,)), now, SETTINGS)

    assert [r.device_id for r in result.newly_verified] == [machine_id(1)]
    assert result.verified_before == [machine_id(2)]
    assert result.not_effective == []


def test_devices_not_acted_on_active_now_or_missing_are_told_apart() -> None:
    devices = [
        coverage(facts(1, state=State.ACTIVE)),  # Falcon removed: Defender is primary again
        coverage(facts(3)),  # passive, but the pipeline never acted on it
    ]

    result = verify(devices, _history(1, 2), T0 + timedelta(hours=48), SETTINGS)

    assert result.no_longer_passive == [machine_id(1)]
    assert result.not_reported == [machine_id(2)]
    assert result.not_effective == []


def test_verification_json_names_the_finding() -> None:
    result = verify([coverage(facts(1))], _history(1), T0 + timedelta(hours=30), SETTINGS)

    document = result.to_json()

    assert document["not_effective"][0]["code"] == NOT_EFFECTIVE
    assert document["not_effective"][0]["device_id"] == machine_id(1)
    assert ACTION_VERIFIED == "action_verified"
