"""A campus app for the browser tests: Flask + Authlib, signing its users in through the portal.

It knows the portal only as an OpenID Connect provider: the issuer URL, its client ID and secret.
Authlib discovers the endpoints, sends PKCE and a nonce, and verifies the ID token against the JWKS
(signature, issuer, audience, expiry, nonce). Back-channel logout tokens are verified the same way.
Nothing here imports Django or the portal. Run as its own process::

    RP_ISSUER=http://127.0.0.1:8000 RP_CLIENT_ID=... RP_CLIENT_SECRET=... python -m tests.sso_rp.app --port 8100
"""

from __future__ import annotations

import argparse
import os
import secrets
import threading
import time

from authlib.common.errors import AuthlibBaseError
from authlib.integrations.flask_client import OAuth
from flask import Flask, abort, jsonify, redirect, render_template_string, request, session, url_for
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Learning platform</title></head><body>
<h1>Learning platform</h1>
{% if error %}<p id="rp-error">{{ error }}</p>{% endif %}
{% if claims %}
<p id="rp-signed-in">Signed in as <span id="rp-name">{{ claims.get("name", "") }}</span></p>
<dl><dt>Student number</dt><dd id="rp-student-number">{{ claims.get("student_number", "") }}</dd>
<dt>amr</dt><dd id="rp-amr">{{ claims.get("amr", [])|join(" ") }}</dd>
<dt>acr</dt><dd id="rp-acr">{{ claims.get("acr", "") }}</dd>
<dt>auth_time</dt><dd id="rp-auth-time">{{ claims.get("auth_time", "") }}</dd></dl>
<p><a id="rp-logout" href="{{ url_for('logout') }}">Sign out</a></p>
{% else %}
<p id="rp-signed-out">Signed out</p>
<p><a id="rp-login" href="{{ url_for('login') }}">Sign in with the university portal</a></p>
{% endif %}
</body></html>"""


def create_app(*, issuer: str, client_id: str, client_secret: str) -> Flask:
    app = Flask(__name__)
    app.secret_key = os.environ.get("RP_SECRET_KEY") or secrets.token_hex(32)
    app.config["SESSION_COOKIE_NAME"] = "rp_session"  # the portal on the same host has its own cookies
    oauth = OAuth(app)
    portal = oauth.register(
        "portal",
        client_id=client_id,
        client_secret=client_secret,
        server_metadata_url=issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={"scope": "openid profile campus", "code_challenge_method": "S256"},
    )
    ended_sids: set[str] = set()  # portal sessions that ended (back-channel logout)
    logout_tokens: list[dict] = []
    lock = threading.Lock()

    def signed_in_claims() -> dict | None:
        claims = session.get("claims")
        if claims and claims.get("sid") in ended_sids:
            session.clear()  # the portal said this session ended
            return None
        return claims

    @app.get("/")
    def home():
        return render_template_string(PAGE, claims=signed_in_claims(), error=request.args.get("error"))

    @app.get("/login")
    def login():
        extra = {name: request.args[name] for name in ("acr_values", "prompt", "max_age") if request.args.get(name)}
        return portal.authorize_redirect(url_for("callback", _external=True), **extra)

    @app.get("/callback")
    def callback():
        try:
            token = portal.authorize_access_token()  # verifies the ID token against the portal's JWKS
        except AuthlibBaseError as exc:
            return redirect(url_for("home", error=f"{exc.error}: {exc.description}"))
        claims = dict(token["userinfo"])
        session["claims"] = claims
        session["id_token"] = token["id_token"]
        return redirect(url_for("home"))

    @app.get("/logout")
    def logout():
        id_token = session.pop("id_token", None)
        session.pop("claims", None)
        return portal.logout_redirect(post_logout_redirect_uri=url_for("home", _external=True), id_token_hint=id_token)

    @app.post("/backchannel-logout")
    def backchannel_logout():
        """OpenID Connect Back-Channel Logout 1.0 §2.6: validate the logout token, end the session."""
        token = request.form.get("logout_token", "")
        try:
            decoded = jwt.decode(token, KeySet.import_key_set(portal.fetch_jwk_set(force=True)), algorithms=["RS256"])
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": portal.load_server_metadata()["issuer"]},
                aud={"essential": True, "value": client_id},
                iat={"essential": True},
            ).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            abort(400, description=str(exc))
        claims = decoded.claims
        if BACKCHANNEL_EVENT not in (claims.get("events") or {}) or "nonce" in claims or not (claims.get("sid") or claims.get("sub")):
            abort(400, description="not a logout token")
        with lock:
            ended_sids.add(claims.get("sid"))
            logout_tokens.append({"sid": claims.get("sid"), "sub": claims.get("sub"), "at": time.time()})
        return ("", 200, {"Cache-Control": "no-store"})

    @app.get("/backchannel-log")
    def backchannel_log():
        with lock:
            return jsonify(logout_tokens)

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = create_app(issuer=os.environ["RP_ISSUER"], client_id=os.environ["RP_CLIENT_ID"], client_secret=os.environ["RP_CLIENT_SECRET"])
    from werkzeug.serving import run_simple

    run_simple(args.host, args.port, app, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
