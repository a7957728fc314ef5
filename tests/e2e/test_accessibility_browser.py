"""Accessibility kept proven: axe-core (tests/e2e/axe.py) in headless Chromium finds no serious or
critical violation on the pages a student or a registrar uses, in English and in Korean.

Pages come from the real server: the session's ``live_portal`` (liveness off, as its other tests need),
and, for the camera page's states, a second daphne over the same database with liveness on, a
6-frame budget and one attempt per browser session, so that a stranger's face shows the challenge,
then fails, and "Try again" is throttled. That daphne keeps its own throttle counters (the embedded
cache is per process), so these attempts never count against the other browser tests.

Selectors are the camera page's stable ids (#face-login, #face-status, #face-challenge, #face-retry,
#face-progress): the challenge's look may change, the checks stay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from tests.conftest import FACES
from tests.e2e.axe import assert_accessible, axe_violations
from tests.live import DaphneProcess, manage

pytestmark = pytest.mark.browser

LANGUAGES = ("en", "ko")
ADMIN_USER, ADMIN_PASSWORD = "a11y-registrar", "a11y-registrar-pass-2026"
STUDENT_NUMBER, STUDENT_PASSWORD = "2026X001", "a11y-student-pass-2026"
STRANGER = FACES / "johns" / "John_Simm"  # never enrolled by the live portal
ACCOUNTS = (
    "from django.contrib.auth import get_user_model\n"
    "from facelogin.services.students import student_create\n"
    f"get_user_model().objects.create_superuser({ADMIN_USER!r}, 'a11y@example.org', {ADMIN_PASSWORD!r})\n"
    f"student_create(student_number={STUDENT_NUMBER!r}, full_name='Screen Reader', department='Law', password={STUDENT_PASSWORD!r})\n"
)
# The camera page before the camera: getUserMedia never answers (a browser still asking for permission).
CAMERA_PENDING = "navigator.mediaDevices && (navigator.mediaDevices.getUserMedia = () => new Promise(() => {}));"


@dataclass
class A11yPortal:
    url: str  # the live portal (liveness off)
    camera_url: str  # the second daphne (liveness on, strict limits)
    enrolled_student_id: int
    active_version_id: int


@pytest.fixture(scope="module")
def a11y_portal(live_portal, tmp_path_factory):
    manage(live_portal.env, "shell", "-c", ACCOUNTS)
    student_id = live_portal.query("SELECT id FROM facelogin_student WHERE student_number = ?", (live_portal.students[0].number,))[0]["id"]
    version_id = live_portal.query("SELECT id FROM facelogin_classifierversion WHERE is_active = 1")[0]["id"]
    env = {
        **live_portal.env,
        "FACELOGIN_LIVENESS": "1",
        "FACELOGIN_MAX_FRAMES": "6",
        "FACELOGIN_THROTTLE_SESSION_ATTEMPTS": "1",
    }
    with DaphneProcess(env, log_path=tmp_path_factory.mktemp("a11y") / "daphne.log") as camera_daphne:
        camera_daphne.wait_for_log("face engine ready", timeout=120)
        yield A11yPortal(live_portal.url, camera_daphne.url, student_id, version_id)


def open_page(launch_browser, base_url: str, language: str, video=None, *, camera_pending: bool = False):
    page = launch_browser(video, fake_ui=True) if video else launch_browser(None, fake_ui=False, permissions=[])
    page.context.add_cookies([{"name": "django_language", "value": language, "url": base_url}])
    if camera_pending:
        page.context.add_init_script(CAMERA_PENDING)
    return page


def goto(page, url: str, language: str) -> None:
    page.goto(url)
    assert page.locator("html").get_attribute("lang") == language, f"{url} is not in {language}"


def sign_in_with_password(page, base_url: str, username: str, password: str, *, admin: bool = False) -> None:
    page.goto(f"{base_url}/admin/login/" if admin else f"{base_url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.locator("input[type=submit]" if admin else "form button[type=submit]").last.click()
    page.wait_for_load_state()


# --- the check itself can fail ------------------------------------------------------------------------
BROKEN = """<!doctype html><html lang="en"><head><title>Broken on purpose</title></head><body><main>
<h1>Broken on purpose</h1>
<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">
<input type="text" id="nameless">
<button type="button"></button>
<p style="color:#bbb;background:#fff">Grey on white, too faint to read.</p>
</main></body></html>"""


def test_axe_reports_serious_and_critical_violations_on_a_broken_page(playwright_instance):
    from tests.e2e.fakecam import chromium_launch_kwargs

    browser = playwright_instance.chromium.launch(**chromium_launch_kwargs(None, fake_ui=False, fake_device=False))
    try:
        page = browser.new_page()
        page.set_content(BROKEN)
        found = {v["id"]: v["impact"] for v in axe_violations(page)}
        assert found == {"image-alt": "critical", "label": "critical", "button-name": "critical", "color-contrast": "serious"}, found
        with pytest.raises(AssertionError, match=r"image-alt \(critical\)"):
            assert_accessible(page, "the broken page")
    finally:
        browser.close()


def test_axe_fails_the_real_sign_in_page_when_a_label_is_removed(a11y_portal, launch_browser):
    page = open_page(launch_browser, a11y_portal.url, "en")
    goto(page, f"{a11y_portal.url}/login/", "en")
    assert_accessible(page, "/login/")
    page.evaluate("document.querySelector('label[for=id_password]').remove()")
    with pytest.raises(AssertionError, match=r"label \(critical\)"):
        assert_accessible(page, "/login/ without its password label")


# --- what a student sees -------------------------------------------------------------------------------
@pytest.mark.parametrize("language", LANGUAGES)
def test_sign_in_pages_before_the_camera(a11y_portal, launch_browser, language):
    page = open_page(launch_browser, a11y_portal.url, language, camera_pending=True)
    goto(page, f"{a11y_portal.url}/login/", language)
    assert_accessible(page, "/login/")
    # A wrong password: the page with its error message.
    page.fill("#id_username", "nobody-by-this-name")  # no real account collects a failure
    page.fill("#id_password", "not-the-password")
    page.locator("form button[type=submit]").last.click()
    page.locator(".form-error").wait_for()
    assert_accessible(page, "/login/ after a wrong password")
    goto(page, f"{a11y_portal.url}/login/face/", language)
    page.locator("#face-login").wait_for()
    assert page.locator("#face-status").get_attribute("role") == "status"
    assert_accessible(page, "/login/face/ before the camera answers")


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_camera_refused(a11y_portal, launch_browser, language):
    from playwright.sync_api import expect

    page = open_page(launch_browser, a11y_portal.url, language)  # no camera permission
    goto(page, f"{a11y_portal.url}/login/face/", language)
    expect(page.locator("#face-retry")).to_be_visible()
    assert_accessible(page, "/login/face/ with the camera refused")


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_camera_page_with_the_challenge_then_failed_then_throttled(a11y_portal, launch_browser, fake_camera, language):
    from playwright.sync_api import expect

    photo = sorted(STRANGER.glob("*.jpg"))[0]
    page = open_page(launch_browser, a11y_portal.camera_url, language, fake_camera(photo))
    goto(page, f"{a11y_portal.camera_url}/login/face/", language)

    # With the camera: the live preview, the challenge in words (shown once the server answered the
    # camera's connection), the progress bar.
    expect(page.locator("#face-challenge")).to_be_visible(timeout=30_000)
    assert_accessible(page, "/login/face/ with the camera and the challenge")

    # Failed: a stranger is not recognised within the 6 frames.
    retry = page.locator("#face-retry")
    expect(retry).to_be_visible(timeout=30_000)
    expect(page.locator("#face-challenge")).to_be_hidden()
    assert_accessible(page, "/login/face/ after a failed attempt")

    # Throttled: this browser session had its one attempt.
    status_before = page.locator("#face-status").inner_text()
    retry.click()
    expect(page.locator("#face-status")).not_to_have_text(status_before, timeout=15_000)
    expect(retry).to_be_visible(timeout=15_000)
    throttled = page.locator("#face-status").inner_text()
    assert re.search(r"attempts|시도", throttled), throttled
    assert_accessible(page, "/login/face/ throttled")


@pytest.mark.parametrize("language", LANGUAGES)
def test_home_and_consent_pages_signed_in(a11y_portal, launch_browser, language):
    page = open_page(launch_browser, a11y_portal.url, language)
    page.context.add_cookies([{"name": "django_language", "value": language, "url": a11y_portal.url}])
    sign_in_with_password(page, a11y_portal.url, STUDENT_NUMBER, STUDENT_PASSWORD)
    goto(page, f"{a11y_portal.url}/", language)
    page.locator("#recent-sign-ins").wait_for()
    assert_accessible(page, "/ (home)")
    goto(page, f"{a11y_portal.url}/consent/", language)
    page.locator("#consent-status").wait_for()
    assert_accessible(page, "/consent/")


# --- what registrar staff see ----------------------------------------------------------------------------
@pytest.mark.parametrize("language", LANGUAGES)
def test_admin_student_page_dashboard_and_classifier_version(a11y_portal, launch_browser, language):
    page = open_page(launch_browser, a11y_portal.url, language)
    sign_in_with_password(page, a11y_portal.url, ADMIN_USER, ADMIN_PASSWORD, admin=True)
    goto(page, f"{a11y_portal.url}/admin/facelogin/student/{a11y_portal.enrolled_student_id}/change/", language)
    page.locator("#face-capture-title").wait_for()
    assert page.locator("img.enrolment-thumbnail, td img").count() > 0  # the photo rows with their faces
    assert_accessible(page, "the admin's student page")

    goto(page, f"{a11y_portal.url}/admin/facelogin/signindashboard/", language)
    page.locator("#panel-readiness").wait_for()
    page.wait_for_function("[...document.querySelectorAll('.figure-chart img')].every(i => i.complete && i.naturalWidth > 0)")
    assert_accessible(page, "the face sign-in dashboard")
    # A bad range: the page explains it (an alert) and stays accessible.
    goto(page, f"{a11y_portal.url}/admin/facelogin/signindashboard/?start=2026-03-07&end=2026-03-01", language)
    page.locator("#dashboard-range-error").wait_for()
    assert_accessible(page, "the dashboard with a bad range")

    goto(page, f"{a11y_portal.url}/admin/facelogin/classifierversion/{a11y_portal.active_version_id}/change/", language)
    page.locator("#panel-scores").wait_for()
    assert_accessible(page, "a classifier version's page")
