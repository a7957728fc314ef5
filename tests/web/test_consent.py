"""Consent to face sign-in: required before enrolment, recorded with who/when/which text, and
withdrawing it deletes the face data (from the admin and by the student on the portal)."""

from __future__ import annotations

import shutil
from io import StringIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from facelogin.models import BiometricAction, EnrolmentPhoto, FaceConsent
from facelogin.services import consent, enrolment
from tests import faces

pytestmark = pytest.mark.django_db(transaction=True)

NO_INLINE_CHANGES = {"photos-TOTAL_FORMS": "0", "photos-INITIAL_FORMS": "0", "photos-MIN_NUM_FORMS": "0", "photos-MAX_NUM_FORMS": "1000"}


def _photo(index: int = 0) -> enrolment.Upload:
    path = faces.enrol_photos(faces.johns()[0])[index]
    return enrolment.Upload(path.name, path.read_bytes())


def test_photos_of_a_student_without_consent_are_refused_and_nothing_is_stored(make_student):
    student = make_student("20260001", consent=False)
    with pytest.raises(consent.ConsentRequired):
        enrolment.photos_submit(student=student, uploads=[_photo()], retrain=False)
    assert not EnrolmentPhoto.objects.exists()


def test_a_photo_waiting_when_consent_ends_is_rejected_not_enrolled(make_student):
    student = make_student("20260001")
    with pytest.MonkeyPatch.context() as patch:  # keep the photo queued: no task runs at commit
        patch.setattr(enrolment, "photos_enqueue", lambda ids: 0)
        (photo,) = enrolment.photos_submit(student=student, uploads=[_photo()], retrain=False)
    FaceConsent.objects.filter(student=student).update(ended_at="2026-01-01T00:00:00Z", ended_reason="withdrawn")
    processed = enrolment.photo_process(photo_id=photo.pk)
    assert (processed.state, processed.reason) == ("rejected", "no_consent")
    assert processed.embedding is None and processed.original is None


def test_staff_record_consent_in_the_admin_then_photos_can_be_enrolled(admin_client, admin_user, make_student, settings):
    settings.FACELOGIN = {**settings.FACELOGIN, "CONSENT_VERSION": "2026-test"}
    student = make_student("20260001", consent=False)
    page = admin_client.get(f"/admin/facelogin/student/{student.pk}/change/").content.decode()
    assert "Not given. Record the student" in page and 'name="face_photos"' not in page
    assert "record-consent-link" in page

    text = admin_client.get(f"/admin/facelogin/student/{student.pk}/consent/").content.decode()
    assert 'id="consent-text"' in text and "2026-test" in text
    refused = admin_client.post(f"/admin/facelogin/student/{student.pk}/consent/", {})  # box not ticked
    assert refused.status_code == 200 and not FaceConsent.objects.exists()
    assert admin_client.post(f"/admin/facelogin/student/{student.pk}/consent/", {"confirm": "on"}).status_code == 302

    recorded = FaceConsent.objects.get(student=student)
    assert (recorded.text_version, recorded.method, recorded.recorded_by) == ("2026-test", "signed_form", admin_user)
    assert recorded.ended_at is None
    assert BiometricAction.objects.filter(action="consent", student=student, actor=admin_user).exists()
    page = admin_client.get(f"/admin/facelogin/student/{student.pk}/change/").content.decode()
    assert "Given on" in page and 'name="face_photos"' in page
    listing = admin_client.get("/admin/facelogin/student/?consent=no").content.decode()
    assert "20260001" not in listing


def test_an_upload_without_consent_says_why_and_keeps_nothing(admin_client, make_student):
    student = make_student("20260001", consent=False)
    photo = faces.enrol_photos(faces.johns()[0])[0]
    # A form posted while consent was still recorded, after it was withdrawn in another tab.
    from facelogin.admin import StudentAdmin
    from facelogin.models import Student

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(StudentAdmin, "get_fields", lambda self, request, obj=None: ["student_number", "full_name", "status", "face_photos"])
        response = admin_client.post(
            f"/admin/facelogin/student/{student.pk}/change/",
            {"student_number": student.student_number, "full_name": student.full_name, "status": "enrolled",
             "face_photos": [SimpleUploadedFile(photo.name, photo.read_bytes(), content_type="image/jpeg")], **NO_INLINE_CHANGES},
            follow=True,
        )
    assert "has not consented to face sign-in" in response.content.decode()
    assert not EnrolmentPhoto.objects.exists()
    assert Student.objects.filter(pk=student.pk).exists()


