"""Device binding: where a face alone may sign a student in.

NIST SP 800-63B accepts a biometric only together with something the person has. With
``FACELOGIN_DEVICE_POLICY=known`` (the default) a face signs a student in on its own only

* on a browser the student **remembered**: they signed in on it with their password (on the password
  page, or to complete a face sign-in) and chose to use face sign-in on it. The browser keeps a random
  credential in a long-lived cookie (``BROWSER_COOKIE``); the database keeps its hash per student;
* at a **kiosk**: a campus terminal staff registered (``KIOSK_COOKIE``), open to every student.

Anywhere else the recognised face is completed by the student's password once (the sign-in is then face
and password: ``amr`` mfa for campus apps), which can remember the browser. A remote attacker with a
student's photo then has nothing to show it to: their own browser asks for the password.
``FACELOGIN_DEVICE_POLICY=any`` lets the face alone in from any browser.

Cookies are HttpOnly, SameSite=Lax, Secure behind HTTPS; credentials are compared as SHA-256 hashes.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from facelogin.models import BiometricAction, Kiosk, RememberedBrowser, Student
from facelogin.services.audit import biometric_action_record
from facelogin.services.signins import client_ip, user_agent

BROWSER_COOKIE = "portal_browser"
KIOSK_COOKIE = "portal_kiosk"
KIOSK_COOKIE_DAYS = 3650  # a kiosk stays registered until staff revoke it


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _credential(request: HttpRequest, cookie: str) -> str | None:
    value = request.COOKIES.get(cookie, "")
    return value if 20 <= len(value) <= 100 else None  # ours are 43 characters; anything else is not ours


def _set_cookie(response: HttpResponse, name: str, value: str, days: int) -> None:
    response.set_cookie(
        name, value, max_age=days * 86400, httponly=True, samesite="Lax", secure=settings.SESSION_COOKIE_SECURE
    )


def browser_label(request: HttpRequest) -> str:
    """A name people recognise ("Chrome on Windows"), from the user agent."""
    agent = user_agent(request)
    browsers = (("Edg/", "Edge"), ("Whale/", "Whale"), ("SamsungBrowser/", "Samsung Internet"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"), ("Safari/", "Safari"))
    systems = (("Windows", "Windows"), ("Android", "Android"), ("iPhone", "iPhone"), ("iPad", "iPad"), ("Mac OS X", "macOS"), ("CrOS", "ChromeOS"), ("Linux", "Linux"))
    browser = next((name for marker, name in browsers if marker in agent), "")
    system = next((name for marker, name in systems if marker in agent), "")
    if browser and system:
        return f"{browser} / {system}"
    return browser or system or agent[:60] or "?"


# --- remembered browsers ---------------------------------------------------------------------------


def browser_remembered(*, student: Student, request: HttpRequest) -> RememberedBrowser | None:
    token = _credential(request, BROWSER_COOKIE)
    if token is None:
        return None
    return RememberedBrowser.objects.filter(student=student, token_hash=_hash(token), revoked_at__isnull=True).first()


def browser_remember(*, student: Student, request: HttpRequest, response: HttpResponse) -> RememberedBrowser:
    """Remember this browser for ``student`` (after their password); sets the browser's cookie on
    ``response``. A browser shared by several students keeps one credential, with a row for each."""
    token = _credential(request, BROWSER_COOKIE) or secrets.token_urlsafe(32)
    existing = RememberedBrowser.objects.filter(student=student, token_hash=_hash(token), revoked_at__isnull=True).first()
    browser = existing or RememberedBrowser.objects.create(
        student=student, token_hash=_hash(token), label=browser_label(request), created_ip=client_ip(request)
    )
    if existing is None:
        biometric_action_record(action=BiometricAction.Action.BROWSER_ADDED, actor=student.user, student=student, browser=browser.pk, label=browser.label)
    _set_cookie(response, BROWSER_COOKIE, token, settings.FACELOGIN["DEVICE_DAYS"])
    return browser


def browsers_of(*, student: Student, request: HttpRequest | None = None) -> list[tuple[RememberedBrowser, bool]]:
    """The student's remembered browsers still in force, newest first, each with whether it is the
    browser of ``request``."""
    token = _credential(request, BROWSER_COOKIE) if request is not None else None
    mine = _hash(token) if token else None
    return [(b, b.token_hash == mine) for b in RememberedBrowser.objects.filter(student=student, revoked_at__isnull=True)]


def browser_revoke(*, student: Student, browser_id: int, actor) -> RememberedBrowser | None:
    """Stop a remembered browser's face sign-in (the student's own, or staff for them)."""
    browser = RememberedBrowser.objects.filter(pk=browser_id, student=student, revoked_at__isnull=True).first()
    if browser is None:
        return None
    browser.revoked_at, browser.revoked_by = timezone.now(), actor
    browser.save(update_fields=["revoked_at", "revoked_by"])
    biometric_action_record(action=BiometricAction.Action.BROWSER_REVOKED, actor=actor, student=student, browser=browser.pk, label=browser.label)
    return browser


# --- kiosks ----------------------------------------------------------------------------------------


def kiosk_of(request: HttpRequest) -> Kiosk | None:
    token = _credential(request, KIOSK_COOKIE)
    if token is None:
        return None
    return Kiosk.objects.filter(token_hash=_hash(token), revoked_at__isnull=True).first()


def kiosk_register(*, kiosk: Kiosk, actor, response: HttpResponse) -> Kiosk:
    """Make the browser of ``response`` this kiosk (staff, on the terminal itself). A new credential
    each time: a browser registered earlier for this kiosk stops being it."""
    token = secrets.token_urlsafe(32)
    kiosk.token_hash, kiosk.registered_at, kiosk.registered_by, kiosk.revoked_at = _hash(token), timezone.now(), actor, None
    kiosk.save(update_fields=["token_hash", "registered_at", "registered_by", "revoked_at"])
    biometric_action_record(action=BiometricAction.Action.KIOSK_ADDED, actor=actor, kiosk=kiosk.pk, name=kiosk.name)
    _set_cookie(response, KIOSK_COOKIE, token, KIOSK_COOKIE_DAYS)
    return kiosk


def kiosk_revoke(*, kiosk: Kiosk, actor) -> None:
    kiosk.revoked_at = timezone.now()
    kiosk.save(update_fields=["revoked_at"])
    biometric_action_record(action=BiometricAction.Action.KIOSK_REVOKED, actor=actor, kiosk=kiosk.pk, name=kiosk.name)


# --- the policy ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaceAlone:
    """Whether a recognised face may sign ``student`` in by itself on this request's browser."""

    allowed: bool
    kiosk: Kiosk | None = None
    browser: RememberedBrowser | None = None


