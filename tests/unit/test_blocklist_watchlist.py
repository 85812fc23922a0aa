"""The ``sentinel-watchlist`` CSV: the watchlist's columns, the rule's semantics, no injection."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.act.blocklist import Blocklists, build_blocklists, render
from pipeline.act.blocklist.formats.watchlist import COLUMNS, render_watchlist_lists, safe_cell
from pipeline.act.watchlist import WatchlistConfigError, WatchlistSettings
from pipeline.cli import main
from pipeline.indicators import Indicator, IndicatorAction, IndicatorType

NOW = datetime(2026, 6, 1, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "detections/schemas/watchlists.json").read_text(encoding="utf-8"))
WORKSPACE = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-sec"
    "/providers/Microsoft.OperationalInsights/workspaces/log-sec"
)


def ind(
    number: int,
    value: str,
    kind: IndicatorType = "DomainName",
    action: IndicatorAction = "Block",
    app: str | None = None,
) -> Indicator:
    return Indicator(str(number), value, kind, action, application=app)


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
            ind(7, "monitored.example", action="Warn", app="Monitored App"),
            ind(8, "1.2.3.0/24", "IpAddress"),
        ],
        NOW,
    )


def rows(content: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content, newline="")))


def test_the_header_is_exactly_the_watchlist_schema() -> None:
    declared = SCHEMA["watchlists"]["MdeBlockedResources"]

    assert tuple(declared["columns"]) == COLUMNS
    assert declared["searchKey"] == "Value"
    assert render(build_blocklists([], NOW), "sentinel-watchlist").content == (
        "Value,Type,IndicatorId,Action,App\r\n"
    )


def test_domains_and_addresses_become_rows_and_the_rest_is_reported(lists: Blocklists) -> None:
    rendered = render(lists, "sentinel-watchlist")

    assert rows(rendered.content) == [
        {
            "Value": "evil.example",
            "Type": "domain",
            "IndicatorId": "1",
            "Action": "Block",
            "App": "",
        },
        {
            "Value": "2001:4860::8888",
            "Type": "ip",
            "IndicatorId": "6",
            "Action": "Block",
            "App": "",
        },
        {"Value": "8.8.8.8", "Type": "ip", "IndicatorId": "5", "Action": "Block", "App": ""},
    ]
    reasons = {o.indicator_id: o.reason for o in rendered.not_representable}
    assert set(reasons) == {"2", "3", "4", "8"}
    assert "one host" in reasons["3"]
    assert "path" in reasons["4"]
    assert "address range" in reasons["8"]
    assert "cannot exempt" in reasons["2"]
    assert rendered.elsewhere == 0


def test_the_published_content_holds_the_block_and_warn_lists(lists: Blocklists) -> None:
    published = rows(render_watchlist_lists(lists).content)

    assert [(r["Value"], r["Action"], r["App"]) for r in published] == [
        ("evil.example", "Block", ""),
        ("monitored.example", "Warn", "Monitored App"),
        ("2001:4860::8888", "Block", ""),
        ("8.8.8.8", "Block", ""),
    ]


def test_every_line_ends_in_crlf_and_rendered_entries_are_the_data_lines(
    lists: Blocklists,
) -> None:
    rendered = render_watchlist_lists(lists)

    lines = rendered.content.split("\r\n")
    assert lines[-1] == ""
    assert "\n" not in "".join(lines)
    assert tuple(lines[1:-1]) == rendered.entries


@pytest.mark.parametrize(
    ("app", "cell"),
    [
        ('=HYPERLINK("http://x.test","open")', '\'=HYPERLINK("http://x.test","open")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("  =trimmed first", "'=trimmed first"),
        ("line\r\nbreak\u2028and\ttab", "line break and tab"),
        ('Drive, "Pro"', 'Drive, "Pro"'),
        ("Ünïcode Drive", "Ünïcode Drive"),
    ],
)
def test_app_names_never_start_a_formula_nor_break_a_line(app: str, cell: str) -> None:
    lists = build_blocklists([ind(1, "evil.example", app=app)], NOW)

    content = render(lists, "sentinel-watchlist").content

    assert rows(content)[0]["App"] == cell
    assert content.count("\r\n") == 2


def test_a_cell_with_a_comma_or_quote_is_quoted_as_rfc_4180_says() -> None:
    lists = build_blocklists([ind(1, "evil.example", app='Drive, "Pro"')], NOW)

    line = render(lists, "sentinel-watchlist").entries[0]

    assert line == 'evil.example,domain,1,Block,"Drive, ""Pro"""'


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=40))
def test_any_text_becomes_a_safe_single_line_cell(text: str) -> None:
    cell = safe_cell(text)

    assert not cell.startswith(("=", "+", "-", "@"))
    assert all(char == " " or char.isprintable() for char in cell)
    assert cell == cell.strip()
    assert safe_cell(cell) == cell or cell.startswith("'")


def test_the_cli_renders_the_watchlist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "indicators.json"
    source.write_text(
        json.dumps(
            {
                "value": [
                    {
                        "id": "1",
                        "indicatorValue": "evil.example",
                        "indicatorType": "DomainName",
                        "action": "Block",
                    },
                    {
                        "id": "2",
                        "indicatorValue": "https://site.example/x",
                        "indicatorType": "Url",
                        "action": "Block",
                    },
                ]
            }
        )
    )
    out = tmp_path / "watchlist.csv"

    status = main(
        [
            "blocklist",
            "--indicators",
            str(source),
            "--format",
            "sentinel-watchlist",
            "--out",
            str(out),
        ]
    )

    assert status == 0
    assert rows(out.read_bytes().decode("utf-8")) == [
        {
            "Value": "evil.example",
            "Type": "domain",
            "IndicatorId": "1",
            "Action": "Block",
            "App": "",
        }
    ]
    assert "not representable in sentinel-watchlist: indicator 2" in capsys.readouterr().err


# -- settings ----------------------------------------------------------------------------------


def test_settings_default_to_the_alias_the_rule_reads() -> None:
    settings = WatchlistSettings.from_env({"SENTINEL_WORKSPACE_RESOURCE_ID": WORKSPACE + "/"})

    assert settings.alias == "MdeBlockedResources"
    assert settings.configured
    assert settings.watchlist_path == (
        f"{WORKSPACE}/providers/Microsoft.SecurityInsights/watchlists/MdeBlockedResources"
    )


def test_no_workspace_means_not_configured() -> None:
    assert not WatchlistSettings.from_env({"SENTINEL_WORKSPACE_RESOURCE_ID": " "}).configured


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SENTINEL_WORKSPACE_RESOURCE_ID": "log-sec"}, "SENTINEL_WORKSPACE_RESOURCE_ID"),
        (
            {"SENTINEL_WORKSPACE_RESOURCE_ID": WORKSPACE + "/../../other"},
            "SENTINEL_WORKSPACE_RESOURCE_ID",
        ),
        ({"WATCHLIST_ALIAS": "x"}, "WATCHLIST_ALIAS"),
        ({"WATCHLIST_ALIAS": "Mde/Blocked"}, "WATCHLIST_ALIAS"),
        ({"WATCHLIST_ALIAS": "-MdeBlocked"}, "WATCHLIST_ALIAS"),
    ],
)
def test_a_malformed_setting_is_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(WatchlistConfigError, match=named):
        WatchlistSettings.from_env(env)


def test_plain_http_is_refused_outside_this_machine() -> None:
    with pytest.raises(WatchlistConfigError, match="https"):
        WatchlistSettings(WORKSPACE, management_url="http://management.azure.com")
