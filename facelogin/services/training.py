"""Training, calibrating, activating and rolling back the per-deployment classifier.

Retraining is debounced: every change to enrolment bumps one token and schedules a task with that
token after ``FACELOGIN_RETRAIN_DEBOUNCE_SECONDS``; a task whose token is no longer the newest does
nothing, so 500 uploads end in one retrain. Activation is one transaction; a failed or worse-than-
required training leaves the previous version active.
"""

from __future__ import annotations

import logging
import time
import traceback
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from facelogin.models import ClassifierVersion, EnrolmentPhoto, RetrainRequest, Student
from facelogin.services import audit, biometrics

logger = logging.getLogger(__name__)


class TrainingRefused(Exception):
    pass


# --- requests and debouncing ------------------------------------------------------------------
def retrain_request(*, reason: str, actor=None, countdown: int | None = None) -> int:
    """Ask for a retrain soon; returns the token the scheduled task carries."""
    with transaction.atomic():
        request, _ = RetrainRequest.objects.select_for_update().get_or_create(singleton=1)
        request.token = F("token") + 1
        request.requested_at = timezone.now()
        request.reason = reason[:200]
        request.save()
        request.refresh_from_db()
        token = request.token
        delay = settings.FACELOGIN["RETRAIN_DEBOUNCE_SECONDS"] if countdown is None else countdown
        actor_id = actor.pk if actor is not None else None
        transaction.on_commit(lambda: _schedule(token, reason, actor_id, delay), robust=True)
    return token


def _schedule(token: int, reason: str, actor_id: int | None, delay: int) -> None:
    from kombu.exceptions import OperationalError

    from facelogin import tasks

    try:
        tasks.retrain_classifier.apply_async(args=[token], kwargs={"trigger": reason, "actor_id": actor_id}, countdown=delay)
    except OperationalError:
        # The request (token) is stored; requeue_photos asks again when the broker is back.
        logger.warning("task queue unavailable: retrain %s will be requested again by requeue_photos", token)


def newest_retrain_token() -> int:
    return RetrainRequest.objects.filter(singleton=1).values_list("token", flat=True).first() or 0


# --- the gallery --------------------------------------------------------------------------------
def gallery_students():
    """Students whose faces may be recognised: allowed to sign in and not blocked."""
    return Student.objects.filter(
        status__in=settings.FACELOGIN["SIGNIN_STATUSES"], user__is_active=True, face_login_blocked=False
    )


def gallery_arrays(*, model_name: str) -> tuple[np.ndarray, list[str]]:
    rows = EnrolmentPhoto.objects.filter(
        state=EnrolmentPhoto.State.ACCEPTED,
        model_name=model_name,
        student__in=gallery_students(),
        embedding__isnull=False,
    ).values_list("student_id", "embedding")
    labels, vectors = [], []
    for student_id, sealed in rows.iterator(chunk_size=2000):
        labels.append(str(student_id))
        vectors.append(biometrics.unseal_embedding(sealed))
    if not vectors:
        return np.zeros((0, 512), dtype=np.float32), []
    return np.stack(vectors).astype(np.float32), labels


