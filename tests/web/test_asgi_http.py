"""HTTP through the real ASGI application daphne serves (portal.asgi), not Django's test client."""

from __future__ import annotations

import inspect
from pathlib import Path
from http.cookies import SimpleCookie

import pytest
from channels.testing import HttpCommunicator

from portal.asgi import application, django_asgi_app
from portal.asgi_http import SyncStackASGIHandler

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

HOST = [(b"host", b"localhost")]


def cookies(response: dict) -> SimpleCookie:
    jar = SimpleCookie()
    for name, value in response["headers"]:
        if name.lower() == b"set-cookie":
            jar.load(value.decode("latin-1"))
    return jar


async def request(method: str, path: str, *, body: bytes = b"", headers: list | None = None) -> dict:
    communicator = HttpCommunicator(application, method, path, body=body, headers=HOST + (headers or []))
    return await communicator.get_response(timeout=10)


async def test_the_sign_in_page_sets_its_session_and_csrf_cookies() -> None:
    response = await request("GET", "/login/face/")
    assert response["status"] == 200
    jar = cookies(response)
    assert "sessionid" in jar and "csrftoken" in jar  # SessionMiddleware and CsrfViewMiddleware ran
    assert b"x-frame-options" in {name.lower() for name, _ in response["headers"]}  # and the clickjacking one


async def test_a_post_without_its_csrf_token_is_refused() -> None:
    response = await request("POST", "/login/face/complete/", body=b"ticket=x", headers=[(b"content-type", b"application/x-www-form-urlencoded")])
    assert response["status"] == 403


async def test_a_refused_ticket_redirects_with_a_message_the_next_page_shows() -> None:
    page = await request("GET", "/login/face/")
    jar = cookies(page)
    cookie = "; ".join(f"{k}={v.value}" for k, v in jar.items()).encode()
    token = jar["csrftoken"].value
    headers = [(b"cookie", cookie), (b"content-type", b"application/x-www-form-urlencoded"), (b"referer", b"http://localhost/login/face/")]
    done = await request("POST", "/login/face/complete/", body=f"ticket=nonsense&csrfmiddlewaretoken={token}".encode(), headers=headers)
    assert done["status"] == 302
    jar.update(cookies(done))
    cookie = "; ".join(f"{k}={v.value}" for k, v in jar.items()).encode()
    again = await request("GET", "/login/face/", headers=[(b"cookie", cookie)])
    assert b'class="message' in again["body"] or b"messages" in again["body"]  # MessageMiddleware's round trip


async def test_the_view_runs_inside_the_synchronous_middleware_stack(monkeypatch) -> None:
    # The reason for SyncStackASGIHandler (see its module doc): Django's ASGIHandler would call each
    # middleware's hooks through sync_to_async, so no middleware frame would be below the view's.
    assert isinstance(django_asgi_app, SyncStackASGIHandler)
    from django.http import JsonResponse

    stacks: list[list[str]] = []
    original = JsonResponse.__init__

    def init(self, *args, **kwargs):  # called by the healthz view
        stacks.append([f"{Path(frame.filename).name}:{frame.function}" for frame in inspect.stack()])
        original(self, *args, **kwargs)

    monkeypatch.setattr(JsonResponse, "__init__", init)
    assert (await request("GET", "/healthz/"))["status"] == 200
    assert len(stacks) == 1
    assert "deprecation.py:__call__" in stacks[0]  # MiddlewareMixin.__call__: the sync path
    assert "deprecation.py:__acall__" not in stacks[0]
