"""EDR in block mode for passive devices, through the documented per-device route.

Microsoft offers no API for the tenant-wide "Enable EDR in block mode" toggle, so the pipeline
uses the per-device route instead: an Intune settings-catalog policy sets the Defender CSP
``Configuration/PassiveRemediation`` to "EDR in block mode" and is assigned to one Entra group
(``infra/scripts/edr_block_mode_policy.py`` creates both); turning it on for a device means adding
the device's Entra object to that group. The toggle's state is only ever the operator's
declaration (``TenantSettings.edr_block_mode``), reported, never guessed.
https://learn.microsoft.com/defender-endpoint/edr-in-block-mode

The entry points, in the order a cycle calls them (``coverages`` may also be bare device facts:
the plan and its verification read only the facts, which lets a fanned-out cycle plan over the
whole fleet without evaluating it)::

    history = load_history(audit, coverages, settings, now=now)
    the_plan = plan(coverages, tenant, settings, history, cycle_id=cycle_id)
    report = execute(the_plan, graph, mde, audit, settings)
    checked = verify(coverages, history, now, settings)
    record_verification(checked, audit, cycle_id)

and, from the approval HTTP call, ``approve(plan_id, approver, audit, settings)``.

``plan`` and ``verify`` are pure; ``load_history``, ``execute``, ``approve`` and
``record_verification`` do the I/O. Every action has an id derived from the device id and the
action kind, so a retry, a re-run or two cycles planning the same device never add up to two
actions; a device whose action already executed (by the audit trail) is not planned again.

Errors::

    ActionError            an approval could not be recorded
    ├── PlanNotFoundError  no plan with that id waits for approval (unknown, or expired)
    └── ApprovalError      the approver is not usable, or the plan's details are lost
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from azure.core.exceptions import ResourceNotFoundError

from pipeline.act.safety import ActionSettings, ExecutionMode
from pipeline.evaluate import edr_block_eligibility
from pipeline.model import DeviceCoverage, DeviceFacts, Finding, State, TenantSettings
from pipeline.modes import version_at_least
from pipeline.sinks.audit import AuditEvent, AuditKind, AuditQueryError, AuditTrail, Index
from pipeline.sources.errors import ApiError, SourceError
from pipeline.sources.graph import GraphClient
from pipeline.sources.http import ApiClient
from pipeline.sources.mde import MdeClient

log = logging.getLogger(__name__)

ACTION_KIND = "edr_block_mode"
ACTION_VERIFIED = "action_verified"  # audit kind: the device reached EDR block mode
NOT_EFFECTIVE = "EDR_BLOCK_ACTION_NOT_EFFECTIVE"
# Turning EDR in block mode on per device (CSP or Intune) needs a newer platform than the
# feature itself: Microsoft gives 4.18.2202.X for the per-device-group route.
PER_DEVICE_MIN_PLATFORM = "4.18.2202.0"
AUDIT_FLUSH_EVERY = 100  # actions whose audit events are written together

_APPROVER_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
MAX_APPROVER_CHARS = 256


class ActionError(Exception):
    """An approval could not be recorded; the message names the plan."""


class PlanNotFoundError(ActionError):
    """No plan with this id is waiting for approval (never planned, or older than allowed)."""


class ApprovalError(ActionError):
    """The approver is empty or unprintable, or the plan's recorded details are incomplete."""


# --- ids ----------------------------------------------------------------------------------------


def action_id_for(device_id: str) -> str:
    """The same device always gets the same action id, so nothing is ever planned twice."""
    digest = hashlib.sha256(f"{ACTION_KIND}:{device_id.strip().lower()}".encode()).hexdigest()
    return f"edrb-{digest[:20]}"


def plan_id_for(action_ids: Iterable[str]) -> str:
    """A plan is named by what it contains: planning the same devices again gives the same id."""
    digest = hashlib.sha256("\n".join(sorted(action_ids)).encode()).hexdigest()
    return f"plan-{digest[:20]}"


