"""Django's ASGI handler, serving each request with one trip to a kept thread, in lanes.

Every view and middleware in this project is synchronous. Under Django's ``ASGIHandler`` a request
costs a new thread (``ThreadSensitiveContext``: one per request), so a new database connection
whatever ``CONN_MAX_AGE`` says, and several thread switches: the ``request_started`` receivers, each
middleware hook that can run both ways (through ``sync_to_async``), and ``response.close()``. Measured
under daphne on this 2-core machine (bench.latency), a trivial request cost 9.4 ms of CPU that way.

Here the whole request runs in one call on a pool thread, as under WSGI: ``request_started``, the
middleware stack and view built synchronously, and, for a response whose body is already in memory,
``response.close()`` (``request_finished``). Pool threads live on, so each keeps its database
connection for ``CONN_MAX_AGE``. daphne, the body upload and the response bytes stay asynchronous.
A streaming response (a static file) is sent as Django sends it and closed on the pool afterwards.
An async view would still work: Django's synchronous handler adapts it.

Lanes: a password sign-in costs ~0.3 s of CPU in the hasher. In one first-come-first-served pool, 150
such POSTs in 2 s held every thread, and ``/healthz/`` took 34 s. So password POSTs (the portal's and
the admin's sign-in, the admin's password change) run in their own small lane
(``DJANGO_HTTP_AUTH_THREADS``) with a bounded line (``DJANGO_HTTP_AUTH_QUEUE``): beyond it the answer is
503 with ``Retry-After`` at once. Everything else (pages, static files, health checks, the ticket
redemption) has the general lane (``DJANGO_HTTP_THREADS``) to itself.

A request whose client has gone before its turn is not run (a synchronous view that has started cannot
be interrupted: it finishes, and nothing is sent). Such a request is logged once, in one line.

Request bodies are capped (``DJANGO_MAX_BODY_BYTES``; the admin, where enrolment photos are uploaded,
``DJANGO_MAX_ADMIN_BODY_BYTES``): a declared length over the cap is answered 413 before anything is
read, and reading stops at the cap. daphne itself (Twisted) buffers a whole body before it calls the
application, so ``install_daphne_body_limit`` puts the same cap into daphne's request object.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import io
import logging
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property

from django import urls
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.dispatch import receiver
from django.http import FileResponse, HttpResponse, HttpResponseBase
from django.urls import reverse, set_script_prefix

logger = logging.getLogger("portal.http")

DEFAULT_THREADS = 8
DEFAULT_AUTH_THREADS = 2
DEFAULT_AUTH_QUEUE = 16
AUTH_RETRY_SECONDS = 5
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_MAX_ADMIN_BODY_BYTES = 100 * 1024 * 1024


class RequestTooLarge(Exception):
    pass


class Lane:
    """A fixed pool of threads and, optionally, a bound on the requests waiting for them."""

    def __init__(self, name: str, threads: int, queue: int | None = None) -> None:
        self.threads = threads
        self.queue = queue
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
        self.admitted = 0  # running + waiting; only touched on the event loop

    def full(self) -> bool:
        return self.queue is not None and self.admitted >= self.threads + self.queue


def body_limit(path: str) -> int:
    """The largest request body accepted for ``path``: larger in the admin (enrolment photo uploads)."""
    admin = path.startswith(_admin_prefix())
    if admin:
        return getattr(settings, "MAX_ADMIN_BODY_BYTES", DEFAULT_MAX_ADMIN_BODY_BYTES)
    return getattr(settings, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)


def _admin_prefix() -> str:
    # Asked twice per request, once on daphne's event loop; reverse() cost ~0.15 ms of it each time.
    return _admin_prefix_under(urls.get_script_prefix())


@functools.lru_cache(maxsize=16)
def _admin_prefix_under(script_prefix: str) -> str:
    try:
        return reverse("admin:index")  # reverse() prefixes the current script prefix itself
    except Exception:  # noqa: BLE001 - no admin in this URLconf
        return "/admin/"


@receiver(signals.setting_changed)
def _forget_admin_prefix(*, setting: str, **kwargs) -> None:
    if setting in ("ROOT_URLCONF", "FORCE_SCRIPT_NAME"):
        _admin_prefix_under.cache_clear()


def refusal(status: int, accept_language: str = "") -> HttpResponse:
    """A short plain answer in the client's language: 413 (too large) or 503 (busy, retry)."""
    from django.utils import translation
    from django.utils.translation import gettext as _

    language = settings.LANGUAGE_CODE
    for code, _quality in translation.trans_real.parse_accept_lang_header(accept_language)[:5]:
        with contextlib.suppress(LookupError):
            language = translation.get_supported_language_variant(code)
            break
    with translation.override(language):
        if status == 413:
            text = _("The request is too large.")
        else:
            text = _("The portal is busy signing other people in. Please try again in a few seconds.")
    response = HttpResponse(text + "\n", status=status, content_type="text/plain; charset=utf-8")
    if status == 503:
        response["Retry-After"] = str(AUTH_RETRY_SECONDS)
    return response


