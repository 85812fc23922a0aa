"""Render a blocklist in one of the formats proxies, DNS servers and firewalls read.

Each format writes only normalised values (see ``normalise``), so none needs quoting beyond its
own syntax, and reports what it cannot express instead of widening it: a DNS list cannot block a
URL path, a firewall rule cannot match a name, a hosts file cannot match subdomains. The
``sentinel-watchlist`` format is not enforced by anything: it is the CSV a Sentinel analytics
rule reads to know what is blocked (see ``pipeline.act.watchlist``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Final, get_args

from pipeline.act.blocklist.build import Blocklist, Blocklists, ListName
from pipeline.act.blocklist.formats import dns, edl, firewall, squid, watchlist
from pipeline.act.blocklist.formats._base import FormatName, Omission, Rendered, RenderOptions

__all__ = ["FORMATS", "FormatName", "Omission", "RenderOptions", "Rendered", "render"]

_Renderer = Callable[[Blocklist, RenderOptions], Rendered]

_RENDERERS: Final[dict[FormatName, _Renderer]] = {
    "squid-domains": squid.render_domains,
    "squid-ips": squid.render_ips,
    "unbound": dns.render_unbound,
    "rpz": dns.render_rpz,
    "dnsmasq": dns.render_dnsmasq,
    "hosts": dns.render_hosts,
    "edl-urls": edl.render_urls,
    "edl-ips": edl.render_ips,
    "windows-firewall": firewall.render_windows_firewall,
    "azure-firewall": firewall.render_azure_firewall,
    "sentinel-watchlist": watchlist.render_watchlist,
}
FORMATS: Final[tuple[FormatName, ...]] = get_args(FormatName)


def render(
    blocklists: Blocklists,
    format_name: FormatName,
    list_name: ListName = "block",
    options: RenderOptions | None = None,
) -> Rendered:
    """Render the ``list_name`` list of ``blocklists`` in the format ``format_name``."""
    renderer = _RENDERERS.get(format_name)
    if renderer is None:
        known = ", ".join(FORMATS)
        raise ValueError(f"unknown blocklist format {format_name!r}; known: {known}")

    options = options or RenderOptions()
    if options.rpz_serial is None:
        # RFC 1982 serials are 32-bit; epoch seconds stay increasing in that space until 2106.
        serial = int(blocklists.now.timestamp()) % 2**32
        options = dataclasses.replace(options, rpz_serial=serial)
    return renderer(blocklists.get(list_name), options)
