"""Blocklists that enforce MDE network indicators where Defender Antivirus cannot.

A device whose Defender Antivirus is passive ignores URL, domain and IP indicators
(https://learn.microsoft.com/defender-endpoint/indicator-ip-domain). This package turns those
indicators into lists that a proxy, a DNS resolver or a firewall enforces instead:

    parsed = parse_indicators(response_json)              # pipeline.indicators
    lists = build_blocklists(parsed.indicators, now, parsed.rejected)
    rendered = render(lists, "squid-domains")             # or "unbound", "rpz", "edl-ips", ...
    published = publish(rendered, previous)               # hash, version, ETag, diff

``Blocklists`` exposes the normalised entries (value, kind, indicator id, action, application)
for anything else that must match traffic against the same lists.
"""

from pipeline.act.blocklist.build import (
    LIST_NAMES,
    Blocklist,
    Blocklists,
    CloudApp,
    Exemption,
    ListName,
    Skipped,
    build_blocklists,
    cloud_app_indicators,
)
from pipeline.act.blocklist.formats import (
    FORMATS,
    FormatName,
    Omission,
    Rendered,
    RenderOptions,
    render,
)
from pipeline.act.blocklist.normalise import Entry, EntryKind, NormaliseError, normalise
from pipeline.act.blocklist.publish import Diff, Published, etag_matches, publish

__all__ = [
    "FORMATS",
    "LIST_NAMES",
    "Blocklist",
    "Blocklists",
    "CloudApp",
    "Diff",
    "Entry",
    "EntryKind",
    "Exemption",
    "FormatName",
    "ListName",
    "NormaliseError",
    "Omission",
    "Published",
    "RenderOptions",
    "Rendered",
    "Skipped",
    "build_blocklists",
    "cloud_app_indicators",
    "etag_matches",
    "normalise",
    "publish",
    "render",
]
