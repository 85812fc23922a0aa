"""MDE and Graph clients against canned copies of Microsoft's documented responses.

A local HTTP server replays the fixtures in tests/fixtures/mde, so every byte goes over a real
socket through httpx, and the assertions check the exact parse of each shape.
"""

from __future__ import annotations

import json
import random
from typing import Any

import httpx
import pytest

from pipeline.sources.errors import (
    ApiError,
    MalformedResponseError,
    RateLimitedError,
    ResponseError,
)
from pipeline.sources.graph import GraphClient
from pipeline.sources.http import ApiClient, RetryPolicy
from pipeline.sources.mde import MdeClient
from tests.support.lab import Canned, FakeClock, fixture_json, replay_server

MACHINE = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
AAD_DEVICE = "80fe8ff8-2624-418e-9591-41f0491218f9"
GROUP = "6f1c2b3a-4d5e-4f60-8a9b-0c1d2e3f4a5b"
OBJECT = "000005c3-b7a6-4c61-89fc-80bf5ccfc366"


class CountingTokens:
    def __init__(self) -> None:
        self.issued = 0

    def token(self) -> str:
        if self.issued == 0 or self.invalidated:
            self.issued += 1
            self.invalidated = False
        return f"token-{self.issued}"

    invalidated = False

    def invalidate(self) -> None:
        self.invalidated = True


_opened: list[ApiClient] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Any:
    yield
    while _opened:
        _opened.pop().close()


def _api(base: str, clock: FakeClock, tokens: Any = None, attempts: int = 3) -> ApiClient:
    api = ApiClient(
        base,
        tokens or CountingTokens(),
        timeout=httpx.Timeout(5.0),
        retry=RetryPolicy(attempts=attempts),
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(0),
    )
    _opened.append(api)
    return api


def test_deviceavinfo_follows_next_link_and_keeps_records_verbatim() -> None:
    page1 = fixture_json("mde", "deviceavinfo-page1.json")
    page2 = fixture_json("mde", "deviceavinfo-page2.json")
    routes = {("GET", "/api/deviceavinfo"): [Canned(200, page1), Canned(200, page2)]}
    clock = FakeClock()

    with replay_server(routes) as (base, seen):
        page1["@odata.nextLink"] = page1["@odata.nextLink"].replace("{base}", base)
        records = list(MdeClient(_api(base, clock)).deviceavinfo())

    assert records == page1["value"] + page2["value"]
    assert [r["avMode"] for r in records] == ["1", "0", "", "4"]
    assert seen[0][1] == "/api/deviceavinfo?%24top=200000"
    assert seen[1][1] == "/api/deviceavinfo?$top=3&$skip=3"
    assert all(headers["authorization"] == "Bearer token-1" for _, _, headers, _ in seen)


def test_machines_and_indicators_parse_documented_examples() -> None:
    machines = fixture_json("mde", "machines-page.json")
    indicators = fixture_json("mde", "indicators-page.json")
    routes = {
        ("GET", "/api/machines"): [Canned(200, machines)],
        ("GET", "/api/indicators"): [Canned(200, indicators)],
    }

    with replay_server(routes) as (base, _):
        client = MdeClient(_api(base, FakeClock()))
        got_machines = list(client.machines())
        got_indicators = list(client.indicators())

    assert got_machines == machines["value"]
    assert got_machines[0]["aadDeviceId"] == AAD_DEVICE
    assert [i["indicatorValue"] for i in got_indicators] == ["12.13.14.15", "dropbox.com"]


def test_machines_404_means_no_recent_machines() -> None:
    routes = {
        ("GET", "/api/machines"): [Canned(404, {"error": {"code": "NotFound", "message": "x"}})]
    }

    with replay_server(routes) as (base, _):
        assert list(MdeClient(_api(base, FakeClock())).machines()) == []


