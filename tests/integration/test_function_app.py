"""The function app, indexed by the Functions worker's own loader and called without the host.

Each function is called with the objects the host would hand it (``func.HttpRequest``,
``TimerRequest``, ``func.QueueMessage``, ``func.EventHubEvent``); storage is Azurite and Log
Analytics is the local ingestion endpoint.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import azure.functions as func
import httpx
import pytest
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableServiceClient
from azure.functions.timer import TimerRequest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from pipeline import app_entry
from pipeline.act.blocklist import build_blocklists
from pipeline.config import ConfigError
from pipeline.coverage_store import CoverageStore
from pipeline.devserver import DevServer, http_routes
from pipeline.fanout import ShardError
from pipeline.indicators import Indicator
from pipeline.lab.ingestion import LOCAL_DCR_IMMUTABLE_ID, IngestionServer
from pipeline.sharding import LATEST_SNAPSHOT
from pipeline.sinks.audit import AuditTrail
from pipeline.sinks.blobs import BlobBlocklistStore
from pipeline.sources.collector_doc import MAX_DOCUMENT_BYTES
from pipeline.tables import DETECTIONS
from tests.support.azurite import AzuriteProcess, azurite
from tests.support.functions_host import FunctionLoadError, index_app
from tests.support.sinks import ingestion_server

pytestmark = pytest.mark.integration

__all__ = ["azurite", "ingestion_server"]  # fixtures used by name below

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "function_app.py"
FIXTURES = REPO / "tests" / "fixtures" / "collector"
PASSIVE_DOC = FIXTURES / "ps51-client-passive-falcon.json"

HTTP_ROUTES = {
    "post_collector": ("collector", ["POST"]),
    "post_evaluate": ("evaluate", ["POST"]),
    "get_coverage": ("devices/{device_id}/coverage", ["GET"]),
    "get_matrix": ("matrix", ["GET"]),
    "get_audit": ("audit", ["GET"]),
    "get_blocklist": ("blocklists/{format}", ["GET"]),
    "approve_action": ("actions/{plan_id}/approve", ["POST"]),
}


@pytest.fixture(scope="module")
def indexed() -> tuple[list[Any], list[Any]]:
    return index_app(APP)


@pytest.fixture(scope="module")
def functions(indexed: tuple[list[Any], list[Any]]) -> dict[str, Callable[..., Any]]:
    return {f.get_function_name(): f.get_user_function() for f in indexed[0]}


@pytest.fixture
def app_env(
    azurite: AzuriteProcess, ingestion_server: IngestionServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """Settings for one test, with storage names of its own in the shared Azurite."""
    suffix = uuid.uuid4().hex[:10]
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "LOGS_INGESTION_ENDPOINT": ingestion_server.base_url,
        "LOGS_INGESTION_DCR_IMMUTABLE_ID": LOCAL_DCR_IMMUTABLE_ID,
        "AUDIT_TABLE_NAME": f"Audit{suffix}",
        "COVERAGE_TABLE_NAME": f"Coverage{suffix}",
        "BLOCKLIST_CONTAINER": f"blocklists-{suffix}",
        "DEAD_LETTER_CONTAINER": f"dead-letters-{suffix}",
        "STATE_CONTAINER": f"state-{suffix}",
        "COLLECTOR_QUEUE": f"collector-{suffix}",
        "FANOUT_QUEUE": f"fanout-{suffix}",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # The deployment creates the audit table (infra/modules/storage.bicep); so does this fixture.
    tables = TableServiceClient.from_connection_string(azurite.connection_string)
    tables.create_table(env["AUDIT_TABLE_NAME"])
    app_entry.reset_stream_state()
    yield env
    app_entry.reset_stream_state()


def http(
    method: str,
    url: str,
    *,
    body: bytes = b"",
    params: dict[str, str] | None = None,
    route_params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> func.HttpRequest:
    return func.HttpRequest(
        method,
        f"http://localhost/api/{url}",
        headers=headers or {},
        params=params or {},
        route_params=route_params or {},
        body=body,
    )


def body_of(response: func.HttpResponse) -> Any:
    return json.loads(response.get_body())


def queued(env: dict[str, str], queue: str) -> list[Any]:
    client = QueueClient.from_connection_string(
        env["AzureWebJobsStorage"], env[queue], api_version="2025-11-05"
    )
    return [
        json.loads(base64.b64decode(message.content))
        for message in client.peek_messages(max_messages=32)
    ]


# -- indexing ------------------------------------------------------------------------------------


def test_the_worker_indexes_every_function(indexed: tuple[list[Any], list[Any]]) -> None:
    functions_, metadata = indexed

    names = {f.get_function_name() for f in functions_}
    assert names == {
        "cycle_timer",
        "fanout_shard",
        "collector_document",
        "defender_stream",
        *HTTP_ROUTES,
    }
    assert {m.name for m in metadata} == names
    assert all(m.script_file == "function_app.py" for m in metadata)


def _triggers(metadata: list[Any]) -> dict[str, dict[str, Any]]:
    """Each function's trigger binding, from the raw bindings the worker sends the host."""
    found = {}
    for function in metadata:
        bindings = [json.loads(raw) for raw in function.raw_bindings]
        found[function.name] = next(b for b in bindings if b["type"].endswith("Trigger"))
    return found


