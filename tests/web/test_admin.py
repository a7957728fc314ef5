"""Registrar staff in the admin: students, photo uploads, thumbnails, deleting face data, versions."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from facelogin.models import ClassifierVersion, EnrolmentPhoto, Student
from tests import faces

pytestmark = pytest.mark.django_db(transaction=True)

NO_INLINE_CHANGES = {"photos-TOTAL_FORMS": "0", "photos-INITIAL_FORMS": "0", "photos-MIN_NUM_FORMS": "0", "photos-MAX_NUM_FORMS": "1000"}


@pytest.fixture
def staff(admin_client):
    return admin_client


def test_staff_create_a_student_with_a_password_from_the_admin(staff, client):
    response = staff.post(
        "/admin/facelogin/student/add/",
        {"student_number": "20269999", "full_name": "New Student", "department": "Law", "status": "enrolled", "password": "s3cret-pass-word", **NO_INLINE_CHANGES},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    student = Student.objects.get(student_number="20269999")
    assert student.user.username == "20269999"
    assert client.login(username="20269999", password="s3cret-pass-word")


def test_the_student_list_searches_and_filters(staff, make_student):
    make_student("20260001", full_name="Kim Minji")
    make_student("20260002", full_name="Lee Junho", status="suspended")
    assert "Kim Minji" in staff.get("/admin/facelogin/student/?q=Minji").content.decode()
    body = staff.get("/admin/facelogin/student/?status__exact=suspended").content.decode()
    assert "Lee Junho" in body and "Kim Minji" not in body


@pytest.mark.slow
def test_several_photos_uploaded_at_once_are_enrolled_with_thumbnails_and_a_count(staff, make_student):
    student = make_student("20260001")
    person = faces.johns()[0]
    uploads = [SimpleUploadedFile(p.name, p.read_bytes(), content_type="image/jpeg") for p in faces.enrol_photos(person)[:3]]
    uploads.append(SimpleUploadedFile("notes.txt", b"not a photo", content_type="text/plain"))
    response = staff.post(
        f"/admin/facelogin/student/{student.pk}/change/",
        {
            "student_number": student.student_number, "full_name": student.full_name, "department": "", "status": "enrolled",
            "face_login_blocked_reason": "", "face_photos": uploads, **NO_INLINE_CHANGES,
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    states = sorted(EnrolmentPhoto.objects.values_list("state", "reason"))
    assert states == [("accepted", ""), ("accepted", ""), ("accepted", ""), ("rejected", "not_an_image")]
    page = staff.get(f"/admin/facelogin/student/{student.pk}/change/").content.decode()
    assert "enough to sign in by face" in page
    assert "Not an image" in page
    photo = EnrolmentPhoto.objects.filter(state="accepted").first()
    thumbnail = staff.get(f"/admin/facelogin/enrolmentphoto/{photo.pk}/crop.jpg")
    assert thumbnail["Content-Type"] == "image/jpeg" and thumbnail.content[:2] == b"\xff\xd8"
    status = staff.get(f"/admin/facelogin/student/{student.pk}/enrolment-status/").json()
    assert status["accepted"] == 3 and status["needed"] == 3
    # One student cannot be calibrated against others: the version says so in words.
    version = ClassifierVersion.objects.get()
    assert version.status == "failed" and "at least two students" in version.error


def test_students_cannot_see_thumbnails(client, make_student):
    make_student("20260001")
    client.login(username="20260001", password="correct-horse-battery")
    assert client.get("/admin/facelogin/enrolmentphoto/1/crop.jpg").status_code == 302


@pytest.mark.slow
def test_the_delete_face_data_button_asks_then_deletes(staff, make_student):
    student = make_student("20260001")
    EnrolmentPhoto.objects.create(student=student, state="accepted", content_sha256="x" * 64)
    page = staff.get(f"/admin/facelogin/student/{student.pk}/delete-face-data/").content.decode()
    assert "cannot be undone" in page
    assert EnrolmentPhoto.objects.exists()
    response = staff.post(f"/admin/facelogin/student/{student.pk}/delete-face-data/")
    assert response.status_code == 302
    assert not EnrolmentPhoto.objects.exists()


def test_the_classifier_versions_page_lists_versions(staff):
    ClassifierVersion.objects.create(model_name="casia-webface", classifier="centroid", status="failed", error="boom")
    body = staff.get("/admin/facelogin/classifierversion/").content.decode()
    assert "centroid" in body and "Failed" in body


def test_the_admin_warns_when_liveness_is_off(staff, settings):
    assert "Liveness checks are OFF" not in staff.get("/admin/facelogin/student/").content.decode()
    settings.FACELOGIN = {**settings.FACELOGIN, "LIVENESS": False}
    for page in ("/admin/facelogin/student/", "/admin/facelogin/classifierversion/"):
        assert "Liveness checks are OFF" in staff.get(page).content.decode()


def test_the_enrolment_status_needs_permission_to_view_students_and_photos(client, make_student):
    from django.contrib.auth.models import Permission, User

    student = make_student("20260001")
    clerk = User.objects.create_user("clerk", password="clerk-pass-123", is_staff=True)  # staff, no permissions
    client.force_login(clerk)
    url = f"/admin/facelogin/student/{student.pk}/enrolment-status/"
    assert client.get(url).status_code == 403
    clerk.user_permissions.add(Permission.objects.get(codename="view_student"))
    client.force_login(User.objects.get(pk=clerk.pk))
    assert client.get(url).status_code == 403  # the photos' states need their own permission
    clerk.user_permissions.add(Permission.objects.get(codename="view_enrolmentphoto"))
    client.force_login(User.objects.get(pk=clerk.pk))
    response = client.get(url)
    assert response.status_code == 200 and response.json()["photos"] == []
def test_the_site_has_an_icon_at_favicon_ico_and_every_page_links_one(client, staff):
    """Browsers ask every site for /favicon.ico; it was a 404 on every page."""
    from django.contrib.staticfiles import finders

    response = client.get("/favicon.ico")
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert body[:4] == b"\x00\x00\x01\x00"  # an ICO file
    assert finders.find("favicon.svg") is not None
    for page in (client.get("/login/"), staff.get("/admin/"), staff.get("/admin/facelogin/student/")):
        html = page.content.decode()
        assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in html
        assert '<link rel="icon" href="/favicon.ico"' in html


def test_photo_rows_on_the_student_page_are_captioned_by_photo_not_by_object(staff, make_student):
    student = make_student("20260077")
    photo = EnrolmentPhoto.objects.create(student=student, state="rejected", reason="no_face", source_name="front.jpg", content_sha256="0" * 64)
    html = staff.get(f"/admin/facelogin/student/{student.pk}/change/").content.decode()
    assert "EnrolmentPhoto object" not in html
    assert f"Photo {photo.pk} (front.jpg)" in html


def test_a_student_imported_without_a_name_is_shown_by_number_once(staff, make_student):
    student = make_student("2026A001", full_name="2026A001")  # what import_faces without a CSV stores
    html = staff.get(f"/admin/facelogin/student/{student.pk}/change/").content.decode()
    assert "2026A001 2026A001" not in html
    assert str(student) == "2026A001"
    assert str(make_student("2026A002", full_name="Kim Minji")) == "2026A002 Kim Minji"


def test_the_stranger_warning_says_a_chance_just_above_the_target_as_a_different_number(staff):
    """0.10004 % against a target of 0.1 % read "about 1 in 1,000 (0.1 %)" twice: above the target of itself."""
    import re

    ClassifierVersion.objects.create(
        status="ready", is_active=True, model_name="casia-webface", classifier="centroid", gallery_students=40,
        thresholds={"similarity": 0.6, "threshold": 0.6, "target_fpir": 0.001, "gallery_size": 40, "expected_fpir": 0.0010004, "loo_identification_fpir": 0.0},
    )
    html = staff.get("/admin/facelogin/classifierversion/").content.decode()
    warning = re.search(r"matches some enrolled student in (about 1 in [^)]*\)) of frames .*?target (about 1 in [^)]*\))", html)
    assert warning, html[:3000]
    chance, target = warning.groups()
    assert chance != target, (chance, target)
    assert "0.10004" in chance and "(0.1 %)" in target