# --- the plan -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedAction:
    """Add one device to the EDR-block-mode group."""

    action_id: str
    device_id: str  # the MDE machine id
    device_name: str
    aad_device_id: str  # Entra's deviceId, resolved to the directory object id at execution
    approved_plan_id: str | None = None  # set when a person approved it past the caps
    approvers: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SkippedDevice:
    """A passive device that gets no action, and why.

    ``code``: ``ineligible`` (a prerequisite is missing), ``eligibility_unknown`` (a prerequisite
    cannot be checked), ``per_device_platform`` (eligible, but too old for the per-device
    route), ``no_entra_device_id`` (not Entra-joined: there is nothing to add to a group).
    """

    device_id: str
    device_name: str
    code: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Plan:
    cycle_id: str
    fleet_size: int
    cap: int
    executable: tuple[PlannedAction, ...]  # may run this cycle: within the caps, or approved
    awaiting_approval: tuple[PlannedAction, ...]  # above the caps; wait for approve(plan_id)
    plan_id: str | None  # the id to approve; None when nothing waits
    plan_already_recorded: bool  # an earlier cycle already audited the same waiting plan
    skipped: tuple[SkippedDevice, ...]
    already_done: tuple[str, ...]  # device ids whose action executed in an earlier cycle
    tenant_toggle: bool | None  # the operator's declaration; None = not declared

    @property
    def status(self) -> str:
        if self.awaiting_approval and self.executable:
            return "ready_and_awaiting_approval"
        if self.awaiting_approval:
            return "awaiting_approval"
        return "ready" if self.executable else "nothing_to_do"

    def to_json(self) -> dict[str, Any]:
        return {
            "cycle_id": self.cycle_id,
            "status": self.status,
            "plan_id": self.plan_id,
            "fleet_size": self.fleet_size,
            "cap": self.cap,
            "tenant_toggle_declared": self.tenant_toggle,
            "executable": [a.to_json() for a in self.executable],
            "awaiting_approval": [a.to_json() for a in self.awaiting_approval],
            "skipped": [s.to_json() for s in self.skipped],
            "already_done": list(self.already_done),
        }


def facts_of(devices: Iterable[DeviceCoverage | DeviceFacts]) -> Iterator[DeviceFacts]:
    """The device facts of evaluated coverages, or the facts themselves."""
    for device in devices:
        yield device if isinstance(device, DeviceFacts) else device.facts


def plan(
    coverages: Iterable[DeviceCoverage | DeviceFacts],
    tenant: TenantSettings,
    settings: ActionSettings,
    history: ActionHistory,
    *,
    cycle_id: str,
) -> Plan:
    """Decide which passive devices to add to the EDR-block-mode group this cycle (pure)."""
    fleet_size = 0
    candidates: list[PlannedAction] = []
    skipped: list[SkippedDevice] = []
    already_done: list[str] = []
    for facts in facts_of(coverages):
        fleet_size += 1
        if facts.state is not State.PASSIVE or facts.platform is None:
            continue
        if not facts.platform.is_windows:
            continue
        if facts.device_id in history.executed:
            already_done.append(facts.device_id)
            continue
        skip = _skip_reason(facts, tenant)
        if skip is not None:
            skipped.append(skip)
            continue
        assert facts.aad_device_id is not None  # _skip_reason checked it
        candidates.append(
            PlannedAction(
                action_id_for(facts.device_id),
                facts.device_id,
                facts.device_name,
                facts.aad_device_id,
            )
        )
    candidates.sort(key=lambda action: action.device_id)

    # Approved earlier: a person already said yes to exactly these actions, caps do not apply.
    approved = history.approved_actions()
    executable = [
        dataclasses.replace(
            action,
            approved_plan_id=approved[action.action_id].plan_id,
            approvers=approved[action.action_id].approvers,
        )
        for action in candidates
        if action.action_id in approved
    ]
    new = [action for action in candidates if action.action_id not in approved]
    approved_count = len(executable)

    cap = settings.cap(fleet_size)
    waiting: list[PlannedAction] = []
    if len(new) <= cap:
        executable.extend(new)
    else:
        waiting = new
    plan_id = plan_id_for(a.action_id for a in waiting) if waiting else None

    log.info(
        "EDR block mode plan for cycle %s: %d executable (%d approved earlier), %d awaiting "
        "approval (cap %d of %d devices), %d skipped, %d done earlier",
        cycle_id,
        len(executable),
        approved_count,
        len(waiting),
        cap,
        fleet_size,
        len(skipped),
        len(already_done),
    )
    return Plan(
        cycle_id=cycle_id,
        fleet_size=fleet_size,
        cap=cap,
        executable=tuple(executable),
        awaiting_approval=tuple(waiting),
        plan_id=plan_id,
        plan_already_recorded=plan_id is not None and plan_id in history.plans,
        skipped=tuple(skipped),
        already_done=tuple(already_done),
        tenant_toggle=tenant.edr_block_mode,
    )


