"""Every network indicator value parsed into one canonical :class:`Entry`, or refused with a reason.

Nothing reaches a blocklist file without passing through here, and what comes out is a small,
safe alphabet: host names are lower-case ASCII (IDN names as punycode) made of letters, digits,
hyphens and underscores; addresses are Python's canonical text for them; URL paths are
percent-encoded down to a set of characters that no list format treats specially. That is what
lets the formats write values without quoting and still guarantee that no indicator can add a
line, a directive, a comment or a quote to a file.

Entry kinds:

* ``domain``: a ``DomainName`` indicator: the name and every subdomain, as MDE matches it
  (https://learn.microsoft.com/defender-endpoint/indicator-ip-domain);
* ``host``: a ``Url`` indicator with no path, query or port: that one host name;
* ``url``: a ``Url`` indicator with a path, a query or a non-default port; only URL-aware
  formats can express it, DNS and domain lists cannot;
* ``ip`` and ``network``: an ``IpAddress`` indicator (or a URL whose host is an address), one
  address or a CIDR block.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Final, Literal

import idna

from pipeline.indicators import Indicator, IndicatorAction

__all__ = [
    "Entry",
    "EntryKind",
    "InvalidValueError",
    "IpNetwork",
    "NormaliseError",
    "normalise",
    "normalise_domain",
    "normalise_ip",
    "normalise_url",
]

EntryKind = Literal["domain", "host", "url", "ip", "network"]
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_MAX_NAME_LENGTH: Final = 253
_LABEL: Final = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_SCHEME: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_DEFAULT_PORTS: Final = {"http": frozenset({80}), "https": frozenset({443})}
_PORTS_WITHOUT_SCHEME: Final = frozenset({80, 443})

# Characters that never appear in a value, before any parsing: controls, format characters,
# separators (which include the Unicode line and paragraph separators), surrogates, private use
# and unassigned code points.
_FORBIDDEN_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
# Characters a URL may not hold: they are not URL characters, and several are quote or escape
# characters in one of the output formats.
_FORBIDDEN_IN_URL: Final = frozenset("\"'<>\\`{}|^")

# What a path or query may keep as is; everything else is percent-encoded. This leaves out ``*``
# and ``^`` (wildcard tokens in PAN-OS URL lists), quotes, ``$``, ``;``, ``#`` and spaces.
_URL_SAFE: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~/!,=:@&+"
)
_HEX: Final = frozenset("0123456789abcdefABCDEF")

# The narrowest a network indicator may be widened to: anything broader would cut off a large
# part of the Internet by mistake.
_MIN_PREFIX: Final = {4: 8, 6: 32}


class NormaliseError(ValueError):
    """An indicator value that cannot be turned into an entry; names the indicator."""

    def __init__(self, indicator_id: str, reason: str) -> None:
        super().__init__(f"indicator {indicator_id}: {reason}")
        self.indicator_id = indicator_id
        self.reason = reason


class InvalidValueError(ValueError):
    """A value that is not a well-formed name, address or URL (not yet tied to an indicator)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One normalised network target and the indicator it came from.

    ``value`` is the canonical text (``example.com``, ``example.com/a?b``, ``203.0.113.9``,
    ``198.51.100.0/24``); ``host`` is the name or address the entry is about (for a URL, its
    host; IPv6 without brackets). ``network`` is set for ``ip`` and ``network`` entries.
    """

    kind: EntryKind
    value: str
    host: str
    indicator_id: str
    action: IndicatorAction
    application: str | None = None
    title: str = ""
    port: int | None = None
    network: IpNetwork | None = field(default=None, compare=False)

    def with_network(self, network: IpNetwork) -> Entry:
        """The same indicator narrowed to ``network`` (used when Allow carves a block apart)."""
        single = network.prefixlen == network.max_prefixlen
        text = str(network.network_address) if single else network.with_prefixlen
        return Entry(
            kind="ip" if single else "network",
            value=text,
            host=text,
            indicator_id=self.indicator_id,
            action=self.action,
            application=self.application,
            title=self.title,
            network=network,
        )


def normalise(indicator: Indicator) -> Entry:
    """Turn a ``Url``, ``DomainName`` or ``IpAddress`` indicator into an :class:`Entry`.

    Raises :class:`NormaliseError` with the indicator id and the reason for anything that is not
    a well-formed value of its type.
    """
    try:
        return _entry_for(indicator)
    except InvalidValueError as error:
        raise NormaliseError(indicator.id, str(error)) from None


def _entry_for(indicator: Indicator) -> Entry:
    text = _checked_text(indicator.value)

    def make(
        kind: EntryKind,
        value: str,
        host: str,
        port: int | None = None,
        network: IpNetwork | None = None,
    ) -> Entry:
        return Entry(
            kind,
            value,
            host,
            indicator.id,
            indicator.action,
            indicator.application,
            indicator.title,
            port,
            network,
        )

    if indicator.type == "DomainName":
        name = normalise_domain(text)
        return make("domain", name, name)

    if indicator.type == "IpAddress":
        network = normalise_ip(text)
        return make(*_ip_kind_and_text(network), network=network)

    if indicator.type == "Url":
        host, address, port, path = normalise_url(text)
        if address is not None and port is None and path == "":
            return make(*_ip_kind_and_text(address), network=address)
        if port is None and path == "":
            return make("host", host, host)

        shown_host = f"[{host}]" if address is not None and address.version == 6 else host
        shown_port = f":{port}" if port is not None else ""
        value = f"{shown_host}{shown_port}{path or '/'}"
        return make("url", value, host, port=port, network=address)

    raise InvalidValueError(f"{indicator.type} indicators are not network targets")


def _ip_kind_and_text(network: IpNetwork) -> tuple[EntryKind, str, str]:
    if network.prefixlen == network.max_prefixlen:
        text = str(network.network_address)
        return "ip", text, text
    return "network", network.with_prefixlen, network.with_prefixlen


def normalise_domain(text: str) -> str:
    """Canonical form of a domain name: lower case, punycode, no trailing dot."""
    name = _checked_text(text)
    if any(mark in name for mark in "/:@?#"):
        raise InvalidValueError("a domain name holds no scheme, port, path or user part")
    if name.startswith("*."):
        raise InvalidValueError(
            "wildcards are not supported: a domain already covers its subdomains"
        )
    if name.endswith("."):
        name = name[:-1]

    name = _to_ascii(name)

    if len(name) > _MAX_NAME_LENGTH:
        raise InvalidValueError(f"name is longer than {_MAX_NAME_LENGTH} characters")
    labels = name.split(".")
    for label in labels:
        _check_label(label)
    if len(labels) < 2:
        raise InvalidValueError("a single-label name would block a whole top-level domain")
    if labels[-1].isdigit() or _is_address(name):
        raise InvalidValueError("looks like an IP address, not a domain name")
    return name


def normalise_ip(text: str) -> IpNetwork:
    """One public address or CIDR block (``/32`` and ``/128`` are single addresses)."""
    raw = _checked_text(text)
    if "%" in raw:
        raise InvalidValueError("IPv6 scope ids are not allowed")

    try:
        network = ipaddress.ip_network(raw, strict=True)
    except ValueError as error:
        reason = "has host bits set" if "host bits" in str(error) else "is not an IP address"
        raise InvalidValueError(f"{_shorten(raw)} {reason}") from None

    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen == 128:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            network = ipaddress.IPv4Network(mapped)

    if network.prefixlen < _MIN_PREFIX[network.version]:
        raise InvalidValueError(
            f"network /{network.prefixlen} is wider than /{_MIN_PREFIX[network.version]}"
        )
    # MDE itself refuses indicators for internal addresses, and a firewall rule blocking one
    # could cut off the very network it protects.
    if not network.is_global:
        raise InvalidValueError(f"{_ip_kind_and_text(network)[1]} is not a public address")
    return network


def normalise_url(text: str) -> tuple[str, IpNetwork | None, int | None, str]:
    """Split a URL into (host, address or None, non-default port or None, encoded path+query).

    The path is ``""`` when the URL names only a host. The scheme, user part and fragment are
    dropped or refused; only http and https URLs are accepted.
    """
    raw = _checked_text(text)
    if any(char in _FORBIDDEN_IN_URL for char in raw):
        raise InvalidValueError("URL holds a quote, backslash or other character URLs may not hold")

    scheme = None
    match = _SCHEME.match(raw)
    if match:
        scheme = match.group(1).lower()
        if scheme not in _DEFAULT_PORTS:
            raise InvalidValueError(f"scheme {scheme!r} is not http or https")
        raw = raw[match.end() :]
    elif "://" in raw:
        raise InvalidValueError("URL scheme is malformed")

    cut = min((raw.find(mark) for mark in "/?#" if mark in raw), default=len(raw))
    authority, rest = raw[:cut], raw[cut:]
    rest = rest.split("#", 1)[0]  # a fragment never reaches the server

    host_text, port = _split_authority(authority)
    if port is not None:
        defaults = _DEFAULT_PORTS[scheme] if scheme else _PORTS_WITHOUT_SCHEME
        port = None if port in defaults else port

    address = _address_or_none(host_text)
    host = str(address.network_address) if address is not None else normalise_domain(host_text)
    return host, address, port, _encoded_path(rest)


def _split_authority(authority: str) -> tuple[str, int | None]:
    if not authority:
        raise InvalidValueError("URL has no host")
    if "@" in authority:
        raise InvalidValueError("URLs with a user part are not supported")

    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise InvalidValueError("IPv6 host is missing its closing bracket")
        host, after = authority[1:end], authority[end + 1 :]
        if after and not after.startswith(":"):
            raise InvalidValueError("unexpected text after the IPv6 host")
        port_text = after[1:] if after else None
    elif authority.count(":") > 1:
        raise InvalidValueError("an IPv6 host must be written in brackets")
    else:
        host, _, port_text = authority.partition(":")
        port_text = port_text if ":" in authority else None

    if port_text is None:
        return host, None
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidValueError(f"port {_shorten(port_text)!r} is not a number from 1 to 65535")
    return host, int(port_text)


def _address_or_none(host: str) -> IpNetwork | None:
    # Only dotted-quad IPv4 and bracketed IPv6 hosts are addresses; anything else is a name.
    if ":" in host or _is_address(host):
        return normalise_ip(host)
    return None


def _encoded_path(rest: str) -> str:
    path, mark, query = rest.partition("?")
    encoded = _percent_encoded(path)
    if encoded == "/":
        encoded = ""
    if mark and query:
        encoded = f"{encoded or '/'}?{_percent_encoded(query)}"
    return encoded


def _percent_encoded(part: str) -> str:
    out: list[str] = []
    index = 0
    while index < len(part):
        char = part[index]
        if char == "%" and len(part) >= index + 3 and set(part[index + 1 : index + 3]) <= _HEX:
            out.append("%" + part[index + 1 : index + 3].upper())
            index += 3
            continue
        if char in _URL_SAFE:
            out.append(char)
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode("utf-8"))
        index += 1
    return "".join(out)


def _to_ascii(name: str) -> str:
    if name.isascii():
        return name.lower()
    try:
        return idna.encode(name, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError) as error:
        raise InvalidValueError(f"not a valid internationalised domain name ({error})") from None


def _check_label(label: str) -> None:
    if not _LABEL.fullmatch(label):
        raise InvalidValueError(
            f"label {_shorten(label)!r} is empty, too long or holds characters a host name "
            "may not hold"
        )
    if label.startswith("xn--"):
        try:
            idna.decode(label)
        except (idna.IDNAError, UnicodeError):
            raise InvalidValueError(f"label {_shorten(label)!r} is not valid punycode") from None


def _checked_text(text: str) -> str:
    stripped = text.strip()
    if not stripped:
        raise InvalidValueError("value is empty")
    for char in stripped:
        if unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            raise InvalidValueError(
                f"value holds a control, space or unassigned character ({char!r})"
            )
    return stripped


def _is_address(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
