"""The audit trail against Azurite's Table and Blob services."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import EdmType, EntityProperty, TableServiceClient

from pipeline.sinks.audit import (
    MAX_DETAILS_UNITS,
    AuditKind,
    AuditQueryError,
    AuditTrail,
    AuditWriteError,
    Index,
    new_event,
    partition_key,
)
from tests.support.azurite import AzuriteProcess, azurite, private_azurite

pytestmark = pytest.mark.integration

__all__ = ["azurite", "private_azurite"]  # fixtures used by name below

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def _trail(process: AzuriteProcess, **kwargs: object) -> AuditTrail:
    # A table of its own per test: tests share one Azurite and must not see each other's events.
    name = "Audit" + uuid.uuid4().hex[:12]
    return AuditTrail.from_connection_string(process.connection_string, name, **kwargs)  # type: ignore[arg-type]


def _all_entities(process: AzuriteProcess, trail: AuditTrail) -> list[dict[str, object]]:
    service = TableServiceClient.from_connection_string(process.connection_string)
    table = service.get_table_client(trail._table.table_name)
    return [dict(entity) for entity in table.list_entities()]


def test_action_events_are_also_indexed_by_kind(azurite: AzuriteProcess) -> None:
    trail = _trail(azurite)
    action = trail.action_executed("cycle-k", "dev-k", action_id="a-1", action="edr_block")
    trail.mode_changed("cycle-k", "dev-k", from_state="active", to_state="passive")

    executed = list(trail.iter_events(Index.KIND, AuditKind.ACTION_EXECUTED))
    assert action.event_id in [e.event_id for e in executed]
    assert list(trail.iter_events(Index.KIND, AuditKind.MODE_CHANGED)) == []


def test_event_is_indexed_by_cycle_device_and_day(azurite: AzuriteProcess) -> None:
    trail = _trail(azurite)

    event = trail.mode_changed(
        "cycle-1", "dev-a", from_state="active", to_state="passive", at_source="deviceavinfo"
    )

    for page in (
        trail.by_cycle("cycle-1"),
        trail.by_device("dev-a"),
        trail.by_day(event.at.date()),
    ):
        assert [e.event_id for e in page.events] == [event.event_id]
        read = page.events[0]
        assert read.kind == AuditKind.MODE_CHANGED
        assert read.details == {
            "from_state": "active",
            "to_state": "passive",
            "at_source": "deviceavinfo",
        }
        assert read.device_id == "dev-a"
        assert read.cycle_id == "cycle-1"
    assert {e["Index"] for e in _all_entities(azurite, trail)} == {"cycle", "device", "day"}


def test_entries_are_never_overwritten_and_a_retry_is_idempotent(azurite: AzuriteProcess) -> None:
    trail = _trail(azurite)
    event = new_event("action_executed", "cycle-2", "dev-b", {"action": "edr_block"}, at=T0)

    trail.append([event])
    trail.append([event])  # a retry of the same event: 409 on every copy, counted as done
    trail.append([event, event])

    entities = _all_entities(azurite, trail)
    assert len(entities) == 4  # cycle, device, day and (an action) kind; no duplicates
    assert trail.by_cycle("cycle-2").events[0].event_id == event.event_id

    # The store itself refuses a second write of the same key: nothing can overwrite an entry.
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    table = service.get_table_client(trail._table.table_name)
    first = entities[0]
    with pytest.raises(ResourceExistsError):
        table.create_entity({**first, "Details": "tampered"})
    assert table.get_entity(first["PartitionKey"], first["RowKey"])["Details"] != "tampered"


def test_retry_of_a_partly_written_batch_completes_it(azurite: AzuriteProcess) -> None:
    trail = _trail(azurite)
    events = [
        new_event("action_planned", "cycle-3", None, {"n": n}, at=T0 + timedelta(seconds=n))
        for n in range(30)
    ]
    trail.append(events[:10])  # an earlier attempt that got only this far

    trail.append(events)  # the transaction hits existing entities, falls back to one by one

    ids = [e.event_id for e in trail.iter_events(Index.CYCLE, "cycle-3")]
    assert sorted(ids) == sorted(e.event_id for e in events)


def test_keys_with_forbidden_characters_round_trip(azurite: AzuriteProcess) -> None:
    trail = _trail(azurite)
    device = "CONTOSO\\host/01#?%'+~\x07\x85 é"
    cycle = "2026/12/03#1?"

    event = trail.action_failed(cycle, device, action_id="a/1", action="isolate", error="HTTP 403")

    assert trail.by_device(device).events[0].event_id == event.event_id
    assert trail.by_cycle(cycle).events[0].device_id == device
    for entity in _all_entities(azurite, trail):
        key = str(entity["PartitionKey"])
        assert not any(ch in key for ch in "/\\#?%'+")
        assert key.isprintable()
    # An id that spells the escape of another one does not land in its partition.
    trail.record("mode_changed", cycle, "a\\b", {}, at=T0)
    assert trail.by_device("a~5Cb").events == ()
    assert len(trail.by_device("a\\b").events) == 1


def test_more_than_100_events_in_one_partition_are_written_in_batches(
    azurite: AzuriteProcess,
) -> None:
    trail = _trail(azurite)
    base = datetime(2026, 12, 1, tzinfo=UTC)

    with trail.buffered():
        for n in range(250):
            trail.record(
                "mode_changed", "cycle-big", f"dev-{n}", {"n": n}, at=base + timedelta(seconds=n)
            )

    events = list(trail.iter_events(Index.CYCLE, "cycle-big"))
    assert len(events) == 250
    assert [e.details["n"] for e in events] == list(range(249, -1, -1))  # newest first
    assert len(list(trail.iter_events(Index.DAY, "20261201"))) == 250


def test_day_query_is_newest_first_with_paging_and_kind_filter(azurite: AzuriteProcess) -> None:
    trail = _trail(azurite)
    day = date(2026, 11, 30)
    start = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
    kinds = ["action_planned", "action_executed", "mode_changed"]
    for n in range(12):
        trail.record(
            kinds[n % 3], f"cycle-{n // 6}", f"dev-{n}", {"n": n}, at=start + timedelta(minutes=n)
        )
    trail.record("cycle_started", "other-day", None, {}, at=start - timedelta(seconds=1))

    first = trail.by_day(day, page_size=5)
    second = trail.by_day(day, page_size=5, continuation=first.continuation)
    third = trail.by_day(day, page_size=5, continuation=second.continuation)

    seen = [e.details["n"] for page in (first, second, third) for e in page.events]
    assert seen == list(range(11, -1, -1))
    assert third.continuation is None
    planned = trail.by_day(day, kind="action_planned", page_size=2)
    assert [e.details["n"] for e in planned.events] == [9, 6]
    rest = trail.by_day(day, kind="action_planned", page_size=2, continuation=planned.continuation)
    assert [e.details["n"] for e in rest.events] == [3, 0]


def test_a_filter_value_cannot_change_the_query(azurite: AzuriteProcess) -> None:
    trail = _trail(azurite)
    trail.record("action_planned", "cycle-q", "dev-q", {}, at=T0)

    # If the kind were spliced into the filter, this would match everything.
    injected = trail.by_cycle("cycle-q", kind="x' or Kind ne 'x")
    assert injected.events == ()
    assert len(trail.by_cycle("cycle-q", kind="action_planned").events) == 1


def test_foreign_continuation_token_is_refused(azurite: AzuriteProcess) -> None:
    trail = _trail(azurite)
    with pytest.raises(AuditQueryError, match="not one of ours"):
        trail.by_cycle("c", continuation="not-base64-json!")


def test_oversize_details_go_to_a_blob_and_the_entity_stays_in_limits(
    azurite: AzuriteProcess,
) -> None:
    trail = _trail(azurite)
    huge = {"devices": [f"device-{n:06d}" for n in range(20_000)], "note": "x" * 40_000}

    event = trail.record("blocklist_published", "cycle-huge", None, huge, at=T0)

    read = trail.by_cycle("cycle-huge").events[0]
    assert read.details_truncated
    assert read.details_blob is not None
    assert trail.load_details(read) == huge
    for entity in _all_entities(azurite, trail):
        assert len(str(entity["Details"])) <= MAX_DETAILS_UNITS + 100
        assert "note" not in entity  # a 40,000-character string is not copied to a property
    assert read.event_id == event.event_id


def test_oversize_details_without_a_container_are_cut_with_a_marker(
    azurite: AzuriteProcess,
) -> None:
    trail = _trail(azurite, details_container=None)
    trail.record("action_failed", "cycle-cut", "dev", {"error": "é" * 70_000}, at=T0)

    read = trail.by_cycle("cycle-cut").events[0]
    assert read.details_truncated
    assert read.details_blob is None
    assert str(read.details["preview"]).endswith("[truncated by pipeline]")


def test_typed_events_promote_scalars_for_filtering(azurite: AzuriteProcess) -> None:
    trail = _trail(azurite)
    trail.blocklist_published(
        "cycle-b",
        target="squid",
        content_hash="sha256:abc",
        size_bytes=5_000_000_000,
        added=3,
        removed=1,
    )
    trail.cycle_finished(
        "cycle-b", status="ok", counts={"devices": 8000, "gaps": 12}, durations={"collect": 1.5}
    )

    entities = [e for e in _all_entities(azurite, trail) if e["Index"] == "cycle"]
    published = next(e for e in entities if e["Kind"] == "blocklist_published")
    finished = next(e for e in entities if e["Kind"] == "cycle_finished")
    # Stored as Int64 (a plain Python int would be sent as Int32 and refused).
    assert published["size_bytes"] == EntityProperty(5_000_000_000, EdmType.INT64)
    assert published["content_hash"] == "sha256:abc"
    assert finished["counts_devices"] == 8000
    assert finished["durations_collect"] == 1.5


def test_write_failure_is_loud_and_names_the_partition(private_azurite: AzuriteProcess) -> None:
    trail = AuditTrail.from_connection_string(
        private_azurite.connection_string, "AuditDown", retry_total=0
    )
    trail.cycle_started("cycle-down", dry_run=True)
    private_azurite.stop()

    with pytest.raises(AuditWriteError) as caught:
        trail.record("cycle_finished", "cycle-down", None, {"status": "failed"})

    assert caught.value.partition.startswith(("day_", "cycle_"))
    assert len(caught.value.event_ids) == 1

    private_azurite.start()  # persistent: what was written before the outage is still there
    assert [e.kind for e in trail.by_cycle("cycle-down").events] == ["cycle_started"]


def test_partition_keys_are_per_index() -> None:
    assert partition_key(Index.CYCLE, "c") != partition_key(Index.DEVICE, "c")
