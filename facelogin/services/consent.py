"""Consent to face sign-in: required before any photo is enrolled; withdrawing it deletes the face data.

A consent names the text version the student agreed to (``FACELOGIN_CONSENT_VERSION``), how it was
given and who recorded it. At most one consent per student is active; ended ones stay as history.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from facelogin.models import BiometricAction, FaceConsent, Student
from facelogin.services import audit


class ConsentRequired(Exception):
    """Face data may not be enrolled for a student without an active consent."""

    def __init__(self, student: Student) -> None:
        super().__init__(f"{student} has not consented to face sign-in")
        self.student = student


def current_text_version() -> str:
    return settings.FACELOGIN["CONSENT_VERSION"]


def consent_active(*, student: Student) -> FaceConsent | None:
    return FaceConsent.objects.filter(student=student, ended_at__isnull=True).first()


def consent_require(*, student: Student) -> FaceConsent:
    consent = consent_active(student=student)
    if consent is None:
        raise ConsentRequired(student)
    return consent


def _active_locked(student: Student) -> FaceConsent | None:
    return FaceConsent.objects.select_for_update().filter(student=student, ended_at__isnull=True).first()


def _end(consent: FaceConsent, *, actor, reason: str) -> None:
    consent.ended_at, consent.ended_by, consent.ended_reason = timezone.now(), actor, reason
    consent.save(update_fields=["ended_at", "ended_by", "ended_reason"])


@transaction.atomic
def consent_record(*, student: Student, method: str, actor=None) -> FaceConsent:
    """Record consent to the current text. Consent to an older text is ended as renewed."""
    version = current_text_version()
    active = _active_locked(student)
    if active is not None and active.text_version == version:
        return active
    if active is not None:
        _end(active, actor=actor, reason=FaceConsent.Ended.RENEWED)
    consent = FaceConsent.objects.create(student=student, text_version=version, method=method, recorded_by=actor)
    audit.biometric_action_record(
        action=BiometricAction.Action.CONSENT, actor=actor, student=student, version=version, method=method
    )
    return consent


def consent_withdraw(*, student: Student, actor=None) -> int:
    """End the student's consent and delete their face data; returns the photos deleted."""
    from facelogin.services.enrolment import face_data_delete

    with transaction.atomic():
        active = _active_locked(student)
        if active is not None:
            _end(active, actor=actor, reason=FaceConsent.Ended.WITHDRAWN)
            audit.biometric_action_record(
                action=BiometricAction.Action.WITHDRAW, actor=actor, student=student, version=active.text_version
            )
        # Deleting even without an active consent: data enrolled before consent records existed goes too.
        return face_data_delete(students=[student], actor=actor)
