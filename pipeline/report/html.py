"""The HTML report of one evaluation: a single self-contained file a security lead can send on.

Inputs are plain data, the way the rest of the pipeline writes them:

* the evaluation document of ``python -m pipeline evaluate --format json``
  (``{"devices": [...], "rejected": [...], "summary": {...}}``);
* the capability matrix as ``load_matrix().to_json()`` gives it (titles, version, citations);
* optionally what a cycle did: planned actions, blocklist publications, ingestion counts and the
  cycle's own metadata (id, times, dry-run flag, tenant name).

The devices are read once, into a :class:`_Tally` of counts, and each section of the page is
rendered from that tally. A device record the report cannot read is skipped, named in the page
under "Records the report could not read", and returned in :attr:`Report.problems`; the rest of
the fleet is still reported. The numbers are recounted from the devices rather than copied from
the document's summary, and a disagreement between the two is shown at the top of the page.

The page needs nothing outside itself: CSS is inline, charts are inline SVG, there is no script,
and a Content-Security-Policy forbids loading anything. Every value taken from the data goes
through :func:`_text`, which HTML-escapes it and makes control, bidirectional-override and lone
surrogate characters visible, because device names and reasons can contain anything. Links are
written only for ``https://`` addresses; anything else is shown as text.

Key numbers carry ``data-metric`` (and ``data-value``) attributes, table cells and chart shapes
carry ``data-mode`` / ``data-platform`` / ``data-capability`` and counts, so that tests and other
tools can read the rendered page without scraping prose.

Rendering is pure: no clock, no I/O, the same inputs give the same bytes.
"""

from __future__ import annotations

import html
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline import __version__

logger = logging.getLogger(__name__)

DEFAULT_TOP = 50  # rows in the device, action and rejected-record lists
_REASONS_SHOWN = 20  # rows of "other unknown verdicts": the long tail helps nobody on paper

STATUSES = ("enforced", "partial", "not_enforced", "unknown", "not_applicable")

_KNOWN_STATUSES = frozenset(STATUSES)

# The coverage heatmap splits "unknown" in two: an unknown verdict that still certainly fails in
# part (say, outside Edge) is a gap, and greying it out with the plain unknowns would hide that.
CATEGORIES = ("enforced", "partial", "unknown_failing", "not_enforced", "unknown", "not_applicable")

# The protections a tenant configures centrally and expects to block everywhere; on a passive
# device they show as "on" in the portal while nothing blocks, which is what the report is for.
SILENT_CAPABILITIES = (
    "indicator_url",
    "indicator_ip",
    "mda_unsanctioned_block",
    "web_content_filtering",
)

_SILENT_LABELS = {
    "indicator_url": "URL / domain indicators",
    "indicator_ip": "IP indicators",
    "mda_unsanctioned_block": "Unsanctioned-app block (Defender for Cloud Apps)",
    "web_content_filtering": "Web content filtering",
}

_STATUS_LABELS = {
    "enforced": "enforced",
    "partial": "partial",
    "not_enforced": "not enforced",
    "unknown": "unknown",
    "not_applicable": "not applicable",
    "unknown_failing": "fails in part, rest unknown",
}
_CELL_LABELS = {**_STATUS_LABELS, "unknown_failing": "fails in part"}
_STATUS_SYMBOLS = {
    "enforced": "\u2713",
    "partial": "\u25d0",
    "not_enforced": "\u2717",
    "unknown": "?",
    "not_applicable": "\u2013",
    "unknown_failing": "\u2717?",
}
_STATUS_COLOURS = {
    "enforced": "#2e7d32",
    "partial": "#f2a900",
    "not_enforced": "#c62828",
    "unknown": "#9e9e9e",
    "not_applicable": "#e4e4e4",
    "unknown_failing": "#ef8a62",
}

_MODE_LABELS = {
    "active": "Active",
    "passive": "Passive",
    "edr_block": "Passive + EDR in block mode",
    "passive_audit": "Passive audit (avMode 5)",
    "disabled": "Disabled or uninstalled",
    "limited_periodic_scanning": "Limited periodic scanning",
    "not_onboarded": "Not onboarded",
    "other": "Other / not known",
}
_MODE_COLOURS = {
    "active": "#2e7d32",
    "edr_block": "#1565c0",
    "passive": "#ef6c00",
    "passive_audit": "#f2a900",
    "limited_periodic_scanning": "#8e24aa",
    "disabled": "#c62828",
    "not_onboarded": "#5d4037",
    "other": "#9e9e9e",
}
_FALLBACK_COLOUR = "#607d8b"

_PLATFORM_LABELS = {
    "windows_client": "Windows client",
    "windows_server": "Windows Server",
    "windows_server_downlevel": "Windows Server 2012 R2 / 2016",
    "macos": "macOS",
    "linux": "Linux",
    "unknown": "Platform not known",
}

# Characters that would hide or disguise text: C0/C1 controls (tab and newline are kept),
# bidirectional overrides and isolates, and lone surrogates that cannot be encoded as UTF-8.
_HIDDEN = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_SAFE_URL = re.compile(r"https://[^\s\"'<>\\`\x00-\x1f\x7f]+")


class ReportInputError(ValueError):
    """The evaluation document cannot be reported on at all; the message names what is wrong."""


@dataclass(frozen=True)
class Report:
    """A rendered report and the device records it had to leave out (one sentence each)."""

    html: str
    problems: tuple[str, ...]


def render_report(
    evaluation: Mapping[str, Any],
    matrix: Mapping[str, Any],
    *,
    actions: Iterable[Mapping[str, Any]] | None = None,
    blocklists: Iterable[Mapping[str, Any]] | None = None,
    ingestion: Mapping[str, Any] | Iterable[Mapping[str, Any]] | None = None,
    cycle: Mapping[str, Any] | None = None,
    top: int = DEFAULT_TOP,
    ingestion_note: str | None = None,
) -> str:
    """The report as one HTML document; see :func:`build_report` for the arguments."""
    return build_report(
        evaluation,
        matrix,
        actions=actions,
        blocklists=blocklists,
        ingestion=ingestion,
        cycle=cycle,
        top=top,
        ingestion_note=ingestion_note,
    ).html


def build_report(
    evaluation: Mapping[str, Any],
    matrix: Mapping[str, Any],
    *,
    actions: Iterable[Mapping[str, Any]] | None = None,
    blocklists: Iterable[Mapping[str, Any]] | None = None,
    ingestion: Mapping[str, Any] | Iterable[Mapping[str, Any]] | None = None,
    cycle: Mapping[str, Any] | None = None,
    top: int = DEFAULT_TOP,
    ingestion_note: str | None = None,
) -> Report:
    """Render the report and say which device records were left out.

    ``evaluation`` and ``matrix`` are required. ``actions`` is any list of dicts (known keys:
    device_name, device_id, action, status, reason; others are shown too). ``blocklists`` are
    publication summaries (format, list, entries, sha256, added, removed, or a ``diff`` holding
    the last two). ``ingestion`` is one summary (sent, failed, dead_lettered, ...) or one per
    table; without it, ``ingestion_note`` says why (by default: nothing was sent). ``cycle``
    holds cycle_id, started, finished, dry_run and tenant. ``top`` caps the length of every list
    of records on the page.

    Raises :class:`ReportInputError` when the document is not an evaluation at all.
    """
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    devices = _devices_of(evaluation)
    summary = evaluation.get("summary")
    summary = summary if isinstance(summary, Mapping) else {}
    rejected = _records(evaluation.get("rejected"), "rejected")

    tally = _Tally.of(devices, top)
    tally.rejected = len(rejected) if rejected else _int(summary.get("rejected"))
    context = _Context(
        tally=tally,
        matrix=_MatrixView.of(matrix),
        summary=summary,
        rejected=rejected,
        actions=None if actions is None else _records(actions, "actions"),
        blocklists=None if blocklists is None else _records(blocklists, "blocklists"),
        ingestion=None if ingestion is None else _ingestion_rows(ingestion),
        cycle=dict(cycle) if cycle is not None else {},
        top=top,
        ingestion_note=ingestion_note,
    )

    page = _page(context)
    logger.info(
        "report rendered: %d devices, %d with gaps, %d unreadable records, %d bytes",
        tally.devices,
        tally.with_gaps,
        len(tally.problems),
        len(page),
    )
    return Report(html=page, problems=tuple(tally.problems))


