"""Every KQL query in the repository, parsed and analysed by Kusto.Language against the schemas.

One node process checks the whole batch (the repository's queries, deliberately broken copies
of them and a few probes), so the parser's start-up is paid once per session.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Iterator

import pytest

from tests.support.detections import (
    Content,
    all_queries,
    hunting_queries,
    rules,
    workbook_queries,
)
from tests.support.kusto import (
    DEFENDER_XDR,
    SENTINEL,
    KqlQuery,
    QueryCheck,
    check_queries,
    defender_tables,
)

pytestmark = pytest.mark.integration

QUERIES = all_queries()

# A transform checked against several candidate input streams must be valid for one of them.
_VARIANT = re.compile(r"@[A-Za-z]\w*_CL$")

# AvMode / AvModeCode compared with a word instead of Microsoft's numeric code, e.g.
# `AvMode == "Passive"`, `AvModeCode in ("Active", ...)`, `AvMode has 'passive'`.
_WORD_COMPARISON = re.compile(
    r"\bAvMode\w*\s*\)?\s*(?:==|!=|=~|!~|!?in~?|!?has\w*|!?contains\w*|!?startswith\w*)\s*"
    r"\(?\s*(?:@?[\"'])\s*[A-Za-z]",
)

_BROKEN_COLUMN = "broken:misspelled-column"
_BROKEN_TABLE = "broken:unknown-table"
_TVM_IN_SENTINEL = "broken:tvm-in-sentinel"
_WATCHLIST_TYPO = "broken:watchlist-column"


def _mutations() -> list[KqlQuery]:
    """Copies of real rules with one column misspelled: each must fail the check."""
    mutated = []
    for rule in rules():
        lines = rule.query.splitlines()
        for column in ("AvModeCode", "DeviceId"):
            # The first use outside a comment.
            at = next((i for i, line in enumerate(lines) if column in line.split("//", 1)[0]), None)
            if at is None:
                continue
            changed = [
                *lines[:at],
                re.sub(rf"\b{column}\b", column + "x", lines[at]),
                *lines[at + 1 :],
            ]
            text = "\n".join(changed)
            mutated.append(KqlQuery(f"mutant:{rule.label}:{column}", text, rule.database))
    return mutated


PROBES = [
    KqlQuery(_BROKEN_COLUMN, 'MdeAvCoverage_CL | where AvMod == "1" | project DeviceId'),
    KqlQuery(_BROKEN_TABLE, "MdeAvCoverge_CL | take 10"),
    KqlQuery(_TVM_IN_SENTINEL, "DeviceTvmInfoGathering | take 1", SENTINEL),
    KqlQuery(_WATCHLIST_TYPO, '_GetWatchlist("MdeBlockedResources") | project Valu'),
]
MUTANTS = _mutations()


@pytest.fixture(scope="session")
def checks() -> dict[str, QueryCheck]:
    return check_queries(QUERIES + PROBES + MUTANTS)


def _groups() -> Iterator[tuple[str, list[str]]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for query in QUERIES:
        grouped[_VARIANT.sub("", query.id)].append(query.id)
    yield from grouped.items()


GROUPS = dict(_groups())


def test_the_repository_has_the_queries_it_should() -> None:
    ids = [q.id for q in QUERIES]
    assert len(ids) == len(set(ids))
    assert len(rules()) >= 6
    assert len(hunting_queries()) >= 5
    assert len(workbook_queries()) >= 3


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_query_parses_and_binds_against_the_declared_schemas(
    checks: dict[str, QueryCheck], group: str
) -> None:
    results = [checks[query_id] for query_id in GROUPS[group]]

    clean = [r for r in results if not r.errors]

    assert clean, "\n".join(r.explain() for r in results)
    assert all(r.tabular and r.columns for r in clean)


def test_a_misspelled_column_is_caught(checks: dict[str, QueryCheck]) -> None:
    errors = checks[_BROKEN_COLUMN].errors

    assert [e.code for e in errors] == ["KS142"]
    assert "'AvMod'" in errors[0].message
    assert errors[0].where(checks[_BROKEN_COLUMN].query.text) == "1:26"


def test_an_unknown_table_is_caught(checks: dict[str, QueryCheck]) -> None:
    errors = checks[_BROKEN_TABLE].errors

    assert [e.code for e in errors] == ["KS204"]
    assert "MdeAvCoverge_CL" in errors[0].message


def test_a_defender_xdr_only_table_is_unknown_in_sentinel(checks: dict[str, QueryCheck]) -> None:
    assert checks[_TVM_IN_SENTINEL].errors


def test_a_misspelled_watchlist_column_is_caught(checks: dict[str, QueryCheck]) -> None:
    assert "'Valu'" in checks[_WATCHLIST_TYPO].errors[0].message


@pytest.mark.parametrize("mutant", [m.id for m in MUTANTS])
def test_a_rule_with_one_misspelled_column_fails(
    checks: dict[str, QueryCheck], mutant: str
) -> None:
    misspelled = mutant.rsplit(":", 1)[1] + "x"

    assert any(f"'{misspelled}'" in e.message for e in checks[mutant].errors)


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.id)
def test_av_mode_is_compared_with_numeric_codes_never_words(query: KqlQuery) -> None:
    assert not _WORD_COMPARISON.search(query.text), query.id


@pytest.mark.parametrize(
    "text",
    [
        'MdeAvCoverage_CL | where AvModeCode == "Passive"',
        "DeviceTvmInfoGathering | where tostring(AdditionalFields.AvMode) =~ 'passive'",
        'T | where AvMode in ("Active", "Passive")',
        'T | where AvModeCode has "EDR"',
    ],
)
def test_the_word_comparison_check_catches_words(text: str) -> None:
    assert _WORD_COMPARISON.search(text)


@pytest.mark.parametrize(
    "text",
    ['T | where AvModeCode == "1"', 'T | where AvModeCode in ("1", "4")', "T | where AvMode != 0"],
)
def test_the_word_comparison_check_accepts_codes(text: str) -> None:
    assert not _WORD_COMPARISON.search(text)


# --- analytics rule metadata: what the Azure-Sentinel template validator requires -------------

_DURATION = re.compile(r"^(\d+)([mhd])$")
_MINUTES = {"m": 1, "h": 60, "d": 1440}
_OPERATORS = {"gt", "lt", "eq", "ne"}
_SEVERITIES = {"Informational", "Low", "Medium", "High"}
_DETAIL_KEY = re.compile(r"^[a-zA-Z]+\w*$")


def _minutes(value: str) -> int:
    match = _DURATION.match(value)
    assert match, f"duration {value!r} is not like 5m, 1h or 1d"
    return int(match.group(1)) * _MINUTES[match.group(2)]


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.path.name)
def test_rule_metadata_follows_the_sentinel_template_schema(
    checks: dict[str, QueryCheck], rule: Content
) -> None:
    data = rule.data
    columns = checks[rule.label].columns

    assert str(uuid.UUID(str(data["id"]))) == data["id"]
    assert data["kind"] == "Scheduled"
    assert 0 < len(data["name"]) <= 256
    assert 0 < len(data["description"]) <= 5000
    assert data["severity"] in _SEVERITIES
    assert isinstance(data["requiredDataConnectors"], list)
    assert 1 <= len(data["query"]) <= 10_000
    frequency, period = _minutes(data["queryFrequency"]), _minutes(data["queryPeriod"])
    assert 5 <= frequency <= period <= 14 * 1440
    assert data["triggerOperator"] in _OPERATORS
    assert 0 <= data["triggerThreshold"] <= 10_000
    assert data["tactics"]
    assert data["relevantTechniques"]
    assert re.match(r"^\d+\.\d+\.\d+$", data["version"])

    mappings = data.get("entityMappings", [])
    assert len(mappings) <= 5
    for mapping in mappings:
        assert 1 <= len(mapping["fieldMappings"]) <= 3
        for field in mapping["fieldMappings"]:
            assert field["columnName"] in columns, field

    details = data.get("customDetails", {})
    assert len(details) <= 20
    for key, column in details.items():
        assert _DETAIL_KEY.match(key), key
        assert len(key) <= 20, key
        assert column in columns, column


def test_rule_ids_are_unique_across_rules_and_hunting_queries() -> None:
    ids = [c.data["id"] for c in rules() + hunting_queries()]

    assert len(ids) == len(set(ids))


def test_tables_a_connector_brings_are_declared_as_required() -> None:
    defender = set(defender_tables()[SENTINEL])
    for content in rules() + hunting_queries():
        if content.database != SENTINEL:
            continue
        read = {t for t in defender if re.search(rf"\b{t}\b", content.query)}
        declared = {
            data_type
            for connector in content.data["requiredDataConnectors"]
            for data_type in connector["dataTypes"]
        }
        assert read <= declared, content.label


def test_defender_xdr_only_hunting_queries_are_marked_and_kept_apart() -> None:
    xdr_only = set(defender_tables()[DEFENDER_XDR]) - set(defender_tables()[SENTINEL])
    marked = [h for h in hunting_queries() if h.database == DEFENDER_XDR]

    assert marked, "the DeviceTvmInfoGathering hunting query is missing"
    for query in marked:
        assert query.path.parent.name == "defender-xdr"
        assert "advanced hunting only" in query.data["name"].lower()
        assert any(re.search(rf"\b{t}\b", query.query) for t in xdr_only)
    for query in hunting_queries():
        if query.database == SENTINEL:
            assert query.path.parent.name != "defender-xdr"