# --- training -----------------------------------------------------------------------------------
def classifier_train(*, trigger: str, actor=None, token: int | None = None) -> ClassifierVersion | None:
    """Train, calibrate and (if good enough) activate a new version. None when superseded."""
    from facelogin.pipeline.decide import train_model
    from facelogin.services.recognition import model_name as current_model_name

    if token is not None and token != newest_retrain_token():
        logger.info("retrain token %s superseded; skipping", token)
        return None
    _fail_abandoned_trainings(token)
    config = settings.FACELOGIN
    model_name = current_model_name()
    version = ClassifierVersion.objects.create(
        trigger=trigger[:200], triggered_by=actor, model_name=model_name, classifier=config["CLASSIFIER"], request_token=token
    )
    try:
        if config["TRAINING_PAUSE_SECONDS"]:
            time.sleep(config["TRAINING_PAUSE_SECONDS"])  # lets the crash-recovery test kill a worker here
        embeddings, labels = gallery_arrays(model_name=model_name)
        students = len(set(labels))
        version.gallery_students, version.gallery_embeddings = students, len(labels)
        if students < 2:
            # Thresholds are calibrated on enrolled students against each other: one is not enough.
            raise TrainingRefused("at least two students need accepted photos before face sign-in can be calibrated")
        trained = train_model(
            embeddings, labels, kind=config["CLASSIFIER"], target_fpir=config["TARGET_FPIR"], model_name=model_name,
            ceiling=config["MAX_THRESHOLD"],
        )
        version.thresholds = _json_safe({"similarity": trained.threshold, **trained.calibration.to_dict()})
        version.metrics = _json_safe(trained.metrics)
        version.artifact = biometrics.seal(trained.to_bytes(), context=b"classifier")
        accuracy = trained.metrics.get("holdout", {}).get("rank1_accuracy")
        if accuracy is not None and accuracy < config["MIN_HOLDOUT_ACCURACY"]:
            version.status = ClassifierVersion.Status.REJECTED
            version.error = f"held-out accuracy {accuracy:.3f} is below FACELOGIN_MIN_HOLDOUT_ACCURACY"
            version.save()
            return version
        version.status = ClassifierVersion.Status.READY
        version.save()
    except Exception as exc:  # noqa: BLE001 - recorded on the version; the old one stays active
        version.status = ClassifierVersion.Status.FAILED
        version.error = str(exc) if isinstance(exc, TrainingRefused) else traceback.format_exc(limit=5)
        version.save()
        logger.warning("classifier training failed: %s", exc)
        return version
    return classifier_activate(version=version, actor=actor, action=audit.BiometricAction.Action.RETRAIN)


def _json_safe(value):
    """Metrics as plain JSON (numpy scalars and infinities made portable)."""
    import json
    import math

    def clean(item):
        if isinstance(item, dict):
            return {str(k): clean(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [clean(v) for v in item]
        if isinstance(item, (np.floating, float)):
            return float(item) if math.isfinite(float(item)) else None
        if isinstance(item, np.integer):
            return int(item)
        return item

    return json.loads(json.dumps(clean(value)))


def _fail_abandoned_trainings(token: int | None) -> None:
    """A worker killed mid-training leaves a 'training' row; mark it so nobody waits on it.

    The same token arriving again means its earlier run died (acks_late redelivers the message);
    any other training row older than the task time limit cannot still be running.
    """
    stale = timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
    abandoned = Q(created_at__lt=stale) | (Q(request_token=token) if token is not None else Q(pk__in=[]))
    ClassifierVersion.objects.filter(abandoned, status=ClassifierVersion.Status.TRAINING).update(
        status=ClassifierVersion.Status.FAILED, error="abandoned (the worker stopped during training)"
    )


@transaction.atomic
def classifier_activate(*, version: ClassifierVersion, actor=None, action: str = "rollback") -> ClassifierVersion:
    from facelogin.services.recognition import model_name as current_model_name

    version = ClassifierVersion.objects.select_for_update().get(pk=version.pk)
    if version.status != ClassifierVersion.Status.READY or not version.artifact:
        raise TrainingRefused("only a version that trained successfully can be activated")
    if version.model_name != current_model_name():
        raise TrainingRefused("this version belongs to another face model")
    ClassifierVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
    version.is_active = True
    version.activated_at = timezone.now()
    version.save(update_fields=["is_active", "activated_at"])
    audit.biometric_action_record(action=action, actor=actor, version=version.pk, students=version.gallery_students)
    return version


def active_version_id(*, model_name: str) -> int | None:
    return (
        ClassifierVersion.objects.filter(is_active=True, model_name=model_name).values_list("pk", flat=True).first()
    )


def load_trained_model(version_id: int):
    from facelogin.pipeline.decide import TrainedModel

    sealed = ClassifierVersion.objects.filter(pk=version_id).values_list("artifact", flat=True).first()
    if not sealed:
        return None
    return TrainedModel.from_bytes(biometrics.unseal(sealed, context=b"classifier"))
