"""Local stand-ins for the Zscaler ZIA and Netskope APIs, speaking their documented contracts.

Each fake keeps its state in memory so tests can assert what the list holds after a push, and
what the proxy would enforce: ZIA keeps changes staged until ``/status/activate``, Netskope keeps
them pending until ``/urllist/deploy``. Both check credentials (401 without them), refuse
malformed or configured values with 400, and can be told to answer the next calls with 429 and a
wait, or another fault.

The same fake answers through two doors: ``transport(fake)`` (an ``httpx.MockTransport``, for
fast unit tests) and ``serve(fake)`` (a real threaded HTTP server on a free 127.0.0.1 port, for
integration tests). Nothing else is faked: the clients under test send real HTTP requests.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

ZIA_AUDIENCE = "https://api.zscaler.com"


@dataclass
class FakeRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None


@dataclass
class FakeResponse:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    path_prefix: str = "/api/"


class _Fake:
    prefix = "fake"

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[FakeRequest] = []
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def handle(self, request: FakeRequest) -> FakeResponse:
        with self.lock:
            self.requests.append(request)
            response = self._fault_for(request) or self._dispatch(request)
            response.headers.setdefault("X-Request-Id", f"{self.prefix}-{next(self._ids)}")
            return response

    def fault_next(self, count: int, fault: Fault) -> None:
        with self.lock:
            self._faults.extend([fault] * count)

    def writes(self) -> list[FakeRequest]:
        """Calls that change something (everything but reads and token requests)."""
        return [r for r in self.requests if r.method != "GET" and "/oauth2/" not in r.path]

    def api_requests(self) -> list[FakeRequest]:
        return [r for r in self.requests if r.path.startswith("/api/")]

    def _fault_for(self, request: FakeRequest) -> FakeResponse | None:
        if self._faults and request.path.startswith(self._faults[0].path_prefix):
            fault = self._faults.pop(0)
            return FakeResponse(fault.status, fault.body, dict(fault.headers))
        return None

    def _dispatch(self, request: FakeRequest) -> FakeResponse:
        raise NotImplementedError


class ZiaFake(_Fake):
    """ZIA: ZIdentity tokens, custom URL categories, staged changes and activation."""

    prefix = "zia"

    def __init__(self, client_id: str = "zs-client", client_secret: str | None = None) -> None:
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret or f"zs-secret-{secrets.token_hex(8)}"
        self.tokens: set[str] = set()  # tokens valid now
        self.issued: list[str] = []  # every token ever handed out
        self.sessions: set[str] = set()  # JSESSIONID values of sessions opened out of band
        self.categories: dict[str, dict[str, Any]] = {}  # staged configuration
        self.active: dict[str, list[str]] = {}  # what the proxy enforces
        self.pending = False
        self.activations = 0
        self.refuse: set[str] = set()  # values answered with 400 INVALID_INPUT_ARGUMENT
        self.quota: int | None = None

    def add_category(
        self, category_id: str, name: str, urls: list[str] | None = None, *, custom: bool = True
    ) -> None:
        with self.lock:
            self.categories[category_id] = {
                "id": category_id,
                "configuredName": name,
                "superCategory": "USER_DEFINED",
                "customCategory": custom,
                "type": "URL_CATEGORY",
                "keywords": ["kept"],
                "urls": list(urls or []),
                "dbCategorizedUrls": [],
                "description": "managed by a test",
            }
            self.active[category_id] = list(urls or [])

    def staged(self, category_id: str) -> list[str]:
        with self.lock:
            return list(self.categories[category_id]["urls"])

    def enforced(self, category_id: str) -> list[str]:
        with self.lock:
            return list(self.active.get(category_id, []))

    def revoke_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def open_session(self) -> str:
        session = secrets.token_hex(12)
        with self.lock:
            self.sessions.add(session)
        return session

    def _dispatch(self, request: FakeRequest) -> FakeResponse:
        if request.path == "/oauth2/v1/token" and request.method == "POST":
            return self._token(request)
        if not request.path.startswith("/api/v1/"):
            return FakeResponse(404, {"code": "NOT_FOUND", "message": "no such resource"})
        if not self._authorised(request):
            return FakeResponse(401, {"code": "UNAUTHORIZED", "message": "Not authenticated"})

        if request.path == "/api/v1/status/activate" and request.method == "POST":
            for category_id, category in self.categories.items():
                self.active[category_id] = list(category["urls"])
            self.pending = False
            self.activations += 1
            return FakeResponse(200, {"status": "ACTIVE"})
        if request.path == "/api/v1/status" and request.method == "GET":
            return FakeResponse(200, {"status": "PENDING" if self.pending else "ACTIVE"})

        category_id = request.path.removeprefix("/api/v1/urlCategories/")
        if category_id == request.path or category_id not in self.categories:
            return FakeResponse(404, {"code": "RESOURCE_NOT_FOUND", "message": "not found"})
        if request.method == "GET":
            return FakeResponse(200, json.loads(json.dumps(self.categories[category_id])))
        if request.method == "PUT":
            return self._change(category_id, request)
        return FakeResponse(405, {"code": "METHOD_NOT_ALLOWED", "message": request.method})

    def _token(self, request: FakeRequest) -> FakeResponse:
        form = dict(parse_qsl(request.body.decode("utf-8")))
        if (
            form.get("grant_type") != "client_credentials"
            or form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
            or form.get("audience") != ZIA_AUDIENCE
        ):
            return FakeResponse(401, {"error": "invalid_client"})
        token = f"zia-token-{secrets.token_hex(16)}"
        self.tokens.add(token)
        self.issued.append(token)
        return FakeResponse(
            200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600}
        )

    def _authorised(self, request: FakeRequest) -> bool:
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer ") and auth[7:] in self.tokens:
            return True
        cookies = dict(
            part.strip().split("=", 1)
            for part in request.headers.get("cookie", "").split(";")
            if "=" in part
        )
        return cookies.get("JSESSIONID") in self.sessions

    def _change(self, category_id: str, request: FakeRequest) -> FakeResponse:
        category = self.categories[category_id]
        body = request.json()
        action = request.query.get("action")
        if not isinstance(body, dict) or body.get("configuredName") != category["configuredName"]:
            return _zia_invalid("configuredName is missing or does not match the category")
        urls = body.get("urls")
        if not isinstance(urls, list) or not all(isinstance(url, str) for url in urls):
            return _zia_invalid("urls must be a list of strings")
        bad = [url for url in urls if not self._acceptable(url)]
        if bad and action != "REMOVE_FROM_LIST":
            return _zia_invalid(f"Invalid URL: {bad[0][:60]}")

        current: list[str] = category["urls"]
        replacement = category
        if action is None:
            new = list(dict.fromkeys(urls))
            replacement = {**body, "id": category_id}
        elif action == "ADD_TO_LIST":
            new = current + [url for url in dict.fromkeys(urls) if url not in current]
        elif action == "REMOVE_FROM_LIST":
            gone = set(urls)
            new = [url for url in current if url not in gone]
        else:
            return _zia_invalid(f"unknown action {action}")

        if self.quota is not None and len(new) > self.quota:
            return _zia_invalid("URL quota exceeded")
        self.categories[category_id] = {**replacement, "urls": new}
        self.pending = True
        return FakeResponse(200, json.loads(json.dumps(self.categories[category_id])))

    def _acceptable(self, url: str) -> bool:
        return (
            0 < len(url) <= 1024
            and url.isascii()
            and not any(char.isspace() for char in url)
            and url not in self.refuse
        )


def _zia_invalid(message: str) -> FakeResponse:
    return FakeResponse(400, {"code": "INVALID_INPUT_ARGUMENT", "message": message})


class NetskopeFake(_Fake):
    """Netskope REST v2 URL lists: token header, pending changes and the tenant-wide deploy."""

    prefix = "ns"

    def __init__(self, token: str | None = None) -> None:
        super().__init__()
        self.token = token or f"ns-token-{secrets.token_hex(16)}"
        self.lists: dict[int, dict[str, Any]] = {}
        self._next_id = itertools.count(1)
        self.support_remove = True
        self.refuse: set[str] = set()
        self.deploys = 0

    def add_list(
        self, name: str, urls: list[str], *, kind: str = "exact", pending: bool = False
    ) -> int:
        with self.lock:
            list_id = next(self._next_id)
            self.lists[list_id] = {
                "id": list_id,
                "name": name,
                "type": kind,
                "urls": list(urls),
                "pending": pending,
                "deployed": None if pending else list(urls),
                "modify_type": "Created",
            }
            return list_id

    def by_name(self, name: str) -> dict[str, Any] | None:
        with self.lock:
            found = [item for item in self.lists.values() if item["name"] == name]
            return json.loads(json.dumps(found[0])) if found else None

    def _dispatch(self, request: FakeRequest) -> FakeResponse:
        if request.headers.get("netskope-api-token") != self.token:
            return FakeResponse(401, {"status": "error", "message": "Unauthorized"})
        base = "/api/v2/policy/urllist"
        if not request.path.startswith(base):
            return FakeResponse(404, {"status": "error", "message": "not found"})
        rest = request.path[len(base) :].strip("/")
        parts = rest.split("/") if rest else []

        if not parts:
            if request.method == "GET":
                return FakeResponse(200, [self._view(item) for item in self.lists.values()])
            if request.method == "POST":
                return self._create(request)
        elif parts == ["deploy"] and request.method == "POST":
            return self._deploy()
        elif parts[0].isdigit() and int(parts[0]) in self.lists:
            item = self.lists[int(parts[0])]
            if len(parts) == 1 and request.method == "GET":
                return FakeResponse(200, self._view(item))
            if len(parts) == 1 and request.method == "PUT":
                return self._write(item, request, "replace")
            if len(parts) == 2 and request.method == "PATCH":
                if parts[1] == "remove" and not self.support_remove:
                    return FakeResponse(404, {"status": "error", "message": "not found"})
                if parts[1] in ("append", "remove", "replace"):
                    return self._write(item, request, parts[1])
        return FakeResponse(404, {"status": "error", "message": "not found"})

    def _create(self, request: FakeRequest) -> FakeResponse:
        body = request.json()
        problem = self._body_problem(body, check_values=True)
        if problem:
            return FakeResponse(400, {"status": "error", "message": problem})
        assert isinstance(body, dict)
        if any(item["name"] == body["name"] for item in self.lists.values()):
            return FakeResponse(400, {"status": "error", "message": "name already exists"})
        list_id = next(self._next_id)
        self.lists[list_id] = {
            "id": list_id,
            "name": body["name"],
            "type": body["data"]["type"],
            "urls": list(dict.fromkeys(body["data"]["urls"])),
            "pending": True,
            "deployed": None,
            "modify_type": "Created",
        }
        return FakeResponse(200, [self._view(self.lists[list_id])])

    def _write(self, item: dict[str, Any], request: FakeRequest, action: str) -> FakeResponse:
        body = request.json()
        problem = self._body_problem(body, check_values=action != "remove")
        if problem:
            return FakeResponse(400, {"status": "error", "message": problem})
        assert isinstance(body, dict)
        urls: list[str] = body["data"]["urls"]
        if action == "append":
            item["urls"] = item["urls"] + [u for u in dict.fromkeys(urls) if u not in item["urls"]]
        elif action == "remove":
            gone = set(urls)
            item["urls"] = [url for url in item["urls"] if url not in gone]
        else:
            item["urls"] = list(dict.fromkeys(urls))
        item["pending"] = True
        item["modify_type"] = "Edited"
        return FakeResponse(200, self._view(item))

    def _deploy(self) -> FakeResponse:
        deployed = []
        for item in self.lists.values():
            if item["pending"]:
                item["deployed"] = list(item["urls"])
                item["pending"] = False
                deployed.append(self._view(item))
        self.deploys += 1
        return FakeResponse(200, deployed)

    def _body_problem(self, body: Any, *, check_values: bool) -> str | None:
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            return "name is required"
        data = body.get("data")
        if not isinstance(data, dict) or data.get("type") not in ("exact", "regex"):
            return "data.type must be exact or regex"
        urls = data.get("urls")
        if not isinstance(urls, list) or not all(isinstance(url, str) for url in urls):
            return "data.urls must be an array of strings"
        if check_values:
            for url in urls:
                if not self._acceptable(url):
                    return f"Invalid URL: {url[:60]}"
        return None

    def _acceptable(self, url: str) -> bool:
        star_ok = "*" not in url or (url.startswith("*.") and url.count("*") == 1)
        return (
            0 < len(url) <= 2048
            and url.isascii()
            and not any(char.isspace() for char in url)
            and not url.startswith(("#", ";"))
            and star_ok
            and url not in self.refuse
        )

    def _view(self, item: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": item["id"],
            "name": item["name"],
            "data": {"type": item["type"], "urls": list(item["urls"]), "json_version": 2},
            "modify_by": "test",
            "modify_time": "2025-01-01T00:00:00.000Z",
            "modify_type": item["modify_type"],
            "pending": 1 if item["pending"] else 0,
        }


def transport(fake: _Fake) -> httpx.MockTransport:
    """An httpx transport that hands each request to ``fake``."""

    def handle(request: httpx.Request) -> httpx.Response:
        answer = fake.handle(
            FakeRequest(
                method=request.method,
                path=request.url.path,
                query=dict(request.url.params),
                headers={name.lower(): value for name, value in request.headers.items()},
                body=request.read(),
            )
        )
        content = b"" if answer.body is None else json.dumps(answer.body).encode("utf-8")
        headers = {"Content-Type": "application/json", **answer.headers}
        return httpx.Response(answer.status, content=content, headers=headers)

    return httpx.MockTransport(handle)


@contextmanager
def serve(fake: _Fake) -> Iterator[str]:
    """Serve ``fake`` over real HTTP on a free 127.0.0.1 port; yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            parts = urlsplit(self.path)
            answer = fake.handle(
                FakeRequest(
                    method=self.command,
                    path=parts.path,
                    query=dict(parse_qsl(parts.query)),
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
            )
            content = b"" if answer.body is None else json.dumps(answer.body).encode("utf-8")
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(content)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        def log_message(self, format: str, *args: object) -> None:
            """Keep test output quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
