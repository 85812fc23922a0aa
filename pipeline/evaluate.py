"""Per-device verdicts: device facts x tenant settings x capability matrix.

A pure function of its inputs: no I/O, no clock, no Azure import. For each capability it looks
up the matrix cell for the device's state and platform, then checks the cell's requirements
against what is known. A requirement that fails lowers the verdict; one that cannot be checked
makes it ``unknown`` and says which fact or tenant setting is missing.

Many devices share the same state, platform and relevant facts, so the capability verdicts are
memoised on exactly the facts the requirements read. Findings are computed per device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pipeline.matrix import Cell, Matrix
from pipeline.model import (
    DeviceCoverage,
    DeviceFacts,
    Finding,
    NetworkProtection,
    Platform,
    State,
    Status,
    TenantSettings,
    Verdict,
)
from pipeline.modes import version_at_least

# Minimum versions Microsoft documents (Defender AV platform = AMProductVersion).
EDR_BLOCK_MIN_PLATFORM = "4.18.2001.10"
EDR_BLOCK_MIN_ENGINE = "1.1.16700.2"
NETWORK_INDICATORS_MIN_PLATFORM = "4.18.1906.0"
FILE_INDICATORS_MIN_PLATFORM = "4.18.1901.0"

_ONBOARDING_SOURCE = "https://learn.microsoft.com/en-us/defender-endpoint/onboard-server"
_PLATFORM_SOURCE = (
    "https://learn.microsoft.com/en-us/defender-endpoint/api/device-health-api-methods-properties"
)

Check = tuple[bool | None, str]  # (holds?, what was found) - None means "cannot tell"


def _tenant_flag(value: bool | None, setting: str, label: str) -> Check:
    if value is None:
        return None, f"the tenant setting {setting} was not declared"
    return value, f"the tenant has {label} {'on' if value else 'off'}"


def _np_block(f: DeviceFacts, _t: TenantSettings) -> Check:
    if f.network_protection is NetworkProtection.UNKNOWN:
        return None, f"network protection's mode is not reported by {f.mode_source.value}"
    if f.network_protection is NetworkProtection.AUDIT:
        return False, "network protection is in audit mode, which logs but blocks nothing"
    if f.network_protection is NetworkProtection.OFF:
        return False, "network protection is off"
    return True, "network protection is in block mode"


def _np_server_allowed(f: DeviceFacts, _t: TenantSettings) -> Check:
    if f.platform is None or not f.platform.is_windows_server:
        return True, "not a Windows Server"
    names = ["AllowNetworkProtectionOnWinServer"]
    values = [f.allow_np_on_server]
    if f.platform is Platform.WINDOWS_SERVER_DOWNLEVEL:
        names.append("AllowNetworkProtectionDownLevel")
        values.append(f.allow_np_down_level)
    if any(v is False for v in values):
        missing = [n for n, v in zip(names, values, strict=True) if v is False]
        return False, f"{' and '.join(missing)} is not 1 on this Windows Server"
    if any(v is None for v in values):
        return None, f"{' and '.join(names)} is not reported by {f.mode_source.value}"
    return True, "network protection is allowed on this Windows Server"


def _fact(value: bool | None, what: str, source: str) -> Check:
    if value is None:
        return None, f"whether {what} is on is not reported by {source}"
    return value, f"{what} is {'on' if value else 'off'}"


def _version(value: str | None, minimum: str, what: str) -> Check:
    ok = version_at_least(value, minimum)
    if ok is None:
        return None, f"the Defender {what} version is not known"
    if not ok:
        return False, f"Defender {what} {value} is older than {minimum}"
    return True, f"Defender {what} {value} is recent enough"


def _license(_f: DeviceFacts, t: TenantSettings) -> Check:
    if t.mde_license is None:
        return None, "the tenant setting mdeLicense was not declared"
    if t.mde_license != "P2":
        return False, "the tenant has Defender for Endpoint Plan 1; this needs Plan 2"
    return True, "the tenant has Plan 2"


def _onboarded(f: DeviceFacts, _t: TenantSettings) -> Check:
    if f.onboarded is None:
        return None, "whether the device is onboarded is not known"
    return f.onboarded, "onboarded" if f.onboarded else "the device is not onboarded"


REQUIREMENT_CHECKS: dict[str, Callable[[DeviceFacts, TenantSettings], Check]] = {
    "np_block": _np_block,
    "np_server_allowed": _np_server_allowed,
    "cloud_protection": lambda f, _t: _fact(
        f.cloud_protection, "cloud-delivered protection", f.mode_source.value
    ),
    "behavior_monitoring": lambda f, _t: _fact(
        f.behavior_monitoring, "behavior monitoring", f.mode_source.value
    ),
    "real_time_protection": lambda f, _t: _fact(
        f.real_time_protection_reported, "real-time protection", f.mode_source.value
    ),
    "tamper_protection_on": lambda f, _t: _fact(
        f.tamper_protected, "tamper protection", f.mode_source.value
    ),
    "tenant_custom_network_indicators": lambda _f, t: _tenant_flag(
        t.custom_network_indicators, "customNetworkIndicators", "'Custom network indicators'"
    ),
    "tenant_allow_or_block_file": lambda _f, t: _tenant_flag(
        t.allow_or_block_file, "allowOrBlockFile", "'Allow or block file'"
    ),
    "tenant_mda_enforce": lambda _f, t: _tenant_flag(
        t.mda_enforce_app_access, "mdaEnforceAppAccess", "Defender for Cloud Apps enforcement"
    ),
    "license_p2": _license,
    "platform_network_indicators": lambda f, _t: _version(
        f.platform_version, NETWORK_INDICATORS_MIN_PLATFORM, "platform"
    ),
    "platform_file_indicators": lambda f, _t: _version(
        f.platform_version, FILE_INDICATORS_MIN_PLATFORM, "platform"
    ),
    "mde_onboarded": _onboarded,
}


class EvaluationError(ValueError):
    """The matrix names a requirement this evaluator cannot check."""


@dataclass
class Evaluator:
    """Evaluates devices against one matrix and one tenant; memoises shared verdicts."""

    matrix: Matrix
    tenant: TenantSettings
    _cache: dict[tuple[object, ...], tuple[dict[str, Verdict], tuple[str, ...]]] = field(
        default_factory=dict
    )
    _findings: dict[tuple[object, ...], tuple[Finding, ...]] = field(default_factory=dict)
    _configured: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = set(self.matrix.requirements) - set(REQUIREMENT_CHECKS)
        if unknown:
            raise EvaluationError(f"no check for matrix requirements {sorted(unknown)}")
        self._configured = configured_capabilities(self.matrix, self.tenant)

    def evaluate(self, facts: DeviceFacts) -> DeviceCoverage:
        key = _memo_key(facts)
        cached = self._cache.get(key)
        if cached is None:
            capabilities = {
                cap_id: self._verdict(cap_id, facts) for cap_id in self.matrix.capabilities
            }
            gaps = tuple(
                cap_id
                for cap_id, verdict in capabilities.items()
                if cap_id in self._configured and is_gap(verdict)
            )
            cached = self._cache[key] = (capabilities, gaps)

        findings_key = _findings_key(facts)
        findings = self._findings.get(findings_key)
        if findings is None:
            findings = self._findings[findings_key] = tuple(findings_for(facts, self.tenant))

        return DeviceCoverage(
            facts=facts,
            capabilities=cached[0],
            findings=findings,
            gaps=cached[1],
            matrix_version=self.matrix.version,
        )

    def _verdict(self, cap_id: str, facts: DeviceFacts) -> Verdict:
        capability = self.matrix.capabilities[cap_id]
        if facts.platform is None:
            return Verdict(
                Status.UNKNOWN,
                "The device's platform is not known, so no matrix cell applies.",
                _PLATFORM_SOURCE,
            )
        cell = capability.cells[(facts.state, facts.platform)]

        if capability.needs_onboarding and facts.onboarded is False:
            if cell.status is Status.NOT_APPLICABLE:
                return _from_cell(cell)
            return Verdict(
                Status.NOT_ENFORCED,
                "The device is not onboarded to Defender for Endpoint, which delivers this "
                "capability.",
                _ONBOARDING_SOURCE,
            )
        if cell.status not in (Status.ENFORCED, Status.PARTIAL) or not cell.requires:
            return _from_cell(cell)
        return _apply_requirements(cell, facts, self.tenant)


def _from_cell(cell: Cell) -> Verdict:
    return Verdict(
        cell.status,
        cell.reason,
        cell.source,
        scope=cell.scope,
        not_enforced_in=cell.not_enforced_in,
        basis=cell.basis,
        also=cell.also,
    )


def _apply_requirements(cell: Cell, facts: DeviceFacts, tenant: TenantSettings) -> Verdict:
    failed: list[tuple[str, str]] = []
    unknown: list[str] = []
    for req in cell.requires:
        holds, detail = REQUIREMENT_CHECKS[req](facts, tenant)
        if holds is False:
            failed.append((req, detail))
        elif holds is None:
            unknown.append(detail)

    if not failed and not unknown:
        return _from_cell(cell)

    hard = [detail for req, detail in failed if req not in cell.on_fail]
    soft = [cell.on_fail[req] for req, _ in failed if req in cell.on_fail]
    if hard or any(fb.status is Status.NOT_ENFORCED for fb in soft):
        details = "; ".join(d for _, d in failed)
        return Verdict(
            Status.NOT_ENFORCED,
            f"{cell.reason} Not here: {details}.",
            cell.source,
            basis=cell.basis,
            also=cell.also,
        )

    if soft:
        scope = soft[0].scope
        details = "; ".join(d for _, d in failed)
        if unknown:
            return Verdict(
                Status.UNKNOWN,
                f"{cell.reason} At most {scope}: {details}; and {'; '.join(unknown)}.",
                cell.source,
                not_enforced_in=f"everywhere outside {scope}",
                basis=cell.basis,
                also=cell.also,
            )
        return Verdict(
            soft[0].status,
            f"{cell.reason} Here only {scope}: {details}.",
            cell.source,
            scope=scope,
            basis=cell.basis,
            also=cell.also,
        )

    return Verdict(
        Status.UNKNOWN,
        f"{cell.reason} Cannot confirm it here: {'; '.join(unknown)}.",
        cell.source,
        basis=cell.basis,
        also=cell.also,
    )


def is_gap(verdict: Verdict) -> bool:
    """A capability that certainly fails to enforce somewhere on this device."""
    if verdict.status in (Status.NOT_ENFORCED, Status.PARTIAL):
        return True
    return verdict.status is Status.UNKNOWN and verdict.not_enforced_in is not None


def configured_capabilities(matrix: Matrix, tenant: TenantSettings) -> frozenset[str]:
    """What the tenant has policies for: declared, or else every tenant-policy capability."""
    if tenant.configured is not None:
        return tenant.configured
    configured = {c.id for c in matrix.capabilities.values() if c.tenant_policy}
    if tenant.indicator_kinds is not None:
        for cap_id, kind in _INDICATOR_CAPABILITIES.items():
            if kind not in tenant.indicator_kinds:
                configured.discard(cap_id)
    return frozenset(configured)


_INDICATOR_CAPABILITIES = {
    "indicator_url": "url",
    "indicator_ip": "ip",
    "indicator_file": "file",
    "indicator_certificate": "certificate",
    "mda_unsanctioned_block": "mda",
}


def _memo_key(f: DeviceFacts) -> tuple[object, ...]:
    # Exactly the facts the matrix lookup and the requirement checks read; versions are reduced
    # to the thresholds they are compared with, so devices on different builds still share.
    return (
        f.state,
        f.platform,
        f.onboarded,
        f.mode_source,
        f.network_protection,
        f.cloud_protection,
        f.behavior_monitoring,
        f.real_time_protection_reported,
        f.tamper_protected,
        f.allow_np_on_server,
        f.allow_np_down_level,
        version_at_least(f.platform_version, NETWORK_INDICATORS_MIN_PLATFORM),
        version_at_least(f.platform_version, FILE_INDICATORS_MIN_PLATFORM),
    )


def _findings_key(f: DeviceFacts) -> tuple[object, ...]:
    # Every fact ``findings_for`` reads; the findings' text depends on nothing else.
    return (
        f.state,
        f.platform,
        f.mode_source,
        f.platform_version,
        f.engine_version,
        f.network_protection,
        f.cloud_protection,
        f.real_time_protection_reported,
        f.allow_np_on_server,
        f.allow_np_down_level,
        f.force_passive_registry,
        f.misspelled_force_passive,
        f.wsc_service_state,
        f.third_party_av,
        f.problems,
    )


# --- findings -------------------------------------------------------------------------------


def edr_block_eligibility(facts: DeviceFacts, tenant: TenantSettings) -> tuple[bool | None, str]:
    """Whether EDR in block mode can be turned on for this device, and what is missing."""
    missing: list[str] = []
    unknown: list[str] = []
    if facts.platform is None or not facts.platform.is_windows:
        return False, "EDR in block mode exists on Windows only"
    if facts.state not in (State.ACTIVE, State.PASSIVE, State.EDR_BLOCK):
        missing.append("Defender Antivirus running in active or passive mode")
    for value, minimum, what in (
        (facts.platform_version, EDR_BLOCK_MIN_PLATFORM, "platform"),
        (facts.engine_version, EDR_BLOCK_MIN_ENGINE, "engine"),
    ):
        ok = version_at_least(value, minimum)
        if ok is None:
            unknown.append(f"the {what} version")
        elif not ok:
            missing.append(f"{what} {minimum} or later (has {value})")
    if facts.cloud_protection is False:
        missing.append("cloud-delivered protection on")
    elif facts.cloud_protection is None:
        unknown.append("whether cloud-delivered protection is on")
    if tenant.mde_license == "P1":
        missing.append("Defender for Endpoint Plan 2")
    elif tenant.mde_license is None:
        unknown.append("the licence (mdeLicense)")
    if missing:
        return False, "needs " + ", ".join(missing)
    if unknown:
        return None, "eligible as far as known; not known: " + ", ".join(unknown)
    return True, "meets every documented prerequisite"


def findings_for(facts: DeviceFacts, tenant: TenantSettings) -> Iterable[Finding]:
    """Explanations of the device's state, each with a stable code and a fix."""
    platform = facts.platform
    third_party = ", ".join(facts.third_party_av)

    if (
        platform is not None
        and platform.is_windows_server
        and facts.state is State.ACTIVE
        and facts.third_party_av
        and not facts.force_passive_registry
    ):
        yield Finding(
            "SERVER_BOTH_ENGINES_ACTIVE",
            f"Windows Server runs {third_party} and Defender Antivirus is still active: "
            "ForceDefenderPassiveMode is not set, so both engines scan.",
            "Set ForceDefenderPassiveMode = 1 (REG_DWORD) under HKLM\\SOFTWARE\\Policies\\"
            "Microsoft\\Windows Advanced Threat Protection. Microsoft says to set it before "
            "onboarding: with tamper protection on, an active Defender does not switch to passive, "
            "so offboard, set the value and onboard again.",
        )
    if (
        platform is not None
        and platform.is_windows_server
        and facts.state is State.ACTIVE
        and facts.force_passive_registry == 1
    ):
        yield Finding(
            "FORCE_PASSIVE_SET_BUT_ACTIVE",
            "ForceDefenderPassiveMode is 1 but Defender Antivirus is active: the value was set "
            "after onboarding, and tamper protection lets a server move to active but not back "
            "to passive.",
            "Offboard the server, keep ForceDefenderPassiveMode = 1, and onboard it again.",
        )
    if facts.misspelled_force_passive is not None:
        yield Finding(
            "FORCE_PASSIVE_MODE_MISSPELLED",
            "The registry has ForcePassiveMode, a name from an old migration guide that Defender "
            "ignores.",
            "Delete ForcePassiveMode and set ForceDefenderPassiveMode = 1 (REG_DWORD) instead, "
            "before onboarding.",
        )
    if (
        platform is Platform.WINDOWS_CLIENT
        and facts.third_party_av
        and (facts.wsc_service_state or "").lower() in ("disabled", "stopped")
    ):
        yield Finding(
            "WSC_DISABLED_WITH_THIRD_PARTY_AV",
            f"{third_party} is installed but the Windows Security Center service is "
            f"{facts.wsc_service_state}, so Defender cannot see it and stays active beside it.",
            "Re-enable the Windows Security Center service (wscsvc); Defender then moves to "
            "passive mode on an onboarded client.",
        )
    if facts.state in (State.PASSIVE, State.EDR_BLOCK) and facts.real_time_protection_reported:
        yield Finding(
            "PASSIVE_RTP_REPORTS_ENABLED",
            "Real-time protection reads as enabled, but in passive mode that only serves "
            "Endpoint DLP: it blocks no malware.",
            "Count this device as unprotected by Defender Antivirus; rely on the primary "
            "antivirus or turn on EDR in block mode.",
        )
    if facts.network_protection is NetworkProtection.AUDIT:
        yield Finding(
            "NETWORK_PROTECTION_AUDIT",
            "Network protection is in audit mode: URL/IP indicators, web content filtering and "
            "Defender for Cloud Apps blocks are only logged outside Edge.",
            "Set EnableNetworkProtection to 1 (block) once the audit events look right.",
        )
    if (
        platform is not None
        and platform.is_windows_server
        and facts.network_protection is NetworkProtection.BLOCK
        and (
            facts.allow_np_on_server is False
            or (
                platform is Platform.WINDOWS_SERVER_DOWNLEVEL and facts.allow_np_down_level is False
            )
        )
    ):
        yield Finding(
            "NETWORK_PROTECTION_SERVER_NOT_ALLOWED",
            "Network protection is set to block, but Windows Server ignores it until "
            "AllowNetworkProtectionOnWinServer is 1 (and on 2012 R2/2016 also "
            "AllowNetworkProtectionDownLevel).",
            "Set AllowNetworkProtectionOnWinServer = 1 (and AllowNetworkProtectionDownLevel = 1 "
            "on 2012 R2/2016).",
        )
    if facts.state is State.PASSIVE and platform is not None and platform.is_windows:
        eligible, detail = edr_block_eligibility(facts, tenant)
        too_old = any(
            version_at_least(v, m) is False
            for v, m in (
                (facts.platform_version, EDR_BLOCK_MIN_PLATFORM),
                (facts.engine_version, EDR_BLOCK_MIN_ENGINE),
            )
        )
        if too_old:
            yield Finding(
                "EDR_BLOCK_PLATFORM_TOO_OLD",
                f"Passive device whose Defender is too old for EDR in block mode: {detail}.",
                f"Update the Defender platform to {EDR_BLOCK_MIN_PLATFORM} or later and the "
                f"engine to {EDR_BLOCK_MIN_ENGINE} or later.",
            )
        elif eligible is not False:
            yield Finding(
                "EDR_BLOCK_MODE_MISSING",
                "Passive device without EDR in block mode, so nothing of Defender blocks on it "
                f"({detail}).",
                "Turn on EDR in block mode for this device (per device through the "
                "PassiveRemediation setting, or tenant-wide in Advanced features).",
            )
    for problem in facts.problems:
        yield Finding(
            "SOURCE_RECORD_PROBLEM",
            f"The {facts.mode_source.value} record has a problem: {problem}.",
            "Check the data source; the verdicts above treat the field as unknown.",
        )


__all__ = [
    "EDR_BLOCK_MIN_ENGINE",
    "EDR_BLOCK_MIN_PLATFORM",
    "REQUIREMENT_CHECKS",
    "EvaluationError",
    "Evaluator",
    "configured_capabilities",
    "edr_block_eligibility",
    "findings_for",
    "is_gap",
]
