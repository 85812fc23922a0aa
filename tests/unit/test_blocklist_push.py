"""Push adapters against the in-memory ZIA and Netskope fakes, reached through httpx transports.

Every request is a real httpx request answered by the fake's implementation of the documented
contract; the integration tests run the same fakes behind real HTTP servers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from pipeline.act.blocklist import Blocklists, build_blocklists
from pipeline.act.blocklist.push import (
    ApiSession,
    NetskopeSettings,
    NetskopeTarget,
    PushAuthError,
    PushConfigError,
    PushRateLimitedError,
    PushResponseError,
    SessionCredentials,
    ZscalerSettings,
    ZscalerTarget,
)
from pipeline.indicators import Indicator, IndicatorType
from tests.support.push_servers import Fault, NetskopeFake, ZiaFake, transport

NOW = datetime(2025, 6, 1, tzinfo=UTC)
ZIA_BASE = "https://api.zia.test"
TOKEN_URL = "https://vanity.zslogin.test/oauth2/v1/token"
NS_BASE = "https://tenant.goskope.test"


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def zia() -> ZiaFake:
    fake = ZiaFake()
    fake.add_category("CUSTOM_01", "SOAR Block")
    return fake


@pytest.fixture
def netskope() -> NetskopeFake:
    return NetskopeFake()


@pytest.fixture
def http_clients() -> Iterator[list[httpx.Client]]:
    clients: list[httpx.Client] = []
    yield clients
    for client in clients:
        client.close()


def zia_target(
    fake: ZiaFake,
    clients: list[httpx.Client],
    sleeps: Sleeps | None = None,
    **settings: object,
) -> ZscalerTarget:
    client = httpx.Client(transport=transport(fake))
    clients.append(client)
    values = {
        "base_url": ZIA_BASE,
        "category_id": "CUSTOM_01",
        "token_url": TOKEN_URL,
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        "write_interval": 0.0,
        **settings,
    }
    return ZscalerTarget.from_settings(
        ZscalerSettings(**values),  # type: ignore[arg-type]
        http=client,
        sleep=sleeps if sleeps is not None else Sleeps(),
    )


def ns_target(
    fake: NetskopeFake,
    clients: list[httpx.Client],
    sleeps: Sleeps | None = None,
    **settings: object,
) -> NetskopeTarget:
    client = httpx.Client(transport=transport(fake))
    clients.append(client)
    values = {
        "base_url": NS_BASE,
        "list_name": "SOAR Block",
        "api_token": fake.token,
        "deploy": True,
        **settings,
    }
    return NetskopeTarget.from_settings(
        NetskopeSettings(**values),  # type: ignore[arg-type]
        http=client,
        sleep=sleeps if sleeps is not None else Sleeps(),
    )


def indicator(number: int, value: str, kind: IndicatorType, action: str = "Block") -> Indicator:
    return Indicator(id=str(number), value=value, type=kind, action=action)  # type: ignore[arg-type]


def sample_lists() -> Blocklists:
    return build_blocklists(
        [
            indicator(1, "evil.example", "DomainName"),
            indicator(2, "https://host.example/", "Url"),
            indicator(3, "https://paths.example/a/b?c=d", "Url"),
            indicator(4, "93.184.216.34", "IpAddress"),
            indicator(5, "2606:4700::1111", "IpAddress"),
            indicator(6, "45.33.0.0/16", "IpAddress"),
            indicator(7, "http://ports.example:8080/x", "Url"),
            indicator(8, "ok.evil.example", "DomainName", "Allowed"),
        ],
        NOW,
    )


def sent_values(fake: ZiaFake | NetskopeFake) -> list[str]:
    """Every value any write request carried."""
    values: list[str] = []
    for request in fake.writes():
        body = request.json()
        if isinstance(body, dict):
            urls = body.get("urls", body.get("data", {}).get("urls", []))
            values.extend(urls)
    return values


# --- prepare: from normalised entries to each service's values --------------------------------


def test_zscaler_prepare_writes_domains_with_a_leading_dot_and_reports_the_rest() -> None:
    lists = sample_lists()
    prepared = ZscalerTarget("CUSTOM_01", None, dry_run=True).prepare(lists.block)

    assert set(prepared.values) == {
        ".evil.example",
        "host.example",
        "paths.example/a/b?c=d",
        "93.184.216.34",
    }
    omitted = {omission.indicator_id: omission.reason for omission in prepared.not_representable}
    assert set(omitted) == {"5", "6", "7", "8"}
    assert "port" in omitted["7"]
    assert "ipRanges" in omitted["6"]
    assert "exempt" in omitted["8"]


def test_netskope_prepare_writes_domain_and_wildcard_and_keeps_ports() -> None:
    lists = sample_lists()
    prepared = NetskopeTarget("SOAR Block", None, dry_run=True).prepare(lists.block)

    assert {"evil.example", "*.evil.example"} <= set(prepared.values)
    assert "ports.example:8080/x" in prepared.values
    assert "93.184.216.34" in prepared.values
    assert {o.indicator_id for o in prepared.not_representable} == {"5", "6", "8"}


# --- full, incremental and unchanged pushes ---------------------------------------------------


def test_zscaler_full_push_replaces_the_category_and_activates(
    zia: ZiaFake, http_clients: list[httpx.Client]
) -> None:
    zia.add_category("CUSTOM_01", "SOAR Block", ["stale.example"])
    target = zia_target(zia, http_clients)

    result = target.push([".evil.example", "host.example/a"])

    assert zia.staged("CUSTOM_01") == [".evil.example", "host.example/a"]
    assert zia.enforced("CUSTOM_01") == [".evil.example", "host.example/a"]
    assert (result.mode, result.activated) == ("full", True)
    assert result.added == (".evil.example", "host.example/a")
    assert result.removed == ("stale.example",)
    assert result.entries == (".evil.example", "host.example/a")
    assert len(result.request_ids) == len(result.requests) == 3  # read, replace, activate
    # The whole category went back with its other settings untouched.
    put = next(r for r in zia.writes() if r.method == "PUT")
    assert put.json()["keywords"] == ["kept"]
    assert "action" not in put.query


def test_zscaler_incremental_push_sends_only_the_delta(
    zia: ZiaFake, http_clients: list[httpx.Client]
) -> None:
    zia.add_category("CUSTOM_01", "SOAR Block", [".a.example", ".b.example", "manual.example"])
    target = zia_target(zia, http_clients)

    result = target.push([".b.example", ".c.example"], previous=[".a.example", ".b.example"])

    changes = [(r.query.get("action"), r.json()["urls"]) for r in zia.writes() if r.method == "PUT"]
    assert changes == [("ADD_TO_LIST", [".c.example"]), ("REMOVE_FROM_LIST", [".a.example"])]
    assert zia.enforced("CUSTOM_01") == [".b.example", "manual.example", ".c.example"]
    assert result.entries == (".b.example", ".c.example")
    assert (result.added, result.removed) == ((".c.example",), (".a.example",))


@pytest.mark.parametrize("previous", [None, [".a.example"]])
def test_zscaler_unchanged_list_sends_no_write_and_no_activation(
    zia: ZiaFake, http_clients: list[httpx.Client], previous: list[str] | None
) -> None:
    zia.add_category("CUSTOM_01", "SOAR Block", [".a.example"])
    result = zia_target(zia, http_clients).push([".a.example"], previous)

    assert zia.writes() == []
    assert zia.activations == 0
    assert not result.changed
    assert not result.activated
    assert "already up to date" in result.notes


def test_incremental_push_adds_back_a_value_someone_removed(
    zia: ZiaFake, http_clients: list[httpx.Client]
) -> None:
    zia.add_category("CUSTOM_01", "SOAR Block", [])
    result = zia_target(zia, http_clients).push([".a.example"], previous=[".a.example"])

    assert zia.enforced("CUSTOM_01") == [".a.example"]
    assert result.added == (".a.example",)


def test_large_deltas_are_chunked(zia: ZiaFake, http_clients: list[httpx.Client]) -> None:
    values = [f"host{n}.example" for n in range(5)]
    zia_target(zia, http_clients, chunk_size=2).push(values, previous=[])

    adds = [r.json()["urls"] for r in zia.writes() if r.query.get("action") == "ADD_TO_LIST"]
    assert adds == [values[0:2], values[2:4], values[4:5]]
    assert zia.enforced("CUSTOM_01") == values


def test_full_replace_of_a_large_list_is_one_replace_then_additions(
    netskope: NetskopeFake, http_clients: list[httpx.Client]
) -> None:
    netskope.add_list("SOAR Block", ["old.example"])
    values = [f"host{n}.example" for n in range(5)]
    ns_target(netskope, http_clients, chunk_size=2).push(values)

    calls = [(r.method, r.path.rsplit("/", 1)[-1]) for r in netskope.writes()]
    assert calls == [("PUT", "1"), ("PATCH", "append"), ("PATCH", "append"), ("POST", "deploy")]
    assert netskope.by_name("SOAR Block")["deployed"] == values  # type: ignore[index]


# --- one bad value never stops the push -------------------------------------------------------


def test_a_value_the_service_refuses_is_isolated_and_the_rest_is_sent(
    zia: ZiaFake, http_clients: list[httpx.Client]
) -> None:
    values = [f"host{n}.example" for n in range(8)]
    zia.refuse = {"host5.example"}

    result = zia_target(zia, http_clients).push(values, previous=[])

    assert [r.value for r in result.rejected] == ["host5.example"]
    assert "Invalid URL" in result.rejected[0].reason
    assert zia.enforced("CUSTOM_01") == [v for v in values if v != "host5.example"]
    assert "host5.example" not in result.entries
    assert result.activated


def test_a_refused_value_in_a_full_replace_does_not_lose_the_others(
    netskope: NetskopeFake, http_clients: list[httpx.Client]
) -> None:
    netskope.add_list("SOAR Block", ["old.example"])
    netskope.refuse = {"b.example"}

    result = ns_target(netskope, http_clients).push(["a.example", "b.example", "c.example"])

    assert netskope.by_name("SOAR Block")["deployed"] == ["a.example", "c.example"]  # type: ignore[index]
    assert [r.value for r in result.rejected] == ["b.example"]
    assert result.removed == ("old.example",)


HOSTILE = [
    "evil.example\nhost injected.example",
    "a b.example",
    "#comment.example",
    "x.example;drop",
    '"quoted".example',
    "evil.example\u2028x",
    "x" * 1100,
    "",
    "http://scheme.example/",
    "*.star.example/*",
]


@pytest.mark.parametrize("which", ["zscaler", "netskope"])
def test_hostile_values_never_reach_the_api(
    which: str, zia: ZiaFake, netskope: NetskopeFake, http_clients: list[httpx.Client]
) -> None:
    fake: ZiaFake | NetskopeFake = zia if which == "zscaler" else netskope
    target = (
        zia_target(zia, http_clients) if which == "zscaler" else ns_target(netskope, http_clients)
    )
    good = ["good.example", "good.example/p?q=1"]

    result = target.push([*HOSTILE, 42, *good])  # type: ignore[list-item]

    assert sent_values(fake) == good
    assert len(result.rejected) == len(HOSTILE) + 1
    assert all("\n" not in r.value and len(r.value) < 100 for r in result.rejected)
    assert result.entries == tuple(good)


def test_zscaler_takes_no_wildcard_and_netskope_no_leading_dot(
    zia: ZiaFake, netskope: NetskopeFake, http_clients: list[httpx.Client]
) -> None:
    zia_result = zia_target(zia, http_clients).push(["*.a.example", ".a.example"])
    ns_result = ns_target(netskope, http_clients).push(["*.a.example", ".a.example"])

    assert zia_result.entries == (".a.example",)
    assert ns_result.entries == ("*.a.example",)


# --- activation and deployment ----------------------------------------------------------------


def test_zscaler_activation_can_be_left_to_an_admin(
    zia: ZiaFake, http_clients: list[httpx.Client]
) -> None:
    result = zia_target(zia, http_clients, activate=False).push([".a.example"])

    assert zia.staged("CUSTOM_01") == [".a.example"]
    assert zia.enforced("CUSTOM_01") == []
    assert not result.activated
    assert "staged" in result.notes[0]


def test_netskope_creates_a_missing_list_and_deploys(
    netskope: NetskopeFake, http_clients: list[httpx.Client]
) -> None:
    result = ns_target(netskope, http_clients).push(["a.example", "*.a.example"])

    created = netskope.by_name("SOAR Block")
    assert created is not None
    assert created["type"] == "exact"
    assert created["deployed"] == ["a.example", "*.a.example"]
    assert not created["pending"]
    assert result.activated
    assert result.destination == f"URL list SOAR Block (id {created['id']})"


def test_netskope_without_deploy_leaves_the_change_pending(
    netskope: NetskopeFake, http_clients: list[httpx.Client]
) -> None:
    netskope.add_list("SOAR Block", ["a.example"])
    result = ns_target(netskope, http_clients, deploy=False).push(
        ["a.example", "b.example"], previous=["a.example"]
    )

    item = netskope.by_name("SOAR Block")
    assert item is not None
    assert item["urls"] == ["a.example", "b.example"]
    assert item["pending"]
    assert item["deployed"] == ["a.example"]
    assert netskope.deploys == 0
    assert not result.activated
    assert "pending" in result.notes[0]


def test_netskope_deploy_names_other_pending_lists_it_also_applies(
    netskope: NetskopeFake, http_clients: list[httpx.Client]
) -> None:
    netskope.add_list("Someone else's", ["x.example"], pending=True)
    result = ns_target(netskope, http_clients).push(["a.example"])

    assert any("Someone else's" in note for note in result.notes)
    assert netskope.by_name("Someone else's")["deployed"] == ["x.example"]  # type: ignore[index]


def test_netskope_unchanged_list_is_not_deployed(
    netskope: NetskopeFake, http_clients: list[httpx.Client]
) -> None:
    netskope.add_list("SOAR Block", ["a.example"])
    netskope.add_list("Other", ["x.example"], pending=True)

    ns_target(netskope, http_clients).push(["a.example"], previous=["a.example"])

    assert netskope.deploys == 0
    assert netskope.by_name("Other")["pending"]  # type: ignore[index]


def test_netskope_removal_falls_back_to_replace_when_remove_is_missing(
    netskope: NetskopeFake, http_clients: list[httpx.Client]
) -> None:
    netskope.add_list("SOAR Block", ["a.example", "b.example", "manual.example"])
    netskope.support_remove = False

    result = ns_target(netskope, http_clients).push(["b.example"], previous=["a.example"])

    assert netskope.by_name("SOAR Block")["deployed"] == ["b.example", "manual.example"]  # type: ignore[index]
    assert result.removed == ("a.example",)
    assert [r.method for r in netskope.writes()] == ["PATCH", "PUT", "POST"]


# --- throttling, busy answers and authentication ----------------------------------------------


def test_zscaler_429_waits_as_the_body_says(zia: ZiaFake, http_clients: list[httpx.Client]) -> None:
    sleeps = Sleeps()
    body = {"message": "Rate Limit (1/SECOND) exceeded", "Retry-After": "7 seconds"}
    zia.fault_next(2, Fault(429, body))

    result = zia_target(zia, http_clients, sleeps).push([".a.example"])

    assert sleeps == [7.0, 7.0]
    assert zia.enforced("CUSTOM_01") == [".a.example"]
    assert result.activated


def test_netskope_429_honours_the_retry_after_header(
    netskope: NetskopeFake, http_clients: list[httpx.Client]
) -> None:
    sleeps = Sleeps()
    netskope.fault_next(1, Fault(429, {"status": "error"}, {"Retry-After": "3"}))

    ns_target(netskope, http_clients, sleeps).push(["a.example"])

    assert sleeps == [3.0]
    assert netskope.by_name("SOAR Block")["deployed"] == ["a.example"]  # type: ignore[index]


def test_endless_429_raises_a_typed_error_with_what_was_done(
    zia: ZiaFake, http_clients: list[httpx.Client]
) -> None:
    zia.fault_next(50, Fault(429, {"Retry-After": "1 seconds"}))

    with pytest.raises(PushRateLimitedError) as caught:
        zia_target(zia, http_clients).push([".a.example"])

    assert caught.value.status == 429
    assert caught.value.endpoint == "GET /api/v1/urlCategories/CUSTOM_01"
    assert caught.value.partial is not None
    assert caught.value.partial.added == ()
    assert zia.writes() == []


def test_zscaler_edit_lock_is_retried(zia: ZiaFake, http_clients: list[httpx.Client]) -> None:
    sleeps = Sleeps()
    zia.fault_next(1, Fault(409, {"code": "EDIT_LOCK_NOT_AVAILABLE", "message": "busy"}))

    zia_target(zia, http_clients, sleeps).push([".a.example"])

    assert len(sleeps) == 1
    assert zia.enforced("CUSTOM_01") == [".a.example"]


def test_wrong_zscaler_secret_is_a_typed_auth_error(
    zia: ZiaFake, http_clients: list[httpx.Client]
) -> None:
    with pytest.raises(PushAuthError) as caught:
        zia_target(zia, http_clients, client_secret="wrong").push([".a.example"])

    assert caught.value.endpoint == f"POST {TOKEN_URL}"
    assert caught.value.status == 401
    assert zia.api_requests() == []


def test_wrong_netskope_token_is_a_typed_auth_error_naming_the_endpoint(
    netskope: NetskopeFake, http_clients: list[httpx.Client]
) -> None:
    with pytest.raises(PushAuthError) as caught:
        ns_target(netskope, http_clients, api_token="wrong-token").push(["a.example"])

    assert (caught.value.status, caught.value.endpoint) == (401, "GET /api/v2/policy/urllist")
    assert netskope.writes() == []


def test_an_expired_zscaler_token_is_renewed_once(
    zia: ZiaFake, http_clients: list[httpx.Client]
) -> None:
    target = zia_target(zia, http_clients)
    target.push([".a.example"])
    zia.revoke_tokens()

    result = target.push([".a.example", ".b.example"], previous=[".a.example"])

    token_requests = [r for r in zia.requests if r.path == "/oauth2/v1/token"]
    assert len(token_requests) == 2
    assert result.added == (".b.example",)


def test_zscaler_works_with_a_session_opened_elsewhere(
    zia: ZiaFake, http_clients: list[httpx.Client]
) -> None:
    client = httpx.Client(transport=transport(zia), cookies={"JSESSIONID": zia.open_session()})
    http_clients.append(client)
    session = ApiSession("zscaler", ZIA_BASE, SessionCredentials(), http=client)

    ZscalerTarget("CUSTOM_01", session).push([".a.example"])

    assert zia.enforced("CUSTOM_01") == [".a.example"]
    assert not any(r.path.startswith("/oauth2/") for r in zia.requests)


def test_the_token_and_secret_never_reach_logs_results_or_errors(
    zia: ZiaFake,
    netskope: NetskopeFake,
    http_clients: list[httpx.Client],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    zia.fault_next(1, Fault(429, {"Retry-After": "0 seconds"}))
    target = zia_target(zia, http_clients)
    result = target.push([".a.example"])
    zia.revoke_tokens()
    target.push([".b.example"], previous=[".a.example"])
    with pytest.raises(PushAuthError) as caught:
        ns_target(netskope, http_clients, api_token="ns-wrong-token-value").push(["a.example"])

    secrets = [zia.client_secret, "ns-wrong-token-value", *zia.issued]
    shown = "\n".join(
        [
            caplog.text,
            json.dumps(result.as_dict()),
            str(caught.value),
            repr(target),
            repr(ZscalerSettings(ZIA_BASE, "CUSTOM_01", client_secret=zia.client_secret)),
            repr(NetskopeSettings(NS_BASE, "SOAR Block", api_token="ns-wrong-token-value")),
        ]
    )
    assert len(zia.issued) == 2
    assert all(secret not in shown for secret in secrets)
    assert "throttled" in caplog.text  # the log did record the calls


# --- dry runs ---------------------------------------------------------------------------------


def test_dry_run_sends_nothing_and_returns_the_plan(zia: ZiaFake, netskope: NetskopeFake) -> None:
    zscaler = ZscalerTarget("CUSTOM_01", None, dry_run=True, chunk_size=2)
    result = zscaler.push([".a.example", ".b.example", ".c.example", "bad value"])

    assert zia.requests == []
    assert result.dry_run
    assert result.mode == "full"
    assert [(r.method, r.path, r.values) for r in result.requests] == [
        ("PUT", "/api/v1/urlCategories/CUSTOM_01", (".a.example", ".b.example")),
        ("PUT", "/api/v1/urlCategories/CUSTOM_01?action=ADD_TO_LIST", (".c.example",)),
        ("POST", "/api/v1/status/activate", ()),
    ]
    assert [r.value for r in result.rejected] == ["bad value"]

    netskope_plan = NetskopeTarget("SOAR Block", None, dry_run=True, deploy=False).push(
        ["a.example", "c.example"], previous=["a.example", "b.example"]
    )
    assert netskope.requests == []
    assert [(r.method, r.path.rsplit("/", 1)[-1], r.values) for r in netskope_plan.requests] == [
        ("PATCH", "append", ("c.example",)),
        ("PATCH", "remove", ("b.example",)),
    ]


def test_dry_run_with_nothing_to_change_plans_nothing() -> None:
    result = ZscalerTarget("CUSTOM_01", None, dry_run=True).push(
        [".a.example"], previous=[".a.example"]
    )
    assert result.requests == ()
    assert not result.changed


# --- settings ---------------------------------------------------------------------------------


def test_settings_name_the_missing_key_and_dry_runs_need_no_secrets() -> None:
    with pytest.raises(PushConfigError) as caught:
        ZscalerSettings.from_env({"ZSCALER_CATEGORY_ID": "CUSTOM_01"})
    assert caught.value.endpoint == "ZSCALER_BASE_URL"

    with pytest.raises(PushConfigError) as caught:
        ZscalerSettings.from_env({"ZSCALER_CATEGORY_ID": "../etc"}, dry_run=True)
    assert caught.value.endpoint == "ZSCALER_CATEGORY_ID"

    with pytest.raises(PushConfigError) as caught:
        NetskopeSettings.from_env({"NETSKOPE_LIST_NAME": "a/b"}, dry_run=True)
    assert caught.value.endpoint == "NETSKOPE_LIST_NAME"

    with pytest.raises(PushConfigError) as caught:
        NetskopeSettings.from_env(
            {"NETSKOPE_LIST_NAME": "SOAR", "NETSKOPE_BASE_URL": "http://tenant.example"}
        )
    assert caught.value.endpoint == "NETSKOPE_BASE_URL"

    settings = NetskopeSettings.from_env(
        {"NETSKOPE_LIST_NAME": "SOAR Block", "NETSKOPE_DEPLOY": "yes"}, dry_run=True
    )
    assert settings.deploy
    assert settings.list_name == "SOAR Block"


def test_a_predefined_zscaler_category_is_refused(
    zia: ZiaFake, http_clients: list[httpx.Client]
) -> None:
    zia.add_category("CUSTOM_01", "Predefined", [".x.example"], custom=False)

    with pytest.raises(PushResponseError, match="predefined"):
        zia_target(zia, http_clients).push([".a.example"])
    assert zia.writes() == []


def test_a_netskope_regex_list_of_the_same_name_is_refused(
    netskope: NetskopeFake, http_clients: list[httpx.Client]
) -> None:
    netskope.add_list("SOAR Block", [r".*\.example"], kind="regex")

    with pytest.raises(PushResponseError, match="exact"):
        ns_target(netskope, http_clients).push(["a.example"])
    assert netskope.writes() == []


class StepClock:
    """Time that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_zscaler_writes_are_paced_and_reads_are_not(
    zia: ZiaFake, http_clients: list[httpx.Client]
) -> None:
    client = httpx.Client(transport=transport(zia))
    http_clients.append(client)
    clock = StepClock()
    settings = ZscalerSettings(
        ZIA_BASE,
        "CUSTOM_01",
        token_url=TOKEN_URL,
        client_id=zia.client_id,
        client_secret=zia.client_secret,
        chunk_size=1,
        write_interval=1.0,
    )
    target = ZscalerTarget.from_settings(settings, http=client, clock=clock, sleep=clock.sleep)

    target.push([".a.example", ".b.example", ".c.example"], previous=[])

    # Three additions and an activation: each write after the first waits one second.
    assert len(zia.writes()) == 4
    assert clock.sleeps == [1.0, 1.0, 1.0]


def test_an_incremental_push_to_a_deleted_list_recreates_it_in_full(
    netskope: NetskopeFake, http_clients: list[httpx.Client]
) -> None:
    result = ns_target(netskope, http_clients).push(
        ["a.example", "b.example"], previous=["a.example"]
    )

    assert netskope.by_name("SOAR Block")["deployed"] == ["a.example", "b.example"]  # type: ignore[index]
    assert result.mode == "full"
    assert "created in full" in result.notes[0]
