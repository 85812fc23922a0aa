"""The one HTTP client behind every Defender for Endpoint and Graph call.

It adds to ``httpx`` what Microsoft's APIs need from a careful caller:

* a client-side budget per endpoint that keeps under the documented call rates (for example
  ``/api/deviceavinfo``: 30 calls a minute and 1,000 an hour), so the API rarely has to say 429;
* ``Retry-After`` honoured on 429, bounded retries with jittered back-off on 5xx, timeouts, broken
  connections and bodies cut short;
* one token refresh when the API answers 401 (the token expired while a long run was going);
* explicit timeouts on every call;
* OData collections read page by page as a stream: records are handed over one at a time while
  the page is still arriving, so a 200,000-device page is never held as text and as dicts at once;
* typed errors (:mod:`pipeline.sources.errors`) naming the endpoint, status and Microsoft's code.

The clock, the sleep and the jitter's random source are injectable so tests can run an hour of
rate limiting without waiting for it.
"""

from __future__ import annotations

import bisect
import codecs
import email.utils
import json
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from pipeline.sources.auth import TokenProvider
from pipeline.sources.errors import (
    ApiError,
    MalformedResponseError,
    PagingLoopError,
    RateLimitedError,
    ResponseError,
    TransportError,
)

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class Limit:
    """At most ``calls`` calls in any window of ``per_seconds`` seconds."""

    calls: int
    per_seconds: float


# Documented per-application limits. Sources (learn.microsoft.com/defender-endpoint/api/...):
# get-machines, device-health-export-antivirus-health-report-api, get-ti-indicators-collection,
# run-advanced-query-api, add-or-remove-machine-tags. Graph's runHuntingQuery documents no limit;
# the Defender XDR hunting API's 45 calls a minute is the closest published figure.
DOCUMENTED_LIMITS: Mapping[str, tuple[Limit, ...]] = {
    "machines": (Limit(100, 60), Limit(1500, 3600)),
    "deviceavinfo": (Limit(30, 60), Limit(1000, 3600)),
    "indicators": (Limit(100, 60), Limit(1500, 3600)),
    "advancedqueries": (Limit(45, 60), Limit(1500, 3600)),
    "machine-tags": (Limit(100, 60), Limit(1500, 3600)),
    "hunting": (Limit(45, 60),),
}

DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=120.0, write=30.0, pool=10.0)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # tries per call for 5xx, timeouts and broken bodies (the first one counts)
    throttle_attempts: int = 6  # tries per call while the API keeps answering 429
    backoff_base: float = 1.0  # seconds; doubled each attempt, then a random fraction is used
    backoff_cap: float = 30.0
    default_retry_after: float = 30.0  # when a 429 carries no usable Retry-After
    max_retry_after: float = 3600.0  # a longer demand is reported, not obeyed

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: spreads retries of parallel callers instead of synchronising them."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        return rng.uniform(ceiling / 10, ceiling)


class RateBudget:
    """Sliding-window budget for one endpoint; ``acquire`` waits until a call is allowed."""

    def __init__(self, name: str, limits: Sequence[Limit], clock: Clock, sleep: Sleep) -> None:
        self.name = name
        self._limits = tuple(limits)
        self._clock = clock
        self._sleep = sleep
        self._horizon = max((limit.per_seconds for limit in self._limits), default=0.0)
        self._calls: list[float] = []  # send times, oldest first, trimmed to the longest window
        self.waited = 0.0  # total seconds spent waiting for this budget

    def acquire(self) -> None:
        while True:
            now = self._clock()
            wait = self._wait_needed(now)
            if wait <= 0:
                self._calls.append(now)
                return
            log.info("rate budget %s: waiting %.1f s before the next call", self.name, wait)
            self.waited += wait
            self._sleep(wait)

    def _wait_needed(self, now: float) -> float:
        del self._calls[: bisect.bisect_right(self._calls, now - self._horizon)]
        wait = 0.0
        for limit in self._limits:
            first_in_window = bisect.bisect_right(self._calls, now - limit.per_seconds)
            in_window = len(self._calls) - first_in_window
            if in_window >= limit.calls:
                # The call that must leave the window before another one fits.
                leaving = self._calls[len(self._calls) - limit.calls]
                wait = max(wait, leaving + limit.per_seconds - now)
        return wait


