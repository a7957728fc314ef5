"""Signing out ends campus-app sessions: RP-initiated logout, back-channel logout tokens POSTed to a
real HTTP server, revocation of what the session gave out; discovery and the signing keys."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from jwcrypto import jwk, jwt

from facelogin.models import SsoEvent
from tests.web.sso_helpers import REDIRECT_URI, Flow, exchange, follow_to_callback, jwks, register_app, verified_claims
from tests.web.test_sso import _fresh_throttle_counters, sign_in_with_password, student, tokens_for, userinfo_status  # noqa: F401

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"


class LogoutReceiver:
    """A campus app's back-channel logout endpoint: a real HTTP server on a free local port."""

    def __init__(self, status: int = 200) -> None:
        self.tokens: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                receiver.tokens.extend(form.get("logout_token", []))
                self.send_response(status)
                self.send_header("Cache-Control", "no-store")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/backchannel-logout"

    def __enter__(self) -> LogoutReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    with LogoutReceiver() as running:
        yield running


def verified_logout_token(client, token: str, client_id: str) -> dict:
    """As OpenID Connect Back-Channel Logout 1.0 §2.6 has the app check it."""
    parsed = jwt.JWT(jwt=token, key=jwks(client), algs=["RS256"], check_claims={"iss": "http://testserver", "aud": client_id, "iat": None})
    claims = json.loads(parsed.claims)
    assert claims["events"] == {BACKCHANNEL_EVENT: {}} and "nonce" not in claims and claims["jti"]
    assert parsed.token.jose_header["typ"] == "logout+jwt"
    return claims


def test_signing_out_of_the_portal_posts_a_logout_token_and_revokes_the_sessions_tokens(
    client, student, receiver, django_capture_on_commit_callbacks
):
    lms = register_app(backchannel_logout_uri=receiver.url)
    sign_in_with_password(client, student)
    flow = Flow(lms)
    tokens = tokens_for(client, flow)
    id_claims = verified_claims(client, tokens["id_token"], flow)
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/logout/")
    assert len(receiver.tokens) == 1
    claims = verified_logout_token(client, receiver.tokens[0], lms.client_id)
    assert claims["sid"] == id_claims["sid"] and claims["sub"] == id_claims["sub"]
    assert userinfo_status(client, tokens["access_token"]) == 401
    assert SsoEvent.objects.filter(kind="backchannel", application=lms).exists()


def test_an_app_that_does_not_take_its_logout_token_does_not_stop_the_sign_out(client, student, django_capture_on_commit_callbacks):
    with LogoutReceiver(status=500) as failing:
        lms = register_app(backchannel_logout_uri=failing.url)
        sign_in_with_password(client, student)
        tokens = tokens_for(client, Flow(lms))
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post("/logout/")
    assert response.status_code == 302 and "_auth_user_id" not in client.session
    assert userinfo_status(client, tokens["access_token"]) == 401
    assert SsoEvent.objects.get(kind="backchannel_failed").detail["status"] == 500


def test_only_the_ending_sessions_tokens_are_revoked(client, student, django_capture_on_commit_callbacks):
    from django.test import Client

    lms = register_app()
    phone = Client()
    sign_in_with_password(phone, student)
    kept = tokens_for(phone, Flow(lms))
    sign_in_with_password(client, student)
    ended = tokens_for(client, Flow(lms))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.get("/o/logout/", {"id_token_hint": ended["id_token"]})  # the app signs the student out
    assert response.status_code == 302 and "_auth_user_id" not in client.session
    assert userinfo_status(client, ended["access_token"]) == 401
    assert userinfo_status(client, kept["access_token"]) == 200  # the other browser's session goes on


def test_rp_initiated_logout_ends_the_portal_session_and_returns_to_the_app(client, student, receiver, django_capture_on_commit_callbacks):
    after = "https://lms.example.ac.kr/logged-out"
    lms = register_app(post_logout_redirect_uri=after)
    library = register_app(name="Library", backchannel_logout_uri=receiver.url)
    sign_in_with_password(client, student)
    lms_tokens = tokens_for(client, Flow(lms))
    library_tokens = tokens_for(client, Flow(library))
    query = {"id_token_hint": lms_tokens["id_token"], "post_logout_redirect_uri": after, "state": "s1"}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.get("/o/logout/", query)
    assert response.status_code == 302 and response["Location"] == f"{after}?state=s1"
    assert "_auth_user_id" not in client.session
    assert userinfo_status(client, lms_tokens["access_token"]) == 401
    assert userinfo_status(client, library_tokens["access_token"]) == 401
    assert len(receiver.tokens) == 1  # the library, signed in from the same portal session, is told


