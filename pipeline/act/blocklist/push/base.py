"""What every push target shares: the interface, the result, the errors and the HTTP discipline.

A push target keeps one list that a cloud proxy enforces (a Zscaler custom URL category, a
Netskope URL list) equal to the block list. Every target works the same way:

1. ``prepare(blocklist)`` turns the normalised entries into the values the service takes and
   reports the entries it cannot express;
2. ``push(values, previous)`` screens the values once more against the service's own syntax,
   reads the list, sends only the changes when ``previous`` (what the last push left there) is
   known and replaces the whole list otherwise, in chunks, then activates or deploys;
3. the :class:`PushResult` says what was added, removed, refused and sent, with request ids.

One bad value never stops a push: a chunk the service refuses with 400 is split in halves until
the refused values are found, and those are reported with the service's reason while the rest
is sent. Errors that concern the whole push raise one of::

    PushError                     a push that could not finish; names target and endpoint
    ├── PushConfigError           a setting is missing or malformed (names the setting)
    ├── PushAuthError             no token could be obtained, or the service refused it
    ├── PushApiError              an error status the push cannot work around (status, code)
    │   └── PushRateLimitedError  still 429 after honouring Retry-After as often as allowed
    ├── PushTransportError        no complete answer (timeout, refused connection) after retries
    └── PushResponseError         a 2xx answer that cannot be used, or a list that is not ours

A :class:`PushError` raised part way carries ``partial``: what was already sent. Changes both
services hold back until activation (Zscaler) or deployment (Netskope) are then left staged.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

import httpx

from pipeline.act.blocklist.build import Blocklist
from pipeline.act.blocklist.formats import Omission

log = logging.getLogger(__name__)

PushMode = Literal["full", "incremental"]
Clock = Callable[[], float]
Sleep = Callable[[float], None]

DEFAULT_TIMEOUT: Final = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=10.0)

# Values are screened against this alphabet before anything else: letters, digits and the
# characters normalised hosts, addresses and percent-encoded paths are made of. It leaves out
# spaces, quotes, ``#`` and ``;`` (comment characters in list uploads) and every control character.
_ALPHABET: Final = re.compile(r"[A-Za-z0-9.\-_~/!,=:@&+%?*\[\]]+")
MAX_VALUE_LENGTH: Final = 1024

# Neither service documents a request id header that we know of; whichever of these common
# correlation headers an answer carries is recorded, so an operator can quote it to support.
_REQUEST_ID_HEADERS: Final = ("x-request-id", "request-id", "x-correlation-id")


class PushError(Exception):
    """A push that could not finish. ``endpoint`` is e.g. ``PUT /api/v1/urlCategories/7``."""

    def __init__(self, target: str, endpoint: str, message: str) -> None:
        super().__init__(f"{target} {endpoint}: {message}")
        self.target = target
        self.endpoint = endpoint
        self.message = message
        self.partial: PushResult | None = None  # what was sent before the push stopped

    @property
    def status(self) -> int | None:
        return None


class PushConfigError(PushError):
    """A setting is missing or malformed; ``endpoint`` names the setting."""


class PushAuthError(PushError):
    """No token could be obtained, or the service answered 401/403."""

    def __init__(self, target: str, endpoint: str, message: str, status: int | None = None):
        super().__init__(target, endpoint, message)
        self._status = status

    @property
    def status(self) -> int | None:
        return self._status


class PushApiError(PushError):
    """An error status, with the service's error code when the body carried one."""

    def __init__(
        self, target: str, endpoint: str, status: int, code: str | None, message: str
    ) -> None:
        super().__init__(target, endpoint, f"HTTP {status} {code or '-'}: {message}")
        self._status = status
        self.code = code
        self.detail = message

    @property
    def status(self) -> int:
        return self._status


class PushRateLimitedError(PushApiError):
    """Still throttled after honouring Retry-After as often as the retry policy allows."""

    def __init__(self, target: str, endpoint: str, message: str, retry_after: float) -> None:
        super().__init__(target, endpoint, 429, "TooManyRequests", message)
        self.retry_after = retry_after


