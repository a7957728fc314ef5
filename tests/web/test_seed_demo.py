from __future__ import annotations

from io import StringIO

from django.contrib.auth import get_user_model
from django.core.management import call_command

from facelogin.models import Student


def test_seed_demo_creates_an_administrator_and_students_with_the_given_passwords(db, client, monkeypatch):
    monkeypatch.setenv("FACELOGIN_ADMIN_PASSWORD", "admin-pass-123")
    monkeypatch.setenv("FACELOGIN_DEMO_PASSWORD", "student-pass-123")
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert get_user_model().objects.get(username="admin").is_superuser
    assert Student.objects.count() >= 5
    assert client.login(username="20260001", password="student-pass-123")
    assert "admin-pass-123" in out.getvalue()


def test_seed_demo_generates_and_prints_a_password_once_and_is_safe_to_repeat(db, monkeypatch):
    monkeypatch.delenv("FACELOGIN_ADMIN_PASSWORD", raising=False)
    first, second = StringIO(), StringIO()
    call_command("seed_demo", stdout=first)
    call_command("seed_demo", stdout=second)
    assert "admin / " in first.getvalue()
    assert "already exists" in second.getvalue()
    assert get_user_model().objects.filter(username="admin").count() == 1
