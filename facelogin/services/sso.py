"""Single sign-on for campus apps: the portal's rules as an OpenID Connect provider.

django-oauth-toolkit (DOT) speaks the protocol and stores apps, codes and tokens; ``facelogin.oidc``
adapts it and calls this module for what is the portal's own: who a person is to an app (``sub`` and
claims), how they signed in (``acr``/``amr``, from ``services.auth_context``), when a campus app must
get a fresh or stronger sign-in, consents, what a replayed code or a sign-out revokes, and the logout
tokens sent to apps (OpenID Connect Back-Channel Logout 1.0). docs/sso.md is the operator's guide.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone
from functools import lru_cache

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from facelogin.models import CampusApp, SsoAuthorization, SsoConsent, SsoSubject, Student
from facelogin.services import auth_context
from facelogin.services.audit import sso_event_record
from facelogin.services.auth_context import ACR_FACE_LIVENESS, ACR_LEVELS, AuthContext

logger = logging.getLogger(__name__)

# --- who a person is to a campus app -----------------------------------------------------------

# Claims by the scope that releases them (``sub`` always goes with ``openid``).
SCOPE_CLAIMS = {
    "openid": ("sub",),
    "profile": ("name", "preferred_username"),
    "email": ("email",),
    "campus": ("student_number", "department", "student_status", "eduperson_affiliation"),
}
CLAIM_SCOPE = {claim: scope for scope, claims in SCOPE_CLAIMS.items() for claim in claims}
# What the consent screen lists for each scope, in the student's language.
SCOPE_TEXT = {
    "openid": _("That you are signed in, as an identifier only this portal issues (not your student number)"),
    "profile": _("Your name and user name"),
    "email": _("Your email address"),
    "campus": _("Your student number, department and enrolment status, and whether you are a student or staff"),
}


def subject_of(*, user) -> str:
    """The person's ``sub``: random, stable, the same for every campus app (apps that are told the
    student number can link people anyway, so per-app subjects would hide nothing)."""
    row = SsoSubject.objects.filter(user=user).values_list("subject", flat=True).first()
    if row:
        return row
    subject, _created = SsoSubject.objects.get_or_create(user=user, defaults={"subject": str(uuid.uuid4())})
    return subject.subject


def claims_of(*, user) -> dict:
    """Every claim the portal can release about ``user``; the granted scopes pick from them."""
    try:
        student = user.student
    except Student.DoesNotExist:
        student = None
    affiliation = []
    if student is not None:
        affiliation.append("student")
    if user.is_staff:
        affiliation.append("staff")
    affiliation.append("member" if (student is None or student.status == Student.Status.ENROLLED or user.is_staff) else "affiliate")
    claims = {
        "name": student.full_name if student is not None else (user.get_full_name() or user.get_username()),
        "preferred_username": user.get_username(),
        "eduperson_affiliation": affiliation,
    }
    if user.email:
        claims["email"] = user.email
    if student is not None:
        claims.update(student_number=student.student_number, department=student.department, student_status=student.status)
    return claims


def scope_lines(scopes) -> list[tuple[str, str]]:
    """(scope, sentence) for the consent screen, in a fixed order."""
    return [(scope, SCOPE_TEXT[scope]) for scope in SCOPE_CLAIMS if scope in set(scopes)]


# --- what an authorization request needs --------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    acr: str | None  # the least level the app accepts (the lowest of those it listed)
    max_age: int | None
    login: bool  # prompt=login: sign in again, whatever the session holds
    none: bool  # prompt=none: no page may be shown
    consent: bool  # prompt=consent: ask again even when consent is remembered


class RequestRefused(Exception):
    """An authorization request the portal cannot honour; ``error`` is the OAuth error code."""

    def __init__(self, error: str, description: str) -> None:
        self.error = error
        self.description = description
        super().__init__(f"{error}: {description}")


def requirement_parse(*, acr_values: str | None, claims: dict | None, max_age: str | None, prompt) -> Requirement:
    """Read acr_values, the ``claims`` parameter's acr, max_age and prompt; RequestRefused for bad ones.

    Every level asked for is enforced (acr_values too, not only an "essential" acr claim): a campus
    app that asks for the face must never get a password sign-in it did not check for. Several
    values are acceptable alternatives, so the lowest is the floor. An unknown level is refused, so
    a typo in an app's settings shows at once instead of silently getting the password level."""
    requested = list((acr_values or "").split())
    acr_claim = ((claims or {}).get("id_token") or {}).get("acr") if isinstance(claims, dict) else None
    if isinstance(acr_claim, dict):
        if "value" in acr_claim:
            requested.append(acr_claim["value"])
        requested.extend(acr_claim.get("values") or [])
    floor = None
    for value in requested:
        if not isinstance(value, str) or value not in ACR_LEVELS:
            raise RequestRefused(
                "invalid_request", f"unknown acr value {value!r}; this portal supports {' '.join(ACR_LEVELS)}"
            )
        if floor is None or auth_context.acr_level(value) < auth_context.acr_level(floor):
            floor = value
    age = None
    if max_age not in (None, ""):
        try:
            age = int(max_age)
        except (TypeError, ValueError):
            raise RequestRefused("invalid_request", "max_age must be a whole number of seconds") from None
        if age < 0:
            raise RequestRefused("invalid_request", "max_age must not be negative")
    prompts = set(prompt.split() if isinstance(prompt, str) else (prompt or ()))
    return Requirement(acr=floor, max_age=age, login="login" in prompts, none="none" in prompts, consent="consent" in prompts)


