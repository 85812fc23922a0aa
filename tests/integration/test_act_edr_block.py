"""EDR in block mode against the lab tenant's Graph and MDE endpoints, audited in Azurite."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.act.edr_block import (
    ACTION_KIND,
    NOT_EFFECTIVE,
    ActionHistory,
    ApprovalError,
    Plan,
    PlanNotFoundError,
    approve,
    execute,
    load_history,
    plan,
    record_verification,
    verify,
)
from pipeline.act.safety import ActionSettings
from pipeline.model import DeviceCoverage, State, TenantSettings
from pipeline.sinks.audit import AuditEvent, AuditKind, AuditTrail
from pipeline.sources.graph import GraphClient
from pipeline.sources.http import RetryPolicy
from pipeline.sources.mde import MdeClient
from tests.support.azurite import AzuriteProcess, azurite
from tests.support.edr_block import coverage, eligible_lab_devices, facts, lab_facts
from tests.support.lab import LabTenant, running_lab

pytestmark = pytest.mark.integration

__all__ = ["azurite"]  # fixture used by name below

TENANT = TenantSettings(mde_license="P2", edr_block_mode=False)
OTHERS = 300  # active devices beside the passive ones: with 5 passive, the 2 % cap is 6
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture
def lab() -> Iterator[LabTenant]:
    with running_lab(devices=1000) as tenant:
        yield tenant


@pytest.fixture
def audit(azurite: AzuriteProcess) -> AuditTrail:
    # A table of its own: tests share one Azurite and must not see each other's events.
    return AuditTrail.from_connection_string(
        azurite.connection_string, "EdrBlock" + uuid.uuid4().hex[:12]
    )


@pytest.fixture
def clients(lab: LabTenant) -> Iterator[tuple[MdeClient, GraphClient]]:
    mde, graph = lab.clients(retry=RetryPolicy(attempts=2, throttle_attempts=2))
    try:
        yield mde, graph
    finally:
        mde.api.close()
        graph.api.close()


def _live(lab: LabTenant, **overrides: Any) -> ActionSettings:
    return ActionSettings(
        actions_enabled=True, edr_block_group_id=lab.config.edr_block_group_id, **overrides
    )


def _fleet(lab: LabTenant, passive: int) -> list[DeviceCoverage]:
    devices = [coverage(lab_facts(d)) for d in eligible_lab_devices(lab.server.fleet, passive)]
    return devices + [coverage(facts(10_000 + n, state=State.ACTIVE)) for n in range(OTHERS)]


def _cycle(
    clients: tuple[MdeClient, GraphClient],
    audit: AuditTrail,
    coverages: list[DeviceCoverage],
    settings: ActionSettings,
    cycle_id: str,
) -> tuple[Plan, Any]:
    """One cycle's acting part, as the cycle calls it."""
    history = load_history(audit, coverages, settings, now=datetime.now(UTC))
    the_plan = plan(coverages, TENANT, settings, history, cycle_id=cycle_id)
    mde, graph = clients
    return the_plan, execute(the_plan, graph, mde, audit, settings)


def _graph_requests(lab: LabTenant) -> list[str]:
    return [r.endpoint for r in lab.server.requests if r.endpoint.startswith("graph")]


def _events(audit: AuditTrail, cycle_id: str, kind: str | None = None) -> list[AuditEvent]:
    return list(audit.by_cycle(cycle_id, kind=kind, page_size=1000).events)


def _members(lab: LabTenant) -> list[str]:
    return lab.server.group_members(lab.config.edr_block_group_id)


@pytest.mark.parametrize(
    ("settings", "status"),
    [
        (ActionSettings(), "dry_run"),
        (ActionSettings(actions_enabled=True), "not_configured"),  # enabled, no group id
    ],
)
def test_dry_run_plans_and_audits_but_makes_no_graph_call(
    lab: LabTenant, clients: Any, audit: AuditTrail, settings: ActionSettings, status: str
) -> None:
    coverages = _fleet(lab, 5)

    the_plan, report = _cycle(clients, audit, coverages, settings, "dry-1")

    assert len(the_plan.executable) == 5
    assert report.counts == {status: 5}
    assert _graph_requests(lab) == []
    assert _members(lab) == []
    planned = _events(audit, "dry-1", AuditKind.ACTION_PLANNED)
    assert sorted(e.device_id or "" for e in planned) == sorted(
        a.device_id for a in the_plan.executable
    )
    assert {e.details["status"] for e in planned} == {status}
    assert {e.details["action_id"] for e in planned} == {a.action_id for a in the_plan.executable}


