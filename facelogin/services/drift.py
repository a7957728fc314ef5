"""Appearance drift: a face template learnt from the student's own face sign-ins (beyond the anchors).

After a face sign-in that passed the liveness challenge, the attempt's fused face track is offered here.
``facelogin.pipeline.drift`` decides whether it may join the student's gallery (clearly the student,
close to the registrar's photos, clearly away from everyone else); kept templates count once the
sign-in completed (its ticket was redeemed), at most ``FACELOGIN_DRIFT_TEMPLATES`` per student, oldest
out. Every template of a student goes when they report a face sign-in as not theirs (which of their
sign-ins were an impostor's cannot be told), when staff remove them in the admin, and with the rest of
their face data. A retrain takes them into the gallery: a kept template asks for one unless a retrain is
already pending, and not sooner than ``FACELOGIN_DRIFT_RETRAIN_MINUTES`` after the last version.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from facelogin.models import BiometricAction, ClassifierVersion, DriftTemplate, EnrolmentPhoto, RetrainRequest, Student
from facelogin.services import audit, biometrics

logger = logging.getLogger(__name__)


def drift_cap() -> int:
    return settings.FACELOGIN["DRIFT_TEMPLATES"]


def anchors_of(*, student: Student, model_name: str) -> np.ndarray:
    """The student's registrar-enrolled embeddings (accepted photos) for ``model_name``."""
    sealed = EnrolmentPhoto.objects.filter(
        student=student, state=EnrolmentPhoto.State.ACCEPTED, model_name=model_name, embedding__isnull=False
    ).values_list("embedding", flat=True)
    vectors = [biometrics.unseal_embedding(value) for value in sealed]
    return np.stack(vectors) if vectors else np.zeros((0, 512), np.float32)


def drift_template_offer(
    *, student: Student, ticket_id: int | None, embedding: np.ndarray | None, frames: int, model, liveness_passed: bool
) -> DriftTemplate | None:
    """Keep the sign-in's fused template for ``student`` when the rules allow; None when they do not.

    ``model`` is the TrainedModel that recognised them. Never without a passed liveness challenge: a
    photo held to the camera must not be able to teach the gallery anything.
    """
    from facelogin.pipeline.classify import normalise
    from facelogin.pipeline.drift import DriftRules, drift_verdict

    cap = drift_cap()
    if cap <= 0 or not liveness_passed or embedding is None or student.face_login_blocked:
        return None
    rules = DriftRules()
    # Most sign-ins stop here, in memory: the full check reads the database and scores every student.
    if float(model.gallery.score(normalise(embedding), [str(student.pk)])[0]) < model.threshold + rules.above_threshold:
        return None
    anchors = anchors_of(student=student, model_name=model.model_name)
    kept = [
        biometrics.unseal_embedding(value)
        for value in DriftTemplate.objects.filter(student=student, model_name=model.model_name).values_list("embedding", flat=True)
    ]
    verdict = drift_verdict(
        embedding,
        student=str(student.pk),
        gallery=model.gallery,
        anchors=anchors,
        kept=np.stack(kept) if kept else None,
        threshold=model.threshold,
        rules=rules,
    )
    if not verdict.admit:
        logger.debug("drift template for student %s not kept: %s", student.pk, verdict.reason)
        return None
    with transaction.atomic():
        template = DriftTemplate.objects.create(
            student=student,
            ticket_id=ticket_id,
            embedding=biometrics.seal_embedding(embedding),
            model_name=model.model_name,
            similarity=verdict.similarity,
            anchor_similarity=verdict.anchor_similarity,
            other_similarity=verdict.other_similarity,
            threshold=model.threshold,
            frames=min(frames, 32767),
        )
        older = list(
            DriftTemplate.objects.filter(student=student).order_by("-created_at", "-pk").values_list("pk", flat=True)[cap:]
        )
        if older:
            DriftTemplate.objects.filter(pk__in=older).delete()
        audit.biometric_action_record(
            action=BiometricAction.Action.DRIFT,
            student=student,
            template=template.pk,
            similarity=round(verdict.similarity, 4),
            anchor_similarity=round(verdict.anchor_similarity, 4),
            other_similarity=round(verdict.other_similarity, 4),
            replaced=len(older),
        )
    _retrain_for_drift()
    return template


def _retrain_for_drift() -> None:
    """Ask for a retrain unless one is pending; never sooner than DRIFT_RETRAIN_MINUTES after the newest
    version (a busy portal learns templates every minute; the gallery need not follow each one)."""
    from facelogin.services.training import retrain_request

    if settings.CELERY_TASK_ALWAYS_EAGER:
        # In-process tasks (the embedded default) cannot wait: the retrain would run inside this sign-in,
        # at every sign-in. The templates join the gallery at the next retrain (an enrolment's, or staff's).
        return
    newest = ClassifierVersion.objects.order_by("-created_at").values_list("created_at", flat=True).first()
    requested = RetrainRequest.objects.filter(singleton=1).values_list("requested_at", flat=True).first()
    if requested is not None and (newest is None or requested > newest):
        return  # a retrain is on its way (an enrolment's, or an earlier template's): it takes this one too
    wait = settings.FACELOGIN["RETRAIN_DEBOUNCE_SECONDS"]
    if newest is not None:
        ready_at = newest + timedelta(minutes=settings.FACELOGIN["DRIFT_RETRAIN_MINUTES"])
        wait = max(wait, int((ready_at - timezone.now()).total_seconds()) + 1)
    retrain_request(reason="face templates learnt from sign-ins", countdown=wait)


def drift_templates_confirm() -> int:
    """Templates whose sign-in completed (ticket redeemed) are confirmed; those whose ticket expired
    unredeemed, or was purged first, are deleted. Run before every retrain and every ticket purge."""
    confirmed = 0
    pending = DriftTemplate.objects.filter(confirmed_at__isnull=True)
    for pk, used_at in pending.filter(ticket__used_at__isnull=False).values_list("pk", "ticket__used_at"):
        confirmed += DriftTemplate.objects.filter(pk=pk, confirmed_at__isnull=True).update(confirmed_at=used_at)
    pending.filter(ticket__isnull=True).delete()
    pending.filter(ticket__used_at__isnull=True, ticket__expires_at__lt=timezone.now()).delete()
    return confirmed


def confirmed_templates(*, model_name: str):
    return DriftTemplate.objects.filter(confirmed_at__isnull=False, model_name=model_name)


def drift_templates_remove(*, templates: Iterable[DriftTemplate] | None = None, student: Student | None = None, actor=None, reason: str = "staff", retrain: bool = True) -> int:
    """Remove these templates (or all of ``student``'s); audited per student; a retrain drops them."""
    from facelogin.services.training import retrain_request

    rows = DriftTemplate.objects.all()
    if templates is not None:
        rows = rows.filter(pk__in=[t.pk for t in templates])
    if student is not None:
        rows = rows.filter(student=student)
    if templates is None and student is None:
        raise ValueError("say which templates to remove")
    counts: dict[int, int] = {}
    for student_id in rows.values_list("student_id", flat=True):
        counts[student_id] = counts.get(student_id, 0) + 1
    if not counts:
        return 0
    students = Student.objects.in_bulk(list(counts))
    with transaction.atomic():
        removed, _ = rows.delete()
        for student_id, n in counts.items():
            audit.biometric_action_record(
                action=BiometricAction.Action.DRIFT_REMOVE, actor=actor, student=students.get(student_id), templates=n, reason=reason
            )
    if retrain:
        retrain_request(reason=f"learnt face templates removed ({reason})", actor=actor)
    return removed
