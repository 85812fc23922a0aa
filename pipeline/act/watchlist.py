"""Publish the network part of the blocklist as the Sentinel watchlist ``MdeBlockedResources``.

The analytics rule on ``DeviceNetworkEvents`` reads the watchlist with ``_GetWatchlist`` to know
which names and addresses the tenant blocks (``docs/detections.md``). The content is the
``sentinel-watchlist`` CSV of the block and warn lists together
(``pipeline.act.blocklist.formats.watchlist``).

The Watchlists REST API of the management plane
(https://learn.microsoft.com/rest/api/securityinsights/watchlists/create-or-update, api-version
2023-02-01) creates a watchlist and its items with one PUT whose ``rawContent`` is the CSV. On a
watchlist that already exists, the same PUT *adds* the rows: items whose every column matches a
row are kept once, but an item missing from the new CSV is not removed
(https://learn.microsoft.com/azure/sentinel/watchlists-manage#bulk-update-a-watchlist). A plain
PUT would therefore keep blocking, in the rule's eyes, every indicator ever deleted. So one
publication is:

1. list the items the watchlist holds (``GET .../watchlistItems``, following ``nextLink``);
2. delete each item whose row is no longer wanted (``DELETE .../watchlistItems/{id}``), or, when
   there are more of those than ``max_item_deletes``, delete the whole watchlist, as the
   documentation advises for many deletions;
3. PUT the full CSV, which adds what is new and leaves matching items as they are.

Deleting before the PUT means that when the service stores a value slightly differently from
how it was sent, the PUT puts the row back; the rule never loses a wanted row. Running it twice
changes nothing the second time. ``rawContent`` is meant for content below 3.8 MB (larger lists
need a SAS URI to a blob, which this module does not do): a larger CSV raises
:class:`WatchlistTooLargeError` before anything is sent, rather than publishing a truncated list.

Errors::

    WatchlistError               the publication could not finish; names the alias and the call
    ├── WatchlistConfigError     a setting is missing or malformed (names the setting)
    ├── WatchlistTooLargeError   the CSV is above the rawContent limit (says both sizes)
    ├── WatchlistAuthError       no token could be had, or the service answered 401/403
    ├── WatchlistApiError        another error status, with the Azure error code and message
    ├── WatchlistTransportError  no complete answer (timeout, refused connection) after retries
    └── WatchlistResponseError   a 2xx answer that cannot be used (not JSON, foreign nextLink)

An item that cannot be deleted (an error status other than 401/403/429/5xx) does not stop the
publication: it is listed in ``WatchlistResult.failed_deletes`` and the CSV is still sent.
"""

from __future__ import annotations

import csv
import dataclasses
import email.utils
import hashlib
import io
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal
from urllib.parse import quote, urlsplit

import httpx
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError

from pipeline.act.blocklist import Blocklists, Omission
from pipeline.act.blocklist.formats.watchlist import COLUMNS, SEARCH_KEY, render_watchlist_lists

__all__ = [
    "API_VERSION",
    "DEFAULT_ALIAS",
    "MAX_RAW_CONTENT_BYTES",
    "WatchlistApiError",
    "WatchlistAuthError",
    "WatchlistConfigError",
    "WatchlistError",
    "WatchlistRequest",
    "WatchlistResponseError",
    "WatchlistResult",
    "WatchlistSettings",
    "WatchlistTooLargeError",
    "WatchlistTransportError",
    "publish_watchlist",
]

log = logging.getLogger(__name__)

API_VERSION: Final = "2023-02-01"
DEFAULT_ALIAS: Final = "MdeBlockedResources"
MANAGEMENT_URL: Final = "https://management.azure.com"
MANAGEMENT_SCOPE: Final = "https://management.azure.com/.default"
# The documented ceiling for rawContent is 3.8 MB; counted here in decimal megabytes of UTF-8,
# the stricter reading, so a list near the edge is refused here rather than by the service.
MAX_RAW_CONTENT_BYTES: Final = 3_800_000

