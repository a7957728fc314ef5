from __future__ import annotations

from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command

from facelogin.models import ClassifierVersion, EnrolmentPhoto
from facelogin.services import biometrics, recognition
from facelogin.services.training import classifier_train
from tests import faces

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _crop_photos(make_student):
    """Enrol through the real path so each photo has its aligned crop stored."""
    from facelogin.services.enrolment import Upload, photos_submit

    for index, person in enumerate(faces.johns()[:2], start=1):
        student = make_student(f"2026R00{index}")
        photos_submit(student=student, uploads=[Upload(p.name, p.read_bytes()) for p in faces.enrol_photos(person)[:3]], retrain=False)


def test_changing_the_face_model_re_embeds_every_photo_before_it_is_used(make_student, settings):
    _crop_photos(make_student)
    before = {pk: biometrics.unseal_embedding(e) for pk, e in EnrolmentPhoto.objects.values_list("pk", "embedding")}
    assert classifier_train(trigger="casia").model_name == "casia-webface"

    # A site switches to weights from a local file (here: the same CASIA weights, so the embeddings
    # must come out the same, which proves the crops and the new model are used correctly).
    weights = recognition.prepare_embedding_weights()
    settings.FACELOGIN = {**settings.FACELOGIN, "MODEL": "file", "MODEL_PATH": str(weights)}
    assert ClassifierVersion.objects.filter(is_active=True, model_name="file").count() == 0  # nothing to sign in with yet
    out = StringIO()
    call_command("reembed_photos", stdout=out)
    assert "re-embedded 6 photo(s) with file" in out.getvalue()
    for pk, model_name, sealed in EnrolmentPhoto.objects.values_list("pk", "model_name", "embedding"):
        assert model_name == "file"
        assert float(np.dot(before[pk], biometrics.unseal_embedding(sealed))) > 0.99
    active = ClassifierVersion.objects.get(is_active=True)
    assert active.model_name == "file" and active.gallery_embeddings == 6