# --- reading the inputs -------------------------------------------------------------------------


class _Unreadable(Exception):
    """One device record the report cannot use; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class _Device:
    device_id: str
    name: str
    platform: str
    mode: str
    mode_source: str
    capabilities: Mapping[str, Mapping[str, Any]]
    gaps: tuple[str, ...]
    findings: tuple[Mapping[str, Any], ...]


def _devices_of(evaluation: Mapping[str, Any]) -> Iterable[Any]:
    if not isinstance(evaluation, Mapping):
        raise ReportInputError(
            f"the evaluation must be a JSON object, got {type(evaluation).__name__}"
        )
    if "devices" not in evaluation:
        raise ReportInputError("the evaluation has no 'devices' list; is it an evaluate output?")
    devices = evaluation["devices"]
    if isinstance(devices, str | bytes | Mapping) or not isinstance(devices, Iterable):
        raise ReportInputError(
            f"the evaluation's 'devices' must be a list, got {type(devices).__name__}"
        )
    return devices


def _read_device(record: Any) -> _Device:
    if not isinstance(record, Mapping):
        raise _Unreadable(f"not an object but {type(record).__name__}")
    device_id = record.get("device_id")
    if not isinstance(device_id, str) or not device_id:
        raise _Unreadable("device_id: missing or not text")
    name = record.get("device_name")
    mode = record.get("mode")
    if not isinstance(mode, str) or not mode:
        raise _Unreadable("mode: missing or not text")

    capabilities = record.get("capabilities")
    if not isinstance(capabilities, Mapping):
        raise _Unreadable("capabilities: missing or not an object")
    for cap_id, verdict in capabilities.items():
        if not isinstance(verdict, dict) or verdict.get("status") not in _KNOWN_STATUSES:
            raise _Unreadable(f"capabilities.{cap_id}: no known status")

    gaps = record.get("gaps")
    if not isinstance(gaps, list) or not all(isinstance(g, str) for g in gaps):
        raise _Unreadable("gaps: not a list of capability ids")
    findings = record.get("findings") or []
    if not isinstance(findings, list) or not all(
        isinstance(f, Mapping) and isinstance(f.get("code"), str) for f in findings
    ):
        raise _Unreadable("findings: not a list of objects with a code")

    return _Device(
        device_id=device_id,
        name=name if isinstance(name, str) and name else device_id,
        platform=_optional_text(record.get("platform")) or "unknown",
        mode=mode,
        mode_source=_optional_text(record.get("mode_source")) or "unknown",
        capabilities=capabilities,
        gaps=tuple(gaps),
        findings=tuple(findings),
    )


def _records(raw: Any, what: str) -> list[Mapping[str, Any]]:
    """A list of objects; an item that is not an object is kept as ``{"value": item}``."""
    if raw is None:
        return []
    if isinstance(raw, str | bytes | Mapping) or not isinstance(raw, Iterable):
        raise ReportInputError(f"{what} must be a list of objects, got {type(raw).__name__}")
    return [item if isinstance(item, Mapping) else {"value": item} for item in raw]


def _ingestion_rows(
    raw: Mapping[str, Any] | Iterable[Mapping[str, Any]],
) -> list[Mapping[str, Any]]:
    if isinstance(raw, Mapping):
        return [raw]
    return _records(raw, "ingestion")


def _optional_text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int:
    """A count from the data; anything that is not a whole number counts as 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return 0


# --- counting -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SilentRow:
    sort_key: tuple[int, str, str]
    device: _Device
    gaps: tuple[str, ...]


@dataclass
class _UnknownGroup:
    """Unknown verdicts of one capability that share a reason (and so its sources)."""

    capability: str
    reason: str
    basis: str
    sources: tuple[str, ...]
    count: int = 0
    modes: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, capability: str, reason: str, verdict: Mapping[str, Any]) -> _UnknownGroup:
        also = verdict.get("also")
        sources = [verdict.get("source"), *(also if isinstance(also, list) else ())]
        return cls(
            capability=capability,
            reason=reason,
            basis=_plain(verdict.get("basis") or "documented"),
            sources=tuple(url for url in sources if isinstance(url, str) and url),
        )


@dataclass
class _Tally:
    """Everything the page shows about the devices, counted in one pass."""

    top: int
    devices: int = 0
    with_gaps: int = 0
    rejected: int = 0
    by_mode: Counter[str] = field(default_factory=Counter)
    by_platform: Counter[str] = field(default_factory=Counter)
    by_mode_source: Counter[str] = field(default_factory=Counter)
    mode_by_platform: Counter[tuple[str, str]] = field(default_factory=Counter)
    # (capability, mode, category) -> devices; see CATEGORIES.
    coverage: dict[tuple[str, str, str], int] = field(default_factory=dict)
    gaps: Counter[str] = field(default_factory=Counter)
    unknown_groups: dict[tuple[str, str], _UnknownGroup] = field(default_factory=dict)
    findings: Counter[str] = field(default_factory=Counter)
    fixes: dict[str, str] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)
    silent_devices: int = 0
    silent: Counter[str] = field(default_factory=Counter)
    silent_rows: list[_SilentRow] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, devices: Iterable[Any], top: int) -> _Tally:
        tally = cls(top=top)
        for index, record in enumerate(devices):
            try:
                device = _read_device(record)
            except _Unreadable as exc:
                tally.problems.append(f"devices[{index}]{_id_hint(record)}: {exc}")
                continue
            tally.add(device)
        tally.silent_rows.sort(key=lambda row: row.sort_key)
        del tally.silent_rows[top:]
        return tally

    def add(self, device: _Device) -> None:
        mode = device.mode
        self.devices += 1
        self.by_mode[mode] += 1
        self.by_platform[device.platform] += 1
        self.by_mode_source[device.mode_source] += 1
        self.mode_by_platform[(mode, device.platform)] += 1

        # The hot loop of a large fleet (devices x capabilities): plain dict counting only.
        coverage = self.coverage
        for cap_id, verdict in device.capabilities.items():
            status = verdict["status"]
            if status == "unknown":
                self._add_unknown(cap_id, mode, verdict)
                if verdict.get("not_enforced_in"):
                    status = "unknown_failing"
            key = (cap_id, mode, status)
            coverage[key] = coverage.get(key, 0) + 1

        if device.gaps:
            self.with_gaps += 1
            self.gaps.update(device.gaps)
            self._add_silent(device)

        for finding in device.findings:
            code = finding["code"]
            self.findings[code] += 1
            if code not in self.fixes:
                self.fixes[code] = _plain(finding.get("fix"))
                self.examples[code] = _plain(finding.get("message"))

    def _add_unknown(self, cap_id: str, mode: str, verdict: Mapping[str, Any]) -> None:
        reason = verdict.get("reason")
        key = (cap_id, reason if isinstance(reason, str) else _plain(reason))
        group = self.unknown_groups.get(key)
        if group is None:
            group = self.unknown_groups[key] = _UnknownGroup.of(cap_id, key[1], verdict)
        group.count += 1
        group.modes.add(mode)

    def _add_silent(self, device: _Device) -> None:
        silent = tuple(c for c in SILENT_CAPABILITIES if c in device.gaps)
        if not silent:
            return
        self.silent_devices += 1
        self.silent.update(silent)
        key = (-len(silent), device.name.casefold(), device.device_id)
        self.silent_rows.append(_SilentRow(key, device, silent))
        # Keep memory bounded on large fleets: trim to the best rows now and then.
        if len(self.silent_rows) >= 8 * self.top + 1024:
            self.silent_rows.sort(key=lambda row: row.sort_key)
            del self.silent_rows[self.top :]

    def unknown(self) -> Counter[str]:
        """Unknown verdicts per capability."""
        counts: Counter[str] = Counter()
        for group in self.unknown_groups.values():
            counts[group.capability] += group.count
        return counts

    def capabilities_seen(self) -> list[str]:
        return list(dict.fromkeys(cap_id for cap_id, _, _ in self.coverage))