class ApiClient:
    """HTTP access to one API (MDE or Graph) at ``base_url`` with one token provider."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenProvider,
        *,
        http: httpx.Client | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        limits: Mapping[str, Sequence[Limit]] = DOCUMENTED_LIMITS,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._tokens = tokens
        self._http = http or httpx.Client(timeout=timeout, follow_redirects=False)
        self._retry = retry or RetryPolicy()
        self._limits = limits
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrecy
        self._budgets: dict[str, RateBudget] = {}
        self.calls: Counter[str] = Counter()  # requests sent, per budget name
        self.retries: Counter[str] = Counter()  # of which were retries

    def add_response_hook(self, hook: Callable[[httpx.Response], None]) -> None:
        """Call ``hook`` with every response this client receives, retries included (once,
        however often the same hook is added). It runs before the body is read."""
        hooks = self._http.event_hooks
        responses = list(hooks.get("response", []))
        if hook not in responses:
            self._http.event_hooks = {**hooks, "response": [*responses, hook]}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def budget(self, name: str) -> RateBudget:
        if name not in self._budgets:
            limits = self._limits.get(name, ())
            self._budgets[name] = RateBudget(name, limits, self._clock, self._sleep)
        return self._budgets[name]

    def request_json(
        self,
        budget: str,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        accept_error: Callable[[ApiError], bool] | None = None,
    ) -> tuple[int, Any]:
        """Send one call and return (status, parsed JSON body or None when the body is empty).

        ``accept_error`` lets a caller turn a documented error answer into a result, e.g. Graph's
        400 "already exist" when adding a group member that is already there.
        """
        url = path_or_url if "://" in path_or_url else self.url(path_or_url)
        endpoint = _endpoint(method, url)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._send(budget, method, url, params=params, body=body)
            except ApiError as exc:
                if accept_error is not None and accept_error(exc):
                    return exc.status, None
                raise
            try:
                content = response.read()
            except httpx.HTTPError as exc:
                response.close()
                if attempt >= self._retry.attempts:
                    raise TransportError(endpoint, f"body not received: {exc!r}") from exc
                self._pause_before_retry(budget, endpoint, attempt, f"{type(exc).__name__}")
                continue
            finally:
                response.close()

            if not content.strip():
                return response.status_code, None
            try:
                return response.status_code, json.loads(content)
            except ValueError as exc:
                if attempt >= self._retry.attempts:
                    raise MalformedResponseError(endpoint, f"body is not JSON: {exc}") from exc
                self._pause_before_retry(budget, endpoint, attempt, "body is not JSON")

    def iter_collection(
        self,
        budget: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        page_size: int | None = None,
        skip_paging: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[Any]:
        """Yield every record of an OData collection, following ``@odata.nextLink``.

        With ``skip_paging``, a full page (``$top`` records) without a next link is followed by a
        ``$skip`` request: Microsoft documents ``$top``/``$skip`` paging for machines and
        indicators without saying whether those APIs also emit next links.
        """
        url = self.url(path)
        query = dict(params or {})
        if page_size is not None:
            query["$top"] = str(page_size)
        followed: set[str] = set()
        previous_first: str | None = None
        total = skipped = 0
        by_link = False  # once the server pages by next link, a page without one is the last

        while True:
            page_key = str(httpx.URL(url).copy_merge_params(query))
            if page_key in followed:
                raise PagingLoopError(_endpoint("GET", url), f"next link repeats: {page_key}")
            followed.add(page_key)

            page = _PageResult()
            first_key: str | None = None
            for record in self._stream_page(budget, url, query, page):
                if first_key is None:
                    first_key = _record_key(record)
                    if first_key == previous_first:
                        # Checked before handing anything over, so no record is written twice.
                        raise PagingLoopError(
                            _endpoint("GET", url), "the server returned the same page twice"
                        )
                total += 1
                yield record
            if progress is not None:
                progress(total)
            previous_first = first_key

            next_link = page.properties.get("@odata.nextLink")
            if isinstance(next_link, str) and next_link:
                self._check_same_service(url, next_link)
                url, query, by_link = next_link, {}, True
            elif skip_paging and not by_link and 0 < (page_size or 0) <= page.count:
                skipped += page.count
                query = {**query, "$skip": str(skipped)}
            else:
                return

    def _stream_page(
        self, budget: str, url: str, query: Mapping[str, str], page: _PageResult
    ) -> Iterator[Any]:
        """Yield one page's records; a page broken part way is fetched again and resumed."""
        endpoint = _endpoint("GET", url)
        attempt = 0
        while True:
            attempt += 1
            response = self._send(budget, "GET", url, params=query or None)
            parser = ODataPageParser(response.iter_bytes(), endpoint)
            index = 0
            try:
                for record in parser.records():
                    index += 1
                    if index < page.count:
                        continue
                    if index == page.count:
                        # Resuming after a retry: the last record handed over must be the same.
                        if _record_key(record) != page.last_key:
                            raise ResponseError(endpoint, "the page changed between retries")
                        continue
                    page.count, page.last_key = index, _record_key(record)
                    yield record
                page.properties = parser.properties
                return
            except (MalformedResponseError, httpx.HTTPError) as exc:
                if attempt >= self._retry.attempts:
                    if isinstance(exc, httpx.HTTPError):
                        raise TransportError(endpoint, f"page body broke off: {exc!r}") from exc
                    raise
                reason = exc.message if isinstance(exc, MalformedResponseError) else repr(exc)
                self._pause_before_retry(budget, endpoint, attempt, reason)
            finally:
                response.close()

    def _send(
        self,
        budget: str,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> httpx.Response:
        """Send until a 2xx/3xx arrives (returned unread) or the retry policy gives up."""
        endpoint = _endpoint(method, url)
        attempt = throttled = 0
        token_refreshed = False
        while True:
            attempt += 1
            self.budget(budget).acquire()
            headers = {"Authorization": f"Bearer {self._tokens.token()}"}
            request = self._http.build_request(
                method, url, params=params, json=body, headers=headers
            )
            self.calls[budget] += 1
            started = self._clock()
            try:
                response = self._http.send(request, stream=True)
            except httpx.HTTPError as exc:
                if attempt >= self._retry.attempts:
                    raise TransportError(endpoint, f"no answer: {exc!r}") from exc
                self._pause_before_retry(budget, endpoint, attempt, type(exc).__name__)
                continue

            log.info("%s -> %s in %.2f s", endpoint, response.status_code, self._clock() - started)
            if response.status_code < 400:
                return response

            error = _api_error(endpoint, response)
            if error.status == 401 and not token_refreshed:
                # Tokens live about an hour; a long run outlives one. Ask for a new one once.
                token_refreshed = True
                self._tokens.invalidate()
                attempt -= 1
                continue
            if error.status == 429:
                throttled += 1
                wait = _retry_after(response, self._retry.default_retry_after)
                if throttled >= self._retry.throttle_attempts or wait > self._retry.max_retry_after:
                    raise RateLimitedError(endpoint, error.message, wait) from error
                log.warning(
                    "%s throttled (429); waiting %.0f s as Retry-After asks", endpoint, wait
                )
                self.retries[budget] += 1
                self._sleep(wait)
                attempt -= 1
                continue
            if error.status >= 500 and attempt < self._retry.attempts:
                self._pause_before_retry(budget, endpoint, attempt, f"HTTP {error.status}")
                continue
            raise error

    def _pause_before_retry(self, budget: str, endpoint: str, attempt: int, reason: str) -> None:
        wait = self._retry.backoff(attempt, self._rng)
        log.warning("%s failed (%s); retry %d in %.1f s", endpoint, reason, attempt, wait)
        self.retries[budget] += 1
        self._sleep(wait)

    def _check_same_service(self, current: str, next_link: str) -> None:
        """Refuse to send our token to a host other than the API's (a forged next link)."""
        here, there = urlsplit(current), urlsplit(next_link)
        same_origin = (here.scheme, here.netloc) == (there.scheme, there.netloc)
        both_microsoft = all(
            (host or "").endswith(".microsoft.com") for host in (here.hostname, there.hostname)
        )
        if not (same_origin or (both_microsoft and there.scheme == "https")):
            raise ResponseError(
                _endpoint("GET", current), f"next link leaves the service: {there.netloc}"
            )


class _PageResult:
    """What is known about the page being read: records handed over so far, and its properties."""

    def __init__(self) -> None:
        self.count = 0
        self.last_key: str | None = None
        self.properties: dict[str, Any] = {}


def _record_key(record: Any) -> str:
    if isinstance(record, dict):
        for name in ("id", "machineId", "DeviceId"):
            if name in record:
                return str(record[name])
    return json.dumps(record, sort_keys=True)[:200]


def _endpoint(method: str, url: str) -> str:
    return f"{method} {urlsplit(url).path}"


def _api_error(endpoint: str, response: httpx.Response) -> ApiError:
    """Read Microsoft's error body: {"error": {"code", "message", "target"}}."""
    try:
        content = response.read()
    except httpx.HTTPError:
        content = b""
    finally:
        response.close()

    code: str | None = None
    message = response.reason_phrase or "error"
    target: str | None = None
    try:
        body = json.loads(content) if content.strip() else None
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = error.get("code") if isinstance(error.get("code"), str) else None
        message = str(error.get("message") or message)
        target = error.get("target") if isinstance(error.get("target"), str) else None
    elif isinstance(error, str) and isinstance(body, dict):  # OAuth style {"error": "..."}
        code = error
        message = str(body.get("error_description", message))
    return ApiError(endpoint, response.status_code, code, message[:500], target)


def _retry_after(response: httpx.Response, default: float) -> float:
    """Retry-After is seconds in Microsoft's APIs, but HTTP also allows a date."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, when.timestamp() - time.time())


_WHITESPACE = re.compile(r"[ \t\n\r]*")
_decode = json.JSONDecoder().raw_decode


class ODataPageParser:
    """Reads one OData page ``{"...": ..., "value": [records], ...}`` as bytes arrive.

    ``records()`` yields each element of ``value`` as soon as it is complete; the page's other
    properties (``@odata.context``, ``@odata.nextLink``, ...) are in ``properties`` afterwards,
    whichever side of ``value`` the server put them. Only the record being decoded and one
    network chunk are held as text at any time.
    """

    def __init__(self, chunks: Iterable[bytes], endpoint: str) -> None:
        self._chunks = iter(chunks)
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._endpoint = endpoint
        self._text = ""
        self._pos = 0
        self._eof = False
        self.properties: dict[str, Any] = {}

    def records(self) -> Iterator[Any]:
        self._expect("{")
        if self._peek() == "}":
            self._pos += 1
        else:
            while True:
                key = self._value()
                if not isinstance(key, str):
                    raise self._malformed("a property name is not a string")
                self._expect(":")
                if key == "value":
                    yield from self._array()
                else:
                    self.properties[key] = self._value()
                separator = self._next_char()
                if separator == "}":
                    break
                if separator != ",":
                    raise self._malformed(f"expected ',' or '}}', found {separator!r}")
        if self._peek() is not None:
            raise self._malformed("text after the end of the page")

    def _array(self) -> Iterator[Any]:
        self._expect("[")
        if self._peek() == "]":
            self._pos += 1
            return
        while True:
            yield self._value()
            separator = self._next_char()
            if separator == "]":
                return
            if separator != ",":
                raise self._malformed(f"expected ',' or ']' in value, found {separator!r}")

    def _value(self) -> Any:
        self._skip_whitespace()
        while True:
            try:
                value, end = _decode(self._text, self._pos)
            except json.JSONDecodeError as exc:
                if self._read_more():
                    continue
                raise self._malformed(f"JSON stops part way ({exc.msg})") from exc
            # A number at the very end of what arrived may still be growing ("12" of "1234").
            if end >= len(self._text) and not self._eof and self._read_more():
                continue
            self._pos = end
            return value

    def _expect(self, char: str) -> None:
        found = self._next_char()
        if found != char:
            raise self._malformed(f"expected {char!r}, found {found!r}")

    def _next_char(self) -> str | None:
        char = self._peek()
        if char is None:
            raise self._malformed("JSON stops part way")
        self._pos += 1
        return char

    def _peek(self) -> str | None:
        self._skip_whitespace()
        return self._text[self._pos] if self._pos < len(self._text) else None

    def _skip_whitespace(self) -> None:
        while True:
            match = _WHITESPACE.match(self._text, self._pos)
            self._pos = match.end() if match else self._pos
            if self._pos < len(self._text) or not self._read_more():
                return

    def _read_more(self) -> bool:
        """Append the next chunk (dropping what is consumed); False at the end of the body."""
        if self._eof:
            return False
        chunk = next(self._chunks, None)
        try:
            if chunk is None:
                self._eof = True
                text = self._utf8.decode(b"", final=True)
            else:
                text = self._utf8.decode(chunk)
        except UnicodeDecodeError as exc:
            raise self._malformed(f"body is not UTF-8 ({exc.reason})") from exc
        self._text = self._text[self._pos :] + text
        self._pos = 0
        return bool(text) or chunk is not None

    def _malformed(self, what: str) -> MalformedResponseError:
        return MalformedResponseError(self._endpoint, what)