class PushTransportError(PushError):
    """The request never got a complete answer."""


class PushResponseError(PushError):
    """A 2xx answer whose body cannot be used, or a list or category the push must not touch."""


@dataclass(frozen=True, slots=True)
class Refused:
    """A value that was not sent or not accepted, and why."""

    value: str
    reason: str


@dataclass(frozen=True, slots=True)
class Prepared:
    """The values a target takes for a block list, and the entries it cannot express."""

    values: tuple[str, ...]
    not_representable: tuple[Omission, ...] = ()


@dataclass(frozen=True, slots=True)
class SentRequest:
    """One call: sent (with its status) or, in a dry run, planned (``status`` is None)."""

    method: str
    path: str
    values: tuple[str, ...] = ()
    status: int | None = None
    request_id: str | None = None

    def as_dict(self, *, with_values: bool = False) -> dict[str, object]:
        shown: dict[str, object] = {
            "method": self.method,
            "path": self.path,
            "values": len(self.values),
            "status": self.status,
            "requestId": self.request_id,
        }
        if with_values:
            shown["urls"] = list(self.values)
        return shown


@dataclass(frozen=True, slots=True)
class PushResult:
    """What a push changed.

    ``entries`` is what the list now holds of ours: keep it and pass it back as ``previous`` on
    the next push, so that only the difference is sent. ``activated`` says whether the changes
    were activated or deployed; until then both services hold them back.
    """

    target: str
    destination: str
    mode: PushMode
    dry_run: bool
    added: tuple[str, ...]
    removed: tuple[str, ...]
    entries: tuple[str, ...]
    requests: tuple[SentRequest, ...]
    rejected: tuple[Refused, ...] = ()
    activated: bool = False
    notes: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)

    @property
    def request_ids(self) -> tuple[str, ...]:
        return tuple(sent.request_id for sent in self.requests if sent.request_id)

    def as_dict(self) -> dict[str, object]:
        return {
            "target": self.target,
            "destination": self.destination,
            "mode": self.mode,
            "dryRun": self.dry_run,
            "added": len(self.added),
            "removed": len(self.removed),
            "entries": len(self.entries),
            "rejected": [{"value": r.value, "reason": r.reason} for r in self.rejected],
            "activated": self.activated,
            "requestIds": list(self.request_ids),
            # A dry run shows every value it would send; a live result only counts them.
            "requests": [sent.as_dict(with_values=self.dry_run) for sent in self.requests],
            "notes": list(self.notes),
        }


