"""Device binding (FACELOGIN_DEVICE_POLICY=known): a face signs a student in alone only on a browser they
remembered after their password, or at a kiosk staff registered; elsewhere the password completes it once."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from facelogin.models import BiometricAction, Kiosk, RememberedBrowser, SignIn
from facelogin.services import auth_context
from facelogin.services.devices import BROWSER_COOKIE, KIOSK_COOKIE
from facelogin.services.tickets import ticket_issue

PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def _known_browsers_only(settings):
    settings.FACELOGIN = {**settings.FACELOGIN, "DEVICE_POLICY": "known"}


@pytest.fixture
def student(make_student):
    return make_student("20260042", full_name="Kim Minji")


def face_recognised(client: Client, student, *, liveness: bool = True):
    """What the websocket hands the page after recognising ``student``: the ticket, posted at once."""
    client.get("/login/face/")
    ticket = ticket_issue(student=student, session_key=client.session.session_key, scores={"similarity": 0.9, "liveness": liveness})
    return client.post("/login/face/complete/", {"ticket": ticket.token, "next": "/consent/"})


def signed_in_as(client: Client):
    return client.session.get("_auth_user_id")


def test_on_a_new_browser_the_face_alone_does_not_sign_in(client, student):
    response = face_recognised(client, student)
    assert response.status_code == 302 and response["Location"] == "/login/face/confirm/?next=%2Fconsent%2F"
    assert signed_in_as(client) is None and not SignIn.objects.exists()
    page = client.get(response["Location"])
    html = page.content.decode()
    assert page.status_code == 200 and "2026••42" in html and "20260042" not in html and "Kim Minji" not in html


def test_the_password_completes_it_as_face_and_password_and_remembers_the_browser(client, student):
    face_recognised(client, student)
    response = client.post("/login/face/confirm/", {"password": PASSWORD, "remember_browser": "1", "next": "/consent/"})
    assert response.status_code == 302 and response["Location"] == "/consent/"
    assert signed_in_as(client) == str(student.user.pk)
    assert SignIn.objects.get().method == SignIn.Method.FACE_PASSWORD
    context = auth_context.auth_context_of(client.session)
    assert context.amr == ("face", "pwd", "mfa") and context.acr == auth_context.ACR_MFA
    browser = RememberedBrowser.objects.get(student=student)
    assert response.cookies[BROWSER_COOKIE]["httponly"] and response.cookies[BROWSER_COOKIE]["samesite"] == "Lax"
    assert int(response.cookies[BROWSER_COOKIE]["max-age"]) == 180 * 86400
    assert browser.token_hash != response.cookies[BROWSER_COOKIE].value  # only the hash is kept
    assert BiometricAction.objects.filter(action="browser_added", student=student).exists()

    # Next time on this browser the face alone signs in.
    client.post("/logout/")
    response = face_recognised(client, student)
    assert response["Location"] == "/consent/" and signed_in_as(client) == str(student.user.pk)
    assert SignIn.objects.first().method == SignIn.Method.FACE
    assert auth_context.auth_context_of(client.session).amr == ("face",)
    assert RememberedBrowser.objects.get(pk=browser.pk).last_used_at is not None


def test_without_ticking_remember_the_next_face_sign_in_asks_again(client, student):
    face_recognised(client, student)
    client.post("/login/face/confirm/", {"password": PASSWORD})
    assert signed_in_as(client) == str(student.user.pk) and not RememberedBrowser.objects.exists()
    client.post("/logout/")
    assert face_recognised(client, student)["Location"].startswith("/login/face/confirm/")


def test_a_wrong_password_signs_nobody_in(client, student):
    face_recognised(client, student)
    response = client.post("/login/face/confirm/", {"password": "wrong-password", "remember_browser": "1"})
    assert response.status_code == 400 and "not right" in response.content.decode()
    assert signed_in_as(client) is None and not RememberedBrowser.objects.exists()


def test_the_password_step_expires(client, student, settings, monkeypatch):
    face_recognised(client, student)
    later = time.time() + settings.FACELOGIN["FACE_CONFIRM_SECONDS"] + 1
    monkeypatch.setattr(time, "time", lambda: later)
    response = client.post("/login/face/confirm/", {"password": PASSWORD})
    assert response.status_code == 302 and response["Location"].startswith("/login/face/")
    assert signed_in_as(client) is None


def test_the_password_step_needs_a_recognised_face_first(client, student):
    client.get("/login/face/")
    response = client.post("/login/face/confirm/", {"password": PASSWORD})
    assert response.status_code == 302 and signed_in_as(client) is None


def test_a_browser_remembered_by_one_student_does_not_let_another_face_in(client, student, make_student):
    other = make_student("20260043")
    face_recognised(client, student)
    client.post("/login/face/confirm/", {"password": PASSWORD, "remember_browser": "1"})
    client.post("/logout/")
    assert face_recognised(client, other)["Location"].startswith("/login/face/confirm/")


def test_a_revoked_browser_asks_for_the_password_again(client, student):
    face_recognised(client, student)
    client.post("/login/face/confirm/", {"password": PASSWORD, "remember_browser": "1"})
    browser = RememberedBrowser.objects.get()
    home = client.get("/").content.decode()
    assert "remembered-browsers" in home and "this browser" in home
    client.post(f"/browsers/{browser.pk}/revoke/")
    assert RememberedBrowser.objects.get().revoked_at is not None
    assert BiometricAction.objects.filter(action="browser_revoked").exists()
    client.post("/logout/")
    assert face_recognised(client, student)["Location"].startswith("/login/face/confirm/")


def test_a_student_cannot_revoke_someone_else_s_browser(client, student, make_student):
    other = make_student("20260043")
    theirs = RememberedBrowser.objects.create(student=other, token_hash="0" * 64, label="Chrome / Windows")
    client.post("/login/", {"username": "20260042", "password": PASSWORD})
    client.post(f"/browsers/{theirs.pk}/revoke/")
    assert RememberedBrowser.objects.get(pk=theirs.pk).revoked_at is None


def test_the_password_page_remembers_the_browser_only_when_asked(student):
    client = Client()
    client.post("/login/", {"username": "20260042", "password": PASSWORD})
    assert not RememberedBrowser.objects.exists()
    client.post("/logout/")
    client.post("/login/", {"username": "20260042", "password": PASSWORD, "remember_browser": "1"})
    assert RememberedBrowser.objects.filter(student=student).count() == 1
    client.post("/logout/")
    assert face_recognised(client, student)["Location"] == "/consent/"  # face alone from now on


def test_a_registered_kiosk_lets_any_student_in_by_face_in_a_short_session(admin_client, student, make_student, settings):
    kiosk = Kiosk.objects.create(name="Library entrance")
    response = admin_client.post(f"/admin/facelogin/kiosk/{kiosk.pk}/register/")
    assert response.status_code == 302 and KIOSK_COOKIE in response.cookies
    kiosk.refresh_from_db()
    assert kiosk.active and kiosk.registered_at is not None
    terminal = Client()
    terminal.cookies[KIOSK_COOKIE] = response.cookies[KIOSK_COOKIE].value
    for person in (student, make_student("20260043")):
        assert face_recognised(terminal, person)["Location"] == "/consent/"
        assert signed_in_as(terminal) == str(person.user.pk)
        assert terminal.session.get_expiry_age() == settings.FACELOGIN["KIOSK_SESSION_SECONDS"]
        terminal.post("/logout/")
    # Revoked by staff: the terminal is an ordinary browser again.
    admin_client.post("/admin/facelogin/kiosk/", {"action": "revoke_kiosks", "_selected_action": [kiosk.pk]})
    assert face_recognised(terminal, student)["Location"].startswith("/login/face/confirm/")


def test_a_kiosk_is_registered_only_by_staff_allowed_to_change_kiosks(client, make_student):
    kiosk = Kiosk.objects.create(name="Library entrance")
    from django.contrib.auth.models import User

    clerk = User.objects.create_user("clerk", password="clerk-pass-123", is_staff=True)
    client.force_login(clerk)
    response = client.post(f"/admin/facelogin/kiosk/{kiosk.pk}/register/")
    assert response.status_code == 403 and KIOSK_COOKIE not in response.cookies


def test_with_policy_any_the_face_alone_signs_in_anywhere(client, student, settings):
    settings.FACELOGIN = {**settings.FACELOGIN, "DEVICE_POLICY": "any"}
    assert face_recognised(client, student)["Location"] == "/consent/"


def test_the_face_page_says_in_advance_when_the_password_will_follow(client, student):
    assert "password-after-face" in client.get("/login/face/").content.decode()
    face_recognised(client, student)
    client.post("/login/face/confirm/", {"password": PASSWORD, "remember_browser": "1"})
    client.post("/logout/")
    assert "password-after-face" not in client.get("/login/face/").content.decode()


def test_staff_see_and_revoke_remembered_browsers_in_the_admin(admin_client, student):
    browser = RememberedBrowser.objects.create(student=student, token_hash="1" * 64, label="Safari / iPhone")
    page = admin_client.get(f"/admin/facelogin/student/{student.pk}/change/").content.decode()
    assert "Safari / iPhone" in page
    admin_client.post("/admin/facelogin/rememberedbrowser/", {"action": "revoke_browsers", "_selected_action": [browser.pk]})
    assert RememberedBrowser.objects.get().revoked_at is not None
