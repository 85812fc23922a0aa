"""One fan-out shard: evaluate part of a stored snapshot, upload and store its rows, audit it.

A cycle whose fleet is larger than ``FANOUT_THRESHOLD_DEVICES`` stores its snapshot and queues
one message per shard (``pipeline.cycle``); ``POST /api/evaluate`` queues a message for one
device or for all. The queue function hands each message to :func:`run_shard`, which:

1. reads the snapshot the message names (``cycleId``), or the newest one;
2. picks its devices: the ids the message lists, or every device whose id hashes to its shard
   (``pipeline.sharding.shard_of``);
3. evaluates them with the tenant's settings and the bundled matrix, exactly as a whole cycle
   does, and sends their ``MdeAvCoverage_CL`` rows with the snapshot's cycle id and collection
   time, so a shard's rows are the rows the cycle would have written;
4. stores them in the coverage table and audits ``shard_started`` and ``shard_finished``.

**Redelivery.** Queue messages are delivered at least once. Row ids come from cycle and device,
and rows carry the snapshot's time, so a row sent twice is the same row and KQL de-duplicates it
by ``RowId``; the coverage table is overwritten with the same entity. The two audit events have
ids derived from the shard's inputs (cycle, shard, device selection, matrix version, tenant
settings), and a shard whose ``shard_finished`` is already recorded does nothing again. Two
deliveries of one message running at the very same moment could both write their events; they
carry the same event id, so a reader can tell them apart from two real runs.

**Not done by shards.** EDR in block mode is not planned or executed here: its caps and its
approval are decided over the whole fleet, which no shard sees, so the cycle that fanned out
plans and executes it. Mode changes, blocklists and the HTML report are fleet-wide and stay
with that cycle too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from pipeline.app_entry import FanoutMessage
from pipeline.config import PipelineSettings
from pipeline.cycle import evaluator_for, with_extra_findings
from pipeline.inputs import read_snapshot
from pipeline.model import DeviceFacts, Finding, TenantSettings
from pipeline.rows import coverage_row
from pipeline.services import ShardServices, shard_services
from pipeline.sharding import LATEST_SNAPSHOT, extra_findings_blob, shard_of, snapshot_blob
from pipeline.sinks.audit import Index
from pipeline.tables import COVERAGE

__all__ = ["SHARD_FINISHED", "SHARD_STARTED", "ShardError", "ShardResult", "run_shard"]

log = logging.getLogger(__name__)

SHARD_STARTED: Final = "shard_started"
SHARD_FINISHED: Final = "shard_finished"
# Device ids a message asked for but the snapshot lacks, named in the audit (the rest counted).
_MISSING_NAMED: Final = 20


class ShardError(RuntimeError):
    """A shard cannot run (its snapshot is missing or unreadable); names cycle and shard."""


@dataclass(frozen=True)
class _Snapshot:
    cycle_id: str
    collected_at: datetime
    path: Path


@dataclass
class ShardResult:
    cycle_id: str
    shard: int
    shards: int
    status: str  # completed, completed_with_errors, already_done
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_shard(
    settings: PipelineSettings,
    message: FanoutMessage,
    *,
    storage_client_options: Mapping[str, Any] | None = None,
) -> ShardResult:
    """Evaluate one shard with the deployed services (``pipeline.services.shard_services``)."""
    with (
        shard_services(settings, storage_client_options=storage_client_options) as services,
        tempfile.TemporaryDirectory(prefix="shard-") as work,
    ):
        return evaluate_shard(services, message, settings.tenant, Path(work))


def evaluate_shard(
    services: ShardServices, message: FanoutMessage, tenant: TenantSettings, work: Path
) -> ShardResult:
    """The shard's work with services given; see the module docstring."""
    started = time.perf_counter()
    snapshot = _fetch_snapshot(services, message, work / "snapshot.json")
    # Streamed, keeping only this shard's devices: a shard's memory follows its own size, not
    # the fleet's, however large the snapshot it reads.
    inputs = read_snapshot(snapshot.path, _selector(message))
    evaluator = evaluator_for(inputs, tenant)
    devices, missing = inputs.devices, _missing(inputs.devices, message)

    key = _shard_key(snapshot.cycle_id, message, evaluator.matrix.version, evaluator.tenant)
    result = ShardResult(snapshot.cycle_id, message.shard, message.shards, "completed")
    recorded = _recorded(services, snapshot.cycle_id, key)
    if _event_id(SHARD_FINISHED, key) in recorded:
        log.info(
            "shard %d of %d of cycle %s already finished; this delivery repeats nothing",
            message.shard,
            message.shards,
            snapshot.cycle_id,
        )
        result.status = "already_done"
        return result

    shard_details = {
        "shard": message.shard,
        "shards": message.shards,
        "selection": "devices" if message.device_ids is not None else "hash",
        "requested_by": message.requested_by,
        "matrix_version": evaluator.matrix.version,
    }
    if _event_id(SHARD_STARTED, key) not in recorded:
        services.audit.record(
            SHARD_STARTED,
            snapshot.cycle_id,
            None,
            {**shard_details, "devices": len(devices)},
            event_id=_event_id(SHARD_STARTED, key),
        )

    extra = _extra_findings(services, snapshot.cycle_id)
    coverages = list(with_extra_findings((evaluator.evaluate(f) for f in devices), extra))
    rows = [coverage_row(c, snapshot.cycle_id, snapshot.collected_at) for c in coverages]
    uploaded = services.sink.upload(COVERAGE, rows, cycle_id=snapshot.cycle_id)
    stored = services.coverage.save_rows(rows) if rows else 0
    if not uploaded.ok:
        services.audit.batch_dead_lettered(
            snapshot.cycle_id,
            table=COVERAGE.name,
            rows=uploaded.dead_lettered,
            blob=uploaded.dead_letter_blob,
            shard=message.shard,
        )
        result.errors.append(
            f"{uploaded.dead_lettered} coverage rows dead-lettered to {uploaded.dead_letter_blob}"
        )
    if missing:
        result.errors.append(
            f"{len(missing)} requested devices are not in snapshot {snapshot.cycle_id}: "
            + ", ".join(missing[:_MISSING_NAMED])
        )

    result.counts = {
        "devices": len(devices),
        "devices_with_gaps": sum(1 for c in coverages if c.gaps),
        "devices_not_in_snapshot": len(missing),
        "rows_sent": uploaded.sent,
        "rows_dead_lettered": uploaded.dead_lettered,
        "coverage_stored": stored,
    }
    result.status = "completed_with_errors" if result.errors else "completed"
    services.audit.record(
        SHARD_FINISHED,
        snapshot.cycle_id,
        None,
        {
            **shard_details,
            "status": result.status,
            "counts": result.counts,
            "errors": result.errors[:20],
            "seconds": round(time.perf_counter() - started, 3),
        },
        event_id=_event_id(SHARD_FINISHED, key),
    )
    log.info(
        "shard %d of %d of cycle %s: %s %s",
        message.shard,
        message.shards,
        snapshot.cycle_id,
        result.status,
        result.counts,
    )
    return result


