"""Zscaler Internet Access: a custom URL category kept equal to the block list.

The ZIA cloud service API is reached through OneAPI (base ``https://api.zsapi.net/zia``) with a
bearer token from ZIdentity, or on a cloud's own API host with a session an operator opened.
The calls used:

* ``GET /api/v1/urlCategories/{id}`` reads the category (its ``configuredName`` and ``urls``);
* ``PUT /api/v1/urlCategories/{id}?action=ADD_TO_LIST`` and ``?action=REMOVE_FROM_LIST`` with
  ``{"configuredName", "urls": [...]}`` change only the values named;
* ``PUT /api/v1/urlCategories/{id}`` without an action sends the whole category back with its
  ``urls`` replaced;
* ``POST /api/v1/status/activate`` activates. ZIA keeps configuration changes staged until then.
  This path is the one public integrations call; Zscaler's reference for it was not at hand when
  this was written (UNVERIFIED), so a tenant where activation fails reports it and keeps the
  change staged.

Values (https://help.zscaler.com/zia/url-format-guidelines): ``.example.com`` matches the domain
and every subdomain, which is what a ``DomainName`` indicator means; ``example.com`` matches
that host only; ``example.com/path`` a path below it; an IPv4 address that address. A URL
with a port and IPv6 hosts are reported as not representable rather than widened (whether ZIA
custom categories take them is UNVERIFIED), and so are networks, which ZIA keeps in a separate
``ipRanges`` field this adapter does not manage.

Rate limits: ZIA allows about one write a second and 400 an hour per endpoint, and answers 429
with the wait in the body (``{"Retry-After": "0 seconds"}``)
(https://help.zscaler.com/zia/understanding-rate-limiting). Writes are paced to one a second by
default. The URL quota per tenant is not checked ahead (its size is UNVERIFIED); a write beyond
it is refused, and the refused values are reported.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import quote

import httpx

from pipeline.act.blocklist.build import Blocklist
from pipeline.act.blocklist.formats import Omission
from pipeline.act.blocklist.push.base import (
    ApiSession,
    Clock,
    ListPushTarget,
    Prepared,
    PushAuthError,
    PushConfigError,
    PushMode,
    PushResponseError,
    RemoteList,
    SentRequest,
    Sleep,
)
from pipeline.sources.auth import CachedTokens

log = logging.getLogger(__name__)

ZSCALER_AUDIENCE: Final = "https://api.zscaler.com"
_REFRESH_MARGIN: Final = 300.0

_LABEL: Final = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST: Final = rf"{_LABEL}(?:\.{_LABEL})+"
_PATH: Final = r"/[A-Za-z0-9\-._~/!,=:@&+%?]*"
_VALUE: Final = re.compile(rf"\.{_HOST}|{_HOST}(?:{_PATH})?")
_CATEGORY_ID: Final = re.compile(r"[A-Za-z0-9_]{1,64}")


class ZIdentityTokens(CachedTokens):
    """OAuth 2.0 client-credentials tokens from ZIdentity for the Zscaler OneAPI.

    ``token_url`` is ``https://<vanity domain>.zslogin.net/oauth2/v1/token``; the request names
    the OneAPI audience (https://help.zscaler.com/oneapi/understanding-oneapi). Tokens are kept
    until shortly before they expire and dropped when the API answers 401 (``CachedTokens``).
    Neither the secret nor a token is ever logged or shown in ``repr``.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        audience: str = ZSCALER_AUDIENCE,
        http: httpx.Client | None = None,
        timeout: float = 30.0,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(clock, margin=_REFRESH_MARGIN)
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._audience = audience
        self._http = http
        self._timeout = timeout
        self.describe = "a ZIdentity token for zscaler"

    def _fetch(self) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "audience": self._audience,
        }
        endpoint = f"POST {self._token_url}"
        try:
            if self._http is not None:
                response = self._http.post(self._token_url, data=form, timeout=self._timeout)
            else:
                with httpx.Client(timeout=self._timeout) as http:
                    response = http.post(self._token_url, data=form)
        except httpx.HTTPError as exc:
            raise PushAuthError(
                "zscaler", endpoint, f"token endpoint unreachable: {type(exc).__name__}"
            ) from exc

        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            error = body.get("error", "-") if isinstance(body, dict) else "-"
            raise PushAuthError(
                "zscaler", endpoint, f"HTTP {response.status_code} {error}", response.status_code
            )
        value = body.get("access_token")
        if not isinstance(value, str) or not value:
            raise PushAuthError("zscaler", endpoint, "the answer has no access_token")
        lifetime = body.get("expires_in", 3600)
        return value, float(lifetime) if isinstance(lifetime, int | float) else 3600.0

    def __repr__(self) -> str:
        return f"ZIdentityTokens({self._token_url}, client {self._client_id})"


