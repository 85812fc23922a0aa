"""The streaming detector, run on the same cases as the Sentinel network-events rule."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.detect import BlocklistIndex, ModesCache, StreamDetector
from pipeline.tables import DETECTIONS
from tests.support.rule_cases import RuleCase, matches
from tests.support.stream_cases import (
    TENANT,
    WINDOW_CASES,
    blocklist_entries,
    coverage_rows,
    network_event_cases,
    stream_message,
    summarised,
)

CASES = network_event_cases()
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


def detector_for(case: RuleCase, unknown_devices: Any = "ignore") -> StreamDetector:
    modes = ModesCache(unknown_devices)
    assert modes.load_coverage_rows(coverage_rows(case, CASES.now)) == []
    return StreamDetector(BlocklistIndex(blocklist_entries(case)), modes, clock=lambda: NOW)


@pytest.mark.parametrize(
    "case", [c for c in CASES.cases if c.name not in WINDOW_CASES], ids=lambda c: c.name[:60]
)
def test_detector_agrees_with_the_rule_on_its_cases(case: RuleCase) -> None:
    # "ignore" is what the rule does with devices that have no coverage row.
    result = detector_for(case).detect([stream_message(case, CASES.now)])

    assert result.poison == []
    assert bool(result.rows) == case.fires, result.rows
    if case.expect:
        assert matches(summarised(result.rows), case.expect), summarised(result.rows)


def test_the_window_case_is_the_only_one_left_out() -> None:
    names = {case.name for case in CASES.cases}
    assert names >= WINDOW_CASES
    assert len(CASES.cases) - len(WINDOW_CASES) >= 10


def test_by_default_a_device_without_coverage_is_reported_as_unknown() -> None:
    case = next(c for c in CASES.cases if c.name == "a device with no coverage row is not judged")

    result = detector_for(case, "report").detect([stream_message(case, CASES.now)])

    assert [(row["DeviceId"], row["AvModeCode"], row["AvState"]) for row in result.rows] == [
        ("d9", "", "unknown")
    ]
    assert result.counts["unknown_device"] == 1


def test_rows_have_exactly_the_detection_table_columns() -> None:
    case = next(c for c in CASES.cases if c.expect and c.fires)

    rows = detector_for(case).detect([stream_message(case, CASES.now)]).rows

    assert rows
    for row in rows:
        assert set(row) == set(DETECTIONS.column_names)
        assert row["TimeGenerated"] == "2026-12-03T12:00:00Z"
        assert row["SourceCategory"] == "AdvancedHunting-DeviceNetworkEvents"


def test_detection_ids_are_stable_across_deliveries_and_differ_per_match() -> None:
    case = next(c for c in CASES.cases if c.name.startswith("an IP entry matches"))
    body = stream_message(case, CASES.now)

    first = detector_for(case).detect([body]).rows
    again = detector_for(case).detect([body]).rows

    assert [row["DetectionId"] for row in first] == [row["DetectionId"] for row in again]
    assert len({row["DetectionId"] for row in first}) == len(first) == 2


def _record(device: str, action: str = "ConnectionSuccess", **properties: Any) -> dict[str, Any]:
    return {
        "time": "2026-12-03T11:59:00Z",
        "tenantId": TENANT,
        "category": "AdvancedHunting-DeviceNetworkEvents",
        "properties": {
            "Timestamp": "2026-12-03T11:58:59.1234567Z",
            "DeviceId": device,
            "ActionType": action,
            **properties,
        },
    }


def _passive_detector(*entries: Any) -> StreamDetector:
    modes = ModesCache("ignore")
    modes.load_coverage_rows(
        [
            {"TimeGenerated": "2026-12-03T10:00:00Z", "DeviceId": "p1", "AvModeCode": "1"},
            {"TimeGenerated": "2026-12-03T10:00:00Z", "DeviceId": "a1", "AvModeCode": "0"},
        ]
    )
    case = next(c for c in CASES.cases if c.name.startswith("a passive device reaching"))
    return StreamDetector(BlocklistIndex(blocklist_entries(case)), modes, clock=lambda: NOW)


def test_poison_records_are_counted_and_the_batch_goes_on() -> None:
    good = _record("p1", RemoteUrl="https://evil.example/")
    body = json.dumps(
        {
            "records": [
                good,
                {**good, "properties": {**good["properties"], "RemotePort": "443"}},
                {"category": "AdvancedHunting-DeviceNetworkEvents", "time": "t"},
                "not a record",
                good,
            ]
        }
    )

    result = _passive_detector().detect([body, b"{not json", json.dumps([1]), body])

    assert len(result.rows) == 4  # the two good records of each of the two good messages
    assert result.counts["messages"] == 4
    assert result.counts["poison"] == len(result.poison) == 8
    reasons = [(p.message, p.record, p.reason) for p in result.poison]
    assert (0, 1, "properties.RemotePort is a str, not an integer") in reasons
    assert (0, 2, "tenantId is missing or not a string") in reasons
    assert (0, 3, "the record is a JSON str, not an object") in reasons
    assert any(m == 1 and r is None and reason.startswith("not JSON") for m, r, reason in reasons)
    assert (2, None, "the message is a JSON list, not an object") in reasons


def test_an_active_device_and_ignored_actions_are_not_reported() -> None:
    body = json.dumps(
        {
            "records": [
                _record("a1", RemoteUrl="evil.example"),
                _record("p1", "ConnectionFailed", RemoteUrl="evil.example"),
                _record("p1", "InboundConnectionAccepted", RemoteIP="203.0.113.7"),
            ]
        }
    )

    result = _passive_detector().detect([body])

    assert result.rows == []
    assert result.counts["enforcing_device"] == 1
    assert result.counts["ignored_action"] == 2


def _block_signal(device: str, url: str, additional: Any) -> dict[str, Any]:
    record = _record(device, "ExploitGuardNetworkProtectionBlocked", RemoteUrl=url)
    record["category"] = "AdvancedHunting-DeviceEvents"
    record["properties"]["AdditionalFields"] = additional
    return record


@pytest.mark.parametrize(
    "additional", [None, '{"ResponseCategory":"CustomBlockList"}', {"IsAudit": False}]
)
def test_a_block_signal_for_the_same_device_and_host_suppresses_the_detection(
    additional: Any,
) -> None:
    body = json.dumps(
        {
            "records": [
                _record("p1", RemoteUrl="https://files.evil.example/x"),
                _block_signal("p1", "files.evil.example", additional),
            ]
        }
    )

    result = _passive_detector().detect([body])

    assert result.rows == []
    assert result.counts["suppressed"] == 1


@pytest.mark.parametrize("additional", ['{"IsAudit":"true"}', {"IsAudit": True}])
def test_an_audit_mode_signal_does_not_suppress(additional: Any) -> None:
    body = json.dumps(
        {
            "records": [
                _record("p1", RemoteUrl="https://files.evil.example/x"),
                _block_signal("p1", "files.evil.example", additional),
            ]
        }
    )

    assert len(_passive_detector().detect([body]).rows) == 1


def test_a_block_signal_with_unreadable_additional_fields_is_poison() -> None:
    body = json.dumps({"records": [_block_signal("p1", "evil.example", "{broken")]})

    result = _passive_detector().detect([body])

    assert [p.reason for p in result.poison] == [
        "message 0 record 0: AdditionalFields is text that is not a JSON object"
    ]


def test_an_event_time_that_does_not_read_makes_the_match_poison() -> None:
    record = _record("p1", RemoteUrl="evil.example")
    record["time"] = "yesterday"
    record["properties"]["Timestamp"] = "soon"

    result = _passive_detector().detect([json.dumps({"records": [record]})])

    assert result.rows == []
    assert "neither Timestamp nor time" in result.poison[0].reason


def test_other_tables_are_counted_not_poisoned() -> None:
    other = {**_record("p1"), "category": "AdvancedHunting-DeviceProcessEvents"}

    result = _passive_detector().detect([json.dumps({"records": [other]})])

    assert result.poison == []
    assert result.counts["other_tables"] == 1


def test_the_benchmark_runs_in_quick_mode() -> None:
    completed = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_stream.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert "ratio" in completed.stdout
    assert "narrow rows" in completed.stdout
