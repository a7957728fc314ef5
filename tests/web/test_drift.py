"""Appearance drift in the portal: templates learnt from sign-ins, their life cycle, and what staff see;
and the registrar's advice on photos that weaken a student's template."""

from __future__ import annotations

import numpy as np
import pytest
from django.utils import timezone

from facelogin.models import BiometricAction, DriftTemplate, EnrolmentPhoto, FaceTicket, SignIn
from facelogin.services import drift, recognition, training
from facelogin.services.enrolment import face_data_delete
from facelogin.services.reports import sign_in_report_not_me
from facelogin.services.tickets import ticket_issue
from tests import faces

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def enrolled(make_student, fresh_loaded_model):
    students = faces.enrol_people(make_student, faces.johns()[:3], "2026J00")
    faces.enrol_background(make_student)
    version = training.classifier_train(trigger="test")
    assert version.is_active, version.error
    return students


def _model():
    return training.load_trained_model(training.active_version_id(model_name=recognition.model_name()))


def _offer(student, photo, *, liveness_passed=True, redeem=False):
    ticket = ticket_issue(student=student, session_key="s" * 32, scores={})
    template = drift.drift_template_offer(
        student=student,
        ticket_id=ticket.ticket_id,
        embedding=faces.embedding_of(photo),
        frames=5,
        model=_model(),
        liveness_passed=liveness_passed,
    )
    if redeem:
        FaceTicket.objects.filter(pk=ticket.ticket_id).update(used_at=timezone.now())
    return template


def _rows(student) -> int:
    return _model().gallery.counts()[_model().gallery.labels.index(str(student.pk))]


def test_a_live_sign_ins_template_joins_the_gallery_once_the_sign_in_completed(enrolled):
    person = faces.johns()[0]
    student = enrolled[person]
    before = _rows(student)
    assert _offer(student, faces.held_out_photos(person)[0], liveness_passed=False) is None  # never without liveness
    template = _offer(student, faces.held_out_photos(person)[0])
    assert template is not None and template.similarity >= template.threshold + 0.05
    assert template.other_similarity <= template.threshold - 0.1 and template.confirmed_at is None
    assert BiometricAction.objects.filter(action="drift", student=student).count() == 1
    training.classifier_train(trigger="test")
    assert _rows(student) == before  # the ticket was never redeemed: no sign-in, nothing learnt
    FaceTicket.objects.filter(pk=template.ticket_id).update(used_at=timezone.now())
    training.classifier_train(trigger="test")
    template.refresh_from_db()
    assert template.confirmed_at is not None and _rows(student) == before + 1


def test_a_strangers_face_or_another_students_is_not_learnt(enrolled):
    first, second = faces.johns()[:2]
    stranger = faces.johns()[4]  # not enrolled
    assert _offer(enrolled[first], faces.held_out_photos(stranger)[0]) is None
    assert _offer(enrolled[first], faces.held_out_photos(second)[0]) is None
    assert not DriftTemplate.objects.exists()


def test_the_newest_templates_are_kept_up_to_the_cap(enrolled, settings):
    settings.FACELOGIN = {**settings.FACELOGIN, "DRIFT_TEMPLATES": 2}
    person = faces.johns()[0]
    kept = [t for t in (_offer(enrolled[person], photo) for photo in faces.held_out_photos(person)) if t is not None]
    assert len(kept) >= 3, "the held-out photos should be learnable"
    assert list(DriftTemplate.objects.order_by("created_at").values_list("pk", flat=True)) == [t.pk for t in kept[-2:]]
    settings.FACELOGIN = {**settings.FACELOGIN, "DRIFT_TEMPLATES": 0}  # off
    assert _offer(enrolled[person], faces.held_out_photos(person)[0]) is None


def test_a_not_me_report_or_the_end_of_consent_removes_every_learnt_template(enrolled):
    first, second = faces.johns()[:2]
    assert _offer(enrolled[first], faces.held_out_photos(first)[0], redeem=True) is not None
    assert _offer(enrolled[second], faces.held_out_photos(second)[0], redeem=True) is not None
    sign_in = SignIn.objects.create(user=enrolled[first].user, method=SignIn.Method.FACE)
    sign_in_report_not_me(student=enrolled[first], sign_in_id=sign_in.pk)
    assert list(DriftTemplate.objects.values_list("student", flat=True)) == [enrolled[second].pk]
    assert BiometricAction.objects.filter(action="drift_remove", student=enrolled[first]).exists()
    face_data_delete(students=[enrolled[second]])
    assert not DriftTemplate.objects.exists()


