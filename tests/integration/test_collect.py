"""Collection from the lab tenant through the real clients: paging, faults, limits, tokens."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import main
from pipeline.sources.collect import CollectionResult, collect_snapshot
from pipeline.sources.collector_doc import validate_collector_document
from pipeline.sources.graph import GraphClient
from pipeline.sources.mde import MdeClient
from tests.support.lab import LabTenant, running_lab

pytestmark = pytest.mark.integration

DEVICES = 1_200


@pytest.fixture
def lab() -> Iterator[LabTenant]:
    with running_lab(DEVICES) as tenant:
        yield tenant


def _collect(
    lab: LabTenant, out: Path, collector_dir: Path | None = None, **options: Any
) -> tuple[CollectionResult, dict[str, Any], MdeClient, GraphClient]:
    mde, graph = lab.clients(**options)
    try:
        result = collect_snapshot(
            out,
            mde,
            graph,
            collector_dir=collector_dir,
            hunting_row_cap=lab.server.config.hunting_max_rows,
        )
    finally:
        mde.api.close()
        graph.api.close()
    return result, json.loads(out.read_text(encoding="utf-8")), mde, graph


def _ids(records: list[dict[str, Any]]) -> Counter[str]:
    return Counter(record["id"] for record in records)


def test_full_collection_pages_through_every_source(lab: LabTenant, tmp_path: Path) -> None:
    result, snapshot, mde, _ = _collect(
        lab, tmp_path / "s.json", deviceavinfo_page_size=100, list_page_size=500
    )

    machines = DEVICES + lab.server.fleet.discovered
    assert snapshot["counts"] == {
        "deviceavinfo": DEVICES,
        "machines": machines,
        "tvmInfoGathering": DEVICES,
        "indicators": len(lab.server.indicators),
        "collectorDocuments": 0,
    }
    assert snapshot["errors"] == []
    assert not result.failed
    assert max(_ids(snapshot["deviceavinfo"]).values()) == 1
    assert max(_ids(snapshot["machines"]).values()) == 1
    assert snapshot["deviceavinfo"][7] == lab.server.fleet.deviceavinfo_record(7)
    # deviceavinfo pages by nextLink (12 pages); machines have none, so $skip: 3 pages of 500.
    assert mde.api.calls["deviceavinfo"] == 12
    assert mde.api.calls["machines"] == 3
    assert snapshot["endpoints"] == {"mde": lab.server.mde_url, "graph": lab.server.graph_url}


def test_client_budget_keeps_under_thirty_calls_a_minute(lab: LabTenant, tmp_path: Path) -> None:
    _, snapshot, mde, _ = _collect(lab, tmp_path / "s.json", deviceavinfo_page_size=20)

    statuses = Counter(r.status for r in lab.server.requests if r.endpoint == "deviceavinfo")
    assert snapshot["counts"]["deviceavinfo"] == DEVICES
    assert statuses == {200: 60}  # 60 pages, never a 429: the client waited instead
    assert mde.api.budget("deviceavinfo").waited == pytest.approx(60.0)


@pytest.mark.parametrize(
    ("fault", "options"),
    [
        ("throttle", {"retry_after": 42}),
        ("error", {"status": 500}),
        ("error", {"status": 503, "times": 2}),
        ("truncate", {"fraction": 0.5}),
        ("disconnect", {"fraction": 0.4}),
        ("slow", {"delay": 1.0}),
    ],
)
def test_transient_faults_are_retried_without_losing_or_duplicating_records(
    lab: LabTenant, tmp_path: Path, fault: str, options: dict[str, Any]
) -> None:
    lab.fault(fault, "/api/deviceavinfo", skip=1, **options)

    _result, snapshot, mde, _ = _collect(
        lab, tmp_path / "s.json", deviceavinfo_page_size=400, timeout=0.4
    )

    assert snapshot["errors"] == []
    assert snapshot["counts"]["deviceavinfo"] == DEVICES
    assert list(_ids(snapshot["deviceavinfo"])) == [
        lab.server.fleet.device(i).machine_id for i in range(DEVICES)
    ]
    assert mde.api.retries["deviceavinfo"] >= 1
    if fault == "throttle":
        assert 42.0 in lab.clock.sleeps


def test_truncated_hunting_answer_is_fetched_again(lab: LabTenant, tmp_path: Path) -> None:
    lab.fault("truncate", "/v1.0/security/runHuntingQuery")

    _, snapshot, _, graph = _collect(lab, tmp_path / "s.json")

    assert snapshot["counts"]["tvmInfoGathering"] == DEVICES
    assert snapshot["errors"] == []
    assert graph.api.calls["hunting"] == 2


def _hunting_queries(lab: LabTenant) -> int:
    return sum(1 for r in lab.server.requests if r.endpoint == "hunting")


def test_hunting_answer_at_the_row_cap_is_asked_again_in_device_id_parts(tmp_path: Path) -> None:
    # 1,200 devices against a 300-row cap: the first answer is cut, seventeen parts are not.
    with running_lab(DEVICES, hunting_max_rows=300) as lab:
        result, snapshot, _, graph = _collect(lab, tmp_path / "s.json")

        rows = snapshot["tvmInfoGathering"]
        assert snapshot["errors"] == []
        assert not result.failed
        assert Counter(r["DeviceId"] for r in rows) == Counter(
            lab.server.fleet.device(i).machine_id for i in range(DEVICES)
        )
        assert graph.api.calls["hunting"] == _hunting_queries(lab) == 1 + 17


def test_progress_counts_the_rows_of_each_part_as_they_arrive(tmp_path: Path) -> None:
    seen: list[int] = []
    with running_lab(DEVICES, hunting_max_rows=300) as lab:
        mde, graph = lab.clients()
        try:
            collect_snapshot(
                tmp_path / "s.json",
                mde,
                graph,
                progress=lambda source, count: (
                    seen.append(count) if source == "tvmInfoGathering" else None
                ),
                hunting_row_cap=300,
            )
        finally:
            mde.api.close()
            graph.api.close()

    # One report per part (seventeen), rising to the fleet, and the final one.
    assert len(seen) == 17 + 1
    assert seen == sorted(seen)
    assert seen[0] > 0
    assert seen[-2] == seen[-1] == DEVICES


def test_a_part_still_at_the_cap_is_split_once_more(tmp_path: Path) -> None:
    # About 75 devices per one-digit prefix against a 40-row cap: every such part is split again.
    with running_lab(DEVICES, hunting_max_rows=40) as lab:
        _, snapshot, _, _ = _collect(lab, tmp_path / "s.json")

        ids = [r["DeviceId"] for r in snapshot["tvmInfoGathering"]]
        assert snapshot["errors"] == []
        assert sorted(ids) == sorted(lab.server.fleet.device(i).machine_id for i in range(DEVICES))
        assert _hunting_queries(lab) == 1 + 17 + 16 * 17


def test_a_part_at_the_cap_that_cannot_be_split_is_reported_not_dropped(tmp_path: Path) -> None:
    # Two-digit prefixes hold about five devices each; a 3-row cap cuts most of them.
    with running_lab(DEVICES, hunting_max_rows=3) as lab:
        result, snapshot, _, _ = _collect(lab, tmp_path / "s.json")

        cut = [e for e in snapshot["errors"] if e["code"] == "ResultMayBeTruncated"]
        assert result.failed
        assert cut
        assert len(cut) == len(snapshot["errors"])
        assert all(e["source"] == "tvmInfoGathering" for e in cut)
        assert all("DeviceId " in e["message"] for e in cut)
        rows = snapshot["tvmInfoGathering"]
        assert len(rows) == len({r["DeviceId"] for r in rows}) < DEVICES
        # Every part still answered, capped: 256 parts of at most 3 rows plus the rest parts.
        assert len(rows) > 256


def test_an_answer_over_the_size_limit_is_asked_again_in_parts(tmp_path: Path) -> None:
    # About 600 bytes a row: 1,200 devices are over 200 KB, a one-digit part (~75) is not.
    with running_lab(DEVICES, hunting_max_bytes=200_000) as lab:
        result, snapshot, _, _ = _collect(lab, tmp_path / "s.json")

        assert snapshot["errors"] == []
        assert not result.failed
        assert snapshot["counts"]["tvmInfoGathering"] == DEVICES
        statuses = [r.status for r in lab.server.requests if r.endpoint == "hunting"]
        assert statuses == [400] + [200] * 17  # refused once, never retried as it was


def test_parts_still_over_the_size_limit_are_reported_with_microsofts_words(
    tmp_path: Path,
) -> None:
    with running_lab(DEVICES, hunting_max_bytes=100) as lab:  # no row fits
        result, snapshot, _, _ = _collect(lab, tmp_path / "s.json")

        errors = snapshot["errors"]
        assert result.failed
        assert snapshot["counts"]["tvmInfoGathering"] == 0
        # Every two-digit part that holds a device, each named; the empty ones answered.
        assert {e["status"] for e in errors} == {400}
        assert all("exceeded the allowed result size" in e["message"] for e in errors)
        assert all(re.search(r"\(DeviceId [0-9a-f]{2}…\)$", e["message"]) for e in errors)
        assert len(errors) == len({r["DeviceId"][:2] for r in _all_tvm_rows(lab)})


def _all_tvm_rows(lab: LabTenant) -> list[dict[str, Any]]:
    return [lab.server.fleet.tvm_row(i) for i in range(DEVICES)]


def test_a_failing_part_is_reported_by_its_prefix_and_the_others_kept(tmp_path: Path) -> None:
    with running_lab(DEVICES, hunting_max_rows=300) as lab:
        # The first (whole) answer is cut by the cap; part "0" then fails all four attempts.
        lab.fault("error", "/v1.0/security/runHuntingQuery", skip=1, times=4)

        _, snapshot, _, _ = _collect(lab, tmp_path / "s.json")

        [error] = snapshot["errors"]
        assert error["source"] == "tvmInfoGathering"
        assert error["status"] == 500
        assert error["message"].endswith("(DeviceId 0…)")
        missing = {
            lab.server.fleet.device(i).machine_id
            for i in range(DEVICES)
            if lab.server.fleet.device(i).machine_id.startswith("0")
        }
        got = {r["DeviceId"] for r in snapshot["tvmInfoGathering"]}
        assert missing
        assert not missing & got
        assert len(got) == DEVICES - len(missing)


def test_repeating_next_link_stops_the_source_and_is_reported(
    lab: LabTenant, tmp_path: Path
) -> None:
    lab.fault("repeat-next-link", "/api/deviceavinfo", skip=1)

    result, snapshot, _, _ = _collect(lab, tmp_path / "s.json", deviceavinfo_page_size=300)

    assert result.failed
    [error] = snapshot["errors"]
    assert error["source"] == "deviceavinfo"
    assert error["code"] == "PagingLoopError"
    assert error["endpoint"] == "GET /api/deviceavinfo"
    assert snapshot["counts"]["deviceavinfo"] == 600  # two pages read, none twice
    assert max(_ids(snapshot["deviceavinfo"]).values()) == 1
    assert snapshot["counts"]["machines"] == DEVICES + lab.server.fleet.discovered


def test_a_source_that_keeps_failing_is_reported_and_the_rest_is_collected(
    lab: LabTenant, tmp_path: Path
) -> None:
    lab.fault("error", "/api/machines", times=100)

    result, snapshot, _, _ = _collect(lab, tmp_path / "s.json")

    assert result.failed
    assert snapshot["errors"] == [
        {
            "source": "machines",
            "endpoint": "GET /api/machines",
            "status": 500,
            "code": "InternalServerError",
            "message": "Injected fault",
        }
    ]
    assert snapshot["counts"]["machines"] == 0
    assert snapshot["counts"]["deviceavinfo"] == DEVICES
    assert snapshot["counts"]["indicators"] == len(lab.server.indicators)


def test_throttling_that_outlasts_the_policy_is_reported(lab: LabTenant, tmp_path: Path) -> None:
    lab.fault("throttle", "/api/indicators", times=100, retry_after=30)

    _, snapshot, _, _ = _collect(lab, tmp_path / "s.json")

    [error] = snapshot["errors"]
    assert (error["source"], error["status"], error["code"]) == (
        "indicators",
        429,
        "TooManyRequests",
    )


def test_expired_token_is_refreshed_mid_collection(tmp_path: Path) -> None:
    with running_lab(DEVICES, token_lifetime=40) as lab:
        lab.fault("expire-token", "/api/machines")

        _, snapshot, mde, _ = _collect(lab, tmp_path / "s.json", deviceavinfo_page_size=20)

        assert snapshot["errors"] == []
        # Proactive refresh after the budget's 60-second wait, plus one after the 401.
        assert mde.api._tokens.fetches == 3  # type: ignore[attr-defined]
        assert [r.status for r in lab.server.requests if r.endpoint == "machines"] == [401, 200]


def test_collector_documents_are_validated_and_bad_ones_reported(
    lab: LabTenant, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    assert main(["lab", "write-collector-docs", str(docs), "--devices", str(DEVICES)]) == 0
    (docs / "zz-bad.json").write_text('{"schema": "endpoint-av-state/1"}', encoding="utf-8")

    _, snapshot, _, _ = _collect(lab, tmp_path / "s.json", collector_dir=docs)

    good = len(list(docs.glob("*.json"))) - 1
    assert snapshot["counts"]["collectorDocuments"] == good > 10
    assert all(validate_collector_document(d) == [] for d in snapshot["collectorDocuments"])
    [error] = snapshot["errors"]
    assert error["endpoint"] == "file zz-bad.json"
    assert error["code"] == "InvalidDocument"


def test_remediation_calls_against_the_lab(lab: LabTenant) -> None:
    mde, graph = lab.clients()
    device = next(d for d in lab.server.fleet.devices() if d.aad_device_id and d.av_mode == "1")
    group = lab.config.edr_block_group_id

    entra = graph.device_by_device_id(device.aad_device_id or "")
    assert entra is not None
    assert entra["deviceId"] == device.aad_device_id
    added = graph.add_group_member(group, entra["id"])
    again = graph.add_group_member(group, entra["id"])
    members = list(graph.group_members(group))
    tagged = mde.tag_machine(device.machine_id, "soar-passive")
    missing = graph.device_by_device_id("00000000-0000-4000-a000-000000000000")

    assert (added, again) == (True, False)
    assert [m["id"] for m in members] == [entra["id"]] == lab.server.group_members(group)
    assert "soar-passive" in tagged["machineTags"]
    assert missing is None
    mde.api.close()
    graph.api.close()


def test_cli_collect_lab_writes_a_snapshot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "snap.json"

    status = main(["collect", "--lab", "--devices", "1000", "--out", str(out)])

    printed = capsys.readouterr()
    snapshot = json.loads(out.read_text(encoding="utf-8"))
    assert status == 0
    assert snapshot["schema"] == "mde-snapshot/1"
    assert snapshot["counts"]["deviceavinfo"] == 1000
    assert snapshot["counts"]["collectorDocuments"] > 10
    assert "errors: none" in printed.out
    assert "deviceavinfo" in printed.out
    assert "lab tenant with 1000 devices" in printed.err


def test_cli_collect_from_urls_exits_1_when_a_source_fails(
    lab: LabTenant, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.lab.server import GRAPH_RESOURCE, MDE_RESOURCES

    lab.config.enforce_rate_limits = False
    lab.fault("error", "/api/indicators", status=403, times=100)
    out = tmp_path / "snap.json"
    args = [
        "collect",
        "--out",
        str(out),
        "--mde-url",
        lab.server.mde_url,
        "--graph-url",
        lab.server.graph_url,
        "--token",
        lab.server.issue_token(MDE_RESOURCES[0]),
        "--graph-token",
        lab.server.issue_token(GRAPH_RESOURCE),
    ]

    status = main(args)

    printed = capsys.readouterr().out
    assert status == 1
    assert "indicators: GET /api/indicators 403 BadRequest" in printed
    assert json.loads(out.read_text())["counts"]["deviceavinfo"] == DEVICES


@pytest.mark.parametrize(
    "args",
    [
        ["collect", "--out", "x.json", "--lab", "--mde-url", "http://127.0.0.1:1"],
        ["collect", "--out", "x.json", "--mde-url", "http://127.0.0.1:1"],
        ["collect", "--out", "x.json", "--lab", "--devices", "500001"],
    ],
)
def test_cli_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    assert "collect:" in capsys.readouterr().err


def test_deviceavinfo_falls_back_to_ten_thousand(tmp_path: Path) -> None:
    with running_lab(DEVICES, deviceavinfo_max_top=10_000) as lab:
        mde, _ = lab.clients(deviceavinfo_page_size=200_000)
        records = list(mde.deviceavinfo())
        mde.api.close()

        statuses = [r.status for r in lab.server.requests if r.endpoint == "deviceavinfo"]

    assert statuses == [400, 200]
    assert len(records) == DEVICES
