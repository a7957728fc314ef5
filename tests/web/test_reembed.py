from __future__ import annotations

import io
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command
from PIL import Image

from facelogin.models import BiometricAction, ClassifierVersion, EnrolmentPhoto
from facelogin.services import biometrics, enrolment, recognition
from facelogin.services.enrolment import ENROL_FORMATS, photo_crop_jpeg
from facelogin.services.training import classifier_train, load_trained_model
from tests import faces

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def face_model(settings, monkeypatch):
    """Run under another FACELOGIN_MODEL, with a process engine of its own, as a restarted site would."""

    def use(model: str, **extra) -> None:
        settings.FACELOGIN = {**settings.FACELOGIN, "MODEL": model, "MODEL_PATH": None, **extra}
        monkeypatch.setattr(recognition, "_engine", recognition.Engine())

    return use


def _crop_photos(make_student) -> dict[str, object]:
    """Enrol through the real path so each photo has its aligned crop stored; {file name: path}."""
    from facelogin.services.enrolment import Upload, photos_submit

    sources = {}
    for index, person in enumerate(faces.johns()[:2], start=1):
        student = make_student(f"2026R00{index}")
        photos = faces.enrol_photos(person)[:3]
        photos_submit(student=student, uploads=[Upload(p.name, p.read_bytes()) for p in photos], retrain=False)
        sources.update({p.name: p for p in photos})
    return sources


def _embeddings() -> dict[int, np.ndarray]:
    return {pk: biometrics.unseal_embedding(e) for pk, e in EnrolmentPhoto.objects.values_list("pk", "embedding")}


def test_changing_the_face_model_re_embeds_every_photo_before_it_is_used(make_student, settings, face_model):
    face_model("casia-webface")
    _crop_photos(make_student)
    before = _embeddings()
    assert classifier_train(trigger="casia").model_name == "casia-webface"

    # A site switches to weights from a local file (here: the same CASIA weights, so the embeddings
    # must come out the same, which proves the crops and the new model are used correctly).
    weights = recognition.prepare_embedding_weights()
    settings.FACELOGIN = {**settings.FACELOGIN, "MODEL": "file", "MODEL_PATH": str(weights)}
    assert ClassifierVersion.objects.filter(is_active=True, model_name="file").count() == 0  # nothing to sign in with yet
    out = StringIO()
    call_command("reembed_photos", stdout=out)
    assert "re-embedded 6 photo(s) with file (6 from their stored crop, 0 from the kept original)" in out.getvalue()
    for pk, model_name, sealed in EnrolmentPhoto.objects.values_list("pk", "model_name", "embedding"):
        assert model_name == "file"
        assert float(np.dot(before[pk], biometrics.unseal_embedding(sealed))) > 0.99
    active = ClassifierVersion.objects.get(is_active=True)
    assert active.model_name == "file" and active.gallery_embeddings == 6


def test_a_switch_to_sface_analyses_the_kept_originals_again_and_the_students_are_recognised(make_student, face_model):
    # FaceNet's 160 px box crop cannot feed SFace (a 112 px crop aligned on the five points, reaching
    # past FaceNet's crop), so the kept originals are analysed again, exactly as at enrolment.
    face_model("casia-webface", KEEP_ORIGINALS=True)
    sources = _crop_photos(make_student)
    classifier_train(trigger="casia")

    face_model("sface", KEEP_ORIGINALS=True)
    out = StringIO()
    call_command("reembed_photos", stdout=out)
    assert "re-embedded 6 photo(s) with sface (0 from their stored crop, 6 from the kept original)" in out.getvalue()
    analyzer = recognition.engine().analyzer
    for photo in EnrolmentPhoto.objects.all():
        assert photo.model_name == "sface"
        assert Image.open(io.BytesIO(photo_crop_jpeg(photo=photo))).size == (112, 112)
        direct = analyzer.analyze_bytes(sources[photo.source_name].read_bytes(), purpose="enrol", formats=ENROL_FORMATS)
        assert float(np.dot(direct.embedding, biometrics.unseal_embedding(photo.embedding))) > 0.999
    active = ClassifierVersion.objects.get(is_active=True)
    assert active.model_name == "sface" and active.gallery_embeddings == 6
    assert enrolment.photos_of_other_models() == {}

    # Each student's held-out photo is nearest to their own SFace templates.
    model = load_trained_model(active.pk)
    for index, person in enumerate(faces.johns()[:2], start=1):
        probe = analyzer.analyze_bytes(faces.held_out_photos(person)[0].read_bytes(), purpose="enrol", formats=ENROL_FORMATS)
        scores = model.gallery.similarities(probe.embedding[None])[0]
        student = EnrolmentPhoto.objects.filter(student__student_number=f"2026R00{index}").first().student
        assert model.gallery.labels[int(np.argmax(scores))] == str(student.pk)


def test_a_switch_to_sface_without_originals_names_the_students_who_need_a_new_photo(make_student, face_model, admin_client):
    face_model("casia-webface")  # originals dropped after processing, the default
    _crop_photos(make_student)
    before = _embeddings()

    face_model("sface")
    # Staff are told before anyone runs anything: these students cannot sign in by face with SFace.
    warning = "6 accepted photos are embedded with another face model (casia-webface) than FACELOGIN_MODEL (sface)"
    assert warning in admin_client.get("/admin/facelogin/student/").content.decode()
    korean = admin_client.get("/admin/facelogin/student/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    assert warning not in korean and "다른 얼굴 모델" in korean
    out = StringIO()
    call_command("reembed_photos", stdout=out)
    assert "re-embedded 0 photo(s) with sface" in out.getvalue()
    assert "6 photo(s) could not be re-embedded" in out.getvalue()
    assert "2026R001, 2026R002" in out.getvalue()
    # Nothing half-done: the photos keep their FaceNet embedding and model, ready for a switch back.
    assert set(EnrolmentPhoto.objects.values_list("model_name", flat=True)) == {"casia-webface"}
    assert all(np.array_equal(before[pk], v) for pk, v in _embeddings().items())
    action = BiometricAction.objects.filter(action=BiometricAction.Action.REEMBED).latest("pk")
    assert action.detail["needs_new_photo"] == 6 and action.detail["photos"] == 0
    assert warning in admin_client.get("/admin/facelogin/student/").content.decode()


def test_a_kept_original_the_new_model_cannot_use_leaves_that_photo_and_names_its_student(make_student, face_model):
    face_model("casia-webface", KEEP_ORIGINALS=True)
    _crop_photos(make_student)
    broken = EnrolmentPhoto.objects.filter(student__student_number="2026R002").order_by("pk").first()
    before = biometrics.unseal_embedding(broken.embedding)
    # The stored original no longer decodes (as if damaged): no usable face for SFace.
    EnrolmentPhoto.objects.filter(pk=broken.pk).update(original=biometrics.seal(b"not an image", context=b"original"))

    face_model("sface", KEEP_ORIGINALS=True)
    out = StringIO()
    call_command("reembed_photos", stdout=out)
    assert "re-embedded 5 photo(s) with sface (0 from their stored crop, 5 from the kept original)" in out.getvalue()
    assert "1 photo(s) could not be re-embedded" in out.getvalue() and out.getvalue().rstrip().endswith("2026R002")
    broken.refresh_from_db()
    assert broken.model_name == "casia-webface"
    assert np.array_equal(biometrics.unseal_embedding(broken.embedding), before)
