"""From indicators to three lists (block, warn, allow), applying MDE's own precedence rules.

The rules, as Defender for Endpoint applies them to network indicators
(https://learn.microsoft.com/defender-endpoint/indicator-ip-domain):

* ``Block``, ``BlockAndRemediate`` and the legacy ``AlertAndBlock`` block; ``Warn`` (what Defender
  for Cloud Apps creates for monitored apps) goes to its own list; ``Allowed`` exempts;
  ``Audit`` and the legacy ``Alert`` only raise alerts, so they are skipped with that reason.
* Allow wins over Warn, which wins over Block. An Allow that covers a whole entry removes it; an
  Allow inside a blocked domain becomes an *exemption* that formats able to express one (RPZ
  passthru, unbound ``always_transparent``, dnsmasq ``#``) write, and the others report. An Allow
  address inside a blocked network splits the network around it.
* Expired indicators are dropped; file and certificate indicators are skipped, since only the
  antivirus engine can enforce them.
* Within a list, an entry another one already covers (``a.example.com`` under the domain
  ``example.com``, an address inside a listed network) is merged away, because some readers
  (squid) refuse overlapping entries. Nothing is dropped silently: every left-out indicator is in
  ``skipped``, ``merged`` or ``rejected`` with a reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from pipeline.act.blocklist.normalise import Entry, IpNetwork, NormaliseError, normalise
from pipeline.indicators import (
    BLOCK_ACTIONS,
    NETWORK_TYPES,
    Indicator,
    IndicatorAction,
    Rejected,
)

__all__ = [
    "LIST_NAMES",
    "Blocklist",
    "Blocklists",
    "CloudApp",
    "Exemption",
    "ListName",
    "Skipped",
    "build_blocklists",
    "cloud_app_indicators",
]

ListName = Literal["block", "warn", "allow"]
LIST_NAMES: Final[tuple[ListName, ...]] = ("block", "warn", "allow")

_KIND_ORDER: Final = {"domain": 0, "host": 1, "url": 2, "ip": 3, "network": 4}


@dataclass(frozen=True, slots=True)
class Skipped:
    """An indicator left out of every list on purpose, and why."""

    indicator_id: str
    value: str
    reason: str


@dataclass(frozen=True, slots=True)
class Exemption:
    """An Allow entry that lies inside an entry of a list without covering all of it."""

    allowed: Entry
    within: Entry


@dataclass(frozen=True, slots=True)
class Blocklist:
    name: ListName
    entries: tuple[Entry, ...]
    exemptions: tuple[Exemption, ...] = ()


@dataclass(frozen=True, slots=True)
class Blocklists:
    """The three lists plus everything that was left out, each with its reason."""

    now: datetime
    block: Blocklist
    warn: Blocklist
    allow: Blocklist
    skipped: tuple[Skipped, ...]  # expired, not network-blockable, alert-only, overridden
    merged: tuple[Skipped, ...]  # duplicates and entries another entry of the list covers
    rejected: tuple[Rejected, ...]  # values that are not well-formed

    def get(self, name: ListName) -> Blocklist:
        return {"block": self.block, "warn": self.warn, "allow": self.allow}[name]


@dataclass(frozen=True, slots=True)
class CloudApp:
    """A Defender for Cloud Apps app with its tags and domains (Graph ``aggregatedAppsDetails``)."""

    id: str
    name: str
    tags: tuple[str, ...]
    domains: tuple[str, ...]


def cloud_app_indicators(apps: Iterable[CloudApp]) -> list[Indicator]:
    """Domain indicators for unsanctioned (Block) and monitored (Warn) apps.

    Defender for Cloud Apps creates the same indicators in MDE itself when its MDE integration
    is on; this covers tenants where it is off, or indicators the reading app cannot see.
    """
    indicators: list[Indicator] = []
    for app in apps:
        tags = {tag.lower() for tag in app.tags}
        action: IndicatorAction
        if "unsanctioned" in tags:
            action = "Block"
        elif "monitored" in tags:
            action = "Warn"
        else:
            continue

        for position, domain in enumerate(app.domains):
            # App domain lists write subdomains as "*.name"; a domain entry covers them anyway.
            value = domain[2:] if domain.startswith("*.") else domain
            indicators.append(
                Indicator(
                    id=f"mda-app-{app.id}-{position}",
                    value=value,
                    type="DomainName",
                    action=action,
                    title=f"Defender for Cloud Apps: {app.name}",
                    application=app.name,
                    created_by_source="DefenderForCloudApps",
                )
            )
    return indicators


def build_blocklists(
    indicators: Iterable[Indicator], now: datetime, rejected: Iterable[Rejected] = ()
) -> Blocklists:
    """Sort indicators into block, warn and allow lists as of ``now`` (timezone-aware).

    ``rejected`` carries records the parser already refused, so that one report lists them all.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")

    by_list: dict[ListName, list[Entry]] = {"block": [], "warn": [], "allow": []}
    skipped: list[Skipped] = []
    merged: list[Skipped] = []
    refused = list(rejected)

    for indicator in indicators:
        list_name, reason = _destination(indicator, now)
        if list_name is None:
            skipped.append(Skipped(indicator.id, indicator.value, reason))
            continue
        try:
            by_list[list_name].append(normalise(indicator))
        except NormaliseError as error:
            refused.append(Rejected(error.indicator_id, error.reason, indicator.value))

    allow = _collapsed(_deduplicated(by_list["allow"], merged), merged)
    allow_index = _Index(allow)

    warn = _without_allowed(_deduplicated(by_list["warn"], merged), allow, allow_index, skipped)
    warn = _collapsed(warn, merged)

    block = _without_allowed(_deduplicated(by_list["block"], merged), allow, allow_index, skipped)
    block = _collapsed(_without_warned(block, warn, skipped), merged)

    return Blocklists(
        now=now,
        block=Blocklist("block", _sorted(block), _exemptions(allow, block)),
        warn=Blocklist("warn", _sorted(warn), _exemptions(allow, warn)),
        allow=Blocklist("allow", _sorted(allow)),
        skipped=tuple(skipped),
        merged=tuple(merged),
        rejected=tuple(refused),
    )


