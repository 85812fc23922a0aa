"""Fan-out: a cycle over a fleet above the threshold queues shards; each shard evaluates its part.

Real services throughout: the lab tenant, a private Azurite (blobs, queue, tables) and the local
Logs Ingestion endpoint. Shard messages are taken from the real queue and run both through
``pipeline.fanout.run_shard`` and through the function app's ``fanout_shard`` function with a
``func.QueueMessage``, as the host would deliver them.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.data.tables import TableServiceClient

from pipeline import app_entry
from pipeline.act.safety import ActionSettings
from pipeline.config import FanoutSettings
from pipeline.coverage_store import CoverageStore, CoverageStoreError
from pipeline.cycle import CycleOptions, CycleResult, run_cycle
from pipeline.fanout import SHARD_FINISHED, SHARD_STARTED, ShardError, run_shard
from pipeline.inputs import read_files
from pipeline.services import LAB_TENANT, LabEnvironment
from pipeline.sharding import LATEST_SNAPSHOT, shard_of, snapshot_blob
from pipeline.sinks.audit import AuditEvent, AuditKind, Index
from pipeline.tables import COVERAGE
from tests.support.fanout import DEVICES, app_settings, fanout_lab, take_messages
from tests.support.functions_host import index_app

pytestmark = pytest.mark.integration

__all__ = ["fanout_lab"]  # fixture used by name below

APP = Path(__file__).resolve().parents[2] / "function_app.py"
SMALL_SHARDS = FanoutSettings(threshold_devices=100, shard_devices=120)


@pytest.fixture(scope="module")
def functions() -> dict[str, Callable[..., Any]]:
    indexed, _metadata = index_app(APP)
    return {f.get_function_name(): f.get_user_function() for f in indexed}


@pytest.fixture
def app_env(fanout_lab: LabEnvironment, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = app_settings(fanout_lab)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def cycle(
    env: LabEnvironment,
    out: Path,
    fanout: FanoutSettings = SMALL_SHARDS,
    actions: ActionSettings | None = None,
) -> CycleResult:
    options = CycleOptions(
        out_dir=out,
        tenant=LAB_TENANT,
        collector_dir=env.collector_dir,
        holder="test",
        fanout=fanout,
        actions=actions or ActionSettings(),
    )
    return run_cycle(env.services, options)


def events(env: LabEnvironment, cycle_id: str, kind: str | None = None) -> list[AuditEvent]:
    return list(env.services.audit.iter_events(Index.CYCLE, cycle_id, kind=kind))


def coverage_rows(env: LabEnvironment) -> list[dict[str, Any]]:
    return env.ingestion.accepted_rows(COVERAGE.stream_name)


def snapshot_device_ids(out: Path) -> set[str]:
    """Every device the cycle's snapshot describes, merged over its sources as a cycle does."""
    return {facts.device_id for facts in read_files([out / "snapshot.json"]).devices}


# -- the orchestrating cycle ---------------------------------------------------------------------


def test_a_cycle_under_the_threshold_keeps_its_snapshot_and_evaluates_itself(
    tmp_path: Path, fanout_lab: LabEnvironment
) -> None:
    result = cycle(fanout_lab, tmp_path / "out", FanoutSettings(threshold_devices=10 * DEVICES))

    assert result.status == "completed", result.errors
    assert "shards" not in result.counts
    assert take_messages(fanout_lab) == []
    assert len(coverage_rows(fanout_lab)) == DEVICES

    state = fanout_lab.services.state
    pointer = state.get_document(LATEST_SNAPSHOT)
    assert pointer["cycleId"] == result.cycle_id
    assert pointer["blob"] == snapshot_blob(result.cycle_id)
    copy = tmp_path / "copy.json"
    metadata = state.get_file(pointer["blob"], copy)
    assert metadata is not None
    assert metadata["cycle_id"] == result.cycle_id
    assert copy.read_bytes() == (tmp_path / "out" / "snapshot.json").read_bytes()


