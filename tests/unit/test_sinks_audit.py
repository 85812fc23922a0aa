"""Key design, event building and entity limits of the audit trail (no network)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import EdmType, EntityProperty
from hypothesis import given
from hypothesis import strategies as st

from pipeline.sinks.audit import (
    MAX_BATCH_BYTES,
    MAX_BATCH_ENTITIES,
    MAX_KEY_PART_CHARS,
    MAX_PROMOTED_PROPERTIES,
    AuditKind,
    AuditQueryError,
    Index,
    _batches,
    _decode_token,
    _encode_token,
    _promoted,
    _Row,
    escape_key,
    inverted_ticks,
    new_event,
    partition_key,
    unescape_key,
)

FORBIDDEN = set("/\\#?") | {chr(c) for c in range(0x20)} | {chr(c) for c in range(0x7F, 0xA0)}


@given(st.text(max_size=300))
def test_escaped_keys_hold_no_forbidden_character_and_round_trip(text: str) -> None:
    escaped = escape_key(text)
    assert not FORBIDDEN & set(escaped)
    assert not set("%'+") & set(escaped)
    assert unescape_key(escaped) == text


@given(st.text(min_size=1, max_size=50), st.text(min_size=1, max_size=50))
def test_different_ids_never_share_a_key(first: str, second: str) -> None:
    if first != second:
        assert escape_key(first) != escape_key(second)


def test_long_ids_are_shortened_with_a_hash() -> None:
    one, two = "d" * 5000 + "1", "d" * 5000 + "2"
    assert len(escape_key(one)) <= MAX_KEY_PART_CHARS
    assert escape_key(one) != escape_key(two)
    assert len(partition_key(Index.DEVICE, one).encode("utf-16-le")) <= 1024


def test_partitions_are_named_by_index() -> None:
    assert partition_key(Index.CYCLE, "c/1") == "cycle_c~2F1"
    assert partition_key(Index.DAY, "20261203") == "day_20261203"


def test_inverted_ticks_sort_newest_first_as_19_digit_strings() -> None:
    early = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    later = early + timedelta(microseconds=1)
    assert inverted_ticks(later) < inverted_ticks(early)
    assert f"{inverted_ticks(later):019d}" < f"{inverted_ticks(early):019d}"
    assert len(f"{inverted_ticks(datetime(1, 1, 1, tzinfo=UTC)):019d}") == 19
    # .NET ticks of 2000-01-01T00:00:00Z are 630822816000000000.
    assert inverted_ticks(datetime(2000, 1, 1, tzinfo=UTC)) == (
        3_155_378_975_999_999_999 - 630_822_816_000_000_000
    )


def test_event_id_is_deterministic_for_the_same_event() -> None:
    at = datetime(2026, 12, 3, tzinfo=UTC)
    one = new_event(AuditKind.MODE_CHANGED, "c", "d", {"to_state": "passive"}, at=at)
    again = new_event("mode_changed", "c", "d", {"to_state": "passive"}, at=at)
    other = new_event("mode_changed", "c", "d", {"to_state": "active"}, at=at)
    later = new_event("mode_changed", "c", "d", {"to_state": "passive"}, at=at + timedelta(1))

    assert one.event_id == again.event_id
    assert len({one.event_id, other.event_id, later.event_id}) == 3
    assert one.kind == "mode_changed"
    assert new_event("x", event_id="fixed", at=at).event_id == "fixed"


def test_event_times_are_kept_in_utc() -> None:
    event = new_event("x", at=datetime(2026, 12, 3, 23, 30, tzinfo=UTC) + timedelta(hours=1))
    assert event.at.tzinfo == UTC
    assert event.at.day == 4


@pytest.mark.parametrize("kind", ["", "Mode Changed", "x" * 65, "1st", "drop;table"])
def test_kinds_must_be_snake_case(kind: str) -> None:
    with pytest.raises(ValueError, match="lower_snake_case"):
        new_event(kind)


def test_scalar_details_are_promoted_within_limits() -> None:
    details = {
        "action": "edr_block",
        "big": 2**40,
        "ok": True,
        "counts": {"devices": 3, "nested": {"too": "deep"}},
        "list": [1, 2],
        "long": "x" * 5000,
        "Kind": "spoofed",
        "bad-name": 1,
    }

    promoted = _promoted(details)

    assert promoted == {
        "action": "edr_block",
        "big": EntityProperty(2**40, EdmType.INT64),
        "ok": True,
        "counts_devices": 3,
    }
    many = _promoted({f"k{n}": n for n in range(500)})
    assert len(many) == MAX_PROMOTED_PROPERTIES


def test_batches_respect_count_and_size() -> None:
    small = [_Row("p", {"RowKey": str(n)}, str(n), 1_000) for n in range(250)]
    big = [_Row("p", {"RowKey": str(n)}, str(n), 900_000) for n in range(10)]

    assert [len(b) for b in _batches(small)] == [MAX_BATCH_ENTITIES, MAX_BATCH_ENTITIES, 50]
    sizes = [sum(row.size for row in batch) for batch in _batches(big)]
    assert all(size <= MAX_BATCH_BYTES for size in sizes)
    assert sum(len(b) for b in _batches(big)) == 10


def test_continuation_tokens_round_trip_and_foreign_ones_are_refused() -> None:
    token = {"PartitionKey": "day_20261203", "RowKey": "0001_x"}
    encoded = _encode_token(token)
    assert encoded is not None
    assert _decode_token(encoded) == token
    assert _encode_token(None) is None
    for foreign in ("%%%", "bm90IGpzb24", _encode_token({"Other": "x"})):
        with pytest.raises(AuditQueryError):
            _decode_token(foreign)
