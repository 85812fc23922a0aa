"""The append-only audit trail, in Azure Table Storage (Azurite locally and in tests).

Every event is written once into each of up to three partitions of one table, so that each of the
questions an operator asks is a single-partition query, newest first:

====================  ===========================  ==============================================
question              PartitionKey                 written when
====================  ===========================  ==============================================
what did a cycle do   ``cycle_<cycle id>``         the event belongs to a cycle
what happened to a    ``device_<device id>``       the event names a device
device
what happened on a    ``day_<YYYYMMDD>`` (UTC)     always
day
====================  ===========================  ==============================================

The RowKey is ``<inverted ticks>_<event id>``: 19 digits of (max .NET ticks - event ticks), so the
newest event sorts first, then the event id, which makes keys unique and deterministic. Writing
the same event again (a retry after a timeout whose write did land) hits the same keys, gets 409,
and counts as success; nothing is ever updated or deleted.

The trade-off: an event costs up to three writes and three times the storage, and the copies are
not written atomically (a transaction cannot span partitions). If a write fails part-way, the
caller retries the same ``AuditEvent`` and the copies already written answer 409. In exchange no
query ever scans the table, and events of one cycle or one day are written 100 to a transaction.

Keys never contain ``/ \\ # ?``, control characters, or ``% ' + ~`` (which break filters and URLs):
those are written as ``~XX`` (hex); very long ids are shortened with a hash. Details go in one
JSON string property (``Details``); scalar details are also copied to properties of their own so
they can be filtered in Storage Explorer. Details over the 64 KiB string limit are stored whole in
a blob (when a container is configured) and cut short with a marker in the entity.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.data.tables import (
    EdmType,
    EntityProperty,
    TableClient,
    TableServiceClient,
    TableTransactionError,
)
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

logger = logging.getLogger(__name__)

DEFAULT_TABLE = "PipelineAudit"
DEFAULT_DETAILS_CONTAINER = "audit-details"

# .NET DateTime.MaxValue.Ticks; ticks are 100 ns since 0001-01-01, as Azure tools count them.
MAX_TICKS = 3_155_378_975_999_999_999
_EPOCH = datetime(1, 1, 1, tzinfo=UTC)

# Table storage limits: string properties hold 64 KiB of UTF-16 (32 Ki code units), an entity
# holds 252 properties of our own, a transaction holds 100 entities of one partition and 4 MiB.
MAX_STRING_UNITS = 32 * 1024
MAX_DETAILS_UNITS = 30_000  # leaves room for the truncation marker
MAX_PROMOTED_PROPERTIES = 64
MAX_PROMOTED_STRING_UNITS = 1024
MAX_BATCH_ENTITIES = 100
MAX_BATCH_BYTES = 3_500_000
WRITE_THREADS = 8
MAX_KEY_PART_CHARS = 400  # keys hold 1 KiB; leaves room for the prefix and the RowKey suffix
TRUNCATION_MARKER = " [truncated by pipeline]"

_FIXED_PROPERTIES = frozenset(
    {
        "PartitionKey",
        "RowKey",
        "Timestamp",
        "etag",
        "Kind",
        "CycleId",
        "DeviceId",
        "EventId",
        "EventTime",
        "Index",
        "Details",
        "DetailsTruncated",
        "DetailsUnits",
        "DetailsBlob",
    }
)
_PROPERTY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# Disallowed in keys by the service, plus characters that break OData filters or URLs, plus
# the escape character itself.
_KEY_UNSAFE = re.compile(r"[/\\#?%'+~\x00-\x1f\x7f-\x9f]")
_INT32 = (-(2**31), 2**31 - 1)


class AuditKind(StrEnum):
    CYCLE_STARTED = "cycle_started"
    CYCLE_FINISHED = "cycle_finished"
    MODE_CHANGED = "mode_changed"
    ACTION_PLANNED = "action_planned"
    ACTION_APPROVED = "action_approved"
    ACTION_EXECUTED = "action_executed"
    ACTION_FAILED = "action_failed"
    BLOCKLIST_PUBLISHED = "blocklist_published"
    BATCH_DEAD_LETTERED = "batch_dead_lettered"


class Index(StrEnum):
    CYCLE = "cycle"
    DEVICE = "device"
    DAY = "day"
    KIND = "kind"  # action events only: "every device ever acted on" is one partition


# Kinds also indexed by kind, so a cycle can read every earlier action in one partition scan
# instead of one query per device.
_KIND_INDEXED_PREFIX = "action_"


class AuditError(Exception):
    """Base class of the errors this module raises."""


class AuditWriteError(AuditError):
    """Events could not be written; ``event_ids`` names them, ``partition`` where it failed."""

    def __init__(self, message: str, partition: str, event_ids: Sequence[str]) -> None:
        super().__init__(message)
        self.partition = partition
        self.event_ids = tuple(event_ids)


class AuditQueryError(AuditError):
    """A query could not run (for example, a continuation token that is not ours)."""


@dataclass(frozen=True)
class AuditEvent:
    """One thing that happened. Build it once and retry writing the same object."""

    kind: str
    cycle_id: str | None
    device_id: str | None
    at: datetime
    details: Mapping[str, Any]
    event_id: str
    details_truncated: bool = False
    details_blob: str | None = None


@dataclass(frozen=True)
class AuditPage:
    """One page of a query, newest first; pass ``continuation`` back for the next one."""

    events: tuple[AuditEvent, ...]
    continuation: str | None


@dataclass
class _Row:
    partition: str
    entity: dict[str, Any]
    event_id: str
    size: int


@dataclass
class _Buffer:
    events: list[AuditEvent] = field(default_factory=list)


def new_event(
    kind: str,
    cycle_id: str | None = None,
    device_id: str | None = None,
    details: Mapping[str, Any] | None = None,
    *,
    at: datetime | None = None,
    event_id: str | None = None,
) -> AuditEvent:
    """Build an event; ``event_id`` defaults to a hash of everything else, time included."""
    if not _KIND.match(kind):
        raise ValueError(f"audit kind {kind!r} must be lower_snake_case, at most 64 characters")
    when = (at or datetime.now(UTC)).astimezone(UTC)
    body = dict(details or {})
    if event_id is None:
        canonical = json.dumps(
            [kind, cycle_id, device_id, when.isoformat(), body], sort_keys=True, default=str
        )
        event_id = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]
    return AuditEvent(str(kind), cycle_id, device_id, when, body, event_id)


class AuditTrail:
    """Writes and reads audit events. Create-only: nothing here updates or deletes an entity."""

    def __init__(
        self,
        table: TableClient,
        *,
        details_container: ContainerClient | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._table = table
        self._details = details_container
        self._clock = clock
        self._table_ready = False
        self._container_ready = False
        self._buffer: _Buffer | None = None

    @classmethod
    def from_connection_string(
        cls,
        connection_string: str,
        table_name: str = DEFAULT_TABLE,
        *,
        details_container: str | None = DEFAULT_DETAILS_CONTAINER,
        **client_options: Any,
    ) -> AuditTrail:
        """Tables and (unless ``details_container`` is None) blobs of one storage account.

        ``client_options`` go to both storage clients (e.g. ``retry_total=2``).
        """
        service = TableServiceClient.from_connection_string(connection_string, **client_options)
        container = None
        if details_container is not None:
            blobs = BlobServiceClient.from_connection_string(connection_string, **client_options)
            container = blobs.get_container_client(details_container)
        return cls(service.get_table_client(table_name), details_container=container)

    @classmethod
    def from_account_url(
        cls,
        endpoint: str,
        credential: TokenCredential,
        table_name: str = DEFAULT_TABLE,
        *,
        details_container: ContainerClient | None = None,
        **client_options: Any,
    ) -> AuditTrail:
        service = TableServiceClient(endpoint, credential=credential, **client_options)
        return cls(service.get_table_client(table_name), details_container=details_container)

    # -- recording ---------------------------------------------------------------------------

    def record(
        self,
        kind: str,
        cycle_id: str | None = None,
        device_id: str | None = None,
        details: Mapping[str, Any] | None = None,
        *,
        at: datetime | None = None,
        event_id: str | None = None,
    ) -> AuditEvent:
        """Record one event now (or at the end of ``buffered()``) and return it."""
        event = new_event(
            kind, cycle_id, device_id, details, at=at or self._clock(), event_id=event_id
        )
        if self._buffer is not None:
            self._buffer.events.append(event)
        else:
            self.append([event])
        return event

    @contextmanager
    def buffered(self) -> Iterator[None]:
        """Collect the events recorded inside the block and write them in transactions at its end.

        The events are written even when the block raises, so what did happen is on record.
        """
        if self._buffer is not None:
            yield
            return
        self._buffer = _Buffer()
        try:
            yield
        finally:
            events, self._buffer = self._buffer.events, None
            self.append(events)

    def cycle_started(self, cycle_id: str, *, dry_run: bool, **details: Any) -> AuditEvent:
        return self.record(AuditKind.CYCLE_STARTED, cycle_id, None, {"dry_run": dry_run, **details})

    def cycle_finished(
        self,
        cycle_id: str,
        *,
        status: str,
        counts: Mapping[str, int],
        durations: Mapping[str, float],
        **details: Any,
    ) -> AuditEvent:
        body = {"status": status, "counts": dict(counts), "durations": dict(durations), **details}
        return self.record(AuditKind.CYCLE_FINISHED, cycle_id, None, body)

    def mode_changed(
        self,
        cycle_id: str,
        device_id: str,
        *,
        from_state: str | None,
        to_state: str,
        **details: Any,
    ) -> AuditEvent:
        body = {"from_state": from_state, "to_state": to_state, **details}
        return self.record(AuditKind.MODE_CHANGED, cycle_id, device_id, body)

    def action_planned(
        self, cycle_id: str, device_id: str | None, *, action_id: str, action: str, **details: Any
    ) -> AuditEvent:
        body = {"action_id": action_id, "action": action, **details}
        return self.record(AuditKind.ACTION_PLANNED, cycle_id, device_id, body)

    def action_approved(
        self,
        cycle_id: str,
        device_id: str | None,
        *,
        action_id: str,
        approver: str,
        **details: Any,
    ) -> AuditEvent:
        body = {"action_id": action_id, "approver": approver, **details}
        return self.record(AuditKind.ACTION_APPROVED, cycle_id, device_id, body)

    def action_executed(
        self, cycle_id: str, device_id: str | None, *, action_id: str, action: str, **details: Any
    ) -> AuditEvent:
        body = {"action_id": action_id, "action": action, **details}
        return self.record(AuditKind.ACTION_EXECUTED, cycle_id, device_id, body)

    def action_failed(
        self,
        cycle_id: str,
        device_id: str | None,
        *,
        action_id: str,
        action: str,
        error: str,
        **details: Any,
    ) -> AuditEvent:
        body = {"action_id": action_id, "action": action, "error": error, **details}
        return self.record(AuditKind.ACTION_FAILED, cycle_id, device_id, body)

    def blocklist_published(
        self,
        cycle_id: str,
        *,
        target: str,
        content_hash: str,
        size_bytes: int,
        added: int,
        removed: int,
        **details: Any,
    ) -> AuditEvent:
        body = {
            "target": target,
            "content_hash": content_hash,
            "size_bytes": size_bytes,
            "added": added,
            "removed": removed,
            **details,
        }
        return self.record(AuditKind.BLOCKLIST_PUBLISHED, cycle_id, None, body)

    def batch_dead_lettered(
        self,
        cycle_id: str,
        *,
        table: str,
        rows: int,
        blob: str | None,
        **details: Any,
    ) -> AuditEvent:
        body = {"table": table, "rows": rows, "blob": blob, **details}
        return self.record(AuditKind.BATCH_DEAD_LETTERED, cycle_id, None, body)

    # -- writing -------------------------------------------------------------------------------

    def append(self, events: Iterable[AuditEvent]) -> None:
        """Write ``events`` to every index they belong to. Safe to call again with the same ones."""
        rows: dict[tuple[str, str], _Row] = {}
        for event in events:
            for row in self._rows(event):
                rows.setdefault((row.partition, row.entity["RowKey"]), row)
        if not rows:
            return
        self._ensure_table()

        by_partition: dict[str, list[_Row]] = {}
        for row in rows.values():
            by_partition.setdefault(row.partition, []).append(row)
        batches = [
            (partition, batch)
            for partition, members in by_partition.items()
            for batch in _batches(members)
        ]
        if len(batches) == 1:
            self._write_batch(*batches[0])
        else:
            # Partitions are independent; writing several at once hides the round trips, which
            # matters for device partitions that mostly hold a single event per cycle.
            with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
                for future in [pool.submit(self._write_batch, p, b) for p, b in batches]:
                    future.result()
        logger.info(
            "audit: wrote %d entities in %d partitions, %d requests",
            len(rows),
            len(by_partition),
            len(batches),
        )

    def _rows(self, event: AuditEvent) -> list[_Row]:
        details_text, truncated, blob = self._details_text(event)
        entity: dict[str, Any] = {
            "Kind": event.kind,
            "CycleId": event.cycle_id,
            "DeviceId": event.device_id,
            "EventId": event.event_id,
            "EventTime": event.at,
            "Details": details_text,
            "DetailsTruncated": truncated,
            "DetailsBlob": blob,
        }
        entity.update(_promoted(event.details))
        entity = {name: value for name, value in entity.items() if value is not None}
        size = len(json.dumps(entity, default=str).encode("utf-8")) + 512

        row_key = f"{inverted_ticks(event.at):019d}_{event.event_id}"
        rows = []
        for index, key in _index_keys(event):
            partition = partition_key(index, key)
            full = {"PartitionKey": partition, "RowKey": row_key, "Index": index.value, **entity}
            rows.append(_Row(partition, full, event.event_id, size))
        return rows

    def _details_text(self, event: AuditEvent) -> tuple[str, bool, str | None]:
        text = json.dumps(event.details, sort_keys=True, default=str, ensure_ascii=False)
        units = _utf16_units(text)
        if units <= MAX_DETAILS_UNITS:
            return text, False, None

        preview = _cut_to_units(text, MAX_DETAILS_UNITS) + TRUNCATION_MARKER
        if self._details is None:
            logger.warning(
                "audit event %s: details of %d UTF-16 units cut to the %d-unit limit "
                "(no details container configured)",
                event.event_id,
                units,
                MAX_DETAILS_UNITS,
            )
            return preview, True, None
        return preview, True, self._store_details(event, text)

    def _store_details(self, event: AuditEvent, text: str) -> str:
        assert self._details is not None
        name = f"{event.at:%Y%m%d}/{event.event_id}.json"
        try:
            if not self._container_ready:
                with suppress(ResourceExistsError):
                    self._details.create_container()
                self._container_ready = True
            # The name is the event id, so a retry writes the same content again: no harm.
            self._details.upload_blob(
                name,
                text.encode("utf-8"),
                overwrite=True,
                content_settings=ContentSettings(content_type="application/json"),
            )
        except AzureError as err:
            raise AuditWriteError(
                f"could not store details of audit event {event.event_id} ({event.kind}) in "
                f"blob {self._details.container_name}/{name}: {err}",
                "",
                [event.event_id],
            ) from err
        return f"{self._details.container_name}/{name}"

    def _ensure_table(self) -> None:
        if self._table_ready:
            return
        try:
            self._table.create_table()
        except ResourceExistsError:
            pass
        except AzureError as err:
            raise AuditWriteError(
                f"could not create audit table {self._table.table_name}: {err}", "", []
            ) from err
        self._table_ready = True

    def _write_batch(self, partition: str, batch: list[_Row]) -> None:
        try:
            if len(batch) == 1:
                self._create_one(batch[0])
            else:
                self._table.submit_transaction([("create", row.entity) for row in batch])
            return
        except TableTransactionError as err:
            if getattr(err, "error_code", None) != "EntityAlreadyExists":
                raise self._write_error(partition, batch, err) from err
        except AzureError as err:
            raise self._write_error(partition, batch, err) from err

        # A transaction is all or nothing: one entity already there (an earlier attempt landed)
        # fails all of them, so write them one by one and let each 409 count as done.
        logger.info(
            "audit: %s already holds part of a batch; writing it entity by entity", partition
        )
        for row in batch:
            try:
                self._create_one(row)
            except AzureError as err:
                raise self._write_error(partition, [row], err) from err

    def _create_one(self, row: _Row) -> None:
        try:
            self._table.create_entity(row.entity)
        except ResourceExistsError:
            logger.debug("audit: %s/%s already written", row.partition, row.entity["RowKey"])

    def _write_error(self, partition: str, rows: Sequence[_Row], err: Exception) -> AuditWriteError:
        ids = sorted({row.event_id for row in rows})
        return AuditWriteError(
            f"could not write {len(rows)} audit entities to {self._table.table_name} partition "
            f"{partition} (events {', '.join(ids[:5])}{'...' if len(ids) > 5 else ''}): {err}",
            partition,
            ids,
        )

    # -- reading -------------------------------------------------------------------------------

    def by_cycle(
        self,
        cycle_id: str,
        *,
        kind: str | None = None,
        page_size: int = 100,
        continuation: str | None = None,
    ) -> AuditPage:
        return self._query(Index.CYCLE, cycle_id, kind, page_size, continuation)

    def by_device(
        self,
        device_id: str,
        *,
        kind: str | None = None,
        page_size: int = 100,
        continuation: str | None = None,
    ) -> AuditPage:
        return self._query(Index.DEVICE, device_id, kind, page_size, continuation)

    def by_day(
        self,
        day: date,
        *,
        kind: str | None = None,
        page_size: int = 100,
        continuation: str | None = None,
    ) -> AuditPage:
        return self._query(Index.DAY, f"{day:%Y%m%d}", kind, page_size, continuation)

    def iter_events(
        self, index: Index, key: str, *, kind: str | None = None
    ) -> Iterator[AuditEvent]:
        """Every event of one partition, newest first, across pages."""
        continuation: str | None = None
        while True:
            page = self._query(index, key, kind, 1000, continuation)
            yield from page.events
            if page.continuation is None:
                return
            continuation = page.continuation

    def load_details(self, event: AuditEvent) -> Mapping[str, Any]:
        """The event's full details, fetched from its blob when they were too large to inline."""
        if event.details_blob is None or self._details is None:
            return event.details
        name = event.details_blob.split("/", 1)[1]
        data = self._details.download_blob(name).readall()
        loaded: Mapping[str, Any] = json.loads(data)
        return loaded

    def _query(
        self, index: Index, key: str, kind: str | None, page_size: int, continuation: str | None
    ) -> AuditPage:
        if not 1 <= page_size <= 1000:
            raise ValueError(f"page_size must be 1..1000, got {page_size}")
        query = "PartitionKey eq @pk"
        parameters: dict[str, Any] = {"pk": partition_key(index, key)}
        if kind is not None:
            query += " and Kind eq @kind"
            parameters["kind"] = str(kind)
        token: Any = _decode_token(continuation)  # the SDK's token is a dict, typed as str

        try:
            while True:
                pages = self._table.query_entities(
                    query, parameters=parameters, results_per_page=page_size
                ).by_page(continuation_token=token)
                entities = list(next(pages, []))
                token = pages.continuation_token  # type: ignore[attr-defined]
                # A filtered query can return an empty page that still has more after it.
                if entities or token is None:
                    break
        except AzureError as err:
            raise AuditQueryError(
                f"audit query {index.value}={key!r} on {self._table.table_name} failed: {err}"
            ) from err
        events = tuple(_event_from_entity(entity) for entity in entities)
        return AuditPage(events, _encode_token(token))