def face_alone(*, student: Student, request: HttpRequest) -> FaceAlone:
    if settings.FACELOGIN["DEVICE_POLICY"] == "any":
        return FaceAlone(True)
    kiosk = kiosk_of(request)
    if kiosk is not None:
        return FaceAlone(True, kiosk=kiosk)
    browser = browser_remembered(student=student, request=request)
    return FaceAlone(browser is not None, browser=browser)


def face_alone_used(*, decision: FaceAlone) -> None:
    now = timezone.now()
    for thing in (decision.kiosk, decision.browser):
        if thing is not None:
            type(thing).objects.filter(pk=thing.pk).update(last_used_at=now)


def browser_may_be_known(request: HttpRequest) -> bool:
    """Whether this browser could let a face sign in alone (policy any, a kiosk, or some student
    remembered it): the face page warns in advance when it cannot."""
    if settings.FACELOGIN["DEVICE_POLICY"] == "any" or kiosk_of(request) is not None:
        return True
    token = _credential(request, BROWSER_COOKIE)
    return token is not None and RememberedBrowser.objects.filter(token_hash=_hash(token), revoked_at__isnull=True).exists()


__all__ = [
    "BROWSER_COOKIE",
    "KIOSK_COOKIE",
    "FaceAlone",
    "browser_label",
    "browser_may_be_known",
    "browser_remember",
    "browser_remembered",
    "browser_revoke",
    "browsers_of",
    "face_alone",
    "face_alone_used",
    "kiosk_of",
    "kiosk_register",
    "kiosk_revoke",
]
