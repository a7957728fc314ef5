"""A student reports a face sign-in that was not them: face sign-in stops for them until staff look."""

from __future__ import annotations

from django.db import transaction

from facelogin.models import BiometricAction, SignIn, Student
from facelogin.services import audit
from facelogin.services.drift import drift_templates_remove


class ReportRefused(Exception):
    pass


@transaction.atomic
def sign_in_report_not_me(*, student: Student, sign_in_id: int) -> SignIn:
    sign_in = SignIn.objects.filter(pk=sign_in_id, user=student.user, method=SignIn.Method.FACE).first()
    if sign_in is None:
        raise ReportRefused("no such face sign-in on this account")
    student.face_login_blocked = True
    student.face_login_blocked_reason = f"reported by the student: sign-in {sign_in.pk} at {sign_in.at:%Y-%m-%d %H:%M} was not them"
    student.save(update_fields=["face_login_blocked", "face_login_blocked_reason", "updated_at"])
    audit.biometric_action_record(
        action=BiometricAction.Action.REPORT, actor=student.user, student=student, sign_in=sign_in.pk, ip=sign_in.ip
    )
    # Which face sign-ins were an impostor's cannot be told: no template learnt from any of them stays.
    drift_templates_remove(student=student, actor=student.user, reason="reported", retrain=False)
    return sign_in
