from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer

CLOSE_UNAUTHENTICATED = 4401


class HealthConsumer(AsyncJsonWebsocketConsumer):
    """A tiny authenticated WebSocket: proves login and origin checks on the socket path end to end."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        await self.accept()
        if user is None or not user.is_authenticated:
            # Accept, then close with a code the page can read ("log in again"); a bare rejection
            # would look the same as a network failure or a foreign origin.
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        await self.send_json({"type": "hello", "user": user.get_username()})

    async def receive_json(self, content, **kwargs) -> None:
        if not isinstance(content, dict) or content.get("type") != "ping":
            await self.send_json({"type": "error", "error": 'Send {"type": "ping"}.'})
            return
        await self.send_json({"type": "pong"})
