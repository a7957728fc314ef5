"""Single sign-on for campus apps at the HTTP level: the authorization code flow with PKCE, ID tokens
with amr/acr, step-up, refusals, consent, revocation and logout, through Django's test client."""

from __future__ import annotations

import json

import pytest

from tests.web.sso_helpers import Flow, REDIRECT_URI, callback_params, exchange, follow_to_callback, register_app, verified_claims

PASSWORD = "correct-horse-battery"


@pytest.fixture
def student(make_student):
    return make_student("20260001", full_name="Kim Minji", department="Physics", email="minji@example.ac.kr")


@pytest.fixture
def lms(db):
    return register_app()


def sign_in_with_password(client, student) -> None:
    response = client.post("/login/", {"username": student.student_number, "password": PASSWORD})
    assert response.status_code == 302, response.content[:300]


def test_a_password_sign_in_gives_the_app_a_verified_id_token_with_amr_pwd(client, student, lms):
    sign_in_with_password(client, student)
    flow = Flow(lms)
    callback = follow_to_callback(client, flow.authorize_url())
    assert callback["state"] == flow.state and callback["iss"] == "http://testserver"
    response = exchange(client, flow, callback["code"])
    assert response.status_code == 200, response.content
    tokens = response.json()
    claims = verified_claims(client, tokens["id_token"], flow)
    assert claims["amr"] == ["pwd"] and claims["acr"] == "urn:facelogin:acr:pwd"
    assert claims["student_number"] == "20260001" and claims["name"] == "Kim Minji"
    assert claims["sub"] not in {str(student.user.pk), student.student_number}
    userinfo = client.get("/o/userinfo/", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert userinfo.status_code == 200, userinfo.content
    assert userinfo.json()["sub"] == claims["sub"]
