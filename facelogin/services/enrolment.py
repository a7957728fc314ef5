"""Enrolment: photos in, one aligned face and one embedding out per accepted photo.

Each photo is a row processed by a task. Processing claims the row with a conditional update, so a
task delivered twice (a worker killed after the work but before the acknowledgement) does no harm.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from facelogin.models import BiometricAction, DriftTemplate, EnrolmentPhoto, Student
from facelogin.pipeline import errors
from facelogin.services import audit, biometrics
from facelogin.services.consent import consent_active, consent_require

logger = logging.getLogger(__name__)

# Registrar photos come from many cameras and scanners; the live websocket stays JPEG/PNG/WebP only.
ENROL_FORMATS = ("JPEG", "PNG", "WEBP", "PPM", "BMP", "TIFF")
# Two photos this alike are the same photo re-saved: it would add nothing and skew calibration.
NEAR_DUPLICATE_SIMILARITY = 0.995

REJECTION_MESSAGES = {
    "not_an_image": _("Not an image (JPEG, PNG or WebP expected)."),
    "empty": _("The file is empty."),
    "too_large": _("The file is too large."),
    "too_many_pixels": _("The image has too many pixels."),
    "truncated": _("The image file is damaged or incomplete."),
    "no_face": _("No face was found."),
    "several_faces": _("More than one face; the photo must show only the student."),
    "too_small": _("The face is too small; use a closer photo."),
    "too_dark": _("The photo is too dark."),
    "too_bright": _("The photo is too bright."),
    "blurred": _("The photo is blurred."),
    "turned": _("The face is turned away; the student must look at the camera."),
    "duplicate": _("Duplicate of a photo already enrolled."),
    "model_unavailable": _("The face model is not available; the photo will be processed again later."),
    "no_consent": _("The student has not consented to face sign-in."),
}


def rejection_message(reason: str) -> str:
    return str(REJECTION_MESSAGES.get(reason, reason))


@dataclass(frozen=True)
class Upload:
    name: str
    data: bytes


def photos_submit(*, student: Student, uploads: Iterable[Upload], uploaded_by=None, retrain: bool = True) -> list[EnrolmentPhoto]:
    """Store the photos as queued records and hand each to a task once the transaction commits.

    Raises ``ConsentRequired`` (nothing stored) when the student has not consented to face sign-in.
    """
    from facelogin.services.training import retrain_request

    consent_require(student=student)
    limit = settings.FACELOGIN["MAX_UPLOAD_BYTES"]
    photos = []
    with transaction.atomic():
        for upload in uploads:
            photo = EnrolmentPhoto(
                student=student,
                source_name=upload.name[:255],
                content_sha256=hashlib.sha256(upload.data).hexdigest(),
                uploaded_by=uploaded_by,
            )
            if len(upload.data) > limit:  # never stored: refuse at the door
                photo.state, photo.reason, photo.processed_at = EnrolmentPhoto.State.REJECTED, "too_large", timezone.now()
                photo.detail, photo.progress = rejection_message("too_large"), 100
            else:
                photo.original = biometrics.seal(upload.data, context=b"original")
            photo.save()
            photos.append(photo)
        queued = [photo.pk for photo in photos if photo.state == EnrolmentPhoto.State.QUEUED]
        transaction.on_commit(lambda: photos_enqueue(queued), robust=True)
    if retrain and queued:
        retrain_request(reason=f"{len(queued)} photo(s) for {student.student_number}", actor=uploaded_by)
    return photos


def photos_enqueue(photo_ids: Iterable[int]) -> int:
    """Hand photos to the workers. With the broker down they stay queued (nothing is lost) and
    ``requeue_photos`` (run when a worker starts, or by hand) sends them again."""
    from kombu.exceptions import OperationalError

    from facelogin import tasks

    sent = 0
    for pk in photo_ids:
        try:
            tasks.process_enrolment_photo.delay(pk)
        except OperationalError:
            logger.warning("task queue unavailable: photo %s stays queued until requeue_photos", pk)
            return sent
        sent += 1
    return sent


def photos_requeue(*, older_than_seconds: int = 0) -> int:
    """Send again every photo still queued (a broker outage, a lost message). Idempotent."""
    from datetime import timedelta

    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    ids = list(EnrolmentPhoto.objects.filter(state=EnrolmentPhoto.State.QUEUED, created_at__lte=cutoff).values_list("pk", flat=True))
    return photos_enqueue(ids)


def photo_process(*, photo_id: int, analyzer=None) -> EnrolmentPhoto | None:
    """Decode, find exactly one face, check quality, align, embed. Idempotent."""
    claimed = EnrolmentPhoto.objects.filter(
        pk=photo_id, state__in=[EnrolmentPhoto.State.QUEUED, EnrolmentPhoto.State.PROCESSING]
    ).update(state=EnrolmentPhoto.State.PROCESSING, progress=10)
    photo = EnrolmentPhoto.objects.select_related("student").filter(pk=photo_id).first()
    if not claimed or photo is None:
        return photo  # already finished (a repeated delivery) or deleted meanwhile
    EnrolmentPhoto.objects.filter(pk=photo_id).update(attempts=F("attempts") + 1)
    photo.attempts += 1
    if consent_active(student=photo.student) is None:  # withdrawn while the photo waited
        return _reject(photo, "no_consent")
    from facelogin.services.recognition import engine, model_name

    try:
        if analyzer is None:
            analyzer = engine().analyzer
        data = biometrics.unseal(photo.original, context=b"original")
        analysis = analyzer.analyze_bytes(data, purpose="enrol", formats=ENROL_FORMATS)
    except Exception as exc:
        if isinstance(exc, errors.PipelineError) and not isinstance(exc, errors.ModelUnavailable):
            return _reject(photo, exc.code)  # the photo's own fault
        # The model, a bug or an outage: back in the queue for the task's retry or, after that,
        # requeue_photos; never stuck in "processing".
        EnrolmentPhoto.objects.filter(pk=photo_id).update(state=EnrolmentPhoto.State.QUEUED, progress=0)
        raise
    if analysis.quality is not None and not analysis.quality.ok:
        return _reject(photo, analysis.quality.reasons[0], quality=_quality_json(analysis.quality))
    if _is_duplicate(photo, analysis.embedding, model_name()):
        return _reject(photo, "duplicate")

    photo.crop = biometrics.seal(_jpeg(analysis.crop), context=b"crop")
    photo.embedding = biometrics.seal_embedding(analysis.embedding)
    photo.model_name = model_name()
    photo.quality = _quality_json(analysis.quality)
    photo.state, photo.reason, photo.progress, photo.processed_at = EnrolmentPhoto.State.ACCEPTED, "", 100, timezone.now()
    if not settings.FACELOGIN["KEEP_ORIGINALS"]:
        photo.original = None
    photo.save()
    audit.biometric_action_record(action=BiometricAction.Action.ENROL, actor=photo.uploaded_by, student=photo.student, photo=photo.pk)
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        # With several workers, the upload's debounced retrain may start before this photo is done:
        # ask again (debounced, so a batch still ends in one retrain).
        from facelogin.services.training import retrain_request

        retrain_request(reason=f"photo accepted for {photo.student.student_number}", actor=photo.uploaded_by)
    return photo


def _reject(photo: EnrolmentPhoto, reason: str, *, quality: dict | None = None) -> EnrolmentPhoto:
    photo.state, photo.reason, photo.progress, photo.processed_at = EnrolmentPhoto.State.REJECTED, reason, 100, timezone.now()
    photo.detail = rejection_message(reason)[:300]
    photo.quality = quality
    photo.original = None  # nothing to keep from a rejected photo
    photo.save()
    audit.biometric_action_record(
        action=BiometricAction.Action.REJECT, actor=photo.uploaded_by, student=photo.student, photo=photo.pk, reason=reason
    )
    return photo


def _is_duplicate(photo: EnrolmentPhoto, embedding: np.ndarray, model: str) -> bool:
    accepted = EnrolmentPhoto.objects.filter(state=EnrolmentPhoto.State.ACCEPTED).exclude(pk=photo.pk)
    if accepted.filter(content_sha256=photo.content_sha256).exists():
        return True
    for sealed in accepted.filter(student=photo.student, model_name=model).values_list("embedding", flat=True):
        if float(np.dot(biometrics.unseal_embedding(sealed), embedding)) >= NEAR_DUPLICATE_SIMILARITY:
            return True
    return False


def _quality_json(quality) -> dict | None:
    if quality is None:
        return None
    return {
        "face_px": round(quality.face_px, 1),
        "brightness": round(quality.brightness, 1),
        "sharpness": round(quality.sharpness, 1),
        "yaw": round(quality.pose.yaw, 1),
        "pitch": round(quality.pose.pitch, 1),
        "roll": round(quality.pose.roll, 1),
        "issues": list(quality.reasons),
    }


def _jpeg(crop: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def photo_crop_jpeg(*, photo: EnrolmentPhoto) -> bytes | None:
    return biometrics.unseal(photo.crop, context=b"crop") if photo.crop else None


def accepted_count(*, student: Student) -> int:
    from facelogin.services.recognition import model_name

    return student.photos.filter(state=EnrolmentPhoto.State.ACCEPTED, model_name=model_name()).count()


def face_ready(*, student: Student) -> bool:
    return accepted_count(student=student) >= settings.FACELOGIN["MIN_PHOTOS"]


def face_data_delete(*, students: Iterable[Student], actor=None, retrain: bool = True) -> int:
    """Remove every photo, crop and embedding of these students, then retrain without them."""
    from facelogin.services.training import retrain_request

    students = list(students)
    with transaction.atomic():
        deleted, _ = EnrolmentPhoto.objects.filter(student__in=students).delete()
        DriftTemplate.objects.filter(student__in=students).delete()  # learnt from sign-ins: face data too
        for student in students:
            audit.biometric_action_record(action=BiometricAction.Action.DELETE, actor=actor, student=student, photos=deleted)
    if retrain and students:
        retrain_request(reason=f"face data deleted for {len(students)} student(s)", actor=actor, countdown=0)
    return deleted


def photos_delete(*, photos: Iterable[EnrolmentPhoto], actor=None, retrain: bool = True) -> int:
    """Delete single photos (the registrar replacing a weak one); audited per photo, then a retrain."""
    from facelogin.services.training import retrain_request

    rows = list(EnrolmentPhoto.objects.filter(pk__in=[p.pk for p in photos]).select_related("student"))
    if not rows:
        return 0
    with transaction.atomic():
        for row in rows:
            audit.biometric_action_record(action=BiometricAction.Action.DELETE, actor=actor, student=row.student, photo=row.pk)
        deleted, _ = EnrolmentPhoto.objects.filter(pk__in=[row.pk for row in rows]).delete()
    if retrain:
        retrain_request(reason=f"{deleted} photo(s) deleted by staff", actor=actor)
    return deleted


@dataclass(frozen=True)
class Reembedded:
    """What ``photos_reembed`` did: photos embedded again, and those it could not (no usable source)."""

    model: str
    from_crops: int
    from_originals: int
    needs_new_photo: tuple[int, ...]  # photo ids: a crop made for another alignment and no original kept
    students_needing_photo: tuple[str, ...]  # their students' numbers, sorted

    @property
    def count(self) -> int:
        return self.from_crops + self.from_originals


def photos_reembed(*, model: str, path=None, progress=None, actor=None) -> Reembedded:
    """Embed every accepted photo again with another face model.

    Embeddings of two models are not comparable, so nothing signs in with the new model until this has
    run and a classifier has been trained for it (each classifier version records its model). A photo's
    stored crop is reused when the new model takes the same crop (same size: FaceNet's 160 px box crop,
    SFace's 112 px five-point crop). Otherwise the crop cannot stand in: SFace's template reaches past
    FaceNet's crop, and SFace vectors from FaceNet crops scored a median cosine of 0.83 with the same
    photo's own (40 real faces). Then the kept original (FACELOGIN_KEEP_ORIGINALS) is analysed again, as
    at enrolment; without one the photo keeps its old model and is reported: the student needs a new photo.
    """
    from PIL import Image

    from facelogin.pipeline.analyze import FaceAnalyzer
    from facelogin.pipeline.embed import get_embedder
    from facelogin.services.recognition import analyzer_config, prepare_embedding_weights

    weights = prepare_embedding_weights(model, path)
    embedder = get_embedder(weights, threads=settings.FACELOGIN["TORCH_THREADS"], backend=settings.FACELOGIN["EMBEDDER"])
    side = embedder.input_size
    analyzer = None
    ids = list(
        EnrolmentPhoto.objects.filter(state=EnrolmentPhoto.State.ACCEPTED, crop__isnull=False)
        .exclude(model_name=model)
        .values_list("pk", flat=True)
    )
    from_crops = from_originals = done = 0
    stranded: list[int] = []
    for start in range(0, len(ids), 32):
        rows = list(EnrolmentPhoto.objects.filter(pk__in=ids[start : start + 32]).only("pk", "crop", "original"))
        crops = [np.asarray(Image.open(io.BytesIO(photo_crop_jpeg(photo=row))).convert("RGB")) for row in rows]
        fitting = [crop.shape[:2] == (side, side) for crop in crops]
        if any(fitting):
            vectors = embedder.embed(np.stack([crop for crop, fits in zip(crops, fitting) if fits]))
            for row, vector in zip((row for row, fits in zip(rows, fitting) if fits), vectors, strict=True):
                EnrolmentPhoto.objects.filter(pk=row.pk).update(embedding=biometrics.seal_embedding(vector), model_name=model)
            from_crops += sum(fitting)
        for row in (row for row, fits in zip(rows, fitting) if not fits):
            if row.original is None:
                stranded.append(row.pk)
                continue
            if analyzer is None:
                analyzer = FaceAnalyzer(analyzer_config(), embedder)
            try:
                data = biometrics.unseal(row.original, context=b"original")
                analysis = analyzer.analyze_bytes(data, purpose="enrol", formats=ENROL_FORMATS)
            except errors.PipelineError as exc:
                if isinstance(exc, errors.ModelUnavailable):
                    raise  # the operator's problem: stop, nothing half-done is lost (rows are per photo)
                analysis = None
            if analysis is None or analysis.embedding is None:  # the new model's analysis found no usable face
                stranded.append(row.pk)
                continue
            EnrolmentPhoto.objects.filter(pk=row.pk).update(
                crop=biometrics.seal(_jpeg(analysis.crop), context=b"crop"),
                embedding=biometrics.seal_embedding(analysis.embedding),
                model_name=model,
            )
            from_originals += 1
        done += len(rows)
        if progress is not None:
            progress(done, len(ids))
    students = (
        EnrolmentPhoto.objects.filter(pk__in=stranded)
        .values_list("student__student_number", flat=True)
        .distinct()
        .order_by("student__student_number")
    )
    result = Reembedded(
        model=model,
        from_crops=from_crops,
        from_originals=from_originals,
        needs_new_photo=tuple(stranded),
        students_needing_photo=tuple(students),
    )
    audit.biometric_action_record(
        action=BiometricAction.Action.REEMBED, actor=actor, model=model, photos=result.count, needs_new_photo=len(stranded)
    )
    return result


def photos_of_other_models() -> dict[str, int]:
    """{model name: accepted photos} embedded with a model other than FACELOGIN_MODEL: their students
    cannot sign in by face until ``reembed_photos`` has run (e.g. a site upgraded past the change of
    default from FaceNet to SFace without setting FACELOGIN_MODEL)."""
    from django.db.models import Count

    from facelogin.services.recognition import model_name

    rows = (
        EnrolmentPhoto.objects.filter(state=EnrolmentPhoto.State.ACCEPTED)
        .exclude(model_name=model_name())
        .values("model_name")
        .annotate(count=Count("pk"))
    )
    return {row["model_name"]: row["count"] for row in rows}


# --- which photos weaken a student's template ---------------------------------------------------
# Accepted photos can still be weak: another person's photo uploaded by mistake, a face that resembles
# another student, or one near a quality limit. The admin shows these beside each photo so the registrar
# can replace it. Borderline = within reach of the rejection limits (quality.QualityThresholds: face
# 60 px, luma 50-210, sharpness 30, yaw 25 / pitch 30).
BORDERLINE = {"face_px": 80.0, "dark": 70.0, "bright": 190.0, "sharpness": 45.0, "yaw": 15.0, "pitch": 20.0}
ADVICE_MESSAGES = {
    "unlike_others": _(
        "Unlike this student's other photos (best similarity %(own).2f; photos of one person reach %(threshold).2f): "
        "if it shows someone else or is a poor photo, delete it and add a better one."
    ),
    "near_other_student": _(
        "Close to another enrolled student (similarity %(other).2f; different people rarely reach %(threshold).2f): "
        "it makes this student easier to confuse with them. A clearer photo would be better."
    ),
    "small_face": _("The face is small (%(px).0f px): a closer photo makes a stronger template."),
    "dim": _("The face is dim: a photo in even light makes a stronger template."),
    "bright": _("The face is very bright: a photo without strong light on it makes a stronger template."),
    "soft": _("The photo is slightly blurred: a sharper one makes a stronger template."),
    "turned": _("The head is slightly turned: a photo looking straight at the camera makes a stronger template."),
}


@dataclass(frozen=True)
class PhotoAdvice:
    photo_id: int
    codes: tuple[str, ...]
    own: float | None  # best similarity to the student's other accepted photos (as a sign-in would score it)
    other: float | None  # best similarity to another enrolled student (the active classifier's gallery)
    threshold: float

    @property
    def weak(self) -> bool:
        return bool(self.codes)

    def messages(self) -> list[str]:
        values = {"own": self.own or 0.0, "other": self.other or 0.0, "threshold": self.threshold, "px": 0.0}
        out = []
        for code in self.codes:
            base, _, px = code.partition(":")
            out.append(str(ADVICE_MESSAGES[base]) % {**values, "px": float(px or 0)})
        return out


def template_advice(*, student: Student) -> dict[int, PhotoAdvice]:
    """Per accepted photo of ``student``: what weakens it as part of their template (empty: nothing).

    Reads the student's own embeddings and, for resemblance to others, the active classifier version
    (one exact gallery pass per photo). Without an active version the threshold is the calibration's floor.
    """
    from facelogin.pipeline.calibrate import DEFAULT_FLOOR
    from facelogin.pipeline.classify import normalise
    from facelogin.services.recognition import model_name
    from facelogin.services.training import active_version_id, load_trained_model

    photos = list(
        student.photos.filter(state=EnrolmentPhoto.State.ACCEPTED, model_name=model_name(), embedding__isnull=False).only(
            "pk", "embedding", "quality"
        )
    )
    if not photos:
        return {}
    X = normalise(np.stack([biometrics.unseal_embedding(p.embedding) for p in photos]))
    model = None
    version = active_version_id(model_name=model_name())
    if version is not None:
        try:
            model = load_trained_model(version)
        except Exception:  # noqa: BLE001 - advice is a hint; an unreadable version must not break the page
            logger.warning("classifier version %s unreadable for photo advice", version, exc_info=True)
    threshold = DEFAULT_FLOOR
    if model is not None:
        # The sign-in threshold, unless one odd pair threw it up: a single photo of an enrolled student
        # filed under another made the calibrated threshold 1.0 in the tests (the tail fit saw one
        # impostor pair at 0.84). Then 0.1 above what 99 in 100 pairs of different students reach, which
        # is about where the threshold sits on a clean gallery (0.64-0.66 against 0.70-0.72 here).
        threshold = min(model.threshold, model.calibration.impostor.p99 + 0.1)
    others = None
    if model is not None and model.gallery.n_labels > 1:
        S = model.gallery.similarities(X)
        keep = [j for j, label in enumerate(model.gallery.labels) if label != str(student.pk)]
        others = S[:, keep].max(axis=1) if keep else None
    own_matrix = X @ X.T
    advice = {}
    for i, photo in enumerate(photos):
        codes: list[str] = []
        rest = np.delete(own_matrix[i], i)
        own = float(rest.max()) if len(rest) >= 2 else None
        if own is not None and own < threshold:
            codes.append("unlike_others")
        other = float(others[i]) if others is not None else None
        if other is not None and other >= threshold - 0.05:
            codes.append("near_other_student")
        q = photo.quality or {}
        if q.get("face_px", 1e9) < BORDERLINE["face_px"]:
            codes.append(f"small_face:{q['face_px']:.0f}")
        if q.get("brightness", 128) < BORDERLINE["dark"]:
            codes.append("dim")
        elif q.get("brightness", 128) > BORDERLINE["bright"]:
            codes.append("bright")
        if q.get("sharpness", 1e9) < BORDERLINE["sharpness"]:
            codes.append("soft")
        if abs(q.get("yaw", 0)) > BORDERLINE["yaw"] or abs(q.get("pitch", 0)) > BORDERLINE["pitch"]:
            codes.append("turned")
        advice[photo.pk] = PhotoAdvice(photo.pk, tuple(codes), own, other, threshold)
    return advice
