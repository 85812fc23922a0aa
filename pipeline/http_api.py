"""What the function app's HTTP functions do: check the request, call the pipeline, answer.

Every route is ``auth_level=FUNCTION`` (the host checks the function key before any code here
runs). Anything from the request that reaches a storage query or a blob name is checked against
a pattern first and passed as a parameter, never spliced into a filter.

======================================  ==========================================================
``POST collector``                      an endpoint collector document → ``COLLECTOR_QUEUE``
                                        (202; 400 with the problems; 413 over 256 KB)
``POST evaluate``                       ``{"deviceId": ...}`` or ``{"all": true}`` →
                                        ``FANOUT_QUEUE`` (202); "all" over a fleet above
                                        the fan-out threshold: one message per shard
``GET devices/{device_id}/coverage``    the device's latest coverage and current mode
``GET matrix``                          the capability matrix (``?capability=`` for one)
``GET audit``                           the audit trail by ``cycle``, ``device`` or ``day``, paged
                                        with ``pageSize`` and ``continuation``
``GET blocklists/{format}``             a published list (``?list=block|warn|allow``), with
                                        ETag; ``If-None-Match`` → 304
``POST actions/{plan_id}/approve``      approval of a pending action, recorded with who approved
======================================  ==========================================================
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any, Final, cast

import azure.functions as func
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueMessage

from pipeline import app_entry
from pipeline.act.blocklist import FORMATS, LIST_NAMES, etag_matches
from pipeline.app_settings import AppSettings, AppSettingsError
from pipeline.coverage_store import CoverageStore, CoverageStoreError
from pipeline.matrix import load_matrix
from pipeline.sharding import LATEST_SNAPSHOT, shard_messages
from pipeline.sinks.audit import AuditError, AuditEvent, AuditQueryError, AuditTrail
from pipeline.sources.collector_doc import MAX_DOCUMENT_BYTES, validate_collector_document

__all__ = [
    "approve_action",
    "get_audit",
    "get_blocklist",
    "get_coverage",
    "get_matrix",
    "post_collector",
    "post_evaluate",
]

logger = logging.getLogger(__name__)

DEVICE_ID: Final = app_entry.DEVICE_ID
CYCLE_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
PLAN_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
KIND: Final = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
APPROVER: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@'-]{0,127}$")
# Set by App Service authentication when the caller signed in; a function key names no one.
PRINCIPAL_HEADER: Final = "x-ms-client-principal-name"
MAX_SMALL_BODY: Final = 16 * 1024


Handler = Callable[[func.HttpRequest], func.HttpResponse]


def _answers_misconfiguration(handler: Handler) -> Handler:
    """A missing or bad setting becomes a 500 whose log line names the setting."""

    @functools.wraps(handler)
    def wrapped(req: func.HttpRequest) -> func.HttpResponse:
        try:
            return handler(req)
        except AppSettingsError as error:
            logger.error("function app settings: %s", error)
            return _error(500, "the function app is not configured; see its log")

    return wrapped


# -- writes -------------------------------------------------------------------------------------


@_answers_misconfiguration
def post_collector(req: func.HttpRequest) -> func.HttpResponse:
    """Check an endpoint collector document and queue it for processing."""
    body = req.get_body()
    declared = _declared_length(req)
    if len(body) > MAX_DOCUMENT_BYTES or (declared or 0) > MAX_DOCUMENT_BYTES:
        return _error(413, f"a collector document may be at most {MAX_DOCUMENT_BYTES} bytes")
    try:
        document = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as error:
        return _error(400, "the body is not UTF-8 JSON", problems=[str(error)])

    problems = validate_collector_document(document, len(body))
    if problems:
        return _error(400, "the collector document is not valid", problems=problems)

    config = app_entry.settings()
    sent = _enqueue(
        config.queue(config.collector_queue), json.dumps(document, separators=(",", ":"))
    )
    device = document["device"]
    logger.info("queued collector document of %s to %s", device["name"], config.collector_queue)
    return _json(202, {"queued": True, "messageId": sent.id, "device": device["name"]})


@_answers_misconfiguration
def post_evaluate(req: func.HttpRequest) -> func.HttpResponse:
    """Queue a re-evaluation of one device (``{"deviceId": ...}``) or all (``{"all": true}``)."""
    body = _small_json(req)
    if isinstance(body, func.HttpResponse):
        return body

    device_id = body.get("deviceId")
    if device_id is not None:
        if not isinstance(device_id, str) or not DEVICE_ID.match(device_id):
            return _error(400, f"deviceId must match {DEVICE_ID.pattern}")
        message: dict[str, Any] = {"deviceIds": [device_id]}
    elif body.get("all") is True:
        message = {"all": True}
    else:
        return _error(400, 'give "deviceId" or "all": true')
    message["requestedBy"] = _principal(req) or "function key"

    config = app_entry.settings()
    queue = config.queue(config.require_fanout_queue())
    if message.get("all"):
        shards = _shards_for_everything(config, message["requestedBy"])
        if shards is not None:
            cycle_id, texts = shards
            for text in texts:
                app_entry.parse_fanout_message(text)
            sent = [_enqueue(queue, text) for text in texts]
            return _json(
                202,
                {
                    "queued": True,
                    "messageIds": [m.id for m in sent],
                    "cycleId": cycle_id,
                    "shards": len(sent),
                    **message,
                },
            )
    app_entry.parse_fanout_message(json.dumps(message))  # the queue function will accept it
    sent_one = _enqueue(queue, json.dumps(message))
    return _json(202, {"queued": True, "messageId": sent_one.id, **message})


def _shards_for_everything(config: AppSettings, requested_by: str) -> tuple[str, list[str]] | None:
    """Re-evaluating every device of a fleet above the fan-out threshold takes the shards a
    cycle would use, all naming the newest snapshot; None when one message will do (a small
    fleet, or no snapshot stored yet: the shard then says so)."""
    blob = config.container(config.state_container).get_blob_client(LATEST_SNAPSHOT)
    try:
        pointer = json.loads(blob.download_blob().readall())
    except (ResourceNotFoundError, ValueError):
        return None
    if not isinstance(pointer, dict):
        return None
    devices, cycle_id = pointer.get("devices"), pointer.get("cycleId")
    if not isinstance(devices, int) or not isinstance(cycle_id, str):
        return None
    shards = config.fanout.shards_for(devices)
    if shards < 2:
        return None
    return cycle_id, shard_messages(cycle_id, shards, requested_by=requested_by)


@_answers_misconfiguration
def approve_action(req: func.HttpRequest) -> func.HttpResponse:
    """Approve a pending action plan, recording who approved it."""
    plan_id = req.route_params.get("plan_id", "")
    if not PLAN_ID.match(plan_id):
        return _error(400, f"plan id must match {PLAN_ID.pattern}")
    body = _small_json(req, allow_empty=True)
    if isinstance(body, func.HttpResponse):
        return body

    approver = _principal(req) or body.get("approver")
    if not isinstance(approver, str) or not APPROVER.match(approver):
        return _error(
            400,
            "say who approves: sign in (App Service authentication) or give "
            f'"approver" matching {APPROVER.pattern}',
        )
    try:
        outcome = app_entry.approve_action(plan_id, approver)
    except app_entry.EntryPointUnavailable as error:
        return _error(501, f"approvals are not available: {error}")
    except LookupError as error:
        return _error(404, str(error))
    except ValueError as error:
        return _error(400, str(error))
    except AuditError as error:
        logger.error("approval of plan %s failed: %s", plan_id, error)
        return _error(503, "the audit trail cannot be read or written right now")
    return _json(200, outcome)


# -- reads --------------------------------------------------------------------------------------


@_answers_misconfiguration
def get_coverage(req: func.HttpRequest) -> func.HttpResponse:
    """The latest coverage row and the current mode of one device."""
    device_id = req.route_params.get("device_id", "")
    if not DEVICE_ID.match(device_id):
        return _error(400, f"device id must match {DEVICE_ID.pattern}")

    config = app_entry.settings()
    store = CoverageStore(config.table_service().get_table_client(config.coverage_table))
    try:
        entity = store.get(device_id)
    except CoverageStoreError as error:
        logger.error("coverage read failed: %s", error)
        return _error(503, "the coverage store cannot be read right now")
    if entity is None:
        return _error(404, f"no coverage for device {device_id}")

    mode_as_of = entity.get("ModeAsOf")
    return _json(
        200,
        {
            "deviceId": device_id,
            "mode": {
                "avModeCode": entity.get("AvModeCode", ""),
                "avState": entity.get("AvState", ""),
                "asOf": mode_as_of.isoformat() if isinstance(mode_as_of, datetime) else None,
                "source": entity.get("ModeSource", ""),
            },
            "coverageStale": bool(entity.get("CoverageStale", False)),
            "coverage": entity.get("CoverageRow"),
        },
    )


@_answers_misconfiguration
def get_matrix(req: func.HttpRequest) -> func.HttpResponse:
    """The capability matrix, every cell expanded; ``?capability=`` for one capability."""
    document = load_matrix().to_json()
    capability = req.params.get("capability")
    if capability is not None:
        if capability not in document["capabilities"]:
            return _error(404, f"unknown capability {capability[:64]!r}")
        document["capabilities"] = {capability: document["capabilities"][capability]}

    text = json.dumps(document, sort_keys=True)
    etag = f'"{hashlib.sha256(text.encode("utf-8")).hexdigest()}"'
    if etag_matches(req.headers.get("if-none-match"), etag):
        return func.HttpResponse(status_code=304, headers={"ETag": etag})
    return func.HttpResponse(
        text, status_code=200, mimetype="application/json", headers={"ETag": etag}
    )


@_answers_misconfiguration
def get_audit(req: func.HttpRequest) -> func.HttpResponse:
    """Audit events, newest first, of one cycle, device or UTC day (``YYYY-MM-DD``)."""
    chosen = {name: req.params[name] for name in ("cycle", "device", "day") if name in req.params}
    if len(chosen) != 1:
        return _error(400, "give exactly one of cycle, device or day")
    ((by, key),) = chosen.items()

    kind = req.params.get("kind")
    if kind is not None and not KIND.match(kind):
        return _error(400, f"kind must match {KIND.pattern}")
    page_size = _page_size(req.params.get("pageSize"))
    if page_size is None:
        return _error(400, "pageSize must be a whole number from 1 to 1000")
    continuation = req.params.get("continuation") or None

    config = app_entry.settings()
    trail = AuditTrail(config.table_service().get_table_client(config.audit_table))
    try:
        if by == "cycle":
            if not CYCLE_ID.match(key):
                return _error(400, f"cycle must match {CYCLE_ID.pattern}")
            page = trail.by_cycle(key, kind=kind, page_size=page_size, continuation=continuation)
        elif by == "device":
            if not DEVICE_ID.match(key):
                return _error(400, f"device must match {DEVICE_ID.pattern}")
            page = trail.by_device(key, kind=kind, page_size=page_size, continuation=continuation)
        else:
            try:
                day = date.fromisoformat(key)
            except ValueError:
                return _error(400, "day must be a date, YYYY-MM-DD")
            page = trail.by_day(day, kind=kind, page_size=page_size, continuation=continuation)
    except AuditQueryError as error:
        if continuation is not None and "continuation token" in str(error):
            return _error(400, "the continuation token is not one this API gave out")
        logger.error("audit query failed: %s", error)
        return _error(503, "the audit trail cannot be read right now")

    return _json(
        200,
        {
            "events": [_event_json(event) for event in page.events],
            "continuation": page.continuation,
        },
    )


@_answers_misconfiguration
def get_blocklist(req: func.HttpRequest) -> func.HttpResponse:
    """A published blocklist in one format, with its ETag; 304 when the caller has it."""
    format_name = req.route_params.get("format", "")
    list_name = req.params.get("list", "block")
    if format_name not in FORMATS:
        return _error(404, f"unknown format; known: {', '.join(FORMATS)}")
    if list_name not in LIST_NAMES:
        return _error(400, f"list must be one of {', '.join(LIST_NAMES)}")

    config = app_entry.settings()
    container = config.container(config.blocklist_container)
    blob = container.get_blob_client(app_entry.published_blob_name(format_name, list_name))
    try:
        properties = blob.get_blob_properties()
    except ResourceNotFoundError:
        return _error(404, f"no {list_name} list has been published as {format_name} yet")

    sha256 = properties.metadata.get("sha256", "")
    etag = f'"{sha256}"'
    headers = {"ETag": etag, "X-Blocklist-Version": properties.metadata.get("version", "")}
    if sha256 and etag_matches(req.headers.get("if-none-match"), etag):
        return func.HttpResponse(status_code=304, headers=headers)

    try:
        content = blob.download_blob().readall()
    except AzureError as error:
        logger.error("blocklist download failed: %s", error)
        return _error(503, "the blocklist cannot be read right now")
    mimetype = properties.content_settings.content_type or "text/plain"
    return func.HttpResponse(content, status_code=200, mimetype=mimetype, headers=headers)


# -- helpers ------------------------------------------------------------------------------------


def _enqueue(queue: QueueClient, text: str) -> QueueMessage:
    try:
        return queue.send_message(text)
    except ResourceNotFoundError:
        # The deployment creates the queues; a fresh local storage account has none yet.
        with contextlib.suppress(ResourceExistsError):
            queue.create_queue()
        return queue.send_message(text)


def _small_json(
    req: func.HttpRequest, *, allow_empty: bool = False
) -> dict[str, Any] | func.HttpResponse:
    body = req.get_body()
    if len(body) > MAX_SMALL_BODY:
        return _error(413, f"the body may be at most {MAX_SMALL_BODY} bytes")
    if not body.strip() and allow_empty:
        return {}
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return _error(400, "the body is not JSON")
    if not isinstance(document, dict):
        return _error(400, "the body must be a JSON object")
    return cast(dict[str, Any], document)


def _principal(req: func.HttpRequest) -> str | None:
    value = req.headers.get(PRINCIPAL_HEADER)
    return value if value and APPROVER.match(value) else None


def _declared_length(req: func.HttpRequest) -> int | None:
    raw = req.headers.get("content-length")
    return int(raw) if raw and raw.isdigit() else None


def _page_size(raw: str | None) -> int | None:
    if raw is None:
        return 100
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        return None
    return int(raw)


def _event_json(event: AuditEvent) -> dict[str, Any]:
    return {
        "kind": event.kind,
        "cycleId": event.cycle_id,
        "deviceId": event.device_id,
        "at": event.at.isoformat(),
        "eventId": event.event_id,
        "details": dict(event.details),
        "detailsTruncated": event.details_truncated,
    }


def _json(
    status: int, body: Mapping[str, Any], headers: dict[str, str] | None = None
) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, default=str),
        status_code=status,
        mimetype="application/json",
        headers=headers,
    )


def _error(status: int, message: str, **extra: Any) -> func.HttpResponse:
    return _json(status, {"error": message, **extra})