def test_every_http_function_needs_a_function_key(indexed: tuple[list[Any], list[Any]]) -> None:
    http_triggers = {
        name: trigger
        for name, trigger in _triggers(indexed[1]).items()
        if trigger["type"] == "httpTrigger"
    }

    assert set(http_triggers) == set(HTTP_ROUTES)
    for name, trigger in http_triggers.items():
        assert trigger["authLevel"] == "FUNCTION", name
        assert (trigger["route"], trigger["methods"]) == HTTP_ROUTES[name]


def test_other_triggers_are_bound_to_settings(indexed: tuple[list[Any], list[Any]]) -> None:
    metadata = indexed[1]
    triggers = _triggers(metadata)

    timer = triggers["cycle_timer"]
    assert (timer["schedule"], timer["runOnStartup"]) == ("%CYCLE_SCHEDULE%", False)
    assert triggers["fanout_shard"]["queueName"] == "%FANOUT_QUEUE%"
    assert triggers["collector_document"]["queueName"] == "%COLLECTOR_QUEUE%"
    assert {triggers[n]["connection"] for n in ("fanout_shard", "collector_document")} == {
        "AzureWebJobsStorage"
    }
    stream = triggers["defender_stream"]
    assert (stream["cardinality"], stream["connection"], stream["eventHubName"]) == (
        "MANY",
        "DefenderStream",
        "%DEFENDER_STREAM_HUB%",
    )
    retry = next(m.retry_options for m in metadata if m.name == "defender_stream")
    assert (retry.retry_strategy, retry.max_retry_count) == ("fixed_delay", 3)


@pytest.mark.parametrize(
    ("source", "complaint"),
    [
        (
            """
            @app.route(route="x")
            def handler(request: func.HttpRequest) -> func.HttpResponse:
                return func.HttpResponse("")
            """,
            "{'request'}",
        ),
        (
            """
            @app.event_hub_message_trigger(
                arg_name="events", event_hub_name="h", connection="c", cardinality="many"
            )
            def stream(events: list[func.EventHubEvent]) -> None:
                pass
            """,
            "invalid non-type annotation",
        ),
    ],
)
def test_the_worker_refuses_bad_bindings(tmp_path: Path, source: str, complaint: str) -> None:
    script = tmp_path / f"throwaway_app_{uuid.uuid4().hex[:8]}.py"
    header = "import azure.functions as func\napp = func.FunctionApp()\n"
    script.write_text(header + textwrap.dedent(source), encoding="utf-8")

    with pytest.raises(FunctionLoadError, match=complaint.replace("{", r"\{")):
        index_app(script)


def test_importing_the_app_reads_no_setting() -> None:
    # A setting read at import time would make the host load zero functions when it is missing.
    code = "import function_app; print(len(function_app.app.get_functions()))"
    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "11"


# -- timer and fan-out ----------------------------------------------------------------------------


