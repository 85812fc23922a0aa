"""The lab tenant's custom indicators, as GET /api/indicators returns them.

A fixed set that does not depend on fleet size: phishing URLs, domains and IPs (Block and
BlockAndRemediate, some expired), Allow entries, file hashes and a certificate, and the indicators
Defender for Cloud Apps creates for unsanctioned apps (Block, with an alert) and monitored apps
(Warn). Which exact ``source``/``createdBySource`` values Cloud Apps puts on its indicators is not
documented; the lab's values are plausible, not authoritative.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pipeline.lab.fleet import REFERENCE_TIME

_MDA = "Microsoft Defender for Cloud Apps"
_SOC = "soc-automation@contoso.com"

UNSANCTIONED_APPS: dict[str, tuple[str, ...]] = {
    "Dropbox": ("dropbox.com", "dropboxapi.com", "db.tt"),
    "WeTransfer": ("wetransfer.com", "we.tl"),
    "Mega": ("mega.nz", "mega.io", "mega.co.nz"),
}
MONITORED_APPS: dict[str, tuple[str, ...]] = {
    "Box": ("box.com", "app.box.com"),
    "Google Drive": ("drive.google.com",),
}

_PHISHING: tuple[tuple[str, str, str, int | None], ...] = (
    # (type, value, action, days until expiry; negative = already expired, None = never)
    ("Url", "http://login-micros0ft-support.com/office365/verify", "Block", 60),
    ("Url", "https://contoso-payroll-update.net/login.php", "BlockAndRemediate", 30),
    ("Url", "https://sharepoint-docs-review.org/share/invoice", "Block", -3),
    ("DomainName", "contoso-helpdesk-reset.com", "Block", 90),
    ("DomainName", "secure-mfa-contoso.net", "BlockAndRemediate", None),
    ("DomainName", "old-campaign-example.info", "Block", -40),
    ("IpAddress", "198.51.100.23", "Block", 14),
    ("IpAddress", "203.0.113.77", "BlockAndRemediate", None),
    ("IpAddress", "192.0.2.145", "Block", -1),
    ("DomainName", "partner.contoso-trusted.com", "Allowed", None),
    ("Url", "https://updates.contoso-vendor.com/agent/", "Allowed", None),
    ("IpAddress", "198.51.100.8", "Allowed", None),
    ("DomainName", "ads-tracker.example", "Audit", 20),
    (
        "FileSha256",
        "4b7c1b9c7e3b51d1b8a0f0e9a2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5",
        "BlockAndRemediate",
        None,
    ),
    ("FileSha1", "3395856ce81f2b7382dee72602f798b642f14140", "Block", 180),
    ("FileMd5", "44d88612fea8a8f36de82e1278abb02f", "Audit", None),
    ("CertificateThumbprint", "1f2e3d4c5b6a79881726354453627180a9b8c7d6", "Block", None),
)


def contoso_indicators() -> list[dict[str, Any]]:
    indicators: list[dict[str, Any]] = []
    for kind, value, action, days in _PHISHING:
        indicators.append(
            _indicator(
                len(indicators) + 1,
                kind,
                value,
                action,
                title=f"Phishing campaign IOC {value[:40]}",
                created_by=_SOC,
                source_type="User",
                expires_in_days=days,
                generate_alert=action != "Allowed",
            )
        )
    for app, domains in UNSANCTIONED_APPS.items():
        for domain in domains:
            indicators.append(_cloud_app(len(indicators) + 1, app, domain, "Block"))
    for app, domains in MONITORED_APPS.items():
        for domain in domains:
            indicators.append(_cloud_app(len(indicators) + 1, app, domain, "Warn"))
    return indicators


def _cloud_app(number: int, app: str, domain: str, action: str) -> dict[str, Any]:
    tag = "Unsanctioned" if action == "Block" else "Monitored"
    return _indicator(
        number,
        "DomainName",
        domain,
        action,
        title=f"{tag} app: {app}",
        created_by=_MDA,
        source_type="AadApp",
        expires_in_days=None,
        generate_alert=action == "Block",
        application=app,
    )


def _indicator(
    number: int,
    kind: str,
    value: str,
    action: str,
    *,
    title: str,
    created_by: str,
    source_type: str,
    expires_in_days: int | None,
    generate_alert: bool,
    application: str | None = None,
) -> dict[str, Any]:
    created = REFERENCE_TIME - timedelta(days=120 - number)
    expires = (
        None
        if expires_in_days is None
        else (REFERENCE_TIME + timedelta(days=expires_in_days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    stamp = created.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return {
        "id": str(5000 + number),
        "indicatorValue": value,
        "indicatorType": kind,
        "action": action,
        "application": application,
        "source": created_by,
        "sourceType": source_type,
        "createdBySource": "Defender for Cloud Apps" if source_type == "AadApp" else "Portal",
        "createdBy": created_by,
        "createdByDisplayName": created_by,
        "lastUpdatedBy": created_by,
        "creationTimeDateTimeUtc": stamp,
        "expirationTime": expires,
        "lastUpdateTime": stamp,
        "severity": "High" if action.startswith("Block") else "Informational",
        "title": title,
        "description": f"{title} ({kind} {value})",
        "recommendedActions": "Investigate the device that contacted it.",
        "rbacGroupNames": [],
        "rbacGroupIds": [],
        "generateAlert": generate_alert,
        "category": 1 if action.startswith("Block") else 0,
        "mitreTechniques": [],
        "historicalDetection": False,
        "lookBackPeriod": None,
        "externalId": None,
        "educateUrl": None,
    }
