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


@pytest.fixture
def thread_recorder(monkeypatch):
    """(event, thread name) for request_started, the view and request_finished."""
    import threading

    from django.core import signals
    from django.http import JsonResponse

    seen: list[tuple[str, str]] = []
    started = lambda **kwargs: seen.append(("started", threading.current_thread().name))  # noqa: E731
    finished = lambda **kwargs: seen.append(("finished", threading.current_thread().name))  # noqa: E731
    signals.request_started.connect(started, weak=False)
    signals.request_finished.connect(finished, weak=False)
    original = JsonResponse.__init__

    def init(self, *args, **kwargs):  # the healthz view
        seen.append(("view", threading.current_thread().name))
        original(self, *args, **kwargs)

    monkeypatch.setattr(JsonResponse, "__init__", init)
    yield seen
    signals.request_started.disconnect(started)
    signals.request_finished.disconnect(finished)


async def test_each_request_is_one_trip_to_a_pool_thread_that_lives_on(thread_recorder) -> None:
    # Django's handler gives every request a new thread (so a new database connection) and runs the
    # signals and the view in separate trips; here it is one trip, to a thread kept for the next one.
    handler = SyncStackASGIHandler(threads=1)
    for _ in range(2):
        response = await HttpCommunicator(handler, "GET", "/healthz/", headers=HOST).get_response(timeout=10)
        assert response["status"] == 200
    assert [event for event, _ in thread_recorder] == ["started", "view", "finished"] * 2
    assert {name for _, name in thread_recorder} == {"portal-http_0"}


async def _call(handler, path: str, messages: list, *, method: str = "GET", headers: list | None = None) -> list[dict]:
    """The handler called as daphne calls it; what it sent. ``messages``: what the client sends, in
    order; a callable there is awaited first (to hold a message back until something happened)."""
    import asyncio

    sent: list[dict] = []

    async def receive() -> dict:
        while messages:
            message = messages.pop(0)
            if callable(message):
                await message()
                continue
            return message
        return await asyncio.Future()  # then the client stays

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": b"", "headers": HOST + (headers or []), "server": ("localhost", 80)}
    await asyncio.wait_for(handler(scope, receive, send), 10)
    return sent


BODY = {"type": "http.request", "body": b""}
GONE = {"type": "http.disconnect"}


async def _until(event) -> None:
    import asyncio

    await asyncio.get_running_loop().run_in_executor(None, event.wait, 10)


@pytest.fixture
def test_urls(settings):
    from tests.web import asgi_urls

    settings.ROOT_URLCONF = "tests.web.asgi_urls"
    for event in (asgi_urls.started, asgi_urls.finished, asgi_urls.release):
        event.clear()
    asgi_urls.ran.clear()
    yield asgi_urls
    asgi_urls.release.set()


async def test_a_client_that_leaves_once_its_view_has_started_gets_nothing_and_the_view_still_finishes(test_urls) -> None:
    sent = await _call(SyncStackASGIHandler(threads=1), "/slow/", [BODY, lambda: _until(test_urls.started), GONE])
    assert test_urls.finished.is_set()  # the view ran to its end
    assert sent == []  # and nothing was sent to a client that had gone
    sent = await _call(SyncStackASGIHandler(threads=1), "/slow/", [BODY])
    assert sent[0]["status"] == 200 and sent[-1]["body"] == b"done"  # a client that stays gets the answer