@pytest.mark.parametrize(
    ("fixture", "path", "client_kind"),
    [
        ("advancedqueries-run.json", "/api/advancedqueries/run", "mde"),
        ("graph-runhuntingquery.json", "/v1.0/security/runHuntingQuery", "graph"),
        ("graph-runhuntingquery-capitalised.json", "/v1.0/security/runHuntingQuery", "graph"),
    ],
)
def test_hunting_answers_parse_in_either_case(fixture: str, path: str, client_kind: str) -> None:
    body = fixture_json("mde", fixture)
    routes = {("POST", path): [Canned(200, body)]}

    with replay_server(routes) as (base, seen):
        if client_kind == "mde":
            result = MdeClient(_api(base, FakeClock())).run_advanced_query("DeviceTvmInfoGathering")
        else:
            api = _api(base + "/v1.0", FakeClock())
            result = GraphClient(api).run_hunting_query("DeviceTvmInfoGathering", "P7D")

    rows = body.get("Results") or body.get("results")
    assert result.rows == rows
    assert result.columns[0].name in ("Timestamp", "DeviceId")
    assert all(column.type for column in result.columns)
    sent = json.loads(seen[0][3])
    assert sent["Query"] == "DeviceTvmInfoGathering"  # MDE body names are case-sensitive


def test_forbidden_names_endpoint_status_code_and_correlation_id() -> None:
    routes = {
        ("GET", "/api/indicators"): [Canned(403, fixture_json("mde", "error-forbidden.json"))]
    }

    with replay_server(routes) as (base, _), pytest.raises(ApiError) as caught:
        list(MdeClient(_api(base, FakeClock())).indicators())

    error = caught.value
    assert (error.endpoint, error.status, error.code) == ("GET /api/indicators", 403, "Forbidden")
    assert "Missing application roles" in error.message
    assert error.target == "0f3a4e6a-5ad1-4e0e-8a5f-2b0a16dfa1f4"


def test_429_waits_exactly_retry_after_then_succeeds() -> None:
    throttled = Canned(429, fixture_json("mde", "error-throttled.json"), {"Retry-After": "17"})
    routes = {("GET", "/api/indicators"): [throttled, Canned(200, {"value": [{"id": "1"}]})]}
    clock = FakeClock()

    with replay_server(routes) as (base, seen):
        api = _api(base, clock)
        records = list(MdeClient(api).indicators())

    assert records == [{"id": "1"}]
    assert clock.sleeps == [17.0]
    assert len(seen) == 2
    assert api.calls["indicators"] == 2


def test_a_response_hook_sees_every_answer_retries_included_once() -> None:
    throttled = Canned(429, fixture_json("mde", "error-throttled.json"), {"Retry-After": "1"})
    done = Canned(200, {"value": [{"id": "1"}]}, {"request-id": "r-2"})
    routes = {("GET", "/api/indicators"): [throttled, done]}
    seen_by_hook: list[tuple[int, str | None]] = []

    def hook(response: httpx.Response) -> None:
        seen_by_hook.append((response.status_code, response.headers.get("request-id")))

    with replay_server(routes) as (base, _):
        api = _api(base, FakeClock())
        api.add_response_hook(hook)
        api.add_response_hook(hook)  # a second add changes nothing
        list(MdeClient(api).indicators())

    assert seen_by_hook == [(429, None), (200, "r-2")]


def test_429_that_never_ends_becomes_rate_limited_error() -> None:
    throttled = Canned(429, fixture_json("mde", "error-throttled.json"), {"Retry-After": "5"})
    clock = FakeClock()

    with (
        replay_server({("GET", "/api/machines"): [throttled]}) as (base, _),
        pytest.raises(RateLimitedError) as caught,
    ):
        list(MdeClient(_api(base, clock)).machines())

    assert caught.value.status == 429
    assert caught.value.retry_after == 5.0
    assert clock.sleeps == [5.0] * 5  # six tries: five waits


def test_500_is_retried_with_backoff_then_reported_with_microsoft_code() -> None:
    failing = Canned(500, fixture_json("mde", "error-internal.json"))
    clock = FakeClock()

    with (
        replay_server({("GET", "/api/deviceavinfo"): [failing]}) as (base, seen),
        pytest.raises(ApiError) as caught,
    ):
        list(MdeClient(_api(base, clock, attempts=3)).deviceavinfo())

    assert caught.value.code == "InternalServerError"
    assert caught.value.status == 500
    assert len(seen) == 3
    assert len(clock.sleeps) == 2