@dataclass(frozen=True)
class Decision:
    context: AuthContext | None = None  # proceed with this sign-in
    step_up: str | None = None  # or send the student to sign in: "face" or "pwd" ("any": their choice)
    target_acr: str | None = None


def authorization_decide(
    *, context: AuthContext | None, requirement: Requirement, liveness_on: bool, face_possible: bool | None
) -> Decision:
    """Proceed with the session's sign-in, or say which sign-in is needed first (RequestRefused when
    none can do).

    ``context``: what the session's sign-ins within max_age add up to (None: none count).
    ``face_possible``: whether the signed-in person can sign in by face (None: nobody is signed in
    yet). prompt=login counts nothing the session already holds; the view then asks again with a
    short max_age in its place, so only the new sign-in counts when the student comes back."""
    target = requirement.acr
    if target == ACR_FACE_LIVENESS and not liveness_on:
        raise RequestRefused(
            "unmet_authentication_requirements",
            "this portal runs without the liveness challenge, so no sign-in reaches face-liveness",
        )
    current = None if requirement.login else context
    if current is not None and (target is None or current.satisfies(target)):
        return Decision(context=current)
    if requirement.none:
        raise RequestRefused("login_required", "a new sign-in is needed and prompt=none forbids asking for it")
    method = auth_context.missing_method(current, target) if target else "any"
    if method == auth_context.FACE and face_possible is False:
        raise RequestRefused(
            "unmet_authentication_requirements", "the app asks for a face sign-in, and this account cannot sign in by face"
        )
    return Decision(step_up=method, target_acr=target)


# --- authorizations, consents and the tokens issued from them --------------------------------------


def code_digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def consent_covers(*, user, application, scopes) -> bool:
    consent = SsoConsent.objects.filter(user=user, application=application, revoked_at__isnull=True).first()
    return consent is not None and set(scopes) <= set(consent.scope.split())


