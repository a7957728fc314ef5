"""A face model that cannot be loaded: sign-in says so and falls back to the password; enrolment keeps
the photo queued to retry; nothing is lost and no page breaks."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.core.cache import cache

from facelogin import protocol
from facelogin.models import EnrolmentPhoto, FaceAttempt
from facelogin.pipeline.errors import ModelUnavailable
from facelogin.services import enrolment, recognition
from tests import faces
from tests.web.test_consumer import _connect, _receive

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def weights_missing(settings, tmp_path):
    """This process's engine as it would be in a fresh process whose model file is gone."""
    saved = recognition._engine
    recognition._engine = None
    settings.FACELOGIN = {**settings.FACELOGIN, "MODEL": "file", "MODEL_PATH": str(tmp_path / "gone.pt"), "MODEL_DIR": tmp_path}
    cache.clear()
    yield
    recognition._engine = saved
    cache.clear()


async def test_sign_in_is_reported_unavailable_and_audited(weights_missing):
    communicator = await _connect()
    assert await _receive(communicator) == {"type": "failed", "reason": "unavailable"}
    assert (await communicator.receive_output(timeout=5))["code"] == protocol.Close.UNAVAILABLE
    attempt = await database_sync_to_async(FaceAttempt.objects.get)()
    assert (attempt.outcome, attempt.reason) == ("unavailable", "no_model")


def test_the_face_page_still_offers_the_password(weights_missing, client):
    page = client.get("/login/face/").content.decode()
    assert 'id="password-fallback"' in page


def test_an_enrolment_photo_waits_for_the_model_instead_of_being_rejected(weights_missing, make_student, monkeypatch):
    student = make_student("20260001")
    monkeypatch.setattr(enrolment, "photos_enqueue", lambda ids: 0)  # the task is run by hand below
    path = faces.enrol_photos(faces.johns()[0])[0]
    (photo,) = enrolment.photos_submit(student=student, uploads=[enrolment.Upload(path.name, path.read_bytes())], retrain=False)
    with pytest.raises(ModelUnavailable):  # the task's autoretry catches this and tries again later
        enrolment.photo_process(photo_id=photo.pk)
    photo.refresh_from_db()
    assert photo.state == "queued" and photo.original is not None and photo.attempts == 1


def test_an_unexpected_error_puts_the_photo_back_in_the_queue(make_student, monkeypatch):
    student = make_student("20260001")
    monkeypatch.setattr(enrolment, "photos_enqueue", lambda ids: 0)
    path = faces.enrol_photos(faces.johns()[0])[0]
    (photo,) = enrolment.photos_submit(student=student, uploads=[enrolment.Upload(path.name, path.read_bytes())], retrain=False)

    class Broken:
        def analyze_bytes(self, *args, **kwargs):
            raise MemoryError("the worker ran out of memory")

    with pytest.raises(MemoryError):
        enrolment.photo_process(photo_id=photo.pk, analyzer=Broken())
    photo.refresh_from_db()
    assert photo.state == "queued" and photo.original is not None
    assert enrolment.photo_process(photo_id=photo.pk).state == "accepted"  # the retry succeeds


def test_prepare_models_checks_sfaces_file_and_refuses_a_changed_copy(settings, tmp_path):
    from io import StringIO

    from django.core.management import CommandError, call_command

    from facelogin.pipeline.weights import sface_file

    settings.FACELOGIN = {**settings.FACELOGIN, "MODEL": "sface", "MODEL_PATH": None}
    out = StringIO()
    call_command("prepare_models", stdout=out)
    assert out.getvalue().strip().endswith(f"{sface_file()} (sface)")
    changed = tmp_path / "face_recognition_sface_2021dec_int8bq.onnx"
    changed.write_bytes(sface_file().read_bytes()[:-1] + b"\x01")
    settings.FACELOGIN = {**settings.FACELOGIN, "MODEL": "sface", "MODEL_PATH": str(changed)}
    with pytest.raises(CommandError, match="not the SFace file"):
        call_command("prepare_models")
