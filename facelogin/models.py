"""The portal's records. Business rules live in ``facelogin.services``; models stay plain."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Student(models.Model):
    class Status(models.TextChoices):
        ENROLLED = "enrolled", _("Enrolled")
        ON_LEAVE = "on_leave", _("On leave")
        GRADUATED = "graduated", _("Graduated")
        SUSPENDED = "suspended", _("Suspended")

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="student")
    student_number = models.CharField(_("student number"), max_length=32, unique=True)
    full_name = models.CharField(_("full name"), max_length=200)
    department = models.CharField(_("department"), max_length=200, blank=True)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.ENROLLED)
    # Set when the student reports a face sign-in that was not them; staff clear it after review.
    face_login_blocked = models.BooleanField(_("face sign-in blocked"), default=False)
    face_login_blocked_reason = models.CharField(_("why face sign-in is blocked"), max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["student_number"]
        verbose_name = _("student")
        verbose_name_plural = _("students")

    def __str__(self) -> str:
        return f"{self.student_number} {self.full_name}"

    @property
    def may_sign_in(self) -> bool:
        return self.user.is_active and self.status in settings.FACELOGIN["SIGNIN_STATUSES"]


class FaceConsent(models.Model):
    """A student's consent to face sign-in: who recorded it, when, and which text they agreed to.

    Rows are never deleted: ending a consent (withdrawn, or renewed for a new text) keeps the history.
    """

    class Method(models.TextChoices):
        SIGNED_FORM = "signed_form", _("Signed form, recorded by staff")
        PORTAL = "portal", _("Given by the student on the portal")
        IMPORT = "import", _("Recorded with a bulk import")

    class Ended(models.TextChoices):
        WITHDRAWN = "withdrawn", _("Withdrawn")
        RENEWED = "renewed", _("Renewed for a newer text")

    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="consents")
    text_version = models.CharField(_("consent text version"), max_length=32)
    method = models.CharField(_("how it was given"), max_length=16, choices=Method.choices)
    given_at = models.DateTimeField(_("given at"), default=timezone.now)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("recorded by")
    )
    ended_at = models.DateTimeField(_("ended at"), null=True, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("ended by")
    )
    ended_reason = models.CharField(_("why it ended"), max_length=16, choices=Ended.choices, blank=True)

    class Meta:
        ordering = ["-given_at"]
        constraints = [
            models.UniqueConstraint(fields=["student"], condition=Q(ended_at__isnull=True), name="one_active_consent_per_student")
        ]
        verbose_name = _("face sign-in consent")
        verbose_name_plural = _("face sign-in consents")

    def __str__(self) -> str:
        return f"{self.student} {self.text_version} {self.get_method_display()}"


class SignIn(models.Model):
    """One successful sign-in to the portal, shown to the student on the home page."""

    class Method(models.TextChoices):
        PASSWORD = "password", _("Password")
        FACE = "face", _("Face")

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sign_ins")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    method = models.CharField(max_length=16, choices=Method.choices)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=400, blank=True)
    scores = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-at"]
        verbose_name = _("sign-in")
        verbose_name_plural = _("sign-ins")


class FaceTicket(models.Model):
    """A single-use proof that a websocket recognised a student, redeemed by an HTTP view.

    Only hashes are stored: a leaked table cannot be replayed.
    """

    token_hash = models.CharField(max_length=64, unique=True)
    session_hash = models.CharField(max_length=64)
    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="face_tickets")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)
    scores = models.JSONField(default=dict)


class EnrolmentPhoto(models.Model):
    """One photo given for a student's face enrolment, and what became of it."""

    class State(models.TextChoices):
        QUEUED = "queued", _("Queued")
        PROCESSING = "processing", _("Processing")
        ACCEPTED = "accepted", _("Accepted")
        REJECTED = "rejected", _("Rejected")

    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="photos")
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED, db_index=True)
    reason = models.CharField(max_length=32, blank=True)  # machine-readable rejection code
    detail = models.CharField(max_length=300, blank=True)
    source_name = models.CharField(max_length=255, blank=True)
    content_sha256 = models.CharField(max_length=64, db_index=True)
    original = models.BinaryField(null=True, blank=True)  # encrypted; dropped after processing by default
    crop = models.BinaryField(null=True, blank=True)  # encrypted JPEG of the aligned 160x160 face
    embedding = models.BinaryField(null=True, blank=True)  # encrypted float32 x 512
    model_name = models.CharField(max_length=64, blank=True)
    quality = models.JSONField(null=True, blank=True)
    progress = models.PositiveSmallIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("enrolment photo")
        verbose_name_plural = _("enrolment photos")


