"""The entry points the function app's triggers call; each reads its settings when it runs.

========================  =====================================================================
``run_scheduled_cycle``   timer: the full cycle, ``pipeline.cycle.run_cycle``
``run_fanout_message``    queue ``FANOUT_QUEUE``: one shard, ``pipeline.fanout.run_shard``
``process_stream``        Event Hubs: streaming detection, upload, dead letters, audit
``process_collector``     queue ``COLLECTOR_QUEUE``: a collector document updates the device's mode
``approve_action``        HTTP: approval of a pending action, ``pipeline.act.edr_block``
========================  =====================================================================

The cycle, the shard evaluation and the EDR block-mode action are separate modules. They are
imported when called, so the app still loads (and every other function still works) while one
is missing, and the call fails with :class:`EntryPointUnavailable` saying which module is absent.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

from pipeline.act.blocklist import Blocklists
from pipeline.app_settings import AppSettings
from pipeline.coverage_store import CoverageStore
from pipeline.detect import (
    ENTRIES_BLOB,
    BlocklistIndex,
    ModesCache,
    StreamDetector,
    entries_document,
    index_from_document,
)
from pipeline.detect.modes_cache import DeviceMode
from pipeline.model import RejectedRecord
from pipeline.sinks.audit import DEFAULT_DETAILS_CONTAINER, AuditTrail
from pipeline.sinks.log_analytics import DeadLetter, DeadLetterStore, LogAnalyticsSink
from pipeline.sources.collector_doc import MAX_DOCUMENT_BYTES, validate_collector_document
from pipeline.tables import DETECTIONS

__all__ = [
    "ENTRIES_BLOB",
    "EntryPointUnavailable",
    "FanoutMessage",
    "MessageError",
    "StreamOutcome",
    "approve_action",
    "parse_fanout_message",
    "process_collector",
    "process_stream",
    "published_blob_name",
    "reset_stream_state",
    "run_fanout_message",
    "run_scheduled_cycle",
    "settings",
    "store_entries",
]

logger = logging.getLogger(__name__)

# The cycle's record of each device's state name (pipeline.cycle, in the STATE_CONTAINER).
CYCLE_MODES_BLOB: Final = "state/device-modes.json"
DEVICE_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
MAX_FANOUT_DEVICES: Final = 1000


class EntryPointUnavailable(RuntimeError):
    """The module an entry point delegates to is not part of this deployment."""


class MessageError(ValueError):
    """A queue message that can never be processed; retrying it would not help."""


def settings(env: Mapping[str, str] | None = None) -> AppSettings:
    """The settings as they are now (``os.environ`` unless given)."""
    return AppSettings.from_env(os.environ if env is None else env)


# -- the cycle -----------------------------------------------------------------------------------


def run_scheduled_cycle(*, past_due: bool, env: Mapping[str, str] | None = None) -> Any:
    """Run one full cycle with the deployed services and return its ``CycleResult``.

    Actions stay in dry-run unless ``ACTIONS_ENABLED`` is true (``pipeline.config``). The
    cycle's files go to a temporary directory that is removed afterwards; everything that
    matters is in Log Analytics, the audit trail and storage.
    """
    environment = os.environ if env is None else env
    if past_due:
        # The schedule was missed (the app was down or scaled to zero); one run catches up.
        logger.warning("cycle timer is past due; running the cycle once now")
    cycle = _module("pipeline.cycle", "the pipeline cycle")
    services = _module("pipeline.services", "the pipeline cycle's services")
    config = _module("pipeline.config", "the pipeline cycle's settings")
    sources = _module("pipeline.sources.settings", "the MDE connection settings")

    settings_now = config.PipelineSettings.from_env(environment)
    holder = f"function@{environment.get('WEBSITE_INSTANCE_ID', '')[:12] or 'local'}"
    with (
        tempfile.TemporaryDirectory(prefix="cycle-") as out,
        services.services_from_settings(
            settings_now, sources.SourceSettings.from_env(environment)
        ) as deployed,
    ):
        options = cycle.CycleOptions(
            out_dir=Path(out),
            tenant=settings_now.tenant,
            holder=holder,
            actions=settings_now.actions,
            fanout=settings_now.fanout,
            watchlist=settings_now.watchlist,
        )
        result = cycle.run_cycle(deployed, options)
    logger.info("cycle %s finished: %s %s", result.cycle_id, result.status, result.counts)
    return result


@dataclass(frozen=True)
class FanoutMessage:
    """One shard of work: evaluate these devices (or every device) for one cycle."""

    cycle_id: str | None
    device_ids: tuple[str, ...] | None  # None: every device
    shard: int
    shards: int
    requested_by: str


def parse_fanout_message(body: bytes | str) -> FanoutMessage:
    """Check a fan-out message; raises :class:`MessageError` naming the field."""
    try:
        document = json.loads(body)
    except ValueError as error:
        raise MessageError(f"fan-out message is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise MessageError("fan-out message is not a JSON object")

    device_ids = document.get("deviceIds")
    if device_ids is not None:
        if (
            not isinstance(device_ids, list)
            or not device_ids
            or len(device_ids) > MAX_FANOUT_DEVICES
            or not all(isinstance(d, str) and DEVICE_ID.match(d) for d in device_ids)
        ):
            raise MessageError(
                f"deviceIds must be a list of 1 to {MAX_FANOUT_DEVICES} device ids "
                f"matching {DEVICE_ID.pattern}"
            )
    elif document.get("all") is not True:
        raise MessageError('a fan-out message names deviceIds or says "all": true')

    shard, shards = document.get("shard", 0), document.get("shards", 1)
    if not (isinstance(shard, int) and isinstance(shards, int) and 0 <= shard < shards <= 4096):
        raise MessageError("shard and shards must be integers with 0 <= shard < shards <= 4096")
    cycle_id = document.get("cycleId")
    if cycle_id is not None and (not isinstance(cycle_id, str) or not DEVICE_ID.match(cycle_id)):
        raise MessageError("cycleId must be a short id of letters, digits, '.', '_' or '-'")
    requested_by = document.get("requestedBy", "")
    return FanoutMessage(
        cycle_id,
        tuple(device_ids) if device_ids is not None else None,
        shard,
        shards,
        str(requested_by)[:200],
    )


def run_fanout_message(body: bytes | str, env: Mapping[str, str] | None = None) -> Any:
    """Evaluate one shard (``pipeline.fanout.run_shard(settings, message)``), returning its
    ``ShardResult``.

    The shard reads the cycle's settings (``pipeline.config.PipelineSettings``: ingestion,
    storage, the tenant's declared settings), the same ones the timer's cycle reads. A
    malformed message raises :class:`MessageError`; the queue moves it to the poison queue after
    its retries, where an operator sees it.
    """
    message = parse_fanout_message(body)
    run_shard = _delegate("pipeline.fanout", "run_shard", "the fan-out shard evaluation")
    config = _module("pipeline.config", "the pipeline cycle's settings")
    logger.info(
        "fan-out shard %d of %d: %s devices",
        message.shard,
        message.shards,
        "all" if message.device_ids is None else len(message.device_ids),
    )
    return run_shard(config.PipelineSettings.from_env(os.environ if env is None else env), message)


# -- streaming detection -------------------------------------------------------------------------


@dataclass
class StreamOutcome:
    counts: dict[str, int]
    uploaded: int
    dead_lettered: int
    dead_letter_blobs: list[str] = field(default_factory=list)
    blocklist_loaded: bool = True


@dataclass
class _StreamState:
    detector: StreamDetector
    loaded_at: float
    blocklist_loaded: bool


_STREAM_LOCK = threading.Lock()
_STREAM_STATE: dict[str, _StreamState] = {}


def reset_stream_state() -> None:
    """Forget the cached blocklist index and modes (they are reloaded on the next batch)."""
    with _STREAM_LOCK:
        _STREAM_STATE.clear()


def process_stream(
    bodies: Sequence[bytes | str],
    env: Mapping[str, str] | None = None,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> StreamOutcome:
    """Detect, upload the rows, dead-letter and audit unreadable records, and return counts.

    The blocklist index and the mode cache are loaded from storage on the first batch and again
    after ``STREAM_CACHE_SECONDS``; between loads every batch of this instance reuses them.
    """
    config = settings(env)
    state = _stream_state(config)
    result = state.detector.detect(bodies)

    now = clock()
    batch_id = f"stream-{now:%Y%m%d}"
    uploaded = dead = 0
    blobs: list[str] = []
    if result.rows:
        endpoint, rule = config.require_ingestion()
        dead_letters = DeadLetterStore(config.container(config.dead_letter_container))
        credential = config.ingestion_credential()
        with LogAnalyticsSink(endpoint, rule, credential, dead_letters) as sink:
            upload = sink.upload(DETECTIONS, result.rows, cycle_id=batch_id)
        uploaded, dead = upload.sent, upload.dead_lettered
        if upload.dead_letter_blob:
            blobs.append(upload.dead_letter_blob)

    if result.poison:
        blob = DeadLetterStore(config.container(config.dead_letter_container)).write(
            batch_id,
            "stream-envelope",
            [
                DeadLetter(record.as_dict(), record.reason, "envelope", None)
                for record in result.poison
            ],
        )
        blobs.append(blob)
        dead += len(result.poison)

    if blobs:
        audit = AuditTrail(config.table_service().get_table_client(config.audit_table))
        audit.batch_dead_lettered(
            batch_id,
            table=DETECTIONS.name,
            rows=dead,
            blob=", ".join(blobs),
            poison_records=len(result.poison),
            reasons=sorted({record.reason for record in result.poison})[:10],
        )
    return StreamOutcome(result.counts, uploaded, dead, blobs, state.blocklist_loaded)


def _stream_state(config: AppSettings) -> _StreamState:
    key = f"{config.blocklist_container}|{config.coverage_table}|{config.unknown_devices}"
    with _STREAM_LOCK:
        state = _STREAM_STATE.get(key)
        if state is not None and time.monotonic() - state.loaded_at < config.stream_cache_seconds:
            return state

        index, loaded = _load_index(config)
        modes = ModesCache(config.unknown_devices)
        _load_cycle_modes(config, modes)
        store = CoverageStore(config.table_service().get_table_client(config.coverage_table))
        store.load_modes(modes)
        devices = len(modes)
        logger.info(
            "streaming detector loaded %d blocklist entries and %d device modes",
            index.size,
            devices,
        )
        state = _StreamState(StreamDetector(index, modes), time.monotonic(), loaded)
        _STREAM_STATE[key] = state
        return state


def _load_cycle_modes(config: AppSettings, modes: ModesCache) -> None:
    """The modes the last cycle evaluated (``state/device-modes.json``), as of its write time."""
    blob = config.container(config.state_container).get_blob_client(CYCLE_MODES_BLOB)
    try:
        downloaded = blob.download_blob()
    except ResourceNotFoundError:
        logger.warning("no cycle has stored device modes yet (%s)", CYCLE_MODES_BLOB)
        return
    written = downloaded.properties.last_modified
    states = json.loads(downloaded.readall())
    if isinstance(states, dict):
        modes.load_state_names(states, written)


def _load_index(config: AppSettings) -> tuple[BlocklistIndex, bool]:
    blob = config.container(config.blocklist_container).get_blob_client(ENTRIES_BLOB)
    try:
        document = json.loads(blob.download_blob().readall())
    except ResourceNotFoundError:
        # Nothing can match until the cycle publishes the lists; say so loudly every load.
        logger.error(
            "no blocklist entries at %s/%s; streaming detection matches nothing until the "
            "cycle publishes them",
            config.blocklist_container,
            ENTRIES_BLOB,
        )
        return BlocklistIndex([]), False
    return index_from_document(document), True


# -- collector documents -------------------------------------------------------------------------


def process_collector(body: bytes | str, env: Mapping[str, str] | None = None) -> DeviceMode:
    """Record the mode a queued collector document states; audit a change of mode.

    A document that is not one (the HTTP endpoint checks before queueing, so this means someone
    else wrote to the queue) raises :class:`MessageError`.
    """
    raw = body.encode("utf-8") if isinstance(body, str) else body
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise MessageError(f"collector document is {len(raw)} bytes, over {MAX_DOCUMENT_BYTES}")
    try:
        document = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as error:
        raise MessageError(f"collector message is not JSON: {error}") from None
    problems = validate_collector_document(document, len(raw))
    if problems:
        raise MessageError("collector document refused: " + "; ".join(problems[:10]))

    cache = ModesCache()
    mode = cache.update_from_collector(document, "collector queue")
    if isinstance(mode, RejectedRecord):
        raise MessageError(f"collector document refused: {mode.field}: {mode.reason}")

    config = settings(env)
    store = CoverageStore(config.table_service().get_table_client(config.coverage_table))
    previous, written = store.update_mode(mode)
    if written and previous is not None and previous.av_mode_code != mode.av_mode_code:
        audit = AuditTrail(config.table_service().get_table_client(config.audit_table))
        audit.mode_changed(
            f"collector-{mode.as_of:%Y%m%d}" if mode.as_of else "collector",
            mode.device_id,
            from_state=previous.av_state,
            to_state=mode.av_state,
            from_code=previous.av_mode_code,
            to_code=mode.av_mode_code,
            source="collector",
        )
    _forget_cached_modes()
    return mode


def _forget_cached_modes() -> None:
    # The next batch on this instance reloads modes and sees the change at once.
    reset_stream_state()


# -- published blocklists ------------------------------------------------------------------------


def published_blob_name(format_name: str, list_name: str) -> str:
    """Where the cycle publishes a list in the BLOCKLIST_CONTAINER (``BlobBlocklistStore``)."""
    return f"{list_name}/{format_name}"


def store_entries(container: ContainerClient, blocklists: Blocklists) -> str:
    """Write the entries the streaming detector matches against (``ENTRIES_BLOB``)."""
    body = json.dumps(entries_document(blocklists), separators=(",", ":")).encode("utf-8")
    container.get_blob_client(ENTRIES_BLOB).upload_blob(
        body, overwrite=True, content_settings=ContentSettings(content_type="application/json")
    )
    return ENTRIES_BLOB


# -- approvals -----------------------------------------------------------------------------------


def approve_action(
    plan_id: str, approver: str, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Approve a waiting EDR block-mode plan (``pipeline.act.edr_block.approve``).

    The action module records the approval (who, when, which plan) in the audit trail itself.
    Raises :class:`EntryPointUnavailable` when that module is absent, ``LookupError`` when no
    such plan waits for approval, and ``ValueError`` when the approval cannot be recorded.
    """
    edr_block = _module("pipeline.act.edr_block", "the EDR block-mode action")
    safety = _module("pipeline.act.safety", "the action safety settings")
    environment = os.environ if env is None else env
    config = settings(environment)
    audit = AuditTrail(
        config.table_service().get_table_client(config.audit_table),
        details_container=config.container(DEFAULT_DETAILS_CONTAINER),
    )
    try:
        approval = edr_block.approve(
            plan_id, approver, audit, safety.ActionSettings.from_env(environment)
        )
    except edr_block.PlanNotFoundError as error:
        raise LookupError(str(error)) from error
    except edr_block.ActionError as error:
        raise ValueError(str(error)) from error
    return {
        "planId": approval.plan_id,
        "approver": approval.approver,
        "actions": approval.action_count,
        "recorded": approval.recorded,
        "approvers": list(approval.approvers),
    }


def _module(module_name: str, what: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise  # the module exists but one of its own imports is missing
        raise EntryPointUnavailable(
            f"{what} ({module_name}) is not part of this deployment"
        ) from None


def _delegate(module_name: str, function: str, what: str) -> Callable[..., Any]:
    module = _module(module_name, what)
    entry = getattr(module, function, None)
    if not callable(entry):
        raise EntryPointUnavailable(f"{module_name} has no {function}() for {what}")
    return entry  # type: ignore[no-any-return]
