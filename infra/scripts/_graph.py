"""A small Microsoft Graph client for the post-deployment scripts, standard library only.

The scripts run where `azd` or an administrator runs, often without the project's virtual
environment, so they use urllib and take the administrator's token from the Azure CLI
(`az account get-access-token --resource-type ms-graph`) or from GRAPH_ACCESS_TOKEN. The token
is sent only to the Graph host it was given for and is never printed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DEFAULT_GRAPH_URL = "https://graph.microsoft.com"
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_TIMEOUT_SECONDS = 60


class GraphError(Exception):
    """A Graph call failed; the message names the call, the status and Graph's error code."""

    def __init__(self, method: str, path: str, status: int, code: str, message: str) -> None:
        super().__init__(f"{method} {path} answered {status} {code}: {message}")
        self.status = status
        self.code = code


class Graph:
    def __init__(self, base_url: str, token: str) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        # Plain HTTP only to a local test server; a real tenant is always HTTPS.
        if parsed.scheme != "https" and not (
            parsed.scheme == "http" and parsed.hostname in _LOOPBACK_HOSTS
        ):
            raise ValueError(f"Graph URL must be https: {base_url}")
        self.base_url = base_url.rstrip("/")
        self._origin = (parsed.scheme, parsed.netloc)
        self._token = token

    def request(self, method: str, path: str, body: Any = None) -> Any:
        url = path if path.startswith(("https://", "http://")) else self.base_url + path
        parsed = urllib.parse.urlsplit(url)
        if (parsed.scheme, parsed.netloc) != self._origin:
            # A nextLink pointing elsewhere must not receive the token.
            raise GraphError(method, path, 0, "UnexpectedHost", f"refusing to call {parsed.netloc}")

        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (scheme checked above)
        request.add_header("Authorization", f"Bearer {self._token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")

        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT_SECONDS) as response:  # noqa: S310
                payload = response.read()
        except urllib.error.HTTPError as error:
            code, message = _error_details(error.read())
            raise GraphError(method, parsed.path, error.code, code, message) from None
        except urllib.error.URLError as error:
            raise GraphError(method, parsed.path, 0, "Unreachable", str(error.reason)) from None
        return json.loads(payload) if payload else None

    def get_all(self, path: str) -> list[dict[str, Any]]:
        """Every item of a collection, following @odata.nextLink."""
        items: list[dict[str, Any]] = []
        next_path: str | None = path
        while next_path:
            page = self.request("GET", next_path)
            items.extend(page.get("value", []))
            next_path = page.get("@odata.nextLink")
        return items


def _error_details(body: bytes) -> tuple[str, str]:
    try:
        error = json.loads(body).get("error", {})
        return str(error.get("code", "")), str(error.get("message", ""))
    except (ValueError, AttributeError):
        return "", body[:200].decode("utf-8", "replace")


def graph_token() -> str:
    """GRAPH_ACCESS_TOKEN if set, else a token for Graph from the signed-in Azure CLI."""
    token = os.environ.get("GRAPH_ACCESS_TOKEN", "").strip()
    if token:
        return token
    az = shutil.which("az")
    if az is None:
        raise SystemExit("sign in with the Azure CLI (az login) or set GRAPH_ACCESS_TOKEN")
    command = [az, "account", "get-access-token", "--resource-type", "ms-graph"]
    result = subprocess.run(
        [*command, "--query", "accessToken", "-o", "tsv"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"az could not get a Graph token: {result.stderr.strip()}")
    return result.stdout.strip()


def odata_string(value: str) -> str:
    """An OData string literal: quoted, with embedded quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def query_string(parameters: dict[str, str]) -> str:
    """``?a=b&c=d`` with every value percent-encoded (spaces and quotes included)."""
    return "?" + urllib.parse.urlencode(parameters, quote_via=urllib.parse.quote, safe="$,")
