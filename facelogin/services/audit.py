"""The audit trail: face sign-in attempts and actions on biometric data. Nothing biometric is logged."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from facelogin.models import BiometricAction, FaceAttempt, Student


def face_attempt_record(
    *,
    outcome: str,
    reason: str = "",
    ip: str | None = None,
    user_agent: str = "",
    student: Student | None = None,
    frames: int = 0,
    scores: dict | None = None,
    challenge: dict | None = None,
    seconds: float | None = None,
    frame_reasons: dict | None = None,
) -> FaceAttempt:
    return FaceAttempt.objects.create(
        outcome=outcome,
        reason=reason[:64],
        ip=ip,
        user_agent=user_agent[:400],
        student=student,
        frames=frames,
        scores=scores or {},
        challenge=challenge or {},
        seconds=round(seconds, 3) if seconds is not None else None,
        frame_reasons=frame_reasons or {},
    )


def biometric_action_record(*, action: str, actor=None, student: Student | None = None, **detail) -> BiometricAction:
    return BiometricAction.objects.create(action=action, actor=actor, student=student, detail=detail)


def audit_purge(*, older_than_days: int) -> int:
    cutoff = timezone.now() - timedelta(days=older_than_days)
    attempts, _ = FaceAttempt.objects.filter(at__lt=cutoff).delete()
    actions, _ = BiometricAction.objects.filter(at__lt=cutoff).delete()
    return attempts + actions
