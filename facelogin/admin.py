"""Admin pages for registrar staff. Thin: every change to biometric data goes through a service."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from django.db.models import Exists, OuterRef

from facelogin.models import BiometricAction, ClassifierVersion, DriftTemplate, EnrolmentPhoto, FaceAttempt, FaceConsent, SignIn, Student
from facelogin.services import consent, data_export, drift, enrolment, stranger_risk, training
from facelogin.services.students import student_create


def chance_text(p: float | None) -> str:
    if p is None:
        return "—"
    if p <= 0:
        return _("below what the data can show")
    return _("about 1 in %(n)s (%(percent)s %%)") % {"n": f"{round(1 / p):,}", "percent": f"{100 * p:.3g}"}


def stranger_risk_text(risk: stranger_risk.StrangerRisk) -> str:
    text = _(
        "A stranger's face matches some enrolled student in %(chance)s of frames at %(students)s students "
        "(mode %(mode)s; target %(target)s)."
    ) % {"chance": chance_text(risk.current_chance), "students": f"{risk.students:,}", "mode": risk.mode, "target": chance_text(risk.target)}
    if risk.recommend_verify:
        text += " " + _(
            "That is above the target: consider verify mode (FACELOGIN_MODE=verify), where students type their student "
            "number first and are compared with themselves only (%(chance)s)."
        ) % {"chance": chance_text(risk.verify_expected)}
    if risk.ceiling_binds:
        text += " " + _("The threshold is held down by FACELOGIN_MAX_THRESHOLD.")
    return text


class DeploymentWarningsMixin:
    """Staff must not miss that printed photos are no longer refused, or that strangers match too often."""

    def changelist_view(self, request, extra_context=None):
        if not settings.FACELOGIN["LIVENESS"]:
            self.message_user(
                request,
                _("Liveness checks are OFF (FACELOGIN_LIVENESS=0): a printed photo of a student may be enough to sign in as them."),
                messages.WARNING,
            )
        risk = stranger_risk.stranger_risk()
        if risk is not None and risk.recommend_verify:
            self.message_user(request, stranger_risk_text(risk), messages.WARNING)
        return super().changelist_view(request, extra_context)


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleImageField(forms.FileField):
    widget = MultipleFileInput

    def clean(self, data, initial=None):
        files = data if isinstance(data, (list, tuple)) else ([data] if data else [])
        return [super(MultipleImageField, self).clean(item, initial) for item in files]


class StudentForm(forms.ModelForm):
    password = forms.CharField(
        label=_("Initial password"),
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=_("Optional. Without one the student can only sign in by face until a password is set."),
    )
    face_photos = MultipleImageField(
        label=_("Add face photos"),
        required=False,
        widget=MultipleFileInput(attrs={"accept": "image/jpeg,image/png,image/webp", "id": "id_face_photos"}),
        help_text=_("Choose several photos at once, or capture them with the camera below. Each is checked and enrolled in the background."),
    )

    class Meta:
        model = Student
        fields = ["student_number", "full_name", "department", "status", "face_login_blocked", "face_login_blocked_reason"]


class EnrolmentPhotoInline(admin.TabularInline):
    model = EnrolmentPhoto
    extra = 0
    can_delete = True  # through enrolment.photos_delete (StudentAdmin.save_formset): audited, then a retrain
    fields = ["thumbnail", "state_display", "reason_text", "advice_text", "source_name", "created_at"]
    readonly_fields = fields
    advice: dict = {}  # set per request by StudentAdmin.get_inline_instances
    ordering = ["-created_at"]
    verbose_name_plural = _("Face photos")

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description=_("face"))
    def thumbnail(self, photo: EnrolmentPhoto):
        if not photo.crop:
            return "—"
        url = reverse("admin:facelogin_enrolmentphoto_crop", args=[photo.pk])
        return format_html('<img src="{}" width="80" height="80" alt="{}" loading="lazy">', url, _("aligned face"))

    @admin.display(description=_("state"))
    def state_display(self, photo: EnrolmentPhoto):
        return format_html('<span class="enrol-state" data-photo="{}" data-state="{}">{}</span>', photo.pk, photo.state, photo.get_state_display())

    @admin.display(description=_("why rejected"))
    def reason_text(self, photo: EnrolmentPhoto):
        return enrolment.rejection_message(photo.reason) if photo.reason else ""

    @admin.display(description=_("what weakens this photo"))
    def advice_text(self, photo: EnrolmentPhoto):
        advice = self.advice.get(photo.pk)
        if advice is None or not advice.weak:
            return ""
        return format_html(
            '<ul class="photo-advice" data-photo="{}" data-codes="{}">{}</ul>',
            photo.pk,
            " ".join(code.partition(":")[0] for code in advice.codes),
            format_html_join("", "<li>{}</li>", ((m,) for m in advice.messages())),
        )


class DriftTemplateInline(admin.TabularInline):
    """Templates learnt from the student's own sign-ins: visible, and removable (tick "delete", save)."""

    model = DriftTemplate
    extra = 0
    fields = ["created_at", "confirmed_at", "similarity_text", "anchor_text", "other_text"]
    readonly_fields = fields
    ordering = ["-created_at"]
    verbose_name_plural = _("Face templates learnt from sign-ins (never used as enrolment photos)")

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description=_("similarity to the student / threshold"))
    def similarity_text(self, template: DriftTemplate):
        return f"{template.similarity:.3f} / {template.threshold:.3f}"

    @admin.display(description=_("similarity to the enrolment photos"))
    def anchor_text(self, template: DriftTemplate):
        return f"{template.anchor_similarity:.3f}"

    @admin.display(description=_("similarity to the closest other student"))
    def other_text(self, template: DriftTemplate):
        return f"{template.other_similarity:.3f}"