def _skip_reason(facts: DeviceFacts, tenant: TenantSettings) -> SkippedDevice | None:
    eligible, detail = edr_block_eligibility(facts, tenant)
    if eligible is None and facts.cloud_protection is None:
        # Cloud protection is acted on unless known to be off (the sources often do not report
        # it); every other unknown, the licence above all, holds the device back.
        eligible, _ = edr_block_eligibility(
            dataclasses.replace(facts, cloud_protection=True), tenant
        )
    if eligible is False:
        return SkippedDevice(facts.device_id, facts.device_name, "ineligible", detail)
    if eligible is None:
        return SkippedDevice(facts.device_id, facts.device_name, "eligibility_unknown", detail)
    if version_at_least(facts.platform_version, PER_DEVICE_MIN_PLATFORM) is not True:
        return SkippedDevice(
            facts.device_id,
            facts.device_name,
            "per_device_platform",
            f"turning EDR in block mode on per device needs platform {PER_DEVICE_MIN_PLATFORM} "
            f"or later (has {facts.platform_version}); update it or use the tenant-wide toggle",
        )
    if not facts.aad_device_id:
        return SkippedDevice(
            facts.device_id,
            facts.device_name,
            "no_entra_device_id",
            "no Entra device id: the device is not Entra-joined, so it cannot join the group; "
            "turn EDR in block mode on through Group Policy or the tenant-wide toggle",
        )
    return None


# --- history from the audit trail ---------------------------------------------------------------


@dataclass(frozen=True)
class ExecutedRecord:
    device_id: str
    action_id: str
    at: datetime
    outcome: str  # added | already_member


@dataclass
class PlanRecord:
    """A plan that waited for approval, as the audit trail remembers it."""

    plan_id: str
    cycle_id: str | None
    planned_at: datetime
    action_ids: frozenset[str]
    complete: bool = True  # False when the recorded action list was cut short
    approvers: tuple[str, ...] = ()


