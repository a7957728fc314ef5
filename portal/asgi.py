"""ASGI entry point served by daphne: HTTP through Django, websockets through Channels."""

from __future__ import annotations

import os

from portal import autobahn_logging
from portal.asgi_http import get_sync_stack_asgi_application, install_daphne_body_limit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
# Django must be set up before anything imports models (the consumers do).
django_asgi_app = get_sync_stack_asgi_application()
install_daphne_body_limit()  # daphne imports this module before it listens
autobahn_logging.install()  # debug lines' arguments built only when a debug line is written

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.sessions import SessionMiddlewareStack  # noqa: E402

from django.conf import settings  # noqa: E402

from facelogin.routing import websocket_urlpatterns  # noqa: E402
from facelogin.services.recognition import warm_up_in_background  # noqa: E402
from portal.origin import SameOriginValidator  # noqa: E402
from portal.proxy import TrustedProxyMiddleware  # noqa: E402

if settings.FACELOGIN["WARM_UP"]:
    # Load and warm the models now, so the first student of the day does not wait for them.
    warm_up_in_background()

# The client's address (and scheme) from a trusted proxy's own hop, for HTTP and websockets alike.
application = TrustedProxyMiddleware(ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Sessions only: the sign-in socket needs the browser's session, never the user (a signed-in
        # user has no use for it), so the user is not loaded from the database for every connection.
        # The handshake's Origin must be the page's own (scheme, host and port): portal/origin.py.
        "websocket": SameOriginValidator(SessionMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
))
