"""The lab tenant for tests: started in a thread on a free 127.0.0.1 port, stopped afterwards.

``FakeClock`` is shared by the lab (token expiry, call rates) and the clients (rate budgets,
Retry-After, back-off), so an hour of throttling passes in no real time. ``replay_server`` serves
canned responses (Microsoft's documented examples) for exact-parse tests.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.lab.faults import Fault
from pipeline.lab.server import LabConfig, LabServer
from pipeline.sources.auth import GRAPH_SCOPE, MDE_SCOPE, ClientCredentialsTokens
from pipeline.sources.graph import GraphClient
from pipeline.sources.http import ApiClient, RetryPolicy
from pipeline.sources.mde import MdeClient

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@dataclass
class FakeClock:
    """Monotonic time that only moves when someone sleeps or a test advances it."""

    now: float = 1_000.0
    sleeps: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.sleeps.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


@dataclass
class LabTenant:
    server: LabServer
    clock: FakeClock

    @property
    def config(self) -> LabConfig:
        return self.server.config

    def fault(self, kind: str, path: str, **options: Any) -> Fault:
        return self.server.faults.add(Fault(kind=kind, path=path, **options))

    def tokens(
        self, scope: str, clock: Callable[[], float] | None = None
    ) -> ClientCredentialsTokens:
        return ClientCredentialsTokens(
            self.server.token_url,
            self.config.client_id,
            self.config.client_secret,
            scope,
            clock=clock or self.clock,
        )

    def api(
        self,
        which: str = "mde",
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] | None = None,
    ) -> ApiClient:
        base = self.server.mde_url if which == "mde" else self.server.graph_url
        scope = MDE_SCOPE if which == "mde" else GRAPH_SCOPE
        return ApiClient(
            base,
            self.tokens(scope, clock),
            timeout=httpx.Timeout(timeout),
            retry=retry or RetryPolicy(),
            clock=self.clock,
            sleep=self.clock.sleep,
            rng=random.Random(7),
        )

    def clients(self, **options: Any) -> tuple[MdeClient, GraphClient]:
        page_size = options.pop("deviceavinfo_page_size", 200_000)
        list_size = options.pop("list_page_size", 10_000)
        mde = MdeClient(
            self.api("mde", **options),
            deviceavinfo_page_size=page_size,
            list_page_size=list_size,
        )
        return mde, GraphClient(self.api("graph", **options))


@contextmanager
def running_lab(devices: int = 1_200, **config: Any) -> Iterator[LabTenant]:
    clock = FakeClock()
    server = LabServer(LabConfig(devices=devices, clock=clock, **config)).start()
    try:
        yield LabTenant(server, clock)
    finally:
        server.stop()


@pytest.fixture
def lab_tenant() -> Iterator[LabTenant]:
    with running_lab() as lab:
        yield lab


@dataclass
class Canned:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@contextmanager
def replay_server(routes: dict[tuple[str, str], list[Canned]]) -> Iterator[tuple[str, list[Any]]]:
    """Serve canned answers per (method, path), in order; yields (base URL, requests seen)."""
    seen: list[Any] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path.split("?")[0]
            seen.append(
                (self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            queue = routes.get((self.command, path)) or [
                Canned(404, {"error": {"code": "NotFound"}})
            ]
            canned = queue.pop(0) if len(queue) > 1 else queue[0]
            payload = (
                b""
                if canned.body is None
                else (
                    canned.body
                    if isinstance(canned.body, bytes)
                    else json.dumps(canned.body).encode()
                )
            )
            self.send_response(canned.status)
            for name, value in canned.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _answer

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def fixture_json(*parts: str) -> Any:
    return json.loads(FIXTURES.joinpath(*parts).read_text(encoding="utf-8"))