@dataclass
class ActionHistory:
    executed: dict[str, ExecutedRecord] = field(default_factory=dict)  # by device id
    verified: set[str] = field(default_factory=set)  # device ids
    plans: dict[str, PlanRecord] = field(default_factory=dict)  # by plan id

    @classmethod
    def from_events(cls, events: Iterable[AuditEvent]) -> ActionHistory:
        """Build the history from audit events of any order; other actions' events are ignored."""
        history = cls()
        approvals: list[AuditEvent] = []
        for event in events:
            details = event.details
            if details.get("action") != ACTION_KIND:
                continue
            if event.kind == AuditKind.ACTION_EXECUTED and event.device_id:
                history._add_executed(event)
            elif event.kind == ACTION_VERIFIED and event.device_id:
                history.verified.add(event.device_id)
            elif event.kind == AuditKind.ACTION_PLANNED and details.get("scope") == "plan":
                history._add_plan(event)
            elif event.kind == AuditKind.ACTION_APPROVED and details.get("scope") == "plan":
                approvals.append(event)
        for event in sorted(approvals, key=lambda e: e.at):
            record = history.plans.get(str(event.details.get("plan_id")))
            approver = str(event.details.get("approver"))
            if record is not None and approver not in record.approvers:
                record.approvers = (*record.approvers, approver)
        return history

    def approved_actions(self) -> dict[str, PlanRecord]:
        """Action id -> the approved plan it belongs to."""
        approved: dict[str, PlanRecord] = {}
        for record in sorted(self.plans.values(), key=lambda r: r.planned_at):
            if record.approvers and record.complete:
                approved.update(dict.fromkeys(record.action_ids, record))
        return approved

    def _add_executed(self, event: AuditEvent) -> None:
        assert event.device_id is not None
        earlier = self.executed.get(event.device_id)
        # The first time the device went into the group is when policy delivery started.
        if earlier is None or event.at < earlier.at:
            self.executed[event.device_id] = ExecutedRecord(
                event.device_id,
                str(event.details.get("action_id")),
                event.at,
                str(event.details.get("outcome")),
            )

    def _add_plan(self, event: AuditEvent) -> None:
        details = event.details
        plan_id = str(details.get("plan_id"))
        ids = details.get("action_ids")
        complete = isinstance(ids, list) and len(ids) == details.get("action_count")
        earlier = self.plans.get(plan_id)
        if earlier is not None and (earlier.complete or not complete):
            earlier.planned_at = max(earlier.planned_at, event.at)
            return
        self.plans[plan_id] = PlanRecord(
            plan_id,
            event.cycle_id,
            event.at,
            frozenset(str(i) for i in ids) if isinstance(ids, list) else frozenset(),
            complete,
        )


def load_history(
    audit: AuditTrail,
    coverages: Iterable[DeviceCoverage | DeviceFacts],
    settings: ActionSettings,
    *,
    now: datetime,
) -> ActionHistory:
    """What earlier cycles did: every executed and verified action (from the audit trail's
    per-kind index, one partition each), and the plans of the last ``ACTION_APPROVAL_DAYS`` days
    with their approvals. Only the devices in ``coverages`` matter to the plan."""
    wanted = {facts.device_id for facts in facts_of(coverages)}
    events: list[AuditEvent] = _plan_events(audit, settings, now)
    for kind in (AuditKind.ACTION_EXECUTED, ACTION_VERIFIED):
        events.extend(e for e in _read(audit, Index.KIND, kind) if e.device_id in wanted)
    history = ActionHistory.from_events(_with_full_details(audit, events))
    log.info(
        "EDR block mode history: %d executed, %d verified, %d plans",
        len(history.executed),
        len(history.verified),
        len(history.plans),
    )
    return history


def _plan_events(audit: AuditTrail, settings: ActionSettings, now: datetime) -> list[AuditEvent]:
    """Plan and approval events of the approval window, from the day partitions."""
    today = now.astimezone(UTC).date()
    oldest = now - timedelta(days=settings.approval_days)
    days = [today - timedelta(days=n) for n in range(settings.approval_days + 1)]
    events: list[AuditEvent] = []
    for day in days:
        for kind in (AuditKind.ACTION_PLANNED, AuditKind.ACTION_APPROVED):
            events.extend(
                event
                for event in _read(audit, Index.DAY, f"{day:%Y%m%d}", kind)
                if event.device_id is None and event.at >= oldest
            )
    return events


def _read(audit: AuditTrail, index: Index, key: str, kind: str | None = None) -> list[AuditEvent]:
    try:
        return list(audit.iter_events(index, key, kind=kind))
    except AuditQueryError as err:
        # Before the first event the table does not exist yet: no history, not a failure.
        if isinstance(err.__cause__, ResourceNotFoundError):
            return []
        raise


def _with_full_details(audit: AuditTrail, events: Iterable[AuditEvent]) -> Iterator[AuditEvent]:
    # A plan of thousands of devices is too large for one table entity; its full action list was
    # stored in a blob when the audit trail has a details container.
    for event in events:
        if event.details_truncated and event.details_blob is not None:
            yield dataclasses.replace(event, details=audit.load_details(event))
        else:
            yield event


# --- approval -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Approval:
    plan_id: str
    approver: str
    action_count: int
    recorded: bool  # False when this approver had already approved this plan
    approvers: tuple[str, ...]


