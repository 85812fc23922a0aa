"""Publishing ``MdeBlockedResources`` against a local server that speaks the Watchlists API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.exceptions import ClientAuthenticationError

from pipeline.act.blocklist import Blocklists, build_blocklists
from pipeline.act.watchlist import (
    WatchlistApiError,
    WatchlistAuthError,
    WatchlistConfigError,
    WatchlistResponseError,
    WatchlistSettings,
    WatchlistTooLargeError,
    WatchlistTransportError,
    publish_watchlist,
)
from pipeline.detect.matcher import BlocklistIndex
from pipeline.indicators import Indicator, IndicatorAction, IndicatorType
from tests.support.detections import rules
from tests.support.rule_cases import RuleCase, run_case
from tests.support.watchlist_server import TOKEN, Fault, SentinelWatchlistsFake, serve

pytestmark = pytest.mark.integration

NOW = datetime(2026, 6, 1, tzinfo=UTC)
WORKSPACE = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-sec"
    "/providers/Microsoft.OperationalInsights/workspaces/log-sec"
)
ALIAS = "MdeBlockedResources"
RULE = "passive-device-reached-blocked-resource-network-events"
RULE_NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


class Credential:
    """Hands out the fake's token and remembers the scopes asked for."""

    def __init__(self, fail: bool = False) -> None:
        self.scopes: list[tuple[str, ...]] = []
        self.fail = fail

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        if self.fail:
            raise ClientAuthenticationError("ManagedIdentityCredential: no identity endpoint")
        return AccessToken(TOKEN, int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo(self.get_token(*scopes).token, int(time.time()) + 3600)


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def ind(
    number: int,
    value: str,
    kind: IndicatorType = "DomainName",
    action: IndicatorAction = "Block",
    app: str | None = None,
) -> Indicator:
    return Indicator(str(number), value, kind, action, application=app)


def lists(*indicators: Indicator) -> Blocklists:
    return build_blocklists(list(indicators), NOW)


BASELINE = lists(
    ind(1, "evil.example"),
    ind(2, "8.8.4.4", "IpAddress"),
    ind(3, "chat.example", action="Warn", app="Chatty, Inc."),
    ind(4, "https://site.example/login", "Url"),
)


@pytest.fixture
def fake() -> SentinelWatchlistsFake:
    return SentinelWatchlistsFake(page_size=2)


@pytest.fixture
def base_url(fake: SentinelWatchlistsFake) -> Iterator[str]:
    with serve(fake) as url:
        yield url


def settings(base_url: str, **changes: Any) -> WatchlistSettings:
    return WatchlistSettings(workspace_resource_id=WORKSPACE, management_url=base_url, **changes)


def values(fake: SentinelWatchlistsFake) -> list[tuple[str, ...]]:
    return sorted(
        (r["Value"], r["Type"], r["IndicatorId"], r["Action"], r["App"])
        for r in fake.rows(WORKSPACE, ALIAS)
    )


def test_the_first_publication_creates_the_watchlist_with_one_item_per_row(
    fake: SentinelWatchlistsFake, base_url: str
) -> None:
    credential = Credential()

    result = publish_watchlist(BASELINE, settings(base_url), credential)

    assert values(fake) == [
        ("8.8.4.4", "ip", "2", "Block", ""),
        ("chat.example", "domain", "3", "Warn", "Chatty, Inc."),
        ("evil.example", "domain", "1", "Block", ""),
    ]
    assert (result.mode, result.rows, result.added, result.removed) == ("created", 3, 3, 0)
    assert [o.indicator_id for o in result.not_representable] == ["4"]
    assert credential.scopes == [("https://management.azure.com/.default",)]
    put = fake.calls("PUT")[0]
    assert put.path == f"{WORKSPACE}/providers/Microsoft.SecurityInsights/watchlists/{ALIAS}"
    properties = put.body["properties"]
    assert properties["itemsSearchKey"] == "Value"
    assert properties["source"] == "Local file"
    assert properties["numberOfLinesToSkip"] == 0
    assert result.requests[-1].status == 201
    assert result.requests[-1].request_id is not None


def test_publishing_the_same_lists_again_changes_nothing(
    fake: SentinelWatchlistsFake, base_url: str
) -> None:
    publish_watchlist(BASELINE, settings(base_url), Credential())
    ids = fake.item_ids(WORKSPACE, ALIAS)

    again = publish_watchlist(BASELINE, settings(base_url), Credential())

    assert fake.item_ids(WORKSPACE, ALIAS) == ids
    assert (again.mode, again.added, again.removed, again.changed) == ("updated", 0, 0, False)
    assert fake.calls("DELETE") == []


def test_removed_and_changed_indicators_leave_the_watchlist(
    fake: SentinelWatchlistsFake, base_url: str
) -> None:
    publish_watchlist(BASELINE, settings(base_url), Credential())
    changed = lists(
        ind(1, "evil.example"),
        ind(3, "chat.example", action="Warn", app="Chatty Corp"),
        ind(5, "9.9.9.9", "IpAddress"),
    )

    result = publish_watchlist(changed, settings(base_url), Credential())

    # A PUT alone would have kept 8.8.4.4 and a second chat.example row.
    assert values(fake) == [
        ("9.9.9.9", "ip", "5", "Block", ""),
        ("chat.example", "domain", "3", "Warn", "Chatty Corp"),
        ("evil.example", "domain", "1", "Block", ""),
    ]
    assert (result.added, result.removed, result.failed_deletes) == (2, 2, ())


def test_many_stale_items_recreate_the_watchlist_instead(
    fake: SentinelWatchlistsFake, base_url: str
) -> None:
    publish_watchlist(BASELINE, settings(base_url), Credential())

    result = publish_watchlist(
        lists(ind(9, "new.example")), settings(base_url, max_item_deletes=1), Credential()
    )

    assert values(fake) == [("new.example", "domain", "9", "Block", "")]
    assert result.mode == "recreated"
    deletes = fake.calls("DELETE")
    assert [d.path.rsplit("/", 1)[-1] for d in deletes] == [ALIAS]


def test_an_item_the_service_will_not_delete_is_reported_and_the_rest_goes_on(
    fake: SentinelWatchlistsFake, base_url: str
) -> None:
    publish_watchlist(BASELINE, settings(base_url), Credential())
    fake.fault_next(
        1, Fault(400, {"error": {"code": "BadRequest", "message": "locked"}}, {}, "DELETE")
    )

    result = publish_watchlist(lists(ind(9, "new.example")), settings(base_url), Credential())

    assert len(result.failed_deletes) == 1
    assert "HTTP 400 BadRequest: locked" in result.failed_deletes[0].error
    assert result.removed == 2
    assert ("new.example", "domain", "9", "Block", "") in values(fake)
    assert len(values(fake)) == 2


def test_throttling_is_waited_out_as_retry_after_says(
    fake: SentinelWatchlistsFake, base_url: str
) -> None:
    fake.fault_next(2, Fault(429, {"error": {"code": "TooManyRequests"}}, {"Retry-After": "7"}))
    sleeps = Sleeps()

    result = publish_watchlist(BASELINE, settings(base_url), Credential(), sleep=sleeps)

    assert sleeps.waits == [7.0, 7.0]
    assert result.mode == "created"
    assert len(values(fake)) == 3


def test_a_server_error_is_retried_and_then_named(
    fake: SentinelWatchlistsFake, base_url: str
) -> None:
    fake.fault_next(3, Fault(503, {"error": {"code": "ServiceUnavailable", "message": "busy"}}))

    with pytest.raises(WatchlistApiError) as raised:
        publish_watchlist(BASELINE, settings(base_url), Credential(), sleep=Sleeps())

    assert raised.value.status == 503
    assert raised.value.code == "ServiceUnavailable"
    assert "GET watchlists/MdeBlockedResources/watchlistItems" in str(raised.value)
    assert fake.calls("PUT") == []


def test_a_missing_role_is_an_auth_error_naming_status_and_code(
    fake: SentinelWatchlistsFake, base_url: str
) -> None:
    denied = {"error": {"code": "AuthorizationFailed", "message": "no watchlists/write"}}
    fake.fault_next(1, Fault(403, denied, method="PUT"))

    with pytest.raises(WatchlistAuthError) as raised:
        publish_watchlist(BASELINE, settings(base_url), Credential())

    assert raised.value.status == 403
    assert "AuthorizationFailed" in str(raised.value)
    assert TOKEN not in str(raised.value)


def test_a_credential_that_fails_is_an_auth_error_before_any_call(
    fake: SentinelWatchlistsFake, base_url: str
) -> None:
    with pytest.raises(WatchlistAuthError, match=r"no token for https://management\.azure\.com"):
        publish_watchlist(BASELINE, settings(base_url), Credential(fail=True))

    assert fake.calls() == []


def test_a_refused_connection_is_retried_then_a_transport_error() -> None:
    sleeps = Sleeps()
    closed = WatchlistSettings(WORKSPACE, management_url="http://127.0.0.1:1")

    with pytest.raises(WatchlistTransportError, match="ConnectError after 3 tries"):
        publish_watchlist(BASELINE, closed, Credential(), sleep=sleeps)

    assert sleeps.waits == [1.0, 2.0]


def test_a_list_too_large_for_raw_content_is_refused_before_anything_is_sent(
    fake: SentinelWatchlistsFake, base_url: str
) -> None:
    with pytest.raises(WatchlistTooLargeError) as raised:
        publish_watchlist(BASELINE, settings(base_url, max_bytes=60), Credential())

    assert raised.value.limit == 60
    assert raised.value.size > 60
    assert fake.calls() == []


def test_a_dry_run_sends_nothing_and_needs_no_credential(
    fake: SentinelWatchlistsFake, base_url: str
) -> None:
    result = publish_watchlist(BASELINE, settings(base_url, dry_run=True), None)

    assert fake.calls() == []
    assert result.mode == "dry-run"
    assert result.rows == 3
    assert result.content.startswith("Value,Type,IndicatorId,Action,App\r\n")
    assert [(r.method, r.status) for r in result.requests] == [("PUT", None)]


def test_without_a_workspace_nothing_is_published() -> None:
    result = publish_watchlist(BASELINE, WatchlistSettings.from_env({}), None)

    assert result.mode == "not-configured"
    assert result.requests == ()


def test_a_live_publication_without_a_credential_is_a_config_error(base_url: str) -> None:
    with pytest.raises(WatchlistConfigError, match="credential"):
        publish_watchlist(BASELINE, settings(base_url), None)


def test_a_next_link_to_another_host_is_not_followed(
    fake: SentinelWatchlistsFake, base_url: str
) -> None:
    publish_watchlist(BASELINE, settings(base_url), Credential())
    fake.next_link_base = "http://127.0.0.2:9"

    with pytest.raises(WatchlistResponseError, match="nextLink"):
        publish_watchlist(BASELINE, settings(base_url), Credential())

    assert len(values(fake)) == 3


def test_the_result_summary_holds_no_csv_and_no_token(base_url: str) -> None:
    result = publish_watchlist(BASELINE, settings(base_url), Credential())

    summary = str(result.as_dict())

    assert TOKEN not in summary
    assert "evil.example" not in summary
    assert result.as_dict()["rows"] == 3


# -- the rule reads what was published, and agrees with the streaming matcher ----------------

CONNECTIONS = [
    ("https://files.evil.example/x", "192.0.2.10"),
    ("evil.example:8443", "192.0.2.10"),
    ("https://notevil.example/", "192.0.2.10"),
    ("https://chat.example/", "192.0.2.10"),
    ("", "8.8.4.4"),
    ("", "::ffff:8.8.4.4"),
    ("", "8.8.4.40"),
    ("https://site.example/login", "192.0.2.10"),  # a URL indicator with a path: not listed
]


def test_the_rule_over_the_published_rows_matches_what_the_streaming_matcher_matches(
    fake: SentinelWatchlistsFake, base_url: str
) -> None:
    publish_watchlist(BASELINE, settings(base_url), Credential())
    rule = next(r for r in rules() if r.path.stem == RULE)
    events = [
        {
            "TimeGenerated": "-10m",
            "DeviceId": f"d{number}",
            "DeviceName": f"pc{number}",
            "ActionType": "ConnectionSuccess",
            "RemoteUrl": url,
            "RemoteIP": address,
        }
        for number, (url, address) in enumerate(CONNECTIONS)
    ]
    coverage = [
        {"TimeGenerated": "-1h", "DeviceId": f"d{number}", "AvModeCode": "1"}
        for number in range(len(CONNECTIONS))
    ]
    case = RuleCase(
        name="published watchlist",
        fires=True,
        tables={"DeviceNetworkEvents": events, "MdeAvCoverage_CL": coverage},
        watchlists={ALIAS: fake.rows(WORKSPACE, ALIAS)},
    )

    fired = {(row["DeviceId"], row["MatchedValue"]) for row in run_case(rule.query, case, RULE_NOW)}

    index = BlocklistIndex.from_blocklists(BASELINE)
    expected = {
        (f"d{number}", match.value)
        for number, (url, address) in enumerate(CONNECTIONS)
        for match in index.matches(url, address)
    }
    assert fired == expected
    assert ("d0", "evil.example") in fired
    assert ("d5", "8.8.4.4") in fired
