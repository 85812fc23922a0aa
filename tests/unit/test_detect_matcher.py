"""The blocklist index: the rule's matching semantics, Allow precedence, and a reference check."""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.act.blocklist import Entry, build_blocklists
from pipeline.detect.matcher import (
    BlocklistIndex,
    EntriesDocumentError,
    entries_document,
    host_of,
    index_from_document,
)
from pipeline.indicators import Indicator

NOW = datetime(2026, 12, 3, tzinfo=UTC)


def domain(value: str, indicator: str = "1", action: str = "Block", app: str | None = None):
    return Entry("domain", value, value, indicator, action, app)  # type: ignore[arg-type]


def host(value: str, indicator: str = "2", action: str = "Block") -> Entry:
    return Entry("host", value, value, indicator, action)  # type: ignore[arg-type]


def ip(value: str, indicator: str = "3", action: str = "Block") -> Entry:
    network = ipaddress.ip_network(value)
    return Entry("ip", value, value, indicator, action, network=network)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://Files.Evil.Example./download?x=1", "files.evil.example"),
        ("evil.example:8443", "evil.example"),
        ("evil.example", "evil.example"),
        ("http://evil.example#frag", "evil.example"),
        ("evil.example?q=http://x", "evil.example"),
        ("HTTP://EVIL.EXAMPLE/a", "evil.example"),
        ("/just/a/path", ""),
    ],
)
def test_host_is_taken_as_the_rule_takes_it(url: str, expected: str) -> None:
    assert host_of(url) == expected


@pytest.mark.parametrize(
    ("url", "matched"),
    [
        ("evil.example", True),
        ("a.b.evil.example", True),
        ("https://WWW.Evil.Example.:443/x", True),
        ("notevil.example", False),
        ("evil.example.attacker.test", False),
        ("example", False),
    ],
)
def test_a_domain_matches_itself_and_every_subdomain(url: str, matched: bool) -> None:
    index = BlocklistIndex([domain("evil.example")])

    assert bool(index.matches(url, None)) == matched


def test_a_host_entry_matches_that_host_only() -> None:
    index = BlocklistIndex([host("cdn.example.net")])

    assert index.matches("https://cdn.example.net/a", None)[0].type == "url"
    assert index.matches("x.cdn.example.net", None) == ()
    assert index.matches("example.net", None) == ()


@pytest.mark.parametrize(
    ("address", "matched"),
    [
        ("203.0.113.7", True),
        ("::ffff:203.0.113.7", True),
        ("::FFFF:203.0.113.7", True),
        ("203.0.113.70", False),
        ("203.0.113.6", False),
    ],
)
def test_an_ip_entry_matches_that_exact_address(address: str, matched: bool) -> None:
    index = BlocklistIndex([ip("203.0.113.7")])

    assert bool(index.matches(None, address)) == matched


def test_ipv6_is_compared_in_canonical_form() -> None:
    index = BlocklistIndex([ip("2001:db8::7")])

    assert index.matches(None, "2001:DB8:0:0:0:0:0:7")
    assert not index.matches(None, "2001:db8::8")


def test_host_and_address_can_both_match() -> None:
    index = BlocklistIndex([domain("evil.example", "1"), ip("203.0.113.7", "3")])

    found = index.matches("https://evil.example/", "203.0.113.7")

    assert [(m.type, m.indicator_id) for m in found] == [("domain", "1"), ("ip", "3")]


def test_the_most_specific_entry_is_reported() -> None:
    index = BlocklistIndex([domain("evil.example", "1"), domain("files.evil.example", "2")])

    assert index.matches("a.files.evil.example", None)[0].indicator_id == "2"
    assert index.matches("b.evil.example", None)[0].indicator_id == "1"


def test_allow_wins_over_block() -> None:
    index = BlocklistIndex(
        [domain("evil.example"), domain("blocked.good.example"), ip("203.0.113.7"), host("h.x.io")],
        [
            domain("safe.evil.example", "9", "Allowed"),
            domain("good.example", "8", "Allowed"),
            ip("203.0.113.7", "7", "Allowed"),
            host("h.x.io", "6", "Allowed"),
        ],
    )

    assert index.matches("evil.example", None)
    assert index.matches("www.safe.evil.example", None) == ()  # allowed inside a blocked domain
    assert index.matches("blocked.good.example", None) == ()  # a broader Allow covers the block
    assert index.matches(None, "203.0.113.7") == ()
    assert index.matches("h.x.io", None) == ()
    assert {o.value for o in index.overridden} == {"blocked.good.example", "203.0.113.7", "h.x.io"}


def test_url_and_range_entries_are_not_matched_and_say_why() -> None:
    url = Entry("url", "evil.example/path", "evil.example", "4", "Block")
    network = Entry(
        "network", "198.51.100.0/24", "198.51.100.0/24", "5", "Block",
        network=ipaddress.ip_network("198.51.100.0/24"),
    )  # fmt: skip

    index = BlocklistIndex([url, network])

    assert index.matches("https://evil.example/path", "198.51.100.9") == ()
    assert [(u.indicator_id, u.reason.split(";")[0]) for u in index.unmatched] == [
        ("4", "a URL with a path or port"),
        ("5", "an address range"),
    ]