def _destination(indicator: Indicator, now: datetime) -> tuple[ListName | None, str]:
    if indicator.type not in NETWORK_TYPES:
        return None, (
            f"{indicator.type} indicators are enforced by the antivirus engine only; "
            "no network layer can block them"
        )
    if indicator.is_expired(now):
        assert indicator.expiration_time is not None
        return None, f"expired at {indicator.expiration_time.isoformat()}"
    if indicator.action in BLOCK_ACTIONS:
        return "block", ""
    if indicator.action == "Warn":
        return "warn", ""
    if indicator.action == "Allowed":
        return "allow", ""
    return None, f"{indicator.action} indicators only raise alerts; they do not block"


def _sort_key(entry: Entry) -> tuple[int, str, tuple[int, int, int], int, str]:
    # Addresses sort numerically, names alphabetically, and ties by indicator id (numerically
    # when the ids are numbers, as the API's are).
    network = entry.network if entry.kind in ("ip", "network") else None
    numeric = entry.indicator_id.isdigit()
    return (
        _KIND_ORDER[entry.kind],
        "" if network else entry.value,
        _network_sort_key(network) if network else (0, 0, 0),
        int(entry.indicator_id) if numeric else -1,
        "" if numeric else entry.indicator_id,
    )


def _sorted(entries: list[Entry]) -> tuple[Entry, ...]:
    return tuple(sorted(entries, key=_sort_key))


def _deduplicated(entries: list[Entry], merged: list[Skipped]) -> list[Entry]:
    kept: dict[tuple[str, str], Entry] = {}
    for entry in sorted(entries, key=_sort_key):
        first = kept.setdefault((entry.kind, entry.value), entry)
        if first is not entry:
            merged.append(_note(entry, f"same value as indicator {first.indicator_id}"))
    return list(kept.values())


def _without_allowed(
    entries: list[Entry], allow: list[Entry], allow_index: _Index, skipped: list[Skipped]
) -> list[Entry]:
    allowed_networks = [entry for entry in allow if entry.network is not None]
    kept: list[Entry] = []

    for entry in entries:
        cover = allow_index.cover(entry, proper=False)
        if cover is not None:
            skipped.append(
                _note(
                    entry,
                    f"Allow indicator {cover.indicator_id} ({cover.value}) covers it, and Allow "
                    "wins over Block and Warn",
                )
            )
        elif entry.kind == "network":
            kept.extend(_split_around(entry, allowed_networks))
        else:
            kept.append(entry)
    return kept


def _split_around(entry: Entry, allowed: list[Entry]) -> list[Entry]:
    # MDE itself takes single addresses only, but a list fed from elsewhere may hold networks; an
    # Allow address inside one is honoured by listing the rest of the network instead.
    assert entry.network is not None
    pieces: list[IpNetwork] = [entry.network]

    for allow in allowed:
        hole = allow.network
        if hole is None or hole.version != entry.network.version:
            continue
        next_pieces: list[IpNetwork] = []
        for piece in pieces:
            if _is_within(hole, piece):
                next_pieces.extend(_exclude(piece, hole))
            else:
                next_pieces.append(piece)
        pieces = next_pieces

    if pieces == [entry.network]:
        return [entry]
    return [entry.with_network(piece) for piece in sorted(pieces, key=_network_sort_key)]


