"""``python -m pipeline run --lab``, the README's main command, end to end in this process.

Each run starts its own lab tenant, local ingestion endpoint and in-memory Azurite, as the demo
does on a fresh machine.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from pipeline.cli import EXIT_OK, EXIT_USAGE, main
from pipeline.commands.run import STAGES
from pipeline.tables import COVERAGE

pytestmark = pytest.mark.integration

DEVICES = 400


def _received_rows(out: Path) -> list[dict[str, object]]:
    path = out / "lab" / "log-analytics" / f"{COVERAGE.stream_name}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_the_demo_command_runs_one_whole_dry_run_cycle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"

    status = main(["run", "--lab", "--devices", str(DEVICES), "--out", str(out)])

    printed = capsys.readouterr()
    assert status == EXIT_OK, printed.err
    assert "completed (dry run: no device was changed)" in printed.out
    for stage in STAGES:
        assert f"{stage}: done in" in printed.err, stage
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert len(evaluation["devices"]) == DEVICES
    assert evaluation["summary"]["devices"] == DEVICES
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert json.loads((out / "actions.json").read_text())["mode"] == "dry_run"
    assert json.loads((out / "cycle.json").read_text())["status"] == "completed"
    assert any((out / "blocklists").iterdir())
    rows = _received_rows(out)
    assert len(rows) == DEVICES
    assert len({r["DeviceId"] for r in rows}) == DEVICES


def test_shards_fan_the_lab_fleet_out_and_run_here(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"

    status = main(["run", "--lab", "--devices", str(DEVICES), "--shards", "3", "--out", str(out)])

    printed = capsys.readouterr()
    assert status == EXIT_OK, printed.err
    assert "fanned_out" in printed.out
    assert "fanned out into:          3 shards" in printed.out
    assert "3 shards run here" in printed.out
    assert printed.err.count("shards: shard ") == 3
    # Every device evaluated once, by the shards, and the cycle's report written all the same.
    rows = _received_rows(out)
    assert Counter(r["DeviceId"] for r in rows).most_common(1)[0][1] == 1
    assert len(rows) == DEVICES
    assert not (out / "evaluation.json").exists()
    assert (out / "report.html").exists()


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--lab", "--devices", "0"], "--devices must be between"),
        (["--lab", "--shards", "1"], "--shards needs --lab"),
        (["--shards", "3"], "--shards needs --lab"),
    ],
)
def test_bad_options_exit_2_saying_why(
    args: list[str], complaint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", *args, "--out", str(tmp_path)]) == EXIT_USAGE
    assert complaint in capsys.readouterr().err


def test_a_real_tenant_run_without_settings_names_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("LOGS_INGESTION_ENDPOINT", "LOGS_INGESTION_DCR_IMMUTABLE_ID"):
        monkeypatch.delenv(name, raising=False)

    assert main(["run", "--out", str(tmp_path)]) == EXIT_USAGE
    assert "LOGS_INGESTION_ENDPOINT" in capsys.readouterr().err