def _header(scope, name: bytes) -> str:
    for key, value in scope.get("headers") or []:
        if key == name:
            return value.decode("latin-1")
    return ""


class SyncStackASGIHandler(ASGIHandler):
    def __init__(self, threads: int | None = None, *, auth_threads: int | None = None, auth_queue: int | None = None) -> None:
        super().__init__()
        self.threads = threads or getattr(settings, "HTTP_THREADS", DEFAULT_THREADS)
        self.general = Lane("portal-http", self.threads)
        self.auth = Lane(
            "portal-auth",
            auth_threads or getattr(settings, "HTTP_AUTH_THREADS", DEFAULT_AUTH_THREADS),
            auth_queue if auth_queue is not None else getattr(settings, "HTTP_AUTH_QUEUE", DEFAULT_AUTH_QUEUE),
        )

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    @cached_property
    def auth_paths(self) -> frozenset[str]:
        """Where a POST runs the password hasher."""
        paths = {"/login/", "/login/face/confirm/", "/admin/login/", "/admin/password_change/"}
        for name in ("login", "face_confirm", "admin:login", "admin:password_change"):
            with contextlib.suppress(Exception):
                paths.add(reverse(name))
        return frozenset(paths)

    def lane_for(self, scope) -> Lane:
        if scope.get("method") == "POST" and scope["path"] in self.auth_paths:
            return self.auth
        return self.general

    async def _on_pool(self, function, *args, lane: Lane | None = None):
        # Each request in its own copy of the caller's context: asgiref Locals (the active language, the
        # URL prefix) cannot leak from one request to the next through a reused thread.
        context = contextvars.copy_context()
        return await asyncio.wrap_future((lane or self.general).executor.submit(context.run, function, *args))

    async def read_body(self, receive, limit: int | None = None):
        """The body, into a file that rolls over to disk; RequestTooLarge as soon as it passes ``limit``."""
        body_file = tempfile.SpooledTemporaryFile(max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE, mode="w+b")
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                body_file.close()
                raise RequestAborted()
            chunk = message.get("body", b"")
            size += len(chunk)
            if limit is not None and size > limit:
                body_file.close()
                raise RequestTooLarge()
            body_file.write(chunk)
            if not message.get("more_body", False):
                break
        body_file.seek(0)
        return body_file

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        limit = body_limit(scope["path"])
        declared = _header(scope, b"content-length")
        languages = _header(scope, b"accept-language")
        if declared.isdigit() and int(declared) > limit:
            await self.send_response(refusal(413, languages), send)
            return
        try:
            body_file = await self.read_body(receive, limit)
        except RequestAborted:
            logger.info("%s %s: the client left while sending the request", scope.get("method"), scope["path"])
            return
        except RequestTooLarge:
            await self.send_response(refusal(413, languages), send)
            return
        lane = self.lane_for(scope)
        if lane.full():
            body_file.close()
            logger.warning("%s %s: %d requests already waiting; answered 503", scope.get("method"), scope["path"], lane.admitted)
            await self.send_response(refusal(503, languages), send)
            return
        lane.admitted += 1
        disconnected = asyncio.ensure_future(self.listen_for_disconnect(receive))
        try:
            await self._serve(scope, send, body_file, lane, disconnected)
        finally:
            lane.admitted -= 1
            if not disconnected.done():
                disconnected.cancel()
            with contextlib.suppress(asyncio.CancelledError, RequestAborted):
                await disconnected  # retrieved, so asyncio never logs it as an error
            body_file.close()

    async def _serve(self, scope, send, body_file, lane: Lane, disconnected: asyncio.Future) -> None:
        context = contextvars.copy_context()
        job = lane.executor.submit(context.run, self._respond, scope, body_file)
        work = asyncio.wrap_future(job)
        try:
            await asyncio.wait({work, disconnected}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # daphne gave up on this request: do not start it later
            job.cancel()
            raise
        if disconnected.done() and job.cancel():  # the client left before the request's turn came
            logger.info("%s %s: the client left before the request ran; not run", scope.get("method"), scope["path"])
            return
        # A synchronous view cannot be interrupted: it finishes even when the client has gone.
        response = await work
        if not disconnected.done():
            with contextlib.suppress(asyncio.CancelledError):  # the client left while the bytes went out
                await self.send_response(response, send)
        else:
            logger.info("%s %s: the client left before the answer; not sent", scope.get("method"), scope["path"])
        if response.streaming:
            await self._on_pool(response.close)

    def _respond(self, scope, body_file) -> HttpResponseBase:
        """The request, start to finish, on a pool thread: what a WSGI server would run."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        response = error_response if request is None else self.get_response(request)
        response._handler_class = self.__class__
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size  # daphne chunks the bytes itself
        if not response.streaming:
            response.close()  # the body is in memory already; request_finished runs here, not in one more trip
        return response


def get_sync_stack_asgi_application() -> SyncStackASGIHandler:
    """Like ``django.core.asgi.get_asgi_application``, with the pooled synchronous stack."""
    import django

    django.setup(set_prefix=False)
    return SyncStackASGIHandler()


def install_daphne_body_limit() -> None:
    """Make daphne refuse an oversized request body while it arrives (413, connection closed), instead
    of buffering all of it (Twisted writes it to a temporary file) before the application is called.

    daphne builds each request from the module-level name ``daphne.http_protocol.WebRequest``."""
    try:
        from daphne import http_protocol
    except ImportError:  # another ASGI server: the handler's own cap still applies
        return
    if getattr(http_protocol.WebRequest, "portal_body_limit", False):
        return

    class LimitedWebRequest(http_protocol.WebRequest):
        portal_body_limit = True
        refused = False
        received = 0
        limit = DEFAULT_MAX_BODY_BYTES

        def gotLength(self, length):
            # The request line was read already; Twisted keeps its target on the channel until the body ends.
            target = getattr(self.channel, "_path", b"/") or b"/"
            self.limit = body_limit(target.split(b"?", 1)[0].decode("latin-1"))
            if length is not None and length > self.limit:
                self._refuse()
                return
            super().gotLength(length)

        def handleContentChunk(self, data):
            if self.refused:
                return
            self.received += len(data)
            if self.received > self.limit:
                self._refuse()
                return
            super().handleContentChunk(data)

        def requestReceived(self, command, path, version):
            if not self.refused:
                super().requestReceived(command, path, version)

        def _refuse(self) -> None:
            if self.refused:
                return
            self.refused = True
            if getattr(self, "content", None) is not None:
                self.content.close()
            self.content = io.BytesIO()
            languages = b",".join(self.requestHeaders.getRawHeaders(b"accept-language") or []).decode("latin-1")
            answer = refusal(413, languages)
            head = [b"HTTP/1.1 413 Content Too Large"] + [f"{k}: {v}".encode("latin-1") for k, v in answer.items()]
            head += [b"Content-Length: %d" % len(answer.content), b"Connection: close"]
            self.channel.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + answer.content)
            self.channel.loseConnection()  # stops reading: the rest of the body is never received
            logger.warning("request body over %d bytes refused with 413 (%s)", self.limit, self.channel._path[:200] if hasattr(self.channel, "_path") else "")

    http_protocol.WebRequest = LimitedWebRequest
