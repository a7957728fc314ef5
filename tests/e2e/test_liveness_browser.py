"""The liveness challenge and device binding through the real page, in headless Chromium, against a live portal
with ``FACELOGIN_LIVENESS=1`` and ``FACELOGIN_DEVICE_POLICY=known`` (fixture ``liveness_portal``).

The camera is a script in the page (tests/e2e/pagecam.py) that answers what the page shows: the student's
head (a held-out photo lifted to 3-D) turns when the prompt asks and reflects the page's colours; the
attacks show a print, a swapped pair of photos on a tablet, or a recording on a phone.
"""

from __future__ import annotations

import json
import re
import time
from functools import lru_cache

import pytest

from tests.conftest import FACES
from tests.e2e.pagecam import head_frames, page_camera, photo_frame, recording_frames

pytestmark = pytest.mark.browser

STUDENT = 2  # John Schneider; the other browser tests sign student 0 in, the throttles are per student
FRONTAL = "000329_00925859.jpg"  # held out, looking at the camera
TURNED = "000326_00926128.jpg"  # a real head turn of his (yaw about -20 on the server's scale)
LIVENESS_FAILED = re.compile(r"^The liveness check was not completed")
PASSWORD = "correct-horse-battery"  # tests/e2e/conftest.py's import gives each student no password: set below


@lru_cache(maxsize=None)
def _frames(name: str, mode: str):
    photo = FACES / "johns" / "John_Schneider" / name
    if mode == "head":
        return head_frames(photo)
    if mode == "recording":
        return recording_frames(photo)
    return photo_frame(photo)


@pytest.fixture
def student(liveness_portal):
    student = liveness_portal.students[STUDENT]
    assert FACES / "johns" / "John_Schneider" / FRONTAL in student.held_out_photos
    return student


def _camera(mode: str) -> str:
    if mode == "student":
        return page_camera("student", frames=_frames(FRONTAL, "head"))
    if mode == "still":
        return page_camera("still", frames={"front": _frames(FRONTAL, "photo")})
    if mode == "swap":
        return page_camera("swap", frames={"front": _frames(FRONTAL, "photo"), "turned": _frames(TURNED, "photo")})
    return page_camera("recording", recording=_frames(FRONTAL, "recording"))


def _open(launch_browser, portal, mode: str, *, language: str = "en", storage_state=None):
    page = launch_browser(locale=language, storage_state=storage_state)
    page.add_init_script(_camera(mode))
    if language != "en":
        page.context.add_cookies([{"name": "django_language", "value": language, "url": portal.url}])
    return page


def _server_messages(page) -> list[dict]:
    messages: list[dict] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: messages.append(json.loads(payload)) if isinstance(payload, str) else None))
    return messages


def _set_password(portal, student) -> None:
    from tests.live import manage

    manage(portal.env, "shell", "-c", f"from django.contrib.auth.models import User; u = User.objects.get(username='{student.number}'); u.set_password('{PASSWORD}'); u.save()")


def _register_kiosk(portal, launch_browser):
    """Staff register a kiosk in the admin, on the terminal's own browser; returns that browser's page."""
    from playwright.sync_api import expect

    from tests.live import manage

    manage(portal.env, "shell", "-c", "from django.contrib.auth.models import User; User.objects.filter(username='kioskadmin').exists() or User.objects.create_superuser('kioskadmin', 'k@example.ac.kr', 'kiosk-admin-pass-1')")
    manage(portal.env, "shell", "-c", "from facelogin.models import Kiosk; Kiosk.objects.get_or_create(name='Library entrance')")
    page = _open(launch_browser, portal, "student")
    page.goto(f"{portal.url}/admin/login/?next=/admin/facelogin/kiosk/")
    page.fill("#id_username", "kioskadmin")
    page.fill("#id_password", "kiosk-admin-pass-1")
    page.click("input[type=submit]")
    page.get_by_role("link", name="Library entrance").click()
    page.click("#kiosk-register-button")
    expect(page.locator(".messagelist")).to_contain_text("This browser is now the kiosk")
    page.goto(f"{portal.url}/admin/")
    page.click("#logout-form button, form#logout-form [type=submit]")
    return page


