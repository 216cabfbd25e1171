"""The WebSocket origin check through the real ASGI app: scheme, host and port of the Origin must be the
site's own (or in CSRF_TRUSTED_ORIGINS); anything else is denied before the socket opens."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

from playground.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)
HOST = b"127.0.0.1:8000"


def handshake(
    origin: bytes | None, host: bytes = HOST, cookie: str = "", **extra: bytes
) -> tuple[bool, object]:
    """Open /ws/health/; (True, its first frame) if accepted, (False, the close code) if denied."""
    headers = [(b"host", host)]
    if origin is not None:
        headers.append((b"origin", origin))
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    headers += [(name.replace("_", "-").encode(), value) for name, value in extra.items()]

    async def scenario() -> tuple[bool, object]:
        communicator = WebsocketCommunicator(application, "/ws/health/", headers=headers)
        connected, code = await communicator.connect(timeout=10)
        if not connected:
            return False, code
        first = await communicator.receive_output(timeout=10)
        await communicator.disconnect()
        return True, json.loads(first["text"]) if "text" in first else first

    return asyncio.run(scenario())


@pytest.fixture
def cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def test_the_sites_own_origin_is_accepted_with_the_session(cookie: str) -> None:
    assert handshake(b"http://127.0.0.1:8000", cookie=cookie) == (True, {"type": "hello", "user": "alice"})


def test_another_port_on_the_same_host_is_refused(cookie: str) -> None:
    assert handshake(b"http://127.0.0.1:9999", cookie=cookie) == (False, 1000)


def test_another_scheme_is_refused(cookie: str) -> None:
    assert handshake(b"https://127.0.0.1:8000", cookie=cookie)[0] is False


def test_another_host_is_refused(cookie: str) -> None:
    assert handshake(b"http://localhost:8000", cookie=cookie)[0] is False
    assert handshake(b"http://evil.example", cookie=cookie)[0] is False


def test_a_missing_origin_is_refused(cookie: str) -> None:
    assert handshake(None, cookie=cookie)[0] is False


def test_a_host_header_outside_allowed_hosts_is_refused_even_when_origin_matches(cookie: str) -> None:
    assert handshake(b"http://evil.example:8000", host=b"evil.example:8000", cookie=cookie)[0] is False


def test_an_origin_in_csrf_trusted_origins_is_accepted(settings, cookie: str) -> None:
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.com", "https://*.example.org"]
    assert handshake(b"https://chat.example.com", cookie=cookie)[0] is True
    assert handshake(b"https://lab.example.org", cookie=cookie)[0] is True
    assert handshake(b"http://chat.example.com", cookie=cookie)[0] is False
    assert handshake(b"https://chat.example.com:8443", cookie=cookie)[0] is False


def test_behind_a_proxy_the_forwarded_scheme_is_the_sites_scheme(settings, cookie: str) -> None:
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    forwarded = {"x_forwarded_proto": b"https"}
    assert handshake(b"https://127.0.0.1:8000", cookie=cookie, **forwarded)[0] is True
    assert handshake(b"http://127.0.0.1:8000", cookie=cookie, **forwarded)[0] is False


def test_a_tls_socket_has_the_https_origin(cookie: str) -> None:
    async def scenario(origin: bytes) -> bool:
        communicator = WebsocketCommunicator(
            application, "/ws/health/", headers=[(b"host", HOST), (b"origin", origin)]
        )
        communicator.scope["scheme"] = "wss"
        connected, _ = await communicator.connect(timeout=10)
        await communicator.disconnect()
        return connected

    assert asyncio.run(scenario(b"https://127.0.0.1:8000")) is True
    assert asyncio.run(scenario(b"http://127.0.0.1:8000")) is False
