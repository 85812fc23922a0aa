"""The generated deployment content: tables from tables.py, detection content from detections/."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from pipeline import infra_content
from pipeline.cli import main
from pipeline.tables import ALL_TABLES

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "infra"
GENERATED = REPO / infra_content.GENERATED_DIR


@pytest.fixture(scope="module")
def sample() -> infra_content.GeneratedContent:
    return infra_content.build_content(FIXTURE)


def _rules(content: infra_content.GeneratedContent) -> dict[str, dict]:
    document = content.documents[infra_content.RULES_FILE]
    rules = document["onOwnTables"] + document["onDefenderXdrTables"]
    return {rule["sourceFile"].rsplit("/", 1)[-1]: rule for rule in rules}


# --- tables ---------------------------------------------------------------------------------------


def test_stream_declarations_and_table_columns_come_from_tables_py() -> None:
    content = infra_content.tables_content()

    for table in ALL_TABLES:
        assert content["streamDeclarations"][table.stream_name] == table.stream_declaration()
        entry = next(t for t in content["tables"] if t["name"] == table.name)
        assert [{"name": c["name"], "type": c["type"]} for c in entry["columns"]] == (
            table.bicep_columns()
        )
        assert [c["description"] for c in entry["columns"]] == [
            c.description for c in table.columns
        ]


def test_each_table_has_one_data_flow_into_its_own_table() -> None:
    flows = infra_content.tables_content()["dataFlows"]

    assert [(f["streams"], f["outputStream"]) for f in flows] == [
        ([t.stream_name], f"Custom-{t.name}") for t in ALL_TABLES
    ]
    assert all(f["destinations"] == ["workspace"] for f in flows)


# --- analytics rules ------------------------------------------------------------------------------


def test_yaml_rule_becomes_the_arm_scheduled_rule(sample: infra_content.GeneratedContent) -> None:
    rule = _rules(sample)["passive-device-gap.yaml"]
    source = yaml.safe_load((FIXTURE / "detections/rules/passive-device-gap.yaml").read_text())
    props = rule["properties"]

    assert rule["name"] == source["id"]
    assert props["displayName"] == source["name"]
    assert props["query"] == source["query"]
    assert (props["queryFrequency"], props["queryPeriod"]) == ("PT1H", "P1D")
    assert (props["triggerOperator"], props["triggerThreshold"]) == ("GreaterThan", 0)
    # The stable API takes parent techniques only; the duplicate collapses.
    assert props["techniques"] == ["T1562"]
    assert props["customDetails"] == {"GapCount": "GapCount"}
    assert props["entityMappings"][0]["fieldMappings"] == [
        {"identifier": "FullName", "columnName": "DeviceName"}
    ]
    assert props["suppressionEnabled"] is False
    assert props["suppressionDuration"] == "PT5H"
    assert props["incidentConfiguration"]["createIncident"] is True


def test_minutes_and_other_operators_convert(sample: infra_content.GeneratedContent) -> None:
    props = _rules(sample)["network-events.yaml"]["properties"]

    assert (props["queryFrequency"], props["queryPeriod"]) == ("PT30M", "PT2H")
    assert (props["triggerOperator"], props["triggerThreshold"]) == ("NotEqual", 3)


def test_rules_are_split_by_whether_they_need_defender_xdr_tables(
    sample: infra_content.GeneratedContent,
) -> None:
    document = sample.documents[infra_content.RULES_FILE]
    own = {r["sourceFile"].rsplit("/", 1)[-1] for r in document["onOwnTables"]}
    xdr = {r["sourceFile"].rsplit("/", 1)[-1] for r in document["onDefenderXdrTables"]}

    assert own == {"passive-device-gap.yaml"}
    # One declares DeviceNetworkEvents; the other only names DeviceEvents in its query.
    assert xdr == {"network-events.yaml", "undeclared-xdr-table.yaml"}


def test_bad_rules_are_rejected_by_file_and_field_and_the_rest_still_converts(
    sample: infra_content.GeneratedContent,
) -> None:
    rejected = {(r.source.rsplit("/", 1)[-1], r.field) for r in sample.rejected}

    assert ("bad-frequency.yaml", "queryPeriod") in rejected
    assert ("bad-operator.yaml", "triggerOperator") in rejected
    assert ("same-id-as-passive-device-gap.yaml", "id") in rejected
    assert ("broken.yaml", "(file)") in rejected
    assert ("not-a-workbook.json", "version") in rejected
    assert len(_rules(sample)) == 3
    assert not any("cases" in r.source for r in sample.rejected)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("queryFrequency", "2m", "outside 5m to 14d"),
        ("queryPeriod", "15d", "outside 5m to 14d"),
        ("queryFrequency", "1 hour", "not a duration"),
        ("triggerThreshold", 10_001, "between 0 and 10000"),
        ("triggerThreshold", True, "integer"),
        ("severity", "Critical", "not one of"),
        ("tactics", ["Lateral Movement"], "unknown tactic"),
        ("relevantTechniques", ["1562"], "not a MITRE technique id"),
        ("id", "not-a-guid", "not a GUID"),
        ("kind", "NRT", "only Scheduled"),
        ("query", "", "non-empty"),
        ("query", "x" * 10_001, "limit is 10000"),
        ("customDetails", {"Gap Count": "GapCount"}, "not a valid detail name"),
        ("entityMappings", [{"entityType": "Host", "fieldMappings": []}], "1 to 3"),
    ],
)
def test_each_invalid_field_is_named(
    tmp_path: Path, field: str, value: object, reason: str
) -> None:
    document = yaml.safe_load((FIXTURE / "detections/rules/passive-device-gap.yaml").read_text())
    document[field] = value
    rules_dir = tmp_path / "detections" / "rules"
    rules_dir.mkdir(parents=True)
    (rules_dir / "rule.yaml").write_text(yaml.safe_dump(document))

    converted, rejected = infra_content.load_analytics_rules(rules_dir, tmp_path)

    assert converted["onOwnTables"] == converted["onDefenderXdrTables"] == []
    [problem] = rejected
    assert problem.source == "detections/rules/rule.yaml"
    assert problem.field.startswith(field)  # e.g. entityMappings[0]
    assert reason in problem.reason


# --- hunting queries and workbooks ----------------------------------------------------------------


def test_hunting_queries_become_saved_searches_and_xdr_only_ones_are_held_back(
    sample: infra_content.GeneratedContent,
) -> None:
    hunting = sample.documents[infra_content.HUNTING_FILE]

    assert [q["displayName"] for q in hunting["queries"]] == ["Passive devices by platform"]
    tags = {t["name"]: t["value"] for t in hunting["queries"][0]["tags"]}
    assert tags == {
        "description": "Counts devices whose latest mode is passive, by platform.",
        "tactics": "DefenseEvasion",
        "techniques": "T1562.001",
    }
    assert [n["sourceFile"] for n in hunting["notDeployed"]] == [
        "detections/hunting/defender-xdr/marked.yaml",
        "detections/hunting/tvm-av-mode.yaml",
    ]


def test_workbook_is_serialised_with_its_heading_as_name(
    sample: infra_content.GeneratedContent,
) -> None:
    [workbook] = sample.documents[infra_content.WORKBOOKS_FILE]["workbooks"]
    original = json.loads((FIXTURE / "detections/workbooks/coverage.workbook.json").read_text())

    assert workbook["key"] == "coverage"
    assert workbook["displayName"] == "Defender coverage"
    assert json.loads(workbook["serializedData"]) == original


# --- writing, staleness, embedded KQL -------------------------------------------------------------


def _copy_fixture(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(FIXTURE / "detections", root / "detections")
    return root


def test_check_reports_stale_files_and_write_fixes_them(tmp_path: Path) -> None:
    root = _copy_fixture(tmp_path)
    out = root / infra_content.GENERATED_DIR
    content = infra_content.build_content(root)

    assert set(infra_content.stale_files(content, out)) == set(content.documents)
    assert set(infra_content.write_content(content, out)) == set(content.documents)
    assert infra_content.stale_files(content, out) == []
    assert infra_content.write_content(content, out) == []  # unchanged files are not rewritten

    rule = root / "detections/rules/passive-device-gap.yaml"
    rule.write_text(rule.read_text().replace("GapCount > 0", "GapCount > 1"))
    changed = infra_content.build_content(root)
    assert infra_content.stale_files(changed, out) == [infra_content.RULES_FILE]


def test_embedded_kql_returns_what_the_generated_files_deploy(tmp_path: Path) -> None:
    root = _copy_fixture(tmp_path)
    infra_content.write_content(
        infra_content.build_content(root), root / infra_content.GENERATED_DIR
    )

    queries = infra_content.embedded_kql(root)
    by_kind: dict[str, list[infra_content.EmbeddedQuery]] = {}
    for query in queries:
        by_kind.setdefault(query.kind, []).append(query)

    assert [q.source_schema for q in by_kind["dcr_transform"]] == [
        t.kql_schema() for t in ALL_TABLES
    ]
    assert all(q.query == "source" for q in by_kind["dcr_transform"])
    rule_text = yaml.safe_load((root / "detections/rules/passive-device-gap.yaml").read_text())
    assert rule_text["query"] in {q.query for q in by_kind["analytics_rule"]}
    assert len(by_kind["analytics_rule"]) == 3
    assert [q.name for q in by_kind["hunting_query"]] == ["Passive devices by platform"]
    assert {q.query for q in by_kind["workbook"]} == {
        "MdeAvCoverage_CL | distinct Platform",
        "MdeAvCoverage_CL | where {TimeRange}"
        " | summarize count() by bin(TimeGenerated, 1d), AvState",
    }


def test_cli_exit_status_names_rejections_and_staleness(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _copy_fixture(tmp_path)

    assert main(["infra-content", "--repo-root", str(root), "--check"]) == 1
    assert main(["infra-content", "--repo-root", str(root)]) == 1  # written, but files rejected
    err = capsys.readouterr().err
    assert "rejected: detections/rules/bad-operator.yaml: triggerOperator:" in err

    for bad in (root / "detections/rules").glob("b*.yaml"):
        bad.unlink()
    (root / "detections/rules/same-id-as-passive-device-gap.yaml").unlink()
    (root / "detections/workbooks/not-a-workbook.json").unlink()
    assert main(["infra-content", "--repo-root", str(root)]) == 0
    assert main(["infra-content", "--repo-root", str(root), "--check"]) == 0
    assert main(["infra-content", "--repo-root", str(tmp_path / "missing")]) == 2


# --- the real repository --------------------------------------------------------------------------


def test_generated_files_in_the_repository_are_current() -> None:
    content = infra_content.build_content(REPO)

    stale = infra_content.stale_files(content, GENERATED)

    assert stale == [], f"stale: {stale}; run: python -m pipeline infra-content"


def test_every_detection_in_the_repository_converts() -> None:
    content = infra_content.build_content(REPO)

    assert [str(r) for r in content.rejected] == []


def test_deployed_rule_queries_are_the_detection_queries() -> None:
    sources = sorted((REPO / "detections" / "rules").glob("*.yaml"))
    sources = [p for p in sources if not p.name.endswith(".cases.yaml")]
    if not sources:
        pytest.skip("detections/rules has no rules yet")

    deployed = json.loads((GENERATED / infra_content.RULES_FILE).read_text())
    by_id = {r["name"]: r for r in deployed["onOwnTables"] + deployed["onDefenderXdrTables"]}
    for path in sources:
        source = yaml.safe_load(path.read_text())
        rule = by_id[str(source["id"]).lower()]
        assert rule["properties"]["query"] == source["query"], path.name
        assert rule["properties"]["displayName"] == source["name"], path.name
    assert len(by_id) == len(sources)