DEFAULT_TIMEOUT: Final = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=10.0)

_WORKSPACE_ID: Final = re.compile(
    r"/subscriptions/[0-9A-Za-z-]+/resourceGroups/[-\w.()]+"
    r"/providers/Microsoft\.OperationalInsights/workspaces/[-\w]+",
    re.IGNORECASE,
)
# Sentinel takes 3 to 64 characters, starting and ending with a letter or digit; spaces, which it
# also allows, are left out here because the alias is a URL path segment and a KQL string.
_ALIAS: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{1,62})[A-Za-z0-9]")
_ITEM_ID: Final = re.compile(r"[A-Za-z0-9-]{1,64}")
_REQUEST_ID_HEADERS: Final = ("x-ms-request-id", "x-ms-correlation-request-id")
_MAX_PAGES: Final = 10_000

Mode = Literal["created", "updated", "recreated", "dry-run", "not-configured"]
Sleep = Callable[[float], None]


# -- errors ----------------------------------------------------------------------------------------


class WatchlistError(Exception):
    """The publication could not finish; ``call`` is e.g. ``PUT watchlists/MdeBlockedResources``."""

    def __init__(self, alias: str, call: str, message: str) -> None:
        super().__init__(f"watchlist {alias}: {call}: {message}")
        self.alias = alias
        self.call = call
        self.message = message


class WatchlistConfigError(WatchlistError):
    """A setting is missing or malformed; ``call`` names the setting."""


class WatchlistTooLargeError(WatchlistError):
    """The CSV is larger than ``rawContent`` takes."""

    def __init__(self, alias: str, size: int, limit: int) -> None:
        super().__init__(
            alias,
            "rawContent",
            f"the CSV is {size} bytes and rawContent takes at most {limit}; nothing was sent "
            "(a list this large needs the SAS URI upload, which is not implemented)",
        )
        self.size = size
        self.limit = limit


class WatchlistAuthError(WatchlistError):
    """No token could be obtained, or the service answered 401 or 403."""

    def __init__(self, alias: str, call: str, message: str, status: int | None = None) -> None:
        super().__init__(alias, call, message)
        self.status = status


