"""The client's address behind the proxy: only the proxy's own hop is believed (portal/proxy.py).
The same through a real daphne: tests/web/test_daphne_hardening.py."""

from __future__ import annotations

import pytest

from portal.proxy import forwarded_client, trusted_networks

PROXY = trusted_networks(["127.0.0.1", "10.0.0.0/8"])


def scope(peer: str, *headers: tuple[bytes, bytes]) -> dict:
    return {"type": "http", "client": (peer, 40000), "headers": list(headers)}


@pytest.mark.parametrize(
    ("forwarded", "client"),
    [
        (b"203.0.113.7", "203.0.113.7"),  # the proxy overwrote the header (docs/deployment.md)
        (b"6.6.6.6, 203.0.113.7", "203.0.113.7"),  # a forged left-most address, the proxy's hop appended
        (b"198.51.100.1, 203.0.113.7, 10.1.2.3", "203.0.113.7"),  # two proxies: the inner one is trusted too
        (b"not-an-address, 203.0.113.7", "203.0.113.7"),
        (b"203.0.113.7, garbage", "127.0.0.1"),  # a hop that cannot be read: stop at the proxy
        (b"[2001:db8::1]:5555", "2001:db8::1"),
    ],
)
def test_the_right_most_hop_that_is_not_a_trusted_proxy_is_the_client(forwarded, client):
    assert forwarded_client(scope("127.0.0.1", (b"x-forwarded-for", forwarded)), PROXY)[0] == client


def test_headers_from_anyone_but_a_trusted_proxy_are_ignored():
    assert forwarded_client(scope("203.0.113.9", (b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-proto", b"https")), PROXY) == (None, None)
    assert forwarded_client(scope("127.0.0.1", (b"x-forwarded-for", b"6.6.6.6")), ()) == (None, None)


def test_the_scheme_comes_from_the_trusted_proxy():
    assert forwarded_client(scope("127.0.0.1", (b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-proto", b"https")), PROXY) == ("203.0.113.7", "https")
    assert forwarded_client(scope("127.0.0.1", (b"x-forwarded-proto", b"gopher")), PROXY) == ("127.0.0.1", None)


@pytest.mark.asyncio
async def test_the_middleware_rewrites_the_scope_for_http_and_websockets():
    from portal.proxy import TrustedProxyMiddleware

    seen = []

    async def app(scope, receive, send):
        seen.append((scope["type"], scope["client"], scope.get("scheme")))

    middleware = TrustedProxyMiddleware(app, trusted=["127.0.0.1"])
    headers = ((b"x-forwarded-for", b"6.6.6.6, 203.0.113.7"), (b"x-forwarded-proto", b"https"))
    await middleware(scope("127.0.0.1", *headers), None, None)
    await middleware({**scope("127.0.0.1", *headers), "type": "websocket"}, None, None)
    await middleware(scope("192.0.2.1", *headers), None, None)
    assert seen == [
        ("http", ("203.0.113.7", 0), "https"),
        ("websocket", ("203.0.113.7", 0), "wss"),
        ("http", ("192.0.2.1", 40000), None),
    ]
