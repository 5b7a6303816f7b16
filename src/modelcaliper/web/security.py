"""The web UI's guard: the access token, the Host check, and security headers on every answer.

- **Token.** With a token configured every request must carry it: ``Authorization: Bearer
  <token>``, the ``caliper_token`` cookie, or ``?token=<token>`` — a page opened that way is
  redirected to the same URL without it and the cookie set (HttpOnly, SameSite=Strict), so the
  token does not stay in the address bar or the history. Compared in constant time.
- **Host.** Without a token the UI serves loopback only, and also refuses requests whose
  ``Host`` header is not a loopback name, so a web page elsewhere cannot reach it through DNS
  rebinding.
- **Headers.** A Content-Security-Policy that allows scripts from the UI itself only (the
  page data is JSON, never executed), ``nosniff``, no referrer, no framing.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

__all__ = ["COOKIE", "SECURITY_HEADERS", "Guard"]

COOKIE = "caliper_token"
SECURITY_HEADERS = (
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
     b"img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
     b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
_LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return value.decode("latin-1")
    return None


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """ASGI middleware enforcing the token (when set), the Host check and the headers."""

    def __init__(self, app: Any, token: str | None) -> None:
        self.app = app
        self.token = token.encode("utf-8") if token else None

    def _matches(self, offered: str | None) -> bool:
        return bool(offered) and self.token is not None and hmac.compare_digest(
            offered.encode("utf-8"), self.token)  # type: ignore[union-attr]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the request, then pass it on with the security headers added to the answer."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers") or []) + list(SECURITY_HEADERS)
            await send(message)

        problem = self._problem(scope)
        if problem is not None:
            await problem(send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _problem(self, scope: Scope) -> Callable[[Send], Awaitable[None]] | None:
        if self.token is None:
            host = _host_name(_header(scope, b"host") or "")
            if host not in _LOOPBACK:
                return _plain(421, "this UI only answers requests addressed to a loopback host")
            return None
        authorization = _header(scope, b"authorization") or ""
        if authorization.lower().startswith("bearer ") and self._matches(authorization[7:]):
            return None
        cookie = SimpleCookie()
        try:
            cookie.load(_header(scope, b"cookie") or "")
        except Exception:  # a malformed Cookie header is no token
            cookie = SimpleCookie()
        if COOKIE in cookie and self._matches(cookie[COOKIE].value):
            return None
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                          keep_blank_values=True)
        offered = next((v for k, v in query if k == "token"), None)
        if self._matches(offered):
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            location = quote(scope.get("path", "/"), safe="/") + (f"?{rest}" if rest else "")
            return _redirect_with_cookie(location, offered or "")
        return _plain(401, "a token is required: open the UI with ?token=..., or send "
                           "'Authorization: Bearer ...'")


def _plain(status: int, text: str) -> Callable[[Send], Awaitable[None]]:
    body = (text + "\n").encode("utf-8")

    async def answer(send: Send) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b"Bearer")] if status == 401 else
                    [(b"content-type", b"text/plain; charset=utf-8"),
                     (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return answer


def _redirect_with_cookie(location: str, token: str) -> Callable[[Send], Awaitable[None]]:
    cookie = SimpleCookie()
    cookie[COOKIE] = token
    cookie[COOKIE]["httponly"] = True
    cookie[COOKIE]["samesite"] = "Strict"
    cookie[COOKIE]["path"] = "/"

    async def answer(send: Send) -> None:
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", location.encode("ascii", "replace")),
                                (b"set-cookie", cookie[COOKIE].OutputString().encode("latin-1")),
                                (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    return answer