class WatchlistApiError(WatchlistError):
    """An error status, with the Azure error code when the body carried one."""

    def __init__(self, alias: str, call: str, status: int, code: str | None, detail: str) -> None:
        super().__init__(alias, call, f"HTTP {status} {code or '-'}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


class WatchlistTransportError(WatchlistError):
    """No complete answer (timeout, refused or broken connection) after the retries."""


class WatchlistResponseError(WatchlistError):
    """A successful status whose body or links cannot be used."""


# -- settings and result ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WatchlistSettings:
    """Where the watchlist goes. An empty workspace id means "not configured": nothing is sent."""

    workspace_resource_id: str | None
    alias: str = DEFAULT_ALIAS
    display_name: str = "MDE blocked resources"
    description: str = (
        "Blocked domains and IP addresses from Microsoft Defender for Endpoint indicators and "
        "unsanctioned Defender for Cloud Apps apps, published by the MDE coverage pipeline."
    )
    provider: str = "MDE coverage pipeline"
    dry_run: bool = False
    management_url: str = MANAGEMENT_URL
    token_scope: str = MANAGEMENT_SCOPE
    max_item_deletes: int = 500
    max_bytes: int = MAX_RAW_CONTENT_BYTES
    timeout: httpx.Timeout = field(default_factory=lambda: DEFAULT_TIMEOUT)
    attempts: int = 3  # tries for 5xx answers, timeouts and broken connections
    throttle_attempts: int = 5  # tries while the service answers 429
    max_retry_after: float = 120.0  # a longer wait is reported, not obeyed

    def __post_init__(self) -> None:
        if self.workspace_resource_id and not _WORKSPACE_ID.fullmatch(self.workspace_resource_id):
            raise WatchlistConfigError(
                self.alias,
                "SENTINEL_WORKSPACE_RESOURCE_ID",
                "must be /subscriptions/<id>/resourceGroups/<group>/providers/"
                f"Microsoft.OperationalInsights/workspaces/<name>, got "
                f"{self.workspace_resource_id!r}",
            )
        if not _ALIAS.fullmatch(self.alias):
            raise WatchlistConfigError(
                self.alias,
                "WATCHLIST_ALIAS",
                "must be 3 to 64 letters, digits, '_' or '-', starting and ending with a letter "
                f"or digit, got {self.alias!r}",
            )
        parts = urlsplit(self.management_url)
        local = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
        if parts.scheme != "https" and not local:
            raise WatchlistConfigError(
                self.alias,
                "management_url",
                f"must be https (plain http only on this machine), got {self.management_url!r}",
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, dry_run: bool = False) -> WatchlistSettings:
        """``SENTINEL_WORKSPACE_RESOURCE_ID`` and ``WATCHLIST_ALIAS``; both may be empty."""
        workspace = env.get("SENTINEL_WORKSPACE_RESOURCE_ID", "").strip().rstrip("/")
        alias = env.get("WATCHLIST_ALIAS", "").strip() or DEFAULT_ALIAS
        return cls(workspace_resource_id=workspace or None, alias=alias, dry_run=dry_run)

    @property
    def configured(self) -> bool:
        return bool(self.workspace_resource_id)

    @property
    def watchlist_path(self) -> str:
        return (
            f"{self.workspace_resource_id}/providers/Microsoft.SecurityInsights/watchlists/"
            f"{quote(self.alias, safe='')}"
        )


@dataclass(frozen=True, slots=True)
class WatchlistRequest:
    """One call made (or, in a dry run, planned: ``status`` is None)."""

    method: str
    path: str
    status: int | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class FailedDelete:
    """An item that could not be deleted; the rule may keep matching it until the next run."""

    item_id: str
    value: str
    error: str


@dataclass(frozen=True)
class WatchlistResult:
    """What one publication did. ``content`` is the CSV sent (or, in a dry run, to be sent)."""

    alias: str
    mode: Mode
    dry_run: bool
    rows: int
    content: str
    sha256: str
    added: int = 0  # rows the watchlist did not hold before
    removed: int = 0  # items deleted because their row is no longer wanted
    not_representable: tuple[Omission, ...] = ()
    failed_deletes: tuple[FailedDelete, ...] = ()
    requests: tuple[WatchlistRequest, ...] = ()
    upload_status: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def size_bytes(self) -> int:
        return len(self.content.encode("utf-8"))

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)

    def as_dict(self) -> dict[str, object]:
        """A summary for the audit trail and the cycle report (no CSV, no token)."""
        return {
            "alias": self.alias,
            "mode": self.mode,
            "dryRun": self.dry_run,
            "rows": self.rows,
            "sizeBytes": self.size_bytes,
            "sha256": self.sha256,
            "added": self.added,
            "removed": self.removed,
            "notRepresentable": len(self.not_representable),
            "failedDeletes": [
                {"itemId": f.item_id, "value": f.value, "error": f.error}
                for f in self.failed_deletes
            ],
            "requests": [
                {"method": r.method, "path": r.path, "status": r.status, "requestId": r.request_id}
                for r in self.requests
            ],
            "uploadStatus": self.upload_status,
            "notes": list(self.notes),
        }


# -- the entry point -------------------------------------------------------------------------------


