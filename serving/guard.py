"""ASGI middleware in front of the API: request ids, optional bearer-token check, a body size limit.

Every request gets an id (the client's ``X-Request-ID`` when it is a plain token, else a new one),
kept in ``scope["state"]["request_id"]`` for the logs and sent back as the ``X-Request-ID`` header.
The token check runs first, so an unauthenticated client never gets its body read. The body is
buffered up to the limit (bodies are small JSON documents) and replayed to the application; a
request that declares or sends more than the limit gets 413 without reaching a route. With
``max_in_flight`` set, a request to any path but the few cheap ones of ``UNGATED_PATHS`` (health,
readiness, docs) beyond that many in progress gets 503 with Retry-After before its body is read:
overload is refused before it costs the replica anything. An allowlist, never a list of paths to limit:
a path the list does not name (an encoded ``/recommen%64`` included) is limited.
``require_token_off_loopback`` is the rule the app starts under: no token, loopback only, checked on
every host a client can reach it through (``public_hosts``: Serve's proxy and the admission front).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PUBLIC_PATHS = frozenset({"/healthz", "/favicon.ico"})  # answered without a token; they reveal nothing
# paths no concurrency limit applies to (cheap, and probes must pass under overload); every other path is
# limited, here and at the admission front
UNGATED_PATHS = frozenset(
    {"/healthz", "/favicon.ico", "/readyz", "/docs", "/docs/oauth2-redirect", "/openapi.json"}
)
OVERLOADED = "overloaded, retry later"
REQUEST_ID_HEADER = b"x-request-id"
CLIENT_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")


class InsecureBindError(RuntimeError):
    """The app would listen beyond loopback with no bearer token set."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_token_off_loopback(hosts: str | Iterable[str], token: str | None, token_env: str) -> None:
    """Refuse to serve when any of ``hosts`` (where clients reach the app) is beyond loopback and there
    is no token (named by its variable)."""
    for host in [hosts] if isinstance(hosts, str) else hosts:
        if not token and not is_loopback(host):
            raise InsecureBindError(
                f"the app is reachable on {host}, beyond loopback, but ${token_env} is not set: set "
                f"{token_env} to a bearer token in the replicas' environment, or listen on 127.0.0.1"
            )


def public_hosts(serving: Any, proxy: str) -> list[str]:
    """Where clients reach the app: Serve's proxy (``proxy``) and, with the admission front on, the
    front's ``serving.host`` (Serve's proxy is then on loopback, yet the app is public through it)."""
    return [proxy, serving.host] if serving.admission.enabled else [proxy]


def request_id(scope: Scope) -> str:
    """The id the guard gave this request ("-" outside the guard)."""
    return scope.get("state", {}).get("request_id", "-")


def _with_request_id(send: Send, rid: str) -> Send:
    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, rid.encode())]
        await send(message)

    return send_with_id


async def _reject(
    scope: Scope, send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps({"detail": detail, "request_id": request_id(scope)}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _route_path(scope: Scope) -> str:
    path: str = scope.get("path", "")
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path or "/"


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value
    return None


class RequestGuard:
    """Wraps an ASGI app; ``token`` None disables authentication."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        max_body_bytes: int,
        max_in_flight: int | None = None,
        retry_after_s: int = 1,
        on_shed: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.on_shed = on_shed  # called for each request refused past max_in_flight (a metric)
        self.expected = f"Bearer {token}".encode() if token else None
        self.max_body_bytes = max_body_bytes
        self.max_in_flight = max_in_flight
        self.retry_after = [(b"retry-after", str(retry_after_s).encode())]
        self.in_flight = 0  # gated requests in progress (one event loop: no lock needed)

    def _authorized(self, scope: Scope) -> bool:
        if self.expected is None or _route_path(scope) in PUBLIC_PATHS:
            return True
        given = _header(scope, b"authorization") or b""
        return hmac.compare_digest(given, self.expected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, REQUEST_ID_HEADER) or b""
        rid = given.decode() if CLIENT_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        send = _with_request_id(send, rid)
        if not self._authorized(scope):
            await _reject(
                scope, send, 401, "missing or invalid bearer token", [(b"www-authenticate", b"Bearer")]
            )
            return
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await _reject(scope, send, 413, f"request body larger than {self.max_body_bytes} bytes")
            return
        if self.max_in_flight is None or _route_path(scope) in UNGATED_PATHS:
            await self._read_and_call(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            if self.on_shed is not None:
                self.on_shed()
            await _reject(scope, send, 503, OVERLOADED, self.retry_after)
            return
        self.in_flight += 1
        try:
            await self._read_and_call(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _read_and_call(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _reject(scope, send, 413, f"request body larger than {self.max_body_bytes} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body_message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body_message], receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
