"""Admin pages for registrar staff. Thin: every change to biometric data goes through a service."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.crypto import get_random_string
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from django.db import models
from django.db.models import Exists, OuterRef

from oauth2_provider.admin import ApplicationAdmin
from oauth2_provider.forms import ApplicationForm
from oauth2_provider.models import AbstractApplication, get_application_model

from facelogin import admin_figures
from facelogin.models import (
    BiometricAction,
    CampusApp,
    ClassifierVersion,
    DriftTemplate,
    EnrolmentPhoto,
    FaceAttempt,
    FaceConsent,
    Kiosk,
    RememberedBrowser,
    SignIn,
    SignInDashboard,
    SsoConsent,
    SsoEvent,
    Student,
)
from facelogin.services import classifier_figures, consent, dashboard, data_export, devices, drift, enrolment, stranger_risk, training
from facelogin.services.students import student_create


def chance_text(p: float | None, digits: int = 3) -> str:
    if p is None:
        return "—"
    if p <= 0:
        return _("below what the data can show")
    return _("about 1 in %(n)s (%(percent)s %%)") % {"n": f"{round(1 / p):,}", "percent": f"{100 * p:.{digits}g}"}


def chance_texts(chance: float | None, target: float | None) -> tuple[str, str]:
    """Both chances, with as many digits as it takes for two different numbers to read differently
    (0.10004 % and 0.1 % both round to "1 in 1,000 (0.1 %)")."""
    for digits in range(3, 9):
        texts = chance_text(chance, digits), chance_text(target, digits)
        if texts[0] != texts[1] or chance == target:
            break
    return texts


def stranger_risk_text(risk: stranger_risk.StrangerRisk) -> str:
    chance, target = chance_texts(risk.current_chance, risk.target)
    text = _(
        "A stranger's face matches some enrolled student in %(chance)s of frames at %(students)s students "
        "(mode %(mode)s; target %(target)s)."
    ) % {"chance": chance, "students": f"{risk.students:,}", "mode": risk.mode, "target": target}
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
        stale = enrolment.photos_of_other_models()
        if stale:
            self.message_user(
                request,
                _(
                    "%(count)s accepted photos are embedded with another face model (%(models)s) than FACELOGIN_MODEL "
                    "(%(model)s): their students cannot sign in by face until `manage.py reembed_photos` has run "
                    "(or set FACELOGIN_MODEL back)."
                )
                % {"count": f"{sum(stale.values()):,}", "models": ", ".join(sorted(stale)), "model": settings.FACELOGIN["MODEL"]},
                messages.WARNING,
            )
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


class LabelledDeleteFormSet(forms.BaseInlineFormSet):
    """A tabular inline's "delete" boxes named for screen readers (Django's have no label of their own)."""

    def add_fields(self, form, index):
        super().add_fields(form, index)
        if "DELETE" in form.fields and form.instance.pk:
            form.fields["DELETE"].widget.attrs["aria-label"] = _("Delete %(item)s") % {"item": form.instance}


class EnrolmentPhotoInline(admin.TabularInline):
    model = EnrolmentPhoto
    formset = LabelledDeleteFormSet
    extra = 0
    can_delete = True  # through enrolment.photos_delete (StudentAdmin.save_formset): audited, then a retrain
    show_change_link = True  # each row's caption (EnrolmentPhoto.__str__) links to the photo's record
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
    formset = LabelledDeleteFormSet
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
    readonly_fields = ["consent_status", "face_enrolment", "remembered_browsers", "created_at", "updated_at"]
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
        return [*fields, "consent_status", "face_enrolment", *photos, "remembered_browsers", "created_at", "updated_at"]

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
            return format_html('<strong class="consent-missing">{}</strong>', text)
        text = _("Given on %(at)s (text version %(version)s, %(method)s, recorded by %(by)s).") % {
            "at": active.given_at.strftime("%Y-%m-%d %H:%M"),
            "version": active.text_version,
            "method": active.get_method_display(),
            "by": active.recorded_by or _("the student"),
        }
        return format_html('<strong class="consent-given">{}</strong>', text)

    @admin.display(description=_("accepted photos"))
    def face_photos(self, student: Student) -> int:
        return enrolment.accepted_count(student=student)

    @admin.display(description=_("browsers where the face alone signs in"))
    def remembered_browsers(self, student: Student):
        """The student's remembered browsers in force (FACELOGIN_DEVICE_POLICY=known); revoked in their list."""
        browsers = list(student.browsers.filter(revoked_at__isnull=True))
        if not browsers:
            return _("None")
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (b.label, date_format(timezone.localtime(b.created_at), "Y-m-d"), b.created_ip or "—",
                 date_format(timezone.localtime(b.last_used_at), "Y-m-d H:i") if b.last_used_at else "—")
                for b in browsers
            ),
        )
        url = reverse("admin:facelogin_rememberedbrowser_changelist") + f"?student__id__exact={student.pk}"
        return format_html(
            '<table id="remembered-browsers"><thead><tr><th scope="col">{}</th><th scope="col">{}</th><th scope="col">{}</th>'
            '<th scope="col">{}</th></tr></thead><tbody>{}</tbody></table><p><a href="{}">{}</a></p>',
            _("Browser"), _("Remembered"), _("From"), _("Last face sign-in"), rows, url, _("Revoke in the list of remembered browsers"),
        )

    @admin.display(description=_("face sign-in"))
    def face_enrolment(self, student: Student):
        count = enrolment.accepted_count(student=student)
        needed = settings.FACELOGIN["MIN_PHOTOS"]
        if count >= needed:
            text = _("%(count)d accepted photos: enough to sign in by face.") % {"count": count}
            return format_html('<strong class="face-ready">{}</strong>', text)
        text = _("%(count)d accepted photos: %(needed)d needed to sign in by face.") % {"count": count, "needed": needed}
        return format_html('<strong class="face-not-ready">{}</strong>', text)

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
        """Polled by the student page to show each photo's progress without reloading: photo states and
        rejection reasons, for staff who may view the student and their photos."""
        from django.core.exceptions import PermissionDenied
        from django.http import JsonResponse

        student = get_object_or_404(Student, pk=student_id)
        photos_admin = self.admin_site._registry.get(EnrolmentPhoto)
        if not self.has_view_permission(request, student) or photos_admin is None or not photos_admin.has_view_permission(request):
            raise PermissionDenied
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


