from __future__ import annotations

import numpy as np
import pytest
from django.core.management import call_command

from facelogin.models import ClassifierArtifactPart, ClassifierVersion, EnrolmentPhoto
from facelogin.services import biometrics
from facelogin.services.training import classifier_train, load_trained_model
from tests import faces

OLD = "dGVzdC1vbmx5LWJpb21ldHJpYy1rZXktMzItYnl0ZXM="
NEW = biometrics.new_key()


def test_sealed_values_are_authenticated_and_bound_to_their_purpose():
    sealed = biometrics.seal(b"embedding bytes", context=b"embedding")
    assert biometrics.unseal(sealed, context=b"embedding") == b"embedding bytes"
    with pytest.raises(biometrics.SealError):
        biometrics.unseal(sealed, context=b"crop")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(biometrics.SealError):
        biometrics.unseal(tampered, context=b"embedding")


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_key_rotation_keeps_every_student_recognisable(make_student, monkeypatch, settings):
    # the model in several parts (SFace rows are stored as 128 numbers: ~15 KB of them for 6 students)
    settings.FACELOGIN = {**settings.FACELOGIN, "CLASSIFIER_PART_BYTES": 4_096}
    students = faces.enrol_background(make_student, count=6)
    version = classifier_train(trigger="before rotation")
    assert version.is_active
    assert ClassifierArtifactPart.objects.filter(version=version).count() > 1
    probe = faces.embedding_of(faces.photos_of(faces.background_people(6)[0])[6])

    monkeypatch.setenv("FACELOGIN_BIOMETRIC_KEYS", f"{NEW},{OLD}")
    call_command("rotate_biometric_key")
    monkeypatch.setenv("FACELOGIN_BIOMETRIC_KEYS", NEW)  # the old key is gone
    new_id = biometrics.current_key_id()
    for sealed in EnrolmentPhoto.objects.values_list("embedding", flat=True):
        assert biometrics.sealed_key_id(sealed) == new_id
        assert biometrics.unseal_embedding(sealed).shape == (512,)
    for sealed in ClassifierArtifactPart.objects.values_list("data", flat=True):
        assert biometrics.sealed_key_id(sealed) == new_id
    model = load_trained_model(ClassifierVersion.objects.get(is_active=True).pk)
    assert model.vote(probe).label == str(students[0].pk)
    assert classifier_train(trigger="after rotation").is_active  # retraining reads the re-sealed rows
