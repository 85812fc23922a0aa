"""Tokens: the lab's OAuth endpoint, caching, refresh before expiry, and settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pytest

from pipeline.sources.auth import (
    GRAPH_SCOPE,
    MDE_SCOPE,
    AzureIdentityTokens,
    ClientCredentialsTokens,
    MsalTokens,
    StaticToken,
)
from pipeline.sources.errors import AuthError
from pipeline.sources.settings import SettingsError, SourceSettings
from tests.support.lab import FakeClock, LabTenant, lab_tenant

__all__ = ["lab_tenant"]


def test_token_is_cached_until_close_to_expiry(lab_tenant: LabTenant) -> None:
    tokens = lab_tenant.tokens(MDE_SCOPE)

    first = tokens.token()
    lab_tenant.clock.advance(3599 - 301)
    still = tokens.token()
    lab_tenant.clock.advance(2)
    renewed = tokens.token()

    assert first == still != renewed
    assert tokens.fetches == 2
    assert lab_tenant.server.tokens_issued == 2


def test_invalidate_forces_a_new_token(lab_tenant: LabTenant) -> None:
    tokens = lab_tenant.tokens(GRAPH_SCOPE)
    first = tokens.token()

    tokens.invalidate()

    assert tokens.token() != first


def test_wrong_secret_names_the_oauth_error_and_never_the_secret(
    lab_tenant: LabTenant, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = ClientCredentialsTokens(
        lab_tenant.server.token_url, lab_tenant.config.client_id, "wrong-secret-value", MDE_SCOPE
    )

    with pytest.raises(AuthError) as caught:
        tokens.token()

    assert "401 invalid_client" in str(caught.value)
    assert "AADSTS7000215" in str(caught.value)
    assert "wrong-secret-value" not in str(caught.value) + caplog.text


def test_unknown_scope_is_refused(lab_tenant: LabTenant) -> None:
    with pytest.raises(AuthError, match="invalid_scope"):
        lab_tenant.tokens("https://example.invalid/.default").token()


def test_unreachable_token_endpoint_is_an_auth_error() -> None:
    tokens = ClientCredentialsTokens("http://127.0.0.1:9/t/oauth2/v2.0/token", "c", "s", MDE_SCOPE)

    with pytest.raises(AuthError, match="unreachable"):
        tokens.token()


def test_tokens_never_appear_in_logs(
    lab_tenant: LabTenant, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mde, _ = lab_tenant.clients()

    list(mde.indicators())
    token = mde.api._tokens.token()

    assert token not in caplog.text
    assert lab_tenant.config.client_secret not in caplog.text
    mde.api.close()


def test_static_token_hides_itself_and_rejects_empty() -> None:
    assert "abc" not in repr(StaticToken("abc"))
    with pytest.raises(AuthError):
        StaticToken("  ")


@dataclass
class _AccessToken:
    token: str
    expires_on: int


class _FakeCredential:
    """Stands in for an azure-identity credential: the public get_token protocol only."""

    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, scope: str) -> _AccessToken:
        import time

        self.scopes.append(scope)
        return _AccessToken(f"t{len(self.scopes)}", int(time.time()) + 3600)


def test_azure_identity_credential_is_asked_for_the_resource_scope() -> None:
    credential = _FakeCredential()
    clock = FakeClock()
    tokens = AzureIdentityTokens(credential, MDE_SCOPE, clock=clock)

    assert tokens.token() == tokens.token() == "t1"
    clock.advance(3400)

    assert tokens.token() == "t2"
    assert credential.scopes == [MDE_SCOPE, MDE_SCOPE]


class _FakeMsalApp:
    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer

    def acquire_token_for_client(self, scopes: list[str]) -> dict[str, Any]:
        return self.answer


def test_msal_answer_and_msal_error() -> None:
    good = MsalTokens(_FakeMsalApp({"access_token": "m1", "expires_in": 3599}), GRAPH_SCOPE)
    bad = MsalTokens(
        _FakeMsalApp({"error": "invalid_client", "error_description": "AADSTS700016: no app"}),
        GRAPH_SCOPE,
    )

    assert good.token() == "m1"
    with pytest.raises(AuthError, match="AADSTS700016"):
        bad.token()


def test_settings_defaults_and_validation() -> None:
    settings = SourceSettings.from_env({"MDE_CLIENT_ID": "uami-client-id"})

    assert settings.auth == "managed_identity"
    assert settings.mde_url == "https://api.security.microsoft.com"
    assert settings.graph_url == "https://graph.microsoft.com/v1.0"


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"MDE_AUTH": "password"}, "MDE_AUTH must be one of"),
        ({"MDE_AUTH": "secret", "MDE_CLIENT_ID": "c"}, "MDE_TENANT_ID is required"),
        ({"MDE_AUTH": "secret", "MDE_TENANT_ID": "t", "MDE_CLIENT_ID": "c"}, "MDE_CLIENT_SECRET"),
        ({"MDE_AUTH": "certificate", "MDE_TENANT_ID": "t", "MDE_CLIENT_ID": "c"}, "CERTIFICATE"),
        ({"MDE_AUTH": "msal", "MDE_TENANT_ID": "t", "MDE_CLIENT_ID": "c"}, "MDE_AUTH=msal needs"),
        ({"MDE_API_URL": "http://api.security.microsoft.com"}, "must be an https URL"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], complaint: str) -> None:
    with pytest.raises(SettingsError, match=complaint):
        SourceSettings.from_env(env)


def test_settings_repr_hides_the_secret() -> None:
    env = {"MDE_AUTH": "secret", "MDE_TENANT_ID": "t", "MDE_CLIENT_ID": "c"}
    settings = SourceSettings.from_env({**env, "MDE_CLIENT_SECRET": "s3cr3t-value"})

    assert "s3cr3t-value" not in repr(settings)
