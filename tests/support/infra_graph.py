"""A local stand-in for the Microsoft Graph calls the post-deployment scripts make.

It speaks the documented shapes for service principals and their appRoleAssignments, groups,
and Intune configuration policies with their settings, assignments and the ``assign`` action,
keeps state in memory, checks the bearer token, pages collections with @odata.nextLink, and
records every write so tests can assert what a script changed.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

TOKEN = "test-graph-token"
DEFENDER_APP_ID = "fc780465-2017-40d4-a0c5-307022471b92"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
PAGE_SIZE = 2


def _roles(*values: str) -> list[dict[str, Any]]:
    return [
        {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, v)),
            "value": v,
            "allowedMemberTypes": ["Application"],
        }
        for v in values
    ]


@dataclass
class GraphState:
    identity_id: str = "11111111-2222-3333-4444-555555555555"
    service_principals: dict[str, dict[str, Any]] = field(default_factory=dict)
    assignments: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    policies: list[dict[str, Any]] = field(default_factory=list)
    policy_assignments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    writes: list[tuple[str, str]] = field(default_factory=list)

    def role_id(self, app_id: str, value: str) -> str:
        sp = self.service_principals[app_id]
        return next(r["id"] for r in sp["appRoles"] if r["value"] == value)


def default_state() -> GraphState:
    state = GraphState()
    state.service_principals[DEFENDER_APP_ID] = {
        "id": "aaaaaaaa-0000-0000-0000-00000000000a",
        "appId": DEFENDER_APP_ID,
        "displayName": "WindowsDefenderATP",
        "appRoles": _roles(
            "Machine.Read.All",
            "Ti.ReadWrite.All",
            "Ti.ReadWrite.All",
            "AdvancedQuery.Read.All",
            "Machine.ReadWrite.All",
            "Machine.Offboard",
        ),
    }
    state.service_principals[GRAPH_APP_ID] = {
        "id": "bbbbbbbb-0000-0000-0000-00000000000b",
        "appId": GRAPH_APP_ID,
        "displayName": "Microsoft Graph",
        "appRoles": _roles(
            "Device.ReadWrite.All",
            "GroupMember.ReadWrite.All",
            "ThreatHunting.Read.All",
            "User.Read.All",
        ),
    }
    state.service_principals[state.identity_id] = {
        "id": state.identity_id,
        "displayName": "id-pipeline",
        "appRoles": [],
    }
    return state


class _Handler(BaseHTTPRequestHandler):
    server: GraphServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, {"error": {"code": "InvalidAuthenticationToken", "message": "no"}})
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        parts = urlsplit(self.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        with self.server.lock:
            status, payload = self.server.route(method, path, query, body)
        self._send(status, payload)

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode() if payload is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class GraphServer(ThreadingHTTPServer):
    def __init__(self, state: GraphState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state
        self.lock = threading.Lock()
        self.fail_next_post: int | None = None

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def _page(self, items: list[dict[str, Any]], path: str, query: dict[str, list[str]]) -> Any:
        skip = int(query.get("$skip", ["0"])[0])
        page: dict[str, Any] = {"value": items[skip : skip + PAGE_SIZE]}
        if skip + PAGE_SIZE < len(items):
            page["@odata.nextLink"] = f"{self.base_url}{path}?$skip={skip + PAGE_SIZE}"
        return page

    def route(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        state = self.state
        not_found = (404, {"error": {"code": "Request_ResourceNotFound", "message": path}})
        if method in ("POST", "DELETE"):
            if self.fail_next_post is not None:
                status, self.fail_next_post = self.fail_next_post, None
                return status, {"error": {"code": "Authorization_RequestDenied", "message": "no"}}
            state.writes.append((method, path))

        if m := re.fullmatch(r"/v1\.0/servicePrincipals\(appId='([^']+)'\)", path):
            sp = state.service_principals.get(m.group(1))
            return (200, sp) if sp else not_found
        if m := re.fullmatch(r"/v1\.0/servicePrincipals/([^/]+)", path):
            sp = state.service_principals.get(m.group(1))
            return (200, sp) if sp else not_found
        if m := re.fullmatch(r"/v1\.0/servicePrincipals/([^/]+)/appRoleAssignments", path):
            mine = [a for a in state.assignments if a["principalId"] == m.group(1)]
            if method == "GET":
                return 200, self._page(mine, path, query)
            assignment = {"id": uuid.uuid4().hex, **body}
            state.assignments.append(assignment)
            return 201, assignment
        if m := re.fullmatch(r"/v1\.0/servicePrincipals/[^/]+/appRoleAssignments/([^/]+)", path):
            state.assignments = [a for a in state.assignments if a["id"] != m.group(1)]
            return 204, None
        if path == "/v1.0/groups":
            if method == "GET":
                wanted = re.fullmatch(r"displayName eq '(.*)'", query["$filter"][0])
                name = wanted.group(1).replace("''", "'") if wanted else None
                found = [g for g in state.groups if g["displayName"] == name]
                return 200, self._page(found, path, query)
            group = {"id": str(uuid.uuid4()), **body}
            state.groups.append(group)
            return 201, group
        if path == "/beta/deviceManagement/configurationPolicies":
            if method == "GET":
                listed = [{"id": p["id"], "name": p["name"]} for p in state.policies]
                return 200, self._page(listed, path, query)
            policy = {"id": str(uuid.uuid4()), **body}
            state.policies.append(policy)
            return 201, policy
        if m := re.fullmatch(r"/beta/deviceManagement/configurationPolicies/([^/]+)/(\w+)", path):
            policy = next((p for p in state.policies if p["id"] == m.group(1)), None)
            if policy is None:
                return not_found
            assignments = state.policy_assignments.setdefault(policy["id"], [])
            if m.group(2) == "settings":
                return 200, self._page(policy["settings"], path, query)
            if m.group(2) == "assignments":
                return 200, self._page(assignments, path, query)
            if m.group(2) == "assign" and method == "POST":
                state.policy_assignments[policy["id"]] = body["assignments"]
                return 200, {"value": body["assignments"]}
        return not_found


@contextlib.contextmanager
def running_graph_server() -> Iterator[GraphServer]:
    """A fresh Graph stand-in on a free 127.0.0.1 port, stopped on exit."""
    server = GraphServer(default_state())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
