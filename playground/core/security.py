"""Web security glue: login throttling (django-axes hooks) and the Content-Security-Policy's WebSocket
origin. Keeping login tokens out of logs is playground/core/logmask.py.

django-axes counts failed logins and refuses a locked-out client; this module tells it what a client is
(its address, correctly behind a proxy), what to count by, and how to say "too many attempts" (a 429 page).
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from csp.middleware import CSPMiddleware, PolicyParts
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone


# --- client address and lockouts --------------------------------------------------------------------
def client_ip(request: HttpRequest) -> str | None:
    """The address of the client that made the request.

    Daphne puts its TCP peer in REMOTE_ADDR. Behind a proxy (BEHIND_PROXY=1) that peer is the proxy, and
    the client is the address the proxies appended to X-Forwarded-For: the PROXY_COUNT-th entry from the
    right. Entries further left were sent by the client itself and could name anyone.
    """
    remote = request.META.get("REMOTE_ADDR") or None
    if not settings.BEHIND_PROXY:
        return remote
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
    count = max(1, settings.PROXY_COUNT)
    if len(forwarded) >= count:
        return forwarded[-count]
    return forwarded[0] if forwarded else remote


def lockout_parameters(request: Any, credentials: dict[str, Any] | None = None) -> list[str]:
    """What failures are counted by: the address, and the account when there is one.

    A bad one-time login link has no account, so it counts by address only (counting "no account" as an
    account would lock every address out together)."""
    from axes.helpers import get_client_username

    if isinstance(request, HttpRequest):
        username = get_client_username(request, credentials)
    else:  # an AccessAttempt that axes is cleaning up or resetting
        username = getattr(request, "username", None)
    return ["ip_address", "username"] if username else ["ip_address"]


def login_link_allowed(request: HttpRequest) -> bool:
    """False while the client's address is locked out (a valid link from it is refused too)."""
    from axes.handlers.proxy import AxesProxyHandler

    return AxesProxyHandler.is_allowed(request, credentials={})


def record_bad_login_link(request: HttpRequest) -> None:
    """Count a bad, expired or spent login-link token against the client's address, as axes counts a wrong
    password: through Django's login-failed signal. At the limit, AxesMiddleware answers with the 429."""
    from django.contrib.auth.signals import user_login_failed

    user_login_failed.send(sender=__name__, credentials={"login_link": "[hidden]"}, request=request)


def minutes_left(request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
    """Whole minutes, rounded up, until the newest failure counting against this client is cooled off."""
    from axes.helpers import get_client_username
    from axes.models import AccessAttempt
    from django.db.models import Max, Q

    cool_off: timedelta = settings.AXES_COOLOFF_TIME
    match = Q(ip_address=getattr(request, "axes_ip_address", None) or client_ip(request))
    username = get_client_username(request, credentials)
    if username:
        match |= Q(username=username)
    newest = AccessAttempt.objects.filter(match).aggregate(newest=Max("attempt_time"))["newest"]
    left = (newest + cool_off - timezone.now()) if newest else cool_off
    return max(1, math.ceil(left.total_seconds() / 60))


def lockout_response(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict[str, Any] | None = None,
) -> HttpResponse:
    """The page a locked-out client gets from every login path: what happened and when to try again."""
    minutes = minutes_left(request, credentials)
    response = render(
        request,
        "core/locked_out.html",
        {"minutes": minutes, "message": lockout_message(minutes)},
        status=429,
    )
    response["Retry-After"] = str(minutes * 60)
    return response


def lockout_message(minutes: int) -> str:
    return f"Too many failed attempts; try again in {minutes} minute{'s' if minutes != 1 else ''}."


# --- Content-Security-Policy ------------------------------------------------------------------------------
class SiteCSPMiddleware(CSPMiddleware):
    """django-csp's middleware, with this site's own WebSocket origin added to connect-src.

    CSP Level 3 lets 'self' match ws: and wss: on the page's own host and port (Chromium and Firefox do);
    naming the origin as well keeps chat working in browsers that predate that rule."""

    def get_policy_parts(self, request: HttpRequest, response: Any, report_only: bool = False) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        if report_only:
            return parts
        try:
            host = request.get_host()
        except Exception:  # a host outside ALLOWED_HOSTS: the response is already an error page
            return parts
        scheme = "wss" if request.is_secure() else "ws"
        update = dict(parts.update or {})
        update["connect-src"] = [*update.get("connect-src", []), f"{scheme}://{host}"]
        parts.update = update
        return parts
