"""One pipeline cycle: collect → evaluate → plan → ingest → act → publish → report, all audited.

The cycle knows nothing about where its services live: the same code runs against the lab
(local servers and Azurite) and a real tenant; ``pipeline.services`` builds the services from
settings. A cycle first takes the cycle lease, so two cycles started together never both act:
the second stands down and says so. Every stage's outcome is audited; a stage that fails fails
the cycle loudly (the audit says how far it got), and a re-run repeats nothing that already took
effect, because actions carry deterministic ids and are checked against the audit trail.

Everything the cycle produces is also written to ``out_dir`` for people to open:
``snapshot.json``, ``evaluation.json``, ``log-analytics-rows.jsonl``, ``actions.json`` (the
EDR-in-block-mode plan, what was executed, and the verification of earlier actions),
``blocklists/``, ``report.html`` and ``cycle.json``.

Every cycle also keeps its snapshot in the state store (``snapshots/<cycle id>.json``, with
``snapshots/latest.json`` naming the newest). When the fleet is larger than the fan-out threshold
and a fan-out queue is configured, the cycle does not evaluate it in one go: after collecting it
audits mode changes, plans and executes EDR in block mode over the whole fleet (its caps and
approvals need every device, which no shard sees; the plan reads device facts, not evaluations),
queues one message per shard (``pipeline.fanout.run_shard`` evaluates, ingests and stores each
shard), publishes the blocklists, which are tenant-wide, and finishes with the status
``fanned_out``. Its HTML report evaluates the fleet once more as it renders, folding each device
into the totals without holding it, and has no ingestion section (the shards ingest). A "did
not take effect" finding from the verification of an earlier action reaches the shards' rows
through ``snapshots/<cycle id>/extra-findings.json``, written before the shards are queued.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from azure.core.credentials import TokenCredential

from pipeline.act.blocklist import (
    FORMATS,
    Blocklists,
    Diff,
    ListName,
    Published,
    Rendered,
    build_blocklists,
    publish,
    render,
)
from pipeline.act.blocklist.formats.watchlist import render_watchlist_lists
from pipeline.act.edr_block import (
    ExecutionReport,
    Plan,
    Verification,
    execute,
    load_history,
    plan,
    record_verification,
    verify,
)
from pipeline.act.safety import ActionSettings, ExecutionMode
from pipeline.act.watchlist import WatchlistError, WatchlistSettings, publish_watchlist
from pipeline.config import FanoutSettings
from pipeline.detect import ENTRIES_BLOB, entries_document
from pipeline.evaluate import Evaluator
from pipeline.indicators import parse_indicators
from pipeline.inputs import read_files
from pipeline.matrix import load_matrix
from pipeline.model import (
    DeviceCoverage,
    DeviceFacts,
    Finding,
    Inputs,
    RejectedRecord,
    TenantSettings,
)
from pipeline.output import (
    Summary,
    evaluation_document,
    streamed_evaluation_document,
    write_json,
)
from pipeline.report import render_report
from pipeline.rows import coverage_row
from pipeline.sharding import (
    LATEST_SNAPSHOT,
    extra_findings_blob,
    shard_messages,
    snapshot_blob,
)
from pipeline.sinks.audit import AuditTrail
from pipeline.sinks.lease import CycleLease, LeaseHeld
from pipeline.sinks.log_analytics import LogAnalyticsSink, UploadResult
from pipeline.sources.collect import CollectionResult, collect_snapshot
from pipeline.sources.graph import GraphClient
from pipeline.sources.mde import MdeClient
from pipeline.tables import COVERAGE

log = logging.getLogger(__name__)

Progress = Callable[[str, str], None]  # (stage, message)

# The list kinds published each cycle: block for proxies/DNS/firewalls, warn for monitored apps.
PUBLISHED_LISTS: tuple[ListName, ...] = ("block", "warn")


class StateStore(Protocol):
    """Small named JSON documents that outlive a cycle (last modes, last published lists), and
    whole files by name (the collected snapshot, for fan-out shards)."""

    def load(self, name: str) -> Any | None: ...

    def save(self, name: str, document: Any) -> None: ...

    def put_file(
        self, name: str, path: Path, *, metadata: Mapping[str, str] | None = None
    ) -> None: ...

    def get_file(self, name: str, path: Path) -> dict[str, str] | None: ...

    def put_document(self, name: str, document: Any) -> None: ...

    def get_document(self, name: str) -> Any | None: ...


class ShardQueue(Protocol):
    """Where a fanned-out cycle sends its shard messages (the FANOUT_QUEUE)."""

    @property
    def name(self) -> str: ...

    def send_all(self, messages: Iterable[str]) -> int: ...


class BlocklistStore(Protocol):
    """Where published blocklists go for consumers that read storage."""

    def put(self, name: str, content: str, *, sha256: str, version: int) -> None: ...

    def put_json(self, name: str, document: Any) -> None: ...


class CoverageSink(Protocol):
    """Each device's latest coverage row, for reads by device and the streaming detector."""

    def save_rows(self, rows: Iterable[Mapping[str, Any]]) -> int: ...