def test_above_the_cap_the_plan_waits_until_approved_then_a_later_run_executes_it(
    lab: LabTenant, clients: Any, audit: AuditTrail
) -> None:
    settings = _live(lab)
    coverages = _fleet(lab, 8)  # cap: 2 % of 308 is 6

    first, report = _cycle(clients, audit, coverages, settings, "cap-1")

    assert first.status == "awaiting_approval"
    assert first.plan_id is not None
    assert report.outcomes == []
    assert _graph_requests(lab) == []
    [recorded] = _events(audit, "cap-1", AuditKind.ACTION_PLANNED)
    assert recorded.details["status"] == "awaiting_approval"
    assert recorded.details["plan_id"] == first.plan_id
    assert recorded.details["action_count"] == 8

    # Planned again before anyone approved: the same plan, not recorded twice.
    again, _ = _cycle(clients, audit, coverages, settings, "cap-2")
    assert again.plan_id == first.plan_id
    assert again.plan_already_recorded
    assert _events(audit, "cap-2", AuditKind.ACTION_PLANNED) == []

    with pytest.raises(PlanNotFoundError, match="plan-doesnotexist"):
        approve("plan-doesnotexist", "alice@contoso.com", audit, settings)
    with pytest.raises(ApprovalError, match="approver"):
        approve(first.plan_id, " \n", audit, settings)

    approval = approve(first.plan_id, "alice@contoso.com", audit, settings)
    repeated = approve(first.plan_id, "alice@contoso.com", audit, settings)

    assert approval.recorded
    assert approval.action_count == 8
    assert not repeated.recorded
    [approved] = _events(audit, "cap-1", AuditKind.ACTION_APPROVED)
    assert approved.details["approver"] == "alice@contoso.com"
    assert approved.details["plan_id"] == first.plan_id
    assert _members(lab) == []  # approving executes nothing by itself

    third, report = _cycle(clients, audit, coverages, settings, "cap-3")

    assert len(third.executable) == 8
    assert report.counts == {"added": 8}
    assert len(_members(lab)) == 8
    executed = _events(audit, "cap-3", AuditKind.ACTION_EXECUTED)
    assert len(executed) == 8
    assert {e.details["approved_plan_id"] for e in executed} == {first.plan_id}
    assert {tuple(e.details["approvers"]) for e in executed} == {("alice@contoso.com",)}

    # The next cycle has nothing left to do for these devices.
    fourth, report = _cycle(clients, audit, coverages, settings, "cap-4")
    assert fourth.status == "nothing_to_do"
    assert len(fourth.already_done) == 8


def test_kill_switch_stops_everything_even_an_approved_plan_and_is_audited(
    lab: LabTenant, clients: Any, audit: AuditTrail
) -> None:
    coverages = _fleet(lab, 8)
    first, _ = _cycle(clients, audit, coverages, _live(lab), "kill-1")
    assert first.plan_id is not None
    approve(first.plan_id, "alice@contoso.com", audit, _live(lab))
    stopped = _live(lab, kill_switch=True, tag_machines="edr-block-mode-by-pipeline")

    the_plan, report = _cycle(clients, audit, coverages, stopped, "kill-2")

    assert len(the_plan.executable) == 8
    assert report.counts == {"kill_switch": 8}
    assert _graph_requests(lab) == []
    assert not any(r.endpoint == "machine-tags" for r in lab.server.requests)
    assert _members(lab) == []
    events = _events(audit, "kill-2", AuditKind.ACTION_PLANNED)
    [run] = [e for e in events if e.device_id is None]
    assert run.details["status"] == "kill_switch"
    assert run.details["held_back"] == 8
    assert len([e for e in events if e.details["status"] == "kill_switch"]) == 9

    # Even with nothing due, a cycle under the kill switch says so.
    _cycle(clients, audit, _fleet(lab, 0), stopped, "kill-3")
    [empty] = _events(audit, "kill-3", AuditKind.ACTION_PLANNED)
    assert empty.details == {
        "action": ACTION_KIND,
        "action_id": "kill-3-kill-switch",
        "held_back": 0,
        "scope": "run",
        "status": "kill_switch",
    }


