"""Content-Security-Policy and Permissions-Policy on every page, and pages that keep working under them
(no inline script or style for the policy to block; the browser tests in tests/e2e run under it)."""

from __future__ import annotations

import re

import pytest

from facelogin.services.training import classifier_train  # noqa: F401 - the admin pages import it too

pytestmark = pytest.mark.django_db


def _policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in (p.strip() for p in header.split(";")) if part}


def _inline_code(html: str) -> list[str]:
    scripts = [m.group(0) for m in re.finditer(r"<script\b[^>]*>", html) if "src=" not in m.group(0) and "application/json" not in m.group(0)]
    return scripts + re.findall(r"<style\b", html) + re.findall(r"\sstyle=\"", html) + re.findall(r"\son[a-z]+=\"", html)


@pytest.fixture
def student_client(client, make_student):
    make_student("20260001")
    client.post("/login/", {"username": "20260001", "password": "correct-horse-battery"})
    return client


PORTAL_PAGES = ["/login/", "/login/face/", "/healthz/"]


@pytest.mark.parametrize("path", PORTAL_PAGES)
def test_pages_carry_a_strict_content_security_policy_and_grant_only_the_camera(client, path):
    response = client.get(path)
    policy = _policy(response)
    assert policy["default-src"] == ["'self'"] and policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    assert "'unsafe-inline'" not in response["Content-Security-Policy"] and "'unsafe-eval'" not in response["Content-Security-Policy"]
    features = dict(item.strip().split("=", 1) for item in response["Permissions-Policy"].split(","))
    assert features.pop("camera") == "(self)"
    assert features and all(value == "()" for value in features.values())  # everything else named is denied
    assert features["microphone"] == features["geolocation"] == "()"


def test_the_students_pages_have_no_inline_code(student_client):
    for path in ["/", "/consent/", "/login/face/"]:
        response = student_client.get(path, follow=True)
        assert response.status_code == 200 and _inline_code(response.content.decode()) == [], path
    assert _inline_code(student_client.get("/login/").content.decode()) == []


def test_the_admin_pages_have_no_inline_code(admin_client, make_student):
    student = make_student("20260002")
    for path in [
        "/admin/",
        "/admin/facelogin/student/",
        f"/admin/facelogin/student/{student.pk}/change/",
        "/admin/facelogin/student/add/",
        "/admin/facelogin/classifierversion/",
        "/admin/facelogin/faceattempt/",
        "/admin/axes/accessattempt/",
    ]:
        response = admin_client.get(path)
        assert response.status_code == 200, path
        assert _inline_code(response.content.decode()) == [], path
        assert "'unsafe-inline'" not in response["Content-Security-Policy"]


def test_forms_may_lead_to_a_registered_campus_app_and_nowhere_else(client):
    """CSP's form-action governs where a form's submission is redirected: signing in for a campus app
    (POST /login/ → /o/authorize/ → the app's callback) was blocked in the browser with form-action 'self'
    alone. The registered apps' origins are added; an app's new address shows at once."""
    from tests.web.sso_helpers import register_app

    assert _policy(client.get("/login/"))["form-action"] == ["'self'"]
    application = register_app(redirect_uri="https://lms.example.ac.kr/auth/oidc/ http://127.0.0.1:8100/callback")
    for path in ("/login/", "/login/face/"):
        assert _policy(client.get(path))["form-action"] == ["'self'", "http://127.0.0.1:8100", "https://lms.example.ac.kr"]
    application.redirect_uris = "https://library.example.ac.kr/sso"
    application.save()
    assert _policy(client.get("/login/"))["form-action"] == ["'self'", "https://library.example.ac.kr"]
