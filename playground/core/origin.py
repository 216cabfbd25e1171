"""The WebSocket origin check: a socket is accepted only from a page of the site itself, or of an origin in
CSRF_TRUSTED_ORIGINS - the rule Django's CSRF middleware applies to forms, scheme, host and port included.

Channels' AllowedHostsOriginValidator compares hosts only, so a page served on another port of the same
host (another app on 127.0.0.1:9999, say) could open a socket with the user's session: SameSite=Lax
cookies are sent across ports. Browsers always send Origin on a WebSocket handshake, so a socket without
one is refused too.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest
from django.utils.http import is_same_domain


class _HandshakeRequest(HttpRequest):
    """The handshake's headers as Django reads a request's: get_host() checks ALLOWED_HOSTS (and honours
    USE_X_FORWARDED_HOST), scheme honours SECURE_PROXY_SSL_HEADER (BEHIND_PROXY=1)."""

    def __init__(self, scope: dict[str, Any]) -> None:
        super().__init__()
        for raw_name, raw_value in scope.get("headers", []):
            name = "HTTP_" + raw_name.decode("latin1").upper().replace("-", "_")
            value = raw_value.decode("latin1")
            # Repeated headers are joined, as Django's ASGIRequest does: two Origins match nothing.
            self.META[name] = f"{self.META[name]},{value}" if name in self.META else value
        self._socket_scheme = "https" if scope.get("scheme") == "wss" else "http"

    def _get_scheme(self) -> str:
        return self._socket_scheme


def origin_allowed(scope: dict[str, Any]) -> bool:
    request = _HandshakeRequest(scope)
    origin = request.META.get("HTTP_ORIGIN")
    if not origin or "HTTP_HOST" not in request.META:
        return False
    try:
        if origin == f"{request.scheme}://{request.get_host()}":
            return True
    except DisallowedHost:
        pass  # not this site's own origin; a trusted one may still match
    trusted = settings.CSRF_TRUSTED_ORIGINS
    if origin in (pattern for pattern in trusted if "*" not in pattern):
        return True
    try:
        parsed = urlsplit(origin)
    except ValueError:
        return False
    # "https://*.example.com": any subdomain, on that scheme (and port, if the pattern has one).
    return any(
        is_same_domain(parsed.netloc, urlsplit(pattern).netloc.lstrip("*"))
        for pattern in trusted
        if "*" in pattern and urlsplit(pattern).scheme == parsed.scheme
    )


class OriginMiddleware:
    """ASGI middleware for the websocket route: a socket from any other origin is denied (HTTP 403)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
