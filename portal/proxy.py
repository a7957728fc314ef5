"""The client's address behind the reverse proxy: trust only the proxy's own hop.

daphne's ``--proxy-headers`` takes the left-most ``X-Forwarded-For`` address, which the client chooses:
with the documented nginx set-up (``$proxy_add_x_forwarded_for`` appends the real address) a forged
``X-Forwarded-For: <anything>, 127.0.0.1`` bypassed the per-address throttle, locked out any address
chosen and put a forged address in the student's sign-in list. So the portal reads the header itself:

* only when the connection comes from a proxy listed in ``DJANGO_TRUSTED_PROXIES`` (addresses or
  networks); from anyone else the header is ignored and the connection's address is the client's;
* right to left: each hop that is itself a trusted proxy is skipped, and the first one that is not is
  the client. The proxy's own hop (what it appended, or set) is the right-most, and the only one a
  client cannot write;
* ``X-Forwarded-Proto`` from a trusted proxy sets the scheme (``https`` behind TLS), which the
  websocket Origin check and Django's ``request.is_secure()`` follow.

The nginx configuration in docs/deployment.md overwrites both headers, so a trusted proxy never passes
on what a client sent.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(values: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values if value.strip())


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _trusted(address, networks: tuple[Network, ...]) -> bool:
    return address is not None and any(address in network for network in networks)


def _header_values(scope, name: bytes) -> list[str]:
    values: list[str] = []
    for key, value in scope.get("headers") or []:
        if key == name:
            values.extend(part.strip() for part in value.decode("latin-1").split(","))
    return [value for value in values if value]


def forwarded_client(scope, networks: tuple[Network, ...]) -> tuple[str | None, str | None]:
    """(client address, scheme) as the trusted proxy says, or (None, None) to keep the connection's."""
    client = scope.get("client")
    peer = _address(client[0]) if client else None
    if not _trusted(peer, networks):
        return None, None
    address = str(peer)
    for hop in reversed(_header_values(scope, b"x-forwarded-for")):
        parsed = _address(hop)
        if parsed is None:  # not an address: the chain cannot be followed past it
            break
        address = str(parsed)
        if not _trusted(parsed, networks):
            break
    protos = _header_values(scope, b"x-forwarded-proto")
    scheme = protos[-1].lower() if protos and protos[-1].lower() in ("http", "https") else None
    return address, scheme


class TrustedProxyMiddleware:
    """ASGI middleware (HTTP and websockets): rewrites ``scope["client"]`` and ``scope["scheme"]`` from a
    trusted proxy's headers."""

    def __init__(self, application, trusted: Iterable[str] | None = None) -> None:
        self.application = application
        self.networks = trusted_networks(settings.TRUSTED_PROXIES if trusted is None else trusted)

    async def __call__(self, scope, receive, send):
        if self.networks and scope["type"] in ("http", "websocket"):
            address, scheme = forwarded_client(scope, self.networks)
            if address is not None:
                scope = {**scope, "client": (address, 0)}
                if scheme is not None:
                    websocket = scope["type"] == "websocket"
                    scope["scheme"] = {"http": "ws", "https": "wss"}[scheme] if websocket else scheme
        return await self.application(scope, receive, send)
