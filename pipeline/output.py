"""Render evaluations: the JSON document machines read and the table people read.

The JSON is written as a stream, one device at a time, so a fleet of hundreds of thousands of
devices never sits in memory as one document. Capability verdicts are shared between devices
with the same facts (see ``evaluate``), so their encoded form is cached by identity.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from typing import Any, TextIO

from pipeline.model import DeviceCoverage, Finding, RejectedRecord, Status, Verdict


def verdict_json(verdict: Verdict) -> dict[str, Any]:
    out: dict[str, Any] = {
        "status": verdict.status.value,
        "reason": verdict.reason,
        "source": verdict.source,
    }
    if verdict.scope:
        out["scope"] = verdict.scope
    if verdict.not_enforced_in:
        out["not_enforced_in"] = verdict.not_enforced_in
    if verdict.basis != "documented":
        out["basis"] = verdict.basis
    if verdict.also:
        out["also"] = list(verdict.also)
    return out


def coverage_json(coverage: DeviceCoverage) -> dict[str, Any]:
    document = coverage_json_without_capabilities(coverage)
    document["capabilities"] = _verdicts_json(coverage.capabilities)
    return document


def evaluation_document(
    coverages: Iterable[DeviceCoverage], rejected: list[RejectedRecord], summary: Summary
) -> dict[str, Any]:
    """The same document ``write_json`` streams, in memory, sharing the verdict dicts between
    devices with the same facts (so a large fleet costs little more than its device list)."""
    document = streamed_evaluation_document(coverages, rejected, summary)
    document["devices"] = list(document["devices"])  # fills the summary as it goes
    return document


def streamed_evaluation_document(
    coverages: Iterable[DeviceCoverage], rejected: list[RejectedRecord], summary: Summary
) -> dict[str, Any]:
    """The evaluation document with ``devices`` a one-pass generator, for a reader that folds
    each device into totals and keeps none (the report, over a fleet too large to hold).

    ``summary`` is the very dict the document returns, empty until the devices have been read
    to the end and then filled: read it only after the devices.
    """
    totals: dict[str, Any] = {}

    def devices() -> Iterator[dict[str, Any]]:
        # Keyed by the verdict map's id, and holding the map, so that an id is never reused
        # while it is a key here (the evaluator shares one map between devices with one facts).
        shared: dict[int, tuple[object, dict[str, Any]]] = {}
        for coverage in coverages:
            summary.add(coverage)
            key = id(coverage.capabilities)
            if key not in shared:
                shared[key] = (coverage.capabilities, _verdicts_json(coverage.capabilities))
            document = coverage_json_without_capabilities(coverage)
            document["capabilities"] = shared[key][1]
            yield document
        summary.rejected = len(rejected)
        totals.update(summary.to_json())

    return {
        "devices": devices(),
        "rejected": [rejected_json(r) for r in rejected],
        "summary": totals,
    }


def rejected_json(record: RejectedRecord) -> dict[str, Any]:
    return {
        "source": record.source,
        "record_id": record.record_id,
        "field": record.field,
        "reason": record.reason,
    }


@dataclass
class Summary:
    """Counts gathered while devices stream past."""

    matrix_version: str
    devices: int = 0
    devices_with_gaps: int = 0
    by_mode: Counter[str] = field(default_factory=Counter)
    by_platform: Counter[str] = field(default_factory=Counter)
    by_mode_source: Counter[str] = field(default_factory=Counter)
    mode_by_platform: Counter[tuple[str, str]] = field(default_factory=Counter)
    gaps: Counter[str] = field(default_factory=Counter)
    unknown: Counter[str] = field(default_factory=Counter)
    findings: Counter[str] = field(default_factory=Counter)
    fixes: dict[str, str] = field(default_factory=dict)
    rejected: int = 0
    # Verdict maps are shared between devices (see evaluate), so their unknowns are worked out
    # once per map; each entry holds its map, so that its id is not reused while it is a key.
    _unknown_by_verdicts: dict[int, tuple[object, list[str]]] = field(
        default_factory=dict, repr=False
    )

    def add(self, coverage: DeviceCoverage) -> None:
        facts = coverage.facts
        platform = facts.platform.value if facts.platform else "unknown"
        self.devices += 1
        self.by_mode[facts.state.value] += 1
        self.by_platform[platform] += 1
        self.by_mode_source[facts.mode_source.value] += 1
        self.mode_by_platform[(facts.state.value, platform)] += 1
        if coverage.gaps:
            self.devices_with_gaps += 1
            self.gaps.update(coverage.gaps)
        known = self._unknown_by_verdicts.get(id(coverage.capabilities))
        if known is None:
            unknown = [c for c, v in coverage.capabilities.items() if v.status is Status.UNKNOWN]
            known = self._unknown_by_verdicts[id(coverage.capabilities)] = (
                coverage.capabilities,
                unknown,
            )
        self.unknown.update(known[1])
        for finding in coverage.findings:
            self.findings[finding.code] += 1
            self.fixes.setdefault(finding.code, finding.fix)

    def to_json(self) -> dict[str, Any]:
        return {
            "matrix_version": self.matrix_version,
            "devices": self.devices,
            "rejected": self.rejected,
            "devices_with_gaps": self.devices_with_gaps,
            "by_mode": dict(self.by_mode.most_common()),
            "by_platform": dict(self.by_platform.most_common()),
            "by_mode_source": dict(self.by_mode_source.most_common()),
            "gaps_by_capability": dict(self.gaps.most_common()),
            "unknown_by_capability": dict(self.unknown.most_common()),
            "findings_by_code": dict(self.findings.most_common()),
        }


def write_json(
    out: TextIO,
    coverages: Iterable[DeviceCoverage],
    rejected: list[RejectedRecord],
    summary: Summary,
) -> None:
    """Stream ``{"devices": [...], "rejected": [...], "summary": {...}}`` to ``out``.

    Devices with the same facts share their verdicts, findings and gaps (see ``evaluate``), so
    those parts are encoded once and reused by identity; only names and ids are encoded per
    device. The result is the same JSON ``coverage_json`` describes.
    """
    # Each entry holds its part: a freed part's id could otherwise be reused by a new one and
    # be given the old one's text.
    encoded: dict[int, tuple[Any, str]] = {}

    def once(part: Any, encode: Callable[[Any], object]) -> str:
        known = encoded.get(id(part))
        if known is None:
            known = encoded[id(part)] = (part, json.dumps(encode(part)))
        return known[1]

    out.write('{"devices": [')
    for index, coverage in enumerate(coverages):
        summary.add(coverage)
        facts = coverage.facts
        out.write(
            ("\n" if index == 0 else ",\n")
            + '{"device_id": '
            + _string(facts.device_id)
            + ', "device_name": '
            + _string(facts.device_name)
            + ', "platform": '
            + _string(facts.platform.value if facts.platform else None)
            + ', "mode": "'
            + facts.state.value
            + '", "av_mode_code": '
            + _string(facts.av_mode_code)
            + ', "mode_source": "'
            + facts.mode_source.value
            + '", "mode_reason": '
            + _string(facts.mode_reason)
            + ', "capabilities": '
            + once(coverage.capabilities, _verdicts_json)
            + ', "findings": '
            + once(coverage.findings, _findings_json)
            + ', "gaps": '
            + once(coverage.gaps, list)
            + "}"
        )
    summary.rejected = len(rejected)
    out.write('\n], "rejected": ')
    out.write(json.dumps([rejected_json(r) for r in rejected]))
    out.write(', "summary": ')
    out.write(json.dumps(summary.to_json()))
    out.write("}\n")


def _string(value: str | None) -> str:
    return "null" if value is None else encode_basestring_ascii(value)


def _verdicts_json(capabilities: dict[str, Verdict]) -> dict[str, Any]:
    return {k: verdict_json(v) for k, v in capabilities.items()}


def _findings_json(findings: tuple[Finding, ...]) -> list[dict[str, str]]:
    return [_finding_json(f) for f in findings]


def _finding_json(finding: Finding) -> dict[str, str]:
    return {"code": finding.code, "message": finding.message, "fix": finding.fix}


def coverage_json_without_capabilities(coverage: DeviceCoverage) -> dict[str, Any]:
    facts = coverage.facts
    return {
        "device_id": facts.device_id,
        "device_name": facts.device_name,
        "platform": facts.platform.value if facts.platform else None,
        "mode": facts.state.value,
        "av_mode_code": facts.av_mode_code,
        "mode_source": facts.mode_source.value,
        "mode_reason": facts.mode_reason,
        "capabilities": None,
        "findings": [_finding_json(f) for f in coverage.findings],
        "gaps": list(coverage.gaps),
    }


def write_table(out: TextIO, summary: Summary, rejected: list[RejectedRecord]) -> None:
    """A short report for people: modes by platform, gaps, top findings, rejections."""
    total = summary.devices
    out.write(
        f"Devices evaluated: {total}   rejected records: {len(rejected)}   "
        f"matrix {summary.matrix_version}\n\n"
    )

    platforms = [p for p, _ in summary.by_platform.most_common()]
    if platforms:
        widths = [max(8, len(p) + 2) for p in platforms]
        out.write("Defender AV mode".ljust(28))
        out.write("".join(p.rjust(w) for p, w in zip(platforms, widths, strict=True)))
        out.write("total".rjust(9) + "\n")
        for mode, count in summary.by_mode.most_common():
            cells = "".join(
                str(summary.mode_by_platform.get((mode, p), 0)).rjust(w)
                for p, w in zip(platforms, widths, strict=True)
            )
            out.write(mode.ljust(28) + cells + str(count).rjust(9) + "\n")
        out.write("\n")

    out.write(
        f"Devices where a configured protection does not enforce: {summary.devices_with_gaps}"
        f" of {total}\n"
    )
    for cap_id, count in summary.gaps.most_common():
        share = 100 * count / total if total else 0
        out.write(f"  {cap_id:<28} {count:>8}  {share:5.1f}%\n")
    if summary.unknown:
        out.write("\nUnknown verdicts (documentation conflicts or facts this source lacks):\n")
        for cap_id, count in summary.unknown.most_common(8):
            out.write(f"  {cap_id:<28} {count:>8}\n")

    if summary.findings:
        out.write("\nTop findings:\n")
        for code, count in summary.findings.most_common(8):
            out.write(f"  {code:<38} {count:>8}\n      fix: {summary.fixes[code]}\n")

    if rejected:
        out.write("\nRejected records:\n")
        for record in rejected[:20]:
            where = f" field {record.field}" if record.field else ""
            out.write(f"  {record.source}{where}: {record.reason}\n")
        if len(rejected) > 20:
            out.write(f"  ... and {len(rejected) - 20} more (see --format json)\n")
