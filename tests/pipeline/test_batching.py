"""facelogin.pipeline.batching: fair across addresses, bounded, and it skips frames nobody waits for.

The batch function here records what it is given and holds its first batch until the test has lined
frames up: the batcher's scheduling is what is under test (the real analysis is in test_analyze.py)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from facelogin.pipeline.batching import FrameBatcher, FrameQueueFull

pytestmark = pytest.mark.asyncio


class HeldBatches:
    """A batch function whose first batch waits for ``release()``; it records every batch."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []
        self.started = threading.Event()
        self.gate = threading.Event()

    def __call__(self, frames):
        self.batches.append(list(frames))
        self.started.set()
        self.gate.wait(10)
        return [b"seen:" + frame for frame in frames]

    def release(self) -> None:
        self.gate.set()


async def _occupy(batcher: FrameBatcher, held: HeldBatches) -> asyncio.Task:
    """A first frame the worker takes and holds, so later frames line up."""
    first = asyncio.create_task(batcher.analyze(b"first", key="somebody"))
    await asyncio.get_running_loop().run_in_executor(None, held.started.wait, 10)
    return first


async def test_a_student_is_served_in_the_next_batch_though_one_address_sent_30_frames_first():
    held = HeldBatches()
    batcher = FrameBatcher(held, max_batch=8)
    first = await _occupy(batcher, held)
    attacker = [asyncio.create_task(batcher.analyze(b"a%d" % i, key="203.0.113.9")) for i in range(30)]
    await asyncio.sleep(0.05)
    student = asyncio.create_task(batcher.analyze(b"student", key="198.51.100.7"))
    await asyncio.sleep(0.05)
    held.release()
    assert await asyncio.wait_for(student, 10) == b"seen:student"
    await asyncio.wait_for(asyncio.gather(first, *attacker), 10)
    assert b"student" in held.batches[1]  # the first batch after the held one
    assert [len(batch) for batch in held.batches] == [1, 8, 8, 8, 7]


async def test_addresses_take_turns_within_a_batch_and_across_batches():
    held = HeldBatches()
    batcher = FrameBatcher(held, max_batch=4)
    first = await _occupy(batcher, held)
    tasks = [asyncio.create_task(batcher.analyze(f"{key}{i}".encode(), key=key)) for key in "ab" for i in range(3)]
    tasks.append(asyncio.create_task(batcher.analyze(b"c0", key="c")))
    await asyncio.sleep(0.05)
    held.release()
    await asyncio.wait_for(asyncio.gather(first, *tasks), 10)
    assert held.batches[1:] == [[b"a0", b"b0", b"c0", b"a1"], [b"b1", b"a2", b"b2"]]


async def test_beyond_the_bound_a_frame_is_refused_at_once():
    held = HeldBatches()
    batcher = FrameBatcher(held, max_waiting=3)
    first = await _occupy(batcher, held)
    waiting = [asyncio.create_task(batcher.analyze(b"w%d" % i, key=str(i))) for i in range(3)]
    await asyncio.sleep(0.05)
    with pytest.raises(FrameQueueFull):
        await batcher.analyze(b"one too many", key="x")
    assert batcher.refused == 1
    held.release()
    await asyncio.wait_for(asyncio.gather(first, *waiting), 10)
    assert await batcher.analyze(b"later", key="x") == b"seen:later"  # room again


async def test_a_frame_whose_caller_has_gone_is_not_analysed():
    held = HeldBatches()
    batcher = FrameBatcher(held)
    first = await _occupy(batcher, held)
    gone = asyncio.create_task(batcher.analyze(b"gone", key="a"))
    stays = asyncio.create_task(batcher.analyze(b"stays", key="b"))
    await asyncio.sleep(0.05)
    gone.cancel()  # the websocket closed
    await asyncio.sleep(0.05)
    held.release()
    assert await asyncio.wait_for(stays, 10) == b"seen:stays"
    await first
    assert all(b"gone" not in batch for batch in held.batches)


async def test_the_counters_say_how_many_frames_in_how_many_batches_and_how_long_the_workers_were_busy():
    """What /metrics/ reports (facelogin.services.operations): the busy seconds are the batches' wall time."""

    def slow(frames):
        threading.Event().wait(0.05)
        return list(frames)

    batcher = FrameBatcher(slow, max_batch=2, max_waiting=7)
    assert (batcher.threads, batcher.max_waiting, batcher.frames, batcher.batches, batcher.busy_seconds) == (1, 7, 0, 0, 0.0)
    await asyncio.wait_for(asyncio.gather(*(batcher.analyze(b"f%d" % i, key=str(i)) for i in range(4))), 10)
    assert batcher.frames == 4
    assert 2 <= batcher.batches <= 4  # the first frame may be taken alone, before the others arrive
    assert 0.05 * batcher.batches <= batcher.busy_seconds < 0.05 * batcher.batches + 1.0
    assert batcher.waiting == 0