def test_a_large_fleet_is_fanned_out_and_every_device_is_evaluated_once(
    tmp_path: Path,
    fanout_lab: LabEnvironment,
    app_env: dict[str, str],
    functions: dict[str, Callable[..., Any]],
) -> None:
    result = cycle(fanout_lab, tmp_path / "out")

    # The cycle queued its shards, published the lists, and evaluated nothing itself.
    assert result.status == "fanned_out", result.errors
    messages = take_messages(fanout_lab)
    shards = result.counts["shards"]
    assert shards == len(messages) >= 3
    assert coverage_rows(fanout_lab) == []
    assert not (tmp_path / "out" / "evaluation.json").exists()
    finished = events(fanout_lab, result.cycle_id, AuditKind.CYCLE_FINISHED)
    assert [e.details["status"] for e in finished] == ["fanned_out"]
    assert finished[0].details["counts"]["shards"] == shards
    assert events(fanout_lab, result.cycle_id, AuditKind.BLOCKLIST_PUBLISHED)

    # Half the shards through run_shard, the rest as the host delivers them to the function.
    outcomes = []
    for text in messages[: shards // 2]:
        message = app_entry.parse_fanout_message(text)
        assert message.cycle_id == result.cycle_id
        outcomes.append(run_shard(fanout_lab.settings, message))
    for number, text in enumerate(messages[shards // 2 :]):
        functions["fanout_shard"](func.QueueMessage(id=f"m{number}", body=text.encode()))

    rows = coverage_rows(fanout_lab)
    per_device = Counter(row["DeviceId"] for row in rows)
    expected = snapshot_device_ids(tmp_path / "out")
    assert set(per_device) == expected
    assert len(expected) == result.counts["devices"]
    assert set(per_device.values()) == {1}, "a device was evaluated by two shards"
    assert {row["CycleId"] for row in rows} == {result.cycle_id}
    assert len({row["TimeGenerated"] for row in rows}) == 1  # the cycle's collection time
    assert all(o.status == "completed" for o in outcomes)

    shard_ends = events(fanout_lab, result.cycle_id, SHARD_FINISHED)
    assert sorted(e.details["shard"] for e in shard_ends) == list(range(shards))
    assert sum(e.details["counts"]["devices"] for e in shard_ends) == len(expected)
    assert len(events(fanout_lab, result.cycle_id, SHARD_STARTED)) == shards

    device = next(iter(expected))
    tables = TableServiceClient.from_connection_string(fanout_lab.storage_connection_string)
    stored = CoverageStore(tables.get_table_client(fanout_lab.settings.coverage_table)).get(device)
    assert stored is not None
    assert stored["CycleId"] == result.cycle_id


def _planned(out: Path) -> dict[str, Any]:
    document = json.loads((out / "actions.json").read_text())
    the_plan = document["plan"]
    return {
        "executable": sorted(a["device_id"] for a in the_plan["executable"]),
        "awaiting_approval": sorted(a["device_id"] for a in the_plan["awaiting_approval"]),
        "skipped": sorted((s["device_id"], s["reason"]) for s in the_plan["skipped"]),
        "fleet_size": the_plan["fleet_size"],
        "cap": the_plan["cap"],
        "plan_id": the_plan["plan_id"],
    }


def test_a_fanned_out_cycle_plans_edr_block_mode_over_the_whole_fleet(
    tmp_path: Path, fanout_lab: LabEnvironment
) -> None:
    fanned = cycle(fanout_lab, tmp_path / "fanned")
    whole = cycle(fanout_lab, tmp_path / "whole", FanoutSettings(threshold_devices=10 * DEVICES))

    assert whole.status == "completed", whole.errors
    assert fanned.status == "fanned_out", fanned.errors
    # The same decision as a cycle that evaluates every device itself: same devices, same caps.
    expected = _planned(tmp_path / "whole")
    assert _planned(tmp_path / "fanned") == expected
    assert expected["executable"] or expected["awaiting_approval"]
    assert expected["skipped"]
    assert expected["fleet_size"] == fanned.counts["devices"]
    for key in ("actions_planned", "actions_awaiting_approval", "actions_dry_run"):
        assert fanned.counts.get(key) == whole.counts.get(key), key
    assert fanned.durations.keys() >= {"plan", "act", "fan-out"}
    # Dry-run: the decision is audited (a plan over the caps once, under its id), nothing done.
    assert events(fanout_lab, fanned.cycle_id, AuditKind.ACTION_PLANNED)
    assert fanout_lab.lab.group_members(fanout_lab.lab.config.edr_block_group_id) == []


# Every count the report carries in an attribute, with the attributes that say what it counts.
_COUNTED = re.compile(
    r"<[a-z]+ [^>]*data-(?:count|gap-count|silent-count|unknown-count|mode-total|platform-total"
    r"|device-id|metric)=[^>]*>"
)
_CYCLE_ONLY = ("dry-run", "inconsistencies", "ingestion-")


def _report_counts(out: Path) -> list[str]:
    html = (out / "report.html").read_text(encoding="utf-8")
    return [
        tag
        for tag in _COUNTED.findall(html)
        if not any(f'data-metric="{name}' in tag for name in _CYCLE_ONLY)
    ]


def test_a_fanned_out_cycle_writes_the_report_a_whole_cycle_would(
    tmp_path: Path, fanout_lab: LabEnvironment
) -> None:
    fanned = cycle(fanout_lab, tmp_path / "fanned")
    assert coverage_rows(fanout_lab) == []  # the report is rendered without sending a row
    whole = cycle(fanout_lab, tmp_path / "whole", FanoutSettings(threshold_devices=10 * DEVICES))

    assert fanned.status == "fanned_out", fanned.errors
    assert "report" in fanned.durations
    counts = _report_counts(tmp_path / "fanned")
    # The same modes, heatmap, gaps, findings and silent-gap devices, number for number.
    assert counts == _report_counts(tmp_path / "whole")
    assert f'data-metric="devices" data-value="{DEVICES}"' in " ".join(counts)
    html = (tmp_path / "fanned" / "report.html").read_text(encoding="utf-8")
    assert 'data-metric="inconsistencies"' not in html  # its summary agrees with its devices
    assert "fan-out shards, which send the MdeAvCoverage_CL rows" in html
    assert whole.status == "completed", whole.errors


def test_a_live_fanned_out_cycle_acts_once_and_the_next_one_verifies(
    tmp_path: Path, fanout_lab: LabEnvironment
) -> None:
    group = fanout_lab.lab.config.edr_block_group_id
    live = ActionSettings(
        actions_enabled=True, edr_block_group_id=group, max_devices=1000, max_percent=100
    )

    first = cycle(fanout_lab, tmp_path / "one", actions=live)

    assert first.status == "fanned_out", first.errors
    added = _planned(tmp_path / "one")["executable"]
    assert added
    assert first.counts["actions_added"] == len(added)
    members = fanout_lab.lab.group_members(group)
    assert len(members) == len(added)
    assert len(events(fanout_lab, first.cycle_id, AuditKind.ACTION_EXECUTED)) == len(added)

    second = cycle(fanout_lab, tmp_path / "two", actions=live)

    # The lab's devices stay passive: nothing is planned again, and the actions are pending.
    assert second.status == "fanned_out", second.errors
    assert second.counts["actions_planned"] == 0
    verification = json.loads((tmp_path / "two" / "actions.json").read_text())["verification"]
    assert sorted(verification["pending"]) == added
    assert sorted(fanout_lab.lab.group_members(group)) == sorted(members)


def test_an_action_that_did_not_take_effect_reaches_the_shards_rows(
    tmp_path: Path, fanout_lab: LabEnvironment
) -> None:
    group = fanout_lab.lab.config.edr_block_group_id
    live = ActionSettings(
        actions_enabled=True,
        edr_block_group_id=group,
        max_devices=1000,
        max_percent=100,
        verify_after_hours=0.0001,  # the lab's devices stay passive: overdue at once
    )
    first = cycle(fanout_lab, tmp_path / "one", actions=live)
    added = set(_planned(tmp_path / "one")["executable"])
    take_messages(fanout_lab)  # the first cycle's shards are not the point here

    second = cycle(fanout_lab, tmp_path / "two", actions=live)
    for text in take_messages(fanout_lab):
        run_shard(fanout_lab.settings, app_entry.parse_fanout_message(text))

    assert first.status == second.status == "fanned_out"
    assert second.counts["actions_not_effective"] == len(added) > 0
    flagged = {
        row["DeviceId"]
        for row in coverage_rows(fanout_lab)
        if row["CycleId"] == second.cycle_id
        and "EDR_BLOCK_ACTION_NOT_EFFECTIVE" in row["FindingCodes"]
    }
    assert flagged == added
    rows = [r for r in coverage_rows(fanout_lab) if r["CycleId"] == second.cycle_id]
    assert len(rows) == second.counts["devices"]  # every device once, flagged or not


def test_redelivering_a_shard_message_repeats_nothing(
    tmp_path: Path, fanout_lab: LabEnvironment
) -> None:
    result = cycle(fanout_lab, tmp_path / "out")
    first, *_ = take_messages(fanout_lab)
    message = app_entry.parse_fanout_message(first)

    once = run_shard(fanout_lab.settings, message)
    rows_after_once = len(coverage_rows(fanout_lab))
    audit_after_once = [e.event_id for e in events(fanout_lab, result.cycle_id)]
    again = run_shard(fanout_lab.settings, message)

    assert once.status == "completed"
    assert once.counts["devices"] == rows_after_once > 0
    assert again.status == "already_done"
    assert len(coverage_rows(fanout_lab)) == rows_after_once
    assert [e.event_id for e in events(fanout_lab, result.cycle_id)] == audit_after_once


def test_a_shard_that_stopped_part_way_finishes_on_redelivery_with_one_start_event(
    tmp_path: Path, fanout_lab: LabEnvironment
) -> None:
    result = cycle(fanout_lab, tmp_path / "out")
    first, *_ = take_messages(fanout_lab)
    message = app_entry.parse_fanout_message(first)

    # The first delivery stops after uploading its rows: its coverage table cannot be written.
    unwritable = dataclasses.replace(fanout_lab.settings, coverage_table="x")
    with pytest.raises(CoverageStoreError, match="could not"):
        run_shard(unwritable, message, storage_client_options={"retry_total": 0})
    sent_once = Counter(row["RowId"] for row in coverage_rows(fanout_lab))
    assert sent_once
    assert events(fanout_lab, result.cycle_id, SHARD_FINISHED) == []

    redelivered = run_shard(fanout_lab.settings, message)

    assert redelivered.status == "completed"
    assert len(events(fanout_lab, result.cycle_id, SHARD_STARTED)) == 1
    assert len(events(fanout_lab, result.cycle_id, SHARD_FINISHED)) == 1
    # The rows were sent again, as the same rows: KQL keeps one per RowId.
    sent_twice = Counter(row["RowId"] for row in coverage_rows(fanout_lab))
    assert set(sent_twice) == set(sent_once)
    assert set(sent_twice.values()) == {2}


def test_ingestion_refusing_part_of_a_shard_dead_letters_it_and_says_so(
    tmp_path: Path, fanout_lab: LabEnvironment
) -> None:
    result = cycle(fanout_lab, tmp_path / "out")
    first, *_ = take_messages(fanout_lab)
    message = app_entry.parse_fanout_message(first)
    victim = next(
        device_id
        for device_id in sorted(snapshot_device_ids(tmp_path / "out"))
        if shard_of(device_id, message.shards) == message.shard
    )
    fanout_lab.ingestion.reject_rows_containing(victim)

    outcome = run_shard(fanout_lab.settings, message)

    assert outcome.status == "completed_with_errors"
    assert outcome.counts["rows_dead_lettered"] >= 1
    assert (
        outcome.counts["rows_sent"] + outcome.counts["rows_dead_lettered"]
        == (outcome.counts["devices"])
    )
    assert victim not in {row["DeviceId"] for row in coverage_rows(fanout_lab)}
    dead = events(fanout_lab, result.cycle_id, AuditKind.BATCH_DEAD_LETTERED)
    assert [e.details["shard"] for e in dead] == [message.shard]


# -- messages that cannot be run -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"not json", "not JSON"),
        (b'["all"]', "not a JSON object"),
        (b'{"shard": 0, "shards": 2}', '"all": true'),
        (b'{"all": true, "shard": 2, "shards": 2}', "0 <= shard < shards"),
        (b'{"all": true, "cycleId": "../other"}', "cycleId"),
    ],
)
def test_a_malformed_message_is_refused_naming_the_field(
    functions: dict[str, Callable[..., Any]], body: bytes, complaint: str
) -> None:
    # Refused before any setting is read or any service is reached.
    with pytest.raises(app_entry.MessageError, match=complaint.replace("(", r"\(")):
        functions["fanout_shard"](func.QueueMessage(id="bad", body=body))


def test_a_message_naming_a_cycle_without_a_snapshot_fails_naming_it(
    functions: dict[str, Callable[..., Any]], app_env: dict[str, str]
) -> None:
    body = b'{"all": true, "cycleId": "20260101T000000Z-deadbeef"}'

    with pytest.raises(ShardError, match=r"cycle 20260101T000000Z-deadbeef .* not stored"):
        functions["fanout_shard"](func.QueueMessage(id="gone", body=body))


# -- re-evaluation over HTTP ---------------------------------------------------------------------


def test_re_evaluating_one_device_over_http_goes_through_the_queue_to_a_shard(
    tmp_path: Path,
    fanout_lab: LabEnvironment,
    app_env: dict[str, str],
    functions: dict[str, Callable[..., Any]],
) -> None:
    result = cycle(fanout_lab, tmp_path / "out", FanoutSettings(threshold_devices=0))
    device = sorted(snapshot_device_ids(tmp_path / "out"))[0]
    before = [r for r in coverage_rows(fanout_lab) if r["DeviceId"] == device]

    for body in ({"deviceId": device}, {"deviceId": "not-in-the-fleet"}):
        request = func.HttpRequest(
            "POST", "http://localhost/api/evaluate", body=json.dumps(body).encode()
        )
        assert functions["post_evaluate"](request).status_code == 202
    one, unknown = take_messages(fanout_lab)

    done = app_entry.run_fanout_message(one.encode())
    missing = app_entry.run_fanout_message(unknown.encode())

    after = [r for r in coverage_rows(fanout_lab) if r["DeviceId"] == device]
    assert len(after) == len(before) + 1
    assert after[-1]["CycleId"] == result.cycle_id  # the newest snapshot's cycle
    assert after[-1]["RowId"] == before[0]["RowId"]  # the same row, de-duplicated in KQL
    assert (done.status, done.counts["devices"]) == ("completed", 1)
    assert missing.status == "completed_with_errors"
    assert missing.counts["devices_not_in_snapshot"] == 1
    assert "not-in-the-fleet" in missing.errors[0]
