"""What every format shares: the rendered result, the omission records and their reasons."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.act.blocklist.build import Blocklist, Exemption, ListName
from pipeline.act.blocklist.normalise import Entry

FormatName = Literal[
    "squid-domains",
    "squid-ips",
    "unbound",
    "rpz",
    "dnsmasq",
    "hosts",
    "edl-urls",
    "edl-ips",
    "windows-firewall",
    "azure-firewall",
    "sentinel-watchlist",
]


@dataclass(frozen=True, slots=True)
class Omission:
    """An indicator a format left out (or wrote only in part), and why."""

    indicator_id: str
    value: str
    reason: str


@dataclass(frozen=True, slots=True)
class Rendered:
    """One list in one format.

    ``entries`` are the data items written (lines, or the addresses and names of a JSON
    document), which is what a diff between two versions compares. ``not_representable`` are
    entries the format cannot express and therefore left out; ``partial`` are entries written
    with a narrower effect than the indicator has (a hosts file cannot block subdomains).
    ``elsewhere`` counts entries of the other family, names in an address format or addresses
    in a name format: they are not lost, they belong in a format of that family.
    """

    format: FormatName
    list_name: ListName
    content: str
    entries: tuple[str, ...]
    not_representable: tuple[Omission, ...]
    partial: tuple[Omission, ...]
    elsewhere: int = 0


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """Format settings; the defaults suit a first deployment."""

    rpz_serial: int | None = None  # SOA serial; by default the build time in epoch seconds
    rpz_ttl: int = 300
    azure_priority: int = 300  # priority of the Azure Firewall rule collection group
    rule_chunk: int = 500  # addresses or names per firewall rule


@dataclass
class Collector:
    """Gathers the items, omissions and partial entries while a format writes its lines."""

    format: FormatName
    blocklist: Blocklist
    entries: list[str] = field(default_factory=list)
    not_representable: list[Omission] = field(default_factory=list)
    partial: list[Omission] = field(default_factory=list)
    elsewhere: int = 0

    def leave_to_other_family(self, entry: Entry) -> None:
        self.elsewhere += 1

    def omit(self, entry: Entry, reason: str) -> None:
        self.not_representable.append(Omission(entry.indicator_id, entry.value, reason))

    def omit_exemption(self, exemption: Exemption) -> None:
        within = exemption.within
        self.omit(
            exemption.allowed,
            f"Allow indicator inside {within.value} (indicator {within.indicator_id}), which "
            f"{self.format} cannot exempt, so it stays blocked there",
        )

    def note_partial(self, entry: Entry, reason: str) -> None:
        self.partial.append(Omission(entry.indicator_id, entry.value, reason))

    def rendered(self, content: str) -> Rendered:
        return Rendered(
            format=self.format,
            list_name=self.blocklist.name,
            content=content,
            entries=tuple(self.entries),
            not_representable=tuple(self.not_representable),
            partial=tuple(self.partial),
            elsewhere=self.elsewhere,
        )

    def header(self, comment: str) -> str:
        return (
            f"{comment} {self.blocklist.name} list from Microsoft Defender for Endpoint "
            f"indicators ({self.format}); generated, do not edit"
        )


def url_reason(fmt: str) -> str:
    return (
        f"{fmt} matches whole host names only; this URL has a path, query or port, and blocking "
        "the whole host would block more than the indicator does"
    )


def subtree_reason(fmt: str) -> str:
    return (
        f"{fmt} can only block a name together with all its subdomains, and this URL indicator "
        "names one host"
    )


def lines(*parts: str | list[str]) -> str:
    """Join header lines and item lists into file content ending with one newline."""
    flat: list[str] = []
    for part in parts:
        flat.extend([part] if isinstance(part, str) else part)
    return "".join(f"{line}\n" for line in flat)
