"""The registrar's webcam capture in the admin, end to end: headless Chromium with a fake camera showing a
real face, a staff member signed in to the admin, three captures, save; the photos are enrolled.

The student is created "on leave", so the retrain the upload triggers keeps the live portal's gallery
(and its thresholds) exactly as the other browser tests expect.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.live import manage

pytestmark = pytest.mark.browser

STAFF_USER, STAFF_PASSWORD = "registrar", "registrar-pass-2026"
CREATE = (
    "from django.contrib.auth import get_user_model\n"
    "from facelogin.services.consent import consent_record\n"
    "from facelogin.services.students import student_create\n"
    f"get_user_model().objects.create_superuser({STAFF_USER!r}, 'registrar@example.org', {STAFF_PASSWORD!r})\n"
    "student = student_create(student_number='2026C001', full_name='Camera Student', status='on_leave')\n"
    "consent_record(student=student, method='signed_form')\n"
    "print(f'ID={student.pk}')\n"
)


def test_staff_capture_three_photos_with_the_camera_and_they_are_enrolled(live_portal, launch_browser, fake_camera, faces_dir):
    output = manage(live_portal.env, "shell", "-c", CREATE).stdout
    student_id = int(next(line for line in output.splitlines() if line.startswith("ID="))[3:])
    person = sorted((faces_dir / "johns").iterdir())[4]  # not one of the enrolled three
    page = launch_browser(fake_camera(sorted(person.glob("*.jpg"))[0], face_height=320))

    page.goto(f"{live_portal.url}/admin/login/?next=/admin/facelogin/student/{student_id}/change/")
    page.fill("#id_username", STAFF_USER)
    page.fill("#id_password", STAFF_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"**/admin/facelogin/student/{student_id}/change/")
    assert "Given on" in page.locator(".consent-given").inner_text()

    page.click("#capture-start")
    # Polled with evaluate: wait_for_function evaluates its string inside the page, which the portal's
    # Content-Security-Policy (no 'unsafe-eval') forbids, as it should.
    for _ in range(100):
        if page.evaluate("document.getElementById('capture-video').videoWidth > 0"):
            break
        page.wait_for_timeout(100)
    for count in range(1, 4):
        page.click("#capture-take")
        expect(page.locator("#capture-list img")).to_have_count(count)
        page.wait_for_timeout(400)  # the fake camera's noise differs frame to frame
    assert page.locator("#capture-status").inner_text() == "3 ✓"
    assert page.evaluate("document.getElementById('id_face_photos').files.length") == 3

    page.click("input[name=_continue]")
    page.wait_for_url(f"**/admin/facelogin/student/{student_id}/change/", timeout=120_000)
    assert "photos received" in page.locator("ul.messagelist").inner_text()

    rows = live_portal.query(
        "SELECT state, reason, source_name FROM facelogin_enrolmentphoto WHERE student_id = ? ORDER BY id", (student_id,)
    )
    assert len(rows) == 3 and all(r["source_name"].startswith("camera-") and r["source_name"].endswith(".jpg") for r in rows)
    # One still picture, captured three times: the first is enrolled; the others are the same face to
    # within sensor noise, which enrolment refuses as duplicates rather than skewing the calibration.
    assert rows[0]["state"] == "accepted"
    assert all((r["state"], r["reason"]) in {("accepted", ""), ("rejected", "duplicate")} for r in rows[1:])
    thumbnails = page.locator("img[alt='aligned face']")
    assert thumbnails.count() == sum(r["state"] == "accepted" for r in rows)
