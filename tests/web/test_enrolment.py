"""Enrolment and retraining through the real pipeline, tasks run in-process (the embedded default)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFilter

from facelogin.models import BiometricAction, ClassifierVersion, EnrolmentPhoto
from facelogin.services import enrolment, training
from facelogin.services.recognition import engine
from tests import faces

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _jpeg(image: Image.Image, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _photo(name: str = "angelina_jolie.jpg") -> Image.Image:
    return Image.open(faces.FACES / "photos" / name).convert("RGB")


def _bomb_png(width: int = 60_000, height: int = 60_000) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")


def _altered_images() -> dict[str, bytes]:
    """Real photos, each altered the way a bad enrolment photo goes wrong."""
    portrait = _photo("Tom_Cruise_avp_2014_4.jpg")
    john = Image.open(faces.enrol_photos(faces.johns()[0])[0]).convert("RGB")
    small = Image.new("RGB", (640, 480), (128, 128, 128))
    small.paste(portrait.resize((portrait.width * 48 // 406, portrait.height * 48 // 406)), (300, 150))
    pixels = np.asarray(john).astype(np.float32)
    group = Image.open(faces.FACES / "photos" / "multiface.jpg")
    return {
        "not_an_image": b"%PDF-1.4 this is not a photo",
        "too_large": _jpeg(portrait) + b"\0" * (11 * 1024 * 1024),
        "too_many_pixels": _bomb_png(),
        "truncated": _jpeg(portrait)[:4000],
        "no_face": (faces.FACES / "photos" / "noface_dogs.jpg").read_bytes(),
        "several_faces": _jpeg(group),
        "too_small": _jpeg(small),
        "too_dark": _jpeg(Image.fromarray((pixels * 0.2).astype(np.uint8))),
        "too_bright": _jpeg(Image.fromarray(np.clip(np.asarray(portrait.resize((portrait.width * 640 // portrait.height, 640))).astype(np.float32) * 0.4 + 170, 0, 255).astype(np.uint8))),
        "blurred": _jpeg(john.filter(ImageFilter.GaussianBlur(3))),
        "turned": (faces.ORL / "s4" / "10.pgm").read_bytes(),  # a real head turn (yaw about +30)
    }


@pytest.mark.parametrize("reason", list(_altered_images()))
def test_each_rejection_reason_comes_from_a_real_altered_image(make_student, reason):
    student = make_student("20260001")
    (photo,) = enrolment.photos_submit(student=student, uploads=[enrolment.Upload(f"{reason}.jpg", _altered_images()[reason])], retrain=False)
    photo.refresh_from_db()
    assert (photo.state, photo.reason) == ("rejected", reason), photo.quality
    assert photo.detail and photo.original is None and photo.embedding is None


def test_a_duplicate_photo_is_rejected(make_student):
    student = make_student("20260001")
    data = (faces.enrol_photos(faces.johns()[0])[0]).read_bytes()
    first, second = enrolment.photos_submit(student=student, uploads=[enrolment.Upload("a.jpg", data), enrolment.Upload("b.jpg", data)], retrain=False)
    first.refresh_from_db(), second.refresh_from_db()
    assert first.state == "accepted"
    assert (second.state, second.reason) == ("rejected", "duplicate")


def _enrol(make_student, people, **kwargs):
    faces.enrol_background(make_student)
    students = {}
    for index, person in enumerate(people, start=1):
        student = make_student(f"2026J00{index}", full_name=person.name)
        uploads = [enrolment.Upload(p.name, p.read_bytes()) for p in faces.enrol_photos(person)]
        enrolment.photos_submit(student=student, uploads=uploads, **kwargs)
        students[person] = student
    return students


def _identify(person_photo) -> str | None:
    """What the live decision says about held-out frames of one person (the consumer's code path)."""
    from facelogin.services import recognition

    model = engine().current_model()
    decider = recognition.new_decider(model)
    decision = None
    for frame in [faces.webcam_frame(person_photo, shift=s) for s in (0, 6, 12, 18, 24)]:
        analysis = engine().analyzer.analyze_bytes(frame, purpose="login")
        decision = decider.observe(recognition.frame_vote(model, analysis))
        if decision.final:
            break
    return decision.label if decision.accepted else None


@pytest.fixture
def live_model(settings):
    settings.FACELOGIN = {**settings.FACELOGIN, "MODEL_REFRESH_SECONDS": 0.0}
    engine().forget_model()
    yield
    engine().forget_model()


def test_three_enrolled_people_are_each_recognised_from_a_held_out_photo(make_student, live_model):
    people = faces.johns()[:3]
    students = _enrol(make_student, people)
    version = ClassifierVersion.objects.get(is_active=True)
    assert version.gallery_students == 3 + 12 and version.thresholds["similarity"] > 0
    for person, student in students.items():
        assert enrolment.face_ready(student=student)
        assert _identify(faces.held_out_photos(person)[0]) == str(student.pk)
    assert _identify(faces.photos_of(faces.johns()[4])[0]) is None


def test_many_uploads_cause_one_retrain_not_many(make_student, settings):
    _enrol(make_student, faces.johns()[:2])
    # Eager mode has no countdown, but the token still tells superseded requests apart.
    assert ClassifierVersion.objects.filter(status="ready").count() >= 1
    token = training.newest_retrain_token()
    assert training.classifier_train(trigger="stale", token=token - 1) is None


def test_a_failed_retrain_leaves_the_previous_version_active(make_student, monkeypatch):
    _enrol(make_student, faces.johns()[:2])
    active = ClassifierVersion.objects.get(is_active=True)

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory while fitting")

    monkeypatch.setattr("facelogin.pipeline.decide.train_model", broken)
    version = training.classifier_train(trigger="test")
    assert version.status == "failed" and "out of memory" in version.error
    assert ClassifierVersion.objects.get(is_active=True) == active


def test_a_version_worse_than_required_is_not_activated(make_student, settings):
    _enrol(make_student, faces.johns()[:2])
    active = ClassifierVersion.objects.get(is_active=True)
    settings.FACELOGIN = {**settings.FACELOGIN, "MIN_HOLDOUT_ACCURACY": 1.01}
    version = training.classifier_train(trigger="test")
    assert version.status == "rejected"
    assert ClassifierVersion.objects.get(is_active=True) == active


def test_roll_back_activates_an_earlier_version(make_student, admin_user):
    _enrol(make_student, faces.johns()[:2])
    first = ClassifierVersion.objects.get(is_active=True)
    second = training.classifier_train(trigger="again")
    assert second.is_active and second != first
    training.classifier_activate(version=first, actor=admin_user)
    assert ClassifierVersion.objects.get(is_active=True) == first
    assert BiometricAction.objects.filter(action="rollback", actor=admin_user).exists()


def test_deleting_face_data_makes_the_student_unrecognisable(make_student, live_model, admin_user):
    people = faces.johns()[:3]
    students = _enrol(make_student, people)
    gone = students[people[0]]
    assert _identify(faces.held_out_photos(people[0])[0]) == str(gone.pk)
    enrolment.face_data_delete(students=[gone], actor=admin_user)
    assert not EnrolmentPhoto.objects.filter(student=gone).exists()
    assert ClassifierVersion.objects.get(is_active=True).gallery_students == 2 + 12
    engine().forget_model()
    assert _identify(faces.held_out_photos(people[0])[0]) is None
    assert _identify(faces.held_out_photos(people[1])[0]) == str(students[people[1]].pk)


def test_processing_a_photo_twice_does_no_harm(make_student):
    student = make_student("20260001")
    (photo,) = enrolment.photos_submit(student=student, uploads=[enrolment.Upload("a.jpg", faces.enrol_photos(faces.johns()[0])[0].read_bytes())], retrain=False)
    again = enrolment.photo_process(photo_id=photo.pk)
    assert again.state == "accepted"
    assert EnrolmentPhoto.objects.count() == 1
    assert BiometricAction.objects.filter(action="enrol").count() == 1


def test_stored_embeddings_are_encrypted(make_student):
    student = make_student("20260001")
    (photo,) = enrolment.photos_submit(student=student, uploads=[enrolment.Upload("a.jpg", faces.enrol_photos(faces.johns()[0])[0].read_bytes())], retrain=False)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT embedding, crop FROM facelogin_enrolmentphoto WHERE id = %s", [photo.pk])
        embedding, crop = cursor.fetchone()
    plain = faces.embedding_of(faces.enrol_photos(faces.johns()[0])[0]).astype("<f4").tobytes()
    assert bytes(embedding)[:4] == b"FLB1" and plain[:64] not in bytes(embedding)
    assert bytes(crop)[:4] == b"FLB1" and b"JFIF" not in bytes(crop)
    assert np.frombuffer(plain, dtype="<f4").shape == (512,)


def test_login_frames_get_a_webcams_limits_and_enrolment_photos_their_own():
    from facelogin.services.recognition import analyzer_config

    config = analyzer_config()
    assert (config.login_decode.max_dimension, config.login_decode.max_bytes) == (1280, 512 * 1024)
    assert config.decode.max_dimension is None and config.decode.max_pixels == 40_000_000


def test_one_students_photos_are_found_by_their_student_not_by_reading_every_accepted_photo(make_student):
    """SQLite keeps no statistics: given (state, model_name) and student_id indexes, it picked the one with
    more equalities and read every accepted photo for each enrolment photo's near-duplicate check (1.4 s
    a photo at 100,000 students, bench.enrol_scale). Every query the service runs for one student's
    photos must start from the student."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL plans from its statistics")
    student = make_student("20260001")
    with CaptureQueriesContext(connection) as captured:
        enrolment.photos_submit(student=student, uploads=[enrolment.Upload("a.jpg", faces.enrol_photos(faces.johns()[0])[0].read_bytes())], retrain=False)
        enrolment.accepted_count(student=student)
        enrolment.template_advice(student=student)
    per_student = [q["sql"] for q in captured.captured_queries if '"facelogin_enrolmentphoto"' in q["sql"] and '"student_id" =' in q["sql"] and q["sql"].startswith("SELECT")]
    assert len(per_student) >= 3
    with connection.cursor() as cursor:
        for sql in per_student:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
            plan = " ".join(str(row[-1]) for row in cursor.fetchall())
            assert "photo_state_model (" not in plan and "SCAN facelogin_enrolmentphoto" not in plan, (sql, plan)
