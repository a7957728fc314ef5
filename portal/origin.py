"""The websocket handshake's Origin check: the page's own origin, scheme, host and port.

Channels' ``AllowedHostsOriginValidator`` compares only the Origin's host name with ALLOWED_HOSTS, so
``http://localhost:1`` (another site on the same machine) or ``https://localhost`` passed. Browsers
send the page's origin with every websocket handshake and cannot forge it; the sign-in socket is only
ever opened by the portal's own page. So, as Django's CSRF check does for a form post, the Origin must
equal the origin of the request itself (the scheme, and the ``Host`` header, which must name one of
ALLOWED_HOSTS) or be listed in CSRF_TRUSTED_ORIGINS.

The scheme: daphne's websocket scope carries none; ``portal.proxy`` sets it from a trusted proxy's
``X-Forwarded-Proto``; otherwise it is ``https`` when the portal runs behind TLS (DJANGO_HTTPS).
"""

from __future__ import annotations

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key == name:
            return value.decode("latin-1").strip()
    return None


def origin_allowed(scope) -> bool:
    origin, host = _header(scope, b"origin"), _header(scope, b"host")
    if not origin or not host:
        return False
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    scheme = scope.get("scheme")
    if scheme is None:
        secure = getattr(settings, "HTTPS", False)
    else:
        secure = scheme in ("https", "wss")
    origin = origin.lower()
    own = f"{'https' if secure else 'http'}://{host.lower()}"
    return origin == own or origin in {trusted.lower() for trusted in settings.CSRF_TRUSTED_ORIGINS}


class SameOriginValidator:
    """ASGI middleware for websockets: refuse the handshake (403) unless ``origin_allowed``."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
