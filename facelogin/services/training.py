"""Training, calibrating, activating and rolling back the per-deployment classifier.

Retraining is debounced: every change to enrolment bumps one token and schedules a task with that
token after ``FACELOGIN_RETRAIN_DEBOUNCE_SECONDS``; a task whose token is no longer the newest does
nothing, so 500 uploads end in one retrain. Activation is one transaction; a failed or worse-than-
required training leaves the previous version active.

A large gallery is retrained incrementally: the new version starts from the active one, reloads only
the students whose photos changed (``TrainedModel.add_student`` / ``remove_student``, no refit for the
distance classifiers) and recalibrates the threshold on the whole updated gallery (calibration samples
a bounded number of probes and students). ``python -m bench.enrol_scale`` measured the full retrain at
30,000 students at 2 to 4 minutes, most of it the held-out check, against the 60 s an enrolment may
take to become active. A full retrain still runs when the gallery is smaller than
``FACELOGIN_INCREMENTAL_MIN_STUDENTS``, when more than ``FACELOGIN_INCREMENTAL_MAX_CHANGED`` of it
changed, when the active version was built on a full retrain more than ``FACELOGIN_FULL_RETRAIN_HOURS``
ago or ``FACELOGIN_INCREMENTAL_MAX_STEPS`` steps back, for another classifier kind, or when the active
version cannot be read (the limits are in ``settings.FACELOGIN``, read at every retrain).

An incremental version stores only its changes to the version it started from (the reloaded
students' embeddings, the dropped students, the new calibration: kilobytes, where the whole model is
300 MB at 30,000 students). ``load_trained_model`` applies them to that version, which a process that
follows the active version (every daphne process, and the worker that trained it) already holds,
so neither side pickles, seals, stores, reads or unpickles the unchanged gallery again.
"""

from __future__ import annotations

import copy
import logging
import time
import traceback
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Max, Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext

from facelogin.models import ClassifierVersion, EnrolmentPhoto, RetrainRequest, Student
from facelogin.services import audit, biometrics, classifier_store

logger = logging.getLogger(__name__)


class TrainingRefused(Exception):
    pass


# Incremental retraining (see the module doc). Its limits are settings, read at every retrain:
# FACELOGIN_INCREMENTAL_MIN_STUDENTS, _INCREMENTAL_MAX_CHANGED, _FULL_RETRAIN_HOURS and
# _INCREMENTAL_MAX_STEPS (portal/settings.py explains their defaults).
# A photo stamped (processed_at) just before the active version read the gallery may have committed
# just after: students with photos stamped this long before the version was created are reloaded too.
# Saves commit at once (SQLite's lock wait is 20 s), so a minute is ample.
CHANGE_SLACK = timedelta(seconds=60)


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


def _gallery_photos(*, model_name: str):
    return EnrolmentPhoto.objects.filter(
        state=EnrolmentPhoto.State.ACCEPTED,
        model_name=model_name,
        student__in=gallery_students(),
        embedding__isnull=False,
    )