def _id_hint(record: Any) -> str:
    if isinstance(record, Mapping) and isinstance(record.get("device_id"), str):
        return f" (device_id {record['device_id']!r})"
    return ""


@dataclass(frozen=True)
class _MatrixView:
    """What the report needs from the capability matrix."""

    version: str
    states: tuple[str, ...]
    platforms: tuple[str, ...]
    titles: dict[str, str]
    tenant_policy: frozenset[str]
    cited: Counter[str]

    @classmethod
    def of(cls, matrix: Mapping[str, Any]) -> _MatrixView:
        if not isinstance(matrix, Mapping) or not isinstance(matrix.get("capabilities"), Mapping):
            raise ReportInputError("the matrix must be load_matrix().to_json(): no capabilities")
        capabilities: Mapping[str, Any] = matrix["capabilities"]
        titles: dict[str, str] = {}
        tenant_policy: set[str] = set()
        cited: Counter[str] = Counter()
        for cap_id, capability in capabilities.items():
            body = capability if isinstance(capability, Mapping) else {}
            titles[str(cap_id)] = str(body.get("title") or cap_id)
            if body.get("tenant_policy") is True:
                tenant_policy.add(str(cap_id))
            cited.update(_cell_citations(body.get("cells")))
        requirements = matrix.get("requirements")
        if isinstance(requirements, Mapping):
            cited.update(
                r["source"]
                for r in requirements.values()
                if isinstance(r, Mapping) and isinstance(r.get("source"), str)
            )
        return cls(
            version=str(matrix.get("version") or "not stated"),
            states=tuple(str(s) for s in matrix.get("states") or ()),
            platforms=tuple(str(p) for p in matrix.get("platforms") or ()),
            titles=titles,
            tenant_policy=frozenset(tenant_policy),
            cited=cited,
        )

    def title(self, cap_id: str) -> str:
        return self.titles.get(cap_id, cap_id)


def _cell_citations(cells: Any) -> Iterable[str]:
    if not isinstance(cells, Mapping):
        return
    for by_platform in cells.values():
        if not isinstance(by_platform, Mapping):
            continue
        for cell in by_platform.values():
            if not isinstance(cell, Mapping):
                continue
            if isinstance(cell.get("source"), str):
                yield cell["source"]
            yield from (url for url in cell.get("also") or () if isinstance(url, str))


@dataclass
class _Context:
    tally: _Tally
    matrix: _MatrixView
    summary: Mapping[str, Any]
    rejected: list[Mapping[str, Any]]
    actions: list[Mapping[str, Any]] | None
    blocklists: list[Mapping[str, Any]] | None
    ingestion: list[Mapping[str, Any]] | None
    cycle: dict[str, Any]
    top: int
    ingestion_note: str | None = None

    def modes(self) -> list[str]:
        """Modes present in the fleet, in the matrix's order, then any others."""
        return _ordered(self.tally.by_mode, self.matrix.states)

    def platforms(self) -> list[str]:
        return _ordered(self.tally.by_platform, (*self.matrix.platforms, "unknown"))

    def capabilities(self) -> list[str]:
        known = list(self.matrix.titles)
        return known + [c for c in self.tally.capabilities_seen() if c not in self.matrix.titles]


def _ordered(present: Mapping[str, int], order: Sequence[str]) -> list[str]:
    ordered = [key for key in order if present.get(key)]
    return ordered + sorted(key for key in present if key not in order and present[key])


# --- escaping and small pieces ------------------------------------------------------------------


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _text(value: Any) -> str:
    """Any value as HTML text (safe in element content and in quoted attributes)."""
    text = value if isinstance(value, str) else _plain(value)
    return html.escape(_HIDDEN.sub(_visible, text), quote=True)


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float | str):
        return str(value)
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # circular or otherwise unencodable: show Python's view
        return repr(value)


def _link(url: Any, label: Any = None) -> str:
    """A link when ``url`` is a plain https address; otherwise the value as text only."""
    shown = _text(label if label is not None else url)
    if isinstance(url, str) and _SAFE_URL.fullmatch(url):
        return f'<a href="{_text(url)}" rel="noopener noreferrer">{shown}</a>'
    return shown


def _n(value: int) -> str:
    return f"{value:,}"


