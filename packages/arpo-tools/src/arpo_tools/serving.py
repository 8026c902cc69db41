"""Serving an MCP server over stdio or streamable HTTP, safely by default.

HTTP rules (issue 3, item 5):

* bind 127.0.0.1 unless told otherwise;
* DNS-rebinding protection on: the ``Host`` and ``Origin`` headers must name the address served (loopback
  names for a loopback bind; ``--allowed-host`` adds more);
* an optional bearer token (``--token`` or ``ARPO_TOOLS_TOKEN``) is checked on every request, in constant time;
* a non-loopback address is refused without a token: a public, unauthenticated code-execution endpoint is never
  what anyone meant.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Sequence
from typing import Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

__all__ = ["TOKEN_ENV", "BearerTokenMiddleware", "ServingError", "build_http_app", "is_loopback", "serve"]

TOKEN_ENV = "ARPO_TOOLS_TOKEN"


class ServingError(ValueError):
    """A serving request that is refused; ``str()`` says why and what to do instead."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BearerTokenMiddleware:
    """ASGI middleware: every HTTP request must carry ``Authorization: Bearer <token>``."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            got = headers.get(b"authorization", b"")
            if not hmac.compare_digest(got, self._expected):
                body = b'{"error": "missing or wrong bearer token"}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _security(host: str, port: int, allowed_hosts: Sequence[str]) -> TransportSecuritySettings:
    if is_loopback(host):
        hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
        origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    else:
        hosts = [f"{host}:{port}", f"{host}:*"]
        origins = [f"http://{host}:{port}", f"https://{host}:{port}"]
    for extra in allowed_hosts:
        hosts.append(extra if ":" in extra else f"{extra}:*")
        origins.extend([f"http://{extra}", f"https://{extra}"])
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


def resolve_token(token: str | None) -> str | None:
    """The token given, else ``$ARPO_TOOLS_TOKEN``, else None."""
    return token or os.environ.get(TOKEN_ENV) or None


def build_http_app(
    server: MCPServer, *, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
    allowed_hosts: Sequence[str] = (),
) -> Any:  # fmt: skip
    """The ASGI app serving ``server`` at ``/mcp``, with DNS-rebinding protection and the token check."""
    if not is_loopback(host) and not token:
        raise ServingError(
            f"refusing to serve on {host}, which is not a loopback address, without a token; pass --token "
            f"(or set {TOKEN_ENV}), or bind 127.0.0.1."
        )
    app = server.streamable_http_app(transport_security=_security(host, port, allowed_hosts), host=host)
    return BearerTokenMiddleware(app, token) if token else app


def serve(
    server: MCPServer,
    transport: Literal["stdio", "http"] = "stdio",
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    allowed_hosts: Sequence[str] = (),
    log_level: str = "warning",
) -> None:
    """Run ``server`` until interrupted: over stdio, or over HTTP at ``http://host:port/mcp``."""
    if transport == "stdio":
        server.run("stdio")
        return
    if transport != "http":
        raise ServingError(f"transport {transport!r} is not one of 'stdio' or 'http'.")
    import uvicorn

    app = build_http_app(server, host=host, port=port, token=resolve_token(token), allowed_hosts=allowed_hosts)
    uvicorn.run(app, host=host, port=port, log_level=log_level, lifespan="on")
