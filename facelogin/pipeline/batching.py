"""Run frame analysis off the event loop, batching the embedding step across connections.

One daphne process serves many websockets. Recognition (~50-150 ms of CPU per frame) must not run on
the event loop (it stalled other sockets by up to 200 ms, see the performance notes), and running it
in an unbounded thread pool oversubscribes 2 cores. So frames go into one queue, served by a fixed
number of worker threads; a worker takes every frame waiting (up to ``max_batch``) and analyses them
as one batch (detection together for same-size frames, one embedding call), which costs less per
frame than one call each.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

# analyze_batch(list of frame bytes) -> list of FrameAnalysis or Exception, one per frame, in order
BatchFunction = Callable[[Sequence[bytes]], Sequence[Any]]


@dataclass
class _Job:
    data: bytes
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future


class FrameBatcher:
    def __init__(self, analyze_batch: BatchFunction, *, threads: int = 1, max_batch: int = 8) -> None:
        self._analyze_batch = analyze_batch
        self._threads = threads
        self._max_batch = max_batch
        self._queue: queue.Queue[_Job] = queue.Queue()
        self._started = False
        self._lock = threading.Lock()
        self.batches = 0  # counters for benchmarks and tests
        self.frames = 0

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            for index in range(self._threads):
                threading.Thread(target=self._serve, name=f"face-batcher-{index}", daemon=True).start()
            self._started = True

    async def analyze(self, data: bytes) -> Any:
        """The FrameAnalysis for these bytes; a per-frame error (bad image) is raised here."""
        self._start()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(_Job(data, loop, future))
        return await future

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def _serve(self) -> None:
        while True:
            jobs = [self._queue.get()]
            while len(jobs) < self._max_batch:
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                results: Sequence[Any] = self._analyze_batch([job.data for job in jobs])
            except Exception as exc:  # a bug or a model failure: every waiting frame learns of it
                logger.exception("frame batch failed")
                results = [exc] * len(jobs)
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
