"""The streaming envelope: typed events from good records, a reason for every bad one."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline.detect.envelope import additional_fields, parse_batch


def record(category: str = "AdvancedHunting-DeviceNetworkEvents", **properties: Any) -> dict:
    return {
        "time": "2026-12-03T10:00:00Z",
        "tenantId": "t1",
        "category": category,
        "properties": {"DeviceId": "d1", "ActionType": "ConnectionSuccess", **properties},
    }


def message(*records: Any) -> bytes:
    return json.dumps({"records": list(records)}).encode("utf-8")


def test_good_records_become_typed_events() -> None:
    body = message(
        record(RemoteUrl="evil.example", RemoteIP="203.0.113.7", RemotePort=443, DeviceName="pc1"),
        record("AdvancedHunting-DeviceEvents", ActionType="SmartScreenUrlWarning"),
    )

    batch = parse_batch([body])

    assert batch.poison == []
    assert (batch.messages, batch.records) == (1, 2)
    first, second = batch.events
    assert (first.table, first.remote_url, first.remote_port, first.device_name) == (
        "DeviceNetworkEvents",
        "evil.example",
        443,
        "pc1",
    )
    assert (first.message, first.record, second.record) == (0, 0, 1)
    assert second.table == "DeviceEvents"


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("text", "the record is a JSON str, not an object"),
        ({**record(), "category": 7}, "category is missing or not a string"),
        ({k: v for k, v in record().items() if k != "time"}, "time is missing or not a string"),
        ({**record(), "tenantId": None}, "tenantId is missing or not a string"),
        ({**record(), "properties": "{}"}, "properties is missing or not an object"),
        (record(DeviceId=""), "properties.DeviceId is missing or not a non-empty string"),
        (record(ActionType=None), "properties.ActionType is missing or not a string"),
        (record(RemoteUrl=["a"]), "properties.RemoteUrl is a list, not a string"),
        (record(RemotePort="443"), "properties.RemotePort is a str, not an integer"),
        (record(RemotePort=True), "properties.RemotePort is a bool, not an integer"),
        (record(AdditionalFields=5), "properties.AdditionalFields is a int, not text or an object"),
    ],
)
def test_a_bad_record_is_poison_with_its_reason_and_the_rest_goes_on(bad: Any, reason: str) -> None:
    batch = parse_batch([message(record(), bad, record())])

    assert len(batch.events) == 2
    assert [(p.message, p.record, p.reason) for p in batch.poison] == [(0, 1, reason)]
    assert batch.poison[0].excerpt


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[]", "the message is a JSON list, not an object"),
        (b'{"value": []}', 'no "records" list in the message'),
    ],
)
def test_an_unreadable_message_is_one_poison_record(body: bytes, reason: str) -> None:
    batch = parse_batch([body, message(record())])

    assert len(batch.events) == 1
    assert batch.poison[0].record is None
    assert batch.poison[0].reason.startswith(reason)


def test_other_tables_are_counted_and_skipped() -> None:
    batch = parse_batch([message(record("AdvancedHunting-DeviceProcessEvents"))])

    assert (batch.events, batch.poison, batch.other_tables) == ([], [], 1)


@pytest.mark.parametrize(
    "value", ['{"IsAudit": true, "Experience": "CustomBlockList"}', {"IsAudit": True}]
)
def test_additional_fields_may_be_text_or_an_object(value: Any) -> None:
    event = parse_batch([message(record(AdditionalFields=value))]).events[0]

    assert additional_fields(event)["IsAudit"] is True


def test_additional_fields_text_that_is_not_an_object_is_an_error() -> None:
    event = parse_batch([message(record(AdditionalFields="[1]"))]).events[0]

    with pytest.raises(ValueError, match="not a JSON object"):
        additional_fields(event)


def test_a_long_bad_message_is_cut_in_the_excerpt() -> None:
    body = b"{" + b"x" * 20_000

    batch = parse_batch([body])

    assert len(batch.poison[0].excerpt) == 4096