@dataclass
class CycleServices:
    mde: MdeClient
    graph: GraphClient
    sink: LogAnalyticsSink
    audit: AuditTrail
    lease: CycleLease
    state: StateStore
    blocklists: BlocklistStore
    coverage: CoverageSink
    fanout: ShardQueue | None = None  # None: the cycle always evaluates the whole fleet itself
    management_credential: TokenCredential | None = None  # Azure management plane (watchlist)


@dataclass
class CycleOptions:
    out_dir: Path
    tenant: TenantSettings
    collector_dir: Path | None = None
    holder: str = "pipeline"
    tenant_name: str = "tenant"
    actions: ActionSettings = field(default_factory=ActionSettings)  # dry-run unless enabled
    fanout: FanoutSettings = field(default_factory=FanoutSettings)
    watchlist: WatchlistSettings = field(
        default_factory=lambda: WatchlistSettings(workspace_resource_id=None)
    )
    progress: Progress = field(default=lambda _stage, _message: None)

    @property
    def dry_run(self) -> bool:
        return self.actions.mode is not ExecutionMode.LIVE


@dataclass
class CycleResult:
    cycle_id: str
    status: str  # completed, completed_with_errors, fanned_out, stood_down, failed
    counts: dict[str, int] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "cycle_id": self.cycle_id,
            "status": self.status,
            "counts": self.counts,
            "durations": {k: round(v, 3) for k, v in self.durations.items()},
            "errors": self.errors,
            "out_dir": str(self.out_dir) if self.out_dir else None,
        }


class CycleError(RuntimeError):
    """A stage failed; the cycle stopped there. The message names the stage."""


def new_cycle_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def run_cycle(
    services: CycleServices, options: CycleOptions, *, now: datetime | None = None
) -> CycleResult:
    """Run one cycle; see the module docstring. Raises :class:`CycleError` when a stage fails."""
    started = now or datetime.now(UTC)
    cycle_id = new_cycle_id(started)
    result = CycleResult(cycle_id=cycle_id, status="failed", out_dir=options.out_dir)
    say = options.progress

    outcome = services.lease.acquire(f"{options.holder}/{cycle_id}")
    if isinstance(outcome, LeaseHeld):
        log.warning("cycle %s stands down: %s", cycle_id, outcome)
        say("lease", f"another cycle is running ({outcome}); this one stands down")
        result.status = "stood_down"
        result.errors.append(str(outcome))
        return result

    options.out_dir.mkdir(parents=True, exist_ok=True)
    with outcome.keep_alive():
        services.audit.cycle_started(cycle_id, dry_run=options.dry_run, holder=options.holder)
        try:
            fanned_out = _run_stages(services, options, result, started)
        except Exception as exc:
            # Record how far the cycle got before failing loudly; the audit write itself may be
            # what failed (storage down), so it must not hide the original error.
            result.status = "failed"
            result.errors.append(f"{type(exc).__name__}: {exc}")
            _finish(services, result, options)
            raise CycleError(f"cycle {cycle_id} failed: {exc}") from exc
        if fanned_out:
            result.status = "fanned_out"
        else:
            result.status = "completed_with_errors" if result.errors else "completed"
        _finish(services, result, options)
    return result