def gallery_arrays(*, model_name: str, students: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Every gallery embedding (unsealed) with its student id; only those ``students``' when given.

    The registrar's accepted photos, then the confirmed face templates learnt from sign-ins
    (``facelogin.services.drift``) of the same students: extra rows of the student, searched alike.
    """
    from facelogin.services.drift import confirmed_templates

    rows = _gallery_photos(model_name=model_name)
    # Only beside the student's own photos: templates never make a student searchable on their own.
    learnt = confirmed_templates(model_name=model_name).filter(student_id__in=rows.values("student_id"))
    if students is not None:
        rows = rows.filter(student_id__in=[int(s) for s in students])
        learnt = learnt.filter(student_id__in=[int(s) for s in students])
    labels, vectors = [], []
    for query in (rows, learnt):
        for student_id, sealed in query.values_list("student_id", "embedding").iterator(chunk_size=2000):
            labels.append(str(student_id))
            vectors.append(biometrics.unseal_embedding(sealed))
    if not vectors:
        return np.zeros((0, 512), dtype=np.float32), []
    return np.stack(vectors).astype(np.float32), labels


def gallery_state(*, model_name: str) -> dict[str, tuple[int, datetime]]:
    """Per gallery student: (gallery rows, newest change), without reading any embedding.

    Accepted embeddings are written only by photo processing, which stamps ``processed_at``
    (re-embedding changes ``model_name``: another gallery), and learnt templates count from their
    ``confirmed_at``, so a student whose count and stamps are unchanged since a version was built has the
    same rows in it.
    """
    from facelogin.services.drift import confirmed_templates

    rows = (
        _gallery_photos(model_name=model_name)
        .order_by()  # no default ordering in the GROUP BY
        .values("student_id")
        .annotate(photos=Count("pk"), newest=Max(Coalesce("processed_at", "created_at")))
    )
    state = {str(r["student_id"]): (r["photos"], r["newest"]) for r in rows}
    learnt = (
        confirmed_templates(model_name=model_name)
        .filter(student__in=gallery_students())
        .order_by()
        .values("student_id")
        .annotate(rows=Count("pk"), newest=Max("confirmed_at"))
    )
    for r in learnt:
        key = str(r["student_id"])
        if key in state:  # templates of a student without accepted photos are not searched
            photos, newest = state[key]
            state[key] = (photos + r["rows"], max(newest, r["newest"]))
    return state


# --- training -----------------------------------------------------------------------------------
def classifier_train(
    *, trigger: str, actor=None, token: int | None = None, full: bool = False
) -> ClassifierVersion | None:
    """Train, calibrate and (if good enough) activate a new version. None when superseded.

    Incremental from the active version when it may be (see the module doc), unless ``full``.
    """
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
        update = None
        _stage(version, 10, "reading")
        from facelogin.services.drift import drift_templates_confirm

        drift_templates_confirm()  # sign-ins completed since: their templates join this version
        if not full:
            try:
                update = _train_incremental(model_name=model_name)
            except Exception:  # noqa: BLE001 - a full retrain still gives a correct version
                logger.exception("incremental retrain failed; retraining fully")
        if update is not None:
            trained, stored = update  # the whole new model, and what is stored: its changes
            version.gallery_students, version.gallery_embeddings = trained.gallery.n_labels, trained.gallery.n_rows
        else:
            embeddings, labels = gallery_arrays(model_name=model_name)
            _stage(version, 30, "training")
            students = len(set(labels))
            version.gallery_students, version.gallery_embeddings = students, len(labels)
            if students < 2:
                # Thresholds are calibrated on enrolled students against each other: one is not enough.
                raise TrainingRefused("at least two students need accepted photos before face sign-in can be calibrated")
            trained = stored = train_model(
                embeddings, labels, kind=config["CLASSIFIER"], target_fpir=config["TARGET_FPIR"], model_name=model_name,
                ceiling=config["MAX_THRESHOLD"],
            )
        _stage(version, 85, "storing")
        version.thresholds = _json_safe({"similarity": trained.threshold, **trained.calibration.to_dict()})
        version.metrics = _json_safe(trained.metrics)
        version.progress, version.stage = 100, ""
        accuracy = trained.metrics.get("holdout", {}).get("rank1_accuracy")
        if accuracy is not None and accuracy < config["MIN_HOLDOUT_ACCURACY"]:
            # The row keeps its metrics; the model is not stored: it can never be activated, and at
            # 30,000 students it would be 308 MB nothing reads.
            version.status = ClassifierVersion.Status.REJECTED
            version.error = f"held-out accuracy {accuracy:.3f} is below FACELOGIN_MIN_HOLDOUT_ACCURACY"
            version.save()
            return version
        with transaction.atomic():  # the row is ready only with every part of its model
            classifier_store.classifier_model_write(version=version, model=stored)
            version.status = ClassifierVersion.Status.READY
            version.save()
        _remember(version, trained)  # the next incremental step here starts from it
    except Exception as exc:  # noqa: BLE001 - recorded on the version; the old one stays active
        version.artifact, version.artifact_parts = None, 0  # its parts, if any, were rolled back
        version.status = ClassifierVersion.Status.FAILED
        version.error = str(exc) if isinstance(exc, TrainingRefused) else traceback.format_exc(limit=5)
        version.save()
        logger.warning("classifier training failed: %s", exc)
        return version
    try:
        version = classifier_activate(version=version, actor=actor, action=audit.BiometricAction.Action.RETRAIN)
    except TrainingRefused as refused:
        if update is None:
            raise
        # Stored as changes to a version whose model was pruned meanwhile (a retrain elsewhere moved the
        # active version on, and its retention cleared the old chain): nothing could load this one.
        version.status, version.error = ClassifierVersion.Status.FAILED, str(refused)
        version.save(update_fields=["status", "error"])
        logger.warning("incremental version %s cannot be activated (%s); retraining fully", version.pk, refused)
        return classifier_train(trigger=trigger, actor=actor, token=token, full=True)
    _prune_after_retrain()
    return version


def _prune_after_retrain() -> None:
    """Retention after a retrain that activated a version; a failure is logged, never the retrain's."""
    try:
        report = prune_classifier_artifacts()
    except Exception:  # noqa: BLE001 - the new version is active; the next retrain prunes again
        logger.exception("pruning old classifier versions failed; the new version is active all the same")
        return
    if report.pruned:
        logger.info("%s", report)


def _stage(version: ClassifierVersion, progress: int, stage: str) -> None:
    """Visible at once to the admin (another process): an update outside the version's own save."""
    version.progress, version.stage = progress, stage
    ClassifierVersion.objects.filter(pk=version.pk).update(progress=progress, stage=stage)


def _train_incremental(*, model_name: str):
    """(the active version with its changed students reloaded and its threshold recalibrated, the
    changes to store), or None when a full retrain is due instead."""
    from facelogin.pipeline.calibrate import calibrate
    from facelogin.pipeline.classify import Gallery, IncrementalClassifier
    from facelogin.pipeline.errors import ModelUnavailable

    config = settings.FACELOGIN
    base = (
        ClassifierVersion.objects.filter(is_active=True, model_name=model_name, classifier=config["CLASSIFIER"])
        .only("pk", "created_at", "gallery_students", "metrics")
        .first()
    )
    if base is None or base.gallery_students < config["INCREMENTAL_MIN_STUDENTS"]:
        return None
    lineage = (base.metrics or {}).get("incremental") or {}
    full_at = datetime.fromisoformat(lineage["full_at"]) if lineage.get("full_at") else base.created_at
    if (
        timezone.now() - full_at > timedelta(hours=config["FULL_RETRAIN_HOURS"])
        or lineage.get("steps", 0) >= config["INCREMENTAL_MAX_STEPS"]
    ):
        return None
    current = gallery_state(model_name=model_name)
    try:
        model = load_trained_model(base.pk)
    except (ModelUnavailable, biometrics.SealError) as exc:  # e.g. sealed under a key since removed
        logger.warning("active classifier version %s unreadable (%s): retraining fully", base.pk, exc)
        return None
    if (
        model is None
        or model.model_name != model_name
        or not isinstance(model.classifier, IncrementalClassifier)
        or getattr(model.classifier, "gallery", None) is not model.gallery  # stored changes are one gallery's
    ):
        return None
    enrolled = dict(zip(model.gallery.labels, model.gallery.counts().tolist()))
    since = base.created_at - CHANGE_SLACK
    reload = sorted(s for s, (photos, newest) in current.items() if enrolled.get(s) != photos or newest >= since)
    drop = sorted(set(enrolled) - set(current))
    if len(reload) + len(drop) > config["INCREMENTAL_MAX_CHANGED"] * len(enrolled) or len(current) < 2:
        return None
    started = time.perf_counter()
    embeddings, labels = gallery_arrays(model_name=model_name, students=reload)
    changes = _with_gallery(model, Gallery.from_arrays(embeddings, labels, **_gallery_options(model.gallery)))
    model = _apply(_copy(model), changes, drop)  # the loaded version may be in use: change a copy
    gallery = model.gallery
    # The whole updated gallery, as a full retrain calibrates it: calibrate() samples at most 3,000
    # probes against 2,000 students, so this costs the same at any size (a few seconds at 30,000).
    calibration = calibrate(
        gallery.embeddings,
        gallery.row_labels,
        target_fpir=config["TARGET_FPIR"],
        top_k=model.calibration.top_k,
        floor=model.calibration.floor,
        method=model.calibration.method,
        seed=model.calibration.seed,
        ceiling=config["MAX_THRESHOLD"],
    )
    metrics = {
        # The classifier was not refitted: the held-out check of the full retrain it builds on stands.
        "holdout": model.metrics.get("holdout"),
        "incremental": {
            "base_version": base.pk,
            "full_version": lineage.get("full_version", base.pk),
            "full_at": full_at.isoformat(),
            "steps": lineage.get("steps", 0) + 1,
            "students_reloaded": len(reload),
            "students_dropped": len(drop),
        },
        "fit_seconds": time.perf_counter() - started,
        "threshold": calibration.threshold,
        "calibration_genuine_accept_rate": calibration.genuine_accept_rate,
    }
    if metrics["holdout"] is None:
        del metrics["holdout"]
    model = replace(model, calibration=calibration, metrics=metrics, created_at=time.time())
    changes = replace(changes, calibration=calibration, metrics={**metrics, _CHANGES: {"of": base.pk, "drop": drop}})
    return model, changes


# --- versions stored as changes ------------------------------------------------------------------
_CHANGES = "changes_to_version"  # in a stored model's metrics: it holds changes to that version
# The model this process loaded or trained last, keyed by version and creation time (see _key).
# Shared with whoever asked for it: never changed in place.
_loaded: tuple[tuple[int, datetime], object] | None = None


def _gallery_options(gallery) -> dict:
    return {"top_k": gallery.top_k, "exact_rows": gallery.exact_rows, "shortlist": gallery.shortlist}


def _with_gallery(model, gallery):
    """``model`` around another gallery (the classifier shares it, as the distance classifiers do)."""
    classifier = copy.copy(model.classifier)
    classifier.gallery = gallery
    return replace(model, classifier=classifier, gallery=gallery)


def _copy(model):
    """A new version of ``model`` to change while the one in use keeps serving: its gallery shares the
    rows (``Gallery.copy``), so a serving process holds 100,000 students' rows once, not twice."""
    return _with_gallery(model, model.gallery.copy())


def _apply(model, changes, drop: list[str]):
    """``model`` (changed in place) with ``drop`` and the students in ``changes`` removed, then those
    students added back from ``changes``; calibration and metrics from ``changes``."""
    for student in [*drop, *changes.gallery.labels]:
        model.remove_student(student)
    for student in changes.gallery.labels:
        model.add_student(student, changes.gallery.embeddings_of(student))
    metrics = {k: v for k, v in changes.metrics.items() if k != _CHANGES}
    return replace(model, calibration=changes.calibration, metrics=metrics, created_at=changes.created_at)


def _remember(version: ClassifierVersion, model) -> None:
    global _loaded
    _loaded = ((version.pk, version.created_at), model)


def forget_loaded_model() -> None:
    """Drop the model this process keeps (tests: a fresh process)."""
    global _loaded
    _loaded = None


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

    # Not the model itself: at 30,000 students it is 300 MB, and reading it back took seconds.
    version = (
        ClassifierVersion.objects.select_for_update()
        .defer("artifact")
        .annotate(artifact_bytes=classifier_store.stored_bytes())
        .get(pk=version.pk)
    )
    if version.status != ClassifierVersion.Status.READY:
        raise TrainingRefused(gettext("Only a version that trained successfully can be activated."))
    if not version.artifact_bytes:  # a ready version always stores its model until it is pruned
        raise TrainingRefused(
            gettext(
                "Version %(version)s cannot be activated: its stored model was pruned to save space "
                "(FACELOGIN_KEEP_CLASSIFIER_VERSIONS). Activate a version that still has its model, or retrain."
            )
            % {"version": version.pk}
        )
    if (version.metrics or {}).get("incremental"):
        pruned_base = _first_without_model(version.pk, _ready_versions())
        if pruned_base is not None:
            raise TrainingRefused(
                gettext(
                    "Version %(version)s cannot be activated: it is stored as changes to version %(base)s, "
                    "whose model was pruned to save space. Activate a version that still has its model, or retrain."
                )
                % {"version": version.pk, "base": pruned_base}
            )
    if version.model_name != current_model_name():
        raise TrainingRefused(gettext("This version belongs to another face model."))
    for vid in _chain(version.pk, _ready_versions()):
        problem = classifier_store.classifier_model_problem(version_id=vid)
        if problem is not None:
            logger.error("classifier version %s cannot be activated: version %s's stored model is torn (%s)", version.pk, vid, problem)
            raise TrainingRefused(
                gettext(
                    "Version %(version)s cannot be activated: the stored model of version %(torn)s is incomplete "
                    "(%(problem)s). Activate another version, or retrain."
                )
                % {"version": version.pk, "torn": vid, "problem": problem}
            )
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
    """The version's TrainedModel, None when it has none. Shared with this process's other callers
    (kept for the next call): copy it before changing it.

    The version is always read from the database. One stored as changes is built from the version it
    changed (that one likewise, down to a full version); a version it needs comes from memory when it
    is the model this process loaded or trained last, as it is for a process following the active
    version and for the worker that trained it.
    """
    global _loaded
    from facelogin.pipeline.errors import ModelUnavailable

    pending = []  # stored changes, newest first
    vid, shared = version_id, False
    while True:
        held = _loaded
        if pending and held is not None and held[0] == _key(vid):  # a base this process holds
            model, shared = held[1], True
            break
        model = classifier_store.classifier_model_read(version_id=vid)
        if model is None:
            if pending:
                raise ModelUnavailable(f"classifier version {vid}, which version {version_id} changes, has no model")
            return None
        changes_to = model.metrics.get(_CHANGES)
        if changes_to is None:
            break
        if held is not None and held[0] == _key(vid):  # this very version, built here before
            model, shared = held[1], True
            break
        pending.append(model)
        vid = changes_to["of"]
    if pending:
        model = _copy(model) if shared else model
        for changes in reversed(pending):
            model = _apply(model, changes, changes.metrics[_CHANGES]["drop"])
    _loaded = (_key(version_id), model)
    return model


def _key(version_id: int) -> tuple[int, datetime | None]:
    # With the creation time: a test database reuses primary keys.
    return version_id, ClassifierVersion.objects.filter(pk=version_id).values_list("created_at", flat=True).first()


# --- retention -----------------------------------------------------------------------------------
# A full version's stored model is the whole gallery (300 MB at 30,000 students) and every retrain
# adds a version. Rows are never deleted (they are the history of what decided sign-ins, and an
# incremental version is stored as changes to an earlier one); only models nothing needs are cleared.
_PRUNED = "model_pruned"  # in a pruned version's metrics: when, and how many bytes were cleared


@dataclass(frozen=True)
class PruneReport:
    """What ``prune_classifier_artifacts`` cleared (in a dry run: would clear)."""

    pruned: tuple[int, ...]  # versions whose stored model was cleared
    bytes_freed: int
    kept: tuple[int, ...]  # ready versions that keep their model
    active: int | None
    keep: int
    dry_run: bool = False

    @property
    def count(self) -> int:
        return len(self.pruned)

    def __str__(self) -> str:
        kept = f"{len(self.kept)} ready version(s) keep their models (active: {_name(self.active)}, keep: {self.keep})"
        if not self.pruned:
            return f"nothing to prune; {kept}"
        versions = ", ".join(_name(pk) for pk in self.pruned)
        size = f"{self.bytes_freed:,} bytes ({self.bytes_freed / 1e6:.1f} MB)"
        if self.dry_run:
            return f"dry run: would prune {self.count} classifier version(s) ({versions}), freeing {size}; {kept}"
        return f"pruned {self.count} classifier version(s) ({versions}), freed {size}; {kept}"


def model_pruned(version: ClassifierVersion) -> bool:
    """Was this version's stored model cleared by ``prune_classifier_artifacts``?"""
    return bool((version.metrics or {}).get(_PRUNED))


def _name(version_id: int | None) -> str:
    return "none" if version_id is None else f"v{version_id}"


def _ready_versions(*, lock: bool = False) -> dict[int, tuple[int | None, int]]:
    """Every ready version, newest first: (the version it is stored as changes to, None for a full
    retrain; the size of its stored model, 0 when it has none). Reads no model.

    The row's ``metrics["incremental"]["base_version"]`` is the ``changes_to_version`` of its stored
    model, which ``load_trained_model`` follows: ``_train_incremental`` writes both from the same base,
    and the version saves them together.
    """
    rows = ClassifierVersion.objects.filter(status=ClassifierVersion.Status.READY)
    if lock:
        rows = rows.select_for_update()
    rows = (
        rows.annotate(artifact_bytes=classifier_store.stored_bytes())
        .order_by("-created_at", "-pk")
        .values_list("pk", "metrics__incremental__base_version", "artifact_bytes")
    )
    return {pk: (int(base) if base is not None else None, size or 0) for pk, base, size in rows}


def _chain(version_id: int, versions: dict[int, tuple[int | None, int]]) -> list[int]:
    """The versions ``load_trained_model`` reads to build ``version_id``: it, the version it is stored
    as changes to, and so on down to a full retrain."""
    chain, vid = [], version_id
    while vid is not None and vid not in chain:
        chain.append(vid)
        vid = versions.get(vid, (None, 0))[0]
    return chain


def _first_without_model(version_id: int, versions: dict[int, tuple[int | None, int]]) -> int | None:
    """The first version of ``version_id``'s chain that has no stored model (pruned), or None."""
    for vid in _chain(version_id, versions):
        if not versions.get(vid, (None, 0))[1]:
            return vid
    return None


def prune_classifier_artifacts(*, keep: int | None = None, dry_run: bool = False) -> PruneReport:
    """Clear (set NULL) the stored models of ready versions nothing needs; rows, metrics, thresholds
    and history stay. Runs after every retrain that activates a version, and as
    ``manage.py prune_classifiers``.

    Kept: the active version and every version its chain of changes needs (``load_trained_model``
    reads them all, down to a full retrain); the newest ``keep`` other full retrains (default
    ``FACELOGIN_KEEP_CLASSIFIER_VERSIONS``; the full retrain the active version is built on does not
    count), to roll back to; and incremental versions whose whole chain keeps its models (kilobytes
    each, and roll-back targets too). Cleared: older full retrains, and incremental versions built on
    one (they could not be loaded any more). A pruned version can no longer be activated
    (``classifier_activate`` says why). Sizes are measured in the database, so no model is read.
    A failed or rejected version that still stores a model (one stored before training refused to
    keep it, or an incremental version whose base was pruned before it could be activated) loses it
    too: such versions are never activated or built on.
    """
    keep = settings.FACELOGIN["KEEP_CLASSIFIER_VERSIONS"] if keep is None else keep
    if keep < 1:
        raise ValueError("keep must be at least 1: the newest full version besides the active one stays")
    with transaction.atomic():
        # The rows activation locks: an activation finishing meanwhile is seen here, and one starting
        # after this sees the versions pruned here (SQLite: the transaction itself is exclusive).
        versions = _ready_versions(lock=True)
        active = ClassifierVersion.objects.filter(is_active=True).values_list("pk", flat=True).first()
        has_model = {pk for pk, (_, size) in versions.items() if size}
        needed = set(_chain(active, versions)) if active is not None else set()
        # Roll-back targets: full retrains other than the one the active version is (or is built on).
        full = [pk for pk, (base, _) in versions.items() if base is None and pk in has_model and pk not in needed]
        kept = (needed & has_model) | set(full[:keep])
        grown = True
        while grown:  # incremental versions whose base keeps its model (and so on down the chain)
            grown = False
            for pk, (base, _) in versions.items():
                if pk not in kept and pk in has_model and base in kept:
                    kept.add(pk)
                    grown = True
        never_used = dict(
            ClassifierVersion.objects.filter(status__in=[ClassifierVersion.Status.FAILED, ClassifierVersion.Status.REJECTED])
            .annotate(artifact_bytes=classifier_store.stored_bytes())
            .filter(artifact_bytes__gt=0)
            .values_list("pk", "artifact_bytes")
        )
        sizes = {**{pk: size for pk, (_, size) in versions.items()}, **never_used}
        pruned = sorted((has_model - kept) | set(never_used))
        freed = sum(sizes[pk] for pk in pruned)
        if pruned and not dry_run:
            at = timezone.now().isoformat()
            classifier_store.classifier_model_clear(version_ids=pruned)
            for pk, metrics in ClassifierVersion.objects.filter(pk__in=pruned).values_list("pk", "metrics"):
                ClassifierVersion.objects.filter(pk=pk).update(metrics={**(metrics or {}), _PRUNED: {"at": at, "bytes": sizes[pk]}})
            audit.biometric_action_record(
                action=audit.BiometricAction.Action.DELETE, classifier_versions=pruned, bytes=freed, reason="retention"
            )
    return PruneReport(
        pruned=tuple(pruned), bytes_freed=freed, kept=tuple(sorted(kept)), active=active, keep=keep, dry_run=dry_run
    )
