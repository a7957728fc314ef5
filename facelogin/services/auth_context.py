"""How the current portal session was authenticated: the one place that records it and reads it.

Each sign-in appends an event to the session (the method, when, and for a face whether the liveness
challenge was passed). Campus apps that sign their users in through the portal (OpenID Connect) get
what these events add up to: ``amr`` (RFC 8176 method values), ``acr`` (one of the portal's levels)
and ``auth_time``. Call ``auth_event_record`` *after* ``login()``: ``login()`` rotates the session
key, and empties the session when a different user signs in, so earlier events never carry over to
another person.

Levels, lowest first (docs/sso.md says what each one means and why they are ordered so):

=============================== ===========================================================
``urn:facelogin:acr:pwd``       the password
``urn:facelogin:acr:face``      the face, without a liveness challenge (switched off)
``urn:facelogin:acr:face-liveness`` the face, with the head-movement challenge passed
``urn:facelogin:acr:mfa``       face and password, both in this session (amr has ``mfa``)
=============================== ===========================================================
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.contrib.auth import SESSION_KEY as USER_SESSION_KEY

PWD = "pwd"
FACE = "face"
MFA = "mfa"
METHODS = (PWD, FACE)

ACR_PWD = "urn:facelogin:acr:pwd"
ACR_FACE = "urn:facelogin:acr:face"
# "-", not "+": an unencoded "+" in a hand-written authorize URL arrives as a space.
ACR_FACE_LIVENESS = "urn:facelogin:acr:face-liveness"
ACR_MFA = "urn:facelogin:acr:mfa"
ACR_LEVELS = (ACR_PWD, ACR_FACE, ACR_FACE_LIVENESS, ACR_MFA)  # step-up order, lowest first

EVENTS_SESSION_KEY = "auth_events"
SID_SESSION_KEY = "sso_sid"
MAX_EVENTS = 8  # a long session of step-ups keeps its newest events only


class UnknownAcr(ValueError):
    pass


@dataclass(frozen=True)
class AuthEvent:
    method: str
    at: int  # seconds since the epoch
    liveness: bool | None = None  # face only: True when the liveness challenge was passed
    user: str = ""  # who signed in (the session's user id), so a stray event never counts for another


@dataclass(frozen=True)
class AuthContext:
    amr: tuple[str, ...]
    acr: str
    auth_time: int

    @property
    def level(self) -> int:
        return acr_level(self.acr)

    def satisfies(self, acr: str) -> bool:
        return self.level >= acr_level(acr)

    @property
    def methods(self) -> frozenset[str]:
        return frozenset(self.amr) - {MFA}


def acr_level(acr: str) -> int:
    try:
        return ACR_LEVELS.index(acr)
    except ValueError:
        raise UnknownAcr(acr) from None


def auth_event_record(*, request, method: str, liveness: bool | None = None, at: float | None = None) -> AuthEvent:
    """Append a sign-in to the session of ``request`` (after ``login()``)."""
    if method not in METHODS:
        raise ValueError(f"unknown sign-in method {method!r}; expected one of {METHODS}")
    session = request.session
    event = AuthEvent(
        method=method,
        at=int(at if at is not None else time.time()),
        liveness=bool(liveness) if method == FACE and liveness is not None else None,
        user=str(session.get(USER_SESSION_KEY, "")),
    )
    events = [e for e in session.get(EVENTS_SESSION_KEY, []) if isinstance(e, dict)]
    events.append({"method": event.method, "at": event.at, "liveness": event.liveness, "user": event.user})
    session[EVENTS_SESSION_KEY] = events[-MAX_EVENTS:]
    session_sid(session)
    return event


def auth_events_of(session: Mapping) -> list[AuthEvent]:
    """The session's sign-in events by its current user, oldest first."""
    user = str(session.get(USER_SESSION_KEY, ""))
    events = []
    for raw in session.get(EVENTS_SESSION_KEY, []) or []:
        try:
            event = AuthEvent(method=raw["method"], at=int(raw["at"]), liveness=raw.get("liveness"), user=str(raw.get("user", "")))
        except (KeyError, TypeError, ValueError):
            continue  # a malformed entry proves nothing
        if event.method in METHODS and user and event.user == user:
            events.append(event)
    return events


def auth_context_of(session: Mapping, *, max_age: int | None = None, now: float | None = None) -> AuthContext | None:
    """What the session's sign-ins add up to; only those of the last ``max_age`` seconds when given.
    None when nothing counts (signed out, a sign-in this module never saw, or all too old)."""
    return auth_context_from_events(auth_events_of(session), max_age=max_age, now=now)


def auth_context_from_events(events: Iterable[AuthEvent], *, max_age: int | None = None, now: float | None = None) -> AuthContext | None:
    events = list(events)
    if max_age is not None:
        cutoff = (now if now is not None else time.time()) - max_age
        events = [e for e in events if e.at >= cutoff]
    if not events:
        return None
    faces = [e for e in events if e.method == FACE]
    passwords = [e for e in events if e.method == PWD]
    auth_time = max(e.at for e in events)
    if faces and passwords:
        return AuthContext(amr=(FACE, PWD, MFA), acr=ACR_MFA, auth_time=auth_time)
    if faces:
        live = any(e.liveness for e in faces)
        return AuthContext(amr=(FACE,), acr=ACR_FACE_LIVENESS if live else ACR_FACE, auth_time=auth_time)
    return AuthContext(amr=(PWD,), acr=ACR_PWD, auth_time=auth_time)


def missing_method(context: AuthContext | None, acr: str) -> str:
    """Which sign-in brings the session up to ``acr``: "face" or "pwd"."""
    if acr_level(acr) <= acr_level(ACR_PWD):
        return PWD
    if acr == ACR_MFA and context is not None and FACE in context.methods:
        return PWD
    return FACE


def session_sid(session) -> str:
    """The session's opaque identifier for campus apps (the ID token's ``sid``, back-channel logout).

    Not the session key: that is a credential, and it changes at every sign-in."""
    sid = session.get(SID_SESSION_KEY)
    if not sid:
        sid = secrets.token_urlsafe(24)
        session[SID_SESSION_KEY] = sid
    return sid