@transaction.atomic
def authorization_record(
    *, code: str, application, user, context: AuthContext, sid: str, scopes, issuer_url: str, ip: str | None
) -> SsoAuthorization:
    """An authorization code was issued: remember how the student signed in, the session, and the consent."""
    authorization = SsoAuthorization.objects.create(
        code_hash=code_digest(code),
        application=application,
        user=user,
        sid=sid,
        issuer=issuer_url,
        amr=list(context.amr),
        acr=context.acr,
        auth_time=datetime.fromtimestamp(context.auth_time, tz=dt_timezone.utc),
    )
    now = timezone.now()
    scope = " ".join(sorted(set(scopes)))
    consent = SsoConsent.objects.select_for_update().filter(user=user, application=application, revoked_at__isnull=True).first()
    if consent is None:
        SsoConsent.objects.create(user=user, application=application, scope=scope, trusted=application.skip_authorization, given_at=now, last_used_at=now)
        sso_event_record("consent", application=application, user=user, ip=ip, scope=scope, trusted=application.skip_authorization)
    else:
        consent.scope = " ".join(sorted(set(consent.scope.split()) | set(scopes)))
        consent.last_used_at = now
        consent.save(update_fields=["scope", "last_used_at"])
    sso_event_record("code", application=application, user=user, ip=ip, acr=context.acr, amr=list(context.amr), scope=scope)
    return authorization


def authorization_claim(*, code: str, application) -> SsoAuthorization | None:
    """Spend a code: of two redemptions, exactly one gets the authorization (a conditional update).

    Any redemption that names the right client spends it, including one that then fails (a wrong
    PKCE verifier or redirect URI): such a code has leaked, and must not be tried again."""
    digest = code_digest(code)
    if not SsoAuthorization.objects.filter(code_hash=digest, application=application, redeemed_at__isnull=True).update(redeemed_at=timezone.now()):
        return None
    return SsoAuthorization.objects.select_related("user").get(code_hash=digest)


def authorization_replayed(*, code: str, application, ip: str | None) -> SsoAuthorization | None:
    """A spent code came back: revoke everything issued from it (RFC 6749 §4.1.2). None: never issued."""
    authorization = SsoAuthorization.objects.filter(code_hash=code_digest(code), application=application).first()
    if authorization is None or authorization.redeemed_at is None:
        return None
    revoked = authorization_tokens_revoke(authorization=authorization)
    SsoAuthorization.objects.filter(pk=authorization.pk).update(replayed_at=timezone.now())
    sso_event_record("replay", application=application, user=authorization.user, ip=ip, authorization=authorization.pk, tokens_revoked=revoked)
    logger.warning("authorization code replayed for client %s: %s token(s) revoked", application.client_id, revoked)
    return authorization


def authorization_tokens_revoke(*, authorization: SsoAuthorization) -> int:
    """Revoke the access and refresh tokens issued from one authorization (all its refreshes too)."""
    from oauth2_provider.models import get_access_token_model, get_refresh_token_model

    AccessToken = get_access_token_model()
    RefreshToken = get_refresh_token_model()
    revoked = 0
    with transaction.atomic():
        if authorization.token_family:
            revoked += RefreshToken.objects.filter(token_family=authorization.token_family, revoked__isnull=True).count()
            RefreshToken.revoke_family(authorization.token_family)
        if authorization.access_token_id:
            # Deleting is how DOT revokes an access token; the ID token row stays, so an app can
            # still name it as id_token_hint when it logs out.
            revoked += AccessToken.objects.filter(pk=authorization.access_token_id).delete()[1].get(AccessToken._meta.label, 0)
        SsoAuthorization.objects.filter(pk=authorization.pk, ended_at__isnull=True).update(ended_at=timezone.now())
    return revoked


def authorization_tokens_link(*, authorization: SsoAuthorization, access_token, refresh_token, issuer_url: str) -> None:
    """The code was exchanged: what it produced (to revoke on replay or logout), and the issuer its ID
    token named (the back-channel logout token must name the same)."""
    SsoAuthorization.objects.filter(pk=authorization.pk).update(
        access_token=access_token,
        token_family=refresh_token.token_family if refresh_token is not None else None,
        issuer=issuer_url or authorization.issuer,
    )


def authorization_of_refresh(*, token_family) -> SsoAuthorization | None:
    if not token_family:
        return None
    return SsoAuthorization.objects.filter(token_family=token_family).first()


def apps_let_in(*, user) -> list[SsoConsent]:
    """The campus apps this person let in (consent not revoked), most recently used first."""
    consents = list(
        SsoConsent.objects.filter(user=user, revoked_at__isnull=True)
        .select_related("application", "application__campus_app")
        .order_by("-last_used_at")
    )
    for consent in consents:  # what the app may see, in the student's words
        consent.scope_lines = [text for scope, text in scope_lines(consent.scope.split()) if scope != "openid"]
    return consents


