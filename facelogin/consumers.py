"""The face sign-in websocket. Thin: validates messages, keeps the socket responsive, and hands every
frame to ``facelogin.services.face_attempts``. Protocol: docs/protocol.md; codes: facelogin/protocol.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from facelogin import protocol
from facelogin.services import throttle
from facelogin.services.face_attempts import FaceAttempt, Outcome
from facelogin.services.faceflow import CLAIM_SESSION_KEY

logger = logging.getLogger(__name__)

# Frames over the rate cap are dropped with an answer; this many in a row means the client ignores
# the protocol's backpressure, and the connection is closed.
TOO_FAST_BEFORE_CLOSE = 20


def _session_facts(session) -> tuple[str | None, str | None]:
    """(session key, claimed student number). Reading the session loads it, so a cookie naming no live
    session gives key None; one trip to the database, where AuthMiddleware would also load the user."""
    claim = session.get(CLAIM_SESSION_KEY)  # verify mode: the student number the page stored
    return session.session_key, claim


class FaceLoginConsumer(AsyncWebsocketConsumer):
    # No channel layer: nothing is ever sent to a sign-in socket from outside it, and with Redis every
    # connection would otherwise open a channel there and keep a second receive pending on it.
    channel_layer_alias = None
    attempt: FaceAttempt | None = None
    counted_address: str | None = None  # counted by throttle.connection_open until this socket closes

    async def dispatch(self, message: dict) -> None:
        # Channels closes stale database connections before every message (a thread switch per frame).
        # This consumer reaches the database only through database_sync_to_async, which does that itself.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        self.work: asyncio.Task | None = None
        self.deadline_task: asyncio.Task | None = None
        self.arrivals: deque[float] = deque()
        self.too_fast_in_a_row = 0
        await self.accept()
        client = self.scope.get("client") or (None, None)
        if not throttle.connection_open(ip=client[0]):  # one address may not hold many sockets at once
            await self._send({"type": "throttled", "retry_after": throttle.SOCKET_RETRY_SECONDS})
            await self.close(code=protocol.Close.THROTTLED)
            return
        self.counted_address = client[0]
        session = self.scope.get("session")
        session_key, claim = await database_sync_to_async(_session_facts)(session) if session is not None else (None, None)
        if not session_key:
            await self.close(code=protocol.Close.NO_SESSION)
            return
        headers = dict(self.scope.get("headers") or [])
        if settings.FACELOGIN["MODE"] != "verify":
            claim = None
        self.attempt = FaceAttempt(
            ip=client[0],
            session_key=session_key,
            user_agent=headers.get(b"user-agent", b"").decode("latin-1")[:400],
            claim=claim,
        )
        refusal = await self.attempt.begin()
        if refusal is not None:
            await self._finish(refusal)
            return
        await self._send(self.attempt.hello())
        self.deadline_task = asyncio.create_task(self._enforce_deadline())

    async def disconnect(self, code: int) -> None:
        if self.counted_address is not None:
            throttle.connection_closed(ip=self.counted_address)
            self.counted_address = None
        for task in (self.work, self.deadline_task):
            if task is not None and not task.done():
                task.cancel()
        if self.attempt is not None:
            await self.attempt.abandon()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        attempt = self.attempt
        if attempt is None or attempt.finished:
            return
        if bytes_data is None:
            await self._finish(await attempt.violation("text_frame", protocol.Close.PROTOCOL))
            return
        if len(bytes_data) > settings.FACELOGIN["MAX_FRAME_BYTES"]:
            await self._finish(await attempt.violation("frame_too_large", protocol.Close.FRAME_TOO_LARGE))
            return
        if self._over_rate():
            self.too_fast_in_a_row += 1
            if self.too_fast_in_a_row >= TOO_FAST_BEFORE_CLOSE:
                await self._finish(await attempt.violation("too_fast", protocol.Close.THROTTLED))
            else:
                await self._send({"type": "error", "code": protocol.Error.TOO_FAST})
            return
        self.too_fast_in_a_row = 0
        if self.work is not None and not self.work.done():
            await self._send({"type": "error", "code": protocol.Error.BUSY})
            return
        # Recognition runs as its own task so this socket keeps answering (too fast, busy) meanwhile.
        self.work = asyncio.create_task(self._recognise(bytes_data))

    def _over_rate(self) -> bool:
        now = time.monotonic()
        self.arrivals.append(now)
        while self.arrivals and now - self.arrivals[0] > 1.0:
            self.arrivals.popleft()
        return len(self.arrivals) > settings.FACELOGIN["MAX_FRAMES_PER_SECOND"]

    async def _recognise(self, data: bytes) -> None:
        try:
            outcome = await self.attempt.frame(data)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("face frame failed")
            outcome = Outcome({"type": "failed", "reason": "server_error"}, protocol.Close.SERVER_ERROR)
        if outcome.close_code is None:
            await self._send(outcome.reply)
        else:
            await self._finish(outcome)

    async def _enforce_deadline(self) -> None:
        await asyncio.sleep(max(0.0, self.attempt.seconds_left()))
        if not self.attempt.finished:
            if self.work is not None and not self.work.done():
                self.work.cancel()
            await self._finish(await self.attempt.fail("timeout", protocol.Close.TIMEOUT))

    async def _finish(self, outcome: Outcome) -> None:
        await self._send(outcome.reply)
        current = asyncio.current_task()
        if self.deadline_task is not None and self.deadline_task is not current:
            self.deadline_task.cancel()
        await self.close(code=outcome.close_code or protocol.Close.NORMAL)

    async def _send(self, message: dict) -> None:
        with contextlib.suppress(Exception):  # the peer may already be gone
            await self.send(text_data=json.dumps(message))
