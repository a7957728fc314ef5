"""/metrics/: the operations team's figures, off unless a token is set, and only for its bearer.

What the figures count is checked where the work happens: a sign-in over the websocket
(tests/web/test_consumer.py), the enrolment backlog without a worker and the frames of a real daphne
(tests/integration/)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from facelogin.models import EnrolmentPhoto
from facelogin.models import FaceAttempt as AttemptRow
from facelogin.services import operations
from facelogin.services.dashboard import FAILURE_CATEGORIES
from tests.live import parse_metrics

TOKEN = "metrics-test-token-0123456789abcdef"


@pytest.fixture
def metrics_on(settings):
    settings.FACELOGIN = {**settings.FACELOGIN, "METRICS_TOKEN": TOKEN}


def samples(response) -> dict[tuple[str, tuple], float]:
    return parse_metrics(response.content.decode())


def test_metrics_are_off_unless_a_token_is_set(client, settings, db):
    settings.FACELOGIN = {**settings.FACELOGIN, "METRICS_TOKEN": ""}
    assert client.get("/metrics/", HTTP_AUTHORIZATION="Bearer ").status_code == 404


@pytest.mark.parametrize(
    "authorization",
    [None, "", f"Basic {TOKEN}", f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", "Bearer", f"{TOKEN}"],
)
def test_a_scrape_without_the_bearer_token_is_refused(client, metrics_on, db, authorization):
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    response = client.get("/metrics/", **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"facelogin_" not in response.content


def test_the_bearer_gets_the_figures_in_prometheus_text_format_and_nothing_is_cached(client, metrics_on, db):
    response = client.get("/metrics/", HTTP_AUTHORIZATION=f"bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert "no-store" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    figures = samples(response)
    # Every result has a series from the start, so a monitoring rate() sees the first attempt.
    for result in operations.RESULTS:
        assert ("facelogin_face_attempts_total", (("result", result),)) in figures
    assert ("facelogin_face_sign_in_seconds_count", ()) in figures
    assert figures[("facelogin_sign_in_sockets_open", ())] == 0
    assert figures[("process_resident_memory_bytes", ())] > 0
    assert not any(name.endswith("_created") for name, _ in figures)
    assert client.post("/metrics/", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405


def test_the_enrolment_backlog_is_counted_with_the_age_of_its_oldest_photo(client, metrics_on, make_student):
    student = make_student()
    for state in ("queued", "queued", "processing", "accepted", "rejected"):
        EnrolmentPhoto.objects.create(student=student, state=state, content_sha256=state[0] * 64)
    EnrolmentPhoto.objects.filter(state="processing").update(created_at=timezone.now() - timedelta(minutes=20))
    figures = samples(client.get("/metrics/", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"))
    assert figures[("facelogin_enrolment_photos_waiting", (("state", "queued"),))] == 2
    assert figures[("facelogin_enrolment_photos_waiting", (("state", "processing"),))] == 1
    assert 20 * 60 <= figures[("facelogin_enrolment_oldest_waiting_seconds", ())] < 21 * 60

    EnrolmentPhoto.objects.filter(state__in=["queued", "processing"]).update(state="accepted")
    figures = samples(client.get("/metrics/", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"))
    assert figures[("facelogin_enrolment_photos_waiting", (("state", "queued"),))] == 0
    assert figures[("facelogin_enrolment_oldest_waiting_seconds", ())] == 0


def test_every_way_an_attempt_ends_has_one_result_and_busy_is_told_apart():
    Outcome = AttemptRow.Outcome
    assert operations.attempt_result(Outcome.TICKET_ISSUED, "") == "recognised"
    assert operations.attempt_result(Outcome.UNAVAILABLE, "busy") == "busy"
    assert operations.attempt_result(Outcome.UNAVAILABLE, "no_classifier") == "unavailable"
    assert operations.attempt_result(Outcome.FAILED, "liveness_failed") == "liveness"
    assert operations.attempt_result(Outcome.FAILED, "max_frames") == "not_recognised"
    assert operations.attempt_result(Outcome.THROTTLED, "ip") == "throttled"
    assert operations.attempt_result(Outcome.ABANDONED, "") == "abandoned"
    assert operations.attempt_result(Outcome.FAILED, "something new") == "other"
    assert set(operations.RESULTS) == {"recognised", "busy", *FAILURE_CATEGORIES}
    assert len(operations.RESULTS) == len(set(operations.RESULTS))


def test_only_recognised_attempts_are_timed(db):
    def value(name, **labels):
        return operations.REGISTRY.get_sample_value(name, labels) or 0.0

    timed, busy = value("facelogin_face_sign_in_seconds_count"), value("facelogin_face_attempts_total", result="busy")
    operations.attempt_ended(outcome=AttemptRow.Outcome.UNAVAILABLE, reason="busy", seconds=29.0)
    operations.attempt_ended(outcome=AttemptRow.Outcome.TICKET_ISSUED, reason="", seconds=1.5)
    assert value("facelogin_face_attempts_total", result="busy") == busy + 1
    assert value("facelogin_face_sign_in_seconds_count") == timed + 1


def test_retraining_is_followed_from_the_database(client, metrics_on, db):
    from facelogin.models import ClassifierVersion, RetrainRequest
    from facelogin.services.recognition import model_name

    def figures():
        return samples(client.get("/metrics/", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"))

    def last_result(found):
        return {status: found[("facelogin_retrain_last_result", (("result", status),))] for status in ("ready", "failed", "rejected")}

    found = figures()  # a new deployment: nothing asked, nothing trained
    assert found[("facelogin_classifier_active_version", ())] == 0
    assert found[("facelogin_retrains_running", ())] == 0
    assert found[("facelogin_retrain_waiting_seconds", ())] == 0
    assert last_result(found) == {"ready": 0, "failed": 0, "rejected": 0}

    Status = ClassifierVersion.Status
    model = model_name()
    other = ClassifierVersion.objects.create(status=Status.READY, is_active=True, model_name="another-model", classifier="svm")
    # Active, but for another face model: this deployment's processes cannot decide with it.
    assert figures()[("facelogin_classifier_active_version", ())] == 0
    other.is_active = False
    other.save()
    active = ClassifierVersion.objects.create(status=Status.READY, is_active=True, model_name=model, classifier="svm", request_token=1)
    RetrainRequest.objects.create(singleton=1, token=2, requested_at=timezone.now() - timedelta(minutes=10))
    found = figures()  # request 2 is ten minutes old and nothing answered it: no worker is retraining
    assert found[("facelogin_classifier_active_version", ())] == active.pk
    assert 600 <= found[("facelogin_retrain_waiting_seconds", ())] < 660
    assert last_result(found) == {"ready": 1, "failed": 0, "rejected": 0}

    # Its incremental run failed and a full one is training: still waiting.
    ClassifierVersion.objects.create(status=Status.FAILED, model_name=model, classifier="svm", request_token=2)
    running = ClassifierVersion.objects.create(status=Status.TRAINING, model_name=model, classifier="svm", request_token=2)
    found = figures()
    assert found[("facelogin_retrains_running", ())] == 1
    assert found[("facelogin_retrain_waiting_seconds", ())] >= 600
    assert last_result(found) == {"ready": 0, "failed": 1, "rejected": 0}

    running.status = Status.REJECTED
    running.save()
    found = figures()  # answered (rejected: the active version stays)
    assert found[("facelogin_retrains_running", ())] == 0
    assert found[("facelogin_retrain_waiting_seconds", ())] == 0
    assert last_result(found) == {"ready": 0, "failed": 0, "rejected": 1}
    assert found[("facelogin_classifier_active_version", ())] == active.pk
