"""The mode cache: newest statement wins, which codes are reported, unknown devices."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.detect.modes_cache import DeviceMode, ModesCache
from pipeline.model import RejectedRecord

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "collector"
AT = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def row(device: str, code: str, at: str, state: str = "passive") -> dict[str, str]:
    return {"TimeGenerated": at, "DeviceId": device, "AvModeCode": code, "AvState": state}


@pytest.mark.parametrize(("code", "reported"), [("0", False), ("1", True), ("2", True),
                                                ("3", False), ("", False), ("4", True),
                                                ("5", True)])  # fmt: skip
def test_codes_that_cannot_enforce_are_reported(code: str, reported: bool) -> None:
    cache = ModesCache()
    cache.load_coverage_rows([row("d1", code, "2026-12-03T10:00:00Z")])

    assert (cache.mode_to_report("d1") is not None) == reported


def test_the_newest_row_wins_whatever_the_order() -> None:
    cache = ModesCache()
    cache.load_coverage_rows(
        [
            row("d1", "0", "2026-12-03T10:00:00Z", "active"),
            row("d1", "1", "2026-12-02T10:00:00Z"),
        ]
    )

    assert cache.get("d1").av_mode_code == "0"  # type: ignore[union-attr]
    assert cache.mode_to_report("d1") is None


def test_unknown_devices_follow_the_policy() -> None:
    assert ModesCache().mode_to_report("new") == DeviceMode(
        "new", "", "", "unknown", None, "unknown"
    )
    assert ModesCache("ignore").mode_to_report("new") is None
    with pytest.raises(ValueError, match="unknown_devices"):
        ModesCache("drop")  # type: ignore[arg-type]


def test_bad_rows_are_rejected_by_name() -> None:
    cache = ModesCache()

    rejected = cache.load_coverage_rows(
        [{"DeviceId": "", "TimeGenerated": "x"}, {"DeviceId": "d2", "TimeGenerated": "soon"}]
    )

    assert [(r.record_id, r.field) for r in rejected] == [
        (None, "DeviceId"),
        ("d2", "TimeGenerated"),
    ]
    assert len(cache) == 0


def test_a_collector_document_updates_the_mode_when_it_is_newer() -> None:
    document = json.loads((FIXTURES / "ps51-client-passive-falcon.json").read_text("utf-8-sig"))
    device_id = document["device"]["mdeDeviceId"]
    cache = ModesCache()
    cache.load_coverage_rows([row(device_id, "0", "2000-01-01T00:00:00Z", "active")])

    mode = cache.update_from_collector(document, "fixture")

    assert isinstance(mode, DeviceMode)
    assert (mode.av_mode_code, mode.av_state, mode.source) == ("1", "passive", "collector")
    assert cache.mode_to_report(device_id) == mode


def test_an_older_collector_document_does_not_replace_a_newer_evaluation() -> None:
    document = json.loads((FIXTURES / "ps51-client-passive-falcon.json").read_text("utf-8-sig"))
    device_id = document["device"]["mdeDeviceId"]
    cache = ModesCache()
    cache.load_coverage_rows([row(device_id, "0", "2999-01-01T00:00:00Z", "active")])

    kept = cache.update_from_collector(document, "fixture")

    assert isinstance(kept, DeviceMode)
    assert kept.av_mode_code == "0"


def test_a_broken_collector_document_is_rejected() -> None:
    assert isinstance(ModesCache().update_from_collector({"schema": "x"}, "doc"), RejectedRecord)


def test_state_names_from_the_cycle_become_codes() -> None:
    cache = ModesCache()

    rejected = cache.load_state_names({"a": "edr_block", "b": "active", "c": "sideways"}, AT)

    assert cache.get("a").av_mode_code == "4"  # type: ignore[union-attr]
    assert cache.mode_to_report("b") is None
    assert [r.record_id for r in rejected] == ["c"]
