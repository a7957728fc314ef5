"""Who pays for a failed face sign-in, and what one address can take from others (rows 3, 6 and 7 of
issue 16), through the real consumer and pipeline on Channels' WebsocketCommunicator."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from facelogin import protocol
from facelogin.models import FaceAttempt
from facelogin.pipeline.batching import FrameBatcher
from facelogin.services.faceflow import CLAIM_SESSION_KEY
from facelogin.services.recognition import engine
from portal.asgi import application
from tests import faces
from tests.web.test_consumer import _fresh_throttles_and_model, _receive, _send_frame, _session_cookie, enrolled  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def two_failures_cool_down(settings):
    settings.FACELOGIN = {**settings.FACELOGIN, "THROTTLE_FAILURES_BEFORE_COOLDOWN": 2}


async def _open(address: str, headers=None, claim: str | None = None) -> WebsocketCommunicator:
    if headers is None:
        session, headers = await database_sync_to_async(_session_cookie)()
        if claim is not None:
            session[CLAIM_SESSION_KEY] = claim
            await database_sync_to_async(session.save)()
    communicator = WebsocketCommunicator(application, "/" + protocol.WEBSOCKET_PATH, headers=headers)
    communicator.scope["client"] = (address, 50000)  # as daphne (or portal.proxy) sets it
    connected, _ = await communicator.connect(timeout=30)
    assert connected
    return communicator


async def _closed_with(communicator) -> int:
    return (await communicator.receive_output(timeout=10))["code"]


async def test_verify_failures_under_a_claim_do_not_lock_the_claimed_student_out(enrolled, settings, two_failures_cool_down):
    settings.FACELOGIN = {**settings.FACELOGIN, "MODE": "verify"}
    person = faces.johns()[0]
    victim = enrolled[person]
    for index in range(5):  # five addresses claim the student's number and break the protocol
        attacker = await _open(f"203.0.113.{index}", claim=victim.student_number)
        assert (await _receive(attacker))["type"] == "hello"
        await attacker.send_to(text_data="x")
        assert (await _receive(attacker))["code"] == "text_frame"
        await _closed_with(attacker)
    student = await _open("198.51.100.7", claim=victim.student_number)
    assert (await _receive(student))["type"] == "hello"
    for frame in [faces.webcam_frame(p) for p in faces.held_out_photos(person)]:
        await _send_frame(student, frame)
        answer = await _receive(student)
        if answer["type"] != "frame":
            break
    assert answer["type"] == "success", answer


async def test_an_attempt_abandoned_after_sending_frames_counts_as_a_failure(enrolled, two_failures_cool_down):
    _, headers = await database_sync_to_async(_session_cookie)()
    stranger = [faces.webcam_frame(p) for p in faces.photos_of(faces.johns()[4])[:2]]
    for _ in range(2):  # open, send two frames of a stranger, close before the decision
        communicator = await _open("203.0.113.5", headers)
        assert (await _receive(communicator))["type"] == "hello"
        for frame in stranger:
            await _send_frame(communicator, frame)
            assert (await _receive(communicator))["type"] == "frame"
        await communicator.disconnect()
    again = await _open("203.0.113.5", headers)
    answer = await _receive(again)
    assert answer["type"] == "throttled" and answer["retry_after"] > 0
    outcomes = await database_sync_to_async(lambda: sorted(FaceAttempt.objects.values_list("outcome", flat=True)))()
    assert outcomes == ["abandoned", "abandoned", "throttled"]


async def test_progress_does_not_tell_whether_the_face_matches_anyone(enrolled):
    enrolled_frame = faces.webcam_frame(faces.held_out_photos(faces.johns()[0])[0])
    stranger_frame = faces.webcam_frame(faces.photos_of(faces.johns()[4])[0])
    progress = []
    for index, frame in enumerate((enrolled_frame, stranger_frame)):
        communicator = await _open(f"198.51.100.{index}")
        await _receive(communicator)
        await _send_frame(communicator, frame)
        answer = await _receive(communicator)
        assert answer["type"] == "frame" and answer["guidance"] == "face_found", answer
        progress.append(answer["progress"])
        await communicator.disconnect()
    assert progress[0] == progress[1] > 0


async def test_one_address_may_hold_only_a_few_sockets_at_once(enrolled, settings):
    settings.FACELOGIN = {**settings.FACELOGIN, "SOCKETS_PER_ADDRESS": 2}
    held = [await _open("203.0.113.9") for _ in range(2)]
    for communicator in held:
        assert (await _receive(communicator))["type"] == "hello"
    third = await _open("203.0.113.9")
    assert (await _receive(third))["type"] == "throttled"
    assert await _closed_with(third) == protocol.Close.THROTTLED
    other = await _open("198.51.100.7")  # another address is not affected
    assert (await _receive(other))["type"] == "hello"
    await held[0].disconnect()
    await asyncio.sleep(0.1)
    fourth = await _open("203.0.113.9")  # a socket closed: room again
    assert (await _receive(fourth))["type"] == "hello"
    for communicator in (held[1], other, fourth):
        await communicator.disconnect()


async def test_an_attempt_the_overloaded_server_could_not_serve_is_not_counted_against_the_student(enrolled, monkeypatch, two_failures_cool_down):
    import threading

    gate, entered = threading.Event(), threading.Event()
    server = engine()

    def held(frames):  # the worker is busy with someone else's batch
        entered.set()
        gate.wait(20)
        return server.recognise_batch(frames)

    batcher = FrameBatcher(held, max_waiting=1)
    monkeypatch.setattr(server, "batcher", batcher)
    frame = faces.webcam_frame(faces.held_out_photos(faces.johns()[0])[0])
    others = [asyncio.create_task(batcher.analyze(frame + b"1", key="10.0.0.1"))]
    await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
    others.append(asyncio.create_task(batcher.analyze(frame + b"2", key="10.0.0.2")))
    await asyncio.sleep(0.1)  # one frame being analysed, one waiting: the queue is full
    _, headers = await database_sync_to_async(_session_cookie)()
    for _ in range(3):
        communicator = await _open("198.51.100.7", headers)
        assert (await _receive(communicator))["type"] == "hello"
        await _send_frame(communicator, frame)
        assert await _receive(communicator) == {"type": "failed", "reason": "busy"}
        assert await _closed_with(communicator) == protocol.Close.BUSY
    communicator = await _open("198.51.100.7", headers)
    assert (await _receive(communicator))["type"] == "hello"  # not in a cool-down
    await communicator.disconnect()
    gate.set()
    await asyncio.gather(*others)
    reasons = await database_sync_to_async(lambda: list(FaceAttempt.objects.values_list("outcome", "reason")))()
    assert reasons == [("unavailable", "busy")] * 3
