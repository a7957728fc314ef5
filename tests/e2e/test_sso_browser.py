"""Single sign-on end to end: a real campus app (tests/sso_rp: Flask + Authlib, its own process) signs
students in through the live portal, in headless Chromium with a fake camera fed a real face.

The app discovers the portal, sends PKCE and a nonce, and Authlib verifies the ID token against the
portal's JWKS; the page then shows the student number, amr and acr the verified token carried. The
live portal runs without the liveness challenge, so an honest face sign-in is ``urn:facelogin:acr:face``.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.live import REPO, free_port, manage, python_executable, wait_until

pytestmark = pytest.mark.browser

PASSWORD = "sso-test-password-2026"
ACR_FACE = "urn:facelogin:acr:face"
ACR_MFA = "urn:facelogin:acr:mfa"


@dataclass
class CampusApp:
    url: str
    client_id: str
    process: subprocess.Popen
    log_path: Path

    def logout_tokens(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.url}/backchannel-log", timeout=5) as response:  # noqa: S310 - local test app
            return json.loads(response.read())


@pytest.fixture(scope="module")
def campus_app(live_portal, tmp_path_factory) -> Iterator[CampusApp]:
    """The campus app registered on the live portal (as staff would) and started on a free port."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    registered = manage(
        live_portal.env,
        "sso_register_app",
        "Learning platform",
        "--redirect-uri", f"{url}/callback",
        "--post-logout-redirect-uri", f"{url}/",
        "--backchannel-logout-uri", f"{url}/backchannel-logout",
    ).stdout
    values = dict(line.split("=", 1) for line in registered.split())
    # A password for the student of the password test (import_faces creates face-only accounts).
    number = live_portal.students[2].number
    manage(
        live_portal.env,
        "shell",
        "-c",
        f"from django.contrib.auth import get_user_model; u = get_user_model().objects.get(username={number!r}); "
        f"u.set_password({PASSWORD!r}); u.save()",
    )
    log_path = tmp_path_factory.mktemp("campus-app") / "rp.log"
    env = {
        "PATH": "/usr/bin:/bin",
        "RP_ISSUER": live_portal.url,
        "RP_CLIENT_ID": values["client_id"],
        "RP_CLIENT_SECRET": values["client_secret"],
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [python_executable(), "-m", "tests.sso_rp.app", "--port", str(port)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_until(lambda: _answers(f"{url}/healthz"), timeout=30, message=f"the campus app did not start; see {log_path}")
        yield CampusApp(url, values["client_id"], process, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - local test app
            return response.status == 200
    except OSError:
        return False


def test_a_student_signs_in_to_a_campus_app_with_their_face(live_portal, campus_app, launch_browser, fake_camera):
    from playwright.sync_api import expect

    student = live_portal.students[1]
    page = launch_browser(fake_camera(student.photos[9]))
    page.goto(f"{campus_app.url}/")
    page.click("#rp-login")
    page.wait_for_url(re.compile(re.escape(live_portal.url) + r"/login/\?next="))  # the portal's sign-in page
    page.click("#face-login-link")
    # The camera page recognises the face, redeems its ticket, and returns to the authorization request.
    expect(page.locator("#sso-consent")).to_be_visible(timeout=40_000)
    expect(page.locator("#sso-claims li")).to_have_count(3)  # openid, profile, campus
    page.click("#sso-allow")
    page.wait_for_url(f"{campus_app.url}/")
    expect(page.locator("#rp-student-number")).to_have_text(student.number)
    expect(page.locator("#rp-amr")).to_have_text("face")
    expect(page.locator("#rp-acr")).to_have_text(ACR_FACE)


def test_a_password_sign_in_is_pwd_and_a_face_level_request_steps_up(live_portal, campus_app, launch_browser, fake_camera):
    from playwright.sync_api import expect

    student = live_portal.students[2]
    page = launch_browser(fake_camera(student.photos[9]))
    page.goto(f"{campus_app.url}/login")
    page.fill("#id_username", student.number)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]:has-text('Sign in with password')")
    expect(page.locator("#sso-consent")).to_be_visible()
    page.click("#sso-allow")
    page.wait_for_url(f"{campus_app.url}/")
    expect(page.locator("#rp-student-number")).to_have_text(student.number)
    expect(page.locator("#rp-amr")).to_have_text("pwd")

    # The app now asks for the face level: the portal does not hand out the password sign-in again.
    page.goto(f"{campus_app.url}/login?acr_values={ACR_FACE}")
    page.wait_for_url(re.compile(re.escape(live_portal.url) + r"/login/face/\?"))
    expect(page.locator("#step-up-note")).to_be_visible()
    # Recognised, back through the authorization endpoint; consent is remembered.
    page.wait_for_url(f"{campus_app.url}/", timeout=40_000)
    expect(page.locator("#rp-amr")).to_have_text("face pwd mfa")
    expect(page.locator("#rp-acr")).to_have_text(ACR_MFA)

    # Signing out of the portal signs the student out of the campus app (back-channel logout).
    page.goto(f"{live_portal.url}/")
    page.click("#sign-out")
    wait_until(lambda: campus_app.logout_tokens(), timeout=15, message="no logout token reached the campus app")
    page.goto(f"{campus_app.url}/")
    expect(page.locator("#rp-signed-out")).to_be_visible()