@admin.action(description=_("Delete face data of the selected students"), permissions=["change"])
def delete_face_data(modeladmin, request, queryset):
    deleted = enrolment.face_data_delete(students=queryset, actor=request.user)
    modeladmin.message_user(
        request, ngettext("%(n)d photo deleted; retraining.", "%(n)d photos deleted; retraining.", deleted) % {"n": deleted}
    )


@admin.action(description=_("Remove the face templates learnt from the selected students' sign-ins"), permissions=["change"])
def remove_learnt_templates(modeladmin, request, queryset):
    count = sum(drift.drift_templates_remove(student=student, actor=request.user, retrain=False) for student in queryset)
    if count:
        training.retrain_request(reason="learnt face templates removed (staff)", actor=request.user)
    modeladmin.message_user(
        request,
        ngettext("%(n)d learnt face template removed; retraining.", "%(n)d learnt face templates removed; retraining.", count) % {"n": count},
    )


class ConsentFilter(admin.SimpleListFilter):
    title = _("consent to face sign-in")
    parameter_name = "consent"

    def lookups(self, request, model_admin):
        return [("yes", _("Given")), ("no", _("Not given"))]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(has_consent=self.value() == "yes")
        return queryset


class ConsentForm(forms.Form):
    confirm = forms.BooleanField(label=_("The student has read this text and signed the consent form, which is kept on file."))