async def test_a_request_whose_client_left_before_its_turn_is_not_run_and_is_logged_once_quietly(test_urls, caplog) -> None:
    import asyncio
    import gc
    import logging

    handler = SyncStackASGIHandler(threads=1)
    caplog.set_level(logging.INFO)
    busy = asyncio.create_task(_call(handler, "/held/", [BODY]))  # takes the lane's only thread
    await asyncio.sleep(0.1)
    assert await _call(handler, "/counted/", [BODY, GONE]) == []  # waited for a thread, then left
    test_urls.release.set()
    assert (await busy)[0]["status"] == 200
    assert test_urls.ran == ["/held/"]  # the request whose client had gone never ran
    gc.collect()  # an unretrieved task exception would be logged now
    lines = [r for r in caplog.records if "/counted/" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO and lines[0].exc_info is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_request_cancelled_by_the_server_while_waiting_is_not_run_later(test_urls) -> None:
    import asyncio

    handler = SyncStackASGIHandler(threads=1)
    busy = asyncio.create_task(_call(handler, "/held/", [BODY]))
    await asyncio.sleep(0.1)
    waiting = asyncio.create_task(_call(handler, "/counted/", [BODY]))
    await asyncio.sleep(0.1)
    waiting.cancel()  # daphne kills an application that outlived its closed connection
    with pytest.raises(asyncio.CancelledError):
        await waiting
    test_urls.release.set()
    await busy
    await asyncio.sleep(0.1)
    assert test_urls.ran == ["/held/"]


async def test_password_posts_have_their_own_bounded_lane_and_pages_keep_answering(test_urls) -> None:
    import asyncio

    handler = SyncStackASGIHandler(threads=1, auth_threads=1, auth_queue=1)
    post = {"method": "POST", "headers": [(b"content-type", b"application/x-www-form-urlencoded")]}
    signing_in = [asyncio.create_task(_call(handler, "/login/", [BODY], **post)) for _ in range(2)]  # one runs, one waits
    await asyncio.sleep(0.1)
    refused = await _call(handler, "/login/", [BODY], **post)
    assert refused[0]["status"] == 503 and (b"retry-after", b"5") in [(k.lower(), v) for k, v in refused[0]["headers"]]
    assert "try again" in refused[1]["body"].decode()
    for path in ("/counted/", "/numbers/"):  # pages (and health checks, static files) do not wait for the hasher
        answered = await _call(handler, path, [BODY])
        assert answered[0]["status"] == 200, path
    test_urls.release.set()
    assert [(await task)[0]["status"] for task in signing_in] == [200, 200]


async def test_a_body_over_the_cap_is_refused_before_it_is_read(test_urls, settings) -> None:
    settings.MAX_BODY_BYTES = 1000
    handler = SyncStackASGIHandler(threads=1)
    chunks = [{"type": "http.request", "body": b"x" * 600, "more_body": True} for _ in range(1000)]
    declared = await _call(handler, "/counted/", chunks, method="POST", headers=[(b"content-length", b"600000")])
    assert declared[0]["status"] == 413 and len(chunks) == 1000  # refused from the header: nothing read
    streamed = await _call(handler, "/counted/", chunks, method="POST")  # no length given: read up to the cap
    assert streamed[0]["status"] == 413 and len(chunks) == 998
    assert test_urls.ran == []
    settings.MAX_BODY_BYTES = 10_000
    assert (await _call(handler, "/counted/", chunks[:3] + [BODY], method="POST"))[0]["status"] == 200


async def test_a_streaming_response_is_streamed_and_closed(test_urls) -> None:
    import warnings

    from django.core import signals

    closed: list[bool] = []
    receiver = lambda **kwargs: closed.append(True)  # noqa: E731
    signals.request_finished.connect(receiver, weak=False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Django warns that it consumes a synchronous iterator
            sent = await _call(SyncStackASGIHandler(threads=1), "/numbers/", [{"type": "http.request", "body": b""}])
    finally:
        signals.request_finished.disconnect(receiver)
    assert sent[0]["status"] == 200
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"012"
    assert closed == [True]  # response.close() ran once, after the body went out


async def test_the_admin_body_cap_follows_the_urlconf_and_script_prefix_although_the_prefix_is_remembered(settings) -> None:
    from django.urls import set_script_prefix

    from portal.asgi_http import body_limit

    settings.MAX_BODY_BYTES, settings.MAX_ADMIN_BODY_BYTES = 1000, 5000
    assert body_limit("/admin/facelogin/student/add/") == 5000 and body_limit("/login/face/") == 1000
    settings.ROOT_URLCONF = "tests.web.asgi_urls"  # no admin there: "/admin/" is the fallback
    assert body_limit("/admin/x/") == 5000
    settings.ROOT_URLCONF = "tests.web.admin_elsewhere_urls"
    assert body_limit("/staff/facelogin/") == 5000 and body_limit("/admin/x/") == 1000
    set_script_prefix("/portal/")  # served under a path: reverse() includes it
    try:
        assert body_limit("/portal/staff/facelogin/") == 5000 and body_limit("/staff/facelogin/") == 1000
    finally:
        set_script_prefix("/")