class DriftTemplate(models.Model):
    """A face template learnt from one of the student's own face sign-ins (appearance drift).

    Never an anchor: only the registrar's enrolment photos are, and a template is kept only when it is
    close to them and clearly away from every other student (``facelogin.pipeline.drift``). It joins the
    gallery once the sign-in completed (its ticket was redeemed). Capped per student, oldest out; all of
    a student's templates go when they report a face sign-in as not theirs; staff can remove them.
    """

    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="drift_templates")
    # The sign-in's ticket until it is confirmed (tickets are purged after a day): SET_NULL keeps the row.
    ticket = models.ForeignKey("FaceTicket", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    embedding = models.BinaryField()  # encrypted float32 x 512
    model_name = models.CharField(max_length=64)
    similarity = models.FloatField(_("similarity to the student"))
    anchor_similarity = models.FloatField(_("similarity to the enrolment photos"))
    other_similarity = models.FloatField(_("similarity to the closest other student"))
    threshold = models.FloatField(_("sign-in threshold then"))
    frames = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(_("learnt at"), auto_now_add=True, db_index=True)
    confirmed_at = models.DateTimeField(_("sign-in completed at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("learnt face template")
        verbose_name_plural = _("learnt face templates")

    def __str__(self) -> str:
        return f"{self.student} {self.created_at:%Y-%m-%d %H:%M}"


class ClassifierVersion(models.Model):
    """A trained per-deployment classifier with its calibration; exactly one is active."""

    class Status(models.TextChoices):
        TRAINING = "training", _("Training")
        READY = "ready", _("Ready")
        FAILED = "failed", _("Failed")
        REJECTED = "rejected", _("Rejected (worse than required)")

    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    trigger = models.CharField(max_length=200, blank=True)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.TRAINING)
    is_active = models.BooleanField(default=False)
    model_name = models.CharField(max_length=64)
    classifier = models.CharField(max_length=32)
    gallery_students = models.PositiveIntegerField(default=0)
    gallery_embeddings = models.PositiveIntegerField(default=0)
    thresholds = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict)
    error = models.TextField(blank=True)
    artifact = models.BinaryField(null=True, blank=True)  # encrypted TrainedModel bytes
    request_token = models.PositiveBigIntegerField(null=True, blank=True)  # the RetrainRequest it answered
    # While training: how far it got (shown as a progress bar in the admin; written by the worker).
    progress = models.PositiveSmallIntegerField(default=0)
    stage = models.CharField(max_length=32, blank=True)

    class Meta:
        ordering = ["-created_at"]
        get_latest_by = "created_at"
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="one_active_classifier")
        ]
        verbose_name = _("classifier version")
        verbose_name_plural = _("classifier versions")

    def __str__(self) -> str:
        return f"v{self.pk} {self.classifier} ({self.get_status_display()})"


class RetrainRequest(models.Model):
    """The newest request to retrain; a debounced task only trains if it still holds the newest token."""

    singleton = models.PositiveSmallIntegerField(primary_key=True, default=1)
    token = models.PositiveBigIntegerField(default=0)
    requested_at = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=200, blank=True)


class FaceAttempt(models.Model):
    """Audit: every face sign-in attempt, whatever became of it."""

    class Outcome(models.TextChoices):
        TICKET_ISSUED = "ticket_issued", _("Recognised")
        FAILED = "failed", _("Failed")
        THROTTLED = "throttled", _("Throttled")
        UNAVAILABLE = "unavailable", _("Unavailable")
        ABANDONED = "abandoned", _("Abandoned")

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    reason = models.CharField(max_length=64, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=400, blank=True)
    student = models.ForeignKey(Student, null=True, blank=True, on_delete=models.SET_NULL, related_name="face_attempts")
    frames = models.PositiveIntegerField(default=0)
    scores = models.JSONField(default=dict, blank=True)
    challenge = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]
        verbose_name = _("face sign-in attempt")
        verbose_name_plural = _("face sign-in attempts")


class BiometricAction(models.Model):
    """Audit: every staff or system action on biometric data."""

    class Action(models.TextChoices):
        ENROL = "enrol", _("Photo enrolled")
        REJECT = "reject", _("Photo rejected")
        DELETE = "delete", _("Face data deleted")
        RETRAIN = "retrain", _("Classifier retrained")
        ROLLBACK = "rollback", _("Classifier rolled back")
        REEMBED = "reembed", _("Photos re-embedded")
        EXPORT = "export", _("Data exported")
        CONSENT = "consent", _("Consent recorded")
        WITHDRAW = "withdraw", _("Consent withdrawn")
        REPORT = "report", _("Sign-in reported as not me")
        DRIFT = "drift", _("Face template learnt from a sign-in")
        DRIFT_REMOVE = "drift_remove", _("Learnt face templates removed")

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    action = models.CharField(max_length=16, choices=Action.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    student = models.ForeignKey(Student, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]
        verbose_name = _("biometric data action")
        verbose_name_plural = _("biometric data actions")
