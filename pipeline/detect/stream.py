"""From a batch of streaming API messages to ``MdeBlockedAccess_CL`` detection rows.

A row is emitted for every connection, in ``DeviceNetworkEvents``, from a device whose Defender
Antivirus cannot enforce network indicators (mode code 1, 2, 4 or 5, or a device the mode cache
does not know, when it is set to report those) to a blocklist entry: a blocked or warned domain,
host or address, or an unsanctioned app's domain. Active devices are not reported.

The filters are the Sentinel rule's: ``ConnectionFailed``, ``InboundConnectionAccepted`` and
``ListeningConnectionCreated`` are not connections to the resource. One thing the stream can do
that the rule's window cannot: when the same batch holds a ``DeviceEvents`` block signal
(``ExploitGuardNetworkProtectionBlocked`` or ``SmartScreenUrlWarning``, not in audit mode) for the
same device and host, the connection was in fact blocked (the cached mode is out of date), so
the detection is dropped and counted as ``suppressed``.

``DetectionId`` is a hash of the event and the entry it matched, so a batch delivered twice
(Event Hubs delivers at least once) produces the same ids, which queries collapse.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from pipeline.detect.envelope import (
    DEVICE_CATEGORY,
    DEVICE_EVENTS,
    NETWORK_CATEGORY,
    NETWORK_EVENTS,
    TEXT_TYPES,
    ParsedBatch,
    PoisonRecord,
    StreamEvent,
    additional_fields,
    event_of,
    poison,
    records_of,
)
from pipeline.detect.matcher import BlocklistIndex, Match, host_of
from pipeline.detect.modes_cache import DeviceMode, ModesCache
from pipeline.sinks.log_analytics import row_id

__all__ = ["BLOCK_SIGNALS", "IGNORED_ACTION_TYPES", "StreamDetector", "StreamResult"]

logger = logging.getLogger(__name__)

IGNORED_ACTION_TYPES: Final = frozenset(
    {"ConnectionFailed", "InboundConnectionAccepted", "ListeningConnectionCreated"}
)
BLOCK_SIGNALS: Final = frozenset({"ExploitGuardNetworkProtectionBlocked", "SmartScreenUrlWarning"})
# Stands for "not in the cache" in the one-lookup device test (never on a detection).
_UNKNOWN: Final = DeviceMode("", "", "", "unknown", None, "unknown")


@dataclass
class StreamResult:
    """What one batch produced: detection rows, unreadable records, and counts of each path."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    poison: list[PoisonRecord] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


