"""The Sentinel watchlist ``MdeBlockedResources``: CSV with one row per blocked name or address.

The analytics rule on ``DeviceNetworkEvents`` reads it with ``_GetWatchlist``; its columns are
``Value``, ``Type`` (``domain`` or ``ip``), ``IndicatorId``, ``Action`` and ``App``, with
``Value`` as the search key (``detections/schemas/watchlists.json``). The rule can say two
things only: "this name and every name below it" and "this exact address". So:

* a ``domain`` entry is a ``domain`` row and an ``ip`` entry an ``ip`` row;
* a URL indicator naming one host is left out: a ``domain`` row would also match its
  subdomains, which the indicator does not cover;
* a URL with a path, query or port is left out: a network event shows the host of an HTTPS
  request, never its path;
* an address range is left out: the rule compares addresses for equality;
* an Allow inside a blocked domain cannot be written (the watchlist has no exemptions), so the
  rule may still report connections to it; it is reported like any other omission.

Values come from ``normalise`` and need no care, but ``IndicatorId`` and ``App`` are whatever
the API returned. A spreadsheet opened on the export would run a cell starting with ``=``,
``+``, ``-`` or ``@`` as a formula, so such a cell gets a leading apostrophe (the OWASP advice
for CSV injection); control and separator characters become spaces, so a row is always one line;
fields holding a comma or a quote are quoted as RFC 4180 says
(https://www.rfc-editor.org/rfc/rfc4180). Lines end in CRLF, as RFC 4180 has them.
"""

from __future__ import annotations

import unicodedata
from typing import Final

from pipeline.act.blocklist.build import Blocklist, Blocklists
from pipeline.act.blocklist.formats._base import Collector, Rendered, RenderOptions
from pipeline.act.blocklist.normalise import Entry

__all__ = ["COLUMNS", "SEARCH_KEY", "render_watchlist", "render_watchlist_lists", "safe_cell"]

COLUMNS: Final = ("Value", "Type", "IndicatorId", "Action", "App")
SEARCH_KEY: Final = "Value"

_FORMAT: Final = "sentinel-watchlist"
_FORMULA_STARTS: Final = ("=", "+", "-", "@")
# Characters that could end a line or hide in one: controls, format characters, separators
# (line and paragraph separators included), surrogates, private use and unassigned code points.
_BLANKED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
# App names are short; a longer value is cut so that one hostile name cannot crowd the upload
# towards its size limit.
_MAX_CELL: Final = 256
_NEEDS_QUOTES: Final = frozenset(',"\r\n')


def render_watchlist(blocklist: Blocklist, options: RenderOptions) -> Rendered:
    """One list as watchlist CSV (``--format sentinel-watchlist``)."""
    return _render(blocklist)


def render_watchlist_lists(blocklists: Blocklists) -> Rendered:
    """The block and warn lists together: the rule reports a connection to either.

    ``build_blocklists`` has already applied Allow precedence and let a Warn on the same value
    replace its Block, so no value appears twice. The result is labelled with the block list.
    """
    combined = Blocklist(
        "block",
        (*blocklists.warn.entries, *blocklists.block.entries),
        (*blocklists.warn.exemptions, *blocklists.block.exemptions),
    )
    return _render(combined)


def safe_cell(text: str) -> str:
    """``text`` as a cell no spreadsheet runs and no CSV reader splits across lines."""
    if text.isascii() and text.isprintable() and len(text) <= _MAX_CELL:
        # The common case (names, ids, actions): only the ends and the first character matter.
        cleaned = " ".join(text.split())
        return "'" + cleaned if cleaned.startswith(_FORMULA_STARTS) else cleaned

    cleaned = "".join(
        " " if unicodedata.category(char) in _BLANKED_CATEGORIES else char for char in text
    )
    cleaned = " ".join(cleaned.split())[:_MAX_CELL].rstrip()
    if cleaned.startswith(_FORMULA_STARTS):
        return "'" + cleaned
    return cleaned


def _render(blocklist: Blocklist) -> Rendered:
    out = Collector(_FORMAT, blocklist)
    rows: list[tuple[str, ...]] = []

    for entry in blocklist.entries:
        row_type = _row_type(entry, out)
        if row_type is not None:
            rows.append(_row(entry, row_type))

    for exemption in blocklist.exemptions:
        within = exemption.within
        out.omit(
            exemption.allowed,
            f"Allow indicator inside {within.value} (indicator {within.indicator_id}); a "
            "watchlist cannot exempt a name, so the rule can still report connections to it",
        )

    rows.sort(key=lambda row: (row[1], row[0], row[2]))
    out.entries.extend(_csv_line(row) for row in rows)
    return out.rendered("".join(f"{line}\r\n" for line in (_csv_line(COLUMNS), *out.entries)))


def _row_type(entry: Entry, out: Collector) -> str | None:
    if entry.kind == "domain":
        return "domain"
    if entry.kind == "ip":
        return "ip"

    if entry.kind == "host":
        out.omit(
            entry,
            "a watchlist domain row also matches every subdomain, and this URL indicator names "
            "one host",
        )
    elif entry.kind == "url":
        out.omit(
            entry,
            "a network event shows the host of an HTTPS request, not its path, query or port; "
            "matching the host alone would report more than the indicator blocks",
        )
    else:
        out.omit(entry, "the rule matches exact addresses only, and this is an address range")
    return None


def _row(entry: Entry, row_type: str) -> tuple[str, ...]:
    # Value and Action come from normalise and the indicator parser and are plain already;
    # safe_cell costs nothing on them and keeps the guarantee in one place.
    return (
        safe_cell(entry.value),
        row_type,
        safe_cell(entry.indicator_id),
        safe_cell(entry.action),
        safe_cell(entry.application or ""),
    )


def _csv_line(row: tuple[str, ...]) -> str:
    return ",".join(_quoted(cell) for cell in row)


def _quoted(cell: str) -> str:
    # RFC 4180: a field holding a comma, a quote or a line break is quoted, quotes doubled. Line
    # breaks cannot occur (safe_cell removed them), but the rule is kept whole.
    if any(char in cell for char in _NEEDS_QUOTES):
        return '"' + cell.replace('"', '""') + '"'
    return cell