def publish_watchlist(
    blocklists: Blocklists,
    settings: WatchlistSettings,
    credential: TokenCredential | None,
    *,
    client: httpx.Client | None = None,
    sleep: Sleep = time.sleep,
) -> WatchlistResult:
    """Make the watchlist hold exactly the rows of ``blocklists``' block and warn lists.

    ``credential`` gets tokens for the management plane (it is not used in a dry run or when
    the workspace is not configured). ``client`` is for callers that share one
    ``httpx.Client``; by default one is opened and closed here.
    """
    rendered = render_watchlist_lists(blocklists)
    content = rendered.content
    rows = len(rendered.entries)
    base = WatchlistResult(
        alias=settings.alias,
        mode="not-configured",
        dry_run=settings.dry_run,
        rows=rows,
        content=content,
        sha256=hashlib.sha256(content.encode("utf-8")).hexdigest(),
        not_representable=rendered.not_representable,
    )

    if not settings.configured:
        log.info(
            "watchlist %s: SENTINEL_WORKSPACE_RESOURCE_ID is not set; not published", settings.alias
        )
        return _replace(base, notes=("SENTINEL_WORKSPACE_RESOURCE_ID is not set",))

    size = base.size_bytes
    if size > settings.max_bytes:
        raise WatchlistTooLargeError(settings.alias, size, settings.max_bytes)

    if settings.dry_run:
        log.info("watchlist %s: dry run, %d rows (%d bytes) not sent", settings.alias, rows, size)
        planned = WatchlistRequest("PUT", _short(settings.watchlist_path, settings))
        return _replace(
            base,
            mode="dry-run",
            requests=(planned,),
            notes=("dry run: nothing was sent and the watchlist's items were not read",),
        )

    if credential is None:
        raise WatchlistConfigError(settings.alias, "credential", "a live publication needs one")

    owned = client is None
    session = _Session(
        settings, credential, client or httpx.Client(timeout=settings.timeout), sleep
    )
    try:
        return session.publish(base)
    finally:
        if owned:
            session.close()


# -- the calls -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Item:
    item_id: str
    row: tuple[str, ...]