def consent_revoke(*, user, consent_id: int, ip: str | None = None) -> SsoConsent | None:
    """The student takes an app's access back: consent ended, its tokens and pending codes revoked,
    and the app told to end its sessions (back-channel logout). None: no such active consent."""
    from oauth2_provider.models import get_grant_model

    with transaction.atomic():
        consent = SsoConsent.objects.select_for_update().filter(pk=consent_id, user=user, revoked_at__isnull=True).select_related("application").first()
        if consent is None:
            return None
        consent.revoked_at = timezone.now()
        consent.save(update_fields=["revoked_at"])
        application = consent.application
        get_grant_model().objects.filter(user=user, application=application).delete()
        authorizations = list(SsoAuthorization.objects.filter(user=user, application=application, ended_at__isnull=True))
        revoked = sum(authorization_tokens_revoke(authorization=a) for a in authorizations)
        sids = sorted({a.sid for a in authorizations})
        sso_event_record("consent_revoked", application=application, user=user, ip=ip, tokens_revoked=revoked)
        for sid in sids:
            _logout_later(application.pk, user.pk, sid)
    return consent


def session_logout(*, user, sid: str | None, ip: str | None = None) -> int:
    """The portal session ``sid`` ended: revoke what campus apps got from it, and tell each app that
    registered a back-channel logout URI. Returns how many apps are told."""
    if not sid or user is None:
        return 0
    with transaction.atomic():
        authorizations = list(
            SsoAuthorization.objects.filter(user=user, sid=sid, ended_at__isnull=True).select_related("application")
        )
        if not authorizations:
            return 0
        revoked = sum(authorization_tokens_revoke(authorization=a) for a in authorizations)
        applications = {a.application_id: a.application for a in authorizations}
        for application in applications.values():
            sso_event_record("logout", application=application, user=user, ip=ip, tokens_revoked=revoked)
            _logout_later(application.pk, user.pk, sid)
    return len(applications)


def _logout_later(application_id: int, user_id: int, sid: str) -> None:
    if not CampusApp.objects.filter(application_id=application_id).exclude(backchannel_logout_uri="").exists():
        return

    def send() -> None:
        from facelogin import tasks

        tasks.send_backchannel_logout.delay(application_id, user_id, sid)

    transaction.on_commit(send, robust=True)


# --- keys, logout tokens --------------------------------------------------------------------------

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_SECONDS = 120


@lru_cache(maxsize=8)
def _jwk(pem: str):
    from jwcrypto import jwk

    return jwk.JWK.from_pem(pem.encode())


def signing_jwk():
    return _jwk(settings.OIDC_SIGNING_KEY)


def published_jwks() -> list:
    """The signing key and the extra keys: what the JWKS shows and what the portal's own tokens verify with."""
    pems = [settings.OIDC_SIGNING_KEY, *settings.OIDC_EXTRA_KEYS] if settings.OIDC_SIGNING_KEY else []
    return [_jwk(pem) for pem in pems]


def jwk_for_kid(kid: str | None):
    for key in published_jwks():
        if key.thumbprint() == kid:
            return key
    return None


def logout_token_build(*, application, user, sid: str, issuer_url: str) -> str:
    from jwcrypto import jwt

    key = signing_jwk()
    now = int(time.time())
    token = jwt.JWT(
        header={"alg": "RS256", "typ": "logout+jwt", "kid": key.thumbprint()},
        claims={
            "iss": issuer_url,
            "aud": application.client_id,
            "iat": now,
            "exp": now + LOGOUT_TOKEN_SECONDS,
            "jti": secrets.token_urlsafe(16),
            "sub": subject_of(user=user),
            "sid": sid,
            "events": {BACKCHANNEL_EVENT: {}},
        },
    )
    token.make_signed_token(key)
    return token.serialize()


class LogoutNotDelivered(OSError):
    pass