class PushTarget(Protocol):
    """A list a cloud proxy enforces, kept equal to a block list."""

    name: str

    def prepare(self, blocklist: Blocklist) -> Prepared:
        """The values this service takes for ``blocklist``, and what it cannot express."""
        ...

    def push(self, entries: Sequence[str], previous: Sequence[str] | None = None) -> PushResult:
        """Make the list hold ``entries``; send only the difference when ``previous`` is known."""
        ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3  # tries for 5xx, busy answers, timeouts and broken connections
    throttle_attempts: int = 6  # tries while the service keeps answering 429
    backoff_base: float = 1.0  # seconds; doubled each attempt, then jittered
    backoff_cap: float = 30.0
    default_retry_after: float = 5.0  # when a 429 says nothing usable about when to come back
    max_retry_after: float = 300.0  # a longer demand is reported, not obeyed

    def backoff(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        return rng.uniform(ceiling / 10, ceiling)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: Any
    request_id: str | None


class Credentials(Protocol):
    """How a target authenticates: headers for each call, and what to do after a 401."""

    def headers(self) -> Mapping[str, str]: ...

    def renew(self) -> bool:
        """Drop a cached token; True when a retry may succeed with a new one."""
        ...


class ApiSession:
    """Calls to one service: explicit timeouts, Retry-After, bounded retries, typed errors.

    Every call is logged at INFO with method, path, status and duration, and recorded in
    ``sent``; headers and bodies never are, so no token reaches a log.
    """

    def __init__(
        self,
        target: str,
        base_url: str,
        credentials: Credentials,
        *,
        http: httpx.Client | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        write_interval: float = 0.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.target = target
        self.base_url = base_url.rstrip("/")
        self._credentials = credentials
        self._own_http = http is None
        self._http = http or httpx.Client(timeout=timeout, follow_redirects=False)
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._write_interval = write_interval
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrecy
        self._last_write: float | None = None
        self.sent: list[SentRequest] = []

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> ApiSession:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        values: Sequence[str] = (),
        idempotent: bool = True,
    ) -> Answer:
        """Send one call until it succeeds or the retry policy gives up; raise a typed error."""
        shown = f"{path}?{httpx.QueryParams(params)}" if params else path
        endpoint = f"{method} {shown}"
        attempt = throttled = 0
        renewed = False

        while True:
            attempt += 1
            self._pace(method)
            response = self._send(
                method,
                path,
                params=params,
                body=body,
                endpoint=endpoint,
                attempt=attempt,
                idempotent=idempotent,
            )
            if response is None:
                continue

            request_id = _request_id(response)
            self.sent.append(
                SentRequest(method, shown, tuple(values), response.status_code, request_id)
            )
            if response.status_code < 400:
                return Answer(response.status_code, _json_or_none(response), request_id)

            code, message = _error_of(response)
            if response.status_code == 401 and not renewed and self._credentials.renew():
                renewed = True  # a token can expire during a long push; ask for a new one once
                attempt -= 1
                continue
            if response.status_code in (401, 403):
                raise PushAuthError(
                    self.target,
                    endpoint,
                    f"HTTP {response.status_code} {code or '-'}: {message}",
                    response.status_code,
                )
            if response.status_code == 429:
                throttled += 1
                wait = _retry_after(response, self._retry.default_retry_after)
                if throttled >= self._retry.throttle_attempts or wait > self._retry.max_retry_after:
                    raise PushRateLimitedError(self.target, endpoint, message, wait)
                log.warning("%s %s throttled (429); waiting %.1f s", self.target, endpoint, wait)
                self._sleep(wait)
                attempt -= 1
                continue
            retryable = idempotent and _is_transient(response.status_code, code)
            if retryable and attempt < self._retry.attempts:
                self._back_off(endpoint, attempt, f"HTTP {response.status_code}")
                continue
            raise PushApiError(self.target, endpoint, response.status_code, code, message)

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None,
        body: Any,
        endpoint: str,
        attempt: int,
        idempotent: bool,
    ) -> httpx.Response | None:
        """One HTTP exchange; None when it broke and may be tried again."""
        started = self._clock()
        try:
            response = self._http.request(
                method,
                f"{self.base_url}{path}",
                params=params,
                json=body,
                headers=dict(self._credentials.headers()),
                timeout=self._timeout,
            )
        except httpx.HTTPError as exc:
            if not idempotent or attempt >= self._retry.attempts:
                raise PushTransportError(
                    self.target, endpoint, f"no answer: {type(exc).__name__}"
                ) from exc
            self._back_off(endpoint, attempt, type(exc).__name__)
            return None

        log.info(
            "%s %s -> %s in %.2f s",
            self.target,
            endpoint,
            response.status_code,
            self._clock() - started,
        )
        return response

    def _pace(self, method: str) -> None:
        # Writes are the expensive calls (Zscaler allows about one a second); reads are not paced.
        if method == "GET" or self._write_interval <= 0:
            return
        now = self._clock()
        if self._last_write is not None and now - self._last_write < self._write_interval:
            self._sleep(self._write_interval - (now - self._last_write))
        self._last_write = self._clock()

    def _back_off(self, endpoint: str, attempt: int, reason: str) -> None:
        wait = self._retry.backoff(attempt, self._rng)
        log.warning("%s %s: %s; retrying in %.1f s", self.target, endpoint, reason, wait)
        self._sleep(wait)