def test_an_expired_unredeemed_sign_in_leaves_nothing_behind(enrolled):
    person = faces.johns()[0]
    template = _offer(enrolled[person], faces.held_out_photos(person)[0])
    FaceTicket.objects.filter(pk=template.ticket_id).update(expires_at=timezone.now())
    drift.drift_templates_confirm()
    assert not DriftTemplate.objects.exists()


def test_staff_see_the_learnt_templates_and_remove_them(enrolled, admin_client):
    person = faces.johns()[0]
    student = enrolled[person]
    template = _offer(student, faces.held_out_photos(person)[0], redeem=True)
    page = admin_client.get(f"/admin/facelogin/student/{student.pk}/change/").content.decode()
    assert "Face templates learnt from sign-ins" in page and f"{template.similarity:.3f}" in page
    photos = list(EnrolmentPhoto.objects.filter(student=student).order_by("-created_at").values_list("pk", flat=True))
    form = {
        "student_number": student.student_number, "full_name": student.full_name, "department": "", "status": "enrolled",
        "face_login_blocked_reason": "",
        "photos-TOTAL_FORMS": str(len(photos)), "photos-INITIAL_FORMS": str(len(photos)), "photos-MIN_NUM_FORMS": "0", "photos-MAX_NUM_FORMS": "1000",
        **{f"photos-{i}-id": str(pk) for i, pk in enumerate(photos)},
        **{f"photos-{i}-student": str(student.pk) for i in range(len(photos))},
        "drift_templates-TOTAL_FORMS": "1", "drift_templates-INITIAL_FORMS": "1", "drift_templates-MIN_NUM_FORMS": "0",
        "drift_templates-MAX_NUM_FORMS": "1000", "drift_templates-0-id": str(template.pk), "drift_templates-0-student": str(student.pk),
        "drift_templates-0-DELETE": "on",
    }
    response = admin_client.post(f"/admin/facelogin/student/{student.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert not DriftTemplate.objects.exists()
    assert EnrolmentPhoto.objects.filter(student=student).count() == len(photos)  # the photos stay
    assert BiometricAction.objects.filter(action="drift_remove", student=student, actor__isnull=False).exists()


def test_the_registrar_is_told_which_photos_weaken_a_template(enrolled, admin_client, make_student):
    # A student whose photos are mostly theirs, plus one of someone else uploaded by mistake.
    person, other = faces.johns()[3], faces.johns()[1]
    student = make_student("2026M0001", full_name="Mixed Up")
    faces.enrol_accepted(student, faces.enrol_photos(person)[:4] + faces.held_out_photos(other)[:1])
    wrong = EnrolmentPhoto.objects.filter(student=student).order_by("-pk").first()
    training.classifier_train(trigger="test")
    from facelogin.services.enrolment import template_advice

    advice = template_advice(student=student)
    assert "unlike_others" in advice[wrong.pk].codes and "near_other_student" in advice[wrong.pk].codes
    # The wrong photo is singled out: far less like the others than any of the student's own. (An own
    # photo may be flagged too when the model scores it low: SFace puts this student's dark, open-mouthed
    # photo at 0.41 to the rest, under the 0.46 reference; FaceNet did not. The flag follows the score.)
    seen = {pk: (a.codes, a.own, a.threshold) for pk, a in advice.items()}
    assert all(advice[wrong.pk].own < a.own - 0.2 for pk, a in advice.items() if pk != wrong.pk), seen
    assert all(("unlike_others" in a.codes) == (a.own < a.threshold) for a in advice.values()), seen
    page = admin_client.get(f"/admin/facelogin/student/{student.pk}/change/").content.decode()
    assert f'data-photo="{wrong.pk}"' in page and "Unlike this student" in page
    korean = admin_client.get(f"/admin/facelogin/student/{student.pk}/change/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    assert "Unlike this student" not in korean and f'data-photo="{wrong.pk}"' in korean


def test_staff_delete_a_single_weak_photo(enrolled, admin_client):
    person = faces.johns()[0]
    student = enrolled[person]
    photos = list(EnrolmentPhoto.objects.filter(student=student).order_by("-created_at").values_list("pk", flat=True))
    form = {
        "student_number": student.student_number, "full_name": student.full_name, "department": "", "status": "enrolled",
        "face_login_blocked_reason": "",
        "photos-TOTAL_FORMS": str(len(photos)), "photos-INITIAL_FORMS": str(len(photos)), "photos-MIN_NUM_FORMS": "0", "photos-MAX_NUM_FORMS": "1000",
        **{f"photos-{i}-id": str(pk) for i, pk in enumerate(photos)},
        **{f"photos-{i}-student": str(student.pk) for i in range(len(photos))},
        "photos-0-DELETE": "on",
    }
    response = admin_client.post(f"/admin/facelogin/student/{student.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert not EnrolmentPhoto.objects.filter(pk=photos[0]).exists()
    assert EnrolmentPhoto.objects.filter(student=student).count() == len(photos) - 1
    assert BiometricAction.objects.filter(action="delete", student=student, detail__photo=photos[0]).exists()


def test_the_drift_retrain_waits_for_a_pending_one_and_for_its_interval(enrolled, settings, monkeypatch):
    asked = []
    monkeypatch.setattr(training, "retrain_request", lambda **kwargs: asked.append(kwargs))
    settings.CELERY_TASK_ALWAYS_EAGER = False  # a worker, which honours the countdown
    person = faces.johns()[0]
    _offer(enrolled[person], faces.held_out_photos(person)[0])
    # The newest version is seconds old: the retrain is asked for when the interval is over.
    assert len(asked) == 1 and asked[0]["countdown"] > 59 * 60
    from facelogin.models import RetrainRequest

    RetrainRequest.objects.update_or_create(singleton=1, defaults={"requested_at": timezone.now(), "token": 99})
    _offer(enrolled[person], faces.held_out_photos(person)[1])
    assert len(asked) == 1  # one is pending already: it will take this template too


def test_with_in_process_tasks_a_learnt_template_never_retrains_inside_the_sign_in(enrolled, settings):
    # The embedded default runs tasks in-process, where a countdown cannot wait: the retrain would run in
    # the sign-in itself, at every sign-in. The template waits for the next retrain instead.
    from facelogin.models import ClassifierVersion

    assert settings.CELERY_TASK_ALWAYS_EAGER
    versions = ClassifierVersion.objects.count()
    person = faces.johns()[0]
    assert _offer(enrolled[person], faces.held_out_photos(person)[0]) is not None
    assert ClassifierVersion.objects.count() == versions


async def test_a_sign_in_that_passed_the_liveness_challenge_offers_its_own_face_track(enrolled, settings, monkeypatch):
    # The websocket, liveness on, the student turning when asked in front of the page's colours (as
    # tests/web/test_consumer.py's liveness test does): the track that decided becomes a pending template.
    from channels.db import database_sync_to_async
    from django.core.cache import cache

    from tests.web.test_consumer import _actor, _connect, _in_front_of_the_page, engine_for_these_settings

    cache.clear()
    settings.FACELOGIN = {
        **settings.FACELOGIN, "MODEL_REFRESH_SECONDS": 0.0, "LIVENESS": True, "LIVENESS_FLASH": True, "MAX_FRAMES": 60,
    }
    engine_for_these_settings(monkeypatch)
    person = faces.JOHNS / "John_Schneider"
    communicator = await _connect()
    answer = (await _in_front_of_the_page(communicator, _actor("student")))[-1]
    assert answer["type"] == "success", answer
    learnt = await database_sync_to_async(lambda: list(DriftTemplate.objects.select_related("ticket")))()
    assert len(learnt) == 1 and learnt[0].student_id == enrolled[person].pk
    assert learnt[0].ticket is not None and learnt[0].confirmed_at is None and learnt[0].frames >= 3
    await communicator.disconnect()
