"""A student's face data exported for a subject-access request: pictures and records, no templates."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from facelogin.models import BiometricAction
from facelogin.services import audit, enrolment
from tests import faces

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.slow
def test_staff_export_a_students_face_data_and_the_export_is_audited(admin_client, admin_user, make_student):
    student = make_student("20260001")
    other = make_student("20260002")
    photos = faces.enrol_photos(faces.johns()[0])[:2]
    enrolment.photos_submit(student=student, uploads=[enrolment.Upload(p.name, p.read_bytes()) for p in photos], retrain=False)
    enrolment.photos_submit(student=student, uploads=[enrolment.Upload("notes.txt", b"not a photo")], retrain=False)
    audit.face_attempt_record(outcome="ticket_issued", ip="192.0.2.7", user_agent="Firefox", student=student)
    audit.face_attempt_record(outcome="failed", ip="192.0.2.9", student=other)

    page = admin_client.get(f"/admin/facelogin/student/{student.pk}/change/").content.decode()
    assert 'id="export-face-data"' in page
    assert admin_client.get(f"/admin/facelogin/student/{student.pk}/export-face-data/").status_code == 302  # POST only
    response = admin_client.post(f"/admin/facelogin/student/{student.pk}/export-face-data/")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert "face-data-20260001-" in response["Content-Disposition"]

    archive = zipfile.ZipFile(io.BytesIO(response.content))
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["student_number"] == "20260001"
    assert [p["state"] for p in manifest["photos"]] == ["accepted", "accepted", "rejected"]
    pictures = sorted(n for n in archive.namelist() if n.startswith("faces/"))
    assert len(pictures) == 2 and all(archive.read(n)[:2] == b"\xff\xd8" for n in pictures)  # decrypted JPEGs
    assert [a["ip"] for a in manifest["face_sign_in_attempts"]] == ["192.0.2.7"]  # only this student's
    assert manifest["consents"][0]["method"] == "signed_form" and manifest["consents"][0]["ended_at"] is None
    assert all("embedding" not in p for p in manifest["photos"]) and len(archive.namelist()) == 3
    exported = BiometricAction.objects.get(action="export")
    assert (exported.student, exported.actor, exported.detail["photos"]) == (student, admin_user, 2)
