"""The face sign-in websocket on the real ASGI application, with real faces."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import channels.layers
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client

from facelogin import protocol
from facelogin.models import FaceAttempt, FaceTicket, SignIn
from facelogin.services.recognition import engine
from facelogin.services.training import classifier_train
from portal.asgi import application
from tests import faces

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(autouse=True)
def _fresh_throttles_and_model(settings):
    from django.core.cache import cache

    cache.clear()
    # Liveness has its own tests below; these are about recognition and the protocol.
    settings.FACELOGIN = {**settings.FACELOGIN, "MODEL_REFRESH_SECONDS": 0.0, "MAX_FRAMES": 8, "LIVENESS": False}
    yield
    cache.clear()


@pytest.fixture
def enrolled(make_student):
    """Three real people enrolled (six photos each) and a classifier trained on them."""
    students = faces.enrol_people(make_student, faces.johns()[:3], "2026J00")
    faces.enrol_background(make_student)
    version = classifier_train(trigger="test")
    assert version.is_active, version.error
    return students


def _session_cookie() -> tuple[SessionStore, list[tuple[bytes, bytes]]]:
    session = SessionStore()
    session.create()
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), (b"cookie", f"sessionid={session.session_key}".encode())]
    return session, headers


async def _connect(headers=None):
    if headers is None:
        _, headers = await database_sync_to_async(_session_cookie)()
    communicator = WebsocketCommunicator(application, "/" + protocol.WEBSOCKET_PATH, headers=headers)
    connected, _ = await communicator.connect(timeout=30)
    assert connected
    return communicator


async def _receive(communicator, timeout=30) -> dict:
    return json.loads(await communicator.receive_from(timeout=timeout))


_last_sent: dict[int, float] = {}


async def _send_frame(communicator, frame: bytes) -> None:
    """Send as the page does, no faster than the server's rate cap: on a fast machine the answers come
    back quicker than the cap allows frames, and the extra frames would be refused as too_fast."""
    from django.conf import settings

    interval = 1 / settings.FACELOGIN["MAX_FRAMES_PER_SECOND"] + 0.01
    wait = _last_sent.get(id(communicator), 0.0) + interval - time.monotonic()
    if wait > 0:
        await asyncio.sleep(wait)
    _last_sent[id(communicator)] = time.monotonic()
    await communicator.send_to(bytes_data=frame)


async def _sign_in_with(communicator, frames: list[bytes]) -> list[dict]:
    hello = await _receive(communicator)
    assert hello["type"] == "hello" and hello["codes"] == protocol.codes_for_client()
    answers = []
    for frame in frames:
        await _send_frame(communicator, frame)
        answer = await _receive(communicator)
        answers.append(answer)
        if answer["type"] in ("success", "failed", "throttled"):
            break
    return answers


async def test_an_enrolled_students_held_out_photos_earn_a_ticket_that_signs_in(enrolled):
    person = faces.johns()[0]
    session, headers = await database_sync_to_async(_session_cookie)()
    communicator = await _connect(headers)
    frames = [faces.webcam_frame(p) for p in faces.held_out_photos(person)]
    answers = await _sign_in_with(communicator, frames)
    assert answers[0]["type"] == "frame" and answers[0]["face"] is not None and answers[0]["guidance"] == "face_found"
    assert answers[-1]["type"] == "success", answers
    assert (await communicator.receive_output(timeout=5))["code"] == protocol.Close.NORMAL

    def redeem():
        client = Client()
        client.cookies["sessionid"] = session.session_key
        response = client.post("/login/face/complete/", {"ticket": answers[-1]["ticket"]})
        return response, client.get("/").content.decode()

    response, home = await database_sync_to_async(redeem)()
    assert response.status_code == 302
    student = enrolled[person]
    assert student.full_name in home and student.student_number in home
    sign_in = await database_sync_to_async(SignIn.objects.get)()
    assert sign_in.method == "face" and sign_in.scores["similarity"] >= sign_in.scores["threshold"]
    attempt = await database_sync_to_async(FaceAttempt.objects.get)()
    assert attempt.outcome == "ticket_issued" and attempt.student_id == student.pk
    # No challenge was run, and the ticket says so (campus apps get acr "face", not "face-liveness").
    ticket = await database_sync_to_async(FaceTicket.objects.get)()
    assert ticket.scores["liveness"] is False


async def test_a_sign_in_needs_no_channel_layer_and_no_thread_switch_per_message(enrolled, monkeypatch):
    # FaceLoginConsumer opts out of both (see its class): Channels would otherwise open a channel per
    # connection (in Redis, in production) and close stale database connections before every frame.
    import channels.consumer

    closes = []

    async def counting_close():
        closes.append(1)

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counting_close)
    new_channels = []
    layer = channels.layers.get_channel_layer()
    original_new_channel = layer.new_channel

    async def counting_new_channel(*args, **kwargs):
        new_channels.append(1)
        return await original_new_channel(*args, **kwargs)

    monkeypatch.setattr(layer, "new_channel", counting_new_channel)
    person = faces.johns()[0]
    _, headers = await database_sync_to_async(_session_cookie)()
    communicator = await _connect(headers)
    answers = await _sign_in_with(communicator, [faces.webcam_frame(p) for p in faces.held_out_photos(person)])
    assert answers[-1]["type"] == "success"
    assert closes == [] and new_channels == []


async def test_frames_are_voted_in_their_batch_not_on_the_event_loop(enrolled, monkeypatch):
    # The gallery search costs milliseconds at 30,000 students: on the event loop it would hold up every
    # socket of the process once a frame. The batcher's thread votes the whole batch at once instead.
    from facelogin.services import recognition

    on_the_loop = []
    vote_alone = recognition.frame_vote
    monkeypatch.setattr(recognition, "frame_vote", lambda *a, **k: on_the_loop.append(1) or vote_alone(*a, **k))
    person = faces.johns()[0]
    communicator = await _connect()
    answers = await _sign_in_with(communicator, [faces.webcam_frame(p) for p in faces.held_out_photos(person)])
    assert answers[-1]["type"] == "success", answers
    assert on_the_loop == []


@pytest.mark.parametrize("stranger", ["johns", "photo"])
async def test_a_face_that_is_not_enrolled_never_gets_a_ticket(enrolled, stranger):
    if stranger == "johns":
        photos = faces.photos_of(faces.johns()[4])
    else:
        photos = [faces.FACES / "photos" / name for name in ("paul_rudd.jpg", "shea_whigham.jpg", "angelina_jolie.jpg", "kate_siegel.jpg")]
    communicator = await _connect()
    frames = [faces.webcam_frame(p, shift=s) for p in photos for s in (0, 8)]
    answers = await _sign_in_with(communicator, frames)
    assert not any(a["type"] == "success" for a in answers)
    assert answers[-1] == {"type": "failed", "reason": answers[-1]["reason"]}
    assert (await communicator.receive_output(timeout=5))["code"] == protocol.Close.NOT_RECOGNISED
    attempt = await database_sync_to_async(FaceAttempt.objects.get)()
    assert attempt.outcome == "failed" and attempt.student_id is None


async def test_a_text_frame_closes_with_the_protocol_code(enrolled):
    communicator = await _connect()
    await _receive(communicator)
    await communicator.send_to(text_data="hello?")
    assert await _receive(communicator) == {"type": "error", "code": "text_frame"}
    assert (await communicator.receive_output(timeout=5))["code"] == protocol.Close.PROTOCOL


async def test_an_oversized_frame_closes_with_its_own_code(enrolled, settings):
    communicator = await _connect()
    await _receive(communicator)
    await communicator.send_to(bytes_data=b"\xff\xd8" + bytes(settings.FACELOGIN["MAX_FRAME_BYTES"]))
    assert await _receive(communicator) == {"type": "error", "code": "frame_too_large"}
    assert (await communicator.receive_output(timeout=5))["code"] == protocol.Close.FRAME_TOO_LARGE


async def test_garbage_bytes_are_answered_and_the_third_ends_the_attempt(enrolled):
    communicator = await _connect()
    await _receive(communicator)
    for index in range(2):
        await communicator.send_to(bytes_data=b"not an image %d" % index)
        assert await _receive(communicator) == {"type": "error", "code": protocol.Error.BAD_IMAGE}
    await communicator.send_to(bytes_data=b"\xff\xd8\xff\xe0 truncated jpeg")
    assert await _receive(communicator) == {"type": "failed", "reason": "bad_image"}
    assert (await communicator.receive_output(timeout=5))["code"] == protocol.Close.BAD_IMAGES


async def test_the_same_frame_twice_counts_once(enrolled):
    communicator = await _connect()
    await _receive(communicator)
    frame = faces.webcam_frame(faces.held_out_photos(faces.johns()[0])[0])
    await communicator.send_to(bytes_data=frame)
    first = await _receive(communicator)
    await communicator.send_to(bytes_data=frame)
    assert first["type"] == "frame"
    assert await _receive(communicator) == {"type": "error", "code": protocol.Error.DUPLICATE}
    await communicator.disconnect()


async def test_frames_faster_than_the_cap_are_dropped_then_the_client_is_closed(enrolled, settings):
    settings.FACELOGIN = {**settings.FACELOGIN, "MAX_FRAMES_PER_SECOND": 2.0}
    communicator = await _connect()
    await _receive(communicator)
    frames = [faces.webcam_frame(p, shift=s) for p in faces.held_out_photos(faces.johns()[0]) for s in range(0, 40, 2)]
    for frame in frames[:25]:  # no backpressure: fire without waiting for answers
        await communicator.send_to(bytes_data=frame)
    codes = []
    while True:
        message = await communicator.receive_output(timeout=30)
        if message["type"] == "websocket.close":
            break
        codes.append(json.loads(message["text"]).get("code") or json.loads(message["text"])["type"])
    assert message["code"] == protocol.Close.THROTTLED
    assert codes.count(protocol.Error.TOO_FAST) >= 10
    assert protocol.Error.BUSY in codes or "frame" in codes


async def test_a_connection_without_a_session_is_closed(enrolled):
    communicator = WebsocketCommunicator(application, "/" + protocol.WEBSOCKET_PATH, headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")])
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    assert (await communicator.receive_output(timeout=5))["code"] == protocol.Close.NO_SESSION


async def test_a_cookie_naming_no_live_session_is_closed(enrolled):
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), (b"cookie", b"sessionid=" + b"x" * 32)]
    communicator = WebsocketCommunicator(application, "/" + protocol.WEBSOCKET_PATH, headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    assert (await communicator.receive_output(timeout=5))["code"] == protocol.Close.NO_SESSION


async def test_a_foreign_origin_is_refused(enrolled):
    _, headers = await database_sync_to_async(_session_cookie)()
    headers = [(k, b"http://evil.example" if k == b"origin" else v) for k, v in headers]
    communicator = WebsocketCommunicator(application, "/" + protocol.WEBSOCKET_PATH, headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert not connected


async def test_without_a_trained_classifier_the_page_is_told_face_sign_in_is_unavailable(db):
    communicator = await _connect()
    assert await _receive(communicator) == {"type": "failed", "reason": "unavailable"}
    assert (await communicator.receive_output(timeout=5))["code"] == protocol.Close.UNAVAILABLE


async def test_repeated_failures_put_the_session_into_a_cool_down(enrolled, settings):
    settings.FACELOGIN = {**settings.FACELOGIN, "THROTTLE_FAILURES_BEFORE_COOLDOWN": 2}
    _, headers = await database_sync_to_async(_session_cookie)()
    for _ in range(2):
        communicator = await _connect(headers)
        await _receive(communicator)
        await communicator.send_to(text_data="x")  # each attempt fails
        await _receive(communicator)
        await communicator.receive_output(timeout=5)
    communicator = await _connect(headers)
    answer = await _receive(communicator)
    assert answer["type"] == "throttled" and answer["retry_after"] > 0
    assert (await communicator.receive_output(timeout=5))["code"] == protocol.Close.THROTTLED


async def test_one_bad_client_does_not_disturb_another(enrolled):
    """A flooding client and an honest one at the same time: the honest one still signs in."""
    honest = await _connect()
    flooder = await _connect()
    await _receive(honest)
    await _receive(flooder)

    async def flood():
        junk = np.random.default_rng(0).integers(0, 255, 30_000, dtype=np.uint8).tobytes()
        for index in range(40):
            await flooder.send_to(bytes_data=junk + bytes([index]))
            await asyncio.sleep(0)

    frames = [faces.webcam_frame(p) for p in faces.held_out_photos(faces.johns()[1])]

    async def sign_in():
        answers = []
        for frame in frames:
            await _send_frame(honest, frame)
            answer = await _receive(honest)
            answers.append(answer)
            if answer["type"] != "frame":
                break
        return answers

    _, answers = await asyncio.gather(flood(), sign_in())
    assert answers[-1]["type"] == "success", answers
    await flooder.disconnect()


async def test_a_student_suspended_after_training_is_not_signed_in(enrolled):
    person = faces.johns()[0]
    student = enrolled[person]
    student.status = "suspended"
    await database_sync_to_async(student.save)()
    communicator = await _connect()
    answers = await _sign_in_with(communicator, [faces.webcam_frame(p) for p in faces.held_out_photos(person)])
    assert answers[-1]["type"] == "failed"
    attempt = await database_sync_to_async(FaceAttempt.objects.get)()
    assert attempt.reason == "inactive_student"


# --- liveness -------------------------------------------------------------------------------------
# A frontal held-out photo of an enrolled student (yaw about 0), lifted to 3-D (bench.head3d) for the head
# that turns, or printed (bench.actors) for the attacks.
FRONTAL = faces.JOHNS / "John_Schneider" / "000329_00925859.jpg"


@pytest.fixture
def with_liveness(settings, monkeypatch):
    settings.FACELOGIN = {**settings.FACELOGIN, "LIVENESS": True, "LIVENESS_FLASH": True, "MAX_FRAMES": 60}
    engine_for_these_settings(monkeypatch)


def engine_for_these_settings(monkeypatch) -> None:
    """The process's engine is built once, from the settings of its first use: with liveness off (this
    module's default, an ``enrolled`` fixture may have built it) it has no face mesh. The test gets one
    built from its own settings; the old one is put back after it."""
    from facelogin.services import recognition

    monkeypatch.setattr(recognition, "_engine", None)


def _actor(kind: str):
    """A camera in front of the page: the student turning when asked, a print of them, or a 3-D puppet of
    them shown on a tablet (turns perfectly, glows instead of reflecting the page's colours)."""
    import random

    from bench.actors import Camera, Print, PuppetActor, StillActor, Student, StudentActor
    from bench.head3d import Head, load_photo, place

    rng = random.Random(7)
    camera = Camera(np.random.default_rng(7), reflection=0.15)
    if kind == "print":
        return StillActor(Print(FRONTAL, 220, rng), camera)
    student = Student(Head.from_canvas(place(load_photo(FRONTAL), 220)), rng)
    student.reaction = lambda: 0.35  # a quick student keeps the test short
    return StudentActor(student, camera) if kind == "student" else PuppetActor(student, camera)


async def _in_front_of_the_page(communicator, actor, *, max_frames: int = 70) -> list[dict]:
    """The page's loop: a frame after each answer (no faster than the rate cap), and a new screen colour on
    the face before the next frame is taken."""
    loop = asyncio.get_running_loop()
    hello = await _receive(communicator)
    started, screen, answers = time.monotonic(), None, []
    actor.observe(hello, 0.0)
    reply = hello
    for _ in range(max_frames):
        colour = (reply.get("challenge") or {}).get("flash")
        if colour and tuple(colour) != screen:
            screen = tuple(colour)
            await asyncio.sleep(0.09)
        data = await loop.run_in_executor(None, actor.frame, time.monotonic() - started, screen)
        await _send_frame(communicator, data)
        reply = await _receive(communicator, timeout=60)
        actor.observe(reply, time.monotonic() - started)
        answers.append(reply)
        if reply["type"] in ("success", "failed", "throttled"):
            break
    return answers


async def test_a_student_who_turns_when_asked_signs_in(enrolled, with_liveness):
    communicator = await _connect()
    answers = await _in_front_of_the_page(communicator, _actor("student"))
    attempt = await database_sync_to_async(FaceAttempt.objects.get)()
    assert answers[-1]["type"] == "success", (answers[-1], attempt.challenge)
    steps = [a["challenge"]["step"] for a in answers[:-1]]
    assert steps[0] == "look" and "turn_left" in steps and "turn_right" in steps  # prompted, not announced
    assert all(len(a["challenge"]["flash"]) == 3 for a in answers[:-1])  # a colour for the page with every answer
    challenge = attempt.challenge
    assert challenge["status"] == "passed" and challenge["completed"] == 2 and challenge["flash"]["status"] == "passed"
    assert attempt.student_id == enrolled[faces.JOHNS / "John_Schneider"].pk
    assert (await database_sync_to_async(FaceTicket.objects.get)()).scores["liveness"] is True


async def test_a_printed_photo_of_the_student_fails_the_challenge(enrolled, with_liveness):
    communicator = await _connect()
    answers = await _in_front_of_the_page(communicator, _actor("print"))
    assert answers[-1] == {"type": "failed", "reason": "liveness_failed"}
    attempt = await database_sync_to_async(FaceAttempt.objects.get)()
    assert attempt.outcome == "failed" and attempt.challenge["completed"] == 0, attempt.challenge
    assert attempt.scores["reason"] == "vote"  # it was recognised as the student: liveness stopped it


async def test_someone_elses_small_blurred_head_under_the_lowered_photo_is_judged_and_refused(enrolled, with_liveness):
    """The student's print gets recognised, then is lowered at the first prompt and the attacker's own head
    does the turns. Their face here is 30-32 px, too small (and, turning, blurred) to vote: bench.attacks
    (i) signed in with such heads while frames too poor to vote were not embedded, so nobody checked who
    they were. Every face frame of the track is embedded and judged now."""
    import random

    from bench.actors import Camera, OtherHeadActor, Print, Student
    from bench.head3d import Head, load_photo, place

    rng = random.Random(7)
    attacker = Student(Head.from_canvas(place(load_photo(faces.FACES / "photos" / "kate_siegel.jpg"), 250)), rng)
    attacker.reaction = lambda: 0.35
    # Lowered between two frames (never two faces in one): the track's face-count rule must not be what stops it.
    actor = OtherHeadActor(Print(FRONTAL, 220, rng), attacker, Camera(np.random.default_rng(7), reflection=0.15), rng, swap_s=0.001)
    communicator = await _connect()
    answers = await _in_front_of_the_page(communicator, actor)
    assert answers[-1] == {"type": "failed", "reason": "liveness_failed"}
    attempt = await database_sync_to_async(FaceAttempt.objects.get)()
    assert attempt.scores["reason"] == "vote"  # the print was recognised as the student
    assert attempt.frame_reasons.get("too_small", 0) >= 1, attempt.frame_reasons  # the attacker's head was seen
    # Judged by who the face is: not the student (the identity floor), or not the face of the frame before
    # (the track's similarity).
    unlike = [t for t in attempt.challenge["turns"] if t.get("track") == "broken" and "similarity" in t]
    assert attempt.reason == "identity_changed" or unlike, (attempt.reason, attempt.challenge)


def test_a_face_frame_without_an_embedding_is_not_taken_for_the_student(enrolled, with_liveness):
    """same_student on one frame: the student's own face passes; the same face with no embedding fails
    (it could be anyone); a frame without a face is left to the track's gap rule."""
    from dataclasses import replace

    from facelogin.services.recognition import same_student

    model = engine().current_model()
    label = str(enrolled[faces.JOHNS / "John_Schneider"].pk)
    analysis = engine().analyzer.analyze_bytes(faces.webcam_frame(FRONTAL))
    assert analysis.face is not None and analysis.embedding is not None
    assert same_student(model, analysis, label)
    assert not same_student(model, replace(analysis, embedding=None), label)
    assert same_student(model, replace(analysis, face=None, embedding=None), label)


async def test_a_perfect_head_on_a_screen_fails_on_the_colours(enrolled, with_liveness):
    """A 3-D puppet of the student on a tablet turns as asked; the page's colours do not show on it."""
    communicator = await _connect()
    answers = await _in_front_of_the_page(communicator, _actor("puppet"))
    assert answers[-1] == {"type": "failed", "reason": "liveness_failed"}
    challenge = (await database_sync_to_async(FaceAttempt.objects.get)()).challenge
    assert challenge["completed"] == 2 and challenge["reason"] == "no_reflection", challenge


async def test_a_plugged_in_presentation_attack_detector_decides(enrolled, with_liveness):
    """A licensed PAD model plugged in (FACELOGIN_PAD_DETECTOR) scores every frame: a student who passes the
    challenge is still refused when the detector says attack."""
    from tests.pad_plugin import SaturationDetector

    analyzer = engine().analyzer
    analyzer.pad = SaturationDetector(attack=True)
    try:
        communicator = await _connect()
        answers = await _in_front_of_the_page(communicator, _actor("student"))
    finally:
        analyzer.pad = None
    assert answers[-1] == {"type": "failed", "reason": "liveness_failed"}
    attempt = await database_sync_to_async(FaceAttempt.objects.get)()
    assert attempt.reason == "presentation_attack" and attempt.challenge["status"] == "passed"


async def test_an_attempt_records_how_long_it_took_and_what_became_of_each_frame(enrolled):
    """The admin's dashboard reads the time to sign in and why attempts failed from these."""
    import io

    from PIL import Image

    blank = io.BytesIO()
    Image.new("RGB", (640, 480), (118, 122, 128)).save(blank, format="JPEG")
    stranger = faces.photos_of(faces.johns()[4])
    frames = [
        faces.webcam_frame(stranger[0], face_height=40),  # a face too far away to judge
        blank.getvalue(),  # nobody there
        b"not an image",
        *[faces.webcam_frame(p, shift=s) for p in stranger for s in (0, 8)],
    ]
    communicator = await _connect()
    answers = await _sign_in_with(communicator, frames)
    assert answers[-1]["type"] == "failed"
    failed = await database_sync_to_async(FaceAttempt.objects.get)()
    assert failed.seconds is not None and 0 < failed.seconds < 60
    assert sum(failed.frame_reasons.values()) == failed.frames  # every frame, the unreadable one too
    assert failed.frame_reasons["bad_image"] == 1 and failed.frame_reasons["no_face"] == 1
    assert failed.frame_reasons["too_small"] == 1, failed.frame_reasons
    assert set(failed.frame_reasons) <= {"bad_image", "no_face", "too_small", "below_threshold", "vote", "several_faces"}

    person = faces.johns()[0]
    communicator = await _connect()
    answers = await _sign_in_with(communicator, [faces.webcam_frame(p) for p in faces.held_out_photos(person)])
    assert answers[-1]["type"] == "success"
    recognised = await database_sync_to_async(FaceAttempt.objects.get)(outcome="ticket_issued")
    assert recognised.seconds is not None and recognised.seconds > 0
    assert recognised.frame_reasons.get("vote", 0) >= 3


async def test_the_operations_metrics_count_the_socket_the_frames_and_the_result(enrolled, settings):
    """/metrics/ (facelogin.services.operations) as the socket works: figures are per process, so deltas."""
    from facelogin.models import ClassifierVersion
    from tests.live import parse_metrics

    token = "consumer-test-metrics-token-4417"
    settings.FACELOGIN = {**settings.FACELOGIN, "METRICS_TOKEN": token}

    def scrape() -> dict:
        response = Client().get("/metrics/", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 200
        return parse_metrics(response.content.decode())

    recognised = ("facelogin_face_attempts_total", (("result", "recognised"),))
    not_recognised = ("facelogin_face_attempts_total", (("result", "not_recognised"),))
    before = await database_sync_to_async(scrape)()

    _, headers = await database_sync_to_async(_session_cookie)()
    communicator = WebsocketCommunicator(application, "/" + protocol.WEBSOCKET_PATH, headers=headers)
    communicator.scope["client"] = ("192.0.2.44", 50000)  # as daphne gives it: sockets are counted per address
    assert (await communicator.connect(timeout=30))[0]
    during = await database_sync_to_async(scrape)()
    assert during[("facelogin_sign_in_sockets_open", ())] == before[("facelogin_sign_in_sockets_open", ())] + 1
    answers = await _sign_in_with(communicator, [faces.webcam_frame(p) for p in faces.held_out_photos(faces.johns()[0])])
    assert answers[-1]["type"] == "success"
    await communicator.receive_output(timeout=5)
    await communicator.disconnect()

    stranger = await _connect()
    failed = await _sign_in_with(stranger, [faces.webcam_frame(p, shift=s) for p in faces.photos_of(faces.johns()[4]) for s in (0, 8)])
    assert failed[-1] == {"type": "failed", "reason": "not_recognised"}, failed[-1]

    after = await database_sync_to_async(scrape)()
    assert after[recognised] == before[recognised] + 1
    assert after[not_recognised] == before[not_recognised] + 1
    assert after[("facelogin_face_sign_in_seconds_count", ())] == before[("facelogin_face_sign_in_seconds_count", ())] + 1
    analysed = len(answers) + len(failed)  # every frame answered was analysed (none refused here)
    assert after[("facelogin_frames_analysed_total", ())] - before.get(("facelogin_frames_analysed_total", ()), 0) == analysed
    assert after[("facelogin_frame_batches_total", ())] > before.get(("facelogin_frame_batches_total", ()), 0)
    assert after[("facelogin_analyser_busy_seconds_total", ())] > before.get(("facelogin_analyser_busy_seconds_total", ()), 0)
    assert after[("facelogin_sign_in_sockets_open", ())] == before[("facelogin_sign_in_sockets_open", ())]
    active = await database_sync_to_async(ClassifierVersion.objects.get)(is_active=True)
    assert after[("facelogin_classifier_version", ())] == active.pk
    assert after[("facelogin_classifier_students", ())] == active.gallery_students
    assert after[("facelogin_classifier_embeddings", ())] == active.gallery_embeddings
