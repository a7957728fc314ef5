"""Password sign-in (portal and admin) is throttled per account and per address, before the hasher runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
from django.contrib.auth.models import User

from facelogin.models import SignIn

PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def _small_limits(settings):
    settings.PASSWORD_LOCKOUT = {**getattr(settings, "PASSWORD_LOCKOUT", {}), "ACCOUNT_FAILURES": 3, "ADDRESS_FAILURES": 6, "COOLOFF_SECONDS": 600}


@pytest.fixture
def hasher_calls(monkeypatch) -> list[str]:
    """Every run of the password hasher (checking a password, or hashing one for an unknown user)."""
    calls: list[str] = []
    verify, encode = MD5PasswordHasher.verify, MD5PasswordHasher.encode
    monkeypatch.setattr(MD5PasswordHasher, "verify", lambda self, *a: calls.append("verify") or verify(self, *a))
    monkeypatch.setattr(MD5PasswordHasher, "encode", lambda self, *a, **k: calls.append("encode") or encode(self, *a, **k))
    return calls


def _fail(client, username: str, times: int, path: str = "/login/") -> None:
    for _ in range(times):
        response = client.post(path, {"username": username, "password": "wrong-password"})
        assert response.status_code in (200, 429)  # the form again with its error; at the limit, the lock-out


def test_wrong_passwords_lock_the_account_and_the_right_one_is_then_refused(client, make_student, hasher_calls):
    make_student("20260001")
    _fail(client, "20260001", 3)
    hasher_calls.clear()
    response = client.post("/login/", {"username": "20260001", "password": PASSWORD})
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session and not SignIn.objects.exists()
    assert hasher_calls == []  # refused before the hasher ran
    retry_after = int(response["Retry-After"])
    assert 0 < retry_after <= 600
    body = response.content.decode()
    assert "temporarily locked" in body and "password-lockout" in body
    assert 'href="/login/face/' in body  # face sign-in stays one click away


def test_the_lockout_is_told_in_korean(client, make_student):
    make_student("20260001")
    _fail(client, "20260001", 3)
    response = client.post("/login/", {"username": "20260001", "password": PASSWORD}, HTTP_ACCEPT_LANGUAGE="ko")
    assert response.status_code == 429
    assert "일시적으로 잠겨" in response.content.decode()


def test_one_address_trying_many_accounts_is_locked_out_of_all_of_them(client, make_student):
    make_student("20260009")
    for number in range(6):  # two failures each: no account reaches its own limit
        _fail(client, f"2026010{number}", 1)
    response = client.post("/login/", {"username": "20260009", "password": PASSWORD})
    assert response.status_code == 429 and "_auth_user_id" not in client.session
    other = client.__class__(REMOTE_ADDR="10.9.8.7")
    assert other.post("/login/", {"username": "20260009", "password": PASSWORD}).status_code == 302  # another address


def test_an_account_locked_from_one_address_is_locked_from_every_address(client, make_student):
    make_student("20260001")
    for index in range(3):
        _fail(client.__class__(REMOTE_ADDR=f"10.0.0.{index}"), "20260001", 1)
    response = client.post("/login/", {"username": "20260001", "password": PASSWORD})
    assert response.status_code == 429


def test_the_admin_sign_in_is_locked_too(client, db):
    User.objects.create_superuser("registrar", "r@example.ac.kr", "registrar-pass-123")
    _fail(client, "registrar", 3, path="/admin/login/")
    response = client.post("/admin/login/", {"username": "registrar", "password": "registrar-pass-123"})
    assert response.status_code == 429
    assert client.get("/admin/").status_code == 302  # still signed out


def test_failures_are_recorded_and_shown_to_staff(client, admin_client, make_student):
    make_student("20260001")
    _fail(client, "20260001", 2)
    body = admin_client.get("/admin/axes/accessattempt/").content.decode()
    assert "20260001" in body and "127.0.0.1" in body
    assert "wrong-password" not in admin_client.get("/admin/axes/accessfailurelog/").content.decode()


def test_after_the_cool_down_the_right_password_works_again(client, make_student):
    from axes.models import AccessAttempt

    make_student("20260001")
    _fail(client, "20260001", 3)
    AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.get().attempt_time - timedelta(seconds=601))
    response = client.post("/login/", {"username": "20260001", "password": PASSWORD})
    assert response.status_code == 302 and client.session["_auth_user_id"]


def test_a_mistyped_password_then_the_right_one_signs_in(client, make_student):
    make_student("20260001")
    _fail(client, "20260001", 2)
    assert client.post("/login/", {"username": "20260001", "password": PASSWORD}).status_code == 302


def test_purge_audit_drops_old_failure_records(client, make_student):
    from axes.models import AccessFailureLog
    from django.core.management import call_command

    make_student("20260001")
    _fail(client, "20260001", 2)
    AccessFailureLog.objects.filter(pk=AccessFailureLog.objects.first().pk).update(attempt_time=AccessFailureLog.objects.first().attempt_time - timedelta(days=400))
    call_command("purge_audit", days=365, stdout=__import__("io").StringIO())
    assert AccessFailureLog.objects.count() == 1
