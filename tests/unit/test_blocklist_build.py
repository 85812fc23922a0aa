"""Sorting indicators into block, warn and allow lists with MDE's precedence rules."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import assume, given, settings

from pipeline.act.blocklist import (
    LIST_NAMES,
    Blocklists,
    CloudApp,
    ListName,
    build_blocklists,
    cloud_app_indicators,
)
from pipeline.indicators import Indicator, IndicatorAction, IndicatorType, parse_indicators
from tests.support.daemons import hostile_batches

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def ind(
    number: int,
    value: str,
    action: IndicatorAction = "Block",
    kind: IndicatorType = "DomainName",
    expires: datetime | None = None,
) -> Indicator:
    return Indicator(str(number), value, kind, action, expiration_time=expires)


def values(lists: Blocklists, name: ListName = "block") -> list[str]:
    return [entry.value for entry in lists.get(name).entries]


def reasons(lists: Blocklists) -> dict[str, str]:
    return {note.indicator_id: note.reason for note in (*lists.skipped, *lists.merged)}


@pytest.mark.parametrize(
    ("action", "list_name"),
    [
        ("Block", "block"),
        ("BlockAndRemediate", "block"),
        ("AlertAndBlock", "block"),
        ("Warn", "warn"),
        ("Allowed", "allow"),
    ],
)
def test_each_action_lands_in_its_list(action: IndicatorAction, list_name: ListName) -> None:
    lists = build_blocklists([ind(1, "evil.example", action)], NOW)

    assert values(lists, list_name) == ["evil.example"]
    assert sum(len(lists.get(n).entries) for n in LIST_NAMES) == 1


@pytest.mark.parametrize("action", ["Audit", "Alert"])
def test_alert_only_actions_are_skipped_with_the_reason(action: IndicatorAction) -> None:
    lists = build_blocklists([ind(1, "evil.example", action)], NOW)

    assert values(lists) == []
    assert "only raise alerts" in reasons(lists)["1"]


@pytest.mark.parametrize("kind", ["FileSha1", "FileSha256", "FileMd5", "CertificateThumbprint"])
def test_file_and_certificate_indicators_are_skipped_as_not_network_blockable(
    kind: IndicatorType,
) -> None:
    lists = build_blocklists([ind(1, "ab" * 20, kind=kind)], NOW)

    assert "antivirus engine" in reasons(lists)["1"]


def test_expired_indicators_are_dropped_at_their_expiry_time() -> None:
    lists = build_blocklists(
        [
            ind(1, "old.example", expires=NOW),
            ind(2, "live.example", expires=NOW.replace(year=2027)),
        ],
        NOW,
    )

    assert values(lists) == ["live.example"]
    assert reasons(lists)["1"].startswith("expired at 2026-06-01")


def test_allow_on_the_same_domain_wins_over_block_and_warn() -> None:
    lists = build_blocklists(
        [
            ind(1, "evil.example"),
            ind(2, "evil.example", "Warn"),
            ind(3, "Evil.Example.", "Allowed"),
        ],
        NOW,
    )

    assert values(lists) == values(lists, "warn") == []
    assert "Allow indicator 3" in reasons(lists)["1"]
    assert "Allow indicator 3" in reasons(lists)["2"]


def test_an_allowed_domain_covers_blocked_subdomains_and_urls_under_it() -> None:
    lists = build_blocklists(
        [
            ind(1, "a.ok.example"),
            ind(2, "https://ok.example/x", kind="Url"),
            ind(3, "ok.example", "Allowed"),
            ind(4, "notok.example"),
        ],
        NOW,
    )

    assert values(lists) == ["notok.example"]


def test_an_allow_inside_a_blocked_domain_becomes_an_exemption() -> None:
    lists = build_blocklists([ind(1, "evil.example"), ind(2, "ok.evil.example", "Allowed")], NOW)

    assert values(lists) == ["evil.example"]
    [exemption] = lists.block.exemptions
    assert (exemption.allowed.value, exemption.within.indicator_id) == ("ok.evil.example", "1")


def test_warn_on_the_same_value_wins_over_block() -> None:
    lists = build_blocklists([ind(1, "app.example"), ind(2, "app.example", "Warn")], NOW)

    assert values(lists) == []
    assert values(lists, "warn") == ["app.example"]
    assert "Warn indicator 2" in reasons(lists)["1"]


def test_covered_entries_and_duplicates_are_merged_into_the_covering_one() -> None:
    lists = build_blocklists(
        [
            ind(1, "evil.example"),
            ind(2, "www.evil.example"),
            ind(3, "http://cdn.evil.example/", kind="Url"),
            ind(4, "https://evil.example/login", kind="Url"),
            ind(5, "EVIL.example"),
            ind(6, "8.8.8.0/24", kind="IpAddress"),
            ind(7, "8.8.8.8", kind="IpAddress"),
        ],
        NOW,
    )

    assert values(lists) == ["evil.example", "8.8.8.0/24"]
    notes = reasons(lists)
    assert all("indicator 1" in notes[n] for n in "2345")
    assert "covered by indicator 6" in notes["7"]


def test_an_allowed_address_splits_a_blocked_network_around_it() -> None:
    lists = build_blocklists(
        [ind(1, "8.8.8.0/30", kind="IpAddress"), ind(2, "8.8.8.1", "Allowed", "IpAddress")], NOW
    )

    assert values(lists) == ["8.8.8.0", "8.8.8.2/31"]
    assert {entry.indicator_id for entry in lists.block.entries} == {"1"}


def test_a_host_url_and_a_domain_on_the_same_name_do_not_cancel_an_allow() -> None:
    # Allowing exactly host evil.example (a URL without a path) leaves its subdomains blocked.
    lists = build_blocklists(
        [ind(1, "evil.example"), ind(2, "http://evil.example/", "Allowed", "Url")], NOW
    )

    assert values(lists) == ["evil.example"]
    assert [x.allowed.kind for x in lists.block.exemptions] == ["host"]


def test_rejected_values_carry_id_and_reason_and_parser_rejections_pass_through() -> None:
    parsed = parse_indicators([{"id": "9"}])
    lists = build_blocklists([ind(1, "bad\nname.example")], NOW, parsed.rejected)

    assert [(r.indicator_id, r.value) for r in lists.rejected] == [
        ("9", ""),
        ("1", "bad\nname.example"),
    ]


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build_blocklists([], datetime(2026, 1, 1))


def test_cloud_apps_become_block_or_warn_domain_indicators() -> None:
    apps = [
        CloudApp("1", "Mega", ("Unsanctioned",), ("mega.nz", "*.mega.co.nz")),
        CloudApp("2", "Box", ("Monitored",), ("box.com",)),
        CloudApp("3", "Teams", ("Sanctioned",), ("teams.microsoft.com",)),
    ]

    lists = build_blocklists(cloud_app_indicators(apps), NOW)

    assert values(lists) == ["mega.co.nz", "mega.nz"]
    assert values(lists, "warn") == ["box.com"]
    assert {entry.application for entry in lists.block.entries} == {"Mega"}


@settings(max_examples=150, deadline=None)
@given(records=hostile_batches())
def test_every_indicator_is_accounted_for_exactly_once(records: list[object]) -> None:
    parsed = parse_indicators(records)
    ids_in = [i.id for i in parsed.indicators] + [r.indicator_id for r in parsed.rejected]
    assume(len(set(ids_in)) == len(ids_in))

    lists = build_blocklists(parsed.indicators, NOW, parsed.rejected)

    # A split network yields several entries of one indicator, so count indicators, not entries.
    placed = [
        indicator_id
        for name in LIST_NAMES
        for indicator_id in {e.indicator_id for e in lists.get(name).entries}
    ]
    left_out = [note.indicator_id for note in (*lists.skipped, *lists.merged)]
    left_out += [rejected.indicator_id for rejected in lists.rejected]
    assert Counter(placed + left_out) == Counter(ids_in)