@pytest.mark.parametrize("language", ["en", "ko"])
def test_a_student_who_turns_when_asked_signs_in_at_a_kiosk(liveness_portal, launch_browser, student, language):
    """The page's prompts, in English and Korean, followed by a head that turns: signed in, audited."""
    from playwright.sync_api import expect

    portal = liveness_portal
    page = _register_kiosk(portal, launch_browser) if language == "en" else _kiosk_page(portal, launch_browser, language)
    messages = _server_messages(page)
    before = portal.last_attempt_id()
    started = time.monotonic()
    page.goto(f"{portal.url}/login/face/")
    expect(page.locator("#face-challenge")).to_be_visible()
    page.wait_for_url(f"{portal.url}/", timeout=40_000)
    print(f"\nsigned in ({language}) {time.monotonic() - started:.1f} s after opening the page")
    expect(page.locator("#student-number")).to_have_text(student.number)
    steps = [m["challenge"]["step"] for m in messages if m.get("type") == "frame"]
    assert "turn_left" in steps and "turn_right" in steps and steps[0] == "look"
    attempts = portal.face_attempts(before)
    assert [(a["outcome"], a["student_number"]) for a in attempts] == [("ticket_issued", student.number)]
    challenge = json.loads(attempts[0]["challenge"])
    assert challenge["status"] == "passed" and challenge["completed"] == 2 and challenge["flash"]["status"] == "passed", challenge
    method = portal.query("SELECT method FROM facelogin_signin ORDER BY id DESC LIMIT 1")[0]["method"]
    assert method == "face"  # a kiosk: the face alone


def _kiosk_page(portal, launch_browser, language):
    """A second kiosk terminal's browser (a fresh registration, in the given language)."""
    page = _register_kiosk(portal, launch_browser)
    if language != "en":
        page.context.add_cookies([{"name": "django_language", "value": language, "url": portal.url}])
    return page


@pytest.mark.parametrize("attack, reason", [("still", "too_slow"), ("swap", None), ("recording", None)])
def test_a_photo_a_swapped_pair_and_a_recording_fail_with_a_clear_message(liveness_portal, launch_browser, student, attack, reason):
    from playwright.sync_api import expect

    portal = liveness_portal
    page = _open(launch_browser, portal, attack)
    before = portal.last_attempt_id()
    page.goto(f"{portal.url}/login/face/")
    expect(page.locator("#face-status")).to_have_text(LIVENESS_FAILED, timeout=40_000)
    expect(page.locator("#face-retry")).to_be_visible()
    expect(page.locator("#password-fallback")).to_be_visible()
    assert page.url.startswith(f"{portal.url}/login/face/")
    attempts = portal.face_attempts(before)
    assert [(a["outcome"], a["reason"]) for a in attempts] == [("failed", "liveness_failed")], [dict(a) for a in attempts]
    challenge = json.loads(attempts[0]["challenge"])
    assert challenge["status"] == "failed", challenge
    if reason:
        assert challenge["reason"] == reason, challenge
    print(f"\n{attack}: refused for {challenge['reason']} after {challenge['completed']} turns")


def test_device_binding_in_the_browser(liveness_portal, launch_browser, student, tmp_path):
    """A new browser asks for the password once and remembers itself; the remembered browser signs in by
    face alone; once revoked it asks again."""
    from playwright.sync_api import expect

    portal = liveness_portal
    _set_password(portal, student)
    page = _open(launch_browser, portal, "student")
    page.goto(f"{portal.url}/login/face/")
    expect(page.locator("#password-after-face")).to_be_visible()
    page.wait_for_url(re.compile(r".*/login/face/confirm/.*"), timeout=40_000)
    expect(page.locator("#face-confirm")).to_contain_text(student.number[:4] + "••")
    page.fill("#id_password", PASSWORD)
    assert page.is_checked("#id_remember_browser")
    page.click("#face-confirm-submit")
    page.wait_for_url(f"{portal.url}/")
    expect(page.locator("#remembered-browsers")).to_contain_text("this browser")
    method = portal.query("SELECT method FROM facelogin_signin ORDER BY id DESC LIMIT 1")[0]["method"]
    assert method == "face_password"
    state = tmp_path / "remembered.json"
    page.click("#sign-out")
    page.context.storage_state(path=str(state))

    # The same browser (its cookies), another day: the face alone.
    again = _open(launch_browser, portal, "student", storage_state=str(state))
    again.goto(f"{portal.url}/login/face/")
    expect(again.locator("#password-after-face")).to_have_count(0)
    again.wait_for_url(f"{portal.url}/", timeout=40_000)
    assert portal.query("SELECT method FROM facelogin_signin ORDER BY id DESC LIMIT 1")[0]["method"] == "face"

    # Revoked on the portal home: the next face sign-in asks for the password again.
    again.click("#remembered-browsers button")
    expect(again.locator(".messages")).to_contain_text("switched off")
    again.click("#sign-out")
    again.goto(f"{portal.url}/login/face/")
    again.wait_for_url(re.compile(r".*/login/face/confirm/.*"), timeout=40_000)