def test_retry_is_idempotent_already_a_member_is_success_and_nothing_doubles(
    lab: LabTenant, clients: Any, audit: AuditTrail
) -> None:
    settings = _live(lab)
    coverages = _fleet(lab, 4)
    fleet = lab.server.fleet
    first_device = eligible_lab_devices(fleet, 1)[0]
    _, graph = clients
    assert graph.add_group_member(lab.config.edr_block_group_id, first_device.entra_object_id or "")

    the_plan, report = _cycle(clients, audit, coverages, settings, "idem-1")

    outcomes = {o.device_id: o.outcome for o in report.outcomes}
    assert outcomes.pop(first_device.machine_id) == "already_member"
    assert set(outcomes.values()) == {"added"}
    assert sorted(_members(lab)) == sorted(
        d.entra_object_id or "" for d in eligible_lab_devices(fleet, 4)
    )

    # The same plan executed again (a retry after a crash before the audit was read back).
    _, graph = clients
    retry = execute(the_plan, graph, None, audit, settings)

    assert retry.counts == {"already_member": 4}
    assert len(_members(lab)) == 4
    executed = _events(audit, "idem-1", AuditKind.ACTION_EXECUTED)
    assert len(executed) == 8  # every attempt audited
    for event in executed:
        assert event.details["outcome"] in ("added", "already_member")
        assert _UUID.match(event.details["request_id"])
        # One resolve and one add each, seen once although execute attached to the client twice.
        [resolve, add] = [call["endpoint"] for call in event.details["calls"]]
        assert resolve.startswith("GET /v1.0/devices(deviceId=")
        assert add == f"POST /v1.0/groups/{lab.config.edr_block_group_id}/members/$ref"
        assert event.details["request_id"] == event.details["calls"][-1]["request_id"]
    request_ids = [e.details["request_id"] for e in executed]
    assert len(set(request_ids)) == 8


def test_a_graph_failure_for_one_device_fails_that_device_only_and_the_next_cycle_retries(
    lab: LabTenant, clients: Any, audit: AuditTrail
) -> None:
    settings = _live(lab)
    devices = eligible_lab_devices(lab.server.fleet, 5)
    unknown = replace(lab_facts(devices[4]), aad_device_id=str(uuid.UUID(int=7)))
    coverages = [coverage(lab_facts(d)) for d in devices[:4]] + [coverage(unknown)]
    coverages += [coverage(facts(10_000 + n, state=State.ACTIVE)) for n in range(OTHERS)]
    lab.fault("error", f"/v1.0/devices(deviceId='{devices[0].aad_device_id}')", times=2)
    lab.fault("throttle", f"/v1.0/devices(deviceId='{devices[1].aad_device_id}')", times=2)

    _, report = _cycle(clients, audit, coverages, settings, "fail-1")

    outcomes = {o.device_id: o for o in report.outcomes}
    assert outcomes[devices[0].machine_id].outcome == "failed"
    assert "HTTP 500" in (outcomes[devices[0].machine_id].error or "")
    assert outcomes[devices[1].machine_id].outcome == "failed"
    assert "429" in (outcomes[devices[1].machine_id].error or "")
    assert outcomes[devices[4].machine_id].outcome == "failed"
    assert "no device" in (outcomes[devices[4].machine_id].error or "")
    assert outcomes[devices[2].machine_id].outcome == "added"
    assert outcomes[devices[3].machine_id].outcome == "added"
    assert sorted(_members(lab)) == sorted(d.entra_object_id or "" for d in devices[2:4])

    failed = {e.device_id: e for e in _events(audit, "fail-1", AuditKind.ACTION_FAILED)}
    assert set(failed) == {devices[0].machine_id, devices[1].machine_id, devices[4].machine_id}
    server_error = failed[devices[0].machine_id].details
    assert server_error["stage"] == "resolve"
    assert [c["status"] for c in server_error["calls"]] == [500, 500]
    assert _UUID.match(server_error["request_id"])

    # Next cycle: the faults are gone, only the failed devices are tried again.
    lab.server.faults.clear()
    again, report = _cycle(clients, audit, coverages, settings, "fail-2")

    assert {a.device_id for a in again.executable} == set(failed)
    assert {o.device_id: o.outcome for o in report.outcomes} == {
        devices[0].machine_id: "added",
        devices[1].machine_id: "added",
        devices[4].machine_id: "failed",
    }
    assert len(_members(lab)) == 4