def _stored_json(value) -> str:
    """What training stored, folded away: the charts below draw it; this is for the record."""
    import json

    text = json.dumps(value or {}, indent=1, ensure_ascii=False)
    return format_html('<details class="stored-json"><summary>{}</summary><pre>{}</pre></details>', _("Show (JSON)"), text)


def chart_response(panels: list[admin_figures.Panel], name: str) -> HttpResponse:
    """The SVG of the panel called ``name``; 404 when there is none or it has nothing to draw."""
    panel = next((p for p in panels if p.name == name), None)
    if panel is None or panel.draw is None:
        raise Http404
    from facelogin.charts import svg  # matplotlib loads on the first chart, not with the admin

    response = HttpResponse(svg(panel.draw()), content_type="image/svg+xml")
    response["Cache-Control"] = "private, max-age=300"
    return response


@admin.register(ClassifierVersion)
class ClassifierVersionAdmin(DeploymentWarningsMixin, admin.ModelAdmin):
    list_display = ["id", "created_at", "status_or_progress", "is_active", "classifier", "model_name", "gallery_students", "threshold", "stranger_chance", "holdout_accuracy", "trigger"]
    list_filter = ["status", "is_active", "classifier", "model_name"]
    fields = ["status", "is_active", "activated_at", "trigger", "triggered_by", "model_name", "classifier", "gallery_students", "gallery_embeddings", "stranger_match", "stored_thresholds", "stored_metrics", "error", "created_at"]
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

    def get_urls(self):
        return [
            path("<int:version_id>/chart/<slug:name>.svg", self.admin_site.admin_view(self.chart_view), name="facelogin_classifierversion_chart"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        version = self.get_object(request, object_id)
        if version is not None:
            panels = admin_figures.version_panels(classifier_figures.classifier_version_figures(version=version))
            for panel in panels:
                panel.url = reverse("admin:facelogin_classifierversion_chart", args=[version.pk, panel.name])
            extra_context = {**(extra_context or {}), "panels": panels}
        return super().change_view(request, object_id, form_url, extra_context)

    def chart_view(self, request: HttpRequest, version_id: int, name: str) -> HttpResponse:
        version = get_object_or_404(self.get_queryset(request), pk=version_id)
        if not self.has_view_permission(request, version):
            raise PermissionDenied
        return chart_response(admin_figures.version_panels(classifier_figures.classifier_version_figures(version=version)), name)

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

    @admin.display(description=_("calibration (as stored)"))
    def stored_thresholds(self, version: ClassifierVersion):
        return _stored_json(version.thresholds)

    @admin.display(description=_("metrics (as stored)"))
    def stored_metrics(self, version: ClassifierVersion):
        return _stored_json(version.metrics)

    @admin.display(description=_("held-out accuracy"))
    def holdout_accuracy(self, version: ClassifierVersion):
        value = ((version.metrics or {}).get("holdout") or {}).get("rank1_accuracy")
        return f"{value:.3f}" if isinstance(value, (int, float)) else "—"


# --- device binding: remembered browsers and kiosks -------------------------------------------------


@admin.action(description=_("Revoke the selected browsers (their face sign-in then needs the password)"), permissions=["change"])
def revoke_browsers(modeladmin, request, queryset):
    revoked = 0
    for browser in queryset.filter(revoked_at__isnull=True).select_related("student"):
        revoked += devices.browser_revoke(student=browser.student, browser_id=browser.pk, actor=request.user) is not None
    modeladmin.message_user(request, ngettext("%(n)d browser revoked.", "%(n)d browsers revoked.", revoked) % {"n": revoked})


@admin.register(RememberedBrowser)
class RememberedBrowserAdmin(admin.ModelAdmin):
    list_display = ["student", "label", "created_at", "created_ip", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["student__student_number", "student__full_name", "label"]
    date_hierarchy = "created_at"
    actions = [revoke_browsers]
    readonly_fields = ["student", "label", "created_at", "created_ip", "last_used_at", "revoked_at", "revoked_by"]
    fields = readonly_fields

    def has_add_permission(self, request):
        return False  # a browser is remembered by the student, on that browser, after their password

    def has_delete_permission(self, request, obj=None):
        return False  # revoked, never deleted: the record stays


@admin.action(description=_("Revoke the selected kiosks"), permissions=["change"])
def revoke_kiosks(modeladmin, request, queryset):
    kiosks = list(queryset.filter(revoked_at__isnull=True))
    for kiosk in kiosks:
        devices.kiosk_revoke(kiosk=kiosk, actor=request.user)
    modeladmin.message_user(request, ngettext("%(n)d kiosk revoked.", "%(n)d kiosks revoked.", len(kiosks)) % {"n": len(kiosks)})


@admin.register(Kiosk)
class KioskAdmin(admin.ModelAdmin):
    """Campus sign-in terminals. Create one here, then open its page ON THE TERMINAL and register that
    browser: from then on any enrolled student signs in there by face alone, in short sessions."""

    list_display = ["name", "location", "registered", "registered_at", "last_used_at", "revoked_at"]
    search_fields = ["name", "location"]
    actions = [revoke_kiosks]
    fields = ["name", "location", "registration", "registered_at", "registered_by", "last_used_at", "revoked_at"]
    readonly_fields = ["registration", "registered_at", "registered_by", "last_used_at", "revoked_at"]

    def has_delete_permission(self, request, obj=None):
        return False  # revoked, never deleted: the record stays

    @admin.display(description=_("browser registered"), boolean=True)
    def registered(self, kiosk: Kiosk) -> bool:
        return kiosk.active

    @admin.display(description=_("this browser"))
    def registration(self, kiosk: Kiosk):
        if kiosk.pk is None:
            return _("Save the kiosk first; then open this page on the terminal itself.")
        url = reverse("admin:facelogin_kiosk_register", args=[kiosk.pk])
        return format_html(
            # Inside the admin's own form (its CSRF token goes along); the view reads nothing else of it.
            '<button type="submit" formaction="{}" class="button" id="kiosk-register-button">{}</button> <span class="help">{}</span>',
            url,
            _("Make this browser this kiosk"),
            _("Do this on the terminal. A browser registered earlier for this kiosk stops being it."),
        )

    def get_urls(self):
        return [
            path("<int:kiosk_id>/register/", self.admin_site.admin_view(self.register_view), name="facelogin_kiosk_register"),
            *super().get_urls(),
        ]

    def register_view(self, request: HttpRequest, kiosk_id: int) -> HttpResponse:
        if request.method != "POST":
            return redirect("admin:facelogin_kiosk_change", kiosk_id)
        kiosk = get_object_or_404(Kiosk, pk=kiosk_id)
        if not self.has_change_permission(request, kiosk):
            raise PermissionDenied
        response = redirect("admin:facelogin_kiosk_change", kiosk_id)
        devices.kiosk_register(kiosk=kiosk, actor=request.user, response=response)
        self.message_user(request, _("This browser is now the kiosk “%(kiosk)s”. Sign out of the administration site before leaving it.") % {"kiosk": kiosk}, messages.SUCCESS)
        return response


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



# --- campus apps (single sign-on) -----------------------------------------------------------------


class CampusAppInline(admin.StackedInline):
    model = CampusApp
    can_delete = False
    extra = 1
    max_num = 1
    fields = ["description", "backchannel_logout_uri", "require_pkce"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}


class CampusApplicationForm(ApplicationForm):
    """django-oauth-toolkit's application form, narrowed to what the portal offers: the authorization
    code flow and RS256-signed ID tokens, client secrets stored hashed."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        grant = self.fields.get("authorization_grant_type")
        if grant is not None:
            grant.choices = [(AbstractApplication.GRANT_AUTHORIZATION_CODE, _("Authorization code (OpenID Connect sign-in)"))]
            grant.initial = AbstractApplication.GRANT_AUTHORIZATION_CODE
        algorithm = self.fields.get("algorithm")
        if algorithm is not None:
            algorithm.choices = [(AbstractApplication.RS256_ALGORITHM, _("RS256 (the portal's signing key)"))]
            algorithm.initial = AbstractApplication.RS256_ALGORITHM
        trusted = self.fields.get("skip_authorization")
        if trusted is not None:
            trusted.label = _("Trusted first-party app")
            trusted.help_text = _("The university's own app: students are signed in without a consent screen.")
        uris = self.fields.get("redirect_uris")
        if uris is not None:
            uris.help_text = _("The app's callback addresses, separated by spaces; they must match exactly.")

    def clean(self):
        cleaned = super().clean()
        cleaned["authorization_grant_type"] = AbstractApplication.GRANT_AUTHORIZATION_CODE
        cleaned["algorithm"] = AbstractApplication.RS256_ALGORITHM
        return cleaned


class CampusApplicationAdmin(ApplicationAdmin):
    form = CampusApplicationForm
    inlines = [CampusAppInline]
    list_display = ("name", "client_id", "client_type", "skip_authorization", "created")
    list_filter = ("client_type", "skip_authorization")
    search_fields = ("name", "client_id")
    radio_fields = {"client_type": admin.HORIZONTAL}
    fields = (
        "name",
        "client_id",
        "client_type",
        "client_secret",
        "redirect_uris",
        "post_logout_redirect_uris",
        "skip_authorization",
        "authorization_grant_type",
        "algorithm",
    )

    def save_model(self, request, obj, form, change):
        obj.authorization_grant_type = AbstractApplication.GRANT_AUTHORIZATION_CODE
        obj.algorithm = AbstractApplication.RS256_ALGORITHM
        obj.hash_client_secret = True
        super().save_model(request, obj, form, change)


Application = get_application_model()
if admin.site.is_registered(Application):
    admin.site.unregister(Application)
admin.site.register(Application, CampusApplicationAdmin)


@admin.register(SsoConsent)
class SsoConsentAdmin(ReadOnlyAdmin):
    list_display = ["user", "application", "scope", "trusted", "given_at", "last_used_at", "revoked_at"]
    list_filter = ["application", "trusted"]
    search_fields = ["user__username", "application__name"]
    date_hierarchy = "given_at"


@admin.register(SsoEvent)
class SsoEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "kind", "application", "client_id", "user", "ip"]
    list_filter = ["kind", "application"]
    search_fields = ["user__username", "client_id", "ip"]
    date_hierarchy = "at"
class DateRangeForm(forms.Form):
    """The dashboard's range, from the query string (GET: the page can be bookmarked and shared)."""

    start = forms.DateField(label=_("From"), widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))
    end = forms.DateField(label=_("To (included)"), widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        start, end = cleaned["start"], cleaned["end"]
        if end < start:
            raise forms.ValidationError(_("The range must end on or after the day it starts."), code="reversed")
        if (end - start).days + 1 > dashboard.MAX_DAYS:
            raise forms.ValidationError(_("Choose at most %(days)d days.") % {"days": dashboard.MAX_DAYS}, code="too_long")
        cleaned["range"] = dashboard.DateRange(start, end)
        return cleaned


# Figures computed for a page are kept this long for its chart images, so charts and tables agree.
DASHBOARD_FIGURES_SECONDS = 300


@admin.register(SignInDashboard)
class SignInDashboardAdmin(admin.ModelAdmin):
    """Face sign-in figures for registrar and IT staff (permission "Can view face sign-in dashboard")."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        return [
            path("", self.admin_site.admin_view(self.changelist_view), name="facelogin_signindashboard_changelist"),
            path("chart/<slug:name>.svg", self.admin_site.admin_view(self.chart_view), name="facelogin_signindashboard_chart"),
        ]

    def _range(self, request: HttpRequest) -> tuple[DateRangeForm, dashboard.DateRange]:
        default = dashboard.dashboard_default_range()
        if "start" not in request.GET and "end" not in request.GET:
            form = DateRangeForm(initial={"start": default.start, "end": default.end})
            return form, default
        form = DateRangeForm(request.GET)
        return form, form.cleaned_data["range"] if form.is_valid() else default

    def changelist_view(self, request: HttpRequest, extra_context=None):
        if not self.has_view_permission(request):
            raise PermissionDenied
        form, date_range = self._range(request)
        figures = dashboard.dashboard_figures(date_range=date_range)
        token = get_random_string(20)
        cache.set(f"facelogin:dashboard:{token}", figures, DASHBOARD_FIGURES_SECONDS)
        query = urlencode({"start": date_range.start.isoformat(), "end": date_range.end.isoformat(), "figures": token})
        panels = admin_figures.dashboard_panels(figures)
        for panel in panels:
            panel.url = f"{reverse('admin:facelogin_signindashboard_chart', args=[panel.name])}?{query}"
        today = timezone.localdate()
        quick = [
            (_("Last %(days)d days") % {"days": days}, urlencode({"start": (today - timedelta(days=days - 1)).isoformat(), "end": today.isoformat()}))
            for days in (7, 30, 90, 365)
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Face sign-in dashboard"),
            "form": form,
            "range": date_range,
            "panels": panels,
            "quick_ranges": quick,
            "time_zone": timezone.get_current_timezone_name(),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/facelogin/signindashboard/dashboard.html", context)

    def chart_view(self, request: HttpRequest, name: str) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        figures = cache.get(f"facelogin:dashboard:{request.GET.get('figures', '')}")
        if not isinstance(figures, dashboard.DashboardFigures):  # expired, or a chart linked on its own
            form = DateRangeForm(request.GET)
            if not form.is_valid():
                return HttpResponse(_("Give the range as start=YYYY-MM-DD and end=YYYY-MM-DD."), status=400, content_type="text/plain; charset=utf-8")
            figures = dashboard.dashboard_figures(date_range=form.cleaned_data["range"])
        return chart_response(admin_figures.dashboard_panels(figures), name)
