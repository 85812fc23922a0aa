"""endpoint-av-state/1 documents: what PowerShell really emits is accepted; broken ones listed."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.lab.collector_docs import collector_document, sample_devices
from pipeline.lab.fleet import Fleet
from pipeline.sources.collector_doc import (
    MAX_DOCUMENT_BYTES,
    read_collector_documents,
    validate_collector_document,
)
from tests.support.lab import FIXTURES

COLLECTOR_FIXTURES = sorted((FIXTURES / "collector").glob("*.json"))


def _good() -> dict[str, Any]:
    return json.loads((FIXTURES / "collector" / "ps51-client-passive-falcon.json").read_text())


@pytest.mark.parametrize("path", COLLECTOR_FIXTURES, ids=lambda p: p.stem)
def test_every_powershell_shaped_sample_is_accepted(path: Path) -> None:
    raw = path.read_bytes()

    assert validate_collector_document(json.loads(raw), len(raw)) == []


def test_the_samples_cover_numbers_and_names_for_enums() -> None:
    numbers = json.loads((FIXTURES / "collector" / "ps51-rtr-raw-convertto-json.json").read_text())
    names = json.loads((FIXTURES / "collector" / "ps7-enums-as-strings.json").read_text())

    assert numbers["services"]["WinDefend"] == 4
    assert names["services"]["WinDefend"] == "Running"
    assert names["mpPreference"]["EnableNetworkProtection"] == "AuditMode"
    assert numbers["mpComputerStatus"]["AntivirusSignatureLastUpdated"].startswith("/Date(")


def test_windows_powershell_file_encodings_are_read(tmp_path: Path) -> None:
    text = json.dumps(_good())
    (tmp_path / "a-utf8-bom.json").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    (tmp_path / "b-utf16.json").write_bytes(text.encode("utf-16"))
    (tmp_path / "c-broken.json").write_text(text[:-20], encoding="utf-8")
    (tmp_path / "notes.txt").write_text("ignored", encoding="utf-8")

    results = list(read_collector_documents(tmp_path))

    assert [(name, problems == []) for name, _, problems in results] == [
        ("a-utf8-bom.json", True),
        ("b-utf16.json", True),
        ("c-broken.json", False),
    ]
    assert results[2][1] is None
    assert "not JSON" in results[2][2][0]


def _broken(change: Any) -> list[str]:
    document = _good()
    change(document)
    return validate_collector_document(document)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.update(schema="endpoint-av-state/2"), "schema: expected"),
        (lambda d: d.update(collectedAt="yesterday"), "collectedAt: not an ISO 8601 time"),
        (lambda d: d.pop("device"), "device: missing"),
        (lambda d: d["device"].pop("onboarded"), "device.onboarded: missing"),
        (lambda d: d["device"].update(onboarded="yes"), "device.onboarded: expected bool"),
        (lambda d: d["device"].update(productType="workstation"), "device.productType"),
        (lambda d: d["mpComputerStatus"].pop("AMRunningMode"), "AMRunningMode: missing"),
        (lambda d: d["mpComputerStatus"].update(RealTimeProtectionEnabled="True"), "expected true"),
        (lambda d: d["mpPreference"].update(EnableNetworkProtection=7), "EnableNetworkProtection"),
        (
            lambda d: d["mpPreference"].update(EnableNetworkProtection="On"),
            "EnableNetworkProtection",
        ),
        (lambda d: d["mpPreference"].update(AttackSurfaceReductionRules_Actions=[1]), "ASR rule"),
        (lambda d: d["registry"].pop("ForcePassiveMode"), "registry.ForcePassiveMode: missing"),
        (lambda d: d["registry"].update(ForceDefenderPassiveMode="1"), "unexpected value"),
        (lambda d: d["services"].update(wscsvc=9), "services.wscsvc: unexpected value"),
        (lambda d: d["services"].update(Sense=True), "services.Sense: unexpected value"),
        (lambda d: d.update(thirdPartyAv=[{"productState": 1}]), "thirdPartyAv[0]"),
    ],
)
def test_each_structural_problem_is_named(change: Any, expected: str) -> None:
    problems = _broken(change)

    assert any(expected in problem for problem in problems), problems


def test_not_an_object_and_oversized_documents_are_problems_not_exceptions() -> None:
    assert validate_collector_document(["a"]) == ["document is a JSON list, not an object"]
    assert validate_collector_document(None)[0].startswith("document is a JSON NoneType")
    assert "bytes, more than" in validate_collector_document(_good(), MAX_DOCUMENT_BYTES + 1)[0]


def test_several_problems_are_all_reported() -> None:
    document = copy.deepcopy(_good())
    document["schema"] = "x"
    document["services"] = "Running"
    document["device"]["name"] = " "

    problems = validate_collector_document(document)

    assert len(problems) == 3


def test_lab_documents_are_valid_and_agree_with_the_fleet() -> None:
    fleet = Fleet(2_000)

    for device in sample_devices(fleet):
        document = collector_document(device)
        assert validate_collector_document(document) == []
        assert document["device"]["mdeDeviceId"] == device.machine_id
        assert document["mpComputerStatus"]["AMProductVersion"] == device.platform_version
