"""The capability matrix: cited data, loaded once and validated before anything uses it.

The data lives in ``capabilities.yaml`` beside this module; its header explains the format. The
loader expands the compact rules into one :class:`Cell` per capability x state x platform and
refuses the file, listing every problem, when a key is unknown, a cell is missing or covered
twice, a citation is missing, or a rule contradicts itself.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from pipeline.model import Platform, State, Status

# The capability ids the rest of the pipeline (tables, rules, reports) relies on.
CAPABILITY_IDS: tuple[str, ...] = (
    "real_time_protection",
    "cloud_protection",
    "behavior_monitoring",
    "pua_protection",
    "on_demand_scan",
    "av_remediation",
    "signature_updates",
    "edr_sensor",
    "edr_block_mode",
    "network_protection",
    "web_threat_protection_edge",
    "web_content_filtering",
    "indicator_url",
    "indicator_ip",
    "indicator_file",
    "indicator_certificate",
    "mda_unsanctioned_block",
    "asr_rules",
    "controlled_folder_access",
    "tamper_protection",
    "device_control",
    "endpoint_dlp",
    "live_response",
    "response_av_scan",
    "device_isolation",
    "automated_investigation",
    "tvm",
    "tvm_block_vulnerable_app",
)

BASES = ("documented", "inferred", "conflict")

_PLATFORM_GROUPS: dict[str, tuple[Platform, ...]] = {
    "all": tuple(Platform),
    "windows": (
        Platform.WINDOWS_CLIENT,
        Platform.WINDOWS_SERVER,
        Platform.WINDOWS_SERVER_DOWNLEVEL,
    ),
    "windows_servers": (Platform.WINDOWS_SERVER, Platform.WINDOWS_SERVER_DOWNLEVEL),
    "macos_linux": (Platform.MACOS, Platform.LINUX),
}
_TOP_KEYS = {"version", "states", "platforms", "sources", "requirements", "capabilities"}
_CAPABILITY_KEYS = {"title", "tenant_policy", "needs_onboarding", "cells"}
_RULE_KEYS = {
    "states",
    "platforms",
    "verdict",
    "reason",
    "source",
    "also",
    "basis",
    "scope",
    "not_enforced_in",
    "requires",
    "on_fail",
}


class MatrixError(ValueError):
    """The matrix data is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("capability matrix is invalid:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class Fallback:
    """What a cell becomes when one of its requirements fails."""

    status: Status
    scope: str | None = None


@dataclass(frozen=True)
class Cell:
    status: Status
    reason: str
    source: str
    also: tuple[str, ...] = ()
    basis: str = "documented"
    scope: str | None = None
    not_enforced_in: str | None = None
    requires: tuple[str, ...] = ()
    on_fail: dict[str, Fallback] = field(default_factory=dict)


@dataclass(frozen=True)
class Requirement:
    id: str
    description: str
    source: str


@dataclass(frozen=True)
class Capability:
    id: str
    title: str
    tenant_policy: bool
    needs_onboarding: bool
    cells: dict[tuple[State, Platform], Cell]


@dataclass(frozen=True)
class Matrix:
    version: str
    capabilities: dict[str, Capability]
    requirements: dict[str, Requirement]

    def cell(self, capability: str, state: State, platform: Platform) -> Cell:
        return self.capabilities[capability].cells[(state, platform)]

    def to_json(self) -> dict[str, Any]:
        """Every cell, expanded, for ``python -m pipeline matrix``."""
        return {
            "version": self.version,
            "states": [s.value for s in State],
            "platforms": [p.value for p in Platform],
            "requirements": {
                r.id: {"description": r.description, "source": r.source}
                for r in self.requirements.values()
            },
            "capabilities": {
                cap.id: {
                    "title": cap.title,
                    "tenant_policy": cap.tenant_policy,
                    "needs_onboarding": cap.needs_onboarding,
                    "cells": {
                        state.value: {
                            platform.value: _cell_json(cap.cells[(state, platform)])
                            for platform in Platform
                        }
                        for state in State
                    },
                }
                for cap in self.capabilities.values()
            },
        }


def _cell_json(cell: Cell) -> dict[str, Any]:
    out: dict[str, Any] = {
        "verdict": cell.status.value,
        "reason": cell.reason,
        "source": cell.source,
        "basis": cell.basis,
    }
    if cell.also:
        out["also"] = list(cell.also)
    if cell.scope:
        out["scope"] = cell.scope
    if cell.not_enforced_in:
        out["not_enforced_in"] = cell.not_enforced_in
    if cell.requires:
        out["requires"] = list(cell.requires)
    if cell.on_fail:
        out["on_fail"] = {
            k: {"verdict": f.status.value, "scope": f.scope} for k, f in cell.on_fail.items()
        }
    return out


@functools.cache
def load_matrix() -> Matrix:
    """The bundled matrix, parsed and validated once per process."""
    text = resources.files("pipeline.matrix").joinpath("capabilities.yaml").read_text("utf-8")
    return parse_matrix(text)


def parse_matrix(text: str) -> Matrix:
    """Parse and validate matrix YAML; raise :class:`MatrixError` listing every problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MatrixError([f"not valid YAML: {exc}"]) from exc
    if not isinstance(data, dict):
        raise MatrixError(["the top level must be a mapping"])

    problems: list[str] = []
    _check_keys(data, _TOP_KEYS, "top level", problems, required=True)
    if problems:
        raise MatrixError(problems)

    if set(data["states"] or {}) != {s.value for s in State}:
        problems.append(f"states must be exactly {sorted(s.value for s in State)}")
    if set(data["platforms"] or {}) != {p.value for p in Platform}:
        problems.append(f"platforms must be exactly {sorted(p.value for p in Platform)}")

    sources = _parse_sources(data["sources"], problems)
    requirements = _parse_requirements(data["requirements"], sources, problems)

    raw_caps = data["capabilities"] or {}
    missing = [c for c in CAPABILITY_IDS if c not in raw_caps]
    unknown = [c for c in raw_caps if c not in CAPABILITY_IDS]
    if missing:
        problems.append(f"capabilities missing: {missing}")
    if unknown:
        problems.append(f"unknown capabilities: {unknown}")

    capabilities: dict[str, Capability] = {}
    for cap_id in CAPABILITY_IDS:
        if cap_id in raw_caps:
            cap = _parse_capability(cap_id, raw_caps[cap_id], sources, requirements, problems)
            if cap is not None:
                capabilities[cap_id] = cap

    if problems:
        raise MatrixError(problems)
    return Matrix(
        version=str(data["version"]), capabilities=capabilities, requirements=requirements
    )


def _check_keys(
    obj: dict[str, Any], allowed: set[str], where: str, problems: list[str], *, required: bool
) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        problems.append(f"{where}: unknown keys {extra}")
    if required:
        absent = sorted(allowed - set(obj))
        if absent:
            problems.append(f"{where}: missing keys {absent}")


def _parse_sources(raw: Any, problems: list[str]) -> dict[str, str]:
    if not isinstance(raw, dict):
        problems.append("sources must be a mapping of key to URL")
        return {}
    sources: dict[str, str] = {}
    for key, url in raw.items():
        if not isinstance(url, str) or not url.startswith("https://learn.microsoft.com/"):
            problems.append(f"source {key!r} must be a learn.microsoft.com URL, got {url!r}")
        else:
            sources[key] = url
    return sources


def _parse_requirements(
    raw: Any, sources: dict[str, str], problems: list[str]
) -> dict[str, Requirement]:
    if not isinstance(raw, dict):
        problems.append("requirements must be a mapping")
        return {}
    out: dict[str, Requirement] = {}
    for req_id, body in raw.items():
        where = f"requirement {req_id}"
        if not isinstance(body, dict):
            problems.append(f"{where}: must be a mapping")
            continue
        _check_keys(body, {"description", "source"}, where, problems, required=True)
        if body.get("source") not in sources:
            problems.append(f"{where}: unknown source {body.get('source')!r}")
            continue
        out[req_id] = Requirement(req_id, str(body.get("description")), sources[body["source"]])
    return out


def _parse_capability(
    cap_id: str,
    raw: Any,
    sources: dict[str, str],
    requirements: dict[str, Requirement],
    problems: list[str],
) -> Capability | None:
    where = f"capability {cap_id}"
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a mapping")
        return None
    _check_keys(raw, _CAPABILITY_KEYS, where, problems, required=True)
    for flag in ("tenant_policy", "needs_onboarding"):
        if not isinstance(raw.get(flag), bool):
            problems.append(f"{where}: {flag} must be true or false")
    rules = raw.get("cells")
    if not isinstance(rules, list) or not rules:
        problems.append(f"{where}: cells must be a non-empty list")
        return None

    cells: dict[tuple[State, Platform], Cell] = {}
    for index, rule in enumerate(rules):
        rule_where = f"{where} cell rule {index + 1}"
        if not isinstance(rule, dict):
            problems.append(f"{rule_where}: must be a mapping")
            continue
        cell = _parse_cell(rule, rule_where, sources, requirements, problems)
        platforms = _platforms(rule.get("platforms"), rule_where, problems)
        for platform in platforms:
            for state in _states(rule.get("states"), platform, cells, rule_where, problems):
                if (state, platform) in cells:
                    problems.append(
                        f"{rule_where}: cell {state.value} x {platform.value} is already covered"
                    )
                elif cell is not None:
                    cells[(state, platform)] = cell

    for state in State:
        for platform in Platform:
            if (state, platform) not in cells:
                problems.append(f"{where}: no cell for {state.value} x {platform.value}")

    return Capability(
        id=cap_id,
        title=str(raw.get("title")),
        tenant_policy=bool(raw.get("tenant_policy")),
        needs_onboarding=bool(raw.get("needs_onboarding")),
        cells=cells,
    )


def _platforms(raw: Any, where: str, problems: list[str]) -> tuple[Platform, ...]:
    if isinstance(raw, str):
        if raw not in _PLATFORM_GROUPS:
            problems.append(f"{where}: unknown platform group {raw!r}")
            return ()
        return _PLATFORM_GROUPS[raw]
    if not isinstance(raw, list) or not raw:
        problems.append(f"{where}: platforms must be a group name or a non-empty list")
        return ()
    out: list[Platform] = []
    for name in raw:
        try:
            out.append(Platform(name))
        except ValueError:
            problems.append(f"{where}: unknown platform {name!r}")
    return tuple(out)


def _states(
    raw: Any,
    platform: Platform,
    covered: dict[tuple[State, Platform], Cell],
    where: str,
    problems: list[str],
) -> tuple[State, ...]:
    if raw == "others":
        return tuple(s for s in State if (s, platform) not in covered)
    if not isinstance(raw, list) or not raw:
        problems.append(f"{where}: states must be 'others' or a non-empty list")
        return ()
    out: list[State] = []
    for name in raw:
        try:
            out.append(State(name))
        except ValueError:
            problems.append(f"{where}: unknown state {name!r}")
    return tuple(out)


def _parse_cell(
    rule: dict[str, Any],
    where: str,
    sources: dict[str, str],
    requirements: dict[str, Requirement],
    problems: list[str],
) -> Cell | None:
    before = len(problems)
    _check_keys(rule, _RULE_KEYS, where, problems, required=False)
    for key in ("states", "platforms", "verdict", "reason", "source"):
        if key not in rule:
            problems.append(f"{where}: missing {key}")

    try:
        status = Status(str(rule.get("verdict")))
    except ValueError:
        problems.append(f"{where}: unknown verdict {rule.get('verdict')!r}")
        return None

    reason = rule.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        problems.append(f"{where}: reason must be a sentence")
    if rule.get("source") not in sources:
        problems.append(f"{where}: missing or unknown source {rule.get('source')!r}")
    also = rule.get("also", [])
    for key in also:
        if key not in sources:
            problems.append(f"{where}: unknown source {key!r} in also")
    basis = rule.get("basis", "documented")
    if basis not in BASES:
        problems.append(f"{where}: basis must be one of {BASES}")

    scope = rule.get("scope")
    if status is Status.PARTIAL and not scope:
        problems.append(f"{where}: a partial verdict needs a scope")
    if status is not Status.PARTIAL and scope:
        problems.append(f"{where}: only a partial verdict has a scope")
    not_enforced_in = rule.get("not_enforced_in")
    if not_enforced_in and status is not Status.UNKNOWN:
        problems.append(f"{where}: not_enforced_in only belongs to an unknown verdict")

    requires = tuple(rule.get("requires", []))
    for req in requires:
        if req not in requirements:
            problems.append(f"{where}: unknown requirement {req!r}")
    if requires and status not in (Status.ENFORCED, Status.PARTIAL):
        problems.append(f"{where}: requirements only make sense for enforced or partial")

    on_fail: dict[str, Fallback] = {}
    for req, fallback in (rule.get("on_fail") or {}).items():
        if req not in requires:
            problems.append(f"{where}: on_fail names {req!r}, which the cell does not require")
            continue
        try:
            fb_status = Status(fallback.get("verdict"))
        except (ValueError, AttributeError):
            problems.append(f"{where}: on_fail {req!r} has no valid verdict")
            continue
        if fb_status is Status.PARTIAL and not fallback.get("scope"):
            problems.append(f"{where}: on_fail {req!r} is partial without a scope")
        on_fail[req] = Fallback(fb_status, fallback.get("scope"))

    if len(problems) > before:
        return None
    return Cell(
        status=status,
        reason=" ".join(str(reason).split()),
        source=sources[rule["source"]],
        also=tuple(sources[k] for k in also),
        basis=basis,
        scope=scope,
        not_enforced_in=not_enforced_in,
        requires=requires,
        on_fail=on_fail,
    )
