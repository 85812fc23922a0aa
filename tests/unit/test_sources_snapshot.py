"""The snapshot file: streamed, in the agreed order, never left half written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.sources.snapshot import SECTIONS, SnapshotWriter


def test_sections_counts_and_errors_in_the_agreed_layout(tmp_path: Path) -> None:
    out = tmp_path / "snap.json"
    endpoints = {"mde": "https://api.security.microsoft.com", "graph": "https://g/v1.0"}

    with SnapshotWriter(out, collected_at="2026-12-03T18:00:00Z", endpoints=endpoints) as snap:
        with snap.section("deviceavinfo") as section:
            section.write({"id": "a", "avMode": "1"})
            section.write({"id": "b", "avMode": ""})
        with snap.section("indicators") as section:
            section.write({"id": "1", "indicatorValue": "mega.nz"})
        snap.add_error(
            "machines", "GET /api/machines", "boom", status=500, code="InternalServerError"
        )

    document = json.loads(out.read_text(encoding="utf-8"))
    assert list(document) == [
        "schema",
        "collectedAt",
        "endpoints",
        *SECTIONS,
        "counts",
        "errors",
    ]
    assert document["schema"] == "mde-snapshot/1"
    assert document["deviceavinfo"] == [{"id": "a", "avMode": "1"}, {"id": "b", "avMode": ""}]
    assert document["machines"] == []
    assert document["collectorDocuments"] == []
    assert document["counts"] == {
        "deviceavinfo": 2,
        "machines": 0,
        "tvmInfoGathering": 0,
        "indicators": 1,
        "collectorDocuments": 0,
    }
    assert document["errors"] == [
        {
            "source": "machines",
            "endpoint": "GET /api/machines",
            "status": 500,
            "code": "InternalServerError",
            "message": "boom",
        }
    ]


def test_a_run_that_dies_leaves_no_file_and_keeps_an_older_snapshot(tmp_path: Path) -> None:
    out = tmp_path / "snap.json"
    out.write_text('{"schema": "mde-snapshot/1", "old": true}', encoding="utf-8")

    def crash() -> None:
        with (
            SnapshotWriter(out, collected_at="t", endpoints={}) as snap,
            snap.section("deviceavinfo") as section,
        ):
            section.write({"id": "a"})
            raise RuntimeError("collector crashed")

    with pytest.raises(RuntimeError):
        crash()

    assert json.loads(out.read_text(encoding="utf-8"))["old"] is True
    assert list(tmp_path.iterdir()) == [out]


def test_a_record_that_cannot_be_serialised_leaves_the_section_intact(tmp_path: Path) -> None:
    out = tmp_path / "snap.json"

    with (
        SnapshotWriter(out, collected_at="t", endpoints={}) as snap,
        snap.section("machines") as section,
    ):
        section.write({"id": "a"})
        with pytest.raises(TypeError):
            section.write({"id": object()})
        section.write({"id": "b"})

    assert json.loads(out.read_text())["machines"] == [{"id": "a"}, {"id": "b"}]


def test_sections_out_of_order_are_refused(tmp_path: Path) -> None:
    with SnapshotWriter(tmp_path / "s.json", collected_at="t", endpoints={}) as snap:
        with snap.section("indicators"):
            pass
        with pytest.raises(ValueError, match="out of order"), snap.section("machines"):
            pass
