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
        # import_faces without a CSV knows only the number, and stores it as the name too.
        if not self.full_name or self.full_name == self.student_number:
            return self.student_number
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
        # Face sign-in on a browser not yet known for the student (FACELOGIN_DEVICE_POLICY=known):
        # the password completed it.
        FACE_PASSWORD = "face_password", _("Face and password")

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sign_ins")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    method = models.CharField(max_length=16, choices=Method.choices)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=400, blank=True)
    scores = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-at"]
        # The dashboard counts sign-ins per day and method from this index alone (python -m bench.dashboard).
        indexes = [models.Index(fields=["at", "method"], name="signin_at_method")]
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
    crop = models.BinaryField(null=True, blank=True)  # encrypted JPEG of the face as its model takes it (160 px FaceNet, 112 px SFace)
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
        # The admin counts accepted photos of another face model on every list page
        # (enrolment.photos_of_other_models): answered from the first index, not a scan of every photo.
        # One student's accepted photos of a model (the near-duplicate check of every enrolment photo,
        # the admin's counts and advice) come from the second: without it SQLite, which keeps no
        # statistics, prefers the first (two equalities against student_id's one) and read every
        # accepted photo, 1.4 s a photo at 100,000 students (bench.enrol_scale).
        indexes = [
            models.Index(fields=["state", "model_name"], name="photo_state_model"),
            models.Index(fields=["student", "state", "model_name"], name="photo_student_state_model"),
        ]

    def __str__(self) -> str:
        # The caption of each row in the student page's photo list.
        if self.source_name:
            return _("Photo %(id)s (%(source)s)") % {"id": self.pk, "source": self.source_name}
        return _("Photo %(id)s") % {"id": self.pk}


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
    # The encrypted model (``facelogin.services.classifier_store``): since 0011 the head of a model stored
    # in ``artifact_parts`` parts (ClassifierArtifactPart); before, the whole model in this one value.
    artifact = models.BinaryField(null=True, blank=True)
    artifact_parts = models.PositiveIntegerField(default=0)
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


class ClassifierArtifactPart(models.Model):
    """One encrypted part of a classifier version's stored model: a database value holds at most 1 GB,
    and a full model is 1,028 MB at 100,000 students (``facelogin.services.classifier_store``)."""

    version = models.ForeignKey(ClassifierVersion, on_delete=models.CASCADE, related_name="+")
    index = models.PositiveIntegerField()
    data = models.BinaryField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["version", "index"], name="one_classifier_part_per_index")]

    def __str__(self) -> str:
        return f"v{self.version_id} part {self.index}"


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
    # From the connection to the ending (null on rows recorded before it was kept): the time to sign in.
    seconds = models.FloatField(null=True, blank=True)
    # Frames by what became of them: a vote reason ("vote", "no_face", "below_threshold", ...) or, for a
    # frame refused for its quality, the quality reason ("too_dark", "too_small", ...). {} on older rows.
    frame_reasons = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]
        # The dashboard counts attempts per day and outcome from this index alone (python -m bench.dashboard).
        indexes = [models.Index(fields=["at", "outcome"], name="faceattempt_at_outcome")]
        verbose_name = _("face sign-in attempt")
        verbose_name_plural = _("face sign-in attempts")


class SignInDashboard(FaceAttempt):
    """The admin's face sign-in dashboard: figures only, with its own view permission.

    A proxy, so staff can be allowed the aggregate figures without the audit rows (addresses, browsers).
    """

    class Meta:
        proxy = True
        verbose_name = _("face sign-in dashboard")
        verbose_name_plural = _("face sign-in dashboard")
        default_permissions = ("view",)


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
        BROWSER_ADDED = "browser_added", _("Browser remembered for face sign-in")
        BROWSER_REVOKED = "browser_revoked", _("Remembered browser revoked")
        KIOSK_ADDED = "kiosk_added", _("Kiosk browser registered")
        KIOSK_REVOKED = "kiosk_revoked", _("Kiosk revoked")
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


# --- single sign-on for campus apps (OpenID Connect; django-oauth-toolkit owns apps and tokens) -----


class CampusApp(models.Model):
    """What the portal keeps about a registered campus app beside django-oauth-toolkit's Application."""

    application = models.OneToOneField(
        "oauth2_provider.Application", on_delete=models.CASCADE, related_name="campus_app", verbose_name=_("application")
    )
    description = models.CharField(
        _("what it is, for students"), max_length=200, blank=True,
        help_text=_("Shown on the consent screen and the portal home, e.g. “Learning platform (Moodle)”."),
    )
    backchannel_logout_uri = models.URLField(
        _("back-channel logout URI"), max_length=500, blank=True,
        help_text=_("The portal POSTs a signed logout token here when the student signs out of the portal (OpenID Connect Back-Channel Logout)."),
    )
    require_pkce = models.BooleanField(
        _("require PKCE"), default=True,
        help_text=_("Untick only for a confidential app whose OAuth client cannot send a PKCE code challenge. Public apps always need it."),
    )

    class Meta:
        verbose_name = _("campus app settings")
        verbose_name_plural = _("campus app settings")

    def __str__(self) -> str:
        return str(self.application)