class _Session:
    """The calls of one publication: token, timeouts, bounded retries, typed errors."""

    def __init__(
        self,
        settings: WatchlistSettings,
        credential: TokenCredential,
        client: httpx.Client,
        sleep: Sleep,
    ) -> None:
        self.settings = settings
        self.alias = settings.alias
        self._credential = credential
        self._client = client
        self._sleep = sleep
        self._token: str | None = None
        self.requests: list[WatchlistRequest] = []

    def close(self) -> None:
        self._client.close()

    def publish(self, base: WatchlistResult) -> WatchlistResult:
        started = time.monotonic()
        wanted = {_row_key(row) for row in _csv_rows(base.content)}

        existing = self._items()
        exists = existing is not None
        held = existing or []
        stale = [item for item in held if _row_key(item.row) not in wanted]
        held_rows = {_row_key(item.row) for item in held}
        added = sum(1 for row in wanted if row not in held_rows)

        mode: Mode = "created" if not exists else "updated"
        failed: list[FailedDelete] = []
        removed = 0
        if len(stale) > self.settings.max_item_deletes:
            # Many single deletes would be slow and eat the subscription's write budget; the
            # documentation's advice for many deletions is to delete and recreate the watchlist.
            self._delete_watchlist()
            mode, removed, added = "recreated", len(stale), len(wanted)
        else:
            for item in stale:
                error = self._delete_item(item)
                if error is None:
                    removed += 1
                else:
                    failed.append(FailedDelete(item.item_id, item.row[0], error))

        upload_status = self._put(base.content)
        log.info(
            "watchlist %s: %s, %d rows (%d bytes), %d added, %d removed, %d not deleted, "
            "%d calls in %.1f s",
            self.alias,
            mode,
            base.rows,
            base.size_bytes,
            added,
            removed,
            len(failed),
            len(self.requests),
            time.monotonic() - started,
        )
        return _replace(
            base,
            mode=mode,
            added=added,
            removed=removed,
            failed_deletes=tuple(failed),
            requests=tuple(self.requests),
            upload_status=upload_status,
        )

    # -- the four calls ---------------------------------------------------------------------------

    def _items(self) -> list[_Item] | None:
        """The watchlist's items, or None when the watchlist does not exist."""
        url: str | None = self._url(f"{self.settings.watchlist_path}/watchlistItems")
        items: list[_Item] = []

        for _ in range(_MAX_PAGES):
            if url is None:
                return items
            answer = self._call("GET", url, allow={404})
            if answer.status_code == 404:
                return None
            page = self._json(answer, "GET watchlistItems")
            items.extend(self._parse_items(page))
            next_link = page.get("nextLink")
            url = self._checked_link(next_link) if next_link else None
        raise WatchlistResponseError(
            self.alias, "GET watchlistItems", f"more than {_MAX_PAGES} pages; stopped"
        )

    def _delete_item(self, item: _Item) -> str | None:
        """Delete one item; the error text when the service refused it for this item alone."""
        path = f"{self.settings.watchlist_path}/watchlistItems/{quote(item.item_id, safe='')}"
        try:
            self._call("DELETE", self._url(path), allow={404})
        except WatchlistApiError as error:
            log.warning("watchlist %s: item %s not deleted: %s", self.alias, item.item_id, error)
            return str(error)
        return None

    def _delete_watchlist(self) -> None:
        self._call("DELETE", self._url(self.settings.watchlist_path), allow={404})

    def _put(self, content: str) -> str | None:
        settings = self.settings
        # The 2023-02-01 contract: displayName, source, provider and itemsSearchKey are required.
        # It has no sourceType (later preview versions add one, "Local" or "AzureStorage"), so
        # none is sent; "Local file" in source is what marks inline rawContent.
        body = {
            "properties": {
                "displayName": settings.display_name,
                "description": settings.description,
                "provider": settings.provider,
                "source": "Local file",
                "itemsSearchKey": SEARCH_KEY,
                "contentType": "text/csv",
                "numberOfLinesToSkip": 0,
                "rawContent": content,
            }
        }
        answer = self._call("PUT", self._url(settings.watchlist_path), json=body)
        document = self._json(answer, "PUT watchlist")
        properties = document.get("properties")
        status = properties.get("uploadStatus") if isinstance(properties, dict) else None
        return status if isinstance(status, str) else None

    # -- HTTP discipline --------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        allow: frozenset[int] | set[int] = frozenset(),
    ) -> httpx.Response:
        call = f"{method} {_short(urlsplit(url).path, self.settings)}"
        failures = throttled = 0

        while True:
            try:
                answer = self._client.request(
                    method,
                    url,
                    json=json,
                    headers={"Authorization": f"Bearer {self._bearer(call)}"},
                )
            except httpx.TransportError as error:
                failures += 1
                if failures >= self.settings.attempts:
                    raise WatchlistTransportError(
                        self.alias, call, f"{type(error).__name__} after {failures} tries"
                    ) from None
                self._sleep(_backoff(failures))
                continue

            request_id = next(
                (answer.headers[h] for h in _REQUEST_ID_HEADERS if h in answer.headers), None
            )
            self.requests.append(
                WatchlistRequest(
                    method,
                    _short(urlsplit(url).path, self.settings),
                    answer.status_code,
                    request_id,
                )
            )
            status = answer.status_code

            if status < 400 or status in allow:
                return answer
            if status == 429:
                throttled += 1
                wait = _retry_after(answer)
                if (
                    throttled >= self.settings.throttle_attempts
                    or wait > self.settings.max_retry_after
                ):
                    raise WatchlistApiError(
                        self.alias,
                        call,
                        429,
                        _error_code(answer),
                        f"still throttled; {_error_message(answer)}",
                    )
                self._sleep(wait)
                continue
            if status >= 500:
                failures += 1
                if failures < self.settings.attempts:
                    self._sleep(_backoff(failures))
                    continue
            if status in (401, 403):
                raise WatchlistAuthError(
                    self.alias,
                    call,
                    f"HTTP {status} {_error_code(answer) or '-'}: {_error_message(answer)}",
                    status,
                )
            raise WatchlistApiError(
                self.alias, call, status, _error_code(answer), _error_message(answer)
            )

    def _bearer(self, call: str) -> str:
        if self._token is None:
            try:
                self._token = self._credential.get_token(self.settings.token_scope).token
            except AzureError as error:
                # Every credential failure of azure-identity is an AzureError; its message says
                # which credential failed and why, and holds no secret.
                raise WatchlistAuthError(
                    self.alias, call, f"no token for {self.settings.token_scope}: {error}"
                ) from None
        return self._token

    def _url(self, path: str) -> str:
        return f"{self.settings.management_url.rstrip('/')}{path}?api-version={API_VERSION}"

    def _checked_link(self, link: object) -> str:
        # The token goes with every call, so a nextLink may only point back at the same host.
        base = urlsplit(self.settings.management_url)
        parts = urlsplit(str(link))
        if not isinstance(link, str) or (parts.scheme, parts.netloc) != (base.scheme, base.netloc):
            raise WatchlistResponseError(
                self.alias,
                "GET watchlistItems",
                f"nextLink {str(link)[:80]!r} leaves {base.netloc}",
            )
        return link

    def _json(self, answer: httpx.Response, call: str) -> dict[str, Any]:
        try:
            document = answer.json()
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise WatchlistResponseError(
                self.alias, call, f"HTTP {answer.status_code} without a JSON object body"
            )
        return document

    def _parse_items(self, page: Mapping[str, Any]) -> Iterator[_Item]:
        values = page.get("value")
        if not isinstance(values, list):
            raise WatchlistResponseError(self.alias, "GET watchlistItems", "no 'value' list")

        for position, raw in enumerate(values):
            properties = raw.get("properties") if isinstance(raw, dict) else None
            if not isinstance(properties, dict):
                raise WatchlistResponseError(
                    self.alias, "GET watchlistItems", f"item {position} has no properties"
                )
            item_id = properties.get("watchlistItemId") or raw.get("name")
            if not isinstance(item_id, str) or not _ITEM_ID.fullmatch(item_id):
                raise WatchlistResponseError(
                    self.alias,
                    "GET watchlistItems",
                    f"item {position} has no usable watchlistItemId: {str(item_id)[:80]!r}",
                )
            columns = properties.get("itemsKeyValue")
            if not isinstance(columns, dict):
                columns = {}
            yield _Item(item_id, tuple(str(columns.get(name) or "") for name in COLUMNS))


