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

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": OriginMiddleware(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
