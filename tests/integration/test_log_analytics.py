"""Uploads through the real azure-monitor-ingestion client to the local ingestion endpoint,
with dead letters going to Azurite's Blob service."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from pipeline.lab.ingestion import IngestionServer
from pipeline.sinks.log_analytics import (
    MAX_FIELD_BYTES,
    MAX_REQUEST_BYTES,
    TRUNCATION_MARKER,
    DeadLetterStore,
    DeadLetterWriteError,
    LogAnalyticsSink,
    UploadResult,
)
from pipeline.tables import COVERAGE, DETECTIONS
from tests.support.azurite import AzuriteProcess, azurite, free_port
from tests.support.sinks import StaticTokenCredential, coverage_row, ingestion_server

pytestmark = pytest.mark.integration

__all__ = ["azurite", "ingestion_server"]  # fixtures used by name below

STREAM = COVERAGE.stream_name


@pytest.fixture
def dead_letters(azurite: AzuriteProcess) -> DeadLetterStore:
    container = f"dead-{uuid.uuid4().hex[:12]}"
    return DeadLetterStore.from_connection_string(azurite.connection_string, container)


@pytest.fixture
def sink(ingestion_server: IngestionServer, dead_letters: DeadLetterStore) -> Any:
    def make(**options: Any) -> LogAnalyticsSink:
        options.setdefault("retry_total", 3)
        return LogAnalyticsSink(
            ingestion_server.base_url,
            ingestion_server.dcr_immutable_id,
            options.pop("credential", StaticTokenCredential()),
            dead_letters,
            **options,
        )

    return make


def _rows(cycle: str, count: int, **overrides: Any) -> list[dict[str, Any]]:
    return [coverage_row(cycle, n, **overrides) for n in range(count)]


def _ids(rows: list[dict[str, Any]]) -> list[str]:
    return [str(row["RowId"]) for row in rows]


def _assert_nothing_lost(
    result: UploadResult,
    sent: list[dict[str, Any]],
    store: DeadLetterStore,
    rows: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Every input row is either at the endpoint or in the dead-letter blob, exactly once."""
    letters = store.read(result.dead_letter_blob) if result.dead_letter_blob else []
    assert result.sent + result.dead_lettered == result.total == len(rows)
    assert len(sent) == result.sent
    assert len(letters) == result.dead_lettered
    assert sorted(_ids(sent) + [str(letter["row"]["RowId"]) for letter in letters]) == sorted(
        _ids(rows)
    )
    return letters


def test_rows_arrive_intact_in_requests_under_1_mb(
    sink: Any, ingestion_server: IngestionServer, dead_letters: DeadLetterStore
) -> None:
    rows = _rows("cycle-chunks", 3000, ModeReason="r" * 600)

    with sink() as uploader:
        result = uploader.upload(COVERAGE, rows, cycle_id="cycle-chunks")

    sent = ingestion_server.accepted_rows(STREAM)
    _assert_nothing_lost(result, sent, dead_letters, rows)
    assert result.ok
    assert result.dead_letter_blob is None
    requests = ingestion_server.requests
    assert len(requests) == result.requests >= 3
    assert all(r.status == 204 and r.encoding == "gzip" for r in requests)
    assert all(
        r.decoded_bytes is not None and r.decoded_bytes <= MAX_REQUEST_BYTES for r in requests
    )
    assert sum(r.rows for r in requests) == 3000
    assert sent[0]["TimeGenerated"] == "2026-12-03T12:00:00Z"
    assert sent[0]["Capabilities"] == rows[0]["Capabilities"]
    assert sent[-1]["RowId"] == rows[-1]["RowId"]


def test_413_from_a_stricter_endpoint_is_retried_in_smaller_requests(
    tmp_path: Path, dead_letters: DeadLetterStore
) -> None:
    rows = _rows("cycle-413", 1500, ModeReason="r" * 300)

    with IngestionServer(tmp_path, max_body_bytes=200_000) as strict:
        uploader = LogAnalyticsSink(
            strict.base_url, strict.dcr_immutable_id, StaticTokenCredential(), dead_letters
        )
        result = uploader.upload(COVERAGE, rows, cycle_id="cycle-413")
        statuses = [r.status for r in strict.requests]
        sent = strict.accepted_rows(STREAM)

    assert 413 in statuses
    assert result.retried == 1500
    assert result.ok
    _assert_nothing_lost(result, sent, dead_letters, rows)


