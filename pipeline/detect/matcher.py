"""An index over the blocklist's normalised entries, asked one question per connection.

"Did this connection reach something the tenant blocks?" is answered with the same semantics as
the Sentinel rule ``passive-device-reached-blocked-resource-network-events`` (see
``docs/detections.md``), so the streaming detector and the scheduled rule agree:

* the host is ``RemoteUrl`` without scheme, port, path, query or trailing dot, lower-cased;
* a ``domain`` entry matches that host and every subdomain of it; a ``host`` entry (a URL
  indicator naming only a host) matches that host exactly;
* an ``ip`` entry matches that exact address; an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``)
  is the IPv4 address;
* Allow wins, as in Defender for Endpoint
  (https://learn.microsoft.com/defender-endpoint/indicator-ip-domain): a host covered by an
  Allow entry never matches, even inside a blocked domain.

URL entries with a path or a port, and address ranges, are not matched: a network event shows
the host of an HTTPS request and one address, so matching on those alone would report more than
the indicator blocks. They are listed in ``BlocklistIndex.unmatched`` with that reason.

The lookups are built for the streaming rate. A host is walked from its top-level label
leftwards (``com``, ``example.com``, ``www.example.com``) through one dict that holds every
entry's name and every parent of it, and the last two labels of every exact host; a host whose
last two labels are not in the dict can match nothing, which is what almost every host finds
after that one probe.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from pipeline.act.blocklist import Blocklists, Entry
from pipeline.act.blocklist.normalise import IpNetwork

__all__ = [
    "ENTRIES_BLOB",
    "BlocklistIndex",
    "EntriesDocumentError",
    "Match",
    "Unmatched",
    "address_of",
    "entries_document",
    "host_of",
    "index_from_document",
]

MatchedType = Literal["domain", "url", "ip"]
ENTRIES_SCHEMA: Final = "blocklist-entries/1"
# Where the cycle publishes the entries document, in the blocklist container.
ENTRIES_BLOB: Final = "matcher/entries.json"

# The rule's own expression: an optional scheme, then everything up to a port, path, query or
# fragment.
_HOST: Final = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.\-]*://)?([^/:?#]+)")
_HOST_MATCH: Final = _HOST.match
_MAPPED_PREFIX: Final = "::ffff:"
# Markers in the lookup dicts: an Allow entry decides here; no key at all.
_ALLOWED: Final = object()
_ABSENT: Final = object()


@dataclass(frozen=True, slots=True)
class Match:
    """The blocklist entry a connection reached."""

    value: str
    type: MatchedType
    indicator_id: str
    action: str  # Block, BlockAndRemediate, AlertAndBlock or Warn
    app: str  # the unsanctioned app's name, or "" for a plain indicator


@dataclass(frozen=True, slots=True)
class Unmatched:
    """An entry the index cannot match against network events, and why."""

    indicator_id: str
    value: str
    reason: str


class BlocklistIndex:
    """Domain suffix, exact host and exact address lookups, with Allow applied up front."""

    def __init__(self, blocked: Iterable[Entry], allowed: Iterable[Entry] = ()) -> None:
        """``blocked`` are Block and Warn entries (earlier entries win ties), ``allowed`` Allow."""
        allowed = list(allowed)
        allowed_domains = {entry.value for entry in allowed if entry.kind == "domain"}
        allowed_hosts = {entry.value for entry in allowed if entry.kind == "host"}
        allowed_networks = [entry.network for entry in allowed if entry.network is not None]

        self._suffixes: dict[str, object] = {}
        self._hosts: dict[str, object] = dict.fromkeys(allowed_hosts, _ALLOWED)
        self._addresses: dict[str, Match] = {}
        self.unmatched: list[Unmatched] = []
        self.overridden: list[Unmatched] = []

        for name in allowed_domains:
            self._add_suffixes(name, _ALLOWED)
        for entry in blocked:
            self._add_blocked(entry, allowed_domains, allowed_hosts, allowed_networks)
        # None decides nothing in the walk, so these keys change no answer; with them, a host
        # whose last two labels are missing is neither an exact host nor under a domain entry.
        for host in self._hosts:
            self._suffixes.setdefault(_last_two_labels(host), None)

    @classmethod
    def from_blocklists(cls, blocklists: Blocklists) -> BlocklistIndex:
        """Block and Warn lists of ``build_blocklists``; its Allow list as the exemptions."""
        blocked = [*blocklists.warn.entries, *blocklists.block.entries]
        return cls(blocked, blocklists.allow.entries)

    @property
    def size(self) -> int:
        """Entries that can match: domains, hosts and addresses (Allow entries not counted)."""
        domains = sum(1 for value in self._suffixes.values() if isinstance(value, Match))
        hosts = sum(1 for value in self._hosts.values() if isinstance(value, Match))
        return domains + hosts + len(self._addresses)

    # -- lookups -------------------------------------------------------------------------------

    def match_host(self, host: str) -> Match | None:
        """The entry a normalised host name reaches, or None (also when Allow covers it)."""
        exact = self._hosts.get(host)
        if exact is not None:
            return exact if isinstance(exact, Match) else None

        # From the top-level labels leftwards; the last entry seen is the most specific one.
        # Every entry has at least two labels, so the walk starts with the last two.
        suffixes = self._suffixes
        decision: object = None
        dot = host.rfind(".")
        if dot <= 0:
            return None
        dot = host.rfind(".", 0, dot)
        found = suffixes.get(host[dot + 1 :], _ABSENT)
        while found is not _ABSENT:
            if found is not None:
                decision = found
            if dot < 0:
                break
            dot = host.rfind(".", 0, dot)
            found = suffixes.get(host[dot + 1 :], _ABSENT)
        return decision if type(decision) is Match else None

    def match_address(self, address: str) -> Match | None:
        """The ``ip`` entry for an address as ``address_of`` returns it, or None."""
        found = self._addresses.get(address)
        if found is None and ":" in address:
            # IPv6 can be written several ways; the entries hold Python's canonical form.
            canonical = _canonical_ipv6(address)
            if canonical is not None and canonical != address:
                found = self._addresses.get(canonical)
        return found

    def matches(self, remote_url: str | None, remote_ip: str | None) -> tuple[Match, ...]:
        """Every entry one connection reached: by its host, by its address, or both."""
        by_host = by_address = None
        if remote_url:
            # What _HOST captures, found by splitting for the usual shapes (a bare host, or
            # http(s):// and a host), which costs less than running the expression. Without
            # "://" the expression's optional scheme cannot match, and http and https are
            # schemes it accepts; the host then runs to the first "/". When the scheme is
            # another, or the host is empty or holds a port, query or fragment, the expression
            # decides, so every answer is the expression's.
            scheme, separator, rest = remote_url.partition("://")
            if not separator:
                host = remote_url.partition("/")[0]
            elif scheme in {"https", "http"}:
                host = rest.partition("/")[0]
            else:
                host = ""
            if not host or ":" in host or "?" in host or "#" in host:
                found = _HOST_MATCH(remote_url)
                host = found[1] if found is not None else ""
            if host:
                host = host.rstrip(".").lower()
                # The test ``match_host`` would end on for almost every host, written out here
                # (as ``_last_two_labels``) to spare those a call: this runs once per connection.
                if host[host.rfind(".", 0, host.rfind(".")) + 1 :] in self._suffixes:
                    by_host = self.match_host(host)
        if remote_ip:
            # An IPv4 address is looked up as it is; anything with a colon is normalised first.
            by_address = self._addresses.get(remote_ip)
            if by_address is None and ":" in remote_ip:
                by_address = self.match_address(address_of(remote_ip))
        if by_host is None:
            return () if by_address is None else (by_address,)
        return (by_host,) if by_address is None else (by_host, by_address)

    # -- building ------------------------------------------------------------------------------

    def _add_blocked(
        self,
        entry: Entry,
        allowed_domains: set[str],
        allowed_hosts: set[str],
        allowed_networks: list[IpNetwork],
    ) -> None:
        if entry.kind == "url":
            self._skip(entry, "a URL with a path or port; a network event shows only the host")
            return
        if entry.kind == "network":
            self._skip(entry, "an address range; only exact addresses are matched")
            return

        if entry.kind == "ip":
            assert entry.network is not None
            if any(_within(entry.network, allowed) for allowed in allowed_networks):
                self._override(entry)
            else:
                self._addresses.setdefault(entry.value, _match_of(entry, "ip"))
            return

        if any(suffix in allowed_domains for suffix in _suffixes_of(entry.value)):
            self._override(entry)
        elif entry.kind == "host":
            if entry.value in allowed_hosts:
                self._override(entry)
            else:
                self._hosts.setdefault(entry.value, _match_of(entry, "url"))
        else:
            self._add_suffixes(entry.value, _match_of(entry, "domain"))

    def _add_suffixes(self, name: str, decision: object) -> None:
        current = self._suffixes.get(name)
        if current is None or (current is not _ALLOWED and decision is _ALLOWED):
            self._suffixes[name] = decision
        for parent in list(_suffixes_of(name))[1:]:
            self._suffixes.setdefault(parent, None)

    def _skip(self, entry: Entry, reason: str) -> None:
        self.unmatched.append(Unmatched(entry.indicator_id, entry.value, reason))

    def _override(self, entry: Entry) -> None:
        reason = "an Allow entry covers it, and Allow wins"
        self.overridden.append(Unmatched(entry.indicator_id, entry.value, reason))


def host_of(remote_url: str) -> str:
    """The host of ``RemoteUrl`` as the rule extracts it (``""`` when there is none)."""
    found = _HOST.match(remote_url)
    if found is None:
        return ""
    return found.group(1).rstrip(".").lower()


def address_of(remote_ip: str) -> str:
    """``RemoteIP`` lower-cased, with an IPv4-mapped IPv6 address turned into the IPv4 one."""
    address = remote_ip.lower()
    if address.startswith(_MAPPED_PREFIX):
        return address[len(_MAPPED_PREFIX) :]
    return address


# -- the entries document --------------------------------------------------------------------------


class EntriesDocumentError(ValueError):
    """A stored entries document is not one this module wrote; names the entry and field."""


def entries_document(blocklists: Blocklists) -> dict[str, Any]:
    """The lists as JSON, for the streaming detector to load without the indicators."""

    def entry_json(entry: Entry) -> dict[str, Any]:
        return {
            "kind": entry.kind,
            "value": entry.value,
            "host": entry.host,
            "indicatorId": entry.indicator_id,
            "action": entry.action,
            "application": entry.application,
        }

    return {
        "schema": ENTRIES_SCHEMA,
        "builtAt": blocklists.now.isoformat(),
        "block": [entry_json(entry) for entry in blocklists.block.entries],
        "warn": [entry_json(entry) for entry in blocklists.warn.entries],
        "allow": [entry_json(entry) for entry in blocklists.allow.entries],
    }


def index_from_document(document: Any) -> BlocklistIndex:
    """Rebuild the index from ``entries_document``'s output; raises on anything else."""
    if not isinstance(document, Mapping) or document.get("schema") != ENTRIES_SCHEMA:
        raise EntriesDocumentError(f"not a {ENTRIES_SCHEMA} document")
    lists = {name: _entries(document, name) for name in ("warn", "block", "allow")}
    return BlocklistIndex([*lists["warn"], *lists["block"]], lists["allow"])


