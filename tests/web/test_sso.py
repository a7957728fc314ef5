"""Single sign-on for campus apps at the HTTP level: the authorization code flow with PKCE, ID tokens
with amr/acr, step-up, refusals, consent, revocation and logout, through Django's test client.

The relying party's side (tests/web/sso_helpers.py) is written from the specifications; the browser
test with a real OpenID Connect client library is tests/e2e/test_sso_browser.py."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest

from facelogin.models import EnrolmentPhoto, SsoAuthorization, SsoConsent, SsoEvent
from facelogin.services.tickets import ticket_issue
from tests.web.sso_helpers import (
    REDIRECT_URI,
    SECRET,
    Flow,
    basic_auth,
    callback_params,
    exchange,
    follow_to_callback,
    refresh,
    register_app,
    verified_claims,
)

PASSWORD = "correct-horse-battery"
ACR_PWD = "urn:facelogin:acr:pwd"
ACR_FACE = "urn:facelogin:acr:face"
ACR_FACE_LIVENESS = "urn:facelogin:acr:face-liveness"
ACR_MFA = "urn:facelogin:acr:mfa"


@pytest.fixture
def student(make_student):
    from facelogin.services.recognition import model_name

    student = make_student("20260001", full_name="Kim Minji", department="Physics", email="minji@example.ac.kr")
    EnrolmentPhoto.objects.bulk_create(  # enrolled for face sign-in (the photos themselves play no part here)
        [
            EnrolmentPhoto(student=student, state=EnrolmentPhoto.State.ACCEPTED, content_sha256=f"{i:064d}", model_name=model_name())
            for i in range(3)
        ]
    )
    return student


@pytest.fixture
def lms(db):
    return register_app()


@pytest.fixture(autouse=True)
def _fresh_throttle_counters():
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


def sign_in_with_password(client, student, next_url: str | None = None, *, step_up: bool = False):
    data = {"username": student.student_number, "password": PASSWORD}
    if next_url:
        data["next"] = next_url
    if step_up:
        data["step_up"] = "1"
    response = client.post("/login/", data)
    assert response.status_code == 302, response.content[:300]
    return response


def sign_in_with_face(client, student, *, liveness: bool = False, next_url: str = "", step_up: bool = False):
    """What the face page does once the websocket recognised the student: redeem the ticket."""
    page = client.get("/login/face/?step_up=1" if step_up else "/login/face/")
    assert page.status_code == 200
    ticket = ticket_issue(student=student, session_key=client.session.session_key, scores={"similarity": 0.9, "liveness": liveness})
    data = {"ticket": ticket.token, "next": next_url}
    if step_up:
        data["step_up"] = "1"
    response = client.post("/login/face/complete/", data)
    assert response.status_code == 302
    return response


def tokens_for(client, flow: Flow, **authorize) -> dict:
    callback = follow_to_callback(client, flow.authorize_url(**authorize))
    assert "code" in callback, callback
    response = exchange(client, flow, callback["code"])
    assert response.status_code == 200, response.content
    return response.json()


def userinfo_status(client, access_token: str) -> int:
    return client.get("/o/userinfo/", HTTP_AUTHORIZATION=f"Bearer {access_token}").status_code


# --- who signs in, and how --------------------------------------------------------------------------


def test_a_password_sign_in_gives_the_app_a_verified_id_token_with_amr_pwd(client, student, lms):
    sign_in_with_password(client, student)
    flow = Flow(lms)
    callback = follow_to_callback(client, flow.authorize_url())
    assert callback["state"] == flow.state and callback["iss"] == "http://testserver"
    response = exchange(client, flow, callback["code"])
    assert response.status_code == 200, response.content
    assert "no-store" in response["Cache-Control"]
    tokens = response.json()
    claims = verified_claims(client, tokens["id_token"], flow)
    assert claims["amr"] == ["pwd"] and claims["acr"] == ACR_PWD
    assert claims["student_number"] == "20260001" and claims["name"] == "Kim Minji"
    assert claims["department"] == "Physics" and claims["student_status"] == "enrolled"
    assert claims["eduperson_affiliation"] == ["student", "member"]
    assert claims["sub"] not in {str(student.user.pk), student.student_number}
    assert "email" not in claims  # the app did not ask for the email scope
    userinfo = client.get("/o/userinfo/", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert userinfo.status_code == 200, userinfo.content
    assert userinfo.json()["sub"] == claims["sub"] and userinfo.json()["student_number"] == "20260001"


def test_a_face_sign_in_is_amr_face_and_says_whether_liveness_was_passed(client, student, lms):
    sign_in_with_face(client, student, liveness=False)
    flow = Flow(lms)
    claims = verified_claims(client, tokens_for(client, flow)["id_token"], flow)
    assert claims["amr"] == ["face"] and claims["acr"] == ACR_FACE  # honest: no challenge, no liveness level
    client.post("/logout/")
    sign_in_with_face(client, student, liveness=True)
    flow = Flow(lms)
    claims = verified_claims(client, tokens_for(client, flow)["id_token"], flow)
    assert claims["amr"] == ["face"] and claims["acr"] == ACR_FACE_LIVENESS


def test_face_and_password_in_one_session_is_mfa(client, student, lms):
    sign_in_with_face(client, student)
    sign_in_with_password(client, student, step_up=True)
    flow = Flow(lms)
    claims = verified_claims(client, tokens_for(client, flow)["id_token"], flow)
    assert claims["amr"] == ["face", "pwd", "mfa"] and claims["acr"] == ACR_MFA


def test_auth_time_is_the_sign_in_and_a_refreshed_id_token_keeps_it(client, student, lms):
    before = int(time.time())
    sign_in_with_password(client, student)
    flow = Flow(lms)
    tokens = tokens_for(client, flow)
    first = verified_claims(client, tokens["id_token"], flow)
    assert before <= first["auth_time"] <= int(time.time())
    response = refresh(client, flow, tokens["refresh_token"])
    assert response.status_code == 200, response.content
    refreshed = response.json()
    assert refreshed["refresh_token"] != tokens["refresh_token"]  # rotated
    again = verified_claims(client, refreshed["id_token"], flow, nonce=False)
    assert (again["auth_time"], again["amr"], again["acr"], again["sid"]) == (first["auth_time"], ["pwd"], ACR_PWD, first["sid"])


def test_the_subject_is_the_same_for_every_app_and_every_sign_in(client, student, lms):
    library = register_app(name="Library", redirect_uri=REDIRECT_URI)
    sign_in_with_password(client, student)
    subjects = set()
    for app in (lms, library, lms):
        flow = Flow(app)
        subjects.add(verified_claims(client, tokens_for(client, flow)["id_token"], flow)["sub"])
    assert len(subjects) == 1


def test_a_staff_member_is_affiliated_as_staff(client, django_user_model, lms):
    from facelogin.services.auth_context import auth_event_record  # noqa: F401 - the password view records it

    django_user_model.objects.create_user("registrar", password=PASSWORD, is_staff=True, first_name="Lee", last_name="Staff")
    response = client.post("/login/", {"username": "registrar", "password": PASSWORD})
    assert response.status_code == 302
    flow = Flow(lms)
    claims = verified_claims(client, tokens_for(client, flow)["id_token"], flow)
    assert claims["eduperson_affiliation"] == ["staff", "member"] and "student_number" not in claims


# --- step-up: a fresher or stronger sign-in than the session holds ---------------------------------


def _location(response) -> tuple[str, dict]:
    assert response.status_code == 302, (response.status_code, response.content[:300])
    parts = urlsplit(response["Location"])
    return parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}


def test_an_app_asking_for_the_face_after_a_password_sign_in_gets_the_face_step_up(client, student, lms):
    sign_in_with_password(client, student)
    flow = Flow(lms)
    path, query = _location(client.get(flow.authorize_url(acr_values=ACR_FACE)))
    assert path == "/login/face/" and query["step_up"] == "1" and query["next"].startswith("/o/authorize/?")
    assert not SsoAuthorization.objects.exists()  # no code for the weaker sign-in
    page = client.get(f"/login/face/?next={query['next']}&step_up=1")
    assert page.status_code == 200 and b'id="step-up-note"' in page.content  # served although signed in
    back = sign_in_with_face(client, student, next_url=query["next"], step_up=True)
    callback = follow_to_callback(client, back["Location"])
    claims = verified_claims(client, exchange(client, flow, callback["code"]).json()["id_token"], flow)
    assert claims["amr"] == ["face", "pwd", "mfa"] and claims["acr"] == ACR_MFA
    assert SsoEvent.objects.filter(kind="step_up", detail__method="face").count() == 1


def test_a_signed_out_student_asked_for_the_face_goes_straight_to_the_face_page(client, lms):
    path, query = _location(client.get(Flow(lms).authorize_url(acr_values=ACR_FACE)))
    assert path == "/login/face/" and query["next"].startswith("/o/authorize/")


def test_an_old_sign_in_is_not_enough_for_max_age(client, student, lms):
    sign_in_with_password(client, student)
    session = client.session
    session["auth_events"] = [dict(e, at=e["at"] - 3600) for e in session["auth_events"]]
    session.save()
    flow = Flow(lms)
    path, query = _location(client.get(flow.authorize_url(max_age="600")))
    assert path == "/login/" and query["step_up"] == "1"
    back = sign_in_with_password(client, student, query["next"], step_up=True)
    callback = follow_to_callback(client, back["Location"])
    claims = verified_claims(client, exchange(client, flow, callback["code"]).json()["id_token"], flow)
    assert time.time() - claims["auth_time"] < 600


def test_prompt_login_asks_again_and_only_the_new_sign_in_counts(client, student, lms):
    sign_in_with_password(client, student)
    flow = Flow(lms)
    path, query = _location(client.get(flow.authorize_url(prompt="login")))
    assert path == "/login/"
    next_query = parse_qs(urlsplit(query["next"]).query)
    assert "prompt" not in next_query and next_query["max_age"] == ["600"]
    # Coming back without signing in again does not pass: the old sign-in is outside the window.
    session = client.session
    session["auth_events"] = [dict(e, at=e["at"] - 3600) for e in session["auth_events"]]
    session.save()
    assert _location(client.get(query["next"]))[0] == "/login/"
    back = sign_in_with_password(client, student, query["next"], step_up=True)
    assert "code" in follow_to_callback(client, back["Location"])


def test_prompt_none_never_shows_a_page(client, student, lms):
    flow = Flow(lms)
    assert callback_params(client.get(flow.authorize_url(prompt="none")))["error"] == "login_required"
    sign_in_with_password(client, student)
    assert callback_params(client.get(flow.authorize_url(prompt="none", acr_values=ACR_FACE)))["error"] == "login_required"
    assert callback_params(client.get(flow.authorize_url(prompt="none")))["error"] == "consent_required"
    follow_to_callback(client, flow.authorize_url())  # consent given once
    assert "code" in callback_params(client.get(Flow(lms).authorize_url(prompt="none")))


def test_face_liveness_cannot_be_promised_by_a_portal_that_runs_without_it(client, student, lms, settings):
    settings.FACELOGIN = {**settings.FACELOGIN, "LIVENESS": False}
    sign_in_with_face(client, student)
    params = callback_params(client.get(Flow(lms).authorize_url(acr_values=ACR_FACE_LIVENESS)))
    assert params["error"] == "unmet_authentication_requirements" and "liveness" in params["error_description"]


def test_a_face_level_for_a_student_without_face_sign_in_is_refused_not_looped(client, make_student, lms):
    plain = make_student("20260002", consent=False)  # no photos: cannot sign in by face
    sign_in_with_password(client, plain)
    params = callback_params(client.get(Flow(lms).authorize_url(acr_values=ACR_FACE)))
    assert params["error"] == "unmet_authentication_requirements"


def test_several_acr_values_are_alternatives_and_the_lowest_is_the_floor(client, student, lms):
    sign_in_with_password(client, student)
    flow = Flow(lms)
    callback = follow_to_callback(client, flow.authorize_url(acr_values=f"{ACR_FACE} {ACR_PWD}"))
    assert verified_claims(client, exchange(client, flow, callback["code"]).json()["id_token"], flow)["acr"] == ACR_PWD


def test_an_essential_acr_in_the_claims_parameter_is_enforced_too(client, student, lms):
    import json

    sign_in_with_password(client, student)
    claims = json.dumps({"id_token": {"acr": {"essential": True, "values": [ACR_FACE]}}})
    assert _location(client.get(Flow(lms).authorize_url(claims=claims)))[0] == "/login/face/"


# --- refusals, each a clear OAuth error --------------------------------------------------------------


def test_an_unknown_acr_is_refused_with_invalid_request_to_the_app(client, student, lms):
    sign_in_with_password(client, student)
    flow = Flow(lms)
    params = callback_params(client.get(flow.authorize_url(acr_values="urn:example:gold")))
    assert params["error"] == "invalid_request" and "unknown acr" in params["error_description"]
    assert params["state"] == flow.state
    assert not SsoAuthorization.objects.exists()
    assert SsoEvent.objects.filter(kind="refused", detail__error="invalid_request").exists()


def test_a_wrong_redirect_uri_is_refused_on_the_portal_never_redirected(client, student, lms):
    sign_in_with_password(client, student)
    url = Flow(lms).authorize_url().replace("lms.example.ac.kr", "evil.example.com")
    response = client.get(url)
    assert response.status_code == 400
    assert b"sso-error" in response.content and b"invalid_request" in response.content
    assert not SsoAuthorization.objects.exists()


def test_the_token_endpoint_refuses_a_redirect_uri_other_than_the_authorized_one(client, student, lms):
    lms.redirect_uris = f"{REDIRECT_URI} https://lms.example.ac.kr/other"
    lms.save()
    sign_in_with_password(client, student)
    flow = Flow(lms)
    code = follow_to_callback(client, flow.authorize_url())["code"]
    response = exchange(client, flow, code, redirect_uri="https://lms.example.ac.kr/other")
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    assert "access_token" not in response.json()


def test_a_wrong_client_secret_is_invalid_client(client, student, lms):
    sign_in_with_password(client, student)
    flow = Flow(lms)
    code = follow_to_callback(client, flow.authorize_url())["code"]
    response = exchange(client, flow, code, secret="not-the-secret")
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert SsoEvent.objects.filter(kind="token_refused", detail__error="invalid_client").exists()
    from oauth2_provider.models import AccessToken

    assert not AccessToken.objects.exists()


def test_a_replayed_code_is_refused_and_revokes_the_tokens_issued_from_it(client, student, lms):
    sign_in_with_password(client, student)
    flow = Flow(lms)
    code = follow_to_callback(client, flow.authorize_url())["code"]
    first = exchange(client, flow, code)
    assert first.status_code == 200
    tokens = first.json()
    assert userinfo_status(client, tokens["access_token"]) == 200
    replay = exchange(client, flow, code)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # RFC 6749 §4.1.2: what the code gave out is revoked, the refresh token with it.
    assert userinfo_status(client, tokens["access_token"]) == 401
    assert refresh(client, flow, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    event = SsoEvent.objects.get(kind="replay")
    assert event.detail["tokens_revoked"] >= 1 and event.user == student.user


def test_a_pkce_mismatch_is_refused_and_spends_the_code(client, student, lms):
    sign_in_with_password(client, student)
    flow = Flow(lms)
    code = follow_to_callback(client, flow.authorize_url())["code"]
    wrong = exchange(client, flow, code, verifier="a" * 50)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert exchange(client, flow, code).json()["error"] == "invalid_grant"  # a leaked code is not tried again


def test_an_authorization_request_without_pkce_is_refused(client, student, lms):
    sign_in_with_password(client, student)
    flow = Flow(lms)
    url = flow.authorize_url().replace(f"&code_challenge={flow.challenge}", "").replace("&code_challenge_method=S256", "")
    assert "code_challenge" not in url
    params = callback_params(client.get(url))
    assert params["error"] == "invalid_request" and "challenge" in params["error_description"].lower()


def test_a_plain_pkce_challenge_is_refused(client, student, lms):
    sign_in_with_password(client, student)
    flow = Flow(lms)
    flow.challenge = flow.verifier
    response = client.get(flow.authorize_url().replace("code_challenge_method=S256", "code_challenge_method=plain"))
    if response.status_code == 200:  # consent shown: the refusal comes with the answer
        form = response.context["form"]
        response = client.post("/o/authorize/", {**{k: v for k, v in form.initial.items() if v is not None}, "allow": "true"})
    assert callback_params(response)["error"] == "invalid_request"


def test_an_expired_code_is_refused(client, student, lms):
    from datetime import timedelta

    from django.utils import timezone
    from oauth2_provider.models import Grant

    sign_in_with_password(client, student)
    flow = Flow(lms)
    code = follow_to_callback(client, flow.authorize_url())["code"]
    Grant.objects.update(expires=timezone.now() - timedelta(seconds=1))
    response = exchange(client, flow, code)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_a_request_without_the_openid_scope_is_refused(client, student, lms):
    sign_in_with_password(client, student)
    params = callback_params(client.get(Flow(lms).authorize_url(scope="profile")))
    assert params["error"] == "invalid_scope"


def test_a_public_app_needs_no_secret_but_a_confidential_one_does(client, student, lms):
    spa = register_app(name="Timetable", public=True)
    sign_in_with_password(client, student)
    flow = Flow(spa)
    code = follow_to_callback(client, flow.authorize_url())["code"]
    assert exchange(client, flow, code, secret="").status_code == 200
    flow = Flow(lms)
    code = follow_to_callback(client, flow.authorize_url())["code"]
    assert exchange(client, flow, code, secret="").json()["error"] == "invalid_client"


def test_the_token_endpoint_is_throttled_per_client_and_per_address(client, lms, settings):
    settings.SSO = {**settings.SSO, "TOKEN_RATE_CLIENT": 3, "TOKEN_RATE_IP": 5}
    headers = {"HTTP_AUTHORIZATION": basic_auth(lms.client_id, SECRET)}
    statuses = [client.post("/o/token/", {"grant_type": "authorization_code", "code": "x"}, **headers).status_code for _ in range(4)]
    assert statuses == [400, 400, 400, 429]
    other = register_app(name="Library")
    headers = {"HTTP_AUTHORIZATION": basic_auth(other.client_id, SECRET)}
    statuses = [client.post("/o/token/", {"grant_type": "authorization_code", "code": "x"}, **headers).status_code for _ in range(3)]
    assert statuses == [400, 400, 429]  # the address's 6th counted request (a refused one is not counted further)
    limited = client.post("/o/token/", {"grant_type": "authorization_code", "code": "x"}, **headers)
    assert limited.json()["error"] == "temporarily_unavailable" and int(limited["Retry-After"]) > 0
    assert SsoEvent.objects.filter(kind="throttled").count() == 3


def test_apps_servers_reach_the_token_and_revocation_endpoints_without_a_csrf_cookie(student, lms):
    from django.test import Client

    browser, server = Client(), Client(enforce_csrf_checks=True)  # the app's server has no portal cookies
    sign_in_with_password(browser, student)
    flow = Flow(lms)
    code = follow_to_callback(browser, flow.authorize_url())["code"]
    tokens = exchange(server, flow, code)
    assert tokens.status_code == 200, tokens.content[:200]
    revoked = server.post("/o/revoke/", {"token": tokens.json()["access_token"]}, HTTP_AUTHORIZATION=basic_auth(lms.client_id, SECRET))
    assert revoked.status_code == 200
    assert server.post("/o/userinfo/", HTTP_AUTHORIZATION=f"Bearer {tokens.json()['access_token']}").status_code == 401


# --- consent ------------------------------------------------------------------------------------------


def test_the_consent_screen_lists_the_claims_in_english_and_korean(client, student, lms):
    sign_in_with_password(client, student)
    url = Flow(lms).authorize_url(scope="openid profile email campus")
    page = client.get(url).content.decode()
    assert "Learning platform" in page and "Your student number, department and enrolment status" in page
    assert "Your email address" in page
    korean = client.get(url, HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    assert "학번" in korean and "이메일" in korean


def test_consent_is_asked_once_and_again_for_prompt_consent(client, student, lms):
    sign_in_with_password(client, student)
    follow_to_callback(client, Flow(lms).authorize_url())
    assert "code" in callback_params(client.get(Flow(lms).authorize_url()))  # remembered
    assert client.get(Flow(lms).authorize_url(prompt="consent")).status_code == 200  # asked again
    assert client.get(Flow(lms).authorize_url(scope="openid email")).status_code == 200  # a new scope: asked


def test_a_denied_consent_is_access_denied_for_the_app(client, student, lms):
    sign_in_with_password(client, student)
    params = follow_to_callback(client, Flow(lms).authorize_url(), allow=False)
    assert params["error"] == "access_denied" and not SsoConsent.objects.exists()


def test_a_trusted_first_party_app_skips_the_consent_screen(client, student):
    portal_app = register_app(name="Course registration", trusted=True)
    sign_in_with_password(client, student)
    assert "code" in callback_params(client.get(Flow(portal_app).authorize_url()))
    assert SsoConsent.objects.get().trusted


def test_the_student_sees_the_apps_let_in_and_revoking_one_revokes_its_tokens(client, student, lms):
    sign_in_with_password(client, student)
    flow = Flow(lms)
    tokens = tokens_for(client, flow)
    home = client.get("/").content.decode()
    assert 'id="campus-apps"' in home and "Learning platform" in home
    consent = SsoConsent.objects.get()
    response = client.post(f"/apps/{consent.pk}/revoke/")
    assert response.status_code == 302
    assert userinfo_status(client, tokens["access_token"]) == 401
    assert refresh(client, flow, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert 'id="campus-apps"' not in client.get("/").content.decode()
    assert client.get(Flow(lms).authorize_url()).status_code == 200  # asks again
    assert SsoEvent.objects.filter(kind="consent_revoked", user=student.user).exists()


def test_a_student_cannot_revoke_another_students_app(client, student, make_student, lms):
    other = make_student("20260009")
    sign_in_with_password(client, other)
    follow_to_callback(client, Flow(lms).authorize_url())
    theirs = SsoConsent.objects.get()
    client.post("/logout/")
    sign_in_with_password(client, student)
    response = client.post(f"/apps/{theirs.pk}/revoke/", follow=True)
    assert "could not be found" in response.content.decode()
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


# --- refresh tokens as a setting ------------------------------------------------------------------------


def test_refresh_tokens_can_be_switched_off(client, student, lms, settings):
    settings.SSO = {**settings.SSO, "REFRESH_TOKENS": False}
    sign_in_with_password(client, student)
    tokens = tokens_for(client, Flow(lms))
    assert "refresh_token" not in tokens and "access_token" in tokens


def test_a_rotated_refresh_token_used_again_revokes_its_family(client, student, lms):
    sign_in_with_password(client, student)
    flow = Flow(lms)
    tokens = tokens_for(client, flow)
    newer = refresh(client, flow, tokens["refresh_token"]).json()
    assert refresh(client, flow, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert refresh(client, flow, newer["refresh_token"]).json()["error"] == "invalid_grant"


def test_a_suspended_student_gets_no_more_tokens(client, student, lms):
    sign_in_with_password(client, student)
    flow = Flow(lms)
    tokens = tokens_for(client, flow)
    student.status = "suspended"
    student.save()
    assert userinfo_status(client, tokens["access_token"]) == 401
    assert refresh(client, flow, tokens["refresh_token"]).json()["error"] == "invalid_grant"


# --- audit ------------------------------------------------------------------------------------------------


def test_grants_token_issues_and_revocations_are_audited(client, student, lms):
    sign_in_with_password(client, student)
    flow = Flow(lms)
    tokens = tokens_for(client, flow)
    refresh(client, flow, tokens["refresh_token"])
    client.post("/o/revoke/", {"token": tokens["access_token"]}, HTTP_AUTHORIZATION=basic_auth(lms.client_id, SECRET))
    kinds = list(SsoEvent.objects.order_by("pk").values_list("kind", flat=True))
    assert kinds == ["consent", "code", "token", "refresh", "revoke"], kinds
    assert all(e.application_id == lms.pk for e in SsoEvent.objects.all())
    assert SsoEvent.objects.get(kind="code").detail["acr"] == ACR_PWD


def test_staff_register_a_campus_app_in_the_admin(admin_client):
    from oauth2_provider.models import Application

    page = admin_client.get("/admin/oauth2_provider/application/add/")
    assert page.status_code == 200 and b"Trusted first-party app" in page.content and b"Back-channel logout URI" in page.content
    secret = page.context["adminform"].form.initial.get("client_secret") or page.context["adminform"].form.fields["client_secret"].initial()
    client_id = page.context["adminform"].form.fields["client_id"].initial()
    response = admin_client.post("/admin/oauth2_provider/application/add/", {
        "name": "Library", "client_id": client_id, "client_type": "confidential", "client_secret": secret,
        "redirect_uris": "https://library.example.ac.kr/oidc/callback", "post_logout_redirect_uris": "",
        "authorization_grant_type": "authorization-code", "algorithm": "RS256",
        "campus_app-TOTAL_FORMS": "1", "campus_app-INITIAL_FORMS": "0", "campus_app-MIN_NUM_FORMS": "0", "campus_app-MAX_NUM_FORMS": "1",
        "campus_app-0-description": "The library catalogue", "campus_app-0-backchannel_logout_uri": "https://library.example.ac.kr/bcl",
        "campus_app-0-require_pkce": "on",
    })
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    app = Application.objects.get(name="Library")
    assert app.algorithm == "RS256" and app.client_secret != secret  # stored hashed
    assert app.campus_app.backchannel_logout_uri == "https://library.example.ac.kr/bcl"
