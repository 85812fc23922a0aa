"""The streamed JSON equals the plain per-device encoding, whatever is shared between devices."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from pipeline.evaluate import Evaluator
from pipeline.inputs import read_files
from pipeline.matrix import load_matrix
from pipeline.model import DeviceCoverage
from pipeline.output import (
    Summary,
    coverage_json,
    evaluation_document,
    rejected_json,
    streamed_evaluation_document,
    write_json,
)
from tests.support.devices import full_tenant

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def test_streamed_json_is_exactly_the_per_device_documents() -> None:
    inputs = read_files([SAMPLES / "deviceavinfo.json"])
    # Twice the same devices, so the shared-encoding cache is really exercised.
    devices = inputs.devices + inputs.devices
    evaluator = Evaluator(load_matrix(), full_tenant())
    coverages = [evaluator.evaluate(d) for d in devices]

    out = io.StringIO()
    write_json(out, iter(coverages), inputs.rejected, Summary(load_matrix().version))
    document = json.loads(out.getvalue())

    assert document["devices"] == [coverage_json(c) for c in coverages]
    assert document["rejected"] == [rejected_json(r) for r in inputs.rejected]
    assert document["summary"]["devices"] == len(devices)


def test_names_with_quotes_and_unicode_stay_valid_json() -> None:
    inputs = read_files([SAMPLES / "deviceavinfo.json"])
    odd = replace(inputs.devices[0], device_name='pc "quoted"\n\u00e9\u2028', device_id="x\\y")
    coverage = Evaluator(load_matrix(), full_tenant()).evaluate(odd)
    out = io.StringIO()
    write_json(out, iter([coverage]), [], Summary("v"))
    parsed = json.loads(out.getvalue())["devices"][0]
    assert parsed["device_name"] == 'pc "quoted"\n\u00e9\u2028'
    assert parsed["device_id"] == "x\\y"


def _fresh_parts(coverages: list[DeviceCoverage]) -> Iterator[DeviceCoverage]:
    """Each coverage with new copies of its verdict map, findings and gaps, dropped as soon as
    the next one is made, so their ids are free to be reused by the next device's copies."""
    for coverage in coverages:
        yield replace(
            coverage,
            capabilities=dict(coverage.capabilities),
            # tuple() of a tuple is that same object; through a list it is a new one.
            findings=tuple(list(coverage.findings)),  # noqa: C414
            gaps=tuple(list(coverage.gaps)),  # noqa: C414
        )


def _varied_coverages() -> list[DeviceCoverage]:
    inputs = read_files([SAMPLES / "deviceavinfo.json"])
    evaluator = Evaluator(load_matrix(), full_tenant())
    coverages = [evaluator.evaluate(d) for d in inputs.devices]
    # Neighbours that differ in every shared part, many times over.
    assert len({(c.gaps, c.findings) for c in coverages}) > 2
    return coverages * 20


def test_streamed_json_never_gives_a_device_another_ones_parts() -> None:
    coverages = _varied_coverages()

    out = io.StringIO()
    write_json(out, _fresh_parts(coverages), [], Summary(load_matrix().version))

    assert json.loads(out.getvalue())["devices"] == [coverage_json(c) for c in coverages]


def test_the_streamed_document_fills_its_summary_once_the_devices_are_read() -> None:
    coverages = _varied_coverages()

    document = streamed_evaluation_document(
        _fresh_parts(coverages), [], Summary(load_matrix().version)
    )
    assert document["summary"] == {}
    devices = list(document["devices"])

    assert devices == [coverage_json(c) for c in coverages]
    assert document["summary"]["devices"] == len(coverages)
    whole = evaluation_document(iter(coverages), [], Summary(load_matrix().version))
    assert document["summary"] == whole["summary"]
    assert whole["devices"] == devices