def approve(
    plan_id: str,
    approver: str,
    audit: AuditTrail,
    settings: ActionSettings,
    *,
    now: datetime | None = None,
) -> Approval:
    """Record that ``approver`` approved the waiting plan ``plan_id``; the next cycle executes it.

    Approving the same plan twice as the same person records nothing new.
    """
    when = now or datetime.now(UTC)
    name = approver.strip()
    if not name or len(name) > MAX_APPROVER_CHARS or _APPROVER_UNSAFE.search(name):
        raise ApprovalError(
            f"approver for plan {plan_id!r} must be 1..{MAX_APPROVER_CHARS} printable "
            f"characters, got {approver!r}"
        )

    history = ActionHistory.from_events(
        _with_full_details(audit, _plan_events(audit, settings, when))
    )
    record = history.plans.get(plan_id)
    if record is None:
        raise PlanNotFoundError(
            f"no EDR block mode plan {plan_id!r} waits for approval in the last "
            f"{settings.approval_days} days"
        )
    if not record.complete:
        raise ApprovalError(
            f"plan {plan_id!r}: its recorded action list was cut short (no audit details "
            "container), so approving it cannot say what would run; configure one and re-plan"
        )
    if name in record.approvers:
        log.info("plan %s was already approved by %s; nothing recorded", plan_id, name)
        return Approval(plan_id, name, len(record.action_ids), False, record.approvers)

    audit.action_approved(
        record.cycle_id or plan_id,
        None,
        action_id=plan_id,
        approver=name,
        scope="plan",
        plan_id=plan_id,
        action=ACTION_KIND,
        action_count=len(record.action_ids),
    )
    log.info("plan %s (%d actions) approved by %s", plan_id, len(record.action_ids), name)
    return Approval(plan_id, name, len(record.action_ids), True, (*record.approvers, name))


# --- execution ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiCall:
    """One HTTP answer seen while acting on a device, with Microsoft's ids for support cases."""

    endpoint: str
    status: int
    request_id: str | None
    client_request_id: str | None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class RequestIdRecorder:
    """An ``httpx`` response hook that remembers each answer's ``request-id`` headers.

    Graph puts ``request-id`` and ``client-request-id`` on every response; quoting them is how a
    support case finds the call. Calls are collected per thread, inside :meth:`capture` only.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def __call__(self, response: httpx.Response) -> None:
        calls: list[ApiCall] | None = getattr(self._local, "calls", None)
        if calls is None:
            return
        request = response.request
        calls.append(
            ApiCall(
                f"{request.method} {request.url.path}",
                response.status_code,
                response.headers.get("request-id"),
                response.headers.get("client-request-id"),
            )
        )

    @contextmanager
    def capture(self) -> Iterator[list[ApiCall]]:
        calls: list[ApiCall] = []
        self._local.calls = calls
        try:
            yield calls
        finally:
            self._local.calls = None

    def attach(self, api: ApiClient) -> None:
        """Listen to ``api``'s responses (once, however often it is called)."""
        api.add_response_hook(self)


_RECORDER = RequestIdRecorder()


@dataclass(frozen=True)
class ActionOutcome:
    action_id: str
    device_id: str
    outcome: str  # added, already_member, failed, dry_run, kill_switch, not_configured
    entra_object_id: str | None = None
    error: str | None = None
    stage: str | None = None  # resolve, add, tag
    request_id: str | None = None
    tag_outcome: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ExecutionReport:
    mode: ExecutionMode
    plan_id: str | None
    outcomes: list[ActionOutcome] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
        return counts

    @property
    def failed(self) -> list[ActionOutcome]:
        return [o for o in self.outcomes if o.outcome == "failed"]

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode.value,
            "plan_id": self.plan_id,
            "counts": self.counts,
            "outcomes": [o.to_json() for o in self.outcomes],
        }


