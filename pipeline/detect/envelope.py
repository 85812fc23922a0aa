"""The Defender streaming API's Event Hubs messages, parsed into typed events.

Each Event Hubs message holds one JSON document, ``{"records": [...]}``, and each record is one
advanced hunting row wrapped in the streaming envelope
(https://learn.microsoft.com/defender-xdr/streaming-api-event-hub)::

    {"time": "...", "tenantId": "...", "category": "AdvancedHunting-DeviceNetworkEvents",
     "properties": {"Timestamp": "...", "DeviceId": "...", "ActionType": "...", ...}}

Only the two tables the detector reads become events: ``DeviceNetworkEvents`` (the connections)
and ``DeviceEvents`` (where network protection and SmartScreen say they blocked). Records of any
other table are counted and skipped: a hub may carry every streamed table.

A message or record that cannot be read (not JSON, a required field missing, a field of the
wrong type) becomes a :class:`PoisonRecord` with its position and the reason, and the batch goes
on. Required: the envelope's ``time``, ``tenantId``, ``category`` and ``properties``, and the
row's ``DeviceId`` and ``ActionType``. The other columns the detector reads (``RemoteUrl``,
``RemoteIP``, ``RemotePort``, ``DeviceName``, ``Timestamp``, the initiating process and account,
``AdditionalFields``) may be absent or null, but not of another type.

``AdditionalFields`` arrives as JSON text from some exports and as an object from others; both
are accepted, and :func:`additional_fields` turns either into a dict when a caller needs it.

The pieces are small so that the detector can run them in its own loop (``records_of``,
``event_of``, ``problem``) and skip what it does not need; ``parse_batch`` runs them all.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

__all__ = [
    "DEVICE_CATEGORY",
    "DEVICE_EVENTS",
    "NETWORK_CATEGORY",
    "NETWORK_EVENTS",
    "TABLES",
    "ParsedBatch",
    "PoisonRecord",
    "StreamEvent",
    "additional_fields",
    "event_of",
    "parse_batch",
    "poison",
    "problem",
    "records_of",
]

CATEGORY_PREFIX: Final = "AdvancedHunting-"
NETWORK_EVENTS: Final = "DeviceNetworkEvents"
DEVICE_EVENTS: Final = "DeviceEvents"
# Envelope category → table, for the tables the detector reads.
NETWORK_CATEGORY: Final = CATEGORY_PREFIX + NETWORK_EVENTS
DEVICE_CATEGORY: Final = CATEGORY_PREFIX + DEVICE_EVENTS
TABLES: Final = {NETWORK_CATEGORY: NETWORK_EVENTS, DEVICE_CATEGORY: DEVICE_EVENTS}
# How much of an unreadable message or record is kept for the dead-letter blob.
MAX_EXCERPT_CHARS: Final = 4096

TEXT_TYPES: Final = frozenset({str, type(None)})
_PORT_TYPES: Final = frozenset({int, type(None)})
_ADDITIONAL_TYPES: Final = frozenset({str, dict, type(None)})
_TEXT_FIELDS: Final = (
    "RemoteUrl",
    "RemoteIP",
    "DeviceName",
    "Timestamp",
    "InitiatingProcessFileName",
    "InitiatingProcessAccountName",
)


@dataclass(slots=True)
class StreamEvent:
    """One row of ``DeviceNetworkEvents`` or ``DeviceEvents`` from the stream.

    Not frozen on purpose: a frozen dataclass sets each field through ``object.__setattr__``,
    which triples the cost of building one.
    """

    table: str  # DeviceNetworkEvents or DeviceEvents
    category: str  # as the envelope spelled it
    time: str  # when Defender received the event (envelope)
    tenant_id: str
    device_id: str
    device_name: str | None
    action_type: str
    timestamp: str | None  # when the device saw it (the row's Timestamp)
    remote_url: str | None
    remote_ip: str | None
    remote_port: int | None
    process: str | None
    account: str | None
    additional: str | dict[str, Any] | None
    message: int  # position of the Event Hubs message in the batch
    record: int  # position of the record in the message


@dataclass(frozen=True, slots=True)
class PoisonRecord:
    """A message or record that could not be read, with where it was and why."""

    message: int
    record: int | None  # None: the whole message was unreadable
    reason: str
    excerpt: str  # the start of the raw message or record, for whoever replays it

    def as_dict(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "record": self.record,
            "reason": self.reason,
            "excerpt": self.excerpt,
        }


@dataclass
class ParsedBatch:
    events: list[StreamEvent] = field(default_factory=list)
    poison: list[PoisonRecord] = field(default_factory=list)
    messages: int = 0
    records: int = 0
    other_tables: int = 0  # well-formed records of tables the detector does not read


def parse_batch(bodies: Sequence[bytes | str]) -> ParsedBatch:
    """Every event of one Event Hubs batch, fully checked; never raises for bad content."""
    batch = ParsedBatch(messages=len(bodies))
    for position, body in enumerate(bodies):
        for index, record in enumerate(records_of(batch, position, body)):
            table = _table_of(record)
            if table == "":
                batch.other_tables += 1
                continue
            event = event_of(record, table, position, index) if table else None
            if event is None:
                batch.poison.append(poison(record, position, index))
            else:
                batch.events.append(event)
    return batch


def records_of(batch: ParsedBatch, position: int, body: bytes | str) -> list[Any]:
    """The records of one message; an unreadable message is added to ``batch.poison``."""
    try:
        # orjson is several times faster than json on these messages, which is most of the
        # detector's cost; it raises a ValueError subclass for anything it cannot read.
        document = orjson.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        batch.poison.append(PoisonRecord(position, None, f"not JSON: {error}", _excerpt(body)))
        return []

    records = document.get("records") if type(document) is dict else None
    if type(records) is not list:
        reason = (
            'no "records" list in the message'
            if type(document) is dict
            else f"the message is a JSON {type(document).__name__}, not an object"
        )
        batch.poison.append(PoisonRecord(position, None, reason, _excerpt(body)))
        return []
    batch.records += len(records)
    return records


def event_of(record: dict[str, Any], table: str, position: int, index: int) -> StreamEvent | None:
    """A checked event from a record of ``table``; None when a field is missing or mistyped."""
    time, tenant_id = record.get("time"), record.get("tenantId")
    props = record.get("properties")
    if type(time) is not str or type(tenant_id) is not str or type(props) is not dict:
        return None

    get = props.get
    device_id, action_type = get("DeviceId"), get("ActionType")
    url, address, port = get("RemoteUrl"), get("RemoteIP"), get("RemotePort")
    name, stamp = get("DeviceName"), get("Timestamp")
    process, account = get("InitiatingProcessFileName"), get("InitiatingProcessAccountName")
    additional = get("AdditionalFields")
    if not (
        type(device_id) is str
        and device_id
        and type(action_type) is str
        and type(url) in TEXT_TYPES
        and type(address) in TEXT_TYPES
        and type(name) in TEXT_TYPES
        and type(stamp) in TEXT_TYPES
        and type(process) in TEXT_TYPES
        and type(account) in TEXT_TYPES
        and type(port) in _PORT_TYPES
        and type(additional) in _ADDITIONAL_TYPES
    ):
        return None
    return StreamEvent(
        table,
        record["category"],
        time,
        tenant_id,
        device_id,
        name,
        action_type,
        stamp,
        url,
        address,
        port,
        process,
        account,
        additional,
        position,
        index,
    )


def poison(record: Any, position: int, index: int) -> PoisonRecord:
    """The poison record for a record ``event_of`` (or a faster check) refused."""
    return PoisonRecord(position, index, problem(record), _excerpt(record))


def problem(record: Any) -> str:
    """Why a record cannot be read, naming the field."""
    if type(record) is not dict:
        return f"the record is a JSON {type(record).__name__}, not an object"
    for name in ("category", "time", "tenantId"):
        if type(record.get(name)) is not str:
            return f"{name} is missing or not a string"
    props = record.get("properties")
    if type(props) is not dict:
        return "properties is missing or not an object"

    device_id = props.get("DeviceId")
    if type(device_id) is not str or not device_id:
        return "properties.DeviceId is missing or not a non-empty string"
    if type(props.get("ActionType")) is not str:
        return "properties.ActionType is missing or not a string"
    for name in _TEXT_FIELDS:
        value = props.get(name)
        if type(value) not in TEXT_TYPES:
            return f"properties.{name} is a {type(value).__name__}, not a string"
    port = props.get("RemotePort")
    if type(port) not in _PORT_TYPES:
        return f"properties.RemotePort is a {type(port).__name__}, not an integer"
    additional = props.get("AdditionalFields")
    if type(additional) not in _ADDITIONAL_TYPES:
        return (
            f"properties.AdditionalFields is a {type(additional).__name__}, not text or an object"
        )
    return "the record could not be read"


def additional_fields(event: StreamEvent) -> dict[str, Any]:
    """``AdditionalFields`` as a dict, whether it arrived as JSON text or as an object.

    Raises ``ValueError`` naming the event when the text is not a JSON object.
    """
    value = event.additional
    if value is None or isinstance(value, dict):
        return value or {}
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ValueError(
            f"message {event.message} record {event.record}: AdditionalFields is text that is "
            "not a JSON object"
        )
    return parsed


def _table_of(record: Any) -> str | None:
    """The table of a record: None when it has no readable category, "" for other tables."""
    if type(record) is not dict or type(record.get("category")) is not str:
        return None
    return TABLES.get(record["category"], "")


def _excerpt(raw: Any) -> str:
    if isinstance(raw, bytes):
        text = raw[: MAX_EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
    elif isinstance(raw, str):
        text = raw
    else:
        text = json.dumps(raw, default=repr)
    return text[:MAX_EXCERPT_CHARS]
