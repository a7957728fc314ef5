"""Run frame analysis off the event loop, batching the embedding step across connections, fairly.

One daphne process serves many websockets. Recognition (~50-150 ms of CPU per frame) must not run on
the event loop (it stalled other sockets by up to 200 ms, see the performance notes), and running it
in an unbounded thread pool oversubscribes 2 cores. So frames wait here, served by a fixed number of
worker threads; a worker takes up to ``max_batch`` waiting frames and analyses them as one batch
(detection together for same-size frames, one embedding call), which costs less per frame than one
call each.

Fairness: frames wait in one line per ``key`` (the portal passes the client's address), and a batch
takes one frame from each line in turn, round-robin, continuing where the last batch stopped. With
one frame in flight per connection, an address that opens 30 connections gets one turn per round like
a student's single connection, instead of 30 places ahead of it in a first-come-first-served queue
(a student's frame answer went from 0.075 s to a median 1.2 s that way, 14.9 s with dear frames).

Bounds: at most ``max_waiting`` frames wait in all; beyond that ``analyze`` raises ``FrameQueueFull``
at once (the caller tells the person the server is busy) rather than letting the line grow. A frame
whose caller has gone (its future cancelled: the websocket closed) is dropped without analysis.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import PipelineError

logger = logging.getLogger(__name__)

# analyze_batch(list of frame bytes) -> list of FrameAnalysis or Exception, one per frame, in order
BatchFunction = Callable[[Sequence[bytes]], Sequence[Any]]


class FrameQueueFull(PipelineError):
    code = "busy"
    message = "The server is too busy to analyse this frame now."


@dataclass(eq=False)
class _Job:
    data: bytes
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    cancelled: bool = False  # set on the caller's event loop, read by the worker


class FrameBatcher:
    def __init__(self, analyze_batch: BatchFunction, *, threads: int = 1, max_batch: int = 8, max_waiting: int = 64) -> None:
        self._analyze_batch = analyze_batch
        self._threads = threads
        self._max_batch = max_batch
        self._max_waiting = max_waiting
        # One line per key, in round-robin order: the next batch starts with the first key.
        self._lines: dict[str, deque[_Job]] = {}
        self._waiting = 0
        self._condition = threading.Condition()
        self._started = False
        # Counters for monitoring (facelogin.services.operations), benchmarks and tests.
        self.batches = 0
        self.frames = 0
        self.refused = 0
        self.busy_seconds = 0.0  # wall time the workers spent analysing: its rate over threads is how full they are

    def _start(self) -> None:
        with self._condition:
            if self._started:
                return
            for index in range(self._threads):
                threading.Thread(target=self._serve, name=f"face-batcher-{index}", daemon=True).start()
            self._started = True

    async def analyze(self, data: bytes, *, key: str = "") -> Any:
        """The FrameAnalysis for these bytes; a per-frame error (bad image) is raised here, and
        ``FrameQueueFull`` when too many frames are waiting already."""
        self._start()
        loop = asyncio.get_running_loop()
        job = _Job(data, loop, loop.create_future())
        with self._condition:
            if self._waiting >= self._max_waiting:
                self.refused += 1
                raise FrameQueueFull(waiting=self._waiting)
            self._lines.setdefault(key, deque()).append(job)  # a new key joins at the end of the round
            self._waiting += 1
            self._condition.notify()
        job.future.add_done_callback(lambda future: setattr(job, "cancelled", future.cancelled()))
        return await job.future

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def threads(self) -> int:
        return self._threads

    @property
    def max_waiting(self) -> int:
        return self._max_waiting

    def _take(self) -> list[_Job]:
        """Up to ``max_batch`` frames, one per key in turn; waits until there is one."""
        with self._condition:
            while True:
                while not self._waiting:
                    self._condition.wait()
                jobs: list[_Job] = []
                while self._lines and len(jobs) < self._max_batch:
                    key, line = next(iter(self._lines.items()))
                    job = line.popleft()
                    self._waiting -= 1
                    del self._lines[key]
                    if line:
                        self._lines[key] = line  # to the back of the round
                    if not job.cancelled:
                        jobs.append(job)
                if jobs:
                    return jobs

    def _serve(self) -> None:
        while True:
            jobs = self._take()
            started = time.perf_counter()
            try:
                results: Sequence[Any] = self._analyze_batch([job.data for job in jobs])
            except Exception as exc:  # a bug or a model failure: every waiting frame learns of it
                logger.exception("frame batch failed")
                results = [exc] * len(jobs)
            with self._condition:  # several workers may finish at once
                self.busy_seconds += time.perf_counter() - started
                self.batches += 1
                self.frames += len(jobs)
            for job, result in zip(jobs, results, strict=True):
                try:
                    job.loop.call_soon_threadsafe(_settle, job.future, result)
                except RuntimeError:  # that event loop has closed: nobody is waiting any more
                    pass


def _settle(future: asyncio.Future, result: Any) -> None:
    if future.cancelled():  # the websocket went away while its frame was being analysed
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
