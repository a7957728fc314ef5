"""Face sign-in end to end: headless Chromium whose camera shows a real face photo, against a live
portal (daphne, SQLite, real MTCNN + FaceNet, a classifier trained by import_faces).

The fake camera plays a y4m file (tests/e2e/fakecam.py), so what the page captures, JPEG-encodes and
streams over the websocket is a real face that the classifier has never seen.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.conftest import FACES

pytestmark = pytest.mark.browser

NOT_RECOGNISED = re.compile(r"^We could not recognise you")
CAMERA_REFUSED = re.compile(r"^Camera access was refused")
# The unknown face: a fifth person from the same photo set, never enrolled (harder than a celebrity
# portrait: same crop, same lighting style, same name even).
UNKNOWN_PHOTO = sorted((FACES / "johns" / "John_Simm").glob("*.jpg"))[0] if (FACES / "johns" / "John_Simm").is_dir() else None




def test_held_out_photo_signs_in_by_itself(live_portal, launch_browser, fake_camera):
    from playwright.sync_api import expect

    student = live_portal.students[0]
    photo = student.photos[9]  # the 10th photo: not among the six enrolled
    assert photo not in student.enrolled_photos
    before = live_portal.last_attempt_id()
    page = launch_browser(fake_camera(photo))

    started = time.monotonic()
    page.goto(f"{live_portal.url}/login/face/")
    # No clicks: the page starts the camera, streams frames, gets a ticket and posts it.
    page.wait_for_url(f"{live_portal.url}/", timeout=30_000)
    print(f"\nsigned in {time.monotonic() - started:.1f} s after opening the page")
    expect(page.locator("#student-name")).to_have_text(student.name)
    expect(page.locator("#student-number")).to_have_text(student.number)

    # The server really received and recognised face frames from this browser.
    attempts = live_portal.face_attempts(before)
    issued = [a for a in attempts if a["outcome"] == "ticket_issued"]
    assert len(issued) == 1, [dict(a) for a in attempts]
    attempt = issued[0]
    assert attempt["student_number"] == student.number
    assert attempt["frames"] >= 3  # FACELOGIN_MIN_FRAMES agreeing frames
    scores = json.loads(attempt["scores"])
    assert scores["similarity"] is not None and scores["threshold"] is not None
    assert scores["similarity"] >= scores["threshold"], scores
    sign_ins = live_portal.query(
        "SELECT si.method FROM facelogin_signin si JOIN facelogin_student s ON s.user_id = si.user_id "
        "WHERE s.student_number = ? ORDER BY si.id",
        (student.number,),
    )
    assert [row["method"] for row in sign_ins] == ["face"]
    # The recent sign-ins table on the home page shows it too.
    expect(page.locator("#recent-sign-ins tbody tr")).to_have_count(1)


@pytest.mark.skipif(UNKNOWN_PHOTO is None, reason="John_Simm photos missing")
def test_face_not_enrolled_stays_signed_out(live_portal, launch_browser, fake_camera):
    from playwright.sync_api import expect

    before = live_portal.last_attempt_id()
    page = launch_browser(fake_camera(UNKNOWN_PHOTO))
    page.goto(f"{live_portal.url}/login/face/")

    status = page.locator("#face-status")
    # At most FACELOGIN_MAX_FRAMES (15) frames or 20 s, then the attempt fails.
    expect(status).to_have_text(NOT_RECOGNISED, timeout=35_000)
    assert status.get_attribute("aria-live") == "polite"
    assert page.url == f"{live_portal.url}/login/face/"
    expect(page.locator("#password-fallback")).to_be_visible()
    expect(page.locator("#face-retry")).to_be_visible()

    attempts = live_portal.face_attempts(before)
    assert [a["outcome"] for a in attempts] == ["failed"], [dict(a) for a in attempts]
    assert attempts[0]["student_number"] is None
    assert attempts[0]["frames"] >= 3  # it was judged on real frames, not refused up front
    # Still signed out: the home page sends this browser to the sign-in page.
    page.goto(f"{live_portal.url}/")
    assert page.url.startswith(f"{live_portal.url}/login/")


def test_camera_refused_offers_the_password(live_portal, launch_browser):
    """Without the fake-UI flag and with no permission granted, headless Chromium denies the camera."""
    from playwright.sync_api import expect

    before = live_portal.last_attempt_id()
    page = launch_browser(None, fake_ui=False, permissions=[])
    page.goto(f"{live_portal.url}/login/face/")

    expect(page.locator("#face-status")).to_have_text(CAMERA_REFUSED)
    fallback = page.locator("#password-fallback")
    expect(fallback).to_be_visible()
    assert fallback.get_attribute("href") == "/login/"
    assert live_portal.last_attempt_id() == before  # no camera, no websocket attempt


def test_password_fallback_is_reachable_by_keyboard(live_portal, launch_browser):
    from playwright.sync_api import expect

    page = launch_browser(None, fake_ui=False, permissions=[])
    page.goto(f"{live_portal.url}/login/face/")
    status = page.locator("#face-status")
    assert status.get_attribute("aria-live") == "polite"
    assert status.get_attribute("role") == "status"
    expect(status).to_have_text(CAMERA_REFUSED)  # wait until the page has settled

    # From the first focusable element (the skip link), Tab alone reaches the password link.
    page.locator(".skip-link").focus()
    focused = ["skip-link"]
    for _ in range(12):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
        if focused[-1] == "password-fallback":
            break
    assert focused[-1] == "password-fallback", f"Tab went through {focused}"
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_portal.url}/login/")
    expect(page.locator("#id_username")).to_be_visible()


def test_after_a_failure_only_the_retry_button_shows(live_portal, launch_browser):
    """face_login.js hides "Start the camera" and shows "Try again"; the CSS must not undo ``hidden``."""
    from playwright.sync_api import expect

    page = launch_browser(None, fake_ui=False, permissions=[])
    page.goto(f"{live_portal.url}/login/face/")
    expect(page.locator("#face-status")).to_have_text(CAMERA_REFUSED)
    assert page.locator("#face-start").get_attribute("hidden") is not None
    expect(page.locator("#face-retry")).to_be_visible()
    expect(page.locator("#face-start")).to_be_hidden()