def execute(
    the_plan: Plan,
    graph: GraphClient,
    mde: MdeClient | None,
    audit: AuditTrail,
    settings: ActionSettings,
) -> ExecutionReport:
    """Carry out the plan as far as the settings allow, auditing every attempt.

    A plan waiting for approval is recorded once (``action_planned``, status
    ``awaiting_approval``). Then, by mode: the kill switch holds everything back and says so;
    dry-run and a missing group id audit what would run; live resolves each device's Entra
    object, adds it to the group (already a member counts as success), optionally tags the
    machine, and audits the attempt with Graph's request ids. One device failing never stops
    the rest; its action is retried by the next cycle.
    """
    mode = settings.mode
    report = ExecutionReport(mode, the_plan.plan_id)
    cycle_id = the_plan.cycle_id

    if the_plan.awaiting_approval and not the_plan.plan_already_recorded:
        _record_waiting_plan(the_plan, audit, settings)

    if mode is not ExecutionMode.LIVE:
        _hold_back(the_plan, audit, mode, report)
        return report

    _RECORDER.attach(graph.api)
    if mde is not None and settings.tag_machines:
        _RECORDER.attach(mde.api)
    group_id = settings.edr_block_group_id
    assert group_id is not None  # LIVE mode has one
    for start in range(0, len(the_plan.executable), AUDIT_FLUSH_EVERY):
        with audit.buffered():
            for action in the_plan.executable[start : start + AUDIT_FLUSH_EVERY]:
                outcome, calls = _act_on(action, graph, mde, group_id, settings.tag_machines)
                _record_outcome(
                    audit, cycle_id, action=action, outcome=outcome, calls=calls, group_id=group_id
                )
                report.outcomes.append(outcome)
    log.info("EDR block mode cycle %s: %s", cycle_id, _summary(report.counts))
    return report


def _record_waiting_plan(the_plan: Plan, audit: AuditTrail, settings: ActionSettings) -> None:
    assert the_plan.plan_id is not None
    actions = the_plan.awaiting_approval
    audit.action_planned(
        the_plan.cycle_id,
        None,
        action_id=the_plan.plan_id,
        action=ACTION_KIND,
        scope="plan",
        plan_id=the_plan.plan_id,
        status="awaiting_approval",
        action_count=len(actions),
        action_ids=[a.action_id for a in actions],
        device_ids=[a.device_id for a in actions],
        cap=the_plan.cap,
        fleet_size=the_plan.fleet_size,
        max_devices=settings.max_devices,
        max_percent=settings.max_percent,
        tenant_toggle_declared=the_plan.tenant_toggle,
    )
    log.warning(
        "EDR block mode plan %s: %d devices exceed the cap of %d; waiting for approval",
        the_plan.plan_id,
        len(actions),
        the_plan.cap,
    )


def _hold_back(
    the_plan: Plan, audit: AuditTrail, mode: ExecutionMode, report: ExecutionReport
) -> None:
    """Audit, device by device, what would have run; nothing is sent to Graph or MDE."""
    with audit.buffered():
        if mode is ExecutionMode.KILL_SWITCH:
            # Recorded even when nothing was due, so the trail shows the switch was on.
            audit.action_planned(
                the_plan.cycle_id,
                None,
                action_id=f"{the_plan.cycle_id}-kill-switch",
                action=ACTION_KIND,
                scope="run",
                status="kill_switch",
                held_back=len(the_plan.executable),
            )
        for action in the_plan.executable:
            audit.action_planned(
                the_plan.cycle_id,
                action.device_id,
                action_id=action.action_id,
                action=ACTION_KIND,
                scope="device",
                status=mode.value,
                aad_device_id=action.aad_device_id,
                device_name=action.device_name,
                approved_plan_id=action.approved_plan_id,
            )
            report.outcomes.append(ActionOutcome(action.action_id, action.device_id, mode.value))
    log.info(
        "EDR block mode cycle %s: %s, %d actions held back",
        the_plan.cycle_id,
        mode.value,
        len(the_plan.executable),
    )


