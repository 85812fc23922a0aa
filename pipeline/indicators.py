"""Custom indicators as the Defender for Endpoint API returns them, parsed into typed records.

``GET /api/indicators`` answers ``{"value": [...]}`` (one page) and each element describes one
indicator: its value, type, action, expiry and who created it
(https://learn.microsoft.com/defender-endpoint/api/ti-indicator). This module turns such a
payload into :class:`Indicator` objects. It is pure: no I/O and no clock, so deciding whether an
indicator has expired takes ``now`` from the caller.

One bad record never loses the batch: it becomes a :class:`Rejected` entry naming the indicator
id (or its position when it has no usable id) and what was wrong with it. Only a payload that is
not a list of records at all raises :class:`IndicatorPayloadError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal, cast, get_args

__all__ = [
    "BLOCK_ACTIONS",
    "NETWORK_TYPES",
    "Indicator",
    "IndicatorAction",
    "IndicatorError",
    "IndicatorPayloadError",
    "IndicatorType",
    "ParsedIndicators",
    "Rejected",
    "parse_indicator",
    "parse_indicators",
]

IndicatorType = Literal[
    "Url",
    "DomainName",
    "IpAddress",
    "FileSha1",
    "FileSha256",
    "FileMd5",
    "CertificateThumbprint",
]
IndicatorAction = Literal[
    "Block", "BlockAndRemediate", "Warn", "Audit", "Allowed", "Alert", "AlertAndBlock"
]

# The types a proxy, DNS server or firewall can act on; file and certificate indicators are
# enforced by the antivirus engine only.
NETWORK_TYPES: Final = frozenset({"Url", "DomainName", "IpAddress"})

# Actions that block. AlertAndBlock is the legacy spelling of Block with an alert, which the API
# still returns for indicators created before it was retired.
BLOCK_ACTIONS: Final = frozenset({"Block", "BlockAndRemediate", "AlertAndBlock"})

_TYPES_BY_KEY: Final = {name.lower(): name for name in get_args(IndicatorType)}
_ACTIONS_BY_KEY: Final = {name.lower(): name for name in get_args(IndicatorAction)}
# The portal says "Allow" where the API says "Allowed"; both mean the same action.
_ACTIONS_BY_KEY["allow"] = "Allowed"

_MAX_ID_LENGTH: Final = 64


class IndicatorError(ValueError):
    """One indicator record could not be parsed; names the indicator and the reason."""

    def __init__(self, indicator_id: str, reason: str) -> None:
        super().__init__(f"indicator {indicator_id}: {reason}")
        self.indicator_id = indicator_id
        self.reason = reason


class IndicatorPayloadError(ValueError):
    """The payload is neither a list of records nor ``{"value": [...]}``."""


@dataclass(frozen=True, slots=True)
class Indicator:
    """One custom indicator, with the API's field names turned into Python ones."""

    id: str
    value: str  # indicatorValue, exactly as the API returned it
    type: IndicatorType
    action: IndicatorAction
    expiration_time: datetime | None = None  # always timezone-aware (UTC) when present
    title: str = ""
    application: str | None = None
    created_by_source: str | None = None
    source_type: str | None = None
    generate_alert: bool = False
    severity: str | None = None
    rbac_group_names: tuple[str, ...] = ()

    def is_expired(self, now: datetime) -> bool:
        """True when the indicator has an expiry at or before ``now`` (which must be aware)."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        return self.expiration_time is not None and self.expiration_time <= now


@dataclass(frozen=True, slots=True)
class Rejected:
    """An indicator that was left out, with the reason; ``value`` is empty when unknown."""

    indicator_id: str
    reason: str
    value: str = ""


@dataclass(frozen=True, slots=True)
class ParsedIndicators:
    indicators: tuple[Indicator, ...]
    rejected: tuple[Rejected, ...]


def parse_indicators(payload: object) -> ParsedIndicators:
    """Parse one ``GET /api/indicators`` response (``{"value": [...]}``) or a plain list of records.

    Raises :class:`IndicatorPayloadError` only when the payload has no list of records; every
    record-level problem is returned in ``rejected``.
    """
    records = _records_of(payload)

    indicators: list[Indicator] = []
    rejected: list[Rejected] = []
    for position, record in enumerate(records):
        try:
            indicators.append(parse_indicator(record, position))
        except IndicatorError as error:
            rejected.append(Rejected(error.indicator_id, error.reason, _raw_value(record)))
    return ParsedIndicators(tuple(indicators), tuple(rejected))


def parse_indicator(record: object, position: int = 0) -> Indicator:
    """Parse one indicator record; raises :class:`IndicatorError` naming the indicator."""
    if not isinstance(record, Mapping):
        raise IndicatorError(f"#{position}", f"record is a {type(record).__name__}, not an object")
    fields = cast(Mapping[str, object], record)

    indicator_id = _indicator_id(fields.get("id"), position)
    value = fields.get("indicatorValue")
    if not isinstance(value, str) or not value.strip():
        raise IndicatorError(indicator_id, "indicatorValue is missing or not a non-empty string")

    return Indicator(
        id=indicator_id,
        value=value,
        type=cast(IndicatorType, _enum(fields, "indicatorType", _TYPES_BY_KEY, indicator_id)),
        action=cast(IndicatorAction, _enum(fields, "action", _ACTIONS_BY_KEY, indicator_id)),
        expiration_time=_timestamp(fields.get("expirationTime"), indicator_id),
        title=_optional_text(fields, "title", indicator_id) or "",
        application=_optional_text(fields, "application", indicator_id),
        created_by_source=_optional_text(fields, "createdBySource", indicator_id),
        source_type=_optional_text(fields, "sourceType", indicator_id),
        generate_alert=_flag(fields.get("generateAlert"), indicator_id),
        severity=_optional_text(fields, "severity", indicator_id),
        rbac_group_names=_names(fields.get("rbacGroupNames"), indicator_id),
    )


def _records_of(payload: object) -> Sequence[object]:
    if isinstance(payload, Mapping):
        page = cast(Mapping[str, object], payload)
        if "value" not in page:
            raise IndicatorPayloadError('indicators response has no "value" list')
        payload = page["value"]
    if not isinstance(payload, list):
        raise IndicatorPayloadError(
            f"indicators response holds a {type(payload).__name__}, not a list of records"
        )
    return cast(list[object], payload)


def _indicator_id(raw: object, position: int) -> str:
    # The API returns ids as strings ("995") but older payloads carry numbers; a record without
    # a usable id is still reported, by its position in the page.
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise IndicatorError(f"#{position}", "id is missing or not a string or integer")

    text = str(raw).strip()
    if not text or len(text) > _MAX_ID_LENGTH or not text.isprintable():
        raise IndicatorError(f"#{position}", "id is empty, too long or holds control characters")
    return text


def _enum(
    fields: Mapping[str, object], name: str, allowed: Mapping[str, str], indicator_id: str
) -> str:
    raw = fields.get(name)
    if not isinstance(raw, str):
        raise IndicatorError(indicator_id, f"{name} is missing or not a string")

    canonical = allowed.get(raw.strip().lower())
    if canonical is None:
        raise IndicatorError(indicator_id, f"{name} {raw[:40]!r} is not one the API defines")
    return canonical


def _timestamp(raw: object, indicator_id: str) -> datetime | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise IndicatorError(indicator_id, "expirationTime is not a string")

    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise IndicatorError(
            indicator_id, f"expirationTime {raw[:40]!r} is not an ISO 8601 time"
        ) from None
    # The API writes UTC; a time without an offset is read as UTC rather than local time.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _optional_text(fields: Mapping[str, object], name: str, indicator_id: str) -> str | None:
    raw = fields.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise IndicatorError(indicator_id, f"{name} is not a string")
    return raw


def _flag(raw: object, indicator_id: str) -> bool:
    if raw is None:
        return False
    if not isinstance(raw, bool):
        raise IndicatorError(indicator_id, "generateAlert is not a boolean")
    return raw


def _names(raw: object, indicator_id: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(name, str) for name in raw):
        raise IndicatorError(indicator_id, "rbacGroupNames is not a list of strings")
    return tuple(cast(Iterable[str], raw))


def _raw_value(record: object) -> str:
    if isinstance(record, Mapping):
        value = cast(Mapping[str, object], record).get("indicatorValue")
        if isinstance(value, str):
            return value
    return ""
