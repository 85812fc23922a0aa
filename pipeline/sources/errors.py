"""What can go wrong when reading Defender for Endpoint and Microsoft Graph.

Every error names the endpoint it came from, so a collection report can say which call failed::

    SourceError                  anything a source could not read
    ├── AuthError                no token could be obtained (bad secret, unreachable token endpoint)
    ├── ApiError                 the API answered with an error status (names status and code)
    │   └── RateLimitedError     429 that outlasted the retry budget
    ├── TransportError           timeouts and broken connections that outlasted the retries
    └── ResponseError            the API answered 2xx with a body we cannot use
        ├── MalformedResponseError   not JSON, or JSON cut short
        └── PagingLoopError          an @odata.nextLink pointing back to a page already read
"""

from __future__ import annotations


class SourceError(Exception):
    """Base of every error raised while reading a source. ``endpoint`` is e.g. ``GET /api/x``."""

    def __init__(self, endpoint: str, message: str) -> None:
        super().__init__(f"{endpoint}: {message}")
        self.endpoint = endpoint
        self.message = message

    @property
    def status(self) -> int | None:
        return None

    @property
    def code(self) -> str:
        return type(self).__name__


class AuthError(SourceError):
    """The credential could not produce a token."""


class ApiError(SourceError):
    """An error status from the API, with Microsoft's error code when the body carried one."""

    def __init__(
        self,
        endpoint: str,
        status: int,
        error_code: str | None,
        message: str,
        target: str | None = None,
    ) -> None:
        super().__init__(endpoint, f"HTTP {status} {error_code or '-'}: {message}")
        self.message = message
        self._status = status
        self.error_code = error_code
        self.target = target  # Microsoft's correlation id; quote it in a support case

    @property
    def status(self) -> int:
        return self._status

    @property
    def code(self) -> str:
        return self.error_code or f"HTTP{self._status}"


class RateLimitedError(ApiError):
    """Still throttled (429) after honouring Retry-After as often as the policy allows."""

    def __init__(self, endpoint: str, message: str, retry_after: float | None) -> None:
        super().__init__(endpoint, 429, "TooManyRequests", message)
        self.retry_after = retry_after


class TransportError(SourceError):
    """The request never got a complete answer (timeout, refused or reset connection)."""


class ResponseError(SourceError):
    """A 2xx answer whose body cannot be used."""


class MalformedResponseError(ResponseError):
    """The body is not the JSON the API documents, or it stops part way."""


class PagingLoopError(ResponseError):
    """The server handed back a next-page link that was already followed."""
