"""The audit trail: face sign-in attempts, actions on biometric data, campus-app sign-ins. Nothing
biometric is logged, and no token or code."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from facelogin.models import BiometricAction, FaceAttempt, SsoEvent, Student


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
    sso_events, _ = SsoEvent.objects.filter(at__lt=cutoff).delete()
    return attempts + actions + sso_events


def sso_event_record(kind: str, *, application=None, user=None, ip: str | None = None, **detail) -> SsoEvent:
    """Audit a campus-app sign-in event (never a token or a code: only what they were)."""
    return SsoEvent.objects.create(
        kind=kind,
        application=application,
        client_id=getattr(application, "client_id", "") or detail.pop("client_id", ""),
        user=user if getattr(user, "pk", None) else None,
        ip=ip,
        detail=detail,
    )
