"""Each format writes what it can express and reports the rest, in the syntax its reader expects."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from pipeline.act.blocklist import (
    FORMATS,
    Blocklists,
    Rendered,
    RenderOptions,
    build_blocklists,
    render,
)
from pipeline.indicators import Indicator, IndicatorAction, IndicatorType

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def ind(
    number: int, value: str, kind: IndicatorType = "DomainName", action: IndicatorAction = "Block"
) -> Indicator:
    return Indicator(str(number), value, kind, action)


@pytest.fixture
def lists() -> Blocklists:
    return build_blocklists(
        [
            ind(1, "evil.example"),
            ind(2, "ok.evil.example", action="Allowed"),
            ind(3, "http://host.example/", "Url"),
            ind(4, "https://site.example/login", "Url"),
            ind(5, "8.8.8.8", "IpAddress"),
            ind(6, "2001:4860::8888", "IpAddress"),
            ind(7, "monitored.example", action="Warn"),
        ],
        NOW,
    )


def body(rendered: Rendered) -> list[str]:
    return [line for line in rendered.content.splitlines() if not line.startswith(("#", ";"))]


def omitted(rendered: Rendered) -> dict[str, str]:
    return {o.indicator_id: o.reason for o in rendered.not_representable}


def test_squid_domains_use_the_dot_form_for_domains_and_bare_names_for_hosts(
    lists: Blocklists,
) -> None:
    rendered = render(lists, "squid-domains")

    assert body(rendered) == [".evil.example", "host.example"]
    assert "path" in omitted(rendered)["4"]
    assert rendered.elsewhere == 2


def test_squid_allow_list_holds_the_exempted_domain(lists: Blocklists) -> None:
    assert body(render(lists, "squid-domains", "allow")) == [".ok.evil.example"]


def test_squid_ips_hold_addresses_only(lists: Blocklists) -> None:
    rendered = render(lists, "squid-ips")

    assert body(rendered) == ["8.8.8.8", "2001:4860::8888"]
    assert rendered.elsewhere == 3


def test_unbound_blocks_the_domain_and_exempts_the_allowed_subdomain(lists: Blocklists) -> None:
    rendered = render(lists, "unbound")

    assert body(rendered) == [
        "server:",
        '    local-zone: "evil.example." always_nxdomain',
        '    local-zone: "ok.evil.example." always_transparent',
    ]
    assert "one host" in omitted(rendered)["3"]


def test_rpz_writes_triggers_relative_to_the_origin_with_the_serial(lists: Blocklists) -> None:
    rendered = render(lists, "rpz", options=RenderOptions(rpz_serial=42, rpz_ttl=60))

    assert body(rendered) == [
        "$TTL 60",
        "@ IN SOA localhost. hostmaster.localhost. 42 3600 600 86400 60",
        "@ IN NS localhost.",
        "*.evil.example CNAME .",
        "*.ok.evil.example CNAME rpz-passthru.",
        "evil.example CNAME .",
        "host.example CNAME .",
        "ok.evil.example CNAME rpz-passthru.",
    ]


def test_rpz_serial_defaults_to_the_build_time(lists: Blocklists) -> None:
    assert f" {int(NOW.timestamp())} " in render(lists, "rpz").content


def test_rpz_exempting_the_apex_replaces_its_block_trigger() -> None:
    lists = build_blocklists(
        [ind(1, "evil.example"), ind(2, "http://evil.example/", "Url", "Allowed")], NOW
    )

    triggers = body(render(lists, "rpz"))[3:]

    assert triggers == ["*.evil.example CNAME .", "evil.example CNAME rpz-passthru."]


def test_rpz_refuses_names_that_would_read_as_another_trigger_type() -> None:
    lists = build_blocklists([ind(1, "32.8.8.8.8.rpz-ip.example")], NOW)

    rendered = render(lists, "rpz")

    assert body(rendered)[3:] == []
    assert "rpz-" in omitted(rendered)["1"]


def test_dnsmasq_uses_local_only_servers_and_hash_for_exemptions(lists: Blocklists) -> None:
    assert body(render(lists, "dnsmasq")) == ["server=/evil.example/", "server=/ok.evil.example/#"]


def test_hosts_lists_exact_names_and_reports_uncovered_subdomains(lists: Blocklists) -> None:
    rendered = render(lists, "hosts")

    assert body(rendered) == ["0.0.0.0 evil.example", "0.0.0.0 host.example"]
    assert [p.indicator_id for p in rendered.partial] == ["1"]


def test_edl_urls_end_hosts_with_a_slash_and_keep_paths(lists: Blocklists) -> None:
    rendered = render(lists, "edl-urls")

    assert rendered.content.splitlines() == [
        "evil.example/",
        "*.evil.example/",
        "host.example/",
        "site.example/login",
    ]
    assert "cannot exempt" in omitted(rendered)["2"]


def test_edl_ips_are_bare_lines(lists: Blocklists) -> None:
    assert render(lists, "edl-ips").content == "8.8.8.8\n2001:4860::8888\n"


def test_windows_firewall_script_quotes_each_address_and_chunks_rules(lists: Blocklists) -> None:
    rendered = render(lists, "windows-firewall", options=RenderOptions(rule_chunk=1))

    assert "    '8.8.8.8'" in rendered.content.splitlines()
    assert "    '2001:4860::8888'" in rendered.content.splitlines()
    assert "$start += 1)" in rendered.content
    assert "-Direction Outbound" in rendered.content
    assert "-Action Block" in rendered.content


def test_azure_firewall_has_network_rules_for_ipv4_and_application_rules_for_names(
    lists: Blocklists,
) -> None:
    rendered = render(lists, "azure-firewall", options=RenderOptions(rule_chunk=2))
    document = json.loads(rendered.content)
    network, application = document["properties"]["ruleCollections"]

    assert network["action"] == application["action"] == {"type": "Deny"}
    assert [r["destinationAddresses"] for r in network["rules"]] == [["8.8.8.8"]]
    assert [r["targetFqdns"] for r in application["rules"]] == [
        ["evil.example", "*.evil.example"],
        ["host.example"],
    ]
    assert "IPv4" in omitted(rendered)["6"]
    assert "path" in omitted(rendered)["4"]


def test_the_warn_and_allow_lists_render_in_every_format(lists: Blocklists) -> None:
    for fmt in FORMATS:
        warn = render(lists, fmt, "warn")
        assert warn.list_name == "warn"
        assert ("monitored.example" in warn.content) == (fmt not in _ADDRESS_FORMATS), fmt


def test_azure_firewall_allow_list_uses_allow_rules(lists: Blocklists) -> None:
    document = json.loads(render(lists, "azure-firewall", "allow").content)

    assert [c["action"]["type"] for c in document["properties"]["ruleCollections"]] == ["Allow"]


def test_an_empty_list_renders_valid_empty_files() -> None:
    lists = build_blocklists([], NOW)

    assert render(lists, "edl-urls").content == ""
    assert (
        json.loads(render(lists, "azure-firewall").content)["properties"]["ruleCollections"] == []
    )
    assert body(render(lists, "unbound")) == ["server:"]


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown blocklist format"):
        render(build_blocklists([], NOW), "bind9")  # type: ignore[arg-type]


_ADDRESS_FORMATS = {"squid-ips", "edl-ips", "windows-firewall"}