# -- keys -----------------------------------------------------------------------------------------


def escape_key(text: str) -> str:
    """``text`` with every character a table key must not hold written as ``~XX``."""
    escaped = _KEY_UNSAFE.sub(lambda match: f"~{ord(match.group()):02X}", text)
    if len(escaped) <= MAX_KEY_PART_CHARS:
        return escaped
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
    return f"{escaped[: MAX_KEY_PART_CHARS - 35]}~h~{digest}"


def unescape_key(text: str) -> str:
    """The inverse of ``escape_key`` for keys that were not shortened."""
    return re.sub(r"~([0-9A-F]{2})", lambda match: chr(int(match.group(1), 16)), text)


def partition_key(index: Index, key: str) -> str:
    return f"{index.value}_{escape_key(key)}"


def inverted_ticks(at: datetime) -> int:
    """Max .NET ticks minus the ticks of ``at``: later times give smaller numbers."""
    delta = at.astimezone(UTC) - _EPOCH
    ticks = (delta.days * 86_400 + delta.seconds) * 10_000_000 + delta.microseconds * 10
    return MAX_TICKS - ticks


def _index_keys(event: AuditEvent) -> list[tuple[Index, str]]:
    keys = [(Index.DAY, f"{event.at:%Y%m%d}")]
    if event.cycle_id is not None:
        keys.append((Index.CYCLE, event.cycle_id))
    if event.device_id is not None:
        keys.append((Index.DEVICE, event.device_id))
    if event.kind.startswith(_KIND_INDEXED_PREFIX):
        keys.append((Index.KIND, event.kind))
    return keys


