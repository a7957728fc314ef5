"""A relying party's side of the protocol, for HTTP-level tests through Django's test client.

Written from the specifications (OAuth 2.0, PKCE, OpenID Connect), not from the portal's code: each
step is what a campus app sends, each check what a campus app verifies.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urlsplit

from django.test import Client
from jwcrypto import jwk, jwt

REDIRECT_URI = "https://lms.example.ac.kr/auth/oidc/callback"
SECRET = "test-client-secret-" + "x" * 40


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def basic_auth(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def register_app(*, name="Learning platform", trusted=False, public=False, backchannel_logout_uri="", require_pkce=True,
                 redirect_uri=REDIRECT_URI, post_logout_redirect_uri=""):
    from oauth2_provider.models import AbstractApplication, get_application_model

    from facelogin.models import CampusApp

    application = get_application_model().objects.create(
        name=name,
        client_type=AbstractApplication.CLIENT_PUBLIC if public else AbstractApplication.CLIENT_CONFIDENTIAL,
        authorization_grant_type=AbstractApplication.GRANT_AUTHORIZATION_CODE,
        algorithm=AbstractApplication.RS256_ALGORITHM,
        redirect_uris=redirect_uri,
        post_logout_redirect_uris=post_logout_redirect_uri,
        skip_authorization=trusted,
        client_secret="" if public else SECRET,
        hash_client_secret=True,
    )
    CampusApp.objects.create(application=application, backchannel_logout_uri=backchannel_logout_uri, require_pkce=require_pkce)
    return application


@dataclass
class Flow:
    """One sign-in of a campus app: the values it keeps between the redirect and the callback."""

    application: object
    verifier: str = ""
    challenge: str = ""
    state: str = field(default_factory=lambda: secrets.token_urlsafe(8))
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(8))

    def __post_init__(self) -> None:
        if not self.verifier:
            self.verifier, self.challenge = pkce_pair()

    def authorize_url(self, scope: str = "openid profile campus", **extra) -> str:
        params = {
            "response_type": "code",
            "client_id": self.application.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": scope,
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": self.challenge,
            "code_challenge_method": "S256",
            **{k: v for k, v in extra.items() if v is not None},
        }
        return "/o/authorize/?" + urlencode(params)


def callback_params(response) -> dict[str, str]:
    """The query the portal sent the browser back to the app with (a 302 to the redirect URI)."""
    assert response.status_code == 302, (response.status_code, response.content[:500])
    location = response["Location"]
    assert location.startswith(REDIRECT_URI), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def follow_to_callback(client: Client, url: str, *, allow: bool = True) -> dict[str, str]:
    """GET the authorization URL; answer the consent screen when it shows; return the callback query."""
    response = client.get(url)
    if response.status_code == 200 and b"sso-consent-form" in response.content:
        form = response.context["form"]
        data = {name: value for name, value in form.initial.items() if value is not None}
        if allow:
            data["allow"] = "true"
        response = client.post("/o/authorize/", data)
    return callback_params(response)


def exchange(client: Client, flow: Flow, code: str, *, secret: str = SECRET, verifier: str | None = None,
             redirect_uri: str = REDIRECT_URI, **extra):
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": flow.verifier if verifier is None else verifier,
        **extra,
    }
    headers = {"HTTP_AUTHORIZATION": basic_auth(flow.application.client_id, secret)} if secret else {}
    if not secret:
        data["client_id"] = flow.application.client_id
    return client.post("/o/token/", data, **headers)


def refresh(client: Client, flow: Flow, refresh_token: str, *, secret: str = SECRET):
    return client.post(
        "/o/token/",
        {"grant_type": "refresh_token", "refresh_token": refresh_token},
        HTTP_AUTHORIZATION=basic_auth(flow.application.client_id, secret),
    )


def jwks(client: Client) -> jwk.JWKSet:
    response = client.get("/o/jwks/")
    assert response.status_code == 200
    return jwk.JWKSet.from_json(response.content)


def verified_claims(client: Client, id_token: str, flow: Flow, issuer: str = "http://testserver", *, nonce: bool = True) -> dict:
    """Verify an ID token as an OpenID Connect client must (Core §3.1.3.7): signature by a published
    key, issuer, audience, expiry, nonce."""
    token = jwt.JWT(jwt=id_token, key=jwks(client), algs=["RS256"], check_claims={"exp": None, "iss": issuer, "aud": flow.application.client_id})
    claims = json.loads(token.claims)
    if nonce:  # a refreshed ID token need not carry it (OIDC Core §12.2)
        assert claims["nonce"] == flow.nonce
    return claims