def test_the_timer_runs_the_cycle_with_its_settings(
    functions: dict[str, Callable[..., Any]],
    app_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without a rule id the cycle's settings refuse to start, before any network call.
    monkeypatch.delenv("LOGS_INGESTION_DCR_IMMUTABLE_ID")

    with pytest.raises(ConfigError, match="LOGS_INGESTION_DCR_IMMUTABLE_ID"):
        functions["cycle_timer"](TimerRequest(past_due=True))


def test_re_evaluation_is_queued_for_the_fan_out(
    functions: dict[str, Callable[..., Any]], app_env: dict[str, str]
) -> None:
    device = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"

    one = functions["post_evaluate"](
        http("POST", "evaluate", body=json.dumps({"deviceId": device}).encode())
    )
    every = functions["post_evaluate"](http("POST", "evaluate", body=b'{"all": true}'))
    bad = functions["post_evaluate"](http("POST", "evaluate", body=b'{"deviceId": "x\' or 1"}'))

    assert (one.status_code, every.status_code, bad.status_code) == (202, 202, 400)
    messages = queued(app_env, "FANOUT_QUEUE")
    assert [m.get("deviceIds") for m in messages] == [[device], None]
    assert messages[1]["all"] is True


def test_re_evaluating_a_large_fleet_queues_the_shards_a_cycle_would(
    functions: dict[str, Callable[..., Any]],
    app_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The newest snapshot holds 45,000 devices; above a 20,000 threshold, 10,000 per shard.
    state = BlobServiceClient.from_connection_string(
        app_env["AzureWebJobsStorage"], api_version="2025-11-05"
    ).get_container_client(app_env["STATE_CONTAINER"])
    with contextlib.suppress(ResourceExistsError):
        state.create_container()
    pointer = {"cycleId": "20261204T060000Z-abcd1234", "devices": 45_000}
    state.upload_blob(LATEST_SNAPSHOT, json.dumps(pointer), overwrite=True)
    monkeypatch.setenv("FANOUT_THRESHOLD_DEVICES", "20000")
    monkeypatch.setenv("FANOUT_SHARD_DEVICES", "10000")

    answer = functions["post_evaluate"](http("POST", "evaluate", body=b'{"all": true}'))

    assert answer.status_code == 202
    assert body_of(answer)["shards"] == 5
    messages = queued(app_env, "FANOUT_QUEUE")
    assert [(m["shard"], m["shards"]) for m in messages] == [(s, 5) for s in range(5)]
    assert {m["cycleId"] for m in messages} == {pointer["cycleId"]}
    assert all(m["all"] is True and m["requestedBy"] for m in messages)

    # Under the threshold the same request is one message for the newest snapshot.
    monkeypatch.setenv("FANOUT_THRESHOLD_DEVICES", "50000")
    small = functions["post_evaluate"](http("POST", "evaluate", body=b'{"all": true}'))
    assert body_of(small)["messageId"]
    assert len(queued(app_env, "FANOUT_QUEUE")) == 6


def test_re_evaluation_without_a_fan_out_queue_says_it_is_not_set_up(
    functions: dict[str, Callable[..., Any]],
    app_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv("FANOUT_QUEUE")

    answer = functions["post_evaluate"](http("POST", "evaluate", body=b'{"all": true}'))

    assert answer.status_code == 500
    assert "not configured" in body_of(answer)["error"]
    assert "FANOUT_QUEUE is not set" in caplog.text
    with pytest.raises(ResourceNotFoundError):  # no queue was created, so nothing was queued
        queued(app_env, "FANOUT_QUEUE")


def test_the_fan_out_shard_checks_its_message_and_names_what_is_missing(
    functions: dict[str, Callable[..., Any]], app_env: dict[str, str]
) -> None:
    with pytest.raises(app_entry.MessageError, match="deviceIds"):
        functions["fanout_shard"](func.QueueMessage(id="1", body=b'{"deviceIds": []}'))

    # A well-formed message before any cycle has stored a snapshot: the shard says what is missing.
    message = func.QueueMessage(id="2", body=b'{"all": true}')
    with pytest.raises(ShardError, match="no cycle has stored a snapshot"):
        functions["fanout_shard"](message)


# -- collector documents ------------------------------------------------------------------------


def test_a_collector_document_is_checked_and_queued(
    functions: dict[str, Callable[..., Any]], app_env: dict[str, str]
) -> None:
    document = json.loads(PASSIVE_DOC.read_text("utf-8-sig"))
    post = functions["post_collector"]

    accepted = post(http("POST", "collector", body=json.dumps(document).encode()))
    invalid = post(http("POST", "collector", body=b'{"schema": "endpoint-av-state/1"}'))
    not_json = post(http("POST", "collector", body=b"\xff{"))
    too_big = post(http("POST", "collector", body=b" " * (MAX_DOCUMENT_BYTES + 1)))

    assert accepted.status_code == 202
    assert body_of(accepted)["device"] == "WS-004217"
    assert queued(app_env, "COLLECTOR_QUEUE") == [document]
    assert invalid.status_code == 400
    assert "device: missing or not an object" in body_of(invalid)["problems"]
    assert not_json.status_code == 400
    assert too_big.status_code == 413


def test_a_queued_collector_document_updates_the_mode_and_audits_a_change(
    functions: dict[str, Callable[..., Any]], app_env: dict[str, str]
) -> None:
    document = json.loads(PASSIVE_DOC.read_text("utf-8-sig"))
    device = document["device"]["mdeDeviceId"]
    tables = TableServiceClient.from_connection_string(app_env["AzureWebJobsStorage"])
    store = CoverageStore(tables.get_table_client(app_env["COVERAGE_TABLE_NAME"]))
    store.save_rows(
        [
            {
                "TimeGenerated": "2024-10-20T00:00:00Z",
                "DeviceId": device,
                "DeviceName": "WS-004217",
                "AvModeCode": "0",
                "AvState": "active",
                "CycleId": "c1",
            }
        ]
    )

    functions["collector_document"](func.QueueMessage(id="1", body=json.dumps(document)))
    coverage = functions["get_coverage"](
        http("GET", "coverage", route_params={"device_id": device})
    )
    audit = functions["get_audit"](http("GET", "audit", params={"device": device}))

    assert coverage.status_code == 200
    shown = body_of(coverage)
    assert shown["mode"]["avModeCode"] == "1"
    assert shown["mode"]["source"] == "collector"
    assert shown["coverageStale"] is True
    assert shown["coverage"]["CycleId"] == "c1"
    events = body_of(audit)["events"]
    assert [(e["kind"], e["details"]["from_code"], e["details"]["to_code"]) for e in events] == [
        ("mode_changed", "0", "1")
    ]


def test_a_foreign_queue_message_is_refused(
    functions: dict[str, Callable[..., Any]], app_env: dict[str, str]
) -> None:
    with pytest.raises(app_entry.MessageError, match="collector document refused"):
        functions["collector_document"](func.QueueMessage(id="1", body=b'{"schema": "x"}'))


def test_coverage_of_an_unknown_or_malformed_device(
    functions: dict[str, Callable[..., Any]], app_env: dict[str, str]
) -> None:
    get = functions["get_coverage"]

    missing = get(http("GET", "c", route_params={"device_id": "0" * 40}))
    spliced = get(http("GET", "c", route_params={"device_id": "x' or PartitionKey ne '"}))

    assert (missing.status_code, spliced.status_code) == (404, 400)


# -- reads ---------------------------------------------------------------------------------------


def test_the_matrix_with_its_etag(
    functions: dict[str, Callable[..., Any]], app_env: dict[str, str]
) -> None:
    get = functions["get_matrix"]

    whole = get(http("GET", "matrix"))
    again = get(http("GET", "matrix", headers={"If-None-Match": whole.headers["ETag"]}))
    one = get(http("GET", "matrix", params={"capability": "indicator_url"}))
    unknown = get(http("GET", "matrix", params={"capability": "teleport"}))

    assert whole.status_code == 200
    assert "network_protection" in body_of(whole)["capabilities"]
    assert again.status_code == 304
    assert list(body_of(one)["capabilities"]) == ["indicator_url"]
    assert unknown.status_code == 404


def test_the_audit_trail_filtered_and_paged(
    functions: dict[str, Callable[..., Any]], app_env: dict[str, str]
) -> None:
    tables = TableServiceClient.from_connection_string(app_env["AzureWebJobsStorage"])
    trail = AuditTrail(tables.get_table_client(app_env["AUDIT_TABLE_NAME"]))
    start = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    for minute in range(5):
        trail.record(
            "cycle_started", "cycle-1", None, {"n": minute}, at=start.replace(minute=minute)
        )
    trail.record("cycle_started", "cycle-2", None, {"n": 99}, at=start)
    get = functions["get_audit"]

    first = get(http("GET", "audit", params={"cycle": "cycle-1", "pageSize": "2"}))
    token = body_of(first)["continuation"]
    second = get(
        http("GET", "audit", params={"cycle": "cycle-1", "pageSize": "2", "continuation": token})
    )
    day = get(http("GET", "audit", params={"day": date(2026, 12, 3).isoformat(), "pageSize": "50"}))

    assert [e["details"]["n"] for e in body_of(first)["events"]] == [4, 3]
    assert [e["details"]["n"] for e in body_of(second)["events"]] == [2, 1]
    assert len(body_of(day)["events"]) == 6
    for params in (
        {},
        {"cycle": "cycle-1", "day": "2026-12-03"},
        {"cycle": "cycle-1", "pageSize": "5000"},
        {"cycle": "cycle-1", "kind": "Cycle Started"},
        {"device": "x' or true or '"},
        {"day": "yesterday"},
        {"cycle": "cycle-1", "continuation": "bm90LW91cnM="},
    ):
        assert get(http("GET", "audit", params=params)).status_code == 400, params


def test_a_published_blocklist_with_etag_and_not_modified(
    functions: dict[str, Callable[..., Any]], app_env: dict[str, str]
) -> None:
    blobs = BlobServiceClient.from_connection_string(
        app_env["AzureWebJobsStorage"], api_version="2025-11-05"
    )
    store = BlobBlocklistStore(blobs.get_container_client(app_env["BLOCKLIST_CONTAINER"]))
    store.put("block/squid-domains", ".evil.example\n", sha256="ab" * 32, version=3)
    get = functions["get_blocklist"]

    fresh = get(http("GET", "b", route_params={"format": "squid-domains"}))
    cached = get(
        http(
            "GET",
            "b",
            route_params={"format": "squid-domains"},
            headers={"If-None-Match": f'"{"ab" * 32}"'},
        )
    )
    unpublished = get(http("GET", "b", route_params={"format": "rpz"}))
    unknown = get(http("GET", "b", route_params={"format": "../state"}))
    bad_list = get(http("GET", "b", route_params={"format": "rpz"}, params={"list": "all"}))

    assert fresh.status_code == 200
    assert fresh.get_body() == b".evil.example\n"
    assert fresh.headers["ETag"] == f'"{"ab" * 32}"'
    assert fresh.headers["X-Blocklist-Version"] == "3"
    assert cached.status_code == 304
    assert (unpublished.status_code, unknown.status_code, bad_list.status_code) == (404, 404, 400)


def test_approval_needs_a_known_plan_and_says_who(
    functions: dict[str, Callable[..., Any]], app_env: dict[str, str]
) -> None:
    approve = functions["approve_action"]
    route = {"plan_id": "plan-20261203-1"}
    signed_in = {"x-ms-client-principal-name": "ana@contoso.example"}

    nobody = approve(http("POST", "a", route_params=route))
    bad_id = approve(http("POST", "a", route_params={"plan_id": "../x"}, body=b'{"approver": "a"}'))
    unknown_plan = approve(http("POST", "a", route_params=route, headers=signed_in))

    assert nobody.status_code == 400
    assert "say who approves" in body_of(nobody)["error"]
    assert bad_id.status_code == 400
    assert unknown_plan.status_code == 404
    assert "plan-20261203-1" in body_of(unknown_plan)["error"]


def test_approval_answers_501_while_the_action_module_is_absent(
    functions: dict[str, Callable[..., Any]],
    app_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As if the deployment had no pipeline/act/edr_block.py: importing it fails.
    monkeypatch.setitem(sys.modules, "pipeline.act.edr_block", None)

    response = functions["approve_action"](
        http(
            "POST",
            "a",
            route_params={"plan_id": "plan-1"},
            body=b'{"approver": "ana@contoso.example"}',
        )
    )

    assert response.status_code == 501
    assert "pipeline.act.edr_block" in body_of(response)["error"]


def test_misconfiguration_is_a_500_that_names_nothing_secret(
    functions: dict[str, Callable[..., Any]],
    app_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAM_UNKNOWN_DEVICES", "sometimes")

    response = functions["get_coverage"](http("GET", "c", route_params={"device_id": "d1"}))

    assert response.status_code == 500
    assert body_of(response) == {"error": "the function app is not configured; see its log"}


# -- streaming detection -------------------------------------------------------------------------


def test_the_stream_uploads_detections_and_dead_letters_poison(
    functions: dict[str, Callable[..., Any]],
    app_env: dict[str, str],
    ingestion_server: IngestionServer,
) -> None:
    connection = app_env["AzureWebJobsStorage"]
    blobs = BlobServiceClient.from_connection_string(connection, api_version="2025-11-05")
    container = blobs.get_container_client(app_env["BLOCKLIST_CONTAINER"])
    container.create_container()
    lists = build_blocklists(
        [Indicator("101", "evil.example", "DomainName", "Block")], datetime.now(UTC)
    )
    app_entry.store_entries(container, lists)
    tables = TableServiceClient.from_connection_string(connection)
    CoverageStore(tables.get_table_client(app_env["COVERAGE_TABLE_NAME"])).save_rows(
        [
            {"TimeGenerated": "2026-12-03T10:00:00Z", "DeviceId": "p1", "AvModeCode": "1",
             "AvState": "passive", "DeviceName": "pc1"},
            {"TimeGenerated": "2026-12-03T10:00:00Z", "DeviceId": "a1", "AvModeCode": "0",
             "AvState": "active"},
        ]
    )  # fmt: skip

    def connection_record(device: str) -> dict[str, Any]:
        return {
            "time": "2026-12-03T11:00:00Z",
            "tenantId": "t1",
            "category": "AdvancedHunting-DeviceNetworkEvents",
            "properties": {
                "Timestamp": "2026-12-03T10:59:58.1234567Z",
                "DeviceId": device,
                "ActionType": "ConnectionSuccess",
                "RemoteUrl": "https://a.evil.example/x",
                "RemotePort": 443,
            },
        }

    good = json.dumps({"records": [connection_record("p1"), connection_record("a1")]})
    events = [
        func.EventHubEvent(body=good.encode()),
        func.EventHubEvent(body=b"{truncated"),
        func.EventHubEvent(body=json.dumps({"records": [{"category": 5}]}).encode()),
    ]

    functions["defender_stream"](events)

    rows = ingestion_server.accepted_rows(DETECTIONS.stream_name)
    assert [(r["DeviceId"], r["MatchedValue"], r["IndicatorId"]) for r in rows] == [
        ("p1", "evil.example", "101")
    ]
    letters = list(blobs.get_container_client(app_env["DEAD_LETTER_CONTAINER"]).list_blobs())
    assert len(letters) == 1
    lines = (
        blobs.get_blob_client(app_env["DEAD_LETTER_CONTAINER"], letters[0].name)
        .download_blob()
        .readall()
        .decode()
        .splitlines()
    )
    assert sorted(json.loads(line)["row"]["message"] for line in lines) == [1, 2]
    trail = AuditTrail(tables.get_table_client(app_env["AUDIT_TABLE_NAME"]))
    audited = trail.by_day(datetime.now(UTC).date(), kind="batch_dead_lettered").events
    assert [event.details["poison_records"] for event in audited] == [2]


def test_the_stream_without_published_entries_matches_nothing_and_says_so(
    app_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    body = json.dumps({"records": []}).encode()

    outcome = app_entry.process_stream([body])

    assert outcome.blocklist_loaded is False
    assert "no blocklist entries" in caplog.text


# -- the local HTTP shim -------------------------------------------------------------------------


def test_the_dev_server_serves_the_http_functions_behind_the_function_key(
    app_env: dict[str, str],
) -> None:
    # A fresh import: an app hands out its functions once, and the indexer took them already.
    sys.modules.pop("function_app", None)
    function_app = importlib.import_module("function_app")
    server = DevServer(0, http_routes(function_app.app), "test-key")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}/api"
    try:
        without_key = httpx.get(f"{base}/matrix")
        with_header = httpx.get(f"{base}/matrix", headers={"x-functions-key": "test-key"})
        with_code = httpx.get(f"{base}/blocklists/rpz", params={"code": "test-key"})
        wrong_method = httpx.post(f"{base}/matrix", headers={"x-functions-key": "test-key"})
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    assert without_key.status_code == 401
    assert with_header.status_code == 200
    assert "capabilities" in with_header.json()
    assert with_code.status_code == 404
    assert "no block list has been published" in with_code.json()["error"]
    assert wrong_method.status_code == 405