def backchannel_logout_send(*, application_id: int, user_id: int, sid: str) -> bool:
    """POST a logout token to the app's back-channel logout URI. False: nothing to send.

    Raises LogoutNotDelivered (an OSError) when the app does not answer 200/204, so a worker retries."""
    from django.contrib.auth import get_user_model

    campus_app = CampusApp.objects.select_related("application").filter(application_id=application_id).first()
    user = get_user_model().objects.filter(pk=user_id).first()
    if campus_app is None or not campus_app.backchannel_logout_uri or user is None or not settings.SSO["ENABLED"]:
        return False
    application = campus_app.application
    issuer_url = settings.SSO["ISSUER"] or _issuer_of(application_id=application_id, sid=sid)
    token = logout_token_build(application=application, user=user, sid=sid, issuer_url=issuer_url)
    body = urllib.parse.urlencode({"logout_token": token}).encode()
    request = urllib.request.Request(
        campus_app.backchannel_logout_uri, data=body, method="POST", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    try:
        # Only the registered URI, set by staff in the admin; no redirects are followed.
        with _NO_REDIRECTS.open(request, timeout=settings.SSO["LOGOUT_TIMEOUT_SECONDS"]) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        sso_event_record("backchannel_failed", application=application, user=user, reason=str(exc)[:200])
        raise LogoutNotDelivered(f"{campus_app.backchannel_logout_uri}: {exc}") from exc
    if status not in (200, 204):
        sso_event_record("backchannel_failed", application=application, user=user, status=status)
        raise LogoutNotDelivered(f"{campus_app.backchannel_logout_uri} answered {status}")
    sso_event_record("backchannel", application=application, user=user, status=status)
    return True


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_NO_REDIRECTS = urllib.request.build_opener(_NoRedirect)


def _issuer_of(*, application_id: int, sid: str) -> str:
    """Without FACELOGIN_OIDC_ISSUER the issuer is the address the app used, recorded with each code
    (the ID tokens the app holds carry the same)."""
    return (
        SsoAuthorization.objects.filter(sid=sid, application_id=application_id).order_by("-pk").values_list("issuer", flat=True).first()
        or ""
    )


def discovery_extras() -> dict:
    """What the portal adds to DOT's discovery document."""
    return {
        "acr_values_supported": list(ACR_LEVELS),
        "claims_parameter_supported": True,
        "grant_types_supported": ["authorization_code", "refresh_token"] if settings.SSO["REFRESH_TOKENS"] else ["authorization_code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login", "consent"],
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "frontchannel_logout_supported": False,
        "claim_types_supported": ["normal"],
        "ui_locales_supported": [code for code, _name in settings.LANGUAGES],
    }


def campus_app_origins() -> list[str]:
    """scheme://host[:port] of every registered campus app's redirect URIs. A form on a portal page may
    end, through a redirect, at one of them: the Content-Security-Policy's form-action must allow them
    (facelogin.middleware). Read per page, not cached: an app registered by another process (a worker,
    a management command, another daphne) must count at once, and the table holds a few dozen rows."""
    from urllib.parse import urlsplit

    from oauth2_provider.models import get_application_model

    found = set()
    for uris in get_application_model().objects.values_list("redirect_uris", flat=True):
        for uri in (uris or "").split():
            parts = urlsplit(uri)
            if parts.scheme in ("http", "https") and parts.netloc:
                found.add(f"{parts.scheme}://{parts.netloc}")
    return sorted(found)


def sso_purge_expired(*, older_than_days: int) -> int:
    """Expired codes and tokens (DOT's ``cleartokens``), and authorizations older than the audit
    retention whose tokens are all gone. Returns the authorizations deleted."""
    from datetime import timedelta

    from oauth2_provider.models import clear_expired, get_refresh_token_model

    clear_expired()
    live_families = get_refresh_token_model().objects.filter(revoked__isnull=True, token_family__isnull=False).values("token_family")
    old = SsoAuthorization.objects.filter(created_at__lt=timezone.now() - timedelta(days=older_than_days))
    deleted, _ = old.exclude(token_family__in=live_families).delete()
    return deleted
