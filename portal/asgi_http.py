"""Django's ASGI handler, serving each request with one trip to a fixed pool of worker threads.

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
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse, HttpResponseBase
from django.urls import set_script_prefix

DEFAULT_THREADS = 8


class SyncStackASGIHandler(ASGIHandler):
    def __init__(self, threads: int | None = None) -> None:
        super().__init__()
        self.threads = threads or getattr(settings, "HTTP_THREADS", DEFAULT_THREADS)
        self.executor = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="portal-http")

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def _on_pool(self, function, *args):
        # Each request in its own copy of the caller's context: asgiref Locals (the active language, the
        # URL prefix) cannot leak from one request to the next through a reused thread.
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self.executor, context.run, function, *args)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            work = asyncio.ensure_future(self._on_pool(self._respond, scope, body_file))
            disconnected = asyncio.ensure_future(self.listen_for_disconnect(receive))
            await asyncio.wait({work, disconnected}, return_when=asyncio.FIRST_COMPLETED)
            # A synchronous view cannot be interrupted: it finishes even when the client has gone.
            response = await work
            gone = disconnected.done() and isinstance(disconnected.exception(), RequestAborted)
            if not disconnected.done():
                disconnected.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await disconnected
            if not gone:
                with contextlib.suppress(asyncio.CancelledError):  # the client left while the bytes went out
                    await self.send_response(response, send)
            if response.streaming:
                await self._on_pool(response.close)
        finally:
            body_file.close()

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