def test_401_refreshes_the_token_once() -> None:
    unauthorized = Canned(401, {"error": {"code": "Unauthorized", "message": "expired"}})
    routes = {("GET", "/api/indicators"): [unauthorized, Canned(200, {"value": []})]}
    tokens = CountingTokens()

    with replay_server(routes) as (base, seen):
        list(MdeClient(_api(base, FakeClock(), tokens)).indicators())

    assert [h["authorization"] for _, _, h, _ in seen] == ["Bearer token-1", "Bearer token-2"]


def test_next_link_to_another_host_is_refused() -> None:
    page = {"value": [{"id": "1"}], "@odata.nextLink": "http://203.0.113.9/api/indicators?$skip=1"}

    with (
        replay_server({("GET", "/api/indicators"): [Canned(200, page)]}) as (base, seen),
        pytest.raises(ResponseError, match="leaves the service"),
    ):
        list(MdeClient(_api(base, FakeClock())).indicators())

    assert len(seen) == 1


def test_body_that_is_not_json_is_retried_then_reported() -> None:
    broken = Canned(200, b"<html>gateway</html>")
    clock = FakeClock()

    with (
        replay_server({("POST", "/api/advancedqueries/run"): [broken]}) as (base, seen),
        pytest.raises(MalformedResponseError),
    ):
        MdeClient(_api(base, clock)).run_advanced_query("DeviceTvmInfoGathering")

    assert len(seen) == 3


def test_graph_device_lookup_member_add_and_already_member() -> None:
    routes = {
        ("GET", f"/v1.0/devices(deviceId='{AAD_DEVICE}')"): [
            Canned(200, fixture_json("mde", "graph-device.json"))
        ],
        ("POST", f"/v1.0/groups/{GROUP}/members/$ref"): [
            Canned(204),
            Canned(400, fixture_json("mde", "graph-member-exists.json")),
        ],
    }

    with replay_server(routes) as (base, seen):
        graph = GraphClient(_api(base + "/v1.0", FakeClock()))
        device = graph.device_by_device_id(AAD_DEVICE)
        first = graph.add_group_member(GROUP, OBJECT)
        second = graph.add_group_member(GROUP, OBJECT)

    assert device is not None
    assert device["id"] == OBJECT
    assert (first, second) == (True, False)
    assert json.loads(seen[1][3]) == {
        "@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{OBJECT}"
    }


def test_graph_unknown_device_is_none_and_other_400_is_an_error() -> None:
    missing = f"/v1.0/devices(deviceId='{AAD_DEVICE}')"
    bad = {"error": {"code": "Request_BadRequest", "message": "Invalid object identifier"}}
    routes = {
        ("GET", missing): [Canned(404, fixture_json("mde", "graph-not-found.json"))],
        ("POST", f"/v1.0/groups/{GROUP}/members/$ref"): [Canned(400, bad)],
    }

    with replay_server(routes) as (base, _):
        graph = GraphClient(_api(base + "/v1.0", FakeClock()))
        assert graph.device_by_device_id(AAD_DEVICE) is None
        with pytest.raises(ApiError, match="Invalid object identifier"):
            graph.add_group_member(GROUP, OBJECT)


def test_machine_tag_sends_case_sensitive_body() -> None:
    routes = {
        ("POST", f"/api/machines/{MACHINE}/tags"): [
            Canned(200, fixture_json("mde", "machine-tags-response.json"))
        ]
    }

    with replay_server(routes) as (base, seen):
        machine = MdeClient(_api(base, FakeClock())).tag_machine(MACHINE, "soar-passive")

    assert json.loads(seen[0][3]) == {"Value": "soar-passive", "Action": "Add"}
    assert "soar-passive" in machine["machineTags"]


@pytest.mark.parametrize("bad", ["../../api/indicators", "abc", MACHINE + "0"])
def test_identifiers_that_could_change_the_url_are_refused(bad: str) -> None:
    mde = MdeClient(_api("http://127.0.0.1:9", FakeClock()))
    graph = GraphClient(_api("http://127.0.0.1:9", FakeClock()))

    with pytest.raises(ValueError, match="not"):
        mde.tag_machine(bad, "x")
    with pytest.raises(ValueError, match="not a GUID"):
        graph.device_by_device_id(bad)
