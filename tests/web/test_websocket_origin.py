"""The sign-in websocket's handshake: its Origin must be the portal's own, scheme, host and port."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator

from facelogin import protocol
from portal.asgi import application

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


async def _handshake(origin: bytes | None, host: bytes, **scope) -> bool:
    headers = [(b"host", host)] + ([(b"origin", origin)] if origin is not None else [])
    communicator = WebsocketCommunicator(application, "/" + protocol.WEBSOCKET_PATH, headers=headers)
    communicator.scope.update(scope)  # the same dict the application instance reads (not started yet)
    connected, _ = await communicator.connect(timeout=10)
    await communicator.disconnect()
    return connected


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        (b"http://127.0.0.1:8123", b"127.0.0.1:8123"),  # the live test portals: a free port on either name
        (b"http://localhost:8123", b"localhost:8123"),
        (b"http://localhost", b"localhost"),
    ],
)
async def test_the_pages_own_origin_is_accepted(origin, host):
    assert await _handshake(origin, host)


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        (b"http://localhost:1", b"127.0.0.1:8123"),  # an allowed host name, another port (another site)
        (b"http://localhost:1", b"localhost:8123"),
        (b"https://localhost", b"localhost"),  # another scheme
        (b"http://127.0.0.1:8123", b"localhost:8123"),  # another host of the allowed ones
        (b"http://evil.example", b"127.0.0.1"),
        (b"null", b"127.0.0.1"),
        (None, b"127.0.0.1"),  # no Origin at all
        (b"http://evil.example", b"evil.example"),  # a host the portal does not answer to
    ],
)
async def test_any_other_origin_is_refused(origin, host):
    assert not await _handshake(origin, host)


async def test_behind_tls_the_origin_is_https(settings):
    settings.ALLOWED_HOSTS = ["portal.example.ac.kr"]
    assert await _handshake(b"https://portal.example.ac.kr", b"portal.example.ac.kr", scheme="wss")
    assert not await _handshake(b"http://portal.example.ac.kr", b"portal.example.ac.kr", scheme="wss")


async def test_a_trusted_origin_from_the_settings_is_accepted(settings):
    settings.ALLOWED_HOSTS = ["portal.internal"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://portal.example.ac.kr"]
    assert await _handshake(b"https://portal.example.ac.kr", b"portal.internal")
    assert not await _handshake(b"https://portal.example.ac.kr:444", b"portal.internal")