def test_warn_entries_and_unsanctioned_apps_carry_their_action_and_app() -> None:
    lists = build_blocklists(
        [
            Indicator("w1", "monitored.example", "DomainName", "Warn", application="Box"),
            Indicator("b1", "drive.example", "DomainName", "Block", application="Drive"),
        ],
        NOW,
    )
    index = BlocklistIndex.from_blocklists(lists)

    assert index.matches("monitored.example", None)[0].action == "Warn"
    assert index.matches("x.drive.example", None)[0].app == "Drive"


def test_the_entries_document_round_trips() -> None:
    lists = build_blocklists(
        [
            Indicator("1", "evil.example", "DomainName", "Block"),
            Indicator("2", "safe.evil.example", "DomainName", "Allowed"),
            Indicator("3", "93.184.216.34", "IpAddress", "BlockAndRemediate"),
            Indicator("4", "https://cdn.example.net/", "Url", "Block"),
        ],
        NOW,
    )

    rebuilt = index_from_document(entries_document(lists))

    assert rebuilt.size == BlocklistIndex.from_blocklists(lists).size == 3
    assert rebuilt.matches("a.evil.example", None)[0].indicator_id == "1"
    assert rebuilt.matches("safe.evil.example", None) == ()
    assert rebuilt.matches(None, "93.184.216.34")[0].action == "BlockAndRemediate"
    assert rebuilt.matches("cdn.example.net", None)[0].type == "url"


@pytest.mark.parametrize(
    "document",
    [
        {"schema": "other"},
        {"schema": "blocklist-entries/1", "block": {}},
        {"schema": "blocklist-entries/1", "block": [{"kind": "zone", "value": "x"}]},
        {"schema": "blocklist-entries/1", "block": [{"kind": "ip", "value": "not-ip"}]},
    ],
)
def test_a_foreign_entries_document_is_refused(document: object) -> None:
    with pytest.raises(EntriesDocumentError):
        index_from_document(document)


# -- the index agrees with a plain reading of the rule ---------------------------------------------

LABELS = st.sampled_from(["a", "b", "evil", "good", "x1", "co", "uk", "example"])
NAMES = st.lists(LABELS, min_size=2, max_size=4).map(".".join)
SCHEMES = st.sampled_from(["", "https://", "http://"])
ENDINGS = st.sampled_from(["", "/p", ":8443", "."])


def reference(entries: list[Entry], allowed: list[Entry], url: str) -> set[str]:
    """The rule's join, written the slow way: the host and each parent against each entry."""
    found = re.match(r"(?:[A-Za-z][A-Za-z0-9+.\-]*://)?([^/:?#]+)", url)
    name = found.group(1).rstrip(".").lower() if found else ""
    parents = {".".join(name.split(".")[i:]) for i in range(len(name.split(".")))}
    if any(a.value in parents for a in allowed):
        return set()
    hits = {e.value for e in entries if e.value in parents}
    # The index reports the most specific entry; the rule reports each one. Same decision.
    return {max(hits, key=len)} if hits else set()


@settings(max_examples=300, deadline=None)
@given(
    blocked=st.lists(NAMES, max_size=6, unique=True),
    allowed=st.lists(NAMES, max_size=2, unique=True),
    url=st.tuples(SCHEMES, NAMES, ENDINGS).map("".join),
)
def test_the_index_decides_as_the_rule_reads(
    blocked: list[str], allowed: list[str], url: str
) -> None:
    entries = [domain(name, str(i)) for i, name in enumerate(blocked)]
    allow = [domain(name, f"a{i}", "Allowed") for i, name in enumerate(allowed)]

    got = {m.value for m in BlocklistIndex(entries, allow).matches(url, None)}

    assert got == reference(entries, allow, url)


ODD_SCHEMES = st.sampled_from(
    ["", "https://", "http://", "HTTPS://", "ftp://", "h://", "://", "https:/", "1http://"]
)
ODD_PARTS = st.sampled_from(["", "/p", ":8443", ".", "?q=http://x", "#f", "@evil.example", "/a:b"])
ODD_LABELS = st.sampled_from(["evil", "example", "localhost", "a", "", "EVIL", "[::1]", "u:p@x"])


@settings(max_examples=400, deadline=None)
@given(
    blocked=st.lists(NAMES, max_size=5, unique=True),
    exact=st.lists(
        st.sampled_from(["localhost", "a.evil.example", "x", "evil.example"]), max_size=3
    ),
    url=st.tuples(
        ODD_SCHEMES,
        st.lists(ODD_LABELS, min_size=1, max_size=4).map(".".join),
        ODD_PARTS,
    ).map("".join),
)
def test_the_fast_host_path_answers_as_the_expression_does(
    blocked: list[str], exact: list[str], url: str
) -> None:
    # matches() splits the usual URL shapes by hand and skips hosts whose last two labels are
    # not in the index; host_of() and match_host() are the plain, slow reading of the same.
    entries = [domain(name, str(i)) for i, name in enumerate(blocked)]
    entries += [host(name, f"h{i}") for i, name in enumerate(dict.fromkeys(exact))]
    index = BlocklistIndex(entries)

    slow = index.match_host(host_of(url)) if host_of(url) else None

    assert index.matches(url, None) == (() if slow is None else (slow,))
