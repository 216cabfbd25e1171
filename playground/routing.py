"""WebSocket routes of every app; apps append theirs here (chat adds its consumer)."""

from __future__ import annotations

from django.urls import path

from playground.chat.consumers import ChatConsumer
from playground.core.consumers import HealthConsumer

websocket_urlpatterns = [
    path("ws/health/", HealthConsumer.as_asgi()),
    path("ws/chat/", ChatConsumer.as_asgi()),
]
