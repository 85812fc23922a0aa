"""Every network indicator value normalised to one canonical, safe entry, or refused."""

from __future__ import annotations

import pytest

from pipeline.act.blocklist import Entry, NormaliseError, normalise
from pipeline.indicators import Indicator, IndicatorType


def entry(value: str, kind: IndicatorType) -> Entry:
    return normalise(Indicator(id="7", value=value, type=kind, action="Block"))


def refusal(value: str, kind: IndicatorType) -> str:
    with pytest.raises(NormaliseError) as caught:
        entry(value, kind)
    assert caught.value.indicator_id == "7"
    return caught.value.reason


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("Evil.Example", "evil.example"),
        ("evil.example.", "evil.example"),
        ("  evil.example \n", "evil.example"),
        ("Bücher.example", "xn--bcher-kva.example"),
        ("ｅｘａｍｐｌｅ。com", "example.com"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("_dmarc.evil.example", "_dmarc.evil.example"),
        ("a-b.c-d.example", "a-b.c-d.example"),
    ],
)
def test_domains_are_lower_case_punycode_without_trailing_dot(raw: str, canonical: str) -> None:
    assert entry(raw, "DomainName") == Entry(
        kind="domain", value=canonical, host=canonical, indicator_id="7", action="Block"
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("*.evil.example", "wildcards"),
        ("com", "single-label"),
        ("8.8.8.8", "IP address"),
        ("1.2.3", "IP address"),
        ("evil..example", "label"),
        ("-evil.example", "label"),
        ("evil-.example", "label"),
        ("a" * 64 + ".example", "label"),
        (".".join(["abcdefghi"] * 26), "longer than 253"),
        ("evil.example/path", "no scheme, port, path"),
        ("evil.example:80", "no scheme, port, path"),
        ("evil\n.example", "control"),
        ("evil.example\nhttp_access allow all", "control"),
        ("evil\x00.example", "control"),
        ("evil\u2028.example", "control"),
        ("evil .example", "space"),
        ('evil".example', "label"),
        ("evil;rm.example", "label"),
        ("evil#x.example", "no scheme, port, path"),
        ("evil$x.example", "label"),
        ("evil\\x.example", "label"),
        ("xn--zz.example", "punycode"),
        ("\u0301x.example", "internationalised"),
    ],
)
def test_bad_domains_are_refused_with_the_reason(raw: str, reason: str) -> None:
    assert reason in refusal(raw, "DomainName")


@pytest.mark.parametrize(
    ("raw", "kind", "value", "port"),
    [
        ("http://Evil.Example/", "host", "evil.example", None),
        ("evil.example", "host", "evil.example", None),
        ("https://evil.example:443", "host", "evil.example", None),
        ("evil.example:80/", "host", "evil.example", None),
        ("http://evil.example/#frag", "host", "evil.example", None),
        ("http://evil.example:8080", "url", "evil.example:8080/", 8080),
        ("http://evil.example:443/", "url", "evil.example:443/", 443),
        ("https://evil.example/Login/Path", "url", "evil.example/Login/Path", None),
        ("https://evil.example/a?b=c&d=e", "url", "evil.example/a?b=c&d=e", None),
        ("https://evil.example?b=c", "url", "evil.example/?b=c", None),
        ("https://evil.example/*$;#x", "url", "evil.example/%2A%24%3B", None),
        ("https://evil.example/a(b)!,=:@+~", "url", "evil.example/a%28b%29!,=:@+~", None),
        ("https://evil.example/%7e%zz", "url", "evil.example/%7E%25zz", None),
        ("https://evil.example/ü", "url", "evil.example/%C3%BC", None),
        ("http://8.8.8.8/", "ip", "8.8.8.8", None),
        ("http://8.8.8.8/x", "url", "8.8.8.8/x", None),
        ("http://[2001:4860::8888]:8080/x", "url", "[2001:4860::8888]:8080/x", 8080),
    ],
)
def test_urls_reduce_to_a_host_or_keep_what_only_url_lists_can_express(
    raw: str, kind: str, value: str, port: int | None
) -> None:
    normalised = entry(raw, "Url")

    assert (normalised.kind, normalised.value, normalised.port) == (kind, value, port)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("ftp://evil.example/", "not http or https"),
        ("javascript:alert(1)", "port"),
        ("http://user@evil.example/", "user part"),
        ("http://evil.example:0/", "port"),
        ("http://evil.example:99999/", "port"),
        ("http://[2001:4860::8888/", "closing bracket"),
        ("http://2001:4860::8888/", "brackets"),
        ("http:///path", "no host"),
        ('http://evil.example/"x', "quote"),
        ("http://evil.example/a b", "space"),
        ("http://evil.example/\r\nX-Injected: 1", "control"),
        ("http://10.0.0.1/", "not a public address"),
        ("http://evil.example/`x`", "quote"),
        ("http://evil.example/{x}", "quote"),
        ("http://evil.example/^x", "quote"),
        ("http://evil.example/'x", "quote"),
        ("http://evil.example\\x", "quote"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(raw: str, reason: str) -> None:
    assert reason in refusal(raw, "Url")


@pytest.mark.parametrize(
    ("raw", "kind", "value"),
    [
        ("8.8.8.8", "ip", "8.8.8.8"),
        ("2001:4860:0000::8888", "ip", "2001:4860::8888"),
        ("::ffff:8.8.4.4", "ip", "8.8.4.4"),
        ("8.8.8.0/24", "network", "8.8.8.0/24"),
        ("8.8.8.8/32", "ip", "8.8.8.8"),
        ("2001:4860::/32", "network", "2001:4860::/32"),
    ],
)
def test_addresses_take_their_canonical_form(raw: str, kind: str, value: str) -> None:
    normalised = entry(raw, "IpAddress")

    assert normalised.network is not None
    assert (normalised.kind, normalised.value, str(normalised.network.network_address)) == (
        kind,
        value,
        value.split("/", maxsplit=1)[0],
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("10.0.0.1", "not a public address"),
        ("127.0.0.1", "not a public address"),
        ("fe80::1", "not a public address"),
        ("fe80::1%eth0\nx", "control"),
        ("2001:4860::8888%eth0", "scope"),
        ("8.8.8.8/24", "host bits"),
        ("8.0.0.0/7", "wider than /8"),
        ("0.0.0.0/0", "wider than /8"),
        ("8.8.8", "not an IP address"),
        ("008.8.8.8", "not an IP address"),
        ("8.8.8.8-8.8.8.9", "not an IP address"),
        ("evil.example", "not an IP address"),
    ],
)
def test_bad_addresses_are_refused_with_the_reason(raw: str, reason: str) -> None:
    assert reason in refusal(raw, "IpAddress")


def test_file_indicators_are_not_network_targets() -> None:
    assert "not network targets" in refusal("a" * 64, "FileSha256")


def test_the_entry_keeps_the_indicator_it_came_from() -> None:
    indicator = Indicator(
        id="42", value="evil.example", type="DomainName", action="Warn", application="App"
    )

    normalised = normalise(indicator)

    assert (normalised.indicator_id, normalised.action, normalised.application) == (
        "42",
        "Warn",
        "App",
    )
