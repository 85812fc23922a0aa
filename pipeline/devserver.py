"""Serve the function app's HTTP functions on 127.0.0.1, without the Functions host.

    .venv/bin/python -m pipeline.devserver [--port 7071] [--key KEY]

The Functions host cannot run on every machine (it needs .NET); this shim lets the HTTP
endpoints be tried locally. It reads the routes from ``function_app.app`` exactly as the worker
indexes them, turns each request into a ``func.HttpRequest`` and writes back the function's
``func.HttpResponse``. Like the host with ``authLevel: FUNCTION``, it answers 401 unless the
request carries the function key, as the ``x-functions-key`` header or the ``code`` query
parameter. Without ``--key`` a random key is made and printed.

It is a development aid: one process, no TLS, only on the loopback interface. Timers, queues and
Event Hubs are not driven; call ``pipeline.app_entry`` for those. Settings come from the
environment, as in the app (see ``local.settings.sample.json``).
"""

from __future__ import annotations

import argparse
import hmac
import logging
import re
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Route:
    name: str
    pattern: re.Pattern[str]
    methods: frozenset[str]
    handler: Callable[[func.HttpRequest], func.HttpResponse]


def http_routes(app: func.FunctionApp) -> list[Route]:
    """The app's HTTP functions as (path pattern under /api/, methods, callable)."""
    routes = []
    for function in app.get_functions():
        trigger = function.get_trigger()
        if trigger is None or trigger.get_binding_name() != "httpTrigger":
            continue
        binding = trigger.get_dict_repr()
        template = str(binding.get("route") or function.get_function_name())
        # "devices/{device_id}/coverage" → one path segment per parameter.
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
        methods = frozenset(str(m).upper() for m in binding.get("methods") or ("GET", "POST"))
        routes.append(
            Route(
                str(function.get_function_name()),
                re.compile(f"^/api/{regex}$"),
                methods,
                function.get_user_function(),
            )
        )
    return routes


class DevServer(ThreadingHTTPServer):
    def __init__(self, port: int, routes: list[Route], key: str) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.routes = routes
        self.key = key


class _Handler(BaseHTTPRequestHandler):
    server: DevServer

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        params = dict(parse_qsl(parts.query))
        supplied = self.headers.get("x-functions-key") or params.pop("code", "")
        if not hmac.compare_digest(supplied.encode(), self.server.key.encode()):
            self._send(func.HttpResponse("function key required", status_code=401))
            return

        for route in self.server.routes:
            found = route.pattern.match(parts.path)
            if found is None:
                continue
            if self.command not in route.methods:
                self._send(func.HttpResponse("method not allowed", status_code=405))
                return
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(min(length, MAX_BODY_BYTES + 1)) if length else b""
            request = func.HttpRequest(
                self.command,
                f"http://127.0.0.1:{self.server.server_address[1]}{self.path}",
                headers={k.lower(): v for k, v in self.headers.items()},
                params=params,
                route_params=found.groupdict(),
                body=body,
            )
            self._send(route.handler(request))
            return
        self._send(func.HttpResponse("no such function", status_code=404))

    def _send(self, response: func.HttpResponse) -> None:
        body = response.get_body()
        self.send_response(response.status_code)
        for name, value in response.headers.items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        if response.mimetype and "content-type" not in {
            k.lower() for k, _ in response.headers.items()
        }:
            self.send_header("Content-Type", response.mimetype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the app's HTTP functions on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--key", help="the function key to require (default: a random one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    import function_app  # noqa: PLC0415 - the app is imported only when serving it

    key = args.key or secrets.token_urlsafe(24)
    server = DevServer(args.port, http_routes(function_app.app), key)
    print(f"serving on http://127.0.0.1:{server.server_address[1]}/api/ ; function key: {key}")
    for route in server.routes:
        print(f"  {','.join(sorted(route.methods)):9} {route.pattern.pattern}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
