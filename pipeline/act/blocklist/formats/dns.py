"""DNS formats: unbound local zones, an RPZ zone, dnsmasq ``server=`` lines and a hosts file.

All of them answer NXDOMAIN (or 0.0.0.0 for hosts) for a blocked name. None of them can block a
path, so URL indicators with one are reported as not representable rather than blocking the
whole site. Exemptions inside a blocked domain are written where the format has a way to say
"resolve this normally": unbound ``always_transparent``, RPZ ``rpz-passthru.``, dnsmasq ``#``.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.act.blocklist.build import Blocklist
from pipeline.act.blocklist.formats._base import (
    Collector,
    Rendered,
    RenderOptions,
    lines,
    subtree_reason,
    url_reason,
)

# RPZ owner names are written relative to the zone's origin, so they must leave room for it
# within DNS's 253-character limit; 200 leaves 53 characters for the origin name.
_RPZ_MAX_NAME = 200


def render_unbound(blocklist: Blocklist, options: RenderOptions) -> Rendered:
    """``local-zone`` lines under a ``server:`` clause, for unbound's ``include:``.

    ``always_nxdomain`` answers NXDOMAIN for the name and every name below it, whatever local
    data says (https://unbound.docs.nlnetlabs.nl/en/latest/manpages/unbound.conf.html).
    """
    out = Collector("unbound", blocklist)
    _subtree_entries(
        out,
        blocklist,
        block=lambda name: f'local-zone: "{name}." always_nxdomain',
        exempt=lambda name: f'local-zone: "{name}." always_transparent',
    )
    indented = [f"    {line}" for line in out.entries]
    return out.rendered(lines(out.header("#"), "server:", indented))


def _subtree_entries(
    out: Collector,
    blocklist: Blocklist,
    *,
    block: Callable[[str], str],
    exempt: Callable[[str], str],
) -> None:
    """Sorted lines for a format whose every rule covers a name and all names below it.

    Such a format can express domains and domain exemptions only: a single host would be
    over-blocked (its subdomains too), so it is reported instead, as is a URL with a path.
    """
    for entry in blocklist.entries:
        if entry.kind == "domain":
            out.entries.append(block(entry.value))
        elif entry.kind == "host":
            out.omit(entry, subtree_reason(out.format))
        elif entry.kind == "url":
            out.omit(entry, url_reason(out.format))
        else:
            out.leave_to_other_family(entry)

    for exemption in blocklist.exemptions:
        if exemption.allowed.kind == "domain":
            out.entries.append(exempt(exemption.allowed.value))
        else:
            out.omit_exemption(exemption)
    out.entries.sort()


def render_rpz(blocklist: Blocklist, options: RenderOptions) -> Rendered:
    """A response policy zone: ``name CNAME .`` is NXDOMAIN, ``*.name`` covers the subdomains.

    Owner names are relative to the zone's origin, so the same file loads under any RPZ zone name
    in unbound, BIND or PowerDNS (https://datatracker.ietf.org/doc/html/draft-vixie-dnsop-dns-rpz).
    """
    out = Collector("rpz", blocklist)
    policy: dict[str, str] = {}

    def trigger(name: str, *, subtree: bool, action: str) -> None:
        policy[name] = action
        if subtree:
            policy[f"*.{name}"] = action

    for entry in blocklist.entries:
        if entry.kind in ("domain", "host"):
            if _rpz_safe(entry.value):
                trigger(entry.value, subtree=entry.kind == "domain", action=".")
            else:
                out.omit(entry, _rpz_unsafe_reason())
        elif entry.kind == "url":
            out.omit(entry, url_reason(out.format))
        else:
            out.leave_to_other_family(entry)

    # Exemptions come last so that they replace a block trigger on the same owner name; two
    # CNAME records on one name would make the zone invalid.
    for exemption in blocklist.exemptions:
        allowed = exemption.allowed
        if allowed.kind in ("domain", "host") and _rpz_safe(allowed.value):
            trigger(allowed.value, subtree=allowed.kind == "domain", action="rpz-passthru.")
        else:
            out.omit_exemption(exemption)

    out.entries.extend(f"{name} CNAME {policy[name]}" for name in sorted(policy))
    serial = 1 if options.rpz_serial is None else options.rpz_serial
    soa = f"@ IN SOA localhost. hostmaster.localhost. {serial} 3600 600 86400 {options.rpz_ttl}"
    return out.rendered(
        lines(out.header(";"), f"$TTL {options.rpz_ttl}", soa, "@ IN NS localhost.", out.entries)
    )


def render_dnsmasq(blocklist: Blocklist, options: RenderOptions) -> Rendered:
    """``server=/name/`` (answer locally, so NXDOMAIN) for use as dnsmasq's ``--servers-file``.

    A more specific ``server=/name/#`` sends that name to the normal upstream servers again,
    which is how an exemption is written (https://thekelleys.org.uk/dnsmasq/docs/dnsmasq-man.html).
    """
    out = Collector("dnsmasq", blocklist)
    _subtree_entries(
        out,
        blocklist,
        block=lambda name: f"server=/{name}/",
        exempt=lambda name: f"server=/{name}/#",
    )
    return out.rendered(lines(out.header("#"), out.entries))


def render_hosts(blocklist: Blocklist, options: RenderOptions) -> Rendered:
    """``0.0.0.0 name`` lines. A hosts file matches exact names only, never subdomains."""
    out = Collector("hosts", blocklist)
    allowed_names = {
        exemption.allowed.value
        for exemption in blocklist.exemptions
        if exemption.allowed.kind in ("domain", "host")
    }

    for entry in blocklist.entries:
        if entry.kind in ("domain", "host"):
            if entry.value in allowed_names:
                out.omit(entry, "an Allow indicator exempts this very name")
                continue
            out.entries.append(f"0.0.0.0 {entry.value}")
            if entry.kind == "domain":
                out.note_partial(entry, "a hosts file cannot block the subdomains of a name")
        elif entry.kind == "url":
            out.omit(entry, url_reason(out.format))
        else:
            out.leave_to_other_family(entry)

    out.entries.sort()
    return out.rendered(lines(out.header("#"), out.entries))


def _rpz_safe(name: str) -> bool:
    # Labels starting with "rpz-" are trigger types (rpz-ip, rpz-nsdname, ...) in an RPZ zone; a
    # name holding one would turn into a different kind of rule.
    return len(name) <= _RPZ_MAX_NAME and not any(
        label.startswith("rpz-") for label in name.split(".")
    )


def _rpz_unsafe_reason() -> str:
    return (
        f"names longer than {_RPZ_MAX_NAME} characters or with a label starting with 'rpz-' "
        "cannot be written as RPZ triggers"
    )
