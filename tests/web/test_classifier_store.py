"""A classifier version's model stored in sealed parts (``facelogin.services.classifier_store``).

At 100,000 students the model is 1,028 MB, more than a database value holds; here the part size is
set to 16 KiB, so a test-sized model (about 250 KB of embeddings) takes many parts. The galleries are
synthetic embeddings, sealed and stored as the app stores them; every model is read back from the
database.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

import numpy as np
import pytest
from django.conf import settings
from django.utils import timezone

from facelogin.models import ClassifierArtifactPart, ClassifierVersion, EnrolmentPhoto
from facelogin.pipeline.classify import normalise
from facelogin.pipeline.errors import ModelUnavailable
from facelogin.services import biometrics, classifier_store, training

MODEL = settings.FACELOGIN["MODEL"]  # the engine's model: photos of another are not in its gallery
PART_BYTES = 16_384
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_loaded_model")]


@pytest.fixture(autouse=True)
def small_parts(settings):
    settings.FACELOGIN = {**settings.FACELOGIN, "CLASSIFIER_PART_BYTES": PART_BYTES, "KEEP_CLASSIFIER_VERSIONS": 100}


def enrol(make_student, count: int, *, start: int = 0, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    yesterday = timezone.now() - timedelta(days=1)
    for i in range(start, start + count):
        student = make_student(f"2025{i:04d}")
        centre = normalise(rng.standard_normal((1, 512)))
        for vector in normalise(centre + 0.033 * rng.standard_normal((4, 512))):
            EnrolmentPhoto.objects.create(
                student=student, state=EnrolmentPhoto.State.ACCEPTED, content_sha256=hashlib.sha256(vector.tobytes()).hexdigest(),
                embedding=biometrics.seal_embedding(vector), model_name=MODEL, processed_at=yesterday,
            )


def full_version(trigger: str = "test") -> ClassifierVersion:
    version = training.classifier_train(trigger=trigger, full=True)
    assert version.is_active, version.error
    return version


def from_database(version: ClassifierVersion):
    training.forget_loaded_model()  # as a process that just started: nothing held in memory
    return training.load_trained_model(version.pk)


def part_sizes(version: ClassifierVersion) -> list[int]:
    rows = ClassifierArtifactPart.objects.filter(version=version).order_by("index").values_list("index", "data")
    assert [index for index, _ in rows] == list(range(len(rows)))
    return [len(bytes(data)) for _, data in rows]


def assert_same_model(a, b) -> None:
    assert a.gallery.labels == b.gallery.labels
    np.testing.assert_array_equal(a.gallery.embeddings, b.gallery.embeddings)
    assert a.gallery.row_labels == b.gallery.row_labels
    assert (a.kind, a.model_name, a.metrics, a.created_at) == (b.kind, b.model_name, b.metrics, b.created_at)
    assert a.calibration.to_dict() == b.calibration.to_dict() and a.config == b.config


def test_a_model_larger_than_one_part_round_trips_exactly(make_student):
    enrol(make_student, 30)
    version = full_version()
    trained = training.load_trained_model(version.pk)  # the worker's own, kept in memory
    sizes = part_sizes(version)
    version.refresh_from_db()
    assert version.artifact_parts == len(sizes) > 10
    assert max(sizes) == PART_BYTES + biometrics.SEAL_OVERHEAD  # every part within the limit, sealed
    assert len(bytes(version.artifact)) < trained.gallery.embeddings.nbytes / 4  # the head holds no rows
    assert classifier_store.stored_model_bytes(version.pk) == len(bytes(version.artifact)) + sum(sizes)

    loaded = from_database(version)
    assert loaded is not trained
    assert_same_model(loaded, trained)
    probes = trained.gallery.embeddings[::7]
    assert [v.label for v in map(loaded.vote, probes)] == [v.label for v in map(trained.vote, probes)]
    # Its arrays are its own and writable: the next enrolment changes the loaded model in place.
    loaded.remove_student(loaded.gallery.labels[0])
    loaded.add_student("newcomer", probes[:2])
    assert loaded.vote(probes[0]).label == "newcomer"


def test_a_version_stored_as_one_value_before_parts_still_loads_activates_and_is_built_on(make_student, settings):
    settings.FACELOGIN = {**settings.FACELOGIN, "INCREMENTAL_MIN_STUDENTS": 0, "INCREMENTAL_MAX_CHANGED": 0.25}
    enrol(make_student, 30)
    old = full_version("stored before 0011")
    model = training.load_trained_model(old.pk)
    # As a version stored before 0011 is: the whole model sealed in the one value, no parts.
    ClassifierArtifactPart.objects.filter(version=old).delete()
    ClassifierVersion.objects.filter(pk=old.pk).update(
        artifact=biometrics.seal(model.to_bytes(), context=b"classifier"), artifact_parts=0
    )
    newer = full_version("newer")
    assert part_sizes(newer)

    assert_same_model(from_database(old), model)
    assert training.classifier_activate(version=old).is_active
    # An incremental retrain starts from it (read from the database), and is stored in parts.
    training.forget_loaded_model()
    enrol(make_student, 1, start=30, seed=1)
    step = training.classifier_train(trigger="one more")
    assert step.is_active and step.metrics["incremental"]["base_version"] == old.pk
    assert from_database(step).gallery.n_labels == 31


def test_a_torn_version_gives_a_clear_error_and_is_not_activated(make_student):
    enrol(make_student, 30)
    torn = full_version("to be torn")
    active = full_version("active")
    count = len(part_sizes(torn))

    ClassifierArtifactPart.objects.filter(version=torn, index=3).delete()
    with pytest.raises(training.TrainingRefused, match=rf"Version {torn.pk} cannot be activated: .*incomplete \({count - 1} of its {count} parts"):
        training.classifier_activate(version=torn)
    assert ClassifierVersion.objects.get(is_active=True) == active
    with pytest.raises(ModelUnavailable, match=rf"classifier version {torn.pk}'s stored model is unreadable: part 4 of {count} is missing"):
        from_database(torn)


def test_damaged_swapped_or_extra_parts_are_refused_on_reading(make_student):
    enrol(make_student, 30)
    version = full_version()
    parts = dict(ClassifierArtifactPart.objects.filter(version=version).values_list("index", "data"))
    count = len(parts)

    def store(index: int, data: bytes) -> None:
        ClassifierArtifactPart.objects.filter(version=version, index=index).update(data=data)

    damaged = bytearray(parts[2])
    damaged[100] ^= 1
    store(2, bytes(damaged))
    with pytest.raises(ModelUnavailable, match=rf"part 3 of {count} cannot be opened: sealed value failed authentication"):
        from_database(version)
    store(2, parts[1])  # a part in another's place (each is sealed with its version and index)
    with pytest.raises(ModelUnavailable, match=rf"part 3 of {count} cannot be opened"):
        from_database(version)
    store(2, parts[2])
    ClassifierArtifactPart.objects.create(version=version, index=count, data=parts[0])
    with pytest.raises(ModelUnavailable, match=f"it has parts beyond its {count}"):
        from_database(version)
    assert classifier_store.classifier_model_problem(version_id=version.pk) == f"{count + 1} of its {count} parts are stored"
    ClassifierArtifactPart.objects.filter(version=version, index=count).delete()
    assert from_database(version).gallery.n_labels == 30


def test_a_failed_store_leaves_no_parts_and_the_previous_version_active(make_student, monkeypatch):
    enrol(make_student, 30)
    active = full_version()
    real_create = ClassifierArtifactPart.objects.create
    stored = []

    def create(**kwargs):
        if len(stored) == 5:
            raise OSError("disk full")
        stored.append(kwargs["index"])
        return real_create(**kwargs)

    monkeypatch.setattr(ClassifierArtifactPart.objects, "create", create)
    failed = training.classifier_train(trigger="disk full", full=True)
    assert failed.status == ClassifierVersion.Status.FAILED and "disk full" in failed.error
    failed.refresh_from_db()
    assert failed.artifact is None and failed.artifact_parts == 0
    assert not ClassifierArtifactPart.objects.filter(version=failed).exists()
    assert ClassifierVersion.objects.get(is_active=True) == active
    assert from_database(active).gallery.n_labels == 30


def test_pruning_deletes_the_parts(make_student):
    enrol(make_student, 30)
    old, kept, active = full_version("old"), full_version("kept"), full_version("active")
    sizes = {v.pk: classifier_store.stored_model_bytes(v.pk) for v in (old, kept, active)}
    parts_before = {v.pk: len(part_sizes(v)) for v in (old, kept, active)}
    assert all(parts_before.values())

    report = training.prune_classifier_artifacts(keep=1)
    assert report.pruned == (old.pk,) and report.bytes_freed == sizes[old.pk]
    assert not ClassifierArtifactPart.objects.filter(version=old).exists()
    old.refresh_from_db()
    assert old.artifact is None and old.artifact_parts == 0 and training.model_pruned(old)
    assert {v.pk: len(part_sizes(v)) for v in (kept, active)} == {kept.pk: parts_before[kept.pk], active.pk: parts_before[active.pk]}
    assert from_database(old) is None and from_database(kept).gallery.n_labels == 30
