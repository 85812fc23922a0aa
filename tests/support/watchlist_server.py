"""A local stand-in for the Microsoft Sentinel Watchlists API (management plane, 2023-02-01).

It speaks the documented contract closely enough to catch a client that gets it wrong:

* ``PUT .../watchlists/{alias}`` needs ``api-version=2023-02-01``, a bearer token, and the
  required properties (``displayName``, ``source``, ``provider``, ``itemsSearchKey``); it parses
  ``rawContent`` as RFC 4180 CSV after ``numberOfLinesToSkip`` lines, refuses content above
  3.8 MB, a header without the search key, or a row with an empty search key (400), and answers
  201 for a new watchlist, 200 for an existing one;
* on an existing watchlist a PUT **adds** its rows, keeping one item per set of equal columns,
  and removes nothing: the behaviour Microsoft documents for a bulk update, which is the reason
  the publisher deletes stale items itself;
* ``GET .../watchlistItems`` pages with ``nextLink`` (404 when the watchlist does not exist);
  ``DELETE`` of an item or of the whole watchlist.

Faults can be queued for the next calls (a status, a body, headers, optionally only for one
method). The server runs on a free 127.0.0.1 port in a thread; ``serve()`` stops it on exit.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

API_VERSION = "2023-02-01"
MAX_RAW_CONTENT = 3_800_000
TOKEN = "watchlist-test-token"  # a placeholder the fake accepts; it opens nothing

_WATCHLIST = re.compile(
    r"(?P<workspace>/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
    r"Microsoft\.OperationalInsights/workspaces/[^/]+)"
    r"/providers/Microsoft\.SecurityInsights/watchlists/(?P<alias>[^/]+)"
    r"(?P<items>/watchlistItems(?:/(?P<item>[^/]+))?)?",
    re.IGNORECASE,
)


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: Any


@dataclass
class Fault:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    method: str | None = None  # only calls with this method, or any


@dataclass
class Watchlist:
    properties: dict[str, Any]
    items: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> itemsKeyValue


class SentinelWatchlistsFake:
    """Watchlists of one or more workspaces, in memory."""

    def __init__(self, page_size: int = 100) -> None:
        self.lock = threading.Lock()
        self.page_size = page_size
        self.watchlists: dict[tuple[str, str], Watchlist] = {}
        self.requests: list[Seen] = []
        self.next_link_base: str | None = None  # set to send nextLinks to another host
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self.base_url = ""

    # -- what tests look at -----------------------------------------------------------------------

    def rows(self, workspace: str, alias: str) -> list[dict[str, str]]:
        with self.lock:
            found = self.watchlists.get((workspace.lower(), alias.lower()))
            return [] if found is None else list(found.items.values())

    def item_ids(self, workspace: str, alias: str) -> set[str]:
        with self.lock:
            found = self.watchlists.get((workspace.lower(), alias.lower()))
            return set() if found is None else set(found.items)

    def calls(self, method: str | None = None) -> list[Seen]:
        with self.lock:
            return [r for r in self.requests if method is None or r.method == method]

    def fault_next(self, count: int, fault: Fault) -> None:
        with self.lock:
            self._faults.extend([fault] * count)

    # -- dispatch ---------------------------------------------------------------------------------

    def handle(self, seen: Seen) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            self.requests.append(seen)
            headers = {"x-ms-request-id": f"req-{next(self._ids)}"}
            fault = self._fault_for(seen)
            if fault is not None:
                return fault.status, fault.body, {**headers, **fault.headers}
            status, body = self._dispatch(seen)
            return status, body, headers

    def _fault_for(self, seen: Seen) -> Fault | None:
        for position, fault in enumerate(self._faults):
            if fault.method in (None, seen.method):
                return self._faults.pop(position)
        return None

    def _dispatch(self, seen: Seen) -> tuple[int, Any]:
        if seen.headers.get("authorization") != f"Bearer {TOKEN}":
            return _error(401, "AuthenticationFailed", "missing or wrong bearer token")
        if seen.query.get("api-version") != API_VERSION:
            return _error(400, "InvalidApiVersionParameter", "unsupported api-version")
        match = _WATCHLIST.fullmatch(seen.path)
        if match is None:
            return _error(404, "NotFound", f"no route for {seen.path}")

        key = (match["workspace"].lower(), match["alias"].lower())
        if match["item"]:
            if seen.method == "DELETE":
                return self._delete_item(key, match["item"])
        elif match["items"]:
            if seen.method == "GET":
                return self._list(key, seen)
        elif seen.method == "PUT":
            return self._put(key, match["alias"], seen)
        elif seen.method == "DELETE":
            return (200, None) if self.watchlists.pop(key, None) else (204, None)
        return _error(405, "MethodNotAllowed", f"{seen.method} {seen.path}")

    def _put(self, key: tuple[str, str], alias: str, seen: Seen) -> tuple[int, Any]:
        body = seen.body
        properties = body.get("properties") if isinstance(body, dict) else None
        if not isinstance(properties, dict):
            return _error(400, "BadRequest", "body has no properties object")
        missing = [
            name
            for name in ("displayName", "source", "provider", "itemsSearchKey")
            if not properties.get(name)
        ]
        if missing:
            return _error(400, "BadRequest", f"missing required properties: {missing}")
        if properties.get("contentType") != "text/csv":
            return _error(400, "BadRequest", "only text/csv content is supported")

        raw = properties.get("rawContent")
        if not isinstance(raw, str):
            return _error(400, "BadRequest", "rawContent is missing")
        if len(raw.encode("utf-8")) > MAX_RAW_CONTENT:
            return _error(400, "BadRequest", "rawContent is larger than 3.8 MB")
        parsed = _parse_csv(raw, int(properties.get("numberOfLinesToSkip") or 0))
        if isinstance(parsed, str):
            return _error(400, "BadRequest", parsed)
        header, rows = parsed
        search_key = properties["itemsSearchKey"]
        if search_key not in header:
            return _error(400, "BadRequest", f"search key {search_key} is not a CSV column")

        existing = self.watchlists.get(key)
        if existing is not None and existing.properties["itemsSearchKey"] != search_key:
            return _error(400, "BadRequest", "the search key of a watchlist cannot change")
        watchlist = existing or Watchlist(properties={})
        stored = {k: v for k, v in properties.items() if k != "rawContent"}
        watchlist.properties = {**stored, "watchlistAlias": alias, "uploadStatus": "Complete"}

        # Documented bulk-update behaviour: append, then keep one item per identical row.
        present = {tuple(sorted(item.items())) for item in watchlist.items.values()}
        for row in rows:
            values = dict(zip(header, row, strict=True))
            if not values[search_key].strip():
                return _error(400, "BadRequest", "a row has an empty search key")
            signature = tuple(sorted(values.items()))
            if signature not in present:
                present.add(signature)
                watchlist.items[str(uuid.uuid4())] = values
        self.watchlists[key] = watchlist
        status = 201 if existing is None else 200
        return status, {"name": alias, "properties": watchlist.properties}

    def _list(self, key: tuple[str, str], seen: Seen) -> tuple[int, Any]:
        watchlist = self.watchlists.get(key)
        if watchlist is None:
            return _error(404, "NotFound", "watchlist not found")
        start = int(seen.query.get("$skipToken") or 0)
        ids = sorted(watchlist.items)
        page = ids[start : start + self.page_size]
        value = [
            {
                "name": item_id,
                "properties": {
                    "watchlistItemId": item_id,
                    "itemsKeyValue": watchlist.items[item_id],
                },
            }
            for item_id in page
        ]
        body: dict[str, Any] = {"value": value}
        if start + self.page_size < len(ids):
            base = self.next_link_base or self.base_url
            body["nextLink"] = (
                f"{base}{seen.path}?api-version={API_VERSION}&$skipToken={start + self.page_size}"
            )
        return 200, body

    def _delete_item(self, key: tuple[str, str], item_id: str) -> tuple[int, Any]:
        watchlist = self.watchlists.get(key)
        if watchlist is None or watchlist.items.pop(item_id, None) is None:
            return 204, None
        return 200, None


def _parse_csv(raw: str, skip: int) -> tuple[list[str], list[list[str]]] | str:
    lines = raw.splitlines(keepends=True)[skip:]
    try:
        records = list(csv.reader(io.StringIO("".join(lines), newline=""), strict=True))
    except csv.Error as error:
        return f"rawContent is not valid CSV: {error}"
    if not records:
        return "rawContent has no header"
    header, rows = records[0], [r for r in records[1:] if r]
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            return f"line {number} has {len(row)} fields, the header {len(header)}"
    return header, rows


def _error(status: int, code: str, message: str) -> tuple[int, Any]:
    return status, {"error": {"code": code, "message": message}}


@contextmanager
def serve(fake: SentinelWatchlistsFake) -> Iterator[str]:
    """Serve ``fake`` over HTTP on a free 127.0.0.1 port; yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            status, answer, headers = fake.handle(
                Seen(
                    method=self.command,
                    path=parts.path,
                    query=dict(parse_qsl(parts.query)),
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=body,
                )
            )
            content = b"" if answer is None else json.dumps(answer).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(content)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_PUT = do_DELETE = _answer

        def log_message(self, format: str, *args: object) -> None:
            """Keep test output quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake.base_url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
