from __future__ import annotations

from django.urls import path

from facelogin import protocol
from facelogin.consumers import FaceLoginConsumer

websocket_urlpatterns = [
    path(protocol.WEBSOCKET_PATH, FaceLoginConsumer.as_asgi()),
]
