"""Hostile indicator values never add a line, directive, comment or quote to any format.

Every line of every rendered file must match its format's grammar, written here independently of
the renderers, and the data lines must be exactly the entries the renderer says it wrote.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.act.blocklist import (
    FORMATS,
    LIST_NAMES,
    Blocklists,
    Rendered,
    build_blocklists,
    render,
)
from pipeline.act.blocklist.formats.watchlist import render_watchlist_lists
from pipeline.indicators import parse_indicators
from tests.support.daemons import hostile_batches, hostile_values

NOW = datetime(2026, 6, 1, tzinfo=UTC)

LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
NAME = rf"{LABEL}(?:\.{LABEL})+"
ADDRESS = r"(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9a-f:]*:[0-9a-f:.]*)(?:/[0-9]{1,3})?"
IPV4 = r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}"
URL_TAIL = r"/[A-Za-z0-9\-._~/!,=:@&+%?]*"
HEADER = (
    r"[#;] (?:block|warn|allow) list from Microsoft Defender for Endpoint indicators"
    r" \([a-z-]+\); generated, do not edit"
)

# For each format: the pattern a data line matches, and the patterns of its fixed lines.
GRAMMARS: dict[str, tuple[str, list[str]]] = {
    "squid-domains": (rf"\.?{NAME}", [HEADER]),
    "squid-ips": (ADDRESS, [HEADER]),
    "unbound": (
        rf'    local-zone: "{NAME}\." (?:always_nxdomain|always_transparent)',
        [HEADER, "server:"],
    ),
    "rpz": (
        rf"(?:\*\.)?{NAME} CNAME (?:\.|rpz-passthru\.)",
        [
            HEADER,
            r"\$TTL [0-9]+",
            r"@ IN SOA localhost\. hostmaster\.localhost\. [0-9]+ 3600 600 86400 [0-9]+",
            r"@ IN NS localhost\.",
        ],
    ),
    "dnsmasq": (rf"server=/{NAME}/#?", [HEADER]),
    "hosts": (rf"0\.0\.0\.0 {NAME}", [HEADER]),
    "edl-urls": (rf"(?:\*\.)?{NAME}/|(?:{NAME}|{IPV4}){URL_TAIL}", []),
    "edl-ips": (ADDRESS, []),
}


def lists_from(records: list[object]) -> Blocklists:
    parsed = parse_indicators(records)
    return build_blocklists(parsed.indicators, NOW, parsed.rejected)


def assert_plain_lines(rendered: Rendered) -> None:
    content = rendered.content
    assert content.isascii()
    assert all(char == "\n" or char.isprintable() for char in content)
    assert content == "" or content.endswith("\n")


def assert_line_grammar(rendered: Rendered) -> None:
    data, fixed = GRAMMARS[rendered.format]
    data_lines: list[str] = []

    for line in rendered.content.splitlines():
        if any(re.fullmatch(pattern, line) for pattern in fixed):
            continue
        assert re.fullmatch(data, line), (rendered.format, line)
        data_lines.append(line)

    written = [f"    {e}" if rendered.format == "unbound" else e for e in rendered.entries]
    assert sorted(data_lines) == sorted(written)


def assert_windows_script(rendered: Rendered, empty: Rendered) -> None:
    lines = rendered.content.splitlines()
    addresses = [line for line in lines if re.fullmatch(rf"    '{ADDRESS}'", line)]

    # Everything but the address lines is the fixed script, identical to an empty list's.
    assert [line for line in lines if line not in addresses] == empty.content.splitlines()
    assert [line.strip()[1:-1] for line in addresses] == list(rendered.entries)


# RFC 4180, written out: a field is bare (no comma, quote or line break) or quoted with inner
# quotes doubled; a record is five fields. The CSV module is only used to read the values back.
CSV_FIELD = r'(?:[^",\r\n]*|"(?:[^"\r\n]|"")*")'
CSV_RECORD = rf"{CSV_FIELD}(?:,{CSV_FIELD}){{4}}"
FORMULA_STARTS = ("=", "+", "-", "@")


def assert_watchlist_csv(rendered: Rendered) -> None:
    content = rendered.content
    assert content.endswith("\r\n")
    lines = content.split("\r\n")[:-1]
    assert all("\r" not in line and "\n" not in line for line in lines)
    assert lines[0] == "Value,Type,IndicatorId,Action,App"
    assert lines[1:] == list(rendered.entries)

    for line in lines[1:]:
        assert re.fullmatch(CSV_RECORD, line), line
        [cells] = list(csv.reader(io.StringIO(line, newline="")))
        value, kind, indicator_id, action, app = cells
        assert re.fullmatch(NAME if kind == "domain" else r"[0-9a-f.:]+", value), line
        assert kind in ("domain", "ip"), line
        assert action in ("Block", "BlockAndRemediate", "AlertAndBlock", "Warn", "Allowed"), line
        for cell in (indicator_id, app):
            assert not cell.startswith(FORMULA_STARTS), line
            assert all(char == " " or char.isprintable() for char in cell), line


def assert_azure_document(rendered: Rendered) -> None:
    document = json.loads(rendered.content)
    assert set(document) == {"properties"}
    written: list[str] = []

    for collection in document["properties"]["ruleCollections"]:
        for rule in collection["rules"]:
            for name in rule.get("targetFqdns", []):
                assert re.fullmatch(rf"(?:\*\.)?{NAME}", name), name
                written.append(name)
            for address in rule.get("destinationAddresses", []):
                assert re.fullmatch(IPV4 + r"(?:/[0-9]{1,2})?", address), address
                written.append(address)
    assert sorted(written) == sorted(rendered.entries)


@settings(max_examples=120, deadline=None)
@given(records=hostile_batches())
def test_every_format_stays_within_its_grammar_for_hostile_input(records: list[object]) -> None:
    lists = lists_from(records)
    empty = lists_from([])
    assert_watchlist_csv(render_watchlist_lists(lists))

    for list_name in LIST_NAMES:
        for fmt in FORMATS:
            rendered = render(lists, fmt, list_name)
            if fmt != "sentinel-watchlist":  # CSV lines end in CRLF and may carry Unicode names
                assert_plain_lines(rendered)
            if fmt == "windows-firewall":
                assert_windows_script(rendered, render(empty, fmt, list_name))
            elif fmt == "azure-firewall":
                assert_azure_document(rendered)
            elif fmt == "sentinel-watchlist":
                assert_watchlist_csv(rendered)
            else:
                assert_line_grammar(rendered)


@settings(max_examples=100, deadline=None)
@given(records=hostile_batches())
def test_squid_domain_lines_never_overlap(records: list[object]) -> None:
    # Squid refuses a list where one line covers another (a.example beside .a.example).
    lines = render(lists_from(records), "squid-domains").entries
    subtrees = {line for line in lines if line.startswith(".")}

    for line in lines:
        name = line.lstrip(".")
        parents = {"." + name[i + 1 :] for i, char in enumerate(name) if char == "."}
        assert not (parents & subtrees), line
        assert line.startswith(".") or "." + name not in subtrees, line


def test_the_grammars_cover_every_line_format() -> None:
    handled = {*GRAMMARS, "windows-firewall", "azure-firewall", "sentinel-watchlist"}

    assert handled == set(FORMATS)


def _spreadsheet_bait() -> st.SearchStrategy[str]:
    # What a spreadsheet would run: a formula sign, possibly after spaces, then hostile text.
    return st.builds(
        lambda pad, sign, rest: pad + sign + rest,
        st.sampled_from(["", " ", "\t", "\r\n"]),
        st.sampled_from(["=", "+", "-", "@"]),
        hostile_values(),
    )


@settings(max_examples=80, deadline=None)
@given(
    apps=st.lists(_spreadsheet_bait(), min_size=1, max_size=5),
    ids=st.lists(_spreadsheet_bait(), min_size=1, max_size=5),
)
def test_watchlist_cells_never_start_a_formula(apps: list[str], ids: list[str]) -> None:
    records: list[object] = [
        {
            "id": ids[n % len(ids)],
            "indicatorValue": f"d{n}.example",
            "indicatorType": "DomainName",
            "action": "Block",
            "application": app,
        }
        for n, app in enumerate(apps)
    ]

    rendered = render_watchlist_lists(lists_from(records))

    assert_watchlist_csv(rendered)
