"""A local stand-in for the Azure Monitor Logs Ingestion API, on 127.0.0.1.

Azure Monitor has no emulator. This server speaks the same REST contract the pipeline uses in
Azure, so the real upload code (``azure-monitor-ingestion``'s ``LogsIngestionClient``) runs against
it unchanged, and it keeps what it accepts in one JSON Lines file per stream that anyone can open:

* ``POST /dataCollectionRules/{dcrImmutableId}/streams/{streamName}?api-version=2023-01-01``;
* ``Authorization: Bearer <token>`` is required (any non-empty token, unless one is configured);
* the body is a JSON array of objects, plain or ``Content-Encoding: gzip``;
* a body over 1 MB, on the wire or once decompressed, is refused with 413;
* unknown rule or stream: 404; malformed JSON, a non-array body, an unknown column or a value of
  the wrong type: 400; each with an Azure-shaped ``{"error": {"code", "message"}}`` body;
* success is 204 with no body.

It is deliberately stricter than Azure about columns: Azure drops columns the stream does not
declare and still answers 204, which hides mistakes; here they are a 400 that names the row and
the column. Stream declarations come from ``pipeline.tables``, like the real data collection rule.

Faults can be injected for tests: 429 with ``Retry-After`` for the next N calls, an error status
(500 by default) for the next N calls, and a 400 for any request carrying a row that contains a
marker string (the real API accepts or refuses a request as a whole, never single rows).

Usage::

    server = IngestionServer(out_dir)
    base_url = server.start()   # e.g. http://127.0.0.1:43117
    ...
    server.stop()

or ``python -m pipeline.lab.ingestion --out DIR [--port N]`` to run it in the foreground.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import threading
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pipeline.tables import ALL_TABLES, ColumnType, Table

logger = logging.getLogger(__name__)

# The documented limit is "1 MB" per call; 1 MiB is the generous reading of it.
MAX_BODY_BYTES = 1024 * 1024
# A request body is never read into memory beyond this, whatever Content-Length claims.
READ_CAP_BYTES = 64 * 1024 * 1024
SUPPORTED_API_VERSIONS = frozenset({"2023-01-01"})
# Shaped like a real immutable id (dcr- and 32 hex digits), so configuration looks the same.
LOCAL_DCR_IMMUTABLE_ID = "dcr-00000000000000000000000000000001"

_PATH = re.compile(r"^/dataCollectionRules/(?P<dcr>[^/]+)/streams/(?P<stream>[^/]+)$")


@dataclass(frozen=True)
class ReceivedRequest:
    """What the server saw of one POST, for tests and for the user."""

    stream: str | None
    status: int
    wire_bytes: int
    decoded_bytes: int | None
    rows: int
    encoding: str | None
    received_at: float = field(default_factory=time.monotonic)


class _Refusal(Exception):
    """Ends a request with an Azure-shaped error response."""

    def __init__(
        self, status: HTTPStatus, code: str, message: str, headers: Mapping[str, str] = {}
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers)


class IngestionServer:
    """The local Logs Ingestion endpoint. Threaded; safe to start and stop from tests."""

    def __init__(
        self,
        out_dir: Path | str,
        *,
        dcr_immutable_id: str = LOCAL_DCR_IMMUTABLE_ID,
        tables: Iterable[Table] = ALL_TABLES,
        port: int = 0,
        max_body_bytes: int = MAX_BODY_BYTES,
        accepted_token: str | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.dcr_immutable_id = dcr_immutable_id
        self.streams = {table.stream_name: table for table in tables}
        self.max_body_bytes = max_body_bytes
        self._port = port
        self._accepted_token = accepted_token
        self._lock = threading.Lock()
        self._throttle_calls = 0
        self._throttle_retry_after = 1
        self._fail_calls = 0
        self._fail_status = HTTPStatus.INTERNAL_SERVER_ERROR
        self._reject_marker: str | None = None
        self._requests: list[ReceivedRequest] = []
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> str:
        """Listen on 127.0.0.1 (a free port unless one was given) and return the base URL."""
        if self._httpd is not None:
            return self.base_url
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._httpd = _Server(("127.0.0.1", self._port), _Handler, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # how soon stop() returns
            name="ingestion-server",
            daemon=True,
        )
        self._thread.start()
        logger.info(
            "local ingestion endpoint listening on %s, writing to %s", self.base_url, self.out_dir
        )
        return self.base_url

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        logger.info("local ingestion endpoint stopped")

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the ingestion server is not running")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> IngestionServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- fault injection -------------------------------------------------------------------

    def throttle_next(self, calls: int, retry_after_seconds: int = 1) -> None:
        """Answer the next ``calls`` requests with 429 and ``Retry-After``."""
        with self._lock:
            self._throttle_calls = calls
            self._throttle_retry_after = retry_after_seconds

    def fail_next(self, calls: int, status: int = 500) -> None:
        """Answer the next ``calls`` requests with ``status`` (a server error by default)."""
        with self._lock:
            self._fail_calls = calls
            self._fail_status = HTTPStatus(status)

    def reject_rows_containing(self, marker: str | None) -> None:
        """Refuse (400) every request that carries a row whose JSON contains ``marker``."""
        with self._lock:
            self._reject_marker = marker

    # -- what was received ------------------------------------------------------------------

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    def jsonl_path(self, stream_name: str) -> Path:
        return self.out_dir / f"{stream_name}.jsonl"

    def accepted_rows(self, stream_name: str) -> list[dict[str, Any]]:
        """Every row accepted so far for ``stream_name``, in arrival order."""
        path = self.jsonl_path(stream_name)
        if not path.exists():
            return []
        with self._lock, path.open(encoding="utf-8") as lines:
            return [json.loads(line) for line in lines if line.strip()]

    # -- request handling (called from the handler threads) ------------------------------

    def _handle(self, path: str, headers: Mapping[str, str], body: bytes) -> ReceivedRequest:
        stream, dcr = self._route(path)
        encoding = headers.get("content-encoding")
        self._check_body_size(len(body), "request body")
        self._take_injected_fault()

        table = self._table(dcr, stream)
        decoded = self._decode(body, encoding)
        self._check_body_size(len(decoded), "decompressed body")
        rows = self._parse(decoded)
        self._check_rows(table, rows)

        self._store(table.stream_name, rows)
        return ReceivedRequest(
            stream, HTTPStatus.NO_CONTENT, len(body), len(decoded), len(rows), encoding
        )

    def _route(self, path: str) -> tuple[str, str]:
        parts = urlsplit(path)
        match = _PATH.match(parts.path)
        if match is None:
            raise _Refusal(HTTPStatus.NOT_FOUND, "NotFound", f"no such resource: {parts.path}")
        versions = parse_qs(parts.query).get("api-version", [])
        if not versions:
            raise _Refusal(
                HTTPStatus.BAD_REQUEST, "MissingApiVersionParameter", "api-version is required"
            )
        if versions[0] not in SUPPORTED_API_VERSIONS:
            raise _Refusal(
                HTTPStatus.BAD_REQUEST,
                "UnsupportedApiVersion",
                f"api-version {versions[0]!r} is not supported; use 2023-01-01",
            )
        return match["stream"], match["dcr"]

    def _check_body_size(self, size: int, what: str) -> None:
        if size > self.max_body_bytes:
            raise _Refusal(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "ContentLengthLimitExceeded",
                f"{what} is {size} bytes; the limit per call is {self.max_body_bytes} bytes",
            )

    def _take_injected_fault(self) -> None:
        with self._lock:
            if self._throttle_calls > 0:
                self._throttle_calls -= 1
                raise _Refusal(
                    HTTPStatus.TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    "request rate limit reached (injected fault)",
                    {"Retry-After": str(self._throttle_retry_after)},
                )
            if self._fail_calls > 0:
                self._fail_calls -= 1
                raise _Refusal(self._fail_status, "InternalServerError", "injected fault")

    def _table(self, dcr: str, stream: str) -> Table:
        if dcr != self.dcr_immutable_id:
            raise _Refusal(
                HTTPStatus.NOT_FOUND,
                "DataCollectionRuleNotFound",
                f"no data collection rule with immutable id {dcr!r}",
            )
        table = self.streams.get(stream)
        if table is None:
            raise _Refusal(
                HTTPStatus.NOT_FOUND,
                "InvalidStream",
                f"stream {stream!r} is not declared in data collection rule {dcr!r}",
            )
        return table

    @staticmethod
    def _decode(body: bytes, encoding: str | None) -> bytes:
        if encoding is None or encoding.lower() == "identity":
            return body
        if encoding.lower() != "gzip":
            raise _Refusal(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedContentEncoding",
                f"Content-Encoding {encoding!r} is not supported; use gzip or none",
            )
        try:
            # Bounded, so a small compressed body cannot inflate into gigabytes of memory.
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            decoded = inflater.decompress(body, READ_CAP_BYTES)
        except zlib.error as err:
            raise _Refusal(
                HTTPStatus.BAD_REQUEST, "InvalidContentEncoding", f"body is not valid gzip: {err}"
            ) from err
        if not inflater.eof and not inflater.unconsumed_tail:
            raise _Refusal(HTTPStatus.BAD_REQUEST, "InvalidContentEncoding", "gzip body ends early")
        return decoded

    @staticmethod
    def _parse(decoded: bytes) -> list[Any]:
        try:
            payload = json.loads(decoded)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise _Refusal(
                HTTPStatus.BAD_REQUEST, "InvalidJson", f"body is not valid JSON: {err}"
            ) from err
        if not isinstance(payload, list):
            # Azure answers 204 and ingests nothing here; refusing makes the mistake visible.
            raise _Refusal(
                HTTPStatus.BAD_REQUEST,
                "InvalidPayload",
                f"body must be a JSON array of objects, got {type(payload).__name__}",
            )
        return payload

    def _check_rows(self, table: Table, rows: list[Any]) -> None:
        types = {column.name: column.type for column in table.columns}
        with self._lock:
            marker = self._reject_marker
        for index, row in enumerate(rows):
            if not isinstance(row, dict):
                raise _Refusal(
                    HTTPStatus.BAD_REQUEST,
                    "InvalidPayload",
                    f"row {index} is {type(row).__name__}, not an object",
                )
            for name, value in row.items():
                if name not in types:
                    raise _Refusal(
                        HTTPStatus.BAD_REQUEST,
                        "UnknownColumn",
                        f"row {index}: column {name!r} is not declared in stream "
                        f"{table.stream_name}",
                    )
                if not _value_fits(types[name], value):
                    raise _Refusal(
                        HTTPStatus.BAD_REQUEST,
                        "InvalidColumnValue",
                        f"row {index}: column {name!r} expects {types[name]}, "
                        f"got {type(value).__name__}",
                    )
            if marker is not None and marker in json.dumps(row, ensure_ascii=False):
                raise _Refusal(
                    HTTPStatus.BAD_REQUEST,
                    "RejectedRow",
                    f"row {index} contains the rejection marker (injected fault)",
                )

    def _store(self, stream: str, rows: list[Any]) -> None:
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        with self._lock, self.jsonl_path(stream).open("a", encoding="utf-8") as out:
            out.write(lines)

    def _remember(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _authorised(self, authorization: str | None) -> bool:
        if authorization is None or not authorization.startswith("Bearer "):
            return False
        token = authorization.removeprefix("Bearer ").strip()
        if self._accepted_token is not None:
            return token == self._accepted_token
        return bool(token)


def _value_fits(column_type: ColumnType, value: Any) -> bool:
    if value is None:
        return True
    if column_type == "string":
        return isinstance(value, str)
    if column_type in ("int", "long"):
        return isinstance(value, int) and not isinstance(value, bool)
    if column_type == "real":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if column_type == "boolean":
        return isinstance(value, bool)
    if column_type == "datetime":
        return isinstance(value, str) and _is_iso_datetime(value)
    return True  # dynamic: any JSON value


def _is_iso_datetime(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[_Handler], owner: IngestionServer
    ) -> None:
        super().__init__(address, handler)
        self.owner = owner


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        owner = self.server.owner
        body = self._read_body()
        if body is None:
            return
        try:
            if not owner._authorised(self.headers.get("Authorization")):
                raise _Refusal(
                    HTTPStatus.UNAUTHORIZED,
                    "InvalidAuthenticationToken",
                    "a bearer token for https://monitor.azure.com is required",
                    {"WWW-Authenticate": 'Bearer authorization_uri="local"'},
                )
            headers = {"content-encoding": self.headers.get("Content-Encoding")}
            received = owner._handle(self.path, {k: v for k, v in headers.items() if v}, body)
        except _Refusal as refusal:
            owner._remember(
                ReceivedRequest(
                    None,
                    refusal.status,
                    len(body),
                    None,
                    0,
                    self.headers.get("Content-Encoding"),
                )
            )
            self._send_error(refusal)
            return
        owner._remember(received)
        logger.debug("accepted %d rows for %s", received.rows, received.stream)
        self.send_response(HTTPStatus.NO_CONTENT)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._send_error(_Refusal(HTTPStatus.METHOD_NOT_ALLOWED, "MethodNotAllowed", "use POST"))

    do_PUT = do_DELETE = do_PATCH = do_GET

    def _read_body(self) -> bytes | None:
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.isdigit():
            self._send_error(
                _Refusal(HTTPStatus.LENGTH_REQUIRED, "LengthRequired", "Content-Length is required")
            )
            return None
        length = int(length_header)
        if length > READ_CAP_BYTES:
            self.close_connection = True
            self._send_error(
                _Refusal(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    "ContentLengthLimitExceeded",
                    f"request body is {length} bytes; the limit per call is "
                    f"{self.server.owner.max_body_bytes} bytes",
                )
            )
            return None
        return self.rfile.read(length)

    def _send_error(self, refusal: _Refusal) -> None:
        payload = json.dumps({"error": {"code": refusal.code, "message": refusal.message}}).encode()
        self.send_response(refusal.status)
        for name, value in refusal.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line carries no token; headers are never logged.
        logger.debug("%s %s", self.address_string(), format % args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.lab.ingestion",
        description="Run the local Logs Ingestion endpoint (a stand-in for Azure Monitor).",
    )
    parser.add_argument("--out", required=True, type=Path, help="directory for the JSONL files")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: free)")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    server = IngestionServer(args.out, port=args.port)
    print(f"endpoint {server.start()}  DCR immutable id {server.dcr_immutable_id}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
