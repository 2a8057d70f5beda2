"""HTTP pieces every console endpoint shares: the allowed-host check, the POST guard, the
bounded JSON body, and JSON answers.

Every request must name an allowed host (DNS rebinding: a foreign page whose name
resolves to 127.0.0.1 sends its own name), and a POST must be JSON from no foreign origin
(a cross-site form cannot send that).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import orjson
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send


class AllowedHosts:
    """Refuses a request whose Host header names no allowed host (421), on every path."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str]) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = Headers(scope=scope).get("host", "")
            if hostname(host) not in self.hosts:
                refusal = error(421, "unknown Host: start the console with --allowed-host NAME")
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def hostname(netloc: str) -> str:
    try:
        return (urlsplit("//" + netloc).hostname or "").lower()
    except ValueError:  # an unbalanced IPv6 bracket, say
        return ""


def refuse_post(request: Request, hosts: frozenset[str]) -> Response | None:
    """415 unless the body is declared JSON, 403 from a foreign Origin; else None."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return error(415, "send application/json")
    origin = request.headers.get("origin")
    if origin is not None and hostname(urlsplit(origin).netloc) not in hosts:
        return error(403, "cross-origin request refused")
    return None


async def json_body(request: Request, max_bytes: int) -> Any | Response:
    """The parsed body, or the error answer (413 over ``max_bytes``, 400 not JSON)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            return error(413, f"request body over {max_bytes} bytes")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return error(400, "the body is not JSON")


def json_response(data: Any, status: int = 200) -> Response:
    """orjson: NaN and infinities become null; an unencodable answer is a 500 that says so."""
    try:
        body = orjson.dumps(data)
    except (TypeError, orjson.JSONEncodeError) as exc:
        body = orjson.dumps({"status": "error", "error": f"unencodable result: {exc}"})
        status = 500
    return Response(body, status_code=status, media_type="application/json")


def error(status: int, message: str) -> Response:
    return json_response({"status": "error", "error": message}, status)
