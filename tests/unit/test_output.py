"""The streamed JSON equals the plain per-device encoding, whatever is shared between devices."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

from pipeline.evaluate import Evaluator
from pipeline.inputs import read_files
from pipeline.matrix import load_matrix
from pipeline.output import Summary, coverage_json, rejected_json, write_json
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