@pytest.mark.slow
def test_withdrawing_consent_in_the_admin_deletes_the_face_data(admin_client, admin_user, make_student):
    student = make_student("20260001")
    enrolment.photos_submit(student=student, uploads=[_photo(0), _photo(1)], retrain=False)
    assert EnrolmentPhoto.objects.filter(student=student, state="accepted").count() == 2
    confirm = admin_client.get(f"/admin/facelogin/student/{student.pk}/withdraw-consent/").content.decode()
    assert "confirm-withdraw-consent" in confirm
    assert admin_client.post(f"/admin/facelogin/student/{student.pk}/withdraw-consent/").status_code == 302

    assert not EnrolmentPhoto.objects.filter(student=student).exists()
    ended = FaceConsent.objects.get(student=student)
    assert (ended.ended_reason, ended.ended_by) == ("withdrawn", admin_user) and ended.ended_at is not None
    actions = set(BiometricAction.objects.filter(student=student).values_list("action", flat=True))
    assert {"consent", "enrol", "withdraw", "delete"} <= actions
    with pytest.raises(consent.ConsentRequired):
        enrolment.photos_submit(student=student, uploads=[_photo()], retrain=False)


@pytest.mark.slow
def test_a_student_gives_and_withdraws_consent_on_the_portal(client, make_student):
    student = make_student("20260001", consent=False)
    client.force_login(student.user)
    home = client.get("/").content.decode()
    assert "It needs your consent" in home
    assert "I agree to face sign-in" in client.get("/consent/").content.decode()
    client.post("/consent/", {"action": "give"})
    given = FaceConsent.objects.get(student=student)
    assert (given.method, given.recorded_by) == ("portal", student.user)

    enrolment.photos_submit(student=student, uploads=[_photo()], retrain=False)
    assert EnrolmentPhoto.objects.filter(student=student, state="accepted").count() == 1
    assert "You consented to face sign-in" in client.get("/").content.decode()

    client.post("/consent/", {"action": "withdraw"})  # without ticking the confirmation
    assert EnrolmentPhoto.objects.filter(student=student).exists()
    client.post("/consent/", {"action": "withdraw", "confirm": "yes"})
    assert not EnrolmentPhoto.objects.filter(student=student).exists()
    assert FaceConsent.objects.get(student=student).ended_reason == "withdrawn"
    assert "It needs your consent" in client.get("/").content.decode()


def test_a_new_consent_text_renews_the_consent_and_keeps_the_history(make_student, settings):
    student = make_student("20260001")
    first = consent.consent_active(student=student)
    assert consent.consent_record(student=student, method="signed_form") == first  # same text: no new row
    settings.FACELOGIN = {**settings.FACELOGIN, "CONSENT_VERSION": "2027-1"}
    renewed = consent.consent_record(student=student, method="portal")
    first.refresh_from_db()
    assert first.ended_reason == "renewed" and renewed.text_version == "2027-1"
    assert consent.consent_active(student=student) == renewed


@pytest.mark.slow
def test_import_records_consent_or_skips_students_without_it(tmp_path, make_student):
    for number in ("2026A001", "2026A002"):
        folder = tmp_path / number
        folder.mkdir()
        for photo in faces.enrol_photos(faces.johns()[0 if number.endswith("1") else 1])[:3]:
            shutil.copy(photo, folder / photo.name)
    make_student("2026A001", consent=False)
    make_student("2026A002")
    out = StringIO()
    call_command("import_faces", str(tmp_path), "--no-record-consent", stdout=out)
    assert "1 students skipped, no consent recorded: 2026A001" in out.getvalue()
    assert set(EnrolmentPhoto.objects.values_list("student__student_number", flat=True)) == {"2026A002"}

    call_command("import_faces", str(tmp_path), stdout=StringIO())
    imported = FaceConsent.objects.get(student__student_number="2026A001", ended_at__isnull=True)
    assert imported.method == "import"
