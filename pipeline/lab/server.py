"""The lab tenant's HTTP server: Defender for Endpoint, Graph and an OAuth token endpoint.

It is a lab, not a mock: it answers with Microsoft's JSON shapes and error bodies and enforces the
rules the real services document, so a client that works here has a fair chance in a tenant:

* a bearer token from the token endpoint (client-credentials grant) on every API call, for the
  right resource (an MDE token is refused by Graph and the other way round), expiring on time;
* ``$top`` limits (10,000 for machines and indicators; 200,000 for deviceavinfo) and paging by
  ``@odata.nextLink`` (deviceavinfo, indicators, group members) or ``$skip`` (machines);
* per-endpoint call rates (deviceavinfo 30 a minute and 1,000 an hour; machines, indicators and
  tags 100 a minute and 1,500 an hour; hunting 45 a minute) answered with 429 and Retry-After;
* case-sensitive request bodies where MDE documents them (``Value``/``Action``, ``Query``).

Routes, relative to ``base_url``::

    POST /{tenant}/oauth2/v2.0/token                      OAuth 2.0 client credentials
    GET  /api/deviceavinfo | /api/machines | /api/indicators
    GET  /api/machines/{id}          POST /api/machines/{id}/tags
    POST /api/advancedqueries/run
    POST /v1.0/security/runHuntingQuery
    GET  /v1.0/devices(deviceId='{id}')
    GET  /v1.0/groups/{id}/members   POST /v1.0/groups/{id}/members/$ref
    POST /_lab/faults (add one, see pipeline.lab.faults)   DELETE /_lab/faults (clear)

Faults are injected per request (:mod:`pipeline.lab.faults`). The clock used for tokens and call
rates is injectable, so tests can move time on without waiting.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import re
import secrets
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pipeline.lab.faults import Fault, FaultPlan
from pipeline.lab.fleet import DEFAULT_DEVICES, DEFAULT_SEED, Fleet
from pipeline.lab.indicators import contoso_indicators
from pipeline.sources.hunting import DevicePart, tvm_info_gathering_query

log = logging.getLogger(__name__)

MDE_RESOURCES = (
    "https://api.securitycenter.microsoft.com",
    "https://api.security.microsoft.com",
    "https://securitycenter.onmicrosoft.com/windowsatpservice",
)
GRAPH_RESOURCE = "https://graph.microsoft.com"

# (calls, seconds) windows per endpoint, as Microsoft documents them for each API.
SERVER_LIMITS: dict[str, tuple[tuple[int, float], ...]] = {
    "deviceavinfo": ((30, 60), (1000, 3600)),
    "machines": ((100, 60), (1500, 3600)),
    "indicators": ((100, 60), (1500, 3600)),
    "machine-tags": ((100, 60), (1500, 3600)),
    "advancedqueries": ((45, 60), (1500, 3600)),
    "hunting": ((45, 60),),
}

_CHUNK_BYTES = 256 * 1024
_HUNTING_RESULTS = "microsoft.graph.security.huntingQueryResults"
_PART_PREFIX = re.compile(r'DeviceId startswith "([0-9a-f]{1,8})"')
_DEVICE_KEY = re.compile(r"^/v1\.0/devices\(deviceId='([^']*)'\)$")
_MEMBERS_REF = re.compile(r"^/v1\.0/groups/([^/]+)/members/\$ref$")
_MEMBERS = re.compile(r"^/v1\.0/groups/([^/]+)/members$")
_MACHINE = re.compile(r"^/api/machines/([0-9a-fA-F]{40})(/tags)?$")


@dataclass
class LabConfig:
    devices: int = DEFAULT_DEVICES
    seed: int = DEFAULT_SEED
    token_lifetime: int = 3599
    deviceavinfo_max_top: int = 200_000
    deviceavinfo_default_top: int = 20
    list_max_top: int = 10_000
    machines_next_link: bool = False  # Microsoft documents $skip paging for /api/machines
    hunting_max_rows: int = 100_000
    # Advanced hunting refuses an answer larger than 124 MB with a 400 instead of cutting it.
    hunting_max_bytes: int = 124 * 2**20
    group_page_size: int = 100
    enforce_rate_limits: bool = True
    clock: Callable[[], float] = time.monotonic
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @property
    def tenant_id(self) -> str:
        return str(uuid.UUID(hashlib.sha256(f"tenant:{self.seed}".encode()).hexdigest()[:32]))

    @property
    def client_id(self) -> str:
        return str(uuid.UUID(hashlib.sha256(f"client:{self.seed}".encode()).hexdigest()[:32]))

    @property
    def edr_block_group_id(self) -> str:
        """The Entra group an EDR-block-mode policy would be assigned to."""
        return str(uuid.UUID(hashlib.sha256(f"group:{self.seed}".encode()).hexdigest()[:32]))


@dataclass
class RequestRecord:
    method: str
    path: str
    query: str
    endpoint: str
    status: int


class _Reply:
    """What a route answers: a status, headers and a body (bytes or a stream of chunks)."""

    def __init__(
        self,
        status: int,
        body: Any = None,
        *,
        stream: Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.stream = stream
        self.headers = headers or {}
        self.body_fault: Fault | None = None  # truncate or disconnect the body on the way out


class LabServer:
    """Start with ``start()`` (or as a context manager); stop with ``stop()``."""

    def __init__(self, config: LabConfig | None = None, *, port: int = 0) -> None:
        self.config = config or LabConfig()
        self.fleet = Fleet(self.config.devices, self.config.seed)
        self.indicators = contoso_indicators()
        self.faults = FaultPlan()
        self.requests: list[RequestRecord] = []
        self.tokens_issued = 0
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (resource, expires at)
        self._tags: dict[int, list[str]] = {}
        self._groups: dict[str, list[str]] = {self.config.edr_block_group_id: []}
        self._windows: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.lab = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def mde_url(self) -> str:
        return self.base_url

    @property
    def graph_url(self) -> str:
        return f"{self.base_url}/v1.0"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/{self.config.tenant_id}/oauth2/v2.0/token"

    def start(self) -> LabServer:
        # A short poll interval lets stop() return quickly; tests start and stop many labs.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="lab-tenant", daemon=True
        )
        self._thread.start()
        log.info("lab tenant with %d devices at %s", self.fleet.size, self.base_url)
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> LabServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # --- what tests may look at -----------------------------------------------------------------

    def issue_token(self, resource: str) -> str:
        token = "lab." + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = (resource, self.config.clock() + self.config.token_lifetime)
            self.tokens_issued += 1
        return token

    def group_members(self, group_id: str) -> list[str]:
        with self._lock:
            return list(self._groups.get(group_id, []))

    def machine_tags(self, machine_id: str) -> list[str]:
        index = self.fleet.index_of_machine_id(machine_id)
        if index is None:
            raise KeyError(machine_id)
        return list(self.fleet.machine_record(index, self._tags.get(index))["machineTags"])

    def served(self, endpoint: str) -> int:
        """Requests to ``endpoint`` (e.g. "deviceavinfo") that got a 2xx answer."""
        return sum(
            1 for r in list(self.requests) if r.endpoint == endpoint and 200 <= r.status < 300
        )

    # --- request handling -----------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[_Reply, str]:
        """Route one request; returns the reply and the endpoint name it counted against."""
        parts = urlsplit(raw_path)
        path, query = unquote(parts.path), parse_qs(parts.query, keep_blank_values=True)
        endpoint, api = _classify(method, path, self.config.tenant_id)

        fault = self.faults.take(method, path) if api != "control" else None
        if fault is not None and fault.kind == "slow":
            self._stopping.wait(fault.delay)

        if api == "token":
            return self._token(body), endpoint
        if api == "control":
            return self._control(method, body), endpoint
        if api == "unknown":
            return _error(404, "ResourceNotFound", f"No route for {method} {path}"), endpoint

        denied = self._check_token(headers.get("Authorization"), api, fault)
        if denied is not None:
            return denied, endpoint
        throttled = self._check_rate(endpoint)
        if throttled is not None:
            return throttled, endpoint
        if fault is not None and fault.kind == "throttle":
            return _throttled(endpoint, fault.retry_after, "injected"), endpoint
        if fault is not None and fault.kind == "error":
            code = "InternalServerError" if fault.status >= 500 else "BadRequest"
            return _error(fault.status, code, "Injected fault"), endpoint

        try:
            reply = self._route(
                method, path=path, query=query, body=body, endpoint=endpoint, fault=fault
            )
        except _NotFound as exc:
            reply = _error(404, exc.code, exc.message)
        except _BadRequest as exc:
            reply = _error(400, exc.code, exc.message)
        if fault is not None and fault.kind in ("truncate", "disconnect") and reply.status < 300:
            reply.body_fault = fault
        return reply, endpoint

    def _route(
        self,
        method: str,
        *,
        path: str,
        query: dict[str, list[str]],
        body: bytes,
        endpoint: str,
        fault: Fault | None,
    ) -> _Reply:
        repeat = fault is not None and fault.kind == "repeat-next-link"
        if endpoint == "deviceavinfo":
            return self._deviceavinfo(query, repeat)
        if endpoint == "machines":
            return self._machines(query, repeat)
        if endpoint == "indicators":
            return self._indicators(query, repeat)
        if endpoint == "machine":
            return self._machine(path)
        if endpoint == "machine-tags":
            return self._machine_tags(path, body)
        if endpoint == "advancedqueries":
            return self._hunting(body, graph=False)
        if endpoint == "hunting":
            return self._hunting(body, graph=True)
        if endpoint == "graph-devices":
            return self._entra_device(path, query)
        if endpoint == "graph-members-ref":
            return self._add_member(path, body)
        if endpoint == "graph-members":
            return self._members(path, query, repeat)
        return _error(405, "MethodNotAllowed", f"{method} is not allowed here")

    # --- auth -----------------------------------------------------------------------------------

    def _token(self, body: bytes) -> _Reply:
        form = {key: values[0] for key, values in parse_qs(body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "AADSTS70003", "grant not supported")
        if form.get("client_id") != self.config.client_id or not secrets.compare_digest(
            form.get("client_secret", ""), self.config.client_secret
        ):
            return _oauth_error(401, "invalid_client", "AADSTS7000215", "Invalid client secret")
        scope = form.get("scope", "")
        resource = scope.removesuffix("/.default")
        if not scope.endswith("/.default") or resource not in (*MDE_RESOURCES, GRAPH_RESOURCE):
            return _oauth_error(400, "invalid_scope", "AADSTS70011", f"scope {scope!r} is invalid")
        token = self.issue_token(resource)
        lifetime = self.config.token_lifetime
        return _Reply(
            200,
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token,
            },
        )

    def _check_token(self, header: str | None, api: str, fault: Fault | None) -> _Reply | None:
        graph = api == "graph"
        if not header or not header.startswith("Bearer ") or not header[7:].strip():
            return _unauthorized(graph, "Authorization header is missing or empty")
        token = header[7:].strip()
        with self._lock:
            issued = self._tokens.get(token)
        if issued is None:
            return _unauthorized(graph, "The access token is invalid")
        resource, expires_at = issued
        if self.config.clock() >= expires_at or (
            fault is not None and fault.kind == "expire-token"
        ):
            return _unauthorized(graph, "Lifetime validation failed, the token is expired")
        if (resource == GRAPH_RESOURCE) != graph:
            return _unauthorized(graph, f"The token's audience {resource} is not this API")
        return None

    def _check_rate(self, endpoint: str) -> _Reply | None:
        limits = SERVER_LIMITS.get(endpoint)
        if not limits or not self.config.enforce_rate_limits:
            return None
        with self._lock:
            now = self.config.clock()
            window = self._windows.setdefault(endpoint, deque())
            horizon = max(seconds for _, seconds in limits)
            while window and window[0] <= now - horizon:
                window.popleft()
            for calls, seconds in limits:
                recent = [t for t in window if t > now - seconds]
                if len(recent) >= calls:
                    wait = recent[-calls] + seconds - now
                    return _throttled(
                        endpoint, max(1, math.ceil(wait)), f"{calls} per {seconds:g}s"
                    )
            window.append(now)
        return None

    def _control(self, method: str, body: bytes) -> _Reply:
        if method == "DELETE":
            self.faults.clear()
            return _Reply(204)
        try:
            fault = self.faults.add(Fault.from_json(json.loads(body or b"null")))
        except (ValueError, TypeError) as exc:
            return _error(400, "InvalidRequestBody", str(exc))
        return _Reply(201, {"kind": fault.kind, "path": fault.path, "times": fault.times})

    # --- MDE ------------------------------------------------------------------------------------

    def _deviceavinfo(self, query: dict[str, list[str]], repeat: bool) -> _Reply:
        top = _int_param(query, "$top", self.config.deviceavinfo_default_top)
        skip = _int_param(query, "$skip", 0)
        _check_top(top, self.config.deviceavinfo_max_top)
        _refuse_filter(query)
        stop = min(self.fleet.size, skip + top)
        records = (self.fleet.deviceavinfo_record(i) for i in range(skip, stop))
        next_link = self._next(
            "/api/deviceavinfo", top, stop if not repeat else skip, stop < self.fleet.size, repeat
        )
        return _Reply(200, stream=_page("DeviceAvInfo", self.mde_url, records, next_link))

    def _machines(self, query: dict[str, list[str]], repeat: bool) -> _Reply:
        top = _int_param(query, "$top", self.config.list_max_top)
        skip = _int_param(query, "$skip", 0)
        _check_top(top, self.config.list_max_top)
        _refuse_filter(query)
        total = self.fleet.size + self.fleet.discovered
        if total == 0:
            return _error(404, "NotFound", "No recent machines were found")
        stop = min(total, skip + top)
        records = (self.fleet.machine_record(i, self._tags.get(i)) for i in range(skip, stop))
        more = stop < total and self.config.machines_next_link
        next_link = self._next("/api/machines", top, stop if not repeat else skip, more, repeat)
        return _Reply(200, stream=_page("Machines", self.mde_url, records, next_link))

    def _indicators(self, query: dict[str, list[str]], repeat: bool) -> _Reply:
        top = _int_param(query, "$top", self.config.list_max_top)
        skip = _int_param(query, "$skip", 0)
        _check_top(top, self.config.list_max_top)
        _refuse_filter(query)
        stop = min(len(self.indicators), skip + top)
        more = stop < len(self.indicators)
        next_link = self._next("/api/indicators", top, stop if not repeat else skip, more, repeat)
        page = iter(self.indicators[skip:stop])
        return _Reply(200, stream=_page("Indicators", self.mde_url, page, next_link))

    def _next(self, path: str, top: int, skip: int, more: bool, repeat: bool) -> str | None:
        if not (more or repeat):
            return None
        return f"{self.mde_url}{path}?$top={top}&$skip={skip}"

    def _machine(self, path: str) -> _Reply:
        index = self._machine_index(path)
        return _Reply(200, self._with_context("Machines/$entity", index))

    def _machine_tags(self, path: str, body: bytes) -> _Reply:
        index = self._machine_index(path)
        request = _json_body(body)
        # MDE body parameters are case-sensitive: "value" or "action" is not accepted.
        if set(request) != {"Value", "Action"} or not isinstance(request["Value"], str):
            raise _BadRequest("InvalidRequestBody", "Expected exactly the parameters Value, Action")
        if request["Action"] not in ("Add", "Remove") or not request["Value"].strip():
            raise _BadRequest("InvalidRequestBody", "Action must be Add or Remove")
        with self._lock:
            tags = self._tags.setdefault(
                index, list(self.fleet.machine_record(index)["machineTags"])
            )
            if request["Action"] == "Add" and request["Value"] not in tags:
                tags.append(request["Value"])
            if request["Action"] == "Remove" and request["Value"] in tags:
                tags.remove(request["Value"])
        return _Reply(200, self._with_context("Machines/$entity", index))

    def _machine_index(self, path: str) -> int:
        match = _MACHINE.match(path)
        index = self.fleet.index_of_machine_id(match.group(1)) if match else None
        if index is None:
            raise _NotFound("ResourceNotFound", f"Machine {path.split('/')[3]} was not found")
        return index

    def _with_context(self, entity: str, index: int) -> dict[str, Any]:
        record = self.fleet.machine_record(index, self._tags.get(index))
        return {"@odata.context": f"{self.mde_url}/api/$metadata#{entity}", **record}

    def _hunting(self, body: bytes, *, graph: bool) -> _Reply:
        request = _json_body(body)
        # Graph reads JSON property names without regard to case; the MDE API does not.
        keys = {key.lower() if graph else key: value for key, value in request.items()}
        query = keys.get("query" if graph else "Query")
        if not isinstance(query, str) or not query.strip():
            raise _BadRequest("MissingRequiredParameter", "Query is required")
        part = _tvm_query_part(query)
        if part is None:
            raise _BadRequest(
                "BadRequest",
                "The lab answers only the pipeline's DeviceTvmInfoGathering query, "
                "optionally filtered by device-id prefix",
            )
        rows = [self.fleet.tvm_row(i) for i in self._hunting_indices(part)]
        if sum(len(json.dumps(row)) + 1 for row in rows) > self.config.hunting_max_bytes:
            raise _BadRequest(
                "BadRequest",
                "Query execution has exceeded the allowed result size. Optimize your query by "
                "limiting the number of results and try again.",
            )
        names = ("Timestamp", "DeviceId", "DeviceName", "OSPlatform", "AdditionalFields")
        types = ("DateTime", "String", "String", "String", "Dynamic")
        if graph:
            schema = [{"name": n, "type": t} for n, t in zip(names, types, strict=True)]
            answer = {
                "@odata.context": f"{self.graph_url}/$metadata#{_HUNTING_RESULTS}",
                "schema": schema,
                "results": rows,
            }
        else:
            schema = [{"Name": n, "Type": t} for n, t in zip(names, types, strict=True)]
            answer = {"Schema": schema, "Results": rows}
        return _Reply(200, answer)

    def _hunting_indices(self, part: DevicePart) -> Iterator[int]:
        """The devices in ``part``, stopping at the row cap as advanced hunting does."""
        head = self.fleet.machine_id_head
        matching = (i for i in range(self.fleet.size) if part.matches(head(i)))
        return itertools.islice(matching, self.config.hunting_max_rows)

    # --- Graph ----------------------------------------------------------------------------------

    def _entra_device(self, path: str, query: dict[str, list[str]]) -> _Reply:
        match = _DEVICE_KEY.match(path)
        device_id = match.group(1) if match else ""
        index = self.fleet.index_of_aad_device_id(device_id)
        if index is None:
            raise _NotFound(
                "Request_ResourceNotFound",
                f"Resource '{device_id}' does not exist or one of its queried reference-property "
                "objects are not present.",
            )
        device = self.fleet.entra_device(index)
        selected = query.get("$select", [""])[0]
        if selected:
            wanted = set(selected.split(","))
            device = {key: value for key, value in device.items() if key in wanted}
        return _Reply(
            200, {"@odata.context": f"{self.graph_url}/$metadata#devices/$entity", **device}
        )

    def _add_member(self, path: str, body: bytes) -> _Reply:
        group_id = _MEMBERS_REF.match(path).group(1)  # type: ignore[union-attr]
        reference = _json_body(body).get("@odata.id")
        object_id = reference.rstrip("/").rsplit("/", 1)[-1] if isinstance(reference, str) else ""
        if not isinstance(reference, str) or "/directoryObjects/" not in reference:
            raise _BadRequest("Request_BadRequest", "Invalid @odata.id: a directoryObjects URL")
        with self._lock:
            members = self._groups.get(group_id)
            if members is None:
                raise _NotFound("Request_ResourceNotFound", f"Resource '{group_id}' does not exist")
            if self.fleet.index_of_entra_object(object_id) is None:
                raise _NotFound(
                    "Request_ResourceNotFound", f"Resource '{object_id}' does not exist"
                )
            if object_id in members:
                raise _BadRequest(
                    "Request_BadRequest",
                    "One or more added object references already exist for the following "
                    "modified properties: 'members'.",
                )
            members.append(object_id)
        return _Reply(204)

    def _members(self, path: str, query: dict[str, list[str]], repeat: bool) -> _Reply:
        group_id = _MEMBERS.match(path).group(1)  # type: ignore[union-attr]
        members = self.group_members(group_id)
        if group_id not in self._groups:
            raise _NotFound("Request_ResourceNotFound", f"Resource '{group_id}' does not exist")
        skip = _int_param(query, "$skiptoken", 0)
        stop = min(len(members), skip + self.config.group_page_size)
        records = []
        for object_id in members[skip:stop]:
            index = self.fleet.index_of_entra_object(object_id)
            device = self.fleet.entra_device(index) if index is not None else {"id": object_id}
            records.append({"@odata.type": "#microsoft.graph.device", **device})
        more = stop < len(members)
        next_link = (
            f"{self.graph_url}/groups/{group_id}/members?$skiptoken={skip if repeat else stop}"
            if more or repeat
            else None
        )
        context = f"{self.graph_url}/$metadata#directoryObjects"
        return _Reply(200, stream=_page(None, context, iter(records), next_link))


class _BadRequest(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class _NotFound(_BadRequest):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LabTenant/1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("lab: %s", format % args)

    def _serve(self, method: str) -> None:
        lab: LabServer = self.server.lab  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        reply, endpoint = lab.handle(method, self.path, self.headers, body)
        lab.requests.append(RequestRecord(method, parts.path, parts.query, endpoint, reply.status))
        try:
            self._write(reply)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _write(self, reply: _Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("request-id", str(uuid.uuid4()))
        if reply.stream is not None and reply.body_fault is None:
            self._write_chunked(reply.stream)
            return

        if reply.stream is not None:
            payload = b"".join(reply.stream)
        else:
            payload = b"" if reply.body is None else json.dumps(reply.body).encode("utf-8")
        fault = reply.body_fault
        cut = payload if fault is None else payload[: int(len(payload) * fault.fraction)]
        if payload:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        # truncate: a complete HTTP message whose JSON stops part way;
        # disconnect: the full length is announced, then the connection drops early.
        announced = cut if fault is not None and fault.kind == "truncate" else payload
        self.send_header("Content-Length", str(len(announced)))
        self.end_headers()
        self.wfile.write(cut)
        if fault is not None and fault.kind == "disconnect":
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    def _write_chunked(self, stream: Iterable[bytes]) -> None:
        self.send_header("Content-Type", "application/json; odata.metadata=minimal; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in stream:
            if chunk:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")


def _classify(method: str, path: str, tenant_id: str) -> tuple[str, str]:
    """(endpoint name for limits and logs, api: mde | graph | token | control | unknown)."""
    if path == f"/{tenant_id}/oauth2/v2.0/token" and method == "POST":
        return "token", "token"
    if path == "/_lab/faults" and method in ("POST", "DELETE"):
        return "lab-faults", "control"
    mde_routes = {
        ("GET", "/api/deviceavinfo"): "deviceavinfo",
        ("GET", "/api/machines"): "machines",
        ("GET", "/api/indicators"): "indicators",
        ("POST", "/api/advancedqueries/run"): "advancedqueries",
    }
    if (method, path) in mde_routes:
        return mde_routes[(method, path)], "mde"
    machine = _MACHINE.match(path)
    if machine and method == ("POST" if machine.group(2) else "GET"):
        return ("machine-tags" if machine.group(2) else "machine"), "mde"
    if path == "/v1.0/security/runHuntingQuery" and method == "POST":
        return "hunting", "graph"
    if _DEVICE_KEY.match(path) and method == "GET":
        return "graph-devices", "graph"
    if _MEMBERS_REF.match(path) and method == "POST":
        return "graph-members-ref", "graph"
    if _MEMBERS.match(path) and method == "GET":
        return "graph-members", "graph"
    return "unknown", "unknown"


def _page(
    entity: str | None, base_or_context: str, records: Iterator[Any], next_link: str | None
) -> Iterator[bytes]:
    """An OData page, produced record by record in chunks; the next link follows the value."""
    context = f"{base_or_context}/api/$metadata#{entity}" if entity else base_or_context
    parts = [f'{{"@odata.context":{json.dumps(context)},"value":[']
    size = 0
    first = True
    for record in records:
        text = json.dumps(record, separators=(",", ":"))
        parts.append(text if first else "," + text)
        first = False
        size += len(text) + 1
        if size >= _CHUNK_BYTES:
            yield "".join(parts).encode("utf-8")
            parts, size = [], 0
    parts.append("]")
    if next_link:
        parts.append(f',"@odata.nextLink":{json.dumps(next_link)}')
    parts.append("}")
    yield "".join(parts).encode("utf-8")


def _error(status: int, code: str, message: str) -> _Reply:
    return _Reply(
        status, {"error": {"code": code, "message": message, "target": str(uuid.uuid4())}}
    )


def _throttled(endpoint: str, retry_after: int, why: str) -> _Reply:
    reply = _error(
        429,
        "TooManyRequests",
        f"API calls quota exceeded for {endpoint} ({why}). Try again in {retry_after} seconds.",
    )
    reply.headers["Retry-After"] = str(retry_after)
    return reply


def _unauthorized(graph: bool, message: str) -> _Reply:
    reply = _error(401, "InvalidAuthenticationToken" if graph else "Unauthorized", message)
    reply.headers["WWW-Authenticate"] = (
        f'Bearer error="invalid_token", error_description="{message}"'
    )
    return reply


def _oauth_error(status: int, error: str, aadsts: str, message: str) -> _Reply:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return _Reply(
        status,
        {
            "error": error,
            "error_description": f"{aadsts}: {message}. Timestamp: {now}",
            "error_codes": [int(aadsts[6:])],
            "timestamp": now,
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
        },
    )


def _tvm_query_part(query: str) -> DevicePart | None:
    """Which devices a hunting query asks for, if it is the pipeline's own TVM query.

    The lab runs no KQL: it recognises the query text the pipeline sends (whole, or split by
    device-id prefix) and answers nothing else, so a changed query fails here, not in a tenant.
    """
    text = " ".join(query.split())
    found = _PART_PREFIX.search(text)
    part = DevicePart(found.group(1) if found else "", rest="matches regex" in text)
    return part if tvm_info_gathering_query(part) == text else None


def _int_param(query: dict[str, list[str]], name: str, default: int) -> int:
    if name not in query:
        return default
    value = query[name][0]
    if not value.isdigit():
        raise _BadRequest("BadRequest", f"Invalid value for {name}: {value!r}")
    return int(value)


def _check_top(top: int, maximum: int) -> None:
    if not 1 <= top <= maximum:
        raise _BadRequest("BadRequest", f"$top must be between 1 and {maximum}, got {top}")


def _refuse_filter(query: dict[str, list[str]]) -> None:
    if "$filter" in query:
        raise _BadRequest("BadRequest", "The lab tenant does not evaluate $filter")


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"null")
    except ValueError as exc:
        raise _BadRequest("InvalidRequestBody", f"Request body is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise _BadRequest("InvalidRequestBody", "Request body must be a JSON object")
    return value