# -- entity contents ----------------------------------------------------------------------------


def _promoted(details: Mapping[str, Any]) -> dict[str, Any]:
    """Scalar details, and scalars one level down as ``outer_inner``, as properties of their own."""
    flat: list[tuple[str, Any]] = []
    for name, value in details.items():
        if isinstance(value, Mapping):
            flat.extend((f"{name}_{inner}", item) for inner, item in value.items())
        else:
            flat.append((str(name), value))

    promoted: dict[str, Any] = {}
    for name, value in flat:
        if len(promoted) >= MAX_PROMOTED_PROPERTIES:
            break
        if name in _FIXED_PROPERTIES or not _PROPERTY_NAME.match(name):
            continue
        converted = _property_value(value)
        if converted is not None:
            promoted[name] = converted
    return promoted


def _property_value(value: Any) -> Any:
    if isinstance(value, bool | float | datetime):
        return value
    if isinstance(value, int):
        if _INT32[0] <= value <= _INT32[1]:
            return value
        # Python ints are sent as Edm.Int32 unless told otherwise; larger ones would fail.
        return EntityProperty(value, EdmType.INT64)
    if isinstance(value, str) and _utf16_units(value) <= MAX_PROMOTED_STRING_UNITS:
        return value
    return None  # lists, dicts, long strings: they stay in Details only


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _cut_to_units(text: str, units: int) -> str:
    encoded = text.encode("utf-16-le")[: units * 2]
    return encoded.decode("utf-16-le", errors="ignore")


