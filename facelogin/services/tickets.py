"""Single-use face sign-in tickets.

A websocket cannot hand the browser a rotated session cookie, so a recognised face earns a ticket:
short-lived, bound to the browser's session, stored only as hashes. The page posts it at once to an
HTTP view, which redeems it and calls Django's ``login()`` (rotating the session key: no fixation).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from facelogin.models import FaceTicket, Student


class TicketRefused(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason  # unknown, used, expired, other_session, inactive
        super().__init__(reason)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def session_fingerprint(session_key: str) -> str:
    # Keyed so that the stored value says nothing about the session key itself.
    return _digest(f"{settings.SECRET_KEY}:session:{session_key}")


@dataclass(frozen=True)
class IssuedTicket:
    token: str
    expires_in: int
    ticket_id: int | None = None


def ticket_issue(*, student: Student, session_key: str, scores: dict) -> IssuedTicket:
    lifetime = settings.FACELOGIN["TICKET_SECONDS"]
    token = secrets.token_urlsafe(32)
    row = FaceTicket.objects.create(
        token_hash=_digest(token),
        session_hash=session_fingerprint(session_key),
        student=student,
        expires_at=timezone.now() + timedelta(seconds=lifetime),
        scores=scores,
    )
    return IssuedTicket(token=token, expires_in=lifetime, ticket_id=row.pk)


def ticket_redeem(*, token: str, session_key: str | None) -> FaceTicket:
    """Mark the ticket used and return it, or raise TicketRefused. Safe against a double post.

    A refusal is raised before anything is written, so the caller's transaction (the redemption view's,
    which also records the sign-in) needs no savepoint around this.
    """
    ticket = None
    if token:
        ticket = FaceTicket.objects.select_related("student__user").filter(token_hash=_digest(token)).first()
    if ticket is None:
        raise TicketRefused("unknown")
    if ticket.used_at is not None:
        raise TicketRefused("used")
    if ticket.expires_at <= timezone.now():
        raise TicketRefused("expired")
    if not session_key or not secrets.compare_digest(ticket.session_hash, session_fingerprint(session_key)):
        raise TicketRefused("other_session")  # not burnt: the rightful browser may still use it
    student = ticket.student
    if not student.may_sign_in or student.face_login_blocked:
        raise TicketRefused("inactive")
    # Claim with a conditional update: of two concurrent posts, exactly one changes the row.
    if not FaceTicket.objects.filter(pk=ticket.pk, used_at__isnull=True).update(used_at=timezone.now()):
        raise TicketRefused("used")
    return ticket


def tickets_purge_expired() -> int:
    from facelogin.services.drift import drift_templates_confirm

    drift_templates_confirm()  # before the tickets that tell which learnt templates completed are gone
    cutoff = timezone.now() - timedelta(days=1)
    deleted, _ = FaceTicket.objects.filter(expires_at__lt=cutoff).delete()
    return deleted
