"""Each analytics rule fires on its "fires" cases and stays quiet on the others.

The rule's own query text runs over the case rows in DuckDB through duckdb-kql; see
``tests/support/rule_cases.py`` for the case format.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.detections import CASES, rules
from tests.support.rule_cases import (
    CaseError,
    RuleCase,
    cases_path,
    load_cases,
    matches,
    run_case,
)

pytestmark = pytest.mark.integration

RULES = {rule.path.name: rule for rule in rules()}


def _all_cases() -> list[tuple[str, RuleCase]]:
    found = []
    for path in sorted(CASES.glob("*.cases.yaml")):
        loaded = load_cases(path)
        found += [(loaded.rule_path.name, case) for case in loaded.cases]
    return found


CASE_LIST = _all_cases()


@pytest.mark.parametrize("rule_name", sorted(RULES))
def test_every_rule_has_cases_that_fire_and_cases_that_do_not(rule_name: str) -> None:
    path = cases_path(RULES[rule_name].path)
    assert path.is_file(), f"{rule_name} has no {path.name}"

    loaded = load_cases(path)

    assert loaded.rule_path.name == rule_name
    assert any(case.fires for case in loaded.cases)
    assert any(not case.fires for case in loaded.cases)


@pytest.mark.parametrize(
    ("rule_name", "case"), CASE_LIST, ids=[f"{r}:{c.name[:60]}" for r, c in CASE_LIST]
)
def test_rule_behaves_as_its_case_says(rule_name: str, case: RuleCase) -> None:
    rule = RULES[rule_name]
    now = load_cases(cases_path(rule.path)).now

    rows = run_case(rule.query, case, now)

    if not case.fires:
        assert rows == []
        return
    assert rows, "the rule did not fire"
    if case.expect is not None:
        assert matches(rows, case.expect), rows


def test_a_loosened_rule_fails_its_must_not_fire_case() -> None:
    # The cases are only worth something if a wrong rule fails them: let mode code 0 (active)
    # through and the "active device" case must return a row.
    rule = RULES["passive-device-reached-blocked-resource.yaml"]
    loosened = rule.query.replace('in ("1", "2", "4", "5")', 'in ("0", "1", "2", "4", "5")')
    assert loosened != rule.query
    loaded = load_cases(cases_path(rule.path))
    active = next(c for c in loaded.cases if "active device" in c.name)

    assert run_case(loosened, active, loaded.now) != []


def test_expected_rows_are_compared_on_their_values() -> None:
    actual = [{"DeviceId": "d1", "Processes": '["b.exe","a.exe"]', "Other": 1}]

    assert matches(actual, [{"DeviceId": "d1", "Processes": ["a.exe", "b.exe"]}])
    assert not matches(actual, [{"DeviceId": "d2"}])
    assert not matches(actual + actual, [{"DeviceId": "d1"}])


def test_a_row_with_an_unknown_column_is_rejected_with_its_place(tmp_path: Path) -> None:
    case = RuleCase(
        name="typo",
        fires=True,
        tables={"MdeAvCoverage_CL": [{"TimeGenerated": "-1h", "AvModeCod": "1"}]},
    )
    rule = RULES["defender-av-disabled-on-onboarded-device.yaml"]
    now = load_cases(cases_path(rule.path)).now

    with pytest.raises(CaseError, match=r"typo: MdeAvCoverage_CL row 0.*AvModeCod"):
        run_case(rule.query, case, now)


def test_a_cases_file_without_now_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "x.cases.yaml"
    path.write_text("rule: x.yaml\ncases: []\n", encoding="utf-8")

    with pytest.raises(CaseError, match=r"x.cases.yaml: 'now'"):
        load_cases(path)