def _batches(rows: list[_Row]) -> Iterator[list[_Row]]:
    batch: list[_Row] = []
    size = 0
    for row in rows:
        if batch and (len(batch) == MAX_BATCH_ENTITIES or size + row.size > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(row)
        size += row.size
    if batch:
        yield batch


def _event_from_entity(entity: Mapping[str, Any]) -> AuditEvent:
    truncated = bool(entity.get("DetailsTruncated", False))
    text = entity.get("Details", "{}")
    try:
        details = json.loads(text) if not truncated else {"preview": text}
    except ValueError:
        details = {"preview": text}
    at = entity["EventTime"]
    return AuditEvent(
        kind=entity["Kind"],
        cycle_id=entity.get("CycleId"),
        device_id=entity.get("DeviceId"),
        at=datetime.fromtimestamp(at.timestamp(), UTC),
        details=details,
        event_id=entity["EventId"],
        details_truncated=truncated,
        details_blob=entity.get("DetailsBlob"),
    )


def _encode_token(token: Any) -> str | None:
    if not token:
        return None
    raw = json.dumps(token, sort_keys=True).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _decode_token(token: str | None) -> dict[str, str] | None:
    if token is None:
        return None
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeEncodeError) as err:
        raise AuditQueryError(f"continuation token {token[:40]!r} is not one of ours") from err
    if not isinstance(decoded, dict) or set(decoded) - {"PartitionKey", "RowKey"}:
        raise AuditQueryError(f"continuation token {token[:40]!r} is not one of ours")
    return {str(k): str(v) for k, v in decoded.items()}