def _act_on(
    action: PlannedAction,
    graph: GraphClient,
    mde: MdeClient | None,
    group_id: str,
    tag: str | None,
) -> tuple[ActionOutcome, list[ApiCall]]:
    stage = "resolve"
    object_id: str | None = None
    with _RECORDER.capture() as calls:
        try:
            device = graph.device_by_device_id(action.aad_device_id)
            object_id = device.get("id") if device is not None else None
            if not isinstance(object_id, str) or not object_id:
                return _failed(action, stage, "Entra has no device with this deviceId"), calls
            stage = "add"
            added = graph.add_group_member(group_id, object_id)
        except (SourceError, ValueError) as exc:
            log.warning("EDR block mode %s on %s failed at %s: %s", *_ids(action), stage, exc)
            return _failed(action, stage, str(exc), object_id, exc), calls

        tag_outcome = None
        if mde is not None and tag:
            tag_outcome = _tag(mde, action, tag)
    outcome = "added" if added else "already_member"
    log.info("EDR block mode %s on %s: %s", action.action_id, action.device_id, outcome)
    return ActionOutcome(
        action.action_id,
        action.device_id,
        outcome,
        entra_object_id=object_id,
        request_id=_graph_request_id(calls),
        tag_outcome=tag_outcome,
    ), calls


def _tag(mde: MdeClient, action: PlannedAction, tag: str) -> str:
    # The membership is what matters; a tag that fails is recorded, and the action still counts.
    try:
        mde.tag_machine(action.device_id, tag)
    except (SourceError, ValueError) as exc:
        log.warning("tagging %s with %r failed: %s", action.device_id, tag, exc)
        return f"failed: {exc}"
    return "tagged"


def _failed(
    action: PlannedAction,
    stage: str,
    error: str,
    object_id: str | None = None,
    exc: Exception | None = None,
) -> ActionOutcome:
    request_id = exc.target if isinstance(exc, ApiError) else None
    return ActionOutcome(
        action.action_id,
        action.device_id,
        "failed",
        entra_object_id=object_id,
        error=error,
        stage=stage,
        request_id=request_id,
    )


def _record_outcome(
    audit: AuditTrail,
    cycle_id: str,
    *,
    action: PlannedAction,
    outcome: ActionOutcome,
    calls: Sequence[ApiCall],
    group_id: str,
) -> None:
    request_id = _graph_request_id(calls) or outcome.request_id
    common: dict[str, Any] = {
        "scope": "device",
        "device_name": action.device_name,
        "aad_device_id": action.aad_device_id,
        "entra_object_id": outcome.entra_object_id,
        "group_id": group_id,
        "approved_plan_id": action.approved_plan_id,
        "approvers": list(action.approvers),
        "request_id": request_id,
        "calls": [call.to_json() for call in calls],
    }
    if outcome.outcome == "failed":
        audit.action_failed(
            cycle_id,
            action.device_id,
            action_id=action.action_id,
            action=ACTION_KIND,
            error=outcome.error or "unknown error",
            stage=outcome.stage,
            **common,
        )
        return
    audit.action_executed(
        cycle_id,
        action.device_id,
        action_id=action.action_id,
        action=ACTION_KIND,
        outcome=outcome.outcome,
        tag=outcome.tag_outcome,
        **common,
    )


def _graph_request_id(calls: Sequence[ApiCall]) -> str | None:
    """The id of the last Graph call, the one that decided the outcome."""
    for call in reversed(calls):
        if call.request_id and not call.endpoint.startswith("POST /api/machines"):
            return call.request_id
    return None


def _ids(action: PlannedAction) -> tuple[str, str]:
    return action.action_id, action.device_id


# --- verification -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceFinding:
    device_id: str
    device_name: str
    finding: Finding


@dataclass
class Verification:
    not_effective: list[DeviceFinding] = field(default_factory=list)
    newly_verified: list[ExecutedRecord] = field(default_factory=list)
    verified_before: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # still within the expected delay
    no_longer_passive: list[str] = field(default_factory=list)  # active or disabled now
    not_reported: list[str] = field(default_factory=list)  # absent from this cycle's data

    def to_json(self) -> dict[str, Any]:
        return {
            "not_effective": [
                {"device_id": f.device_id, "device_name": f.device_name, **vars(f.finding)}
                for f in self.not_effective
            ],
            "newly_verified": [r.device_id for r in self.newly_verified],
            "verified_before": self.verified_before,
            "pending": self.pending,
            "no_longer_passive": self.no_longer_passive,
            "not_reported": self.not_reported,
        }