def _finish(services: CycleServices, result: CycleResult, options: CycleOptions) -> None:
    (options.out_dir / "cycle.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    try:
        services.audit.cycle_finished(
            result.cycle_id,
            status=result.status,
            counts=result.counts,
            durations=result.durations,
            errors=result.errors[:20],
        )
    except Exception:  # the original failure is what the caller must see
        log.exception("could not audit the end of cycle %s", result.cycle_id)
        if result.status != "failed":
            raise


@contextmanager
def _stage(result: CycleResult, name: str, say: Progress) -> Iterator[None]:
    say(name, "started")
    start = time.perf_counter()
    try:
        yield
    except Exception as exc:
        raise CycleError(f"stage {name}: {exc}") from exc
    finally:
        result.durations[name] = time.perf_counter() - start
    say(name, f"done in {result.durations[name]:.1f}s")


def _run_stages(
    services: CycleServices, options: CycleOptions, result: CycleResult, now: datetime
) -> bool:
    """Run every stage; True when the evaluation was handed to fan-out shards instead."""
    out, say = options.out_dir, options.progress
    snapshot_path = out / "snapshot.json"

    with _stage(result, "collect", say):
        collected = collect_snapshot(
            snapshot_path,
            services.mde,
            services.graph,
            collector_dir=options.collector_dir,
            progress=lambda source, count: say("collect", f"{source}: {count} records"),
            now=now,
        )
        _count_collection(result, collected)
        fleet = _fleet_size(collected)
        _store_snapshot(services, result, snapshot_path, now, fleet)

    shards = options.fanout.shards_for(fleet) if services.fanout is not None else 0
    if shards:
        _fan_out(services, options, result, snapshot_path, now=now, shards=shards)
        return True

    with _stage(result, "evaluate", say):
        coverages, rejected, summary, indicators = _evaluate(snapshot_path, options, result)
        result.summary = summary.to_json()

    with _stage(result, "audit-modes", say):
        _audit_mode_changes(
            services, result, {c.facts.device_id: c.facts.state.value for c in coverages}
        )

    with _stage(result, "plan", say):
        the_plan, checked = _plan_actions(services, options, result, coverages, now)
        coverages = list(_with_verification_findings(coverages, checked))

    with _stage(result, "ingest", say):
        uploaded = _ingest(services, result, coverages, now, out)
        result.counts["rows_sent"] = uploaded.sent
        result.counts["rows_dead_lettered"] = uploaded.dead_lettered
        if not uploaded.ok:
            services.audit.batch_dead_lettered(
                result.cycle_id,
                table=COVERAGE.name,
                rows=uploaded.dead_lettered,
                blob=uploaded.dead_letter_blob,
            )
            result.errors.append(
                f"{uploaded.dead_lettered} coverage rows dead-lettered "
                f"to {uploaded.dead_letter_blob}"
            )

    with _stage(result, "act", say):
        executed = _act(services, options, result, the_plan, checked)

    with _stage(result, "blocklists", say):
        published = _publish_blocklists(services, options, result, indicators, now=now, out=out)
        result.counts["blocklists_changed"] = sum(1 for p in published if p.changed)

    with _stage(result, "report", say):
        _write_report(
            options,
            result,
            now,
            evaluation_document(coverages, rejected, Summary(load_matrix().version)),
            actions=_action_rows(the_plan, executed, checked),
            published=published,
            ingestion={
                "sent": uploaded.sent,
                "failed": uploaded.failed,
                "rejected": uploaded.rejected,
                "dead_lettered": uploaded.dead_lettered,
            },
        )
    return False


def _write_report(
    options: CycleOptions,
    result: CycleResult,
    now: datetime,
    evaluation: Mapping[str, Any],
    *,
    actions: list[dict[str, Any]],
    published: list[Published],
    ingestion: Mapping[str, Any] | None,
    ingestion_note: str | None = None,
) -> None:
    html = render_report(
        evaluation,
        load_matrix().to_json(),
        actions=actions,
        blocklists=[_publication_summary(p) for p in published],
        ingestion=ingestion,
        ingestion_note=ingestion_note,
        cycle={
            "cycle_id": result.cycle_id,
            "started": now.isoformat(),
            "dry_run": options.dry_run,
            "tenant": options.tenant_name,
        },
    )
    (options.out_dir / "report.html").write_text(html, encoding="utf-8")


def _plan_actions(
    services: CycleServices,
    options: CycleOptions,
    result: CycleResult,
    devices: Iterable[DeviceCoverage | DeviceFacts],
    now: datetime,
) -> tuple[Plan, Verification]:
    """EDR in block mode over the whole fleet: this cycle's plan, and how earlier actions went."""
    devices = list(devices)
    history = load_history(services.audit, devices, options.actions, now=now)
    the_plan = plan(devices, options.tenant, options.actions, history, cycle_id=result.cycle_id)
    checked = verify(devices, history, now, options.actions)
    result.counts["actions_planned"] = len(the_plan.executable)
    result.counts["actions_awaiting_approval"] = len(the_plan.awaiting_approval)
    result.counts["actions_not_effective"] = len(checked.not_effective)
    return the_plan, checked


def _act(
    services: CycleServices,
    options: CycleOptions,
    result: CycleResult,
    the_plan: Plan,
    checked: Verification,
) -> ExecutionReport:
    """Execute the plan (or record it, in dry-run), audit the verification, write actions.json."""
    executed = execute(the_plan, services.graph, services.mde, services.audit, options.actions)
    record_verification(checked, services.audit, result.cycle_id)
    result.counts.update({f"actions_{k}": v for k, v in executed.counts.items()})
    actions_document = {
        "mode": options.actions.mode.value,
        "plan": the_plan.to_json(),
        "execution": executed.to_json(),
        "verification": checked.to_json(),
    }
    (options.out_dir / "actions.json").write_text(json.dumps(actions_document, indent=2) + "\n")
    if executed.failed:
        result.errors.append(f"{len(executed.failed)} actions failed (see actions.json)")
    return executed


def _fleet_size(collected: CollectionResult) -> int:
    """The number of devices the largest source returned: enough to decide on fan-out."""
    sources = ("deviceavinfo", "machines", "tvmInfoGathering", "collectorDocuments")
    return max((collected.counts.get(source, 0) for source in sources), default=0)


def _store_snapshot(
    services: CycleServices, result: CycleResult, snapshot_path: Path, now: datetime, fleet: int
) -> None:
    """Keep the snapshot where fan-out shards and later re-evaluations can read it."""
    blob = snapshot_blob(result.cycle_id)
    collected_at = now.isoformat().replace("+00:00", "Z")
    services.state.put_file(
        blob,
        snapshot_path,
        metadata={"cycle_id": result.cycle_id, "collected_at": collected_at, "devices": str(fleet)},
    )
    # The pointer is written after the snapshot, so it never names one that is not there yet.
    services.state.put_document(
        LATEST_SNAPSHOT,
        {"cycleId": result.cycle_id, "blob": blob, "collectedAt": collected_at, "devices": fleet},
    )


def _fan_out(
    services: CycleServices,
    options: CycleOptions,
    result: CycleResult,
    snapshot_path: Path,
    *,
    now: datetime,
    shards: int,
) -> None:
    """Queue the shards; keep the fleet-wide stages (mode changes, EDR in block mode, blocklists,
    the report) here. The first three need each device's facts, not its evaluation; the report
    evaluates the fleet as it renders without holding the evaluations. Ingesting and storing,
    the costly part, is the shards' work."""
    say = options.progress
    assert services.fanout is not None  # checked by the caller

    with _stage(result, "audit-modes", say):
        inputs = read_files([snapshot_path])
        _count_inputs(result, inputs)
        _audit_mode_changes(
            services, result, {facts.device_id: facts.state.value for facts in inputs.devices}
        )
        indicators = inputs.indicators or []
        devices, rejected = inputs.devices, inputs.rejected
        evaluator = evaluator_for(inputs, options.tenant)
        del inputs  # the shards read the snapshot again; this process keeps only the facts

    with _stage(result, "plan", say):
        the_plan, checked = _plan_actions(services, options, result, devices, now)
        extra = _extra_findings(checked)
        if extra:
            # Written before the shards are queued, so every shard finds it.
            services.state.put_document(
                extra_findings_blob(result.cycle_id),
                {
                    device_id: [dataclasses.asdict(f) for f in findings]
                    for device_id, findings in extra.items()
                },
            )

    with _stage(result, "fan-out", say):
        sent = services.fanout.send_all(shard_messages(result.cycle_id, shards))
        result.counts["shards"] = sent
        log.info(
            "cycle %s: %d devices fanned out into %d shards on %s",
            result.cycle_id,
            result.counts["devices"],
            sent,
            services.fanout.name,
        )
        say("fan-out", f"{sent} shards queued on {services.fanout.name}")

    with _stage(result, "act", say):
        executed = _act(services, options, result, the_plan, checked)

    with _stage(result, "blocklists", say):
        published = _publish_blocklists(
            services, options, result, indicators, now=now, out=options.out_dir
        )
        result.counts["blocklists_changed"] = sum(1 for p in published if p.changed)

    with _stage(result, "report", say):
        # The report folds each device into its totals as it is evaluated and keeps none, so
        # the fleet is evaluated here (as the shards will, for their rows) without being held.
        coverages = (evaluator.evaluate(facts) for facts in devices)
        _write_report(
            options,
            result,
            now,
            streamed_evaluation_document(
                with_extra_findings(coverages, extra),
                rejected,
                Summary(evaluator.matrix.version),
            ),
            actions=_action_rows(the_plan, executed, checked),
            published=published,
            ingestion=None,
            ingestion_note=(
                f"This cycle handed its {result.counts.get('devices', 0)} devices to "
                f"{result.counts.get('shards', 0)} fan-out shards, which send the "
                "MdeAvCoverage_CL rows; each shard's counts are in its shard_finished audit "
                "event."
            ),
        )


def _extra_findings(checked: Verification) -> dict[str, list[Finding]]:
    """Per device, the findings the verification of earlier actions adds."""
    extra: dict[str, list[Finding]] = {}
    for item in checked.not_effective:
        extra.setdefault(item.device_id, []).append(item.finding)
    return extra


def _with_verification_findings(
    coverages: Iterable[DeviceCoverage], checked: Verification
) -> Iterator[DeviceCoverage]:
    """Devices whose EDR-block action did not take effect carry that as a finding too."""
    return with_extra_findings(coverages, _extra_findings(checked))


def with_extra_findings(
    coverages: Iterable[DeviceCoverage], extra: Mapping[str, Sequence[Finding]]
) -> Iterator[DeviceCoverage]:
    """Each coverage with the findings ``extra`` holds for its device appended."""
    for coverage in coverages:
        found = extra.get(coverage.facts.device_id)
        yield replace(coverage, findings=coverage.findings + tuple(found)) if found else coverage


def _action_rows(
    the_plan: Plan, executed: ExecutionReport, checked: Verification
) -> list[dict[str, Any]]:
    """One line per device for the report: what was planned, done, held back or found."""
    outcomes = {o.action_id: o for o in executed.outcomes}
    rows: list[dict[str, Any]] = []
    for action, status in [(a, "planned") for a in the_plan.executable] + [
        (a, "awaiting approval") for a in the_plan.awaiting_approval
    ]:
        outcome = outcomes.get(action.action_id)
        rows.append(
            {
                "device_id": action.device_id,
                "device_name": action.device_name,
                "action": "add to the EDR in block mode group",
                "status": outcome.outcome if outcome else status,
                "reason": (outcome.error if outcome and outcome.error else None)
                or "passive, eligible, and not in EDR in block mode",
            }
        )
    for finding in checked.not_effective:
        rows.append(
            {
                "device_id": finding.device_id,
                "device_name": finding.device_name,
                "action": "verify EDR in block mode",
                "status": "not effective",
                "reason": finding.finding.message,
            }
        )
    return rows


def _publication_summary(published: Published) -> dict[str, Any]:
    return {
        "format": published.format,
        "list": published.list_name,
        "entries": len(published.entries),
        "sha256": published.sha256,
        "version": published.version,
        "added": published.diff.added,
        "removed": published.diff.removed,
    }


def _count_collection(result: CycleResult, collected: CollectionResult) -> None:
    for source, count in collected.counts.items():
        result.counts[f"collected_{source}"] = count
    result.counts["api_calls"] = sum(collected.calls.values())
    for error in collected.errors:
        result.errors.append(
            f"collect {error.get('source')}: {error.get('status')} {error.get('code')} "
            f"{error.get('message')}"
        )


def _evaluate(
    snapshot_path: Path, options: CycleOptions, result: CycleResult
) -> tuple[list[DeviceCoverage], list[RejectedRecord], Summary, list[Any]]:
    """Evaluate the snapshot's devices; also hand back its indicators for the blocklists."""
    inputs = read_files([snapshot_path])
    matrix = load_matrix()
    evaluator = evaluator_for(inputs, options.tenant)
    coverages = [evaluator.evaluate(facts) for facts in inputs.devices]

    summary = Summary(matrix_version=matrix.version)
    with (options.out_dir / "evaluation.json").open("w", encoding="utf-8") as handle:
        write_json(handle, iter(coverages), inputs.rejected, summary)
    _count_inputs(result, inputs)
    result.counts["devices_with_gaps"] = summary.devices_with_gaps
    return coverages, inputs.rejected, summary, inputs.indicators or []


def evaluator_for(inputs: Inputs, tenant: TenantSettings) -> Evaluator:
    """The evaluator a snapshot calls for: the tenant's settings, and the indicator kinds the
    snapshot shows in use unless the operator declared them."""
    if inputs.indicator_kinds is not None and tenant.indicator_kinds is None:
        tenant = replace(tenant, indicator_kinds=frozenset(inputs.indicator_kinds))
    return Evaluator(load_matrix(), tenant)


def _count_inputs(result: CycleResult, inputs: Inputs) -> None:
    result.counts["devices"] = len(inputs.devices)
    result.counts["rejected_records"] = len(inputs.rejected)
    if inputs.rejected:
        result.errors.append(f"{len(inputs.rejected)} input records rejected")


def _audit_mode_changes(
    services: CycleServices, result: CycleResult, current: dict[str, str]
) -> None:
    previous: dict[str, str] = services.state.load("device-modes") or {}
    changed = 0
    if previous:
        # Only real changes are audited; the first cycle records the baseline in the state store.
        with services.audit.buffered():
            for device_id, state in current.items():
                before = previous.get(device_id)
                if before is not None and before != state:
                    services.audit.mode_changed(
                        result.cycle_id, device_id, from_state=before, to_state=state
                    )
                    changed += 1
    services.state.save("device-modes", current)
    result.counts["mode_changes"] = changed


def _ingest(
    services: CycleServices,
    result: CycleResult,
    coverages: list[DeviceCoverage],
    now: datetime,
    out: Path,
) -> UploadResult:
    rows = [coverage_row(c, result.cycle_id, now) for c in coverages]
    with (out / "log-analytics-rows.jsonl").open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    uploaded = services.sink.upload(COVERAGE, rows, cycle_id=result.cycle_id)
    result.counts["coverage_stored"] = services.coverage.save_rows(rows)
    return uploaded


def _publish_blocklists(
    services: CycleServices,
    options: CycleOptions,
    result: CycleResult,
    indicators: list[Any],
    *,
    now: datetime,
    out: Path,
) -> list[Published]:
    parsed = parse_indicators(indicators)
    lists: Blocklists = build_blocklists(parsed.indicators, now, parsed.rejected)
    result.counts["indicators_rejected"] = len(lists.rejected)

    directory = out / "blocklists"
    directory.mkdir(exist_ok=True)
    previous_manifest: dict[str, Any] = services.state.load("blocklists") or {}
    manifest: dict[str, Any] = {}
    published_all: list[Published] = []
    for list_name in PUBLISHED_LISTS:
        for fmt in FORMATS:
            key = f"{list_name}/{fmt}"
            rendered = render(lists, fmt, list_name)
            published = publish(rendered, _previous(previous_manifest.get(key), rendered))
            published_all.append(published)
            manifest[key] = {
                "sha256": published.sha256,
                "version": published.version,
                "entries": list(published.entries),
            }
            (directory / f"{list_name}-{fmt}.txt").write_text(published.content, "utf-8")
            if published.changed or key not in previous_manifest:
                services.blocklists.put(
                    key, published.content, sha256=published.sha256, version=published.version
                )
                services.audit.blocklist_published(
                    result.cycle_id,
                    target=key,
                    content_hash=published.sha256,
                    size_bytes=len(published.content.encode("utf-8")),
                    added=published.diff.added,
                    removed=published.diff.removed,
                    version=published.version,
                )
    # The streaming detector matches traffic against the same normalised entries.
    services.blocklists.put_json(ENTRIES_BLOB, entries_document(lists))
    manifest["watchlist"] = _publish_watchlist(
        services, options, result, lists, previous_manifest.get("watchlist")
    )
    services.state.save("blocklists", manifest)
    return published_all


def _publish_watchlist(
    services: CycleServices,
    options: CycleOptions,
    result: CycleResult,
    lists: Blocklists,
    previous: Any,
) -> Any:
    """Keep the Sentinel watchlist the network-events rule reads equal to the block list.

    It is detection content, not an action on devices, so it follows the content (published when
    it changed) rather than ACTIONS_ENABLED. A failure is reported, not fatal: the proxy, DNS and
    firewall lists above are already out. Returns what the state store keeps of it.
    """
    settings = options.watchlist
    if not settings.configured:
        return previous
    content = render_watchlist_lists(lists).content
    if previous == hashlib.sha256(content.encode("utf-8")).hexdigest():
        return previous  # unchanged since the last publication
    try:
        outcome = publish_watchlist(lists, settings, services.management_credential)
    except WatchlistError as exc:
        result.errors.append(f"watchlist {settings.alias}: {exc}")
        return previous
    services.audit.blocklist_published(
        result.cycle_id,
        target=f"sentinel-watchlist/{settings.alias}",
        content_hash=outcome.sha256,
        size_bytes=len(outcome.content.encode("utf-8")),
        added=outcome.rows,
        removed=0,
        mode=outcome.mode,
    )
    result.counts["watchlist_rows"] = outcome.rows
    return outcome.sha256 if not settings.dry_run else previous


def _previous(saved: dict[str, Any] | None, rendered: Rendered) -> Published | None:
    """The last published version, rebuilt from what the state store kept of it."""
    if not saved:
        return None
    return Published(
        format=rendered.format,
        list_name=rendered.list_name,
        content="",
        sha256=str(saved["sha256"]),
        version=int(saved["version"]),
        entries=tuple(saved["entries"]),
        diff=Diff(0, 0),
    )