@admin.register(Student)
class StudentAdmin(DeploymentWarningsMixin, admin.ModelAdmin):
    form = StudentForm
    change_form_template = "admin/facelogin/student/change_form.html"
    list_display = ["student_number", "full_name", "department", "status", "consent_given", "face_photos", "face_login_blocked"]
    list_filter = ["status", ConsentFilter, "department", "face_login_blocked"]
    search_fields = ["student_number", "full_name", "department", "user__email"]
    readonly_fields = ["consent_status", "face_enrolment", "created_at", "updated_at"]
    inlines = [EnrolmentPhotoInline, DriftTemplateInline]
    actions = [delete_face_data, remove_learnt_templates]

    def get_inline_instances(self, request, obj=None):
        inlines = super().get_inline_instances(request, obj)  # new instances for every request
        if obj is None or not obj.drift_templates.exists():  # nothing learnt: no empty section, no form
            inlines = [inline for inline in inlines if not isinstance(inline, DriftTemplateInline)]
        for inline in inlines:
            if isinstance(inline, EnrolmentPhotoInline) and obj is not None:
                if getattr(request, "_photo_advice", None) is None:  # once per request: it scores the gallery
                    request._photo_advice = enrolment.template_advice(student=obj)
                inline.advice = request._photo_advice
        return inlines

    def save_formset(self, request, form, formset, change):
        # Both inlines are read-only lists whose only change is "delete": through the services (audited, then a
        # retrain), never the formset's own delete. The change message reads what a save would have set.
        if formset.model in (EnrolmentPhoto, DriftTemplate):
            removed = [f.instance for f in formset.forms if f.instance.pk and formset._should_delete_form(f)]
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], removed
        if formset.model is EnrolmentPhoto:
            if removed:
                count = enrolment.photos_delete(photos=removed, actor=request.user)
                self.message_user(request, ngettext("%(n)d photo deleted; retraining.", "%(n)d photos deleted; retraining.", count) % {"n": count})
            return
        if formset.model is DriftTemplate:
            if removed:
                count = drift.drift_templates_remove(templates=removed, actor=request.user)
                self.message_user(
                    request,
                    ngettext("%(n)d learnt face template removed; retraining.", "%(n)d learnt face templates removed; retraining.", count)
                    % {"n": count},
                )
            return
        super().save_formset(request, form, formset, change)

    def get_fields(self, request, obj=None):
        fields = list(StudentForm.Meta.fields)
        if obj is None:
            return [*fields, "password"]  # photos only after consent is recorded on the saved student
        photos = ["face_photos"] if obj.has_consent else []  # no consent, no upload (get_queryset's annotation)
        return [*fields, "consent_status", "face_enrolment", *photos, "created_at", "updated_at"]

    def get_queryset(self, request):
        active = FaceConsent.objects.filter(student=OuterRef("pk"), ended_at__isnull=True)
        return super().get_queryset(request).select_related("user").annotate(has_consent=Exists(active))

    @admin.display(description=_("consent"), boolean=True, ordering="has_consent")
    def consent_given(self, student: Student) -> bool:
        return student.has_consent

    @admin.display(description=_("consent to face sign-in"))
    def consent_status(self, student: Student):
        active = consent.consent_active(student=student)
        if active is None:
            text = _("Not given. Record the student's consent before enrolling photos.")
            return format_html('<strong class="consent-missing" style="color:#b3261e">{}</strong>', text)
        text = _("Given on %(at)s (text version %(version)s, %(method)s, recorded by %(by)s).") % {
            "at": active.given_at.strftime("%Y-%m-%d %H:%M"),
            "version": active.text_version,
            "method": active.get_method_display(),
            "by": active.recorded_by or _("the student"),
        }
        return format_html('<strong class="consent-given" style="color:#1f7a3d">{}</strong>', text)

    @admin.display(description=_("accepted photos"))
    def face_photos(self, student: Student) -> int:
        return enrolment.accepted_count(student=student)

    @admin.display(description=_("face sign-in"))
    def face_enrolment(self, student: Student):
        count = enrolment.accepted_count(student=student)
        needed = settings.FACELOGIN["MIN_PHOTOS"]
        if count >= needed:
            text = _("%(count)d accepted photos: enough to sign in by face.") % {"count": count}
            return format_html('<strong class="face-ready" style="color:#1f7a3d">{}</strong>', text)
        text = _("%(count)d accepted photos: %(needed)d needed to sign in by face.") % {"count": count, "needed": needed}
        return format_html('<strong class="face-not-ready" style="color:#b3261e">{}</strong>', text)

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
        else:
            created = student_create(
                student_number=form.cleaned_data["student_number"],
                full_name=form.cleaned_data["full_name"],
                department=form.cleaned_data.get("department", ""),
                status=form.cleaned_data["status"],
                password=form.cleaned_data.get("password") or None,
            )
            obj.pk, obj.user_id = created.pk, created.user_id
            obj._state.adding = False
        files = form.cleaned_data.get("face_photos") or []
        if files:
            uploads = [enrolment.Upload(name=f.name, data=f.read()) for f in files]
            try:
                photos = enrolment.photos_submit(student=obj, uploads=uploads, uploaded_by=request.user)
            except consent.ConsentRequired:
                self.message_user(
                    request,
                    _("The photos were not enrolled: %(student)s has not consented to face sign-in. Record the consent first.") % {"student": obj},
                    messages.ERROR,
                )
                return
            self.message_user(
                request,
                ngettext(
                    "%(n)d photo received; it is being checked and enrolled.",
                    "%(n)d photos received; they are being checked and enrolled.",
                    len(photos),
                )
                % {"n": len(photos)},
            )

    def get_urls(self):
        return [
            path("<int:student_id>/delete-face-data/", self.admin_site.admin_view(self.delete_face_data_view), name="facelogin_student_delete_face_data"),
            path("<int:student_id>/consent/", self.admin_site.admin_view(self.consent_view), name="facelogin_student_consent"),
            path("<int:student_id>/export-face-data/", self.admin_site.admin_view(self.export_face_data_view), name="facelogin_student_export_face_data"),
            path("<int:student_id>/withdraw-consent/", self.admin_site.admin_view(self.withdraw_consent_view), name="facelogin_student_withdraw_consent"),
            path("<int:student_id>/enrolment-status/", self.admin_site.admin_view(self.enrolment_status_view), name="facelogin_student_enrolment_status"),
            *super().get_urls(),
        ]

    def delete_face_data_view(self, request: HttpRequest, student_id: int):
        student = self._changeable_student(request, student_id)
        if request.method == "POST":
            deleted = enrolment.face_data_delete(students=[student], actor=request.user)
            self.message_user(request, _("Face data of %(student)s deleted (%(n)d photos); retraining.") % {"student": student, "n": deleted})
            return redirect("admin:facelogin_student_change", student.pk)
        return self._page(request, "admin/facelogin/student/delete_face_data.html", student=student, title=_("Delete face data"))

    def _changeable_student(self, request: HttpRequest, student_id: int) -> Student:
        student = get_object_or_404(Student, pk=student_id)
        if not self.has_change_permission(request, student):
            raise Http404
        return student

    def _page(self, request: HttpRequest, template: str, **context) -> TemplateResponse:
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, **context}
        return TemplateResponse(request, template, context)

    def consent_view(self, request: HttpRequest, student_id: int):
        student = self._changeable_student(request, student_id)
        form = ConsentForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            consent.consent_record(student=student, method=FaceConsent.Method.SIGNED_FORM, actor=request.user)
            self.message_user(request, _("Consent of %(student)s recorded; face photos can now be enrolled.") % {"student": student})
            return redirect("admin:facelogin_student_change", student.pk)
        return self._page(
            request,
            "admin/facelogin/student/consent.html",
            student=student,
            form=form,
            active=consent.consent_active(student=student),
            version=consent.current_text_version(),
            title=_("Record consent to face sign-in"),
        )

    def withdraw_consent_view(self, request: HttpRequest, student_id: int):
        student = self._changeable_student(request, student_id)
        if request.method == "POST":
            deleted = consent.consent_withdraw(student=student, actor=request.user)
            self.message_user(
                request, _("Consent of %(student)s withdrawn; face data deleted (%(n)d photos); retraining.") % {"student": student, "n": deleted}
            )
            return redirect("admin:facelogin_student_change", student.pk)
        return self._page(request, "admin/facelogin/student/withdraw_consent.html", student=student, title=_("Withdraw consent"))

    def export_face_data_view(self, request: HttpRequest, student_id: int):
        """A subject-access export: POST only, so a link preview or a crawler cannot trigger it."""
        student = self._changeable_student(request, student_id)
        if request.method != "POST":
            return redirect("admin:facelogin_student_change", student.pk)
        archive = data_export.student_face_data_export(student=student, actor=request.user)
        response = HttpResponse(archive, content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="{data_export.export_filename(student)}"'
        response["Cache-Control"] = "private, no-store"
        return response

    def enrolment_status_view(self, request: HttpRequest, student_id: int):
        """Polled by the student page to show each photo's progress without reloading."""
        from django.http import JsonResponse

        student = get_object_or_404(Student, pk=student_id)
        photos = [
            {"id": p.pk, "state": p.state, "label": p.get_state_display(), "progress": p.progress, "reason": enrolment.rejection_message(p.reason) if p.reason else ""}
            for p in student.photos.all()[:200]
        ]
        return JsonResponse({"photos": photos, "accepted": enrolment.accepted_count(student=student), "needed": settings.FACELOGIN["MIN_PHOTOS"]})


@admin.register(EnrolmentPhoto)
class EnrolmentPhotoAdmin(admin.ModelAdmin):
    list_display = ["id", "student", "state", "reason", "source_name", "created_at", "processed_at"]
    list_filter = ["state", "reason", "model_name"]
    search_fields = ["student__student_number", "student__full_name", "source_name"]
    fields = ["student", "state", "reason", "detail", "source_name", "model_name", "quality", "created_at", "processed_at", "attempts"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_urls(self):
        return [
            path("<int:photo_id>/crop.jpg", self.admin_site.admin_view(self.crop_view), name="facelogin_enrolmentphoto_crop"),
            *super().get_urls(),
        ]

    def crop_view(self, request: HttpRequest, photo_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise Http404
        photo = get_object_or_404(EnrolmentPhoto, pk=photo_id)
        data = enrolment.photo_crop_jpeg(photo=photo)
        if data is None:
            raise Http404
        response = HttpResponse(data, content_type="image/jpeg")
        response["Cache-Control"] = "private, no-store"
        return response


@admin.action(description=_("Activate (roll back to) the selected version"), permissions=["change"])
def activate_version(modeladmin, request, queryset):
    if queryset.count() != 1:
        modeladmin.message_user(request, _("Select exactly one version to activate."), messages.ERROR)
        return
    try:
        version = training.classifier_activate(version=queryset.get(), actor=request.user)
    except training.TrainingRefused as refused:
        modeladmin.message_user(request, str(refused), messages.ERROR)
        return
    modeladmin.message_user(request, _("Version %(v)s is now active.") % {"v": version.pk})


@admin.action(description=_("Retrain now"), permissions=["change"])
def retrain_now(modeladmin, request, queryset):
    training.retrain_request(reason="requested by staff", actor=request.user, countdown=0)
    modeladmin.message_user(request, _("Retraining has started; the new version appears here when it is ready."))


TRAINING_STAGES = {
    "reading": _("Reading the enrolled faces…"),
    "training": _("Training and calibrating…"),
    "storing": _("Storing the new version…"),
}


@admin.register(ClassifierVersion)
class ClassifierVersionAdmin(DeploymentWarningsMixin, admin.ModelAdmin):
    list_display = ["id", "created_at", "status_or_progress", "is_active", "classifier", "model_name", "gallery_students", "threshold", "stranger_chance", "holdout_accuracy", "trigger"]
    list_filter = ["status", "is_active", "classifier", "model_name"]
    fields = ["status", "is_active", "activated_at", "trigger", "triggered_by", "model_name", "classifier", "gallery_students", "gallery_embeddings", "stranger_match", "thresholds", "metrics", "error", "created_at"]
    readonly_fields = fields
    actions = [activate_version, retrain_now]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        # Versions are the audit trail of what decided sign-ins, and incremental versions are stored as
        # changes to the one before: none is deleted from here.
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).defer("artifact")  # up to hundreds of MB each

    @admin.display(description=_("status"), ordering="status")
    def status_or_progress(self, version: ClassifierVersion):
        if version.status == ClassifierVersion.Status.READY and training.model_pruned(version):
            return _("Ready, model pruned (cannot be activated)")
        if version.status != ClassifierVersion.Status.TRAINING:
            return version.get_status_display()
        stage = TRAINING_STAGES.get(version.stage, version.get_status_display())
        return format_html(
            '<progress class="retrain-progress" max="100" value="{}" aria-label="{}"></progress> {}', version.progress, stage, stage
        )

    @admin.display(description=_("similarity threshold"))
    def threshold(self, version: ClassifierVersion):
        value = (version.thresholds or {}).get("similarity")
        return f"{value:.3f}" if isinstance(value, (int, float)) else "—"

    @admin.display(description=_("stranger matches someone"))
    def stranger_chance(self, version: ClassifierVersion):
        risk = stranger_risk.stranger_risk(version)
        return chance_text(risk.current_chance) if risk else "—"

    @admin.display(description=_("chance that a stranger is taken for a student"))
    def stranger_match(self, version: ClassifierVersion):
        risk = stranger_risk.stranger_risk(version)
        if risk is None:
            return "—"
        css = "stranger-risk-high" if risk.recommend_verify else "stranger-risk-ok"
        return format_html('<p class="{}">{}</p>', css, stranger_risk_text(risk))

    @admin.display(description=_("held-out accuracy"))
    def holdout_accuracy(self, version: ClassifierVersion):
        value = ((version.metrics or {}).get("holdout") or {}).get("rank1_accuracy")
        return f"{value:.3f}" if isinstance(value, (int, float)) else "—"


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(SignIn)
class SignInAdmin(ReadOnlyAdmin):
    list_display = ["at", "user", "method", "ip"]
    list_filter = ["method"]
    search_fields = ["user__username", "ip"]
    date_hierarchy = "at"


@admin.register(FaceAttempt)
class FaceAttemptAdmin(ReadOnlyAdmin):
    list_display = ["at", "outcome", "reason", "student", "ip", "frames"]
    list_filter = ["outcome", "reason"]
    search_fields = ["student__student_number", "ip", "user_agent"]
    date_hierarchy = "at"


@admin.register(FaceConsent)
class FaceConsentAdmin(ReadOnlyAdmin):
    list_display = ["student", "text_version", "method", "given_at", "recorded_by", "ended_at", "ended_reason"]
    list_filter = ["method", "text_version", "ended_reason"]
    search_fields = ["student__student_number", "student__full_name"]
    date_hierarchy = "given_at"


@admin.register(BiometricAction)
class BiometricActionAdmin(ReadOnlyAdmin):
    list_display = ["at", "action", "actor", "student"]
    list_filter = ["action"]
    search_fields = ["student__student_number", "actor__username"]
    date_hierarchy = "at"