class SsoSubject(models.Model):
    """The stable, opaque ``sub`` campus apps know a person by: neither the database id nor the student
    number (both can be reused or changed, and the number is personal data the app may not be given)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_subject")
    subject = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)


class SsoConsent(models.Model):
    """A person's permission for a campus app to sign them in and read the listed scopes.

    Ended rather than deleted when the student revokes it, so the history stays."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_consents")
    application = models.ForeignKey("oauth2_provider.Application", on_delete=models.CASCADE, related_name="+")
    scope = models.TextField(blank=True)
    trusted = models.BooleanField(default=False)  # a first-party app: no consent screen was shown
    given_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_used_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "application"], condition=Q(revoked_at__isnull=True), name="one_active_sso_consent"
            )
        ]
        verbose_name = _("campus app consent")
        verbose_name_plural = _("campus app consents")


class SsoAuthorization(models.Model):
    """One authorization code and everything issued from it.

    Keeps how the student had signed in (for the ID token and every refresh of it), the portal session
    it came from (``sid``, for logout) and the tokens it produced, so that a replayed code revokes them
    (RFC 6749 §4.1.2) and signing out of the portal revokes them. Only a hash of the code is stored."""

    code_hash = models.CharField(max_length=64, unique=True)
    application = models.ForeignKey("oauth2_provider.Application", on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    sid = models.CharField(max_length=64, db_index=True)
    issuer = models.CharField(max_length=300, blank=True)  # the ``iss`` its ID tokens carry
    amr = models.JSONField(default=list)
    acr = models.CharField(max_length=64)
    auth_time = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    redeemed_at = models.DateTimeField(null=True, blank=True)
    replayed_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)  # tokens revoked (logout, consent revoked, replay)
    access_token = models.ForeignKey(
        "oauth2_provider.AccessToken", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    token_family = models.UUIDField(null=True, blank=True, db_index=True)


class SsoEvent(models.Model):
    """Audit: grants, token issues and refusals, revocations and logouts of campus-app sign-ins."""

    class Kind(models.TextChoices):
        CONSENT = "consent", _("Consent given")
        CODE = "code", _("Authorization code issued")
        STEP_UP = "step_up", _("Sign-in asked again (step-up)")
        REFUSED = "refused", _("Authorization refused")
        TOKEN = "token", _("Tokens issued")
        REFRESH = "refresh", _("Tokens refreshed")
        TOKEN_REFUSED = "token_refused", _("Token request refused")
        THROTTLED = "throttled", _("Token request throttled")
        REPLAY = "replay", _("Authorization code replayed: its tokens revoked")
        REVOKE = "revoke", _("Token revoked by the app")
        CONSENT_REVOKED = "consent_revoked", _("Access revoked by the student")
        LOGOUT = "logout", _("Portal sign-out: campus sessions ended")
        BACKCHANNEL = "backchannel", _("Logout token delivered")
        BACKCHANNEL_FAILED = "backchannel_failed", _("Logout token not delivered")

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    kind = models.CharField(max_length=24, choices=Kind.choices)
    application = models.ForeignKey(
        "oauth2_provider.Application", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    client_id = models.CharField(max_length=255, blank=True)  # kept when the app is deleted
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    ip = models.GenericIPAddressField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]
        verbose_name = _("campus app sign-in event")
        verbose_name_plural = _("campus app sign-in events")


class RememberedBrowser(models.Model):
    """A browser on which a student may sign in by face alone (FACELOGIN_DEVICE_POLICY=known): they signed in
    on it with their password and chose to remember it. The browser holds a random credential in a
    long-lived cookie; only its hash is stored. Revocable by the student and by staff."""

    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="browsers", verbose_name=_("student"))
    token_hash = models.CharField(max_length=64, db_index=True)
    label = models.CharField(_("browser"), max_length=200, blank=True)  # from the user agent, for people to recognise it
    created_at = models.DateTimeField(_("remembered at"), auto_now_add=True)
    created_ip = models.GenericIPAddressField(_("remembered from"), null=True, blank=True)
    last_used_at = models.DateTimeField(_("last face sign-in"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("revoked by")
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["student", "token_hash"], condition=Q(revoked_at__isnull=True), name="one_live_browser_row")
        ]
        verbose_name = _("remembered browser")
        verbose_name_plural = _("remembered browsers")

    def __str__(self) -> str:
        return self.label or f"#{self.pk}"

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class Kiosk(models.Model):
    """A campus sign-in terminal registered by staff: any student may sign in by face alone on it.

    Staff create the kiosk here, then open its admin page on the terminal itself and register that
    browser; the browser keeps the kiosk's credential in a cookie (only its hash is stored)."""

    name = models.CharField(_("name"), max_length=100)
    location = models.CharField(_("location"), max_length=200, blank=True)
    token_hash = models.CharField(max_length=64, blank=True, db_index=True)  # empty until a browser is registered
    registered_at = models.DateTimeField(_("browser registered at"), null=True, blank=True)
    registered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("registered by")
    )
    last_used_at = models.DateTimeField(_("last face sign-in"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("kiosk")
        verbose_name_plural = _("kiosks")

    def __str__(self) -> str:
        return f"{self.name} ({self.location})" if self.location else self.name

    @property
    def active(self) -> bool:
        return self.revoked_at is None and bool(self.token_hash)
