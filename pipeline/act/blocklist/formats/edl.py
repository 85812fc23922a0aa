"""Palo Alto Networks External Dynamic Lists: plain text, one entry per line, polled over HTTP.

URL lists take entries without a scheme. PAN-OS treats an entry that does not end in ``/`` as a
prefix of the host (``example.com`` would also match ``example.com.evil.net``), so host entries
end in ``/``; ``*.`` is the token for "any subdomain". Paths are written percent-encoded, which
keeps ``*`` and ``^`` (the list's wildcard tokens) out of them. IP lists take one address or CIDR
block per line
(https://docs.paloaltonetworks.com/pan-os/10-2/pan-os-admin/policy/use-an-external-dynamic-list-in-policy/formatting-guidelines-for-an-external-dynamic-list).
Neither list has exceptions: the allow list is rendered separately for a rule placed above.
"""

from __future__ import annotations

from pipeline.act.blocklist.build import Blocklist
from pipeline.act.blocklist.formats._base import (
    Collector,
    Rendered,
    RenderOptions,
    lines,
)


def render_urls(blocklist: Blocklist, options: RenderOptions) -> Rendered:
    out = Collector("edl-urls", blocklist)

    for entry in blocklist.entries:
        if entry.kind == "domain":
            out.entries.extend([f"{entry.value}/", f"*.{entry.value}/"])
        elif entry.kind == "host":
            out.entries.append(f"{entry.value}/")
        elif entry.kind == "url" and entry.port is not None:
            out.omit(entry, "a PAN-OS URL list entry cannot name a port")
        elif entry.kind == "url" and entry.network is not None and entry.network.version == 6:
            out.omit(entry, "a PAN-OS URL list entry cannot name an IPv6 host")
        elif entry.kind == "url":
            out.entries.append(entry.value)
        else:
            out.leave_to_other_family(entry)

    for exemption in blocklist.exemptions:
        out.omit_exemption(exemption)

    return out.rendered(lines(out.entries))


def render_ips(blocklist: Blocklist, options: RenderOptions) -> Rendered:
    out = Collector("edl-ips", blocklist)

    for entry in blocklist.entries:
        if entry.kind in ("ip", "network"):
            out.entries.append(entry.value)
        else:
            out.leave_to_other_family(entry)

    return out.rendered(lines(out.entries))