def _exclude(piece: IpNetwork, hole: IpNetwork) -> Iterator[IpNetwork]:
    # address_exclude needs both arguments of the same IP version; the caller checked it.
    return piece.address_exclude(hole)  # type: ignore[arg-type]


def _is_within(inner: IpNetwork, outer: IpNetwork) -> bool:
    return inner.version == outer.version and inner.subnet_of(outer)  # type: ignore[arg-type]


def _network_sort_key(network: IpNetwork) -> tuple[int, int, int]:
    return network.version, int(network.network_address), network.prefixlen


def _without_warned(entries: list[Entry], warn: list[Entry], skipped: list[Skipped]) -> list[Entry]:
    warned = {(entry.kind, entry.value): entry for entry in warn}
    kept: list[Entry] = []

    for entry in entries:
        warning = warned.get((entry.kind, entry.value))
        if warning is None:
            kept.append(entry)
        else:
            skipped.append(
                _note(entry, f"Warn indicator {warning.indicator_id} on the same value wins")
            )
    return kept


def _collapsed(entries: list[Entry], merged: list[Skipped]) -> list[Entry]:
    index = _Index(entries)
    kept: list[Entry] = []

    for entry in entries:
        cover = index.cover(entry, proper=True)
        if cover is None:
            kept.append(entry)
        else:
            merged.append(
                _note(entry, f"covered by indicator {cover.indicator_id} ({cover.value})")
            )
    return kept


def _exemptions(allow: list[Entry], entries: list[Entry]) -> tuple[Exemption, ...]:
    index = _Index(entries)
    found: list[Exemption] = []

    for allowed in allow:
        within = index.cover(allowed, proper=False)
        if within is not None:
            found.append(Exemption(allowed, within))
    return tuple(found)


def _note(entry: Entry, reason: str) -> Skipped:
    return Skipped(entry.indicator_id, entry.value, reason)


class _Index:
    """Which entry covers another: domain suffixes, exact hosts and URLs, containing networks."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        self._domains: dict[str, Entry] = {}
        self._hosts: dict[str, Entry] = {}
        self._urls: dict[str, Entry] = {}
        self._networks: dict[tuple[int, int], dict[IpNetwork, Entry]] = {}

        for entry in entries:
            if entry.kind == "domain":
                self._domains.setdefault(entry.value, entry)
            elif entry.kind == "host":
                self._hosts.setdefault(entry.value, entry)
            elif entry.kind == "url":
                self._urls.setdefault(entry.value, entry)
            elif entry.network is not None:
                key = (entry.network.version, entry.network.prefixlen)
                self._networks.setdefault(key, {}).setdefault(entry.network, entry)
        self._prefixes = sorted(self._networks)

    def cover(self, entry: Entry, *, proper: bool) -> Entry | None:
        """An indexed entry whose scope includes ``entry``'s.

        With ``proper``, an indexed entry of the same kind and value does not count, so an entry
        looked up in the index built from its own list does not find itself.
        """
        if entry.kind in ("ip", "network"):
            return self._network_cover(entry, proper)

        for suffix in _suffixes(entry.host):
            domain = self._domains.get(suffix)
            if domain is not None and not (proper and _same(domain, entry)):
                return domain

        if entry.kind in ("host", "url"):
            host = self._hosts.get(entry.host)
            if host is not None and not (proper and _same(host, entry)):
                return host
        if entry.kind == "url" and not proper:
            return self._urls.get(entry.value)
        return None

    def _network_cover(self, entry: Entry, proper: bool) -> Entry | None:
        network = entry.network
        assert network is not None
        for version, prefix in self._prefixes:
            if version != network.version or prefix > network.prefixlen:
                continue
            candidate = self._networks[(version, prefix)].get(network.supernet(new_prefix=prefix))
            if candidate is not None and not (proper and _same(candidate, entry)):
                return candidate
        return None


def _same(first: Entry, second: Entry) -> bool:
    return first.kind == second.kind and first.value == second.value


def _suffixes(name: str) -> Iterator[str]:
    yield name
    dot = name.find(".")
    while dot >= 0:
        yield name[dot + 1 :]
        dot = name.find(".", dot + 1)
