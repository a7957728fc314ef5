"""A URLconf for tests/web/test_asgi_http.py: a streaming response, views that record their start and
end, and a "/login/" whose POST waits for the test (the handler's password lane serves it)."""

from __future__ import annotations

import threading

from django.http import HttpResponse, StreamingHttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

started = threading.Event()
finished = threading.Event()
release = threading.Event()  # held views wait for it
ran: list[str] = []


def numbers(request):
    return StreamingHttpResponse(str(i).encode() for i in range(3))


def slow(request):
    started.set()
    threading.Event().wait(0.3)  # long enough for the client to leave first
    finished.set()
    return HttpResponse(b"done")


@csrf_exempt
def held(request):
    ran.append(request.path)
    release.wait(20)
    return HttpResponse(b"held")


@csrf_exempt
def counted(request):
    ran.append(request.path)
    return HttpResponse(b"counted")


urlpatterns = [
    path("numbers/", numbers),
    path("slow/", slow),
    path("held/", held),
    path("login/", held),
    path("counted/", counted),
]