class BearerCredentials:
    """``Authorization: Bearer`` from a token provider; renewed once after a 401."""

    def __init__(self, tokens: ZIdentityTokens) -> None:
        self._tokens = tokens

    def headers(self) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {self._tokens.token()}"}

    def renew(self) -> bool:
        self._tokens.invalidate()
        return True


class SessionCredentials:
    """A session an operator already opened (the ZIA ``JSESSIONID`` cookie on the client).

    Opening one needs the admin password and the obfuscated API key; this adapter leaves that
    to the caller and only uses the client it is given. A 401 means the session has ended.
    """

    def headers(self) -> Mapping[str, str]:
        return {}

    def renew(self) -> bool:
        return False


@dataclass(frozen=True)
class ZscalerSettings:
    """Where and how to push. Secrets are never shown in ``repr``."""

    base_url: str
    category_id: str
    token_url: str = ""
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    activate: bool = True
    chunk_size: int = 500
    write_interval: float = 1.0

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, dry_run: bool = False) -> ZscalerSettings:
        """Read ``ZSCALER_*`` settings; a dry run needs only the category id."""
        category_id = env.get("ZSCALER_CATEGORY_ID", "").strip()
        if not _CATEGORY_ID.fullmatch(category_id):
            raise PushConfigError(
                "zscaler", "ZSCALER_CATEGORY_ID", "missing, or not a URL category id"
            )
        settings = cls(
            base_url=env.get("ZSCALER_BASE_URL", "").strip(),
            category_id=category_id,
            token_url=env.get("ZSCALER_TOKEN_URL", "").strip(),
            client_id=env.get("ZSCALER_CLIENT_ID", "").strip(),
            client_secret=env.get("ZSCALER_CLIENT_SECRET", ""),
            activate=_flag(env, "ZSCALER_ACTIVATE", default=True),
            write_interval=_seconds(env, "ZSCALER_WRITE_INTERVAL", default=1.0),
        )
        if not dry_run:
            for key, value in (
                ("ZSCALER_BASE_URL", settings.base_url),
                ("ZSCALER_TOKEN_URL", settings.token_url),
                ("ZSCALER_CLIENT_ID", settings.client_id),
                ("ZSCALER_CLIENT_SECRET", settings.client_secret),
            ):
                if not value:
                    raise PushConfigError("zscaler", key, "is required for a live push")
            for key, url in (
                ("ZSCALER_BASE_URL", settings.base_url),
                ("ZSCALER_TOKEN_URL", settings.token_url),
            ):
                if not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
                    raise PushConfigError("zscaler", key, "must be an https URL")
        return settings


