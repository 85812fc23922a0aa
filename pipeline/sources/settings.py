"""Where to collect from and with which credential, read once from the environment.

=================================  ==============================================================
``MDE_API_URL``                     MDE API base, default ``https://api.security.microsoft.com``
                                    (regional hosts: ``eu.``/``us.``/``uk.``/``au.``/``swa.``)
``GRAPH_API_URL``                   Graph base with version, default
                                    ``https://graph.microsoft.com/v1.0``
``MDE_AUTH``                        ``managed_identity`` (default), ``secret``, ``certificate`` or
                                    ``msal`` (an app registration in another tenant)
``MDE_TENANT_ID``                   Entra tenant id (secret, certificate and msal)
``MDE_CLIENT_ID``                   app registration client id, or the user-assigned managed
                                    identity's client id
``MDE_CLIENT_SECRET``               client secret (``secret``, or ``msal`` without a certificate)
``MDE_CERTIFICATE_PATH``            PEM file with key and certificate (``certificate``, ``msal``)
``MDE_AUTHORITY_HOST``              Entra host, default ``login.microsoftonline.com``
=================================  ==============================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msal
from azure.identity import CertificateCredential, ClientSecretCredential, ManagedIdentityCredential

from pipeline.sources.auth import (
    GRAPH_SCOPE,
    MDE_SCOPE,
    AzureIdentityTokens,
    MsalTokens,
    TokenProvider,
)

AUTH_KINDS = ("managed_identity", "secret", "certificate", "msal")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class SourceSettings:
    mde_url: str = "https://api.security.microsoft.com"
    graph_url: str = "https://graph.microsoft.com/v1.0"
    auth: str = "managed_identity"
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    certificate_path: str | None = None
    authority_host: str = "login.microsoftonline.com"

    def __repr__(self) -> str:  # never print the secret
        return (
            f"SourceSettings(mde_url={self.mde_url!r}, graph_url={self.graph_url!r}, "
            f"auth={self.auth!r}, tenant_id={self.tenant_id!r}, client_id={self.client_id!r})"
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SourceSettings:
        settings = cls(
            mde_url=env.get("MDE_API_URL", cls.mde_url).rstrip("/"),
            graph_url=env.get("GRAPH_API_URL", cls.graph_url).rstrip("/"),
            auth=env.get("MDE_AUTH", cls.auth),
            tenant_id=env.get("MDE_TENANT_ID") or None,
            client_id=env.get("MDE_CLIENT_ID") or None,
            client_secret=env.get("MDE_CLIENT_SECRET") or None,
            certificate_path=env.get("MDE_CERTIFICATE_PATH") or None,
            authority_host=env.get("MDE_AUTHORITY_HOST", cls.authority_host),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        for name, url in (("MDE_API_URL", self.mde_url), ("GRAPH_API_URL", self.graph_url)):
            if not url.startswith("https://"):
                raise SettingsError(f"{name} must be an https URL, got {url!r}")
        if self.auth not in AUTH_KINDS:
            raise SettingsError(f"MDE_AUTH must be one of {', '.join(AUTH_KINDS)}: {self.auth!r}")
        if self.auth != "managed_identity":
            for name, value in (
                ("MDE_TENANT_ID", self.tenant_id),
                ("MDE_CLIENT_ID", self.client_id),
            ):
                if not value:
                    raise SettingsError(f"{name} is required when MDE_AUTH={self.auth}")
        if self.auth == "secret" and not self.client_secret:
            raise SettingsError("MDE_CLIENT_SECRET is required when MDE_AUTH=secret")
        if self.auth == "certificate" and not self.certificate_path:
            raise SettingsError("MDE_CERTIFICATE_PATH is required when MDE_AUTH=certificate")
        if self.auth == "msal" and not (self.client_secret or self.certificate_path):
            raise SettingsError("MDE_AUTH=msal needs MDE_CLIENT_SECRET or MDE_CERTIFICATE_PATH")


def token_providers(settings: SourceSettings) -> tuple[TokenProvider, TokenProvider]:
    """Token providers for (MDE, Graph) from validated settings."""
    if settings.auth == "msal":
        return _msal_provider(settings, MDE_SCOPE), _msal_provider(settings, GRAPH_SCOPE)

    authority = settings.authority_host
    credential: Any
    if settings.auth == "managed_identity":
        # A user-assigned identity must be named by its client id, or the host may pick another.
        credential = ManagedIdentityCredential(client_id=settings.client_id)
    elif settings.auth == "secret":
        credential = ClientSecretCredential(
            str(settings.tenant_id),
            str(settings.client_id),
            str(settings.client_secret),
            authority=authority,
        )
    else:
        credential = CertificateCredential(
            str(settings.tenant_id),
            str(settings.client_id),
            str(settings.certificate_path),
            authority=authority,
        )
    return AzureIdentityTokens(credential, MDE_SCOPE), AzureIdentityTokens(credential, GRAPH_SCOPE)


def _msal_provider(settings: SourceSettings, scope: str) -> MsalTokens:
    credential: object = settings.client_secret
    if settings.certificate_path:
        credential = {"private_key_pfx_path": settings.certificate_path}
        if Path(settings.certificate_path).suffix.lower() == ".pem":
            pem = Path(settings.certificate_path).read_text(encoding="utf-8")
            credential = {"private_key": pem, "public_certificate": pem}
    app = msal.ConfidentialClientApplication(
        settings.client_id,
        authority=f"https://{settings.authority_host}/{settings.tenant_id}",
        client_credential=credential,
    )
    return MsalTokens(app, scope)