def test_a_failed_group_add_is_audited_with_its_stage(
    lab: LabTenant, clients: Any, audit: AuditTrail
) -> None:
    devices = eligible_lab_devices(lab.server.fleet, 3)
    # The second add fails on both attempts; the others go through.
    lab.fault("error", "/v1.0/groups/", method="POST", skip=1, times=2)

    _, report = _cycle(clients, audit, _fleet(lab, 3), _live(lab), "add-1")

    assert report.counts == {"added": 2, "failed": 1}
    [failed] = _events(audit, "add-1", AuditKind.ACTION_FAILED)
    assert failed.device_id == devices[1].machine_id
    assert failed.details["stage"] == "add"
    assert failed.details["entra_object_id"] == devices[1].entra_object_id


def test_devices_are_tagged_in_mde_when_a_tag_is_set(
    lab: LabTenant, clients: Any, audit: AuditTrail
) -> None:
    settings = _live(lab, tag_machines="edr-block-mode-by-pipeline")
    devices = eligible_lab_devices(lab.server.fleet, 2)

    _, report = _cycle(clients, audit, _fleet(lab, 2), settings, "tag-1")

    assert {o.tag_outcome for o in report.outcomes} == {"tagged"}
    for device in devices:
        assert "edr-block-mode-by-pipeline" in lab.server.machine_tags(device.machine_id)
    for event in _events(audit, "tag-1", AuditKind.ACTION_EXECUTED):
        assert event.details["tag"] == "tagged"
        # The request id recorded is Graph's group add, not MDE's tag call.
        assert event.details["request_id"] == event.details["calls"][1]["request_id"]


def test_the_next_cycle_verifies_and_flags_a_device_still_passive(
    lab: LabTenant, clients: Any, audit: AuditTrail
) -> None:
    settings = _live(lab)
    coverages = _fleet(lab, 2)
    _cycle(clients, audit, coverages, settings, "ver-1")
    reached, stuck = coverages[0].facts, coverages[1].facts
    later = [coverage(replace(reached, state=State.EDR_BLOCK)), coverage(stuck), *coverages[2:]]

    soon = datetime.now(UTC) + timedelta(hours=2)
    early = verify(later, load_history(audit, later, settings, now=soon), soon, settings)

    assert early.pending == [stuck.device_id]
    assert early.not_effective == []

    next_day = datetime.now(UTC) + timedelta(hours=25)
    history = load_history(audit, later, settings, now=next_day)
    checked = verify(later, history, next_day, settings)

    assert [r.device_id for r in checked.newly_verified] == [reached.device_id]
    [flagged] = checked.not_effective
    assert flagged.device_id == stuck.device_id
    assert flagged.finding.code == NOT_EFFECTIVE
    assert record_verification(checked, audit, "ver-2") == 1

    after = verify(later, load_history(audit, later, settings, now=next_day), next_day, settings)
    assert after.newly_verified == []
    assert after.verified_before == [reached.device_id]


def test_a_plan_too_large_for_one_audit_entity_is_kept_whole_and_can_be_approved(
    lab: LabTenant, clients: Any, audit: AuditTrail
) -> None:
    settings = ActionSettings()  # dry-run: this test is about recording and approving
    coverages = _fleet(lab, 500)

    first = plan(coverages, TENANT, settings, ActionHistory(), cycle_id="big-1")
    execute(first, clients[1], None, audit, settings)

    [recorded] = _events(audit, "big-1", AuditKind.ACTION_PLANNED)
    assert recorded.details_truncated
    assert recorded.details_blob is not None
    assert first.plan_id is not None
    approval = approve(first.plan_id, "alice@contoso.com", audit, settings)
    assert approval.action_count == 500

    history = load_history(audit, coverages, settings, now=datetime.now(UTC))
    second = plan(coverages, TENANT, settings, history, cycle_id="big-2")
    assert len(second.executable) == 500
    assert {a.approved_plan_id for a in second.executable} == {first.plan_id}