class ListPushTarget(ABC):
    """The push logic both services share; subclasses speak the service's API.

    Subclasses read the list, replace it, add and remove values, and activate. This class
    screens values, decides between a full replace and a delta, chunks, isolates refused values
    and assembles the result.
    """

    name: str = "list"

    def __init__(
        self,
        session: ApiSession | None,
        *,
        dry_run: bool = False,
        chunk_size: int = 500,
        max_payload_bytes: int = 1_000_000,
        max_refused: int = 100,
    ) -> None:
        if session is None and not dry_run:
            raise PushConfigError(self.name, "session", "a live push needs an API session")
        if chunk_size < 1 or max_payload_bytes < 1024:
            raise PushConfigError(self.name, "chunk_size", "chunks must hold at least one value")
        self._session = session
        self.dry_run = dry_run
        self.chunk_size = chunk_size
        self.max_payload_bytes = max_payload_bytes
        self.max_refused = max_refused

    # What a subclass provides.

    @abstractmethod
    def prepare(self, blocklist: Blocklist) -> Prepared: ...

    @abstractmethod
    def describe(self) -> str:
        """How the list is named in results before it was read (dry runs)."""

    @abstractmethod
    def _value_problem(self, value: str) -> str | None:
        """Why ``value`` is not something this service takes, or None when it is."""

    @abstractmethod
    def _read(self) -> RemoteList:
        """The list as the service holds it now (``values`` is None when it does not exist)."""

    @abstractmethod
    def _replace(self, remote: RemoteList, values: Sequence[str]) -> RemoteList:
        """Replace the whole list with ``values``, creating it when missing."""

    @abstractmethod
    def _add(self, remote: RemoteList, values: Sequence[str]) -> None: ...

    @abstractmethod
    def _remove(self, remote: RemoteList, values: Sequence[str]) -> None: ...

    @abstractmethod
    def _activate(self, remote: RemoteList) -> tuple[bool, tuple[str, ...]]:
        """Activate or deploy; returns whether it was done and notes for the operator."""

    @abstractmethod
    def _plan_requests(
        self, mode: PushMode, add: Sequence[str], remove: Sequence[str]
    ) -> list[SentRequest]:
        """The calls a live push would make for this change (for dry runs)."""

    # The shared push.

    def push(self, entries: Sequence[str], previous: Sequence[str] | None = None) -> PushResult:
        desired, refused = self.screen(entries)
        mode: PushMode = "full" if previous is None else "incremental"

        if self.dry_run:
            return self._dry_run(mode, desired, previous, refused)

        progress = _Progress(mode=mode, rejected=refused, first_sent=len(self.session.sent))
        try:
            return self._live(desired, previous, progress)
        except PushError as error:
            error.partial = progress.result(self)
            raise
        finally:
            log.info(
                "%s push (%s): %d added, %d removed, %d refused, activated: %s",
                self.name,
                mode,
                len(progress.added),
                len(progress.removed),
                len(progress.rejected),
                progress.activated,
            )

    def screen(self, entries: Iterable[str]) -> tuple[list[str], list[Refused]]:
        """Unique well-formed values in their first order, and the others with the reason."""
        accepted: dict[str, None] = {}
        refused: list[Refused] = []
        for value in entries:
            problem = _alphabet_problem(value) or self._value_problem(value)
            if problem:
                refused.append(Refused(_shown(value), problem))
            else:
                accepted.setdefault(value, None)
        return list(accepted), refused

    @property
    def session(self) -> ApiSession:
        assert self._session is not None, "a live push always has a session"
        return self._session

    def close(self) -> None:
        """Close the HTTP client the target opened itself (a dry run has none)."""
        if self._session is not None:
            self._session.close()

    def __enter__(self) -> ListPushTarget:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _live(
        self, desired: list[str], previous: Sequence[str] | None, progress: _Progress
    ) -> PushResult:
        remote = self._read()
        progress.destination = remote.destination
        present = set(remote.values or ())

        if remote.values is None or previous is None:
            # No list yet, or no record of what the last push left: make it exactly ``desired``.
            if remote.values is not None and present == set(desired):
                progress.entries = list(desired)
                return progress.result(self, note="already up to date")
            if remote.values is None and previous is not None:
                progress.notes.append("the list did not exist, so it was created in full")
            progress.mode = "full"
            remote, held = self._replace_isolating(remote, desired, progress)
            progress.destination = remote.destination  # a new list is named by its id now
            progress.entries = [value for value in desired if value in held]
            progress.added = [value for value in progress.entries if value not in present]
            progress.removed = sorted(present - held)
        else:
            # Only the difference. Values someone else put in the list stay, and values the
            # last push added but someone removed since are added again.
            wanted = set(desired)
            add = [value for value in desired if value not in present]
            remove = [value for value in _unique(previous) if value not in wanted]
            remove = [value for value in remove if value in present]
            for chunk in self.chunks(add):
                progress.added.extend(self._send_isolating(self._add, remote, chunk, progress))
            for chunk in self.chunks(remove):
                progress.removed.extend(self._send_isolating(self._remove, remote, chunk, progress))
            held = (present | set(progress.added)) - set(progress.removed)
            progress.entries = [value for value in desired if value in held]
            if not progress.changed:
                return progress.result(self, note="already up to date")

        progress.activated, notes = self._activate(remote)
        progress.notes.extend(notes)
        return progress.result(self)

    def _replace_isolating(
        self, remote: RemoteList, values: list[str], progress: _Progress
    ) -> tuple[RemoteList, set[str]]:
        """Replace the list with the first chunk and add the rest; returns what it now holds.

        Both services hold changes back until activation, so nobody sees the list while it is
        half written.
        """
        chunks = list(self.chunks(values))
        first = chunks[0] if chunks else []
        try:
            remote = self._replace(remote, first)
            held, rest = set(first), chunks[1:]
        except PushApiError as error:
            if error.status not in (400, 422) or not first:
                raise
            # A value in the first chunk was refused: start from an empty list and let the adding
            # path find the values the service refuses.
            remote = self._replace(remote, [])
            held, rest = set(), chunks
        progress.replaced = True

        for chunk in rest:
            held.update(self._send_isolating(self._add, remote, chunk, progress))
        return remote, held

    def _send_isolating(
        self,
        operation: Callable[[RemoteList, Sequence[str]], None],
        remote: RemoteList,
        chunk: list[str],
        progress: _Progress,
    ) -> list[str]:
        """Send ``chunk``; when refused with 400, halve it until the refused values are found."""
        try:
            operation(remote, chunk)
        except PushApiError as error:
            if error.status not in (400, 422):
                raise
            if len(chunk) == 1:
                progress.refused_by_service += 1
                if progress.refused_by_service > self.max_refused:
                    raise  # so many refusals means the cause is not the values
                progress.rejected.append(
                    Refused(chunk[0], f"{error.endpoint} refused it: {error.detail}")
                )
                return []
            middle = len(chunk) // 2
            return self._send_isolating(
                operation, remote, chunk[:middle], progress
            ) + self._send_isolating(operation, remote, chunk[middle:], progress)
        return list(chunk)

    def _dry_run(
        self,
        mode: PushMode,
        desired: list[str],
        previous: Sequence[str] | None,
        refused: list[Refused],
    ) -> PushResult:
        if previous is None:
            add, remove = desired, []
        else:
            before = set(previous)
            wanted = set(desired)
            add = [value for value in desired if value not in before]
            remove = [value for value in _unique(previous) if value not in wanted]
        requests = (
            self._plan_requests(mode, add, remove) if (mode == "full" or add or remove) else []
        )
        return PushResult(
            target=self.name,
            destination=self.describe(),
            mode=mode,
            dry_run=True,
            added=tuple(add),
            removed=tuple(remove),
            entries=tuple(desired),
            requests=tuple(requests),
            rejected=tuple(refused),
            notes=("dry run: nothing was sent; the service's current list was not read",),
        )

    def chunks(self, values: Sequence[str]) -> Iterator[list[str]]:
        """Runs of at most ``chunk_size`` values whose JSON stays under ``max_payload_bytes``."""
        chunk: list[str] = []
        size = 0
        for value in values:
            cost = len(value) + 4  # quotes, comma and space in the JSON array
            if chunk and (len(chunk) >= self.chunk_size or size + cost > self.max_payload_bytes):
                yield chunk
                chunk, size = [], 0
            chunk.append(value)
            size += cost
        if chunk:
            yield chunk


