"""A student's face data as one ZIP file, for a subject-access request handled by the registrar.

Holds the aligned face pictures (decrypted), every photo's record, the consent history and the face
sign-in attempts attributed to the student. Face templates (embeddings) are not exported: they are
only meaningful to this system's model, and a copy outside it would be a needless risk. The export is
audited.
"""

from __future__ import annotations

import io
import json
import zipfile

from django.utils import timezone

from facelogin.models import BiometricAction, FaceAttempt, FaceConsent, Student
from facelogin.services import audit, biometrics


def _when(value) -> str | None:
    return value.isoformat() if value else None


def student_face_data_export(*, student: Student, actor=None) -> bytes:
    photos = list(student.photos.order_by("created_at"))
    manifest = {
        "student_number": student.student_number,
        "full_name": student.full_name,
        "exported_at": timezone.now().isoformat(),
        "note": "Face templates (embeddings) are kept encrypted in the portal and are not exported.",
        "consents": [
            {
                "text_version": c.text_version,
                "method": c.method,
                "given_at": _when(c.given_at),
                "recorded_by": c.recorded_by.get_username() if c.recorded_by else None,
                "ended_at": _when(c.ended_at),
                "ended_reason": c.ended_reason or None,
            }
            for c in FaceConsent.objects.filter(student=student).select_related("recorded_by").order_by("given_at")
        ],
        "photos": [
            {
                "id": p.pk,
                "source_name": p.source_name,
                "state": p.state,
                "reason": p.reason or None,
                "uploaded_at": _when(p.created_at),
                "processed_at": _when(p.processed_at),
                "quality": p.quality,
                "face_picture": f"faces/{p.pk}.jpg" if p.crop else None,
            }
            for p in photos
        ],
        "learnt_face_templates": [
            {"learnt_at": _when(t.created_at), "sign_in_completed_at": _when(t.confirmed_at), "similarity": round(t.similarity, 4)}
            for t in student.drift_templates.order_by("created_at")
        ],
        "face_sign_in_attempts": [
            {"at": _when(a.at), "outcome": a.outcome, "reason": a.reason or None, "ip": a.ip, "browser": a.user_agent}
            for a in FaceAttempt.objects.filter(student=student).order_by("at")
        ],
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, ensure_ascii=False, indent=2))
        for photo in photos:
            if photo.crop:
                archive.writestr(f"faces/{photo.pk}.jpg", biometrics.unseal(photo.crop, context=b"crop"))
    audit.biometric_action_record(
        action=BiometricAction.Action.EXPORT, actor=actor, student=student, photos=sum(1 for p in photos if p.crop)
    )
    return buffer.getvalue()


def export_filename(student: Student) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in student.student_number)
    return f"face-data-{safe}-{timezone.now():%Y%m%d}.zip"

