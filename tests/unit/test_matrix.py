"""The capability matrix loads, covers every cell with a citation, and refuses bad data."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources

import pytest
import yaml

from pipeline.matrix import CAPABILITY_IDS, MatrixError, load_matrix, parse_matrix
from pipeline.model import Platform, State, Status

BUNDLED = resources.files("pipeline.matrix").joinpath("capabilities.yaml").read_text("utf-8")


def mutate(change: str) -> str:
    """Apply one edit to the bundled YAML (as data, so the test says what it breaks)."""
    data = yaml.safe_load(BUNDLED)
    exec(change, {"data": data})  # noqa: S102 - test-only edits of a dict
    return yaml.safe_dump(data, sort_keys=False)


def test_every_capability_state_and_platform_has_exactly_one_cited_cell() -> None:
    matrix = load_matrix()
    assert tuple(matrix.capabilities) == CAPABILITY_IDS
    for capability in matrix.capabilities.values():
        assert len(capability.cells) == len(State) * len(Platform)
        for cell in capability.cells.values():
            assert cell.source.startswith("https://learn.microsoft.com/")
            assert cell.reason.endswith((".", ")"))


def test_partial_cells_have_a_scope_and_conflicts_cite_both_sides() -> None:
    for capability in load_matrix().capabilities.values():
        for cell in capability.cells.values():
            if cell.status is Status.PARTIAL:
                assert cell.scope
            if cell.basis == "conflict":
                assert cell.status is Status.UNKNOWN
                assert cell.also, capability.id


def test_matrix_json_has_every_cell() -> None:
    document = load_matrix().to_json()
    for cap in CAPABILITY_IDS:
        cells = document["capabilities"][cap]["cells"]
        assert set(cells) == {s.value for s in State}
        for by_platform in cells.values():
            assert set(by_platform) == {p.value for p in Platform}
            for cell in by_platform.values():
                assert cell["verdict"] in {s.value for s in Status}
                assert cell["source"].startswith("https://")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            "data['capabilities']['asr_rules']['cells'][-1]['platforms'] = ['macos']",
            "no cell for active x linux",
        ),
        (
            "data['capabilities']['asr_rules']['cells'].insert(0, "
            "dict(data['capabilities']['asr_rules']['cells'][0]))",
            "already covered",
        ),
        ("data['capabilities']['asr_rules']['cells'][0]['colour'] = 'red'", "unknown keys"),
        ("del data['capabilities']['asr_rules']['cells'][0]['source']", "missing source"),
        ("data['capabilities']['asr_rules']['cells'][0]['source'] = 'blog'", "unknown source"),
        ("data['sources']['compatibility'] = 'https://example.com/x'", "learn.microsoft.com"),
        ("data['capabilities']['asr_rules']['cells'][0]['verdict'] = 'maybe'", "unknown verdict"),
        ("del data['capabilities']['tvm']", "capabilities missing: ['tvm']"),
        ("data['capabilities']['teleport'] = data['capabilities']['tvm']", "unknown capabilities"),
        (
            "data['capabilities']['asr_rules']['cells'][0]['requires'] = ['moon_phase']",
            "unknown requirement",
        ),
        (
            "data['capabilities']['pua_protection']['cells'][3]['requires'] = ['np_block']",
            "requirements only make sense",
        ),
        (
            "data['capabilities']['web_content_filtering']['cells'][2].pop('scope')",
            "partial verdict needs a scope",
        ),
        ("data['states']['hybrid'] = 'Smart App Control'", "states must be exactly"),
        ("data['capabilities']['asr_rules']['cells'][0]['states'] = ['sleepy']", "unknown state"),
    ],
)
def test_bad_matrix_data_is_refused_with_the_problem_named(change: str, expected: str) -> None:
    with pytest.raises(MatrixError) as caught:
        parse_matrix(mutate(change))
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


def test_not_yaml_at_all_is_a_matrix_error() -> None:
    with pytest.raises(MatrixError, match="not valid YAML"):
        parse_matrix("capabilities: [unclosed")


def test_matrix_command_prints_the_expanded_matrix() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "matrix", "--capability", "indicator_file"],
        capture_output=True,
        text=True,
        check=True,
    )
    document = json.loads(result.stdout)
    cell = document["capabilities"]["indicator_file"]["cells"]["passive"]["windows_client"]
    assert cell["verdict"] == "not_enforced"
    assert (
        cell["source"] == "https://learn.microsoft.com/en-us/defender-endpoint/indicators-overview"
    )


def test_matrix_command_names_an_unknown_capability() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "matrix", "--capability", "teleport"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown capability 'teleport'" in result.stderr