@dataclass
class RemoteList:
    """The list as read from the service: what to call it, its values, service details."""

    destination: str
    values: tuple[str, ...] | None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Progress:
    mode: PushMode
    rejected: list[Refused]
    first_sent: int  # index of this push's first call in the session's record
    destination: str = ""
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    entries: list[str] = field(default_factory=list)
    replaced: bool = False
    activated: bool = False
    refused_by_service: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.replaced)

    def result(self, target: ListPushTarget, note: str | None = None) -> PushResult:
        return PushResult(
            target=target.name,
            destination=self.destination or target.describe(),
            mode=self.mode,
            dry_run=False,
            added=tuple(self.added),
            removed=tuple(self.removed),
            entries=tuple(self.entries),
            requests=tuple(target.session.sent[self.first_sent :]),
            rejected=tuple(self.rejected),
            activated=self.activated,
            notes=(*self.notes, note) if note else tuple(self.notes),
        )


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _alphabet_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return f"not a string but {type(value).__name__}"
    if not value:
        return "empty value"
    if len(value) > MAX_VALUE_LENGTH:
        return f"longer than {MAX_VALUE_LENGTH} characters"
    if not _ALPHABET.fullmatch(value):
        return "holds characters no normalised host, address or URL holds"
    return None


def _shown(value: object, limit: int = 80) -> str:
    # Refused values are reported, so keep them printable and short.
    text = value if isinstance(value, str) else repr(value)
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[:limit] + "..."


