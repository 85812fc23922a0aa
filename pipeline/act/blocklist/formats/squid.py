"""Squid ACL files: ``dstdomain`` for names and ``dst`` for addresses.

A ``dstdomain`` line ``.example.com`` matches the domain and every subdomain; ``example.com``
without the dot matches that host only (https://www.squid-cache.org/Doc/config/acl/). Squid
refuses to start when one line covers another (``example.com`` beside ``.example.com``), which
the build step prevents by merging covered entries away. Exemptions need a second ACL: render the
allow list too and deny with ``http_access deny mde_block !mde_allow``.
"""

from __future__ import annotations

from pipeline.act.blocklist.build import Blocklist
from pipeline.act.blocklist.formats._base import (
    Collector,
    Rendered,
    RenderOptions,
    lines,
    url_reason,
)


def render_domains(blocklist: Blocklist, options: RenderOptions) -> Rendered:
    out = Collector("squid-domains", blocklist)

    for entry in blocklist.entries:
        if entry.kind == "domain":
            out.entries.append(f".{entry.value}")
        elif entry.kind == "host":
            out.entries.append(entry.value)
        elif entry.kind == "url":
            out.omit(entry, url_reason(out.format))
        else:
            out.leave_to_other_family(entry)

    out.entries.sort()
    return out.rendered(lines(out.header("#"), out.entries))


def render_ips(blocklist: Blocklist, options: RenderOptions) -> Rendered:
    out = Collector("squid-ips", blocklist)

    for entry in blocklist.entries:
        if entry.kind in ("ip", "network"):
            out.entries.append(entry.value)
        else:
            out.leave_to_other_family(entry)

    return out.rendered(lines(out.header("#"), out.entries))