class ZscalerTarget(ListPushTarget):
    """A ZIA custom URL category as a push target."""

    name = "zscaler"

    def __init__(
        self,
        category_id: str,
        session: ApiSession | None,
        *,
        activate: bool = True,
        dry_run: bool = False,
        chunk_size: int = 500,
        max_payload_bytes: int = 1_000_000,
        max_refused: int = 100,
    ) -> None:
        if not _CATEGORY_ID.fullmatch(category_id):
            raise PushConfigError(self.name, "category_id", "not a URL category id")
        super().__init__(
            session,
            dry_run=dry_run,
            chunk_size=chunk_size,
            max_payload_bytes=max_payload_bytes,
            max_refused=max_refused,
        )
        self.category_id = category_id
        self.activate = activate
        self._path = f"/api/v1/urlCategories/{quote(category_id, safe='')}"

    @classmethod
    def from_settings(
        cls,
        settings: ZscalerSettings,
        *,
        dry_run: bool = False,
        http: httpx.Client | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> ZscalerTarget:
        session = None
        if not dry_run:
            tokens = ZIdentityTokens(
                settings.token_url,
                settings.client_id,
                settings.client_secret,
                http=http,
                clock=clock,
            )
            session = ApiSession(
                cls.name,
                settings.base_url,
                BearerCredentials(tokens),
                http=http,
                write_interval=settings.write_interval,
                clock=clock,
                sleep=sleep,
            )
        return cls(
            settings.category_id,
            session,
            activate=settings.activate,
            dry_run=dry_run,
            chunk_size=settings.chunk_size,
        )

    def describe(self) -> str:
        return f"URL category {self.category_id}"

    def prepare(self, blocklist: Blocklist) -> Prepared:
        values: list[str] = []
        omitted: list[Omission] = []

        def omit(indicator_id: str, value: str, reason: str) -> None:
            omitted.append(Omission(indicator_id, value, reason))

        for entry in blocklist.entries:
            v6 = entry.network is not None and entry.network.version == 6
            if entry.kind == "domain":
                values.append(f".{entry.value}")
            elif entry.kind == "network":
                omit(
                    entry.indicator_id,
                    entry.value,
                    "ZIA keeps address ranges in a category's ipRanges, which is not managed here",
                )
            elif v6:
                omit(entry.indicator_id, entry.value, "IPv6 addresses are not sent to ZIA")
            elif entry.port is not None:
                omit(entry.indicator_id, entry.value, "a ZIA category entry names no port")
            else:
                values.append(entry.value)  # a host, an IPv4 address, a URL

        for exemption in blocklist.exemptions:
            omit(
                exemption.allowed.indicator_id,
                exemption.allowed.value,
                f"a URL category cannot exempt part of {exemption.within.value} (indicator "
                f"{exemption.within.indicator_id}); it stays blocked there",
            )
        return Prepared(tuple(values), tuple(omitted))

    def _value_problem(self, value: str) -> str | None:
        if _VALUE.fullmatch(value):
            return None
        return "not a ZIA URL category entry (.domain, host, host/path or IPv4 address)"

    def _read(self) -> RemoteList:
        answer = self.session.call("GET", self._path)
        category = answer.body
        if not isinstance(category, dict):
            raise PushResponseError(self.name, f"GET {self._path}", "the answer is not a category")

        name = category.get("configuredName")
        urls = category.get("urls", [])
        if category.get("customCategory") is False:
            raise PushResponseError(
                self.name,
                f"GET {self._path}",
                "this is a predefined category; push only to a custom URL category",
            )
        if not isinstance(name, str) or not name:
            raise PushResponseError(self.name, f"GET {self._path}", "category has no name")
        if not isinstance(urls, list) or not all(isinstance(url, str) for url in urls):
            raise PushResponseError(self.name, f"GET {self._path}", "urls is not a list of text")
        return RemoteList(
            destination=f"URL category {self.category_id} ({name})",
            values=tuple(urls),
            details={"category": category, "name": name},
        )

    def _replace(self, remote: RemoteList, values: Sequence[str]) -> RemoteList:
        # The public SDKs send the whole category back with its URLs replaced, so the other
        # settings (keywords, description, ranges) stay as they are.
        body = {**remote.details["category"], "urls": list(values)}
        self.session.call("PUT", self._path, body=body, values=values)
        return RemoteList(remote.destination, tuple(values), {**remote.details, "category": body})

    def _add(self, remote: RemoteList, values: Sequence[str]) -> None:
        self._change(remote, "ADD_TO_LIST", values)

    def _remove(self, remote: RemoteList, values: Sequence[str]) -> None:
        self._change(remote, "REMOVE_FROM_LIST", values)

    def _change(self, remote: RemoteList, action: str, values: Sequence[str]) -> None:
        body = {"configuredName": remote.details["name"], "urls": list(values)}
        self.session.call("PUT", self._path, params={"action": action}, body=body, values=values)

    def _activate(self, remote: RemoteList) -> tuple[bool, tuple[str, ...]]:
        if not self.activate:
            return False, (
                "activation is off: the change stays staged in ZIA until an admin activates it",
            )
        answer = self.session.call("POST", "/api/v1/status/activate")
        status = answer.body.get("status") if isinstance(answer.body, dict) else None
        if status not in (None, "ACTIVE"):
            return True, (f"activation answered status {str(status)[:40]!r}",)
        return True, ()

    def _plan_requests(
        self, mode: PushMode, add: Sequence[str], remove: Sequence[str]
    ) -> list[SentRequest]:
        planned: list[SentRequest] = []
        if mode == "full":
            chunks = list(self.chunks(add)) or [[]]
            planned.append(SentRequest("PUT", self._path, tuple(chunks[0])))
            add_chunks = chunks[1:]
        else:
            add_chunks = list(self.chunks(add))
        planned.extend(
            SentRequest("PUT", f"{self._path}?action=ADD_TO_LIST", tuple(chunk))
            for chunk in add_chunks
        )
        planned.extend(
            SentRequest("PUT", f"{self._path}?action=REMOVE_FROM_LIST", tuple(chunk))
            for chunk in self.chunks(remove)
        )
        if self.activate:
            planned.append(SentRequest("POST", "/api/v1/status/activate"))
        return planned


def _flag(env: Mapping[str, str], key: str, *, default: bool) -> bool:
    raw = env.get(key, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise PushConfigError("settings", key, f"{raw!r} is not true or false")


def _seconds(env: Mapping[str, str], key: str, *, default: float) -> float:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise PushConfigError("settings", key, f"{raw!r} is not a number of seconds") from None
    if not 0 <= value <= 60:
        raise PushConfigError("settings", key, "must be between 0 and 60 seconds")
    return value