# -- helpers ---------------------------------------------------------------------------------------


def _csv_rows(content: str) -> Iterator[tuple[str, ...]]:
    reader = csv.reader(io.StringIO(content, newline=""))
    next(reader, None)  # the header
    for row in reader:
        yield tuple(row)


def _row_key(row: tuple[str, ...]) -> tuple[str, ...]:
    # The service hands every column back as a string; surrounding spaces are not compared, so
    # a value it trims is not taken for a different row.
    return tuple(cell.strip() for cell in row)


def _short(path: str, settings: WatchlistSettings) -> str:
    """The part of a path after the workspace id, which is what a log line needs."""
    workspace = settings.workspace_resource_id or ""
    prefix = f"{workspace}/providers/Microsoft.SecurityInsights/"
    return path[len(prefix) :] if workspace and path.lower().startswith(prefix.lower()) else path


def _retry_after(answer: httpx.Response) -> float:
    raw = answer.headers.get("retry-after", "").strip()
    if not raw:
        return 5.0
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return 5.0
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _backoff(failures: int) -> float:
    return float(min(30, 2 ** (failures - 1)))


def _error_body(answer: httpx.Response) -> Mapping[str, Any]:
    try:
        document = answer.json()
    except ValueError:
        return {}
    error = document.get("error") if isinstance(document, dict) else None
    return error if isinstance(error, dict) else {}


def _error_code(answer: httpx.Response) -> str | None:
    code = _error_body(answer).get("code")
    return str(code)[:100] if code else None


def _error_message(answer: httpx.Response) -> str:
    message = _error_body(answer).get("message")
    if message:
        return str(message)[:500]
    return answer.text[:200] or answer.reason_phrase


def _replace(result: WatchlistResult, **changes: Any) -> WatchlistResult:
    return dataclasses.replace(result, **changes)