def _share(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else 0.0


def _metric(name: str, value: int | float | str, shown: str | None = None) -> str:
    text = shown if shown is not None else (_n(value) if isinstance(value, int) else str(value))
    return f'<span data-metric="{name}" data-value="{_text(value)}">{_text(text)}</span>'


def _mode_label(mode: str) -> str:
    return _MODE_LABELS.get(mode, mode)


def _platform_label(platform: str) -> str:
    return _PLATFORM_LABELS.get(platform, platform)


def _devices(count: int) -> str:
    return f"{_n(count)} device{_s(count)}"


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _are(count: int) -> str:
    return "is" if count == 1 else "are"


def _were(count: int) -> str:
    return "was" if count == 1 else "were"


def _have(count: int) -> str:
    return "has" if count == 1 else "have"


def _page_name(url: str) -> str:
    """The last part of a documentation address, e.g. ``indicators-overview``."""
    return url.rstrip("/").rsplit("/", 1)[-1] or url


def _swatch(colour: str) -> str:
    return f'<span class="swatch" style="background:{colour}"></span>'


def _status_badge(status: str, detail: str | None = None) -> str:
    label = _CELL_LABELS.get(status, status)
    extra = f"<small>{_text(detail)}</small>" if detail else ""
    return (
        f'<span class="status s-{_text(status)}" data-status="{_text(status)}">'
        f"{_STATUS_SYMBOLS.get(status, '')} {_text(label)}{extra}</span>"
    )


# --- the page -----------------------------------------------------------------------------------

_CSS = """
:root { --ink:#1d1d1f; --muted:#5f6368; --line:#d9dce1; --bg:#f6f7f9; --warn:#fff4e5; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font:14px/1.45 "Segoe UI", system-ui, -apple-system, "Helvetica Neue", Arial, sans-serif; }
header, main, footer { max-width:1180px; margin:0 auto; padding:0 24px; }
header { padding-top:24px; }
h1 { font-size:24px; margin:0 0 4px; }
h2 { font-size:18px; margin:0 0 10px; }
h3 { font-size:15px; margin:16px 0 6px; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:18px 20px;
  margin:16px 0; break-inside:avoid-page; }
p { margin:6px 0; }
.muted { color:var(--muted); }
.banner { border-radius:8px; padding:12px 16px; margin:12px 0; font-weight:600; }
.banner.dry { background:#e8f0fe; border:2px solid #1a73e8; color:#0b3d91; }
.banner.live { background:#fdecea; border:2px solid #c62828; color:#7f1212; }
.banner.warn { background:var(--warn); border:1px solid #f2a900; color:#6b4a00; font-weight:400; }
.cards { display:grid; grid-template-columns:repeat(auto-fit, minmax(170px, 1fr)); gap:12px; }
.card { background:#fff; border:1px solid var(--line); border-radius:8px; padding:12px 14px; }
.card .big { font-size:28px; font-weight:700; display:block; }
.card.alert .big { color:#c62828; }
.card .what { color:var(--muted); font-size:13px; }
table { border-collapse:collapse; width:100%; margin:6px 0; }
th, td { border-bottom:1px solid var(--line); padding:5px 8px; text-align:left; vertical-align:top;
  overflow-wrap:anywhere; unicode-bidi:isolate; }
th { background:#fafbfc; font-weight:600; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
code, .mono { font-family:ui-monospace, "Cascadia Mono", Consolas, monospace; font-size:12.5px; }
.swatch { display:inline-block; width:11px; height:11px; border-radius:2px; margin-right:5px;
  vertical-align:-1px; }
.legend span.item { margin-right:14px; white-space:nowrap; display:inline-block; }
.status { white-space:nowrap; }
#findings-table td.mono { white-space:nowrap; }
#unknown-by-capability { width:auto; min-width:50%; }
.status small { display:block; white-space:normal; font-size:11.5px; }
#silent-devices td.device { min-width:180px; font-weight:600; }
#silent-devices td, #silent-devices th { font-size:13px; }
#silent-devices td.wide { min-width:110px; }
td.sources { min-width:190px; overflow-wrap:break-word; }
td.caps { width:28%; } td.modes { min-width:130px; overflow-wrap:normal; }
.s-enforced { color:#1b5e20; } .s-partial { color:#8a6100; } .s-not_enforced { color:#b71c1c; }
.s-unknown_failing { color:#b3441e; }
.s-unknown { color:#555; } .s-not_applicable { color:#888; }
.heat td.cell { padding:4px 6px; min-width:84px; }
.heat td.cell svg { display:block; width:100%; height:12px; }
.heat td.cell span { font-size:11.5px; }
.heat th.cap { font-weight:400; }
.chart { width:100%; height:auto; }
.bar { display:block; width:100%; height:12px; }
nav ul { columns:3; margin:6px 0 0; padding-left:18px; }
footer { color:var(--muted); font-size:12px; padding-bottom:30px; }
@media print { body { background:#fff; } section { border:none; } nav { display:none; } }
"""

# No script, no external anything: even if a value slipped through unescaped, the browser would
# refuse to run or fetch it.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'"

_SECTIONS = (
    ("headline", "Headline"),
    ("how-to-read", "How to read this"),
    ("modes", "Defender Antivirus modes by platform"),
    ("coverage", "Capability coverage"),
    ("silent-gaps", "Indicators and app blocks that do not enforce"),
    ("gaps", "Gaps by capability"),
    ("findings", "Findings and their fixes"),
    ("actions", "Planned actions"),
    ("blocklists", "Blocklists"),
    ("ingestion", "Log Analytics ingestion"),
    ("unknown", "Unknown verdicts explained"),
    ("rejected", "Rejected records"),
    ("basis", "What the verdicts rest on"),
)


def _page(ctx: _Context) -> str:
    tenant = ctx.cycle.get("tenant") or ctx.cycle.get("tenant_name")
    title = "Defender for Endpoint coverage report" + (f": {_plain(tenant)}" if tenant else "")
    body = [
        _header(ctx, title),
        _headline(ctx),
        _how_to_read(),
        _modes_section(ctx),
        _coverage_section(ctx),
        _silent_section(ctx),
        _gaps_section(ctx),
        _findings_section(ctx),
        _actions_section(ctx),
        _blocklists_section(ctx),
        _ingestion_section(ctx),
        _unknown_section(ctx),
        _rejected_section(ctx),
        _basis_section(ctx),
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_text(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + body[0]
        + "<main>\n"
        + "\n".join(body[1:])
        + "\n</main>\n"
        f"<footer>Generated by mde-coverage-gap {_text(__version__)} from the evaluation "
        f"document and capability matrix {_text(ctx.matrix.version)}.</footer>\n"
        "</body>\n</html>\n"
    )


def _header(ctx: _Context, title: str) -> str:
    parts = [f"<header>\n<h1>{_text(title)}</h1>"]
    facts = _cycle_facts(ctx.cycle)
    if facts:
        parts.append(f'<p class="muted" id="cycle">{" · ".join(facts)}</p>')

    dry_run = ctx.cycle.get("dry_run")
    if dry_run is True:
        parts.append(
            '<div class="banner dry" data-metric="dry-run" data-value="true">DRY RUN: nothing was '
            "changed on any device or list. The actions below are what the pipeline would do."
            "</div>"
        )
    elif dry_run is False:
        parts.append(
            '<div class="banner live" data-metric="dry-run" data-value="false">LIVE RUN: the '
            "actions below were carried out, subject to approval and the safety limits.</div>"
        )

    parts.append(_consistency_warning(ctx))
    parts.append(_toc())
    parts.append("</header>")
    return "\n".join(p for p in parts if p)


_CYCLE_LABELS = {
    "tenant": "Tenant",
    "tenant_name": "Tenant",
    "cycle_id": "Cycle",
    "id": "Cycle",
    "started": "Started",
    "started_at": "Started",
    "finished": "Finished",
    "finished_at": "Finished",
}


def _cycle_facts(cycle: Mapping[str, Any]) -> list[str]:
    facts = []
    for key, value in cycle.items():
        if key == "dry_run" or value is None or value == "":
            continue
        label = _CYCLE_LABELS.get(key, key.replace("_", " ").capitalize())
        facts.append(
            f'{_text(label)} <span class="mono" data-cycle="{_text(key)}">{_text(value)}</span>'
        )
    return facts


def _consistency_warning(ctx: _Context) -> str:
    """Say so when the document's own summary disagrees with the devices it lists."""
    tally, summary = ctx.tally, ctx.summary
    problems = []
    if not summary:
        problems.append(
            "the evaluation has no summary; every number here is counted from the devices"
        )
    else:
        checks: list[tuple[str, Any, Any]] = [
            ("devices", summary.get("devices"), tally.devices + len(tally.problems)),
            ("devices_with_gaps", summary.get("devices_with_gaps"), tally.with_gaps),
            ("by_mode", summary.get("by_mode"), dict(tally.by_mode)),
            ("by_platform", summary.get("by_platform"), dict(tally.by_platform)),
            ("gaps_by_capability", summary.get("gaps_by_capability"), dict(tally.gaps)),
            ("findings_by_code", summary.get("findings_by_code"), dict(tally.findings)),
        ]
        for name, stated, counted in checks:
            if stated is not None and stated != counted:
                problems.append(
                    f"summary {name} says {_plain(stated)}, the devices give {_plain(counted)}"
                )
        if (
            isinstance(summary.get("matrix_version"), str)
            and summary["matrix_version"] != ctx.matrix.version
        ):
            problems.append(
                f"the evaluation used matrix {summary['matrix_version']}, this report's matrix is "
                f"{ctx.matrix.version}"
            )
    if tally.problems:
        problems.append(
            f"{len(tally.problems)} device record(s) could not be read and are left out "
            "(listed under Rejected records)"
        )
    if not problems:
        return ""
    items = "".join(f"<li>{_text(p)}</li>" for p in problems)
    return (
        f'<div class="banner warn" id="consistency" data-metric="inconsistencies" '
        f'data-value="{len(problems)}"><strong>Check before forwarding:</strong>'
        f"<ul>{items}</ul></div>"
    )


def _toc() -> str:
    items = "".join(f'<li><a href="#{key}">{_text(label)}</a></li>' for key, label in _SECTIONS)
    return f'<nav aria-label="Contents"><ul>{items}</ul></nav>'


def _section(key: str, body: str, intro: str = "") -> str:
    label = dict(_SECTIONS)[key]
    lead = f'<p class="muted">{intro}</p>' if intro else ""
    return f'<section id="{key}">\n<h2>{_text(label)}</h2>\n{lead}\n{body}\n</section>'


# --- sections ------------------------------------------------------------------------------------


def _headline(ctx: _Context) -> str:
    tally = ctx.tally
    share = _share(tally.with_gaps, tally.devices)
    not_active = tally.devices - tally.by_mode.get("active", 0)
    cards = [
        ("Devices evaluated", _metric("devices", tally.devices), False),
        (
            "Devices where a configured protection does not enforce",
            _metric("devices-with-gaps", tally.with_gaps),
            tally.with_gaps > 0,
        ),
        ("Share of the fleet with a gap", _metric("gap-share", share, f"{share:.1f}%"), share > 0),
        (
            "Devices where indicators or app blocks silently do not enforce",
            _metric("silent-gap-devices", tally.silent_devices),
            tally.silent_devices > 0,
        ),
        (
            "Devices where Defender Antivirus is not in active mode",
            _metric("not-active-devices", not_active),
            False,
        ),
        ("Input records rejected", _metric("rejected", tally.rejected), tally.rejected > 0),
    ]
    html_cards = "".join(
        f'<div class="card{" alert" if alert else ""}"><span class="big">{value}</span>'
        f'<span class="what">{_text(label)}</span></div>'
        for label, value, alert in cards
    )
    sentence = (
        f"Of {_n(tally.devices)} devices, {_n(tally.with_gaps)} ({share:.1f}%) have at least one "
        "protection the tenant configured that certainly fails to enforce on them, although the "
        "portal shows the policy as applied."
    )
    return _section("headline", f'<div class="cards">{html_cards}</div><p>{_text(sentence)}</p>')


def _how_to_read() -> str:
    rows = "".join(
        f"<tr><td>{_status_badge(status)}</td><td>{_text(meaning)}</td></tr>"
        for status, meaning in (
            (
                "enforced",
                "Microsoft documents that the protection blocks in this mode, and the "
                "facts it needs were reported.",
            ),
            (
                "partial",
                "It blocks only within a stated scope, for example in Microsoft Edge only.",
            ),
            ("not_enforced", "It does not block on this device, whatever the portal shows."),
            (
                "unknown_failing",
                "Unknown where Microsoft's pages disagree or a fact is missing, but certainly not "
                "enforced in part, for example outside Microsoft Edge.",
            ),
            (
                "unknown",
                "Microsoft's pages disagree or a fact the verdict needs was not reported. "
                "The reason says which. An unknown never counts as a pass.",
            ),
            ("not_applicable", "The protection does not exist for this platform or state."),
        )
    )
    body = (
        "<p>Each device gets one verdict per Defender for Endpoint capability, from its Defender "
        "Antivirus mode, its platform, what it reported and the tenant's settings, looked up in a "
        "capability matrix in which every cell cites a Microsoft page.</p>"
        f"<table><tr><th>Verdict</th><th>Meaning</th></tr>{rows}</table>"
        "<p>A <strong>gap</strong> is a capability the tenant has configured that certainly fails "
        "to enforce somewhere on the device: not enforced, partial, or unknown in general but "
        "known not to enforce in part (for example outside Edge). A device with a gap is counted "
        "once, however many gaps it has.</p>"
    )
    return _section("how-to-read", body)


def _modes_section(ctx: _Context) -> str:
    tally = ctx.tally
    modes, platforms = ctx.modes(), ctx.platforms()
    if not modes:
        return _section("modes", "<p>No devices were evaluated.</p>")

    head = "".join(f'<th class="num">{_text(_platform_label(p))}</th>' for p in platforms)
    rows = []
    for mode in modes:
        cells = "".join(
            f'<td class="num" data-mode="{_text(mode)}" data-platform="{_text(p)}" '
            f'data-count="{tally.mode_by_platform.get((mode, p), 0)}">'
            f"{_n(tally.mode_by_platform.get((mode, p), 0))}</td>"
            for p in platforms
        )
        rows.append(
            f"<tr><th>{_swatch(_MODE_COLOURS.get(mode, _FALLBACK_COLOUR))}"
            f"{_text(_mode_label(mode))}</th>{cells}"
            f'<td class="num" data-mode-total="{_text(mode)}">{_n(tally.by_mode[mode])}</td></tr>'
        )
    totals = "".join(
        f'<td class="num" data-platform-total="{_text(p)}">{_n(tally.by_platform[p])}</td>'
        for p in platforms
    )
    table = (
        f'<table id="modes-table"><tr><th>Defender Antivirus mode</th>{head}'
        f'<th class="num">Total</th></tr>{"".join(rows)}'
        f'<tr><th>Total</th>{totals}<td class="num">{_n(tally.devices)}</td></tr></table>'
    )
    sources = ", ".join(
        f"{_text(source)} {_n(count)}" for source, count in tally.by_mode_source.most_common()
    )
    body = (
        _mode_chart(ctx, modes, platforms)
        + _legend([(_mode_label(m), _MODE_COLOURS.get(m, _FALLBACK_COLOUR)) for m in modes])
        + table
        + f'<p class="muted">Where the mode came from: {sources}.</p>'
    )
    return _section(
        "modes",
        body,
        "Passive mode and EDR in block mode are where configured protections silently stop "
        "blocking; active mode is where they work.",
    )


def _mode_chart(ctx: _Context, modes: list[str], platforms: list[str]) -> str:
    """One horizontal bar per platform, stacked by mode, scaled to the largest platform."""
    tally = ctx.tally
    label_width, bar_width, row_height = 230, 560, 30
    width = label_width + bar_width + 90
    height = row_height * len(platforms) + 8
    largest = max(tally.by_platform[p] for p in platforms)
    parts = [
        f'<svg class="chart" id="modes-chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" '
        'aria-label="Devices per platform, stacked by Defender Antivirus mode">'
    ]
    for row, platform in enumerate(platforms):
        y = row * row_height + 4
        parts.append(
            f'<text x="{label_width - 10}" y="{y + 17}" text-anchor="end" font-size="13">'
            f"{_text(_platform_label(platform))}</text>"
        )
        x = float(label_width)
        for mode in modes:
            count = tally.mode_by_platform.get((mode, platform), 0)
            if not count:
                continue
            w = bar_width * count / largest
            parts.append(
                f'<rect x="{x:.2f}" y="{y}" width="{w:.2f}" height="22" '
                f'fill="{_MODE_COLOURS.get(mode, _FALLBACK_COLOUR)}" data-mode="{_text(mode)}" '
                f'data-platform="{_text(platform)}" data-count="{count}"><title>'
                f"{_text(_platform_label(platform))}, {_text(_mode_label(mode))}: {_n(count)}"
                "</title></rect>"
            )
            x += w
        parts.append(
            f'<text x="{x + 8:.2f}" y="{y + 17}" font-size="13" font-weight="600">'
            f"{_n(tally.by_platform[platform])}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _legend(items: Sequence[tuple[str, str]]) -> str:
    spans = "".join(
        f'<span class="item">{_swatch(colour)}{_text(label)}</span>' for label, colour in items
    )
    return f'<p class="legend">{spans}</p>'


def _coverage_section(ctx: _Context) -> str:
    tally = ctx.tally
    modes = ctx.modes()
    if not modes:
        return _section("coverage", "<p>No devices were evaluated.</p>")

    head = "".join(
        f'<th data-mode="{_text(m)}">{_text(_mode_label(m))}<br>'
        f'<span class="muted">{_devices(tally.by_mode[m])}</span></th>'
        for m in modes
    )
    rows = []
    for cap_id in ctx.capabilities():
        cells = "".join(_heat_cell(cap_id, mode, tally.coverage) for mode in modes)
        policy = " *" if cap_id in ctx.matrix.tenant_policy else ""
        rows.append(
            f'<tr><th class="cap" data-capability="{_text(cap_id)}">'
            f"{_text(ctx.matrix.title(cap_id))}{policy}</th>{cells}</tr>"
        )
    legend = _legend([(_STATUS_LABELS[s], _STATUS_COLOURS[s]) for s in CATEGORIES])
    body = (
        legend
        + f'<table class="heat" id="heatmap"><tr><th>Capability</th>{head}</tr>'
        + "".join(rows)
        + "</table>"
        + '<p class="muted">* a tenant policy: configured once for the tenant, so a device where '
        "it does not enforce is a gap. Under each bar: the most common verdict among that mode's "
        "devices and its share (the bar's tooltip has the exact counts).</p>"
    )
    return _section(
        "coverage",
        body,
        "For each capability and Defender Antivirus mode, how the devices in that mode split "
        "between enforced, partial, not enforced, unknown and not applicable.",
    )


def _heat_cell(cap_id: str, mode: str, coverage: Mapping[tuple[str, str, str], int]) -> str:
    counts = {c: coverage.get((cap_id, mode, c), 0) for c in CATEGORIES}
    total = sum(counts.values())
    data = " ".join(f'data-{s.replace("_", "-")}="{counts.get(s, 0)}"' for s in CATEGORIES)
    attributes = f'class="cell" data-capability="{_text(cap_id)}" data-mode="{_text(mode)}" {data}'
    if not total:
        return f'<td {attributes}><span class="muted">no verdict</span></td>'

    rects, x = [], 0.0
    for status in CATEGORIES:
        count = counts.get(status, 0)
        if count:
            w = 100 * count / total
            rects.append(
                f'<rect x="{x:.3f}" y="0" width="{w:.3f}" height="10" '
                f'fill="{_STATUS_COLOURS[status]}"/>'
            )
            x += w
    dominant = max(CATEGORIES, key=lambda s: counts.get(s, 0))
    tooltip = ", ".join(
        f"{_STATUS_LABELS[s]} {_n(counts[s])}" for s in CATEGORIES if counts.get(s, 0)
    )
    return (
        f'<td {attributes}><svg viewBox="0 0 100 10" preserveAspectRatio="none" role="img">'
        f"<title>{_text(tooltip)}</title>{''.join(rects)}</svg>"
        f'<span class="s-{dominant}">{_STATUS_SYMBOLS[dominant]} '
        f"{_share(counts[dominant], total):.0f}% {_text(_CELL_LABELS.get(dominant, dominant))}"
        "</span></td>"
    )


def _silent_section(ctx: _Context) -> str:
    tally = ctx.tally
    per_capability = "".join(
        f'<tr><td>{_text(_SILENT_LABELS[c])}</td><td class="num" data-capability="{c}" '
        f'data-silent-count="{tally.silent[c]}">{_n(tally.silent[c])}</td>'
        f'<td class="num">{_share(tally.silent[c], tally.devices):.1f}%</td></tr>'
        for c in SILENT_CAPABILITIES
    )
    summary = (
        f"<p>{_metric('silent-gap-devices', tally.silent_devices)} of {_devices(tally.devices)} "
        f"{_have(tally.silent_devices)} at least one of these protections configured but not "
        "enforcing.</p>"
        f'<table><tr><th>Protection</th><th class="num">Devices</th><th class="num">Share</th></tr>'
        f"{per_capability}</table>"
    )
    if not tally.silent_rows:
        return _section("silent-gaps", summary)

    head = "".join(f"<th>{_text(_SILENT_LABELS[c])}</th>" for c in SILENT_CAPABILITIES)
    rows = []
    for row in tally.silent_rows:
        device = row.device
        cells = "".join(_silent_cell(device, c) for c in SILENT_CAPABILITIES)
        rows.append(
            f'<tr data-device-id="{_text(device.device_id)}" data-gap-count="{len(row.gaps)}">'
            f'<td class="device">{_text(device.name)}</td>'
            f'<td class="wide">{_text(_mode_label(device.mode))}</td>'
            f'<td class="wide">{_text(_platform_label(device.platform))}</td>{cells}</tr>'
        )
    shown = len(tally.silent_rows)
    more = (
        f'<p class="muted" data-metric="silent-gap-devices-shown" data-value="{shown}">Showing '
        f"{_n(shown)} of {_n(tally.silent_devices)}: those with the most such gaps first, then by "
        "name. The evaluation document lists every device.</p>"
    )
    table = (
        f'<table id="silent-devices"><tr><th>Device</th><th>Mode</th><th>Platform</th>{head}</tr>'
        f"{''.join(rows)}</table>"
    )
    return _section(
        "silent-gaps",
        summary + table + more,
        "Custom URL, domain and IP indicators, Defender for Cloud Apps blocks of unsanctioned "
        "apps and web content filtering all depend on network protection, which needs Defender "
        "Antivirus in active mode. On these devices they are configured but do not block, "
        "entirely or outside Microsoft Edge, and nothing in the portal says so.",
    )


def _silent_cell(device: _Device, cap_id: str) -> str:
    verdict = device.capabilities.get(cap_id)
    if verdict is None:
        return '<td class="muted">no verdict</td>'
    status = str(verdict["status"])
    if cap_id not in device.gaps:
        return f'<td data-capability="{cap_id}">{_status_badge(status)}</td>'
    detail = None
    if status == "partial":
        detail = f"enforced: {_plain(verdict.get('scope') or 'in part')}"
    elif status == "unknown":
        status = "unknown_failing"
        detail = f"not enforced in {_plain(verdict.get('not_enforced_in') or 'part')}"
    return f'<td data-capability="{cap_id}" data-gap="true">{_status_badge(status, detail)}</td>'


def _gaps_section(ctx: _Context) -> str:
    tally = ctx.tally
    if not tally.gaps:
        return _section("gaps", "<p>No configured protection was found failing on any device.</p>")
    largest = max(tally.gaps.values())
    rows = "".join(
        f'<tr><td>{_text(ctx.matrix.title(cap_id))} <span class="muted mono">{_text(cap_id)}'
        f'</span></td><td class="num" data-capability="{_text(cap_id)}" '
        f'data-gap-count="{count}">{_n(count)}</td>'
        f'<td class="num">{_share(count, tally.devices):.1f}%</td>'
        f'<td style="width:32%">{_bar(count, largest, "#c62828")}</td></tr>'
        for cap_id, count in tally.gaps.most_common()
    )
    table = (
        '<table id="gaps-table"><tr><th>Capability</th><th class="num">Devices</th>'
        f'<th class="num">Share</th><th></th></tr>{rows}</table>'
    )
    return _section(
        "gaps",
        table,
        "Devices on which each configured capability certainly fails to enforce, in full or in "
        "part.",
    )


def _bar(value: int, largest: int, colour: str) -> str:
    width = 100 * value / largest if largest else 0
    return (
        '<svg class="bar" viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true">'
        f'<rect x="0" y="0" width="{width:.3f}" height="10" fill="{colour}"/></svg>'
    )


def _findings_section(ctx: _Context) -> str:
    tally = ctx.tally
    if not tally.findings:
        return _section("findings", "<p>No findings.</p>")
    rows = "".join(
        f'<tr><td class="mono">{_text(code)}</td><td class="num" data-finding="{_text(code)}" '
        f'data-count="{count}">{_n(count)}</td><td>{_text(tally.fixes.get(code, ""))}</td>'
        f'<td class="muted">{_text(tally.examples.get(code, ""))}</td></tr>'
        for code, count in tally.findings.most_common()
    )
    table = (
        '<table id="findings-table"><tr><th>Finding</th><th class="num">Devices</th>'
        f"<th>Fix</th><th>Example</th></tr>{rows}</table>"
    )
    return _section(
        "findings",
        table,
        "What to change so that the protections above enforce, with the number of devices each "
        "fix applies to.",
    )


_ACTION_COLUMNS = ("device_name", "device_id", "action", "status", "reason")


def _actions_section(ctx: _Context) -> str:
    actions = ctx.actions
    if actions is None:
        return _section(
            "actions",
            "<p>This report was rendered from an evaluation alone; no actions were planned.</p>",
        )
    total = _metric("actions", len(actions))
    if not actions:
        return _section("actions", f"<p>{total} actions were planned.</p>")

    counts = Counter((_plain(a.get("action")), _plain(a.get("status"))) for a in actions)
    count_rows = "".join(
        f"<tr><td>{_text(action or '(none)')}</td><td>{_text(status or '(none)')}</td>"
        f'<td class="num" data-action="{_text(action)}" data-status="{_text(status)}" '
        f'data-count="{count}">{_n(count)}</td></tr>'
        for (action, status), count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    )

    shown = actions[: ctx.top]
    extra = [k for k in dict.fromkeys(k for a in shown for k in a) if k not in _ACTION_COLUMNS]
    columns = [c for c in _ACTION_COLUMNS if any(c in a for a in shown)] + extra
    head = "".join(f"<th>{_text(c.replace('_', ' '))}</th>" for c in columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{_text(a.get(c))}</td>" for c in columns) + "</tr>" for a in shown
    )
    note = _dry_run_note(ctx.cycle.get("dry_run"))
    more = (
        f'<p class="muted">Showing {_n(len(shown))} of {_n(len(actions))}.</p>'
        if len(actions) > len(shown)
        else ""
    )
    body = (
        f"{note}<p>{total} action{'' if len(actions) == 1 else 's'}.</p>"
        '<table id="action-counts"><tr><th>Action</th><th>Status</th><th class="num">Count</th>'
        f"</tr>{count_rows}</table>"
        f'<h3>The actions</h3><table id="actions-table"><tr>{head}</tr>{rows}</table>{more}'
    )
    return _section("actions", body)


def _dry_run_note(dry_run: Any) -> str:
    if dry_run is True:
        return (
            '<p class="banner dry">Dry run: none of these actions was carried out. They show '
            "what the pipeline would do.</p>"
        )
    if dry_run is False:
        return '<p class="banner live">Live run: see each action\'s status for what happened.</p>'
    return (
        '<p class="muted">Whether this was a dry run is not stated; see each action\'s status.</p>'
    )


def _blocklists_section(ctx: _Context) -> str:
    lists = ctx.blocklists
    if lists is None:
        return _section("blocklists", "<p>No blocklists were published in this run.</p>")
    if not lists:
        return _section("blocklists", "<p>No blocklist changed or was published.</p>")

    rows = []
    for item in lists:
        raw_diff = item.get("diff")
        diff: Mapping[str, Any] = raw_diff if isinstance(raw_diff, Mapping) else {}
        entries = item.get("entries")
        count = len(entries) if isinstance(entries, list | tuple) else _int(entries)
        shown = _n(count) if entries is not None else "not stated"
        sha = _plain(item.get("sha256"))
        rows.append(
            f'<tr data-format="{_text(item.get("format"))}"><td>{_text(item.get("format"))}</td>'
            f"<td>{_text(item.get('list') or item.get('list_name'))}</td>"
            f'<td class="num" data-entries="{count}">{shown}</td>'
            f'<td class="num">+{_n(_int(item.get("added", diff.get("added"))))}</td>'
            f'<td class="num">\u2212{_n(_int(item.get("removed", diff.get("removed"))))}</td>'
            f'<td class="mono" title="{_text(sha)}">{_text(sha[:16])}</td></tr>'
        )
    table = (
        '<table id="blocklists-table"><tr><th>Format</th><th>List</th><th class="num">Entries</th>'
        '<th class="num">Added</th><th class="num">Removed</th><th>SHA-256 (start)</th></tr>'
        f"{''.join(rows)}</table>"
    )
    return _section(
        "blocklists",
        table,
        "The tenant's network indicators rendered for a proxy, DNS resolver or firewall, which "
        "enforce them for devices whose Defender Antivirus cannot.",
    )


def _ingestion_section(ctx: _Context) -> str:
    rows_in = ctx.ingestion
    if rows_in is None:
        note = ctx.ingestion_note or "Nothing was sent to Log Analytics in this run."
        return _section("ingestion", f'<p data-ingestion="none">{_text(note)}</p>')

    sent = sum(_int(r.get("sent")) for r in rows_in)
    failed = sum(_int(r.get("failed")) for r in rows_in)
    dead = sum(_dead_lettered(r) for r in rows_in)
    rows = "".join(
        f"<tr><td>{_text(r.get('table') or 'rows')}</td>"
        f'<td class="num">{_n(_int(r.get("sent")))}</td>'
        f'<td class="num">{_n(_int(r.get("failed")))}</td>'
        f'<td class="num">{_n(_dead_lettered(r))}</td>'
        f"<td>{_text(r.get('dead_letter_blob'))}</td></tr>"
        for r in rows_in
    )
    warning = (
        f'<p class="banner warn">{_n(dead)} row(s) did not reach Log Analytics. They were written '
        "to the dead-letter store named above, with the reason for each, and counted in the "
        "audit trail.</p>"
        if dead
        else ""
    )
    body = (
        f"<p>Sent {_metric('ingestion-sent', sent)}, failed {_metric('ingestion-failed', failed)},"
        f" dead-lettered {_metric('ingestion-dead-lettered', dead)}.</p>{warning}"
        '<table id="ingestion-table"><tr><th>Table</th><th class="num">Sent</th>'
        '<th class="num">Failed</th><th class="num">Dead-lettered</th><th>Dead-letter blob</th>'
        f"</tr>{rows}</table>"
    )
    return _section("ingestion", body)


def _dead_lettered(row: Mapping[str, Any]) -> int:
    """Stated, or else what an upload result's fields imply: refused plus failed rows."""
    if "dead_lettered" in row:
        return _int(row["dead_lettered"])
    return _int(row.get("rejected")) + _int(row.get("failed"))


def _unknown_section(ctx: _Context) -> str:
    tally = ctx.tally
    unknown = tally.unknown()
    total = sum(unknown.values())
    if not total:
        return _section("unknown", "<p>No verdict in this evaluation is unknown.</p>")

    by_capability = "".join(
        f'<tr><td>{_text(ctx.matrix.title(cap_id))}</td><td class="num" '
        f'data-capability="{_text(cap_id)}" data-unknown-count="{count}">{_n(count)}</td></tr>'
        for cap_id, count in unknown.most_common()
    )
    reasons = _by_reason(tally.unknown_groups.values())
    conflicts = [r for r in reasons if r.basis == "conflict"]
    others = [r for r in reasons if r.basis != "conflict"]

    conflict_rows = "".join(_unknown_row(ctx, reason) for reason in conflicts)
    shown = min(ctx.top, _REASONS_SHOWN)
    other_rows = "".join(_unknown_row(ctx, reason) for reason in others[:shown])
    conflict_block = (
        f"<h3>Where Microsoft's pages disagree ({_n(len(conflicts))})</h3>"
        '<table id="conflicts"><tr><th>Capabilities</th><th>Modes</th><th class="num">Verdicts</th>'
        f"<th>Why unknown</th><th>Sources</th></tr>{conflict_rows}</table>"
        if conflicts
        else "<p>No verdict rests on conflicting Microsoft pages.</p>"
    )
    more = (
        f'<p class="muted">Showing the {_n(shown)} most common of {_n(len(others))} reasons; '
        "the evaluation document gives every verdict's reason.</p>"
        if len(others) > shown
        else ""
    )
    other_block = (
        "<h3>Other unknown verdicts: facts not reported, or Microsoft silent</h3>"
        '<table id="unknown-reasons"><tr><th>Capabilities</th><th>Modes</th>'
        '<th class="num">Verdicts</th><th>Why unknown</th><th>Sources</th></tr>'
        f"{other_rows}</table>{more}"
        if others
        else ""
    )
    body = (
        f"<p>{_metric('unknown-verdicts', total)} device verdict{_s(total)} {_are(total)} "
        "unknown. None of them is "
        "counted as enforcing. Where an unknown verdict still certainly fails in part (for "
        "example outside Edge), that part counts as a gap.</p>"
        f'<table id="unknown-by-capability"><tr><th>Capability</th><th class="num">Unknown</th>'
        f"</tr>{by_capability}</table>{conflict_block}{other_block}"
    )
    return _section("unknown", body)


@dataclass
class _Reason:
    """Unknown verdicts that give the same reason on the same pages, whatever the capability."""

    reason: str
    basis: str
    sources: tuple[str, ...]
    capabilities: dict[str, None] = field(default_factory=dict)
    modes: set[str] = field(default_factory=set)
    count: int = 0


def _by_reason(groups: Iterable[_UnknownGroup]) -> list[_Reason]:
    """Merge per-capability groups that share a reason, most verdicts first."""
    merged: dict[tuple[str, str, tuple[str, ...]], _Reason] = {}
    for group in groups:
        key = (group.reason, group.basis, group.sources)
        reason = merged.get(key)
        if reason is None:
            reason = merged[key] = _Reason(group.reason, group.basis, group.sources)
        reason.capabilities[group.capability] = None
        reason.modes |= group.modes
        reason.count += group.count
    return sorted(merged.values(), key=lambda r: (-r.count, r.reason))


def _unknown_row(ctx: _Context, reason: _Reason) -> str:
    titles = ", ".join(ctx.matrix.title(c) for c in reason.capabilities)
    modes = ", ".join(
        _mode_label(m) for m in _ordered(dict.fromkeys(reason.modes, 1), ctx.matrix.states)
    )
    links = "<br>".join(_link(url, _page_name(url)) for url in reason.sources)
    return (
        f'<tr data-capabilities="{_text(" ".join(reason.capabilities))}" '
        f'data-count="{reason.count}"><td class="caps">{_text(titles)}</td>'
        f'<td class="modes">{_text(modes)}</td>'
        f'<td class="num">{_n(reason.count)}</td><td>{_text(reason.reason)}</td>'
        f'<td class="sources">{links}</td></tr>'
    )


def _cited_by(citations: int) -> str:
    if citations:
        return f"cited {_n(citations)} time{'s' if citations != 1 else ''} in the matrix"
    return "cited by this evaluation's verdicts"


def _rejected_section(ctx: _Context) -> str:
    tally = ctx.tally
    parts = [
        f"<p>{_metric('rejected', tally.rejected)} input record{_s(tally.rejected)} "
        f"{_were(tally.rejected)} rejected when the devices were read; they are not in any number "
        "above.</p>"
    ]
    shown = ctx.rejected[: ctx.top]
    if shown:
        rows = "".join(
            f"<tr><td>{_text(r.get('source'))}</td><td>{_text(r.get('record_id'))}</td>"
            f"<td>{_text(r.get('field'))}</td><td>{_text(r.get('reason'))}</td></tr>"
            for r in shown
        )
        parts.append(
            '<table id="rejected-table"><tr><th>Where</th><th>Record id</th><th>Field</th>'
            f"<th>Reason</th></tr>{rows}</table>"
        )
        if len(ctx.rejected) > len(shown):
            parts.append(
                f'<p class="muted">Showing {_n(len(shown))} of {_n(len(ctx.rejected))}.</p>'
            )

    if tally.problems:
        rows = "".join(f"<li>{_text(problem)}</li>" for problem in tally.problems[: ctx.top])
        parts.append(
            "<h3>Records the report could not read</h3>"
            f"<p>{_metric('unreadable-devices', len(tally.problems))} device "
            f"record{_s(len(tally.problems))} in the evaluation document "
            f"{_are(len(tally.problems))} malformed and left out of this report.</p>"
            f'<ul id="unreadable">{rows}</ul>'
        )
    return _section("rejected", "".join(parts))


def _basis_section(ctx: _Context) -> str:
    cited = Counter(ctx.matrix.cited)
    for group in ctx.tally.unknown_groups.values():
        for url in group.sources:
            cited.setdefault(url, 0)
    pages = "".join(
        f'<li>{_link(url)} <span class="muted">({_cited_by(count)})</span></li>'
        for url, count in sorted(cited.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    body = (
        f"<p>Capability matrix version {_metric('matrix-version', ctx.matrix.version)}: "
        f"{_n(len(ctx.matrix.titles))} capabilities, each cell of Defender Antivirus state × "
        "platform with its verdict, reason and a Microsoft page. Verdicts marked inferred follow "
        "from documented behaviour without being stated in so many words; conflicts are listed "
        "under Unknown verdicts explained.</p>"
        "<p>Facts come from what each device reported (the Defender for Endpoint API, advanced "
        "hunting or the endpoint collector); tenant settings that have no read API are the ones "
        "the operator declared.</p>"
        f'<h3>Microsoft pages cited</h3><ul id="citations">{pages}</ul>'
    )
    return _section("basis", body)