def _entries(document: Mapping[str, Any], name: str) -> list[Entry]:
    raw = document.get(name, [])
    if not isinstance(raw, list):
        raise EntriesDocumentError(f"{name}: not a list")

    entries = []
    for position, item in enumerate(raw):
        where = f"{name}[{position}]"
        if not isinstance(item, Mapping):
            raise EntriesDocumentError(f"{where}: not an object")
        kind, value = item.get("kind"), item.get("value")
        if kind not in ("domain", "host", "url", "ip", "network") or not isinstance(value, str):
            raise EntriesDocumentError(f"{where}: kind or value is missing or unknown")
        network = None
        if kind in ("ip", "network"):
            try:
                network = ipaddress.ip_network(value)
            except ValueError:
                raise EntriesDocumentError(f"{where}: {value!r} is not an address") from None
        application = item.get("application")
        entries.append(
            Entry(
                kind=kind,
                value=value,
                host=str(item.get("host") or value),
                indicator_id=str(item.get("indicatorId", "")),
                action=item.get("action", "Block"),
                application=application if isinstance(application, str) else None,
                network=network,
            )
        )
    return entries


# -- helpers ---------------------------------------------------------------------------------------


def _match_of(entry: Entry, matched_type: MatchedType) -> Match:
    return Match(
        entry.value, matched_type, entry.indicator_id, entry.action, entry.application or ""
    )


def _suffixes_of(name: str) -> Iterable[str]:
    yield name
    dot = name.find(".")
    while dot >= 0:
        yield name[dot + 1 :]
        dot = name.find(".", dot + 1)


def _last_two_labels(host: str) -> str:
    """``www.example.com`` → ``example.com``; a host of one or two labels is itself."""
    # With no dot at all, the inner search runs to -1 (all but the last character) and finds
    # none either, so the whole host is kept.
    return host[host.rfind(".", 0, host.rfind(".")) + 1 :]


def _within(inner: IpNetwork, outer: IpNetwork) -> bool:
    return inner.version == outer.version and inner.subnet_of(outer)  # type: ignore[arg-type]


def _canonical_ipv6(text: str) -> str | None:
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    mapped = address.ipv4_mapped
    return str(mapped) if mapped is not None else str(address)
