"""ASGI entry point: Django for HTTP, Channels for WebSockets (origin-checked, authenticated).

The origin check (playground/core/origin.py) runs first, so a socket from a page of another origin is
refused with 403 before any session is read.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from playground.core.origin import OriginMiddleware  # noqa: E402
from playground.routing import websocket_urlpatterns  # noqa: E402

if os.environ.get("PLAYGROUND_WEB_SERVER") == "1":  # the web server itself (playground.core.logsafe.daphne)
    from playground.chat.services import preload_in_background  # noqa: E402

    preload_in_background()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": OriginMiddleware(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
