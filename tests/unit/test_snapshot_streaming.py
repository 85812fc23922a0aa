"""Reading a snapshot back one record at a time gives exactly what a whole parse gives.

The snapshots are written by the real writer from the lab fleet's records (no server needed):
the AV health export, the machine list, hunting rows, collector documents and indicators.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.inputs import (
    InputError,
    merge_devices,
    parse_document,
    read_files,
    read_snapshot,
)
from pipeline.lab.collector_docs import collector_document, sample_devices
from pipeline.lab.fleet import Fleet
from pipeline.lab.indicators import contoso_indicators
from pipeline.model import Inputs
from pipeline.sources.snapshot import (
    SnapshotHeader,
    SnapshotLayoutError,
    SnapshotWriter,
    iter_records,
    written_here,
)

DEVICES = 400


def _write(path: Path, fleet: Fleet, *, extra: dict[str, list[Any]] | None = None) -> Path:
    extra = extra or {}
    endpoints = {"mde": "https://api.security.microsoft.com", "graph": "https://g/v1.0"}
    with SnapshotWriter(path, collected_at="2026-12-04T06:00:00Z", endpoints=endpoints) as snap:
        sections: dict[str, list[Any]] = {
            "deviceavinfo": [fleet.deviceavinfo_record(i) for i in range(fleet.size)],
            "machines": [fleet.machine_record(i) for i in range(fleet.size)],
            # Every device twice in hunting: an older row first, so the newest must win.
            "tvmInfoGathering": [
                {**fleet.tvm_row(i), "Timestamp": "2020-01-01T00:00:00Z"}
                for i in range(0, fleet.size, 3)
            ]
            + [fleet.tvm_row(i) for i in range(fleet.size)],
            "indicators": contoso_indicators(),
            "collectorDocuments": [collector_document(d) for d in sample_devices(fleet)],
        }
        for name, records in sections.items():
            with snap.section(name) as section:
                for record in records + extra.get(name, []):
                    section.write(record)
        snap.add_error("machines", "GET /api/machines", "one page failed", status=500)
    return path


def _same(streamed: Inputs, whole: Inputs) -> None:
    assert streamed.devices == whole.devices
    assert streamed.rejected == whole.rejected
    assert streamed.indicators == whole.indicators
    assert streamed.indicator_kinds == whole.indicator_kinds


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return Fleet(DEVICES)


def test_a_streamed_snapshot_reads_exactly_as_a_whole_one(tmp_path: Path, fleet: Fleet) -> None:
    odd = {
        # Bad records, and strings holding every kind of line break.
        "deviceavinfo": [
            "not an object",
            {"id": "", "avMode": "1"},
            {"id": "ab" * 20, "avMode": "9", "computerDnsName": "x\ny\r\u2028z\u0085"},
        ],
        "tvmInfoGathering": [{"DeviceId": "cd" * 20, "AdditionalFields": "{not json"}],
        "collectorDocuments": [{"schema": "endpoint-av-state/1", "device": []}],
    }
    path = _write(tmp_path / "s.json", fleet, extra=odd)
    assert written_here(path)

    streamed = read_files([path])
    whole = parse_document(path.name, path.read_bytes())  # json.loads of the whole file
    whole.devices = merge_devices(whole.devices)  # as read_files does

    _same(streamed, whole)
    assert len(streamed.devices) == DEVICES + 1  # the fleet and the odd device "abab…"
    assert len(streamed.rejected) == 4
    assert any(d.aad_device_id for d in streamed.devices)
    assert "mda" in (streamed.indicator_kinds or set())


def test_the_header_and_errors_are_read_too(tmp_path: Path, fleet: Fleet) -> None:
    path = _write(tmp_path / "s.json", fleet)
    header = SnapshotHeader()

    sections = [section for section, _ in iter_records(path, header)]

    assert header.complete
    assert header.collected_at == "2026-12-04T06:00:00Z"
    assert header.endpoints["graph"] == "https://g/v1.0"
    assert header.counts["deviceavinfo"] == DEVICES
    assert header.errors == [json.loads(path.read_text())["errors"][0]]
    assert sections.count("machines") == DEVICES


def test_a_snapshot_in_another_layout_is_read_whole(tmp_path: Path, fleet: Fleet) -> None:
    written = _write(tmp_path / "s.json", fleet)
    pretty = tmp_path / "pretty.json"
    pretty.write_text(json.dumps(json.loads(written.read_text()), indent=2))

    compact = tmp_path / "compact.json"  # one line, as json.dumps writes it
    compact.write_text(json.dumps(json.loads(written.read_text()), separators=(",", ":")))

    assert not written_here(pretty)
    assert not written_here(compact)
    _same(read_files([pretty]), read_files([written]))
    _same(read_files([compact]), read_files([written]))


@pytest.mark.parametrize(
    ("damage", "complaint"),
    [
        (lambda text: text[: len(text) // 2].rsplit("\n", 1)[0] + "\n", "cut short"),
        (lambda text: text.replace('"avMode":"1"', '"avMode":"1', 1), "not valid JSON"),
        (lambda text: text.replace('"machines":[', '"machine_list":[', 1), "layout"),
        (lambda text: text[: text.rindex('"errors"')], "cut short"),
    ],
)
def test_a_damaged_snapshot_is_refused_naming_where(
    tmp_path: Path, fleet: Fleet, damage: Any, complaint: str
) -> None:
    path = _write(tmp_path / "s.json", fleet)
    path.write_text(damage(path.read_text(encoding="utf-8")), encoding="utf-8")

    with pytest.raises(InputError, match=complaint):
        read_files([path])
    with pytest.raises(SnapshotLayoutError, match=complaint):
        list(iter_records(path, SnapshotHeader()))


def test_keep_reads_only_the_devices_asked_for(tmp_path: Path, fleet: Fleet) -> None:
    unreadable = {"deviceavinfo": [{"avMode": "1"}], "tvmInfoGathering": [{"DeviceId": " "}]}
    path = _write(tmp_path / "s.json", fleet, extra=unreadable)
    everything = read_files([path])
    wanted = {d.device_id for d in everything.devices[::7]}
    asked: list[str] = []

    def keep(device_id: str) -> bool:
        asked.append(device_id)
        return device_id in wanted

    some = read_snapshot(path, keep=keep)

    assert {d.device_id for d in some.devices} == wanted
    assert some.devices == [d for d in everything.devices if d.device_id in wanted]
    assert some.indicators == everything.indicators
    # Records without a usable id are still rejected, whichever devices are kept.
    assert some.rejected == everything.rejected
    assert len(some.rejected) == 2
    # Every device record was asked about by its id before its facts were built.
    assert len(asked) >= 2 * DEVICES
