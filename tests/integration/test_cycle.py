"""Whole cycles against the lab tenant, Azurite and the local Logs Ingestion endpoint."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.act.safety import ActionSettings
from pipeline.act.watchlist import WatchlistSettings
from pipeline.cycle import CycleError, CycleOptions, CycleResult, run_cycle
from pipeline.lab.azurite import AzuriteProcess
from pipeline.services import LAB_TENANT, LabEnvironment, lab_environment
from pipeline.sinks.audit import AuditKind, Index
from pipeline.sinks.lease import Lease
from pipeline.sources.auth import FixedTokenCredential
from pipeline.tables import COVERAGE
from tests.support.watchlist_server import TOKEN as WATCHLIST_TOKEN
from tests.support.watchlist_server import SentinelWatchlistsFake, serve

pytestmark = pytest.mark.integration

DEVICES = 300


@pytest.fixture
def storage() -> Iterator[AzuriteProcess]:
    with AzuriteProcess(persistent=True) as process:
        yield process


@pytest.fixture
def env(tmp_path: Path, storage: AzuriteProcess) -> Iterator[LabEnvironment]:
    with lab_environment(
        tmp_path / "lab",
        devices=DEVICES,
        seed=11,
        storage_connection_string=storage.connection_string,
        # Storage is stopped on purpose in one test: fail at once instead of retrying.
        storage_client_options={"retry_total": 0},
    ) as environment:
        yield environment


def options(out: Path, env: LabEnvironment, **overrides: object) -> CycleOptions:
    values: dict[str, object] = {
        "out_dir": out,
        "tenant": LAB_TENANT,
        "collector_dir": env.collector_dir,
        "holder": "test",
    }
    values.update(overrides)
    return CycleOptions(**values)  # type: ignore[arg-type]


def kinds(env: LabEnvironment, result: CycleResult) -> list[str]:
    events = env.services.audit.iter_events(Index.CYCLE, result.cycle_id)
    return [event.kind for event in events]


def test_a_cycle_collects_evaluates_ingests_publishes_and_audits(
    tmp_path: Path, env: LabEnvironment
) -> None:
    result = run_cycle(env.services, options(tmp_path / "out", env))

    assert result.status == "completed", result.errors
    evaluation = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert evaluation["summary"]["devices"] == DEVICES == result.counts["devices"]

    # Every evaluated device arrived at the ingestion endpoint, once, as a valid coverage row.
    received = env.ingestion.accepted_rows(COVERAGE.stream_name)
    assert len(received) == DEVICES == result.counts["rows_sent"]
    assert {r["DeviceId"] for r in received} == {d["device_id"] for d in evaluation["devices"]}
    assert all(set(r) <= set(COVERAGE.column_names) for r in received)
    passive = next(r for r in received if r["AvState"] == "passive")
    assert passive["AvModeCode"] == "1"
    assert "network_protection" in passive["Gaps"]

    block_list = (tmp_path / "out" / "blocklists" / "block-squid-domains.txt").read_text()
    assert ".mega.nz" in block_list or "mega.nz" in block_list

    recorded = kinds(env, result)
    assert recorded.count(AuditKind.CYCLE_STARTED) == 1
    assert recorded.count(AuditKind.CYCLE_FINISHED) == 1
    assert AuditKind.BLOCKLIST_PUBLISHED in recorded
    cycle_file = json.loads((tmp_path / "out" / "cycle.json").read_text())
    assert cycle_file["status"] == "completed"

    report = (tmp_path / "out" / "report.html").read_text()
    gaps = evaluation["summary"]["devices_with_gaps"]
    assert f'data-metric="devices-with-gaps" data-value="{gaps}"' in report


def test_a_second_cycle_publishes_nothing_new_and_sees_no_mode_change(
    tmp_path: Path, env: LabEnvironment
) -> None:
    first = run_cycle(env.services, options(tmp_path / "one", env))
    second = run_cycle(env.services, options(tmp_path / "two", env))

    assert first.counts["blocklists_changed"] > 0
    assert second.counts["blocklists_changed"] == 0
    assert second.counts["mode_changes"] == 0
    assert AuditKind.BLOCKLIST_PUBLISHED not in kinds(env, second)


def test_ingestion_partly_failing_dead_letters_and_audits_without_losing_rows(
    tmp_path: Path, env: LabEnvironment
) -> None:
    # Refuse every request that carries a row of one particular device.
    victim = env.lab.fleet.device(7).machine_id
    env.ingestion.reject_rows_containing(victim)

    result = run_cycle(env.services, options(tmp_path / "out", env))

    assert result.status == "completed_with_errors"
    sent, dead = result.counts["rows_sent"], result.counts["rows_dead_lettered"]
    assert dead >= 1
    assert sent + dead == DEVICES  # nothing silently lost
    received = {r["DeviceId"] for r in env.ingestion.accepted_rows(COVERAGE.stream_name)}
    assert victim not in received
    assert AuditKind.BATCH_DEAD_LETTERED in kinds(env, result)


def test_storage_stopping_mid_cycle_fails_loudly_and_a_rerun_repeats_no_action(
    tmp_path: Path, env: LabEnvironment, storage: AzuriteProcess
) -> None:
    group = env.lab.config.edr_block_group_id
    live = ActionSettings(
        actions_enabled=True, edr_block_group_id=group, max_devices=1000, max_percent=100
    )

    def stop_storage_after_acting(stage: str, message: str) -> None:
        if stage == "blocklists" and message == "started":
            storage.stop()

    with pytest.raises(CycleError, match=r"failed: stage blocklists"):
        run_cycle(
            env.services,
            options(tmp_path / "one", env, actions=live, progress=stop_storage_after_acting),
        )
    failed = json.loads((tmp_path / "one" / "cycle.json").read_text())
    assert failed["status"] == "failed"
    members = env.lab.group_members(group)
    assert members, "the failed cycle had already acted before storage went away"
    adds_before = _group_adds(env)

    storage.start()
    # The failed cycle could not release its lease; it would lapse within a minute. Breaking it
    # stands in for that wait.
    env.services.lease.break_lease()
    rerun = run_cycle(env.services, options(tmp_path / "two", env, actions=live))

    assert rerun.status == "completed", rerun.errors
    assert rerun.counts["rows_sent"] == DEVICES
    # Nothing that already took effect is done again: no new group additions, no duplicates.
    assert _group_adds(env) == adds_before
    assert sorted(env.lab.group_members(group)) == sorted(set(members))
    assert rerun.counts["actions_planned"] == 0
    finished = [
        e.details["status"]
        for e in env.services.audit.iter_events(Index.CYCLE, rerun.cycle_id)
        if e.kind == AuditKind.CYCLE_FINISHED
    ]
    assert finished == ["completed"]


def _group_adds(env: LabEnvironment) -> int:
    return sum(1 for r in env.lab.requests if r.method == "POST" and r.path.endswith("/$ref"))


def test_two_cycles_at_once_one_stands_down(tmp_path: Path, env: LabEnvironment) -> None:
    other = env.services.lease.acquire("another-host/cycle")
    assert isinstance(other, Lease)
    try:
        result = run_cycle(env.services, options(tmp_path / "out", env))
    finally:
        other.release()

    assert result.status == "stood_down"
    assert "another-host/cycle" in result.errors[0]
    assert not (tmp_path / "out" / "evaluation.json").exists()
    assert env.ingestion.accepted_rows(COVERAGE.stream_name) == []


def test_the_cycle_publishes_the_sentinel_watchlist_once_per_change(
    tmp_path: Path, env: LabEnvironment
) -> None:
    fake = SentinelWatchlistsFake()
    workspace = (
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-sec/providers/"
        "Microsoft.OperationalInsights/workspaces/law-sec"
    )
    with serve(fake) as base_url:
        env.services.management_credential = FixedTokenCredential(WATCHLIST_TOKEN)
        settings = WatchlistSettings(workspace_resource_id=workspace, management_url=base_url)

        first = run_cycle(env.services, options(tmp_path / "one", env, watchlist=settings))
        second = run_cycle(env.services, options(tmp_path / "two", env, watchlist=settings))

    rows = fake.rows(workspace, settings.alias)
    assert first.counts["watchlist_rows"] == len(rows) > 0
    assert any(row["Value"] == "mega.nz" and row["Type"] == "domain" for row in rows)
    assert "watchlist_rows" not in second.counts  # unchanged: nothing sent again
    assert len(fake.calls("PUT")) == 1