def test_429_is_retried_after_the_time_the_endpoint_asks_for(
    sink: Any, ingestion_server: IngestionServer, dead_letters: DeadLetterStore
) -> None:
    rows = _rows("cycle-429", 50)
    ingestion_server.throttle_next(2, retry_after_seconds=1)

    result = sink().upload(COVERAGE, rows, cycle_id="cycle-429")

    requests = ingestion_server.requests
    assert [r.status for r in requests] == [429, 429, 204]
    assert requests[1].received_at - requests[0].received_at >= 0.9
    assert requests[2].received_at - requests[1].received_at >= 0.9
    assert result.ok
    assert result.retried == 0  # the client's own retry policy absorbed it
    _assert_nothing_lost(result, ingestion_server.accepted_rows(STREAM), dead_letters, rows)


def test_throttling_beyond_the_client_retries_gets_one_more_try(
    sink: Any, ingestion_server: IngestionServer, dead_letters: DeadLetterStore
) -> None:
    rows = _rows("cycle-429b", 40)
    ingestion_server.throttle_next(2, retry_after_seconds=0)

    result = sink(retry_total=1).upload(COVERAGE, rows, cycle_id="cycle-429b")

    assert [r.status for r in ingestion_server.requests] == [429, 429, 204]
    assert result.retried == 40
    assert result.ok
    _assert_nothing_lost(result, ingestion_server.accepted_rows(STREAM), dead_letters, rows)


def test_partial_failure_dead_letters_the_refused_rows_and_counts_them(
    sink: Any, ingestion_server: IngestionServer, dead_letters: DeadLetterStore
) -> None:
    rows = _rows("cycle-partial", 2000, ModeReason="r" * 400)
    for n in (7, 1200, 1999):
        rows[n]["DeviceName"] = "POISON-host"
    rows[500]["NotAColumn"] = "x"  # refused before sending
    rows[900]["GapCount"] = "three"
    ingestion_server.reject_rows_containing("POISON")

    result = sink().upload(COVERAGE, rows, cycle_id="cycle-partial")

    sent = ingestion_server.accepted_rows(STREAM)
    letters = _assert_nothing_lost(result, sent, dead_letters, rows)
    assert result.rejected == 2
    assert 3 <= result.failed < 100  # the poisoned rows and a few neighbours, not whole requests
    assert not any("POISON" in row["DeviceName"] for row in sent)
    by_id = {letter["row"]["RowId"]: letter for letter in letters}
    for n in (7, 1200, 1999):
        assert by_id[rows[n]["RowId"]]["stage"] == "upload"
        assert "HTTP 400 RejectedRow" in by_id[rows[n]["RowId"]]["reason"]
    assert "unknown column(s) NotAColumn" in by_id[rows[500]["RowId"]]["reason"]
    assert "GapCount expects int" in by_id[rows[900]["RowId"]]["reason"]
    assert result.dead_letter_blob is not None
    assert result.dead_letter_blob.startswith("cycle-partial/MdeAvCoverage_CL/")


def test_an_endpoint_that_keeps_failing_loses_nothing(
    sink: Any, ingestion_server: IngestionServer, dead_letters: DeadLetterStore
) -> None:
    rows = _rows("cycle-down", 120)
    ingestion_server.fail_next(1000, status=503)

    result = sink(retry_total=0).upload(COVERAGE, rows, cycle_id="cycle-down")

    letters = _assert_nothing_lost(result, [], dead_letters, rows)
    assert result.sent == 0
    assert result.failed == 120
    assert all("HTTP 503" in letter["reason"] for letter in letters)


