"""Row validation, truncation, chunking and row ids of the Log Analytics sink (no network)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.sinks.log_analytics import (
    MAX_FIELD_BYTES,
    MAX_REQUEST_BYTES,
    TRUNCATION_MARKER,
    InsecureEndpointError,
    _Prepared,
    _send_options,
    chunk_rows,
    prepare_rows,
    row_id,
)
from pipeline.tables import COVERAGE, DETECTIONS
from tests.support.sinks import coverage_row


def _one(row: Any) -> tuple[list[_Prepared], list[str]]:
    good, refused, _ = prepare_rows(COVERAGE, [row])
    return good, [letter.reason for letter in refused]


def test_row_id_is_stable_and_separates_its_parts() -> None:
    assert row_id("cycle-1", "device-1") == row_id("cycle-1", "device-1")
    assert row_id("ab", "c") != row_id("a", "bc")
    assert row_id("1") != row_id(1)
    assert row_id(None) != row_id("None")
    assert len(row_id("x")) == 32
    # Pinned: the id must not change between releases, or KQL de-duplication breaks.
    assert row_id("cycle-1", "device-1") == "3b616cbef1fac1bcb42ff449b7baa40c"


def test_a_valid_row_is_normalised_without_touching_the_input() -> None:
    row = coverage_row("c", 1, TimeGenerated=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    original = dict(row)

    good, refused = _one(row)

    assert refused == []
    assert good[0].row["TimeGenerated"] == "2026-01-02T03:04:05Z"
    assert good[0].row_id == row["RowId"]
    assert good[0].size == len(json.dumps(good[0].row).encode())
    assert row == original


def test_datetimes_are_converted_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    good, _ = _one(coverage_row("c", 1, TimeGenerated=datetime(2026, 1, 2, 5, 0, tzinfo=plus_two)))
    assert good[0].row["TimeGenerated"] == "2026-01-02T03:00:00Z"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"Nope": 1}, "unknown column(s) Nope"),
        ({"GapCount": "1"}, "GapCount expects int, got str"),
        ({"GapCount": True}, "GapCount expects int, got bool"),
        ({"GapCount": 2**31}, "out of range for int"),
        ({"DeviceName": 7}, "DeviceName expects string"),
        ({"TimeGenerated": datetime(2026, 1, 1)}, "has no time zone"),
        ({"TimeGenerated": "2026-01-01T00:00:00"}, "has no time zone"),
        ({"TimeGenerated": "soon"}, "not an ISO 8601 time"),
        ({"TimeGenerated": 1700000000}, "TimeGenerated expects datetime"),
        ({"Capabilities": {"x": {1, 2}}}, "value is not JSON"),
        ({"Gaps": [float("nan")]}, "value is not JSON"),
        ({"Findings": ["y" * MAX_FIELD_BYTES]}, "over the 65536-byte field limit"),
        ({"RowId": None}, "RowId is missing"),
        ({"RowId": ""}, "RowId is missing"),
    ],
)
def test_bad_rows_are_refused_with_a_reason(overrides: dict[str, Any], reason: str) -> None:
    good, refused = _one(coverage_row("c", 1, **overrides))
    assert good == []
    assert len(refused) == 1
    assert reason in refused[0]
    assert refused[0].startswith("MdeAvCoverage_CL row 0")


def test_a_row_that_is_not_a_mapping_is_refused() -> None:
    good, refused, _ = prepare_rows(COVERAGE, [["not", "a", "row"], coverage_row("c", 1)])
    assert len(good) == 1
    assert "must be a mapping" in refused[0].reason
    assert refused[0].row == ["not", "a", "row"]


def test_null_values_and_missing_columns_are_allowed() -> None:
    good, refused = _one({"RowId": "r", "GapCount": None, "Capabilities": None})
    assert refused == []
    assert good[0].row == {"RowId": "r", "GapCount": None, "Capabilities": None}


def test_a_table_without_row_id_uses_detection_id() -> None:
    good, refused, _ = prepare_rows(DETECTIONS, [{"DetectionId": "d"}, {"DeviceId": "x"}])
    assert len(good) == 1
    assert "DetectionId is missing" in refused[0].reason


def test_a_row_larger_than_a_request_is_refused() -> None:
    row = coverage_row("c", 1, **dict.fromkeys(("DeviceName", "ModeReason"), "z" * 60000))
    good, refused, _ = prepare_rows(COVERAGE, [row], max_request_bytes=100_000)
    assert good == []
    assert "over the 100000-byte request limit" in refused[0].reason


def test_long_strings_are_cut_on_a_character_boundary() -> None:
    text = "a" + "€" * 30_000  # 90,001 bytes of UTF-8, three per euro sign

    good, _, truncations = prepare_rows(COVERAGE, [coverage_row("c", 1, ModeReason=text)])

    cut = good[0].row["ModeReason"]
    assert cut.endswith(TRUNCATION_MARKER)
    assert len(cut.encode("utf-8")) <= MAX_FIELD_BYTES
    assert text.startswith(cut.removesuffix(TRUNCATION_MARKER))
    assert truncations[0].original_bytes == 90_001
    assert truncations[0].column == "ModeReason"


def test_a_string_at_the_limit_is_kept_whole() -> None:
    text = "b" * MAX_FIELD_BYTES
    good, _, truncations = prepare_rows(COVERAGE, [coverage_row("c", 1, ModeReason=text)])
    assert good[0].row["ModeReason"] == text
    assert truncations == []


@given(st.lists(st.integers(min_value=1, max_value=3000), max_size=200), st.integers(50, 20_000))
def test_chunks_keep_order_and_fit_the_budget(sizes: list[int], budget: int) -> None:
    rows = [
        _Prepared({"RowId": str(n), "P": "x" * size}, str(n), 0) for n, size in enumerate(sizes)
    ]
    rows = [_Prepared(r.row, r.row_id, len(json.dumps(r.row).encode())) for r in rows]

    chunks = list(chunk_rows(rows, budget))

    assert [r for chunk in chunks for r in chunk] == rows
    for chunk in chunks:
        body = json.dumps([r.row for r in chunk]).encode()
        assert len(body) <= budget or len(chunk) == 1  # a lone row is never split


def test_default_budget_stays_under_both_readings_of_1_mb() -> None:
    assert MAX_REQUEST_BYTES <= 1_000_000 < 1024 * 1024


@pytest.mark.parametrize(
    ("endpoint", "options"),
    [
        ("https://dce.westeurope-1.ingest.monitor.azure.com", {}),
        ("http://127.0.0.1:8080", {"enforce_https": False}),
        ("http://localhost:8080", {"enforce_https": False}),
    ],
)
def test_plain_http_only_on_loopback(endpoint: str, options: dict[str, Any]) -> None:
    assert _send_options(endpoint) == options


@pytest.mark.parametrize("endpoint", ["http://ingest.example.com", "ftp://127.0.0.1", "127.0.0.1"])
def test_other_endpoints_are_refused(endpoint: str) -> None:
    with pytest.raises(InsecureEndpointError, match="https"):
        _send_options(endpoint)
