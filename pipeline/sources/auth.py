"""Bearer tokens for the Defender for Endpoint API and Microsoft Graph.

One small interface, :class:`TokenProvider`, with four ways to fill it:

* :class:`AzureIdentityTokens` wraps an ``azure-identity`` credential: a user-assigned managed
  identity (pass its client id; without it a function app may pick the wrong identity), a client
  secret or a certificate. This is the normal choice inside Azure.
* :class:`MsalTokens` uses ``msal`` for an app registration that lives in another tenant.
* :class:`ClientCredentialsTokens` speaks the OAuth 2.0 client-credentials grant directly to any
  token endpoint; the lab tenant issues its tokens this way.
* :class:`StaticToken` carries a token someone already has (a lab token, a recording proxy).

Tokens are cached until shortly before they expire and dropped when an API answers 401, so an
hour-long collection survives token expiry. No token or secret is ever logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import httpx
from azure.core.credentials import AccessToken, AccessTokenInfo

from pipeline.sources.errors import AuthError

log = logging.getLogger(__name__)

# Scopes of the two resources. The MDE API also accepts tokens for its older resource name
# (https://securitycenter.onmicrosoft.com/windowsatpservice), but one scope is enough.
MDE_SCOPE = "https://api.securitycenter.microsoft.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"

# Refresh this long before the expiry the issuer announced, so a token never dies mid-request.
REFRESH_MARGIN_SECONDS = 300.0

Clock = Callable[[], float]


class TokenProvider(Protocol):
    def token(self) -> str:
        """A bearer token that is valid now."""
        ...

    def invalidate(self) -> None:
        """Forget the cached token (the API said it is no longer valid)."""
        ...


class StaticToken:
    """A fixed token; nothing to refresh, so an expired one surfaces as the API's 401."""

    def __init__(self, value: str) -> None:
        if not value.strip():
            raise AuthError("static token", "the token is empty")
        self._value = value.strip()

    def token(self) -> str:
        return self._value

    def invalidate(self) -> None:
        """A static token cannot be renewed; the caller sees the API's 401."""

    def __repr__(self) -> str:
        return "StaticToken(<redacted>)"


class CachedTokens:
    """Caches one token and fetches a new one when it is close to expiry or invalidated.

    Subclasses implement ``_fetch`` (a new token and its lifetime) and set ``describe`` for the
    log line; nothing here ever logs the token itself.
    """

    describe = "token"

    def __init__(self, clock: Clock | None = None, margin: float = REFRESH_MARGIN_SECONDS) -> None:
        self._clock = clock or time.monotonic
        self._margin = margin
        self._value: str | None = None
        self._refresh_at = 0.0
        self._lock = threading.Lock()
        self.fetches = 0  # how many tokens were obtained; tests and progress lines read it

    def token(self) -> str:
        with self._lock:
            now = self._clock()
            if self._value is None or now >= self._refresh_at:
                value, lifetime = self._fetch()
                self.fetches += 1
                self._value = value
                self._refresh_at = now + max(lifetime - self._margin, lifetime / 2)
                log.info("obtained %s, valid for %.0f s", self.describe, lifetime)
            return self._value

    def invalidate(self) -> None:
        with self._lock:
            self._value = None

    def _fetch(self) -> tuple[str, float]:
        """Return a new token and its lifetime in seconds."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe})"


class ClientCredentialsTokens(CachedTokens):
    """OAuth 2.0 client-credentials grant (RFC 6749 section 4.4) against ``token_url``."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str,
        *,
        http: httpx.Client | None = None,
        timeout: float = 30.0,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(clock)
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._scope = scope
        self._http = http
        self._timeout = timeout
        self.describe = f"token for {scope} from {token_url}"

    def _fetch(self) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "scope": self._scope,
        }
        endpoint = f"POST {self._token_url}"
        try:
            if self._http is not None:
                response = self._http.post(self._token_url, data=form)
            else:  # tokens are fetched about once an hour: no connection worth keeping
                with httpx.Client(timeout=self._timeout) as http:
                    response = http.post(self._token_url, data=form)
        except httpx.HTTPError as exc:
            raise AuthError(endpoint, f"token endpoint unreachable: {type(exc).__name__}") from exc

        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not isinstance(body, dict):
            # Entra answers {"error": "invalid_client", "error_description": "AADSTS..."}.
            error = body.get("error", "-") if isinstance(body, dict) else "-"
            detail = body.get("error_description", "") if isinstance(body, dict) else ""
            raise AuthError(endpoint, f"HTTP {response.status_code} {error}: {detail}".strip())

        value = body.get("access_token")
        if not isinstance(value, str) or not value:
            raise AuthError(endpoint, "the answer has no access_token")
        return value, float(body.get("expires_in", 3600))


class AzureIdentityTokens(CachedTokens):
    """Tokens from an ``azure-identity`` credential (managed identity, secret or certificate)."""

    def __init__(self, credential: Any, scope: str, *, clock: Clock | None = None) -> None:
        super().__init__(clock)
        self._credential = credential
        self._scope = scope
        self.describe = f"token for {scope} from {type(credential).__name__}"

    def _fetch(self) -> tuple[str, float]:
        try:
            access = self._credential.get_token(self._scope)
        except (
            Exception
        ) as exc:  # azure-identity raises several unrelated types; all mean "no token"
            raise AuthError(self.describe, f"{type(exc).__name__}: {exc}") from exc
        return str(access.token), float(access.expires_on) - time.time()


class MsalTokens(CachedTokens):
    """Tokens from an ``msal.ConfidentialClientApplication`` (app registration, any tenant)."""

    def __init__(self, app: Any, scope: str, *, clock: Clock | None = None) -> None:
        super().__init__(clock)
        self._app = app
        self._scope = scope
        self.describe = f"token for {scope} from msal"

    def _fetch(self) -> tuple[str, float]:
        result = self._app.acquire_token_for_client(scopes=[self._scope])
        if not isinstance(result, dict) or "access_token" not in result:
            error = result.get("error", "-") if isinstance(result, dict) else "-"
            detail = result.get("error_description", "") if isinstance(result, dict) else ""
            raise AuthError(self.describe, f"{error}: {detail}".strip())
        return str(result["access_token"]), float(result.get("expires_in", 3600))


class FixedTokenCredential:
    """An azure-core TokenCredential with one fixed token, for endpoints on this machine only
    (the local Logs Ingestion endpoint, test servers). It opens nothing in Azure."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo(self._token, int(time.time()) + 3600)

    def __repr__(self) -> str:
        return "FixedTokenCredential(<redacted>)"