def test_rp_initiated_logout_refuses_an_unregistered_return_address(client, student):
    lms = register_app(post_logout_redirect_uri="https://lms.example.ac.kr/logged-out")
    sign_in_with_password(client, student)
    tokens = tokens_for(client, Flow(lms))
    response = client.get("/o/logout/", {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": "https://evil.example.com/"})
    assert response.status_code == 400 and b"sso-error" in response.content
    assert "_auth_user_id" in client.session


def test_rp_initiated_logout_without_a_hint_asks_the_student(client, student):
    sign_in_with_password(client, student)
    page = client.get("/o/logout/")
    assert page.status_code == 200 and b'id="sso-logout"' in page.content
    assert "_auth_user_id" in client.session


# --- discovery and keys ------------------------------------------------------------------------------


def test_discovery_describes_the_portal(client, db):
    document = client.get("/.well-known/openid-configuration").json()
    assert document["issuer"] == "http://testserver"
    assert document["authorization_endpoint"] == "http://testserver/o/authorize/"
    assert document["jwks_uri"] == "http://testserver/o/jwks/"
    assert document["end_session_endpoint"] == "http://testserver/o/logout/"
    assert document["response_types_supported"] == ["code"]
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["acr_values_supported"] == [
        "urn:facelogin:acr:pwd", "urn:facelogin:acr:face", "urn:facelogin:acr:face-liveness", "urn:facelogin:acr:mfa"
    ]
    assert document["backchannel_logout_supported"] and document["backchannel_logout_session_supported"]
    assert {"amr", "acr", "auth_time", "student_number", "eduperson_affiliation"} <= set(document["claims_supported"])


def test_without_a_signing_key_single_sign_on_is_off(client, db, settings):
    settings.SSO = {**settings.SSO, "ENABLED": False}
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_ENABLED": False}
    assert client.get("/.well-known/openid-configuration").status_code == 404
    assert client.get("/o/authorize/").status_code == 404
    assert client.post("/o/token/").status_code == 404


def _pem(bits: int = 2048) -> str:
    from portal.oidc_keys import generate_pem

    return generate_pem(bits)


def test_a_rotated_key_keeps_old_tokens_verifiable_while_new_ones_use_the_new_key(client, student, settings):
    old_key = settings.OIDC_SIGNING_KEY
    lms = register_app(post_logout_redirect_uri="https://lms.example.ac.kr/logged-out")
    sign_in_with_password(client, student)
    old_tokens = tokens_for(client, Flow(lms))
    new_key = _pem()
    # The rotation (docs/sso.md): the new key signs, the old one stays published.
    settings.OIDC_SIGNING_KEY, settings.OIDC_EXTRA_KEYS = new_key, [old_key]
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_RSA_PRIVATE_KEY": new_key, "OIDC_RSA_PRIVATE_KEYS_INACTIVE": [old_key]}
    published = jwks(client)
    old_kid = jwk.JWK.from_pem(old_key.encode()).thumbprint()
    new_kid = jwk.JWK.from_pem(new_key.encode()).thumbprint()
    assert {k.get("kid") for k in published} == {old_kid, new_kid}
    flow = Flow(lms)
    new_tokens = tokens_for(client, flow)
    assert json.loads(_header(new_tokens["id_token"]))["kid"] == new_kid
    verified_claims(client, new_tokens["id_token"], flow)
    verified_claims(client, old_tokens["id_token"], Flow(lms), nonce=False)  # still verifies against the JWKS
    # ... and an app can still name it at logout.
    response = client.get("/o/logout/", {"id_token_hint": old_tokens["id_token"], "post_logout_redirect_uri": "https://lms.example.ac.kr/logged-out"})
    assert response.status_code == 302 and "_auth_user_id" not in client.session


def _header(token: str) -> str:
    import base64

    part = token.split(".")[0]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode()


def test_unusable_keys_stop_the_portal_with_a_clear_message():
    from django.core.exceptions import ImproperlyConfigured

    from portal.oidc_keys import published_keys, signing_key

    good = _pem()
    assert signing_key("FACELOGIN_OIDC_KEY", good) == good
    with pytest.raises(ImproperlyConfigured, match="exactly one PEM private key"):
        signing_key("FACELOGIN_OIDC_KEY", "not a key")
    with pytest.raises(ImproperlyConfigured, match="exactly one"):
        signing_key("FACELOGIN_OIDC_KEY", good + good)
    with pytest.raises(ImproperlyConfigured, match="at least 2048 bits"):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        small = rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        signing_key("FACELOGIN_OIDC_KEY", small.decode())
    with pytest.raises(ImproperlyConfigured, match="RSA"):
        from cryptography.hazmat.primitives.asymmetric import ec

        ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        signing_key("FACELOGIN_OIDC_KEY", ec_key.decode())
    with pytest.raises(ImproperlyConfigured, match="no PEM key"):
        published_keys("FACELOGIN_OIDC_EXTRA_KEYS", "garbage")
    public = jwk.JWK.from_pem(good.encode()).export_to_pem().decode()
    assert published_keys("FACELOGIN_OIDC_EXTRA_KEYS", good + public) == [good, public]


def test_the_settings_refuse_a_bad_key_file_at_start(tmp_path):
    import subprocess
    import sys

    from tests.live import REPO

    bad = tmp_path / "key.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SECRET_KEY": "x", "FACELOGIN_DATA_DIR": str(tmp_path), "FACELOGIN_OIDC_KEY_FILE": str(bad)}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "FACELOGIN_OIDC_KEY: not a usable unencrypted PEM key" in result.stderr


def test_someone_else_signing_in_over_the_session_ends_the_previous_persons_campus_sessions(
    client, student, make_student, django_capture_on_commit_callbacks
):
    lms = register_app()
    sign_in_with_password(client, student)
    first = tokens_for(client, Flow(lms))
    other = make_student("20260077")
    with django_capture_on_commit_callbacks(execute=True):
        sign_in_with_password(client, other, step_up=True)  # login() empties the session: a sign-out for the first
    assert userinfo_status(client, first["access_token"]) == 401