def _fetch_snapshot(services: ShardServices, message: FanoutMessage, path: Path) -> _Snapshot:
    """Download the snapshot the message names, or the newest one, with its cycle and time."""
    where = f"shard {message.shard} of {message.shards}"
    cycle_id = message.cycle_id
    if cycle_id is None:
        pointer = services.state.get_document(LATEST_SNAPSHOT)
        if not isinstance(pointer, dict) or not isinstance(pointer.get("cycleId"), str):
            raise ShardError(f"{where}: no cycle has stored a snapshot yet ({LATEST_SNAPSHOT})")
        cycle_id = str(pointer["cycleId"])

    blob = snapshot_blob(cycle_id)
    metadata = services.state.get_file(blob, path)
    if metadata is None:
        raise ShardError(f"{where}: the snapshot of cycle {cycle_id} ({blob}) is not stored")
    try:
        collected_at = datetime.fromisoformat(metadata["collected_at"])
    except (KeyError, ValueError):
        raise ShardError(
            f"{where}: snapshot {blob} has no readable collected_at metadata"
        ) from None
    return _Snapshot(cycle_id, collected_at, path)


def _extra_findings(services: ShardServices, cycle_id: str) -> dict[str, list[Finding]]:
    """The findings the fanning cycle added to some devices (none for a re-evaluation of a
    snapshot whose cycle added none); a malformed entry fails the shard loudly."""
    document = services.state.get_document(extra_findings_blob(cycle_id))
    if document is None:
        return {}
    try:
        return {
            device_id: [Finding(f["code"], f["message"], f["fix"]) for f in findings]
            for device_id, findings in document.items()
        }
    except (AttributeError, KeyError, TypeError) as error:
        raise ShardError(
            f"{extra_findings_blob(cycle_id)} is not a map of device ids to findings: {error!r}"
        ) from None


def _selector(message: FanoutMessage) -> Callable[[str], bool]:
    """Which device ids are the shard's: the ids the message lists, or those hashing to it."""
    if message.device_ids is not None:
        return frozenset(message.device_ids).__contains__
    shard, shards = message.shard, message.shards
    return lambda device_id: shard_of(device_id, shards) == shard


def _missing(devices: list[DeviceFacts], message: FanoutMessage) -> list[str]:
    """The requested ids the snapshot does not hold."""
    if message.device_ids is None:
        return []
    return sorted(set(message.device_ids) - {d.device_id for d in devices})


def _shard_key(
    cycle_id: str, message: FanoutMessage, matrix_version: str, tenant: TenantSettings
) -> str:
    """Everything the shard's outcome depends on; the same inputs give the same key."""
    settings = {
        name: sorted(value) if isinstance(value, frozenset) else value
        for name, value in dataclasses.asdict(tenant).items()
    }
    canonical = json.dumps(
        [
            cycle_id,
            message.shard,
            message.shards,
            sorted(message.device_ids) if message.device_ids is not None else None,
            matrix_version,
            settings,
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _event_id(kind: str, key: str) -> str:
    return hashlib.sha256(f"{kind}|{key}".encode()).hexdigest()[:32]


def _recorded(services: ShardServices, cycle_id: str, key: str) -> set[str]:
    """Which of this shard's two events the cycle's audit partition already holds."""
    wanted = {_event_id(SHARD_STARTED, key), _event_id(SHARD_FINISHED, key)}
    found: set[str] = set()
    for kind in (SHARD_FINISHED, SHARD_STARTED):
        for event in services.audit.iter_events(Index.CYCLE, cycle_id, kind=kind):
            if event.event_id in wanted:
                found.add(event.event_id)
    return found