def _request_id(response: httpx.Response) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        value: str = response.headers.get(name, "")
        if value:
            return value[:128]
    return None


def _json_or_none(response: httpx.Response) -> Any:
    if not response.content.strip():
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _error_of(response: httpx.Response) -> tuple[str | None, str]:
    """The service's error code and message: ``{"code", "message"}`` or ``{"error", ...}``."""
    body = _json_or_none(response)
    message = response.reason_phrase or "error"
    code: str | None = None
    if isinstance(body, dict):
        raw_code = body.get("code", body.get("error"))
        code = str(raw_code)[:100] if isinstance(raw_code, str | int) else None
        raw_message = body.get("message", body.get("error_description"))
        if isinstance(raw_message, str | list):
            message = str(raw_message)
    return code, message[:300]


def _is_transient(status: int, code: str | None) -> bool:
    # Zscaler answers 409 EDIT_LOCK_NOT_AVAILABLE while another admin session saves; it clears.
    return status >= 500 or (status == 409 and code == "EDIT_LOCK_NOT_AVAILABLE")


_SECONDS: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(?:s|sec|secs|second|seconds)?\s*$", re.I)


def _retry_after(response: httpx.Response, default: float) -> float:
    """Seconds to wait after a 429.

    HTTP puts ``Retry-After`` in a header (seconds or a date). Zscaler documents it in the JSON
    body instead, as ``{"Retry-After": "0 seconds"}``. A ``RateLimit-Reset`` header (seconds) is
    used when neither is there.
    """
    header = response.headers.get("Retry-After")
    if header:
        seconds = _seconds(header)
        if seconds is not None:
            return seconds
        try:
            return max(0.0, email.utils.parsedate_to_datetime(header).timestamp() - time.time())
        except (TypeError, ValueError):
            pass

    body = _json_or_none(response)
    if isinstance(body, dict):
        for key, value in body.items():
            if key.lower() == "retry-after" and isinstance(value, str | int | float):
                seconds = _seconds(str(value))
                if seconds is not None:
                    return seconds

    reset = _seconds(response.headers.get("RateLimit-Reset", ""))
    return reset if reset is not None else default


def _seconds(text: str) -> float | None:
    match = _SECONDS.match(text)
    return float(match.group(1)) if match else None