class StreamDetector:
    """Matches streamed connections against one blocklist index and one modes cache."""

    def __init__(
        self,
        index: BlocklistIndex,
        modes: ModesCache,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.index = index
        self.modes = modes
        self._clock = clock

    def detect(self, bodies: Sequence[bytes | str]) -> StreamResult:
        """Parse, filter and match one batch of Event Hubs message bodies."""
        batch = ParsedBatch(messages=len(bodies))
        result = StreamResult(poison=batch.poison)
        # Plain local counters: a dict item update per event costs more than the test it counts.
        other_tables = ignored_action = enforcing_device = unknown_device = 0
        connections_checked = other_device_events = 0
        found: list[tuple[StreamEvent, DeviceMode, Match]] = []
        block_signals: set[tuple[str, str]] = set()
        decision = self.modes.decisions.get
        mode_to_report = self.modes.mode_to_report
        matches = self.index.matches

        for position, body in enumerate(bodies):
            # One message at a time, and the cheapest test first: most events stop at the
            # device's mode, and only a matched connection is turned into an event object.
            for index, record in enumerate(records_of(batch, position, body)):
                # Subscripts cost much less than .get calls. When one fails (a key is missing,
                # or the record or its properties is not an object), _fields reads the record
                # the slow way, and the tests below decide as they would have.
                try:
                    category = record["category"]
                    props = record["properties"]
                    device_id = props["DeviceId"]
                    action_type = props["ActionType"]
                except (KeyError, TypeError):
                    category, props, device_id, action_type = _fields(record)
                # Comparing with the category is cheaper than hashing it for a dict lookup, and
                # only a string can be equal to it.
                if category == NETWORK_CATEGORY:
                    if type(device_id) is str and device_id and type(action_type) is str:
                        if action_type in IGNORED_ACTION_TYPES:
                            ignored_action += 1
                            continue
                        # One lookup settles a known device; only an unknown one (absent, hence
                        # the marker) goes on to the cache's policy.
                        mode = decision(device_id, _UNKNOWN)
                        if mode is _UNKNOWN:
                            mode = mode_to_report(device_id)
                        if mode is None:
                            enforcing_device += 1
                            continue
                        try:
                            url, address = props["RemoteUrl"], props["RemoteIP"]
                        except KeyError:  # both columns may be absent (read as null)
                            url, address = props.get("RemoteUrl"), props.get("RemoteIP")
                        if type(url) in TEXT_TYPES and type(address) in TEXT_TYPES:
                            connections_checked += 1
                            if mode.source == "unknown":
                                unknown_device += 1
                            hits = matches(url, address)
                            if not hits:
                                continue
                            event = event_of(record, NETWORK_EVENTS, position, index)
                            if event is not None:
                                found.extend((event, mode, hit) for hit in hits)
                                continue
                elif category == DEVICE_CATEGORY:
                    if type(device_id) is str and device_id and type(action_type) is str:
                        if action_type not in BLOCK_SIGNALS:
                            other_device_events += 1
                            continue
                        event = event_of(record, DEVICE_EVENTS, position, index)
                        if event is not None:
                            self._note_block_signal(event, block_signals, result)
                            continue
                elif type(category) is str:
                    other_tables += 1
                    continue
                result.poison.append(poison(record, position, index))

        counts = {
            "ignored_action": ignored_action,
            "enforcing_device": enforcing_device,
            "unknown_device": unknown_device,
            "connections_checked": connections_checked,
            "other_device_events": other_device_events,
            "suppressed": 0,
        }
        # One batch, one generation time: formatted once rather than once per row.
        generated = self._clock().isoformat().replace("+00:00", "Z")
        for event, mode, match in found:
            if block_signals and (event.device_id, _host(event)) in block_signals:
                counts["suppressed"] += 1
                continue
            try:
                result.rows.append(_row(event, mode, match, generated))
            except ValueError as error:
                result.poison.append(
                    PoisonRecord(event.message, event.record, str(error), _describe(event))
                )
        counts["matched"] = len(result.rows)
        counts["poison"] = len(result.poison)
        result.counts = {
            "messages": batch.messages,
            "records": batch.records,
            "other_tables": other_tables,
            **counts,
        }

        logger.info(
            "stream batch: %d messages, %d records, %d connections checked, %d detections, "
            "%d poison",
            batch.messages,
            batch.records,
            counts["connections_checked"],
            counts["matched"],
            counts["poison"],
        )
        return result

    @staticmethod
    def _note_block_signal(
        event: StreamEvent, signals: set[tuple[str, str]], result: StreamResult
    ) -> None:
        try:
            fields = additional_fields(event)
        except ValueError as error:
            result.poison.append(
                PoisonRecord(event.message, event.record, str(error), _describe(event))
            )
            return
        # Network protection in audit mode logs what it would have blocked; nothing was blocked.
        if fields.get("IsAudit") in (True, "true", "True"):
            return
        host = _host(event)
        if host:
            signals.add((event.device_id, host))


def _fields(record: Any) -> tuple[Any, dict[str, Any], Any, Any]:
    """Category, properties, DeviceId and ActionType, None for each that is missing.

    The category is None, too, when the record or its properties is not an object: such a
    record cannot be read, whatever its table.
    """
    props = record.get("properties") if type(record) is dict else None
    if type(props) is not dict:
        return None, {}, None, None
    return record.get("category"), props, props.get("DeviceId"), props.get("ActionType")


def _host(event: StreamEvent) -> str:
    return host_of(event.remote_url) if event.remote_url else ""


def _row(event: StreamEvent, mode: DeviceMode, match: Match, generated: str) -> dict[str, Any]:
    event_time = _event_time(event)
    detection_id = row_id(
        event.tenant_id,
        event.device_id,
        event_time,
        event.action_type,
        event.remote_url,
        event.remote_ip,
        event.remote_port,
        event.process,
        match.type,
        match.value,
    )
    return {
        "TimeGenerated": generated,
        "EventTime": event_time,
        "DetectionId": detection_id,
        "DeviceId": event.device_id,
        "DeviceName": event.device_name or mode.device_name,
        "AvModeCode": mode.av_mode_code,
        "AvState": mode.av_state,
        "RemoteUrl": event.remote_url,
        "RemoteIP": event.remote_ip,
        "RemotePort": event.remote_port,
        "MatchedValue": match.value,
        "MatchedType": match.type,
        "IndicatorId": match.indicator_id,
        "IndicatorAction": match.action,
        "MatchedApp": match.app,
        "InitiatingProcessFileName": event.process,
        "InitiatingProcessAccountName": event.account,
        "SourceCategory": event.category,
    }


def _event_time(event: StreamEvent) -> str:
    """The row's Timestamp (else the envelope's time) in UTC; ValueError when neither reads."""
    for text in (event.timestamp, event.time):
        if not text:
            continue
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            continue
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        return moment.isoformat().replace("+00:00", "Z")
    raise ValueError(
        f"message {event.message} record {event.record}: neither Timestamp nor time is an "
        "ISO 8601 time"
    )


def _describe(event: StreamEvent) -> str:
    return (
        f"{event.category} DeviceId={event.device_id} ActionType={event.action_type} "
        f"Timestamp={event.timestamp} RemoteUrl={event.remote_url} RemoteIP={event.remote_ip}"
    )
