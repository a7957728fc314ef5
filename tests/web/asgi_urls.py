"""A URLconf for tests/web/test_asgi_http.py: a streaming response and a view that records its end."""

from __future__ import annotations

import threading

from django.http import HttpResponse, StreamingHttpResponse
from django.urls import path

finished = threading.Event()


def numbers(request):
    return StreamingHttpResponse(str(i).encode() for i in range(3))


def slow(request):
    threading.Event().wait(0.3)  # long enough for the client to leave first
    finished.set()
    return HttpResponse(b"done")


urlpatterns = [path("numbers/", numbers), path("slow/", slow)]