def verify(
    coverages: Iterable[DeviceCoverage | DeviceFacts],
    history: ActionHistory,
    now: datetime,
    settings: ActionSettings,
) -> Verification:
    """Did the devices put in the group reach EDR block mode? (pure)

    A device still passive more than ``EDR_BLOCK_VERIFY_AFTER_HOURS`` after it was added gets an
    ``EDR_BLOCK_ACTION_NOT_EFFECTIVE`` finding; one now in EDR block mode is verified.
    """
    delay = timedelta(hours=settings.verify_after_hours)
    result = Verification()
    seen: set[str] = set()
    for facts in facts_of(coverages):
        record = history.executed.get(facts.device_id)
        if record is None:
            continue
        seen.add(facts.device_id)
        if facts.state is State.EDR_BLOCK:
            if facts.device_id in history.verified:
                result.verified_before.append(facts.device_id)
            else:
                result.newly_verified.append(record)
        elif facts.state is State.PASSIVE and now - record.at < delay:
            result.pending.append(facts.device_id)
        elif facts.state is State.PASSIVE:
            finding = _not_effective(record, now, settings.verify_after_hours)
            result.not_effective.append(DeviceFinding(facts.device_id, facts.device_name, finding))
        else:
            result.no_longer_passive.append(facts.device_id)
    result.not_reported = sorted(set(history.executed) - seen)
    log.info(
        "EDR block mode verification: %d verified now, %d not effective, %d pending",
        len(result.newly_verified),
        len(result.not_effective),
        len(result.pending),
    )
    return result


def _not_effective(record: ExecutedRecord, now: datetime, expected_hours: float) -> Finding:
    hours = (now - record.at).total_seconds() / 3600
    return Finding(
        NOT_EFFECTIVE,
        f"The device was added to the EDR block mode group {hours:.0f} h ago "
        f"({record.at:%Y-%m-%d %H:%M} UTC; expected within {expected_hours:g} h), and Defender "
        "Antivirus still reports passive mode without EDR in block mode.",
        "Check in Intune that the device is enrolled (settings-catalog policies reach "
        "Intune-managed devices only), that the PassiveRemediation policy is assigned to the "
        "group and reports success for this device, and that the device is still a member; "
        "then have it sync. Or turn EDR in block mode on tenant-wide in Advanced features.",
    )


def record_verification(verification: Verification, audit: AuditTrail, cycle_id: str) -> int:
    """Audit each device that newly reached EDR block mode (once per device); returns how many."""
    with audit.buffered():
        for record in verification.newly_verified:
            audit.record(
                ACTION_VERIFIED,
                cycle_id,
                record.device_id,
                {
                    "action": ACTION_KIND,
                    "action_id": record.action_id,
                    "added_at": record.at.isoformat(),
                    "state": State.EDR_BLOCK.value,
                },
            )
    return len(verification.newly_verified)


def _summary(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items())) or "nothing"


__all__ = [
    "ACTION_KIND",
    "ACTION_VERIFIED",
    "NOT_EFFECTIVE",
    "PER_DEVICE_MIN_PLATFORM",
    "ActionError",
    "ActionHistory",
    "ActionOutcome",
    "ApiCall",
    "Approval",
    "ApprovalError",
    "DeviceFinding",
    "ExecutedRecord",
    "ExecutionReport",
    "Plan",
    "PlanNotFoundError",
    "PlanRecord",
    "PlannedAction",
    "RequestIdRecorder",
    "SkippedDevice",
    "Verification",
    "action_id_for",
    "approve",
    "execute",
    "load_history",
    "plan",
    "plan_id_for",
    "record_verification",
    "verify",
]