def test_wrong_token_and_unknown_rule_are_dead_lettered_with_the_reason(
    tmp_path: Path, dead_letters: DeadLetterStore
) -> None:
    rows = _rows("cycle-auth", 5)
    with IngestionServer(tmp_path, accepted_token="the-right-one") as server:
        wrong_token = LogAnalyticsSink(
            server.base_url, server.dcr_immutable_id, StaticTokenCredential("nope"), dead_letters
        )
        wrong_rule = LogAnalyticsSink(
            server.base_url, "dcr-unknown", StaticTokenCredential("the-right-one"), dead_letters
        )
        auth = wrong_token.upload(COVERAGE, rows, cycle_id="cycle-auth")
        rule = wrong_rule.upload(COVERAGE, rows, cycle_id="cycle-auth")

    assert (auth.sent, auth.failed) == (0, 5)
    assert "HTTP 401 InvalidAuthenticationToken" in auth.dead_letters[0].reason
    assert (rule.sent, rule.failed) == (0, 5)
    assert "dcr-unknown" in rule.dead_letters[0].reason
    assert auth.dead_letter_blob != rule.dead_letter_blob  # a second upload never overwrites


def test_long_strings_are_truncated_and_reported(
    sink: Any, ingestion_server: IngestionServer
) -> None:
    row = coverage_row("cycle-long", 1, ModeReason="é" * 50_000)  # 100,000 bytes of UTF-8

    result = sink().upload(COVERAGE, [row], cycle_id="cycle-long")

    stored = ingestion_server.accepted_rows(STREAM)[0]["ModeReason"]
    assert result.ok
    assert [(t.column, t.original_bytes) for t in result.truncations] == [("ModeReason", 100_000)]
    assert stored.endswith(TRUNCATION_MARKER)
    assert len(stored.encode("utf-8")) <= MAX_FIELD_BYTES


def test_detection_rows_go_to_their_own_stream(
    sink: Any, ingestion_server: IngestionServer
) -> None:
    row = {
        "TimeGenerated": "2026-12-03T10:00:00Z",
        "EventTime": "2026-12-03T09:59:58.123Z",
        "DetectionId": "d-1",
        "DeviceId": "dev",
        "RemotePort": 443,
        "MatchedValue": "mega.nz",
    }

    result = sink().upload(DETECTIONS, [row], cycle_id="stream")

    assert result.ok
    assert ingestion_server.accepted_rows(DETECTIONS.stream_name) == [row]
    assert ingestion_server.accepted_rows(STREAM) == []


def test_unwritable_dead_letters_raise_with_the_rows(
    ingestion_server: IngestionServer,
) -> None:
    nowhere = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"BlobEndpoint=http://127.0.0.1:{free_port()}/devstoreaccount1;"
    )
    store = DeadLetterStore.from_connection_string(nowhere, "dead", retry_total=0)
    uploader = LogAnalyticsSink(
        ingestion_server.base_url, ingestion_server.dcr_immutable_id, StaticTokenCredential(), store
    )
    rows = _rows("cycle-nowhere", 3)
    rows[1]["Bogus"] = True

    with pytest.raises(DeadLetterWriteError, match="cycle-nowhere") as caught:
        uploader.upload(COVERAGE, rows, cycle_id="cycle-nowhere")

    assert [letter.row_id for letter in caught.value.dead_letters] == [rows[1]["RowId"]]
    assert len(ingestion_server.accepted_rows(STREAM)) == 2


def test_dead_letter_blob_is_json_lines_an_operator_can_read(
    sink: Any, ingestion_server: IngestionServer, dead_letters: DeadLetterStore
) -> None:
    rows = _rows("cycle/with slash", 2)
    rows[0]["GapCount"] = 2**40

    result = sink().upload(COVERAGE, rows, cycle_id="cycle/with slash")

    assert result.dead_letter_blob is not None
    assert result.dead_letter_blob.startswith("cycle%2Fwith%20slash/MdeAvCoverage_CL/")
    blob = dead_letters.container.download_blob(result.dead_letter_blob).readall().decode()
    entry = json.loads(blob.splitlines()[0])
    assert entry["cycle_id"] == "cycle/with slash"
    assert entry["row"]["TimeGenerated"] == "2026-12-03T12:00:00+00:00"
    assert "out of range for int" in entry["reason"]
